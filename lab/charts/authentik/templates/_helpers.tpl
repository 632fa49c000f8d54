{{/* The release's name for its objects: fullnameOverride, else the release name (with the chart's
     name appended when it does not contain it), cut to 63. */}}
{{- define "ak.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ak.labels" -}}
app.kubernetes.io/name: {{ default .root.Chart.Name .root.Values.nameOverride }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: authentik
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- with .root.Values.global.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* AUTHENTIK_<KEY> (nested keys joined by __) = value, base64, for the chart Secret; empty
     values are left out, strings go through tpl. */}}
{{- define "ak.env" -}}
{{- $root := .root -}}
{{- range $k, $v := .values -}}
{{- $key := printf "%s%s" $.prefix (upper $k) -}}
{{- if kindIs "map" $v -}}
{{- include "ak.env" (dict "root" $root "values" $v "prefix" (printf "%s__" $key)) -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $s := ternary (tpl (toString $v) $root) (toString $v) (kindIs "string" $v) -}}
{{- if ne $s "" }}
{{ printf "AUTHENTIK_%s" $key }}: {{ $s | b64enc | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ak.image" -}}
{{- $img := .Values.global.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}
