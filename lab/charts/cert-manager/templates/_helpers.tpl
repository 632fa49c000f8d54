{{- define "cm.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "cm.deployment" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}{{- $component := index . 2 -}}{{- $v := index . 3 -}}
{{- /* upstream names the controller's pods after the chart (cert-manager), the others after themselves */ -}}
{{- $appName := ternary $root.Chart.Name $component (eq $component "controller") -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    app.kubernetes.io/name: {{ $appName }}
    app.kubernetes.io/component: {{ $component }}
    {{- include "cm.labels" $root | nindent 4 }}
spec:
  replicas: {{ $v.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ $appName }}
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      app.kubernetes.io/component: {{ $component }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ $appName }}
        app.kubernetes.io/instance: {{ $root.Release.Name }}
        app.kubernetes.io/component: {{ $component }}
    spec:
      serviceAccountName: {{ $name }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          image: quay.io/jetstack/cert-manager-{{ $component }}:{{ $root.Chart.AppVersion }}
          args:
            - --v={{ $root.Values.global.logLevel }}
            {{- range $v.extraArgs }}
            - {{ . }}
            {{- end }}
          {{- if and (eq $component "controller") $root.Values.prometheus.enabled }}
          ports:
            - containerPort: 9402
              name: http-metrics
              protocol: TCP
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
{{- end -}}
