{{/* Names and labels. */}}
{{- define "k8shmir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8shmir.fullname" -}}
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

{{- define "k8shmir.etcdName" -}}
{{- printf "%s-etcd" (include "k8shmir.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* On every object: the chart, the release and the recommended name/instance labels. */}}
{{- define "k8shmir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: k8shmir
app.kubernetes.io/name: {{ include "k8shmir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end -}}

{{- define "k8shmir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "k8shmir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: app
{{- end -}}

{{- define "k8shmir.etcdSelectorLabels" -}}
app.kubernetes.io/name: {{ include "k8shmir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end -}}

{{- define "k8shmir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "k8shmir.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "k8shmir.group" -}}
{{- default (include "k8shmir.fullname" .) .Values.proxy.group -}}
{{- end -}}

{{- define "k8shmir.appImage" -}}
{{- printf "%s:%s" .Values.app.image.repository (default .Chart.AppVersion .Values.app.image.tag) -}}
{{- end -}}

{{- define "k8shmir.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) -}}
{{- end -}}

{{- define "k8shmir.initImage" -}}
{{- $repo := default .Values.proxy.image.repository .Values.init.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.proxy.image.tag) .Values.init.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* The headless Service of the etcd members, and each member's peer / client address. */}}
{{- define "k8shmir.etcdHeadless" -}}
{{- printf "%s-headless" (include "k8shmir.etcdName" .) -}}
{{- end -}}

{{- define "k8shmir.etcdMemberHost" -}}
{{- $ := index . 0 -}}{{- $i := index . 1 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "k8shmir.etcdName" $) $i (include "k8shmir.etcdHeadless" $) $.Release.Namespace $.Values.clusterDomain -}}
{{- end -}}

{{/* --etcd-endpoints for the proxy: every member of the chart's etcd, or the external list. */}}
{{- define "k8shmir.etcdEndpoints" -}}
{{- if eq .Values.etcd.mode "internal" -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.internal.replicas) -}}
{{- $eps = append $eps (printf "%s:2379" (include "k8shmir.etcdMemberHost" (list $ $i))) -}}
{{- end -}}
{{- join "," $eps -}}
{{- else -}}
{{- if not .Values.etcd.external.endpoints -}}
{{- fail "etcd.mode=external needs etcd.external.endpoints (host:port list)" -}}
{{- end -}}
{{- join "," .Values.etcd.external.endpoints -}}
{{- end -}}
{{- end -}}

{{/* The proxy container (a regular container, or a native sidecar with restartPolicy Always). */}}
{{- define "k8shmir.proxyContainer" -}}
- name: k8shmir-proxy
  image: {{ include "k8shmir.proxyImage" . | quote }}
  imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
  {{- if .Values.proxy.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  {{- with .Values.proxy.extraArgs }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    - name: K8SHMIR_REPLICA_ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: K8SHMIR_GROUP
      value: {{ include "k8shmir.group" . | quote }}
    - name: K8SHMIR_ETCD_ENDPOINTS
      value: {{ include "k8shmir.etcdEndpoints" . | quote }}
    # "::": both families (the init container redirects IPv6 too; kubelet probes an IPv6 pod
    # address in IPv6 clusters); the proxy falls back to 0.0.0.0 on a kernel without IPv6.
    - name: K8SHMIR_LISTEN_ADDRESS
      value: "::"
    - name: K8SHMIR_LISTEN_PORT
      value: {{ int64 .Values.proxy.port | quote }}
    - name: K8SHMIR_ADMIN_ADDRESS
      value: "::"
    - name: K8SHMIR_ADMIN_PORT
      value: {{ int64 .Values.proxy.adminPort | quote }}
    - name: K8SHMIR_APP_PORT
      value: {{ int64 .Values.app.port | quote }}
    - name: K8SHMIR_LAST_INDEX_PATH
      value: {{ .Values.proxy.lastIndexPath | quote }}
    - name: K8SHMIR_INDEX_HEADER
      value: {{ .Values.proxy.indexHeader | quote }}
    - name: K8SHMIR_REQUEST_TIMEOUT_MS
      value: {{ int64 .Values.proxy.requestTimeoutMs | quote }}
    - name: K8SHMIR_APP_TIMEOUT_MS
      value: {{ int64 .Values.proxy.appTimeoutMs | quote }}
    - name: K8SHMIR_APP_HANG_TIMEOUT_MS
      value: {{ int64 .Values.proxy.appHangTimeoutMs | quote }}
    - name: K8SHMIR_ETCD_TIMEOUT_MS
      value: {{ int64 .Values.proxy.etcdTimeoutMs | quote }}
    - name: K8SHMIR_BODY_LIMIT
      value: {{ int64 .Values.proxy.bodyLimit | quote }}
    - name: K8SHMIR_APP_PIPELINE_DEPTH
      value: {{ int64 .Values.proxy.appPipelineDepth | quote }}
    {{- $routes := include "k8shmir.readRoutes" . }}
    {{- if $routes }}
    - name: K8SHMIR_READ_ROUTES
      value: {{ $routes | quote }}
    {{- end }}
    - name: K8SHMIR_DRAIN_DELAY_MS
      value: {{ int64 .Values.proxy.drainDelayMs | quote }}
    - name: K8SHMIR_SHUTDOWN_TIMEOUT_MS
      value: {{ int64 .Values.proxy.shutdownTimeoutMs | quote }}
    - name: K8SHMIR_SNAPSHOT_EVERY_ENTRIES
      value: {{ int64 .Values.proxy.snapshots.everyEntries | quote }}
    - name: K8SHMIR_SNAPSHOT_MIN_INTERVAL_MS
      value: {{ int64 .Values.proxy.snapshots.minIntervalMs | quote }}
    - name: K8SHMIR_SNAPSHOT_MAX_BYTES
      value: {{ int64 .Values.proxy.snapshots.maxBytes | quote }}
    - name: K8SHMIR_RETAIN_ENTRIES
      value: {{ int64 .Values.proxy.snapshots.retainEntries | quote }}
    - name: K8SHMIR_TRIM_MIN_AGE_MS
      value: {{ int64 .Values.proxy.snapshots.trimMinAgeMs | quote }}
    {{- $bounds := include "k8shmir.proxyMemoryBounds" . | fromYaml }}
    - name: K8SHMIR_MAX_QUEUED_BYTES
      value: {{ $bounds.queued | quote }}
    - name: K8SHMIR_MAX_PENDING_BYTES
      value: {{ $bounds.pending | quote }}
    - name: K8SHMIR_LOG_LEVEL
      value: {{ .Values.proxy.logLevel | quote }}
    - name: K8SHMIR_LOG_FORMAT
      value: {{ .Values.proxy.logFormat | quote }}
    - name: K8SHMIR_ACCESS_LOG
      value: {{ toString .Values.proxy.accessLog | quote }}
    {{- if and (eq .Values.etcd.mode "external") .Values.etcd.external.tls.enabled }}
    # TLS to etcd (--etcd-ca-file and friends): ca.crt always; the key pair only with clientAuth,
    # as the proxy refuses a certificate without its key.
    - name: K8SHMIR_ETCD_CA_FILE
      value: /etc/k8shmir/etcd-tls/ca.crt
    {{- if .Values.etcd.external.tls.clientAuth }}
    - name: K8SHMIR_ETCD_CERT_FILE
      value: /etc/k8shmir/etcd-tls/tls.crt
    - name: K8SHMIR_ETCD_KEY_FILE
      value: /etc/k8shmir/etcd-tls/tls.key
    {{- end }}
    {{- with .Values.etcd.external.tls.serverName }}
    - name: K8SHMIR_ETCD_SERVER_NAME
      value: {{ . | quote }}
    {{- end }}
    {{- end }}
    {{- $ownQuota := false }}
    {{- range .Values.proxy.env }}
    {{- if eq (toString .name) "K8SHMIR_QUOTA_BACKEND_BYTES" }}{{ $ownQuota = true }}{{ end }}
    {{- end }}
    {{- if not $ownQuota }}
    # Not the proxy's: k8shmirctl's (`kubectl exec ... -c k8shmir-proxy -- k8shmirctl status`
    # compares the members' database with it). The chart's etcd runs with this quota; an external
    # etcd's is what etcd.external.quotaBackendBytes says. One given in proxy.env replaces it (no
    # variable twice).
    - name: K8SHMIR_QUOTA_BACKEND_BYTES
      value: {{ include "k8shmir.etcdQuotaBytes" . | quote }}
    {{- end }}
    {{- with .Values.proxy.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: proxy
      containerPort: {{ .Values.proxy.port }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.proxy.adminPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: {{ if .Values.proxy.nativeSidecar }}/healthz{{ else }}/readyz{{ end }}
      port: admin
    periodSeconds: {{ .Values.proxy.startupProbe.periodSeconds }}
    failureThreshold: {{ .Values.proxy.startupProbe.failureThreshold }}
    timeoutSeconds: {{ .Values.proxy.startupProbe.timeoutSeconds }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    periodSeconds: {{ .Values.proxy.readinessProbe.periodSeconds }}
    failureThreshold: {{ .Values.proxy.readinessProbe.failureThreshold }}
    timeoutSeconds: {{ .Values.proxy.readinessProbe.timeoutSeconds }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: {{ .Values.proxy.livenessProbe.periodSeconds }}
    failureThreshold: {{ .Values.proxy.livenessProbe.failureThreshold }}
    timeoutSeconds: {{ .Values.proxy.livenessProbe.timeoutSeconds }}
  securityContext:
    {{- $proxySecurity := dict "runAsUser" (int .Values.proxy.uid) "runAsGroup" (int .Values.proxy.uid) "runAsNonRoot" true "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL")) }}
    {{- /* proxy.securityContext adds to these; runAsUser stays proxy.uid: the redirect exempts that uid. */}}
    {{- $merged := mergeOverwrite $proxySecurity (.Values.proxy.securityContext | default dict) }}
    {{- $_ := set $merged "runAsUser" (int .Values.proxy.uid) }}
    {{- toYaml $merged | nindent 4 }}
  resources:
    {{- toYaml .Values.proxy.resources | nindent 4 }}
  {{- if and (eq .Values.etcd.mode "external") .Values.etcd.external.tls.enabled }}
  volumeMounts:
    - name: etcd-tls
      mountPath: /etc/k8shmir/etcd-tls
      readOnly: true
  {{- end }}
{{- end -}}

{{/*
A Kubernetes memory quantity in bytes (plain, Ki, Mi, Gi, Ti, k, M, G); fails on anything else.
*/}}
{{- define "k8shmir.memoryBytes" -}}
{{- include "k8shmir.quantityBytes" (list "proxy.resources.limits.memory" .) -}}
{{- end -}}

{{/*
(list NAME QUANTITY): the quantity in bytes; fails naming the value NAME on anything else.
*/}}
{{- define "k8shmir.quantityBytes" -}}
{{- $name := index . 0 -}}
{{- $q := toString (index . 1) -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 -}}
{{- $bytes := "" -}}
{{- if regexMatch "^[0-9]+$" $q -}}
{{- $bytes = $q -}}
{{- else -}}
{{- range $suffix, $factor := $units -}}
{{- if regexMatch (printf "^[0-9]+%s$" $suffix) $q -}}
{{- $bytes = mul (trimSuffix $suffix $q | int64) $factor | toString -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq $bytes "" -}}
{{- fail (printf "%s %q: the chart reads it as a size and understands whole numbers of bytes, Ki, Mi, Gi, Ti, k, M or G" $name $q) -}}
{{- end -}}
{{- $bytes -}}
{{- end -}}

{{/*
The proxy's byte bounds (--max-queued-bytes, --max-pending-bytes) as YAML {queued, pending}:
given values, else an eighth of the memory limit each, else the proxy's 32 MiB. Both must leave
room in the limit for the copies the proxy makes (x2) and 64 MiB of working memory.
*/}}
{{- define "k8shmir.proxyMemoryBounds" -}}
{{- $minBound := 3129344 -}}{{/* two entries of the largest size etcd takes */}}
{{- $limit := 0 -}}
{{- with .Values.proxy.resources -}}{{- with .limits -}}{{- with .memory -}}
{{- $limit = include "k8shmir.memoryBytes" . | int64 -}}
{{- end -}}{{- end -}}{{- end -}}
{{- $derived := 33554432 -}}
{{- if gt $limit 0 -}}{{- $derived = div $limit 8 -}}{{- end -}}
{{- $queued := int64 (.Values.proxy.maxQueuedBytes | default $derived) -}}
{{- $pending := int64 (.Values.proxy.maxPendingBytes | default $derived) -}}
{{- if or (lt $queued $minBound) (lt $pending $minBound) -}}
{{- fail (printf "proxy memory bounds: maxQueuedBytes %d and maxPendingBytes %d must each be at least %d (two entries of the largest size); raise proxy.resources.limits.memory (at least 128Mi) or set them" $queued $pending $minBound) -}}
{{- end -}}
{{- if and (gt $limit 0) (gt (add (mul 2 (add $queued $pending)) 67108864) $limit) -}}
{{- fail (printf "proxy memory bounds do not fit proxy.resources.limits.memory (%d bytes): 2 x (maxQueuedBytes %d + maxPendingBytes %d) + 64 MiB is %d; lower them or raise the limit" $limit $queued $pending (add (mul 2 (add $queued $pending)) 67108864)) -}}
{{- end -}}
queued: {{ $queued }}
pending: {{ $pending }}
{{- end -}}

{{/*
The proxy's read routes: the app's httpGet probes on the app port first, as `local` reads (when
app.probesAsLocalReads), then proxy.readRoutes. The first matching route wins.
*/}}
{{- define "k8shmir.readRoutes" -}}
{{- $routes := list -}}
{{- if .Values.app.probesAsLocalReads -}}
{{- range $probe := list .Values.app.startupProbe .Values.app.readinessProbe .Values.app.livenessProbe -}}
{{- with $probe.httpGet -}}
{{- $port := toString (default "http" .port) -}}
{{- if or (eq $port "http") (eq $port (toString $.Values.app.port)) -}}
{{- $routes = append $routes (printf "GET %s local" (regexReplaceAll "[?#].*$" (default "/" .path) "")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $routes = concat $routes .Values.proxy.readRoutes -}}
{{- join ", " (uniq $routes) -}}
{{- end -}}

{{/*
PromQL label matchers for the proxies' series of this release: the namespace (added by the
ServiceMonitor's scrape) and the replication group (the proxy's own label).
*/}}
{{- define "k8shmir.promSelector" -}}
{{- printf "namespace=%q,group=%q" .Release.Namespace (include "k8shmir.group" .) -}}
{{- end -}}

{{/* The same for the chart's etcd members: their job is the headless Service's name. */}}
{{- define "k8shmir.etcdPromSelector" -}}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "k8shmir.etcdHeadless" .) -}}
{{- end -}}

{{/* etcd's --quota-backend-bytes in bytes: the chart's etcd's, or what the values say of an external one's. */}}
{{- define "k8shmir.etcdQuotaBytes" -}}
{{- if eq .Values.etcd.mode "internal" -}}
{{- int64 .Values.etcd.internal.quotaBackendBytes -}}
{{- else -}}
{{- int64 .Values.etcd.external.quotaBackendBytes -}}
{{- end -}}
{{- end -}}

{{/* (list CONTEXT ALERTNAME): the alert's runbook, an anchor of docs/kubernetes.md. */}}
{{- define "k8shmir.runbookUrl" -}}
{{- $ := index . 0 -}}
{{- printf "%s#%s" (trimSuffix "/" $.Values.metrics.prometheusRule.runbookBaseUrl) (lower (index . 1)) -}}
{{- end -}}

{{/* The etcd backup CronJob and its volume (a CronJob's name may have 52 characters). */}}
{{- define "k8shmir.etcdBackupName" -}}
{{- printf "%s-etcd-backup" (include "k8shmir.fullname" . | trunc 40 | trimSuffix "-") -}}
{{- end -}}

{{- define "k8shmir.etcdBackupSelectorLabels" -}}
app.kubernetes.io/name: {{ include "k8shmir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd-backup
{{- end -}}
