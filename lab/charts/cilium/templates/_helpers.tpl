{{- define "cilium.image" -}}
{{ .Values.image.repository }}:v{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- define "cilium.bool" -}}
{{ ternary "true" "false" (eq (toString .) "true") }}
{{- end -}}
