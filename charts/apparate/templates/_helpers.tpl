{{- define "apparate.name" -}}
{{- default "apparate" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name. Objects are named <fullname><suffix>, the longest being
"-converter-credentials" (22 characters), and names such as a Service's or a Job's
(whose pods carry it as a label value) must stay within 63: so a fullname longer than
63 - 22 = 41 is cut to 32 characters plus "-" and 8 hex digits of its sha256, stable
across upgrades and distinct for names that differ only past the cut.
*/}}
{{- define "apparate.fullname" -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else -}}
{{- $name := include "apparate.name" . -}}
{{- if contains $name .Release.Name -}}{{- $full = .Release.Name -}}{{- else -}}{{- $full = printf "%s-%s" .Release.Name $name -}}{{- end -}}
{{- end -}}
{{- if le (len $full) 41 -}}
{{- $full | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" ($full | trunc 32 | trimSuffix "-") ($full | sha256sum | trunc 8) -}}
{{- end -}}
{{- end -}}

{{- define "apparate.labels" -}}
app.kubernetes.io/name: {{ include "apparate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: apparate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "apparate.selector" -}}
app.kubernetes.io/name: {{ include "apparate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
A pod template's labels and annotations: the chart's labels, the component, then the
operator's podLabels/podAnnotations (global first, the component's own last).
Call with (dict "ctx" $ "component" "webhook" "labels" .Values.webhook.podLabels "annotations" $ann).
*/}}
{{- define "apparate.podMetadata" -}}
{{- $ctx := .ctx -}}
labels:
  {{- include "apparate.labels" $ctx | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with (merge (dict) (.labels | default dict) ($ctx.Values.podLabels | default dict)) }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $ann := merge (dict) (.annotations | default dict) (.componentAnnotations | default dict) ($ctx.Values.podAnnotations | default dict) }}
{{- with $ann }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* imagePullSecrets for apparate's own images: the component's list, else the chart-wide one. */}}
{{- define "apparate.imagePullSecrets" -}}
{{- $list := .component | default .ctx.Values.imagePullSecrets -}}
{{- with $list }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
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

{{/* The listed namespaces apparate handles: never kube-system or the release namespace. */}}
{{- define "apparate.listedNamespaces" -}}
{{- $never := list "kube-system" .Release.Namespace -}}
{{- $out := list -}}
{{- range include "apparate.namespaces" . | fromJsonArray }}{{ if not (has . $never) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Namespaces whose pull secrets the webhook reads (registry.podPullSecretsScope=namespaces), as JSON; [] = cluster-wide or none. */}}
{{- define "apparate.pullSecretNamespaces" -}}
{{- if and .Values.registry.usePodPullSecrets (eq .Values.registry.podPullSecretsScope "namespaces") -}}
{{- $ns := include "apparate.listedNamespaces" . | fromJsonArray -}}
{{- if not $ns -}}
{{- fail "registry.podPullSecretsScope=namespaces reads pull secrets in the namespaces listed in `namespaces`, and none is listed: list them, or set registry.podPullSecretsScope=cluster" -}}
{{- end -}}
{{- toJson $ns -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{- define "apparate.pullSecretName" -}}
{{- if .Values.imagePullSecretsCrs.existingSecret -}}{{ .Values.imagePullSecretsCrs.existingSecret }}{{- else -}}{{ printf "%s-crs" (include "apparate.fullname" .) }}{{- end -}}
{{- end -}}

{{- define "apparate.hasCrs" -}}
{{- if or .Values.imagePullSecretsCrs.existingSecret (and .Values.imagePullSecretsCrs.dockerServer .Values.imagePullSecretsCrs.dockerUsername) -}}true{{- end -}}
{{- end -}}

{{/*
dockerUsername as written: TCR usernames are account ids, and YAML reads an unquoted
100012345678 as a float that toString would print as 1.00012345678e+11.
*/}}
{{- define "apparate.crsUsername" -}}
{{- $u := .Values.imagePullSecretsCrs.dockerUsername -}}
{{- if kindIs "float64" $u -}}
{{- if or (ne (floor $u) $u) (gt $u 9007199254740991.0) -}}
{{- fail (printf "imagePullSecretsCrs.dockerUsername: %v is not a whole number below 2^53; quote it in your values file (dockerUsername: \"...\")" $u) -}}
{{- end -}}
{{- printf "%.0f" $u -}}
{{- else -}}
{{- toString $u -}}
{{- end -}}
{{- end -}}

{{/* Kubernetes minor version as a number, e.g. 1.28 -> 28 (semverCompare also handles "-eks-..." suffixes). */}}
{{- define "apparate.kubeAtLeast130" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end -}}

{{/*
The node agent's host directories, each mounted at the same path under /host (the
agent's APPARATE_HOST_ROOT) instead of the host's whole root:
- the directory of nodeAgent.containerdConfig: containerd's config (edited, with a backup
  and apparate-state.json beside it);
- nodeAgent.containerdCertsDir: hosts.toml mirrors;
- /etc/apparate-stargz: the snapshotter's config.toml and registry credentials;
- /run/apparate-stargz: the snapshotter's socket, which the health check dials;
- /usr/local/bin: where the snapshotter binary is copied so that systemd can start it
  after this pod is gone;
- /etc/systemd/system: the snapshotter's unit;
- /run/containerd: containerd's socket, to ask the running containerd (CRI status) which
  snapshotter and config it really uses;
- /proc, read-only: the running containerd's command line (its --config) and cgroup (its
  systemd unit), read under the host root like every other host path;
- nodeAgent.extraHostPaths: what a node keeps elsewhere (a config.toml that is a symlink
  to another directory, k3s/rke2's /var/lib/rancher/.../containerd).
Everything else (systemctl, restarting containerd) runs in the host's namespaces through
nsenter -t 1 (hostPID), so no other path is mounted. The snapshotter's data
(/var/lib/apparate-stargz) is used by the host service only.
*/}}
{{- define "apparate.nodeAgentHostPaths" -}}
{{- /* An empty containerdConfig (found on the node at run time) lives in /etc/containerd unless extraHostPaths says otherwise. */ -}}
{{- $configDir := .Values.nodeAgent.containerdConfig | default "/etc/containerd/config.toml" | dir -}}
{{- $paths := concat (list $configDir (.Values.nodeAgent.containerdCertsDir | default "/etc/containerd/certs.d") "/etc/apparate-stargz" "/run/apparate-stargz" "/usr/local/bin" "/etc/systemd/system" "/run/containerd" "/proc" "/var/lib/apparate-node") (.Values.nodeAgent.extraHostPaths | default list) -}}
{{- $out := list -}}
{{- range $paths }}{{ if not (has . $out) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "apparate.nodeAgentVolumeMounts" -}}
{{- range $i, $p := include "apparate.nodeAgentHostPaths" . | fromJsonArray }}
- {name: host-{{ $i }}, mountPath: /host{{ $p }}{{ if eq $p "/proc" }}, readOnly: true{{ else if hasPrefix "/run" $p }}, mountPropagation: HostToContainer{{ end }}}
{{- end }}
{{- end -}}

{{- define "apparate.nodeAgentVolumes" -}}
{{- range $i, $p := include "apparate.nodeAgentHostPaths" . | fromJsonArray }}
- name: host-{{ $i }}
  hostPath: {path: {{ $p }}, type: {{ if eq $p "/proc" }}Directory{{ else }}DirectoryOrCreate{{ end }}}
{{- end }}
{{- end -}}

{{/* Container security context of apparate's unprivileged pods (PSS "restricted"), with webhook.securityContext merged over it. */}}
{{- define "apparate.restrictedContainer" -}}
{{- $base := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") -}}
securityContext: {{- toYaml (mergeOverwrite $base (deepCopy (.Values.webhook.securityContext | default dict))) | nindent 2 }}
{{- end -}}

{{/* Pod security context of apparate's unprivileged pods, with webhook.podSecurityContext merged over it. */}}
{{- define "apparate.restrictedPod" -}}
{{- $base := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "fsGroup" 65532 "seccompProfile" (dict "type" "RuntimeDefault") -}}
securityContext: {{- toYaml (mergeOverwrite $base (deepCopy (.Values.webhook.podSecurityContext | default dict))) | nindent 2 }}
{{- end -}}

{{/* Values that the schema cannot relate to each other, and the cluster's APIs the chosen values need. */}}
{{- define "apparate.validate" -}}
{{- $pdb := .Values.webhook.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int .Values.webhook.replicas) 1) -}}
{{- $replicas := int .Values.webhook.replicas -}}
{{- $min := $pdb.minAvailable -}}
{{- /* A percentage rounds up (the disruption controller's GetScaledValueFromIntOrPercent with roundUp). */ -}}
{{- $need := 0 -}}
{{- if kindIs "string" $min -}}{{- $need = div (add (mul $replicas (int (trimSuffix "%" $min))) 99) 100 -}}{{- else -}}{{- $need = int $min -}}{{- end -}}
{{- if ge (int $need) $replicas -}}
{{- fail (printf "webhook.podDisruptionBudget.minAvailable (%v) keeps all %d webhook replicas up: no node running one could ever be drained. Set it below webhook.replicas (e.g. %d), or disable the budget" $min $replicas (sub $replicas 1)) -}}
{{- end -}}
{{- end -}}
{{- $key := .Values.acceleration.placement.nodeLabelKey -}}
{{- if and (contains "/" $key) (gt (len (splitList "/" $key | first)) 253) -}}
{{- fail (printf "acceleration.placement.nodeLabelKey: the prefix of %q is longer than 253 characters (a label key's prefix is a DNS subdomain)" $key) -}}
{{- end -}}
{{- if ge (int .Values.admission.deadlineMs) (mul (int .Values.webhook.timeoutSeconds) 1000) -}}
{{- fail (printf "admission.deadlineMs (%v) must be below webhook.timeoutSeconds*1000 (%v): the API server stops waiting at webhook.timeoutSeconds" .Values.admission.deadlineMs (mul (int .Values.webhook.timeoutSeconds) 1000)) -}}
{{- end -}}
{{- if and (eq .Values.webhook.tls.mode "cert-manager") (not (.Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate")) -}}
{{- fail "webhook.tls.mode=cert-manager needs cert-manager, but this cluster serves no cert-manager.io/v1 Certificate: install cert-manager first, or use webhook.tls.mode=self-managed (with helm template: --api-versions cert-manager.io/v1/Certificate)" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}
{{- fail "metrics.serviceMonitor.enabled needs the Prometheus Operator, but this cluster serves no monitoring.coreos.com/v1 ServiceMonitor: install it first, or set metrics.serviceMonitor.enabled=false (with helm template: --api-versions monitoring.coreos.com/v1/ServiceMonitor)" -}}
{{- end -}}
{{- with .Values.admission.clientAuth -}}
{{- if and .enabled (ne 1 (len (compact (list .caBundle .caConfigMap .caSecret)))) -}}
{{- fail "admission.clientAuth.enabled needs exactly one of admission.clientAuth.caBundle (PEM), caConfigMap or caSecret (the CA that signs the API server's client certificate, under key ca.crt)" -}}
{{- end -}}
{{- end -}}
{{- $np := .Values.networkPolicy -}}
{{- if and .Values.metrics.serviceMonitor.enabled $np.enabled (not $np.metricsNamespaceSelector) (not $np.metricsFrom) -}}
{{- fail "metrics.serviceMonitor.enabled with networkPolicy.enabled: the NetworkPolicy lets nobody reach the metrics port unless told who scrapes it. Set networkPolicy.metricsNamespaceSelector to Prometheus' namespace (e.g. {matchLabels: {kubernetes.io/metadata.name: monitoring}}) or networkPolicy.metricsFrom" -}}
{{- end -}}
{{- end -}}
