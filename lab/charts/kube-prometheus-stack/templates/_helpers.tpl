{{/* Names as upstream forms them: the fullname is cut to 26 characters. */}}
{{- define "kps.fullname" -}}
{{- if .Values.fullnameOverride -}}{{- .Values.fullnameOverride | trunc 26 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}{{- .Release.Name | trunc 26 | trimSuffix "-" -}}
{{- else -}}{{- printf "%s-%s" .Release.Name $name | trunc 26 | trimSuffix "-" -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- define "kps.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-prometheus-stack
chart: kube-prometheus-stack-{{ .Chart.Version }}
release: {{ .Release.Name | quote }}
heritage: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "kps.selector" -}}
{{- if .on }}{{ dict "matchLabels" (dict "release" .release) | toYaml }}{{ else }}{}{{ end -}}
{{- end -}}
{{- define "kps.image" -}}
{{- $r := .global.imageRegistry | default .img.registry -}}
{{ $r }}/{{ .img.repository }}:{{ .img.tag | default .tag }}
{{- end -}}
