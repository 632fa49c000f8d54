{{- define "tekton-operator.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- define "tekton-operator.sa" -}}
{{- .Values.rbac.serviceAccount.name | default (include "tekton-operator.fullname" .) }}
{{- end }}
