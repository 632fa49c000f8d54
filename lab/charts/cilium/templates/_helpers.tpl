{{- define "cilium.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "v%s" .Chart.AppVersion) }}
{{- end -}}
{{- define "cilium.bool" -}}
{{ ternary "true" "false" (eq (toString .) "true") }}
{{- end -}}
