{{/* Names, labels and image references shared by every template. */}}

{{- define "aeo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: the release name when it already names the chart. */}}
{{- define "aeo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aeo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's Pods (never change: Deployment selectors are immutable). */}}
{{- define "aeo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aeo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "aeo.labels" -}}
helm.sh/chart: {{ include "aeo.chart" . }}
app.kubernetes.io/name: {{ include "aeo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: audio-extract
{{- end }}

{{- define "aeo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aeo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag|@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "aeo.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The worker ServiceAccount the operator names in worker Pods, or "" for the namespace's default. */}}
{{- define "aeo.workerServiceAccount" -}}
{{- $sa := .Values.worker.serviceAccount }}
{{- if and $sa.name (or (not $sa.create) .Values.watchNamespaces) }}
{{- $sa.name }}
{{- end }}
{{- end }}
