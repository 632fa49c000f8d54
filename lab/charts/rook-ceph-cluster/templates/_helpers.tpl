{{- define "cluster.name" -}}{{ .Values.clusterName | default .Release.Namespace }}{{- end -}}
{{- define "cluster.defaultAnnotation" -}}
{{- if . }}
    storageclass.kubernetes.io/is-default-class: "true"
{{- end }}
{{- end -}}
