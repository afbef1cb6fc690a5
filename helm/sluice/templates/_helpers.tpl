{{/* Name of the chart, shortened to fit label values. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding credentials the chart was given (not the existing ones named). */}}
{{- define "sluice.secretName" -}}
{{- printf "%s-credentials" (include "sluice.fullname" .) }}
{{- end }}

{{/* Whether principals.toml comes from a Secret (the chart's or an existing one). */}}
{{- define "sluice.hasPrincipals" -}}
{{- if or .Values.auth.principals .Values.auth.existingPrincipalsSecret }}true{{ end }}
{{- end }}

{{/* One TOML value: strings, numbers and booleans as JSON (valid TOML), maps as inline tables. */}}
{{- define "sluice.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true }}{{ range $k, $v := . }}{{ if not $first }}, {{ end }}{{ $first = false }}{{ $k }} = {{ include "sluice.tomlValue" $v }}{{ end -}} }
{{- else if kindIs "float64" . -}}
{{ int64 . }}
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}
