{{- define "external-secrets.fullname" -}}
{{- if .Values.fullnameOverride -}}{{ .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else -}}{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- end -}}
{{- define "external-secrets.image" -}}
{{ .image.repository }}:{{ .image.tag | default .chartAppVersion }}{{ if .image.flavour }}-{{ .image.flavour }}{{ end }}
{{- end -}}
{{- define "external-secrets.securityContext" -}}
{{- if .Values.securityContext.enabled }}
securityContext:
  {{- toYaml (omit .Values.securityContext "enabled") | nindent 2 }}
{{- end }}
{{- end -}}
