{{- define "keyward.name" -}}keyward{{- end -}}

{{- define "keyward.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "keyward.labels" -}}
app.kubernetes.io/name: keyward
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "keyward.selector" -}}
app.kubernetes.io/name: keyward
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keyward.commonArgs" -}}
- --log-level={{ .Values.logLevel }}
{{- with .Values.watchNamespaces }}
- --namespaces={{ join "," . }}
{{- end }}
{{- if .Values.hostOwners }}
{{- $entries := list }}
{{- range $host, $namespaces := .Values.hostOwners }}
{{- range $namespaces }}
{{- $entries = append $entries (printf "%s=%s" $host .) }}
{{- end }}
{{- end }}
- {{ printf "--host-owners=%s" (join "," $entries) | quote }}
{{- end }}
{{- end -}}
