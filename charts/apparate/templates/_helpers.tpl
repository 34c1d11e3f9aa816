{{- define "apparate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "apparate.labels" -}}
app.kubernetes.io/name: apparate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: apparate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "apparate.selector" -}}
app.kubernetes.io/name: apparate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apparate.image" -}}
{{ printf "%s/%s:%s" .Values.image.registry .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{- define "apparate.nodeImage" -}}
{{ printf "%s/%s:%s" .Values.image.registry .Values.nodeImage.repository (default .Chart.AppVersion .Values.nodeImage.tag) }}
{{- end -}}

{{- define "apparate.tlsSecret" -}}
{{ default (printf "%s-tls" (include "apparate.fullname" .)) .Values.webhook.tls.secretName }}
{{- end -}}

{{- define "apparate.namespaces" -}}
{{- if kindIs "string" .Values.namespaces -}}
{{- $out := list -}}{{- range splitList "," .Values.namespaces -}}{{- $n := trim . -}}{{- if $n -}}{{- $out = append $out $n -}}{{- end -}}{{- end -}}
{{- toJson $out -}}
{{- else -}}
{{- toJson .Values.namespaces -}}
{{- end -}}
{{- end -}}

{{- define "apparate.pullSecretName" -}}
{{- if .Values.imagePullSecretsCrs.existingSecret -}}{{ .Values.imagePullSecretsCrs.existingSecret }}{{- else -}}{{ printf "%s-crs" (include "apparate.fullname" .) }}{{- end -}}
{{- end -}}

{{- define "apparate.hasCrs" -}}
{{- if or .Values.imagePullSecretsCrs.existingSecret (and .Values.imagePullSecretsCrs.dockerServer .Values.imagePullSecretsCrs.dockerUsername) -}}true{{- end -}}
{{- end -}}

{{/* Pod security context shared by apparate's unprivileged pods. */}}
{{- define "apparate.restrictedContainer" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}
