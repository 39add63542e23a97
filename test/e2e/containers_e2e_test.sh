#!/usr/bin/env bash
# Container end-to-end test (CTest label e2e): the images built from the repository's Dockerfiles,
# run as Kubernetes runs a pod, three times over, with etcd as three containers.
#
# Each "pod" is built the way the kubelet builds one:
#   - a sandbox container holding the pod's network namespace (`sleep infinity`, as `pause` does);
#   - the init container, `k8shmir-init` from the proxy image, as root with NET_ADMIN and NET_RAW
#     only, in the sandbox's network namespace (--network container:<sandbox>);
#   - the app container (counter-app on [::]:3000, both families, so that a connection the rules
#     missed would reach it) and the proxy container (k8shmir-proxy as uid 1337) joining the same
#     namespace.
# The pods' network is dual-stack (an IPv4 subnet and a ULA IPv6 /64).
# Checks, with non-commutative operations and exact expected values:
#   - the init container's rules, iptables and ip6tables, are idempotent (a second run leaves
#     iptables-save and ip6tables-save unchanged);
#   - client traffic from outside to each pod's address on the app port is replicated;
#   - a local connection to 127.0.0.1:app-port inside a pod (kubectl port-forward's path) is
#     replicated, while the proxy's uid reaches the app directly;
#   - an app container killed and restarted, a proxy container killed and restarted, and both at
#     once, recover (the restarted app is replayed from the log);
#   - clients over IPv6, from outside to each pod's IPv6 address and inside to [::1], are
#     replicated like the IPv4 ones;
#   - every app ends with the identical journal, the expected one.
#
# Prepares Docker itself (scripts/docker-setup.sh: docker.io, dockerd, the offline base image),
# then builds the images (cached by Docker between runs). Needs root. Every wait is bounded.
#
# Environment: K8SHMIR_BASE_IMAGE (default k8shmir/base:bookworm), K8SHMIR_E2E_KEEP=1 (leave the
# containers running for inspection), K8SHMIR_E2E_JOBS (compiler jobs in the image build, 2).

# Functions called through traps look unreachable to shellcheck; the single-quoted scripts run in
# containers expand there:
# shellcheck disable=SC2317,SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
DOCKER=/usr/bin/docker
BASE=${K8SHMIR_BASE_IMAGE:-k8shmir/base:bookworm}
PROXY_IMAGE=k8shmir/proxy:e2e
COUNTER_IMAGE=k8shmir/counter:e2e
ETCD_IMAGE=k8shmir/etcd:e2e
JOBS=${K8SHMIR_E2E_JOBS:-2}
RUN=k8shmir-e2e-$$
LABEL=k8shmir.e2e
N=3
APP_PORT=3000
PROXY_PORT=8080
ADMIN_PORT=9901
PROXY_UID=1337

T0=$(date +%s)
stamp() { printf '[e2e %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }

dump_logs() {
  local c
  for c in $("$DOCKER" ps -a --filter "label=$LABEL=$RUN" --format '{{.Names}}' 2>/dev/null | sort); do
    echo "----- docker logs $c (last 40 lines; $("$DOCKER" inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null))"
    timeout 20 "$DOCKER" logs --tail 40 "$c" 2>&1 || true
  done
}

fail() {
  echo "FAIL: $*" >&2
  dump_logs >&2 || true
  exit 1
}

expect_eq() { # actual expected what
  [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
}

remove_run() { # remove the containers and network of run $1
  local ids
  ids=$("$DOCKER" ps -aq --filter "label=$LABEL=$1" 2>/dev/null || true)
  if [[ -n "$ids" ]]; then
    # shellcheck disable=SC2086
    timeout 120 "$DOCKER" rm -f -v $ids >/dev/null 2>&1 || true
  fi
  timeout 60 "$DOCKER" network rm "$1" >/dev/null 2>&1 || true
}

cleanup() {
  local rc=$?
  if [[ "${K8SHMIR_E2E_KEEP:-0}" == 1 ]]; then
    stamp "K8SHMIR_E2E_KEEP=1: containers of $RUN left running"
  else
    remove_run "$RUN"
  fi
  exit "$rc"
}

((EUID == 0)) || fail "this test needs root (it installs and starts Docker); CI runs make test as root"
for tool in curl jq timeout; do
  command -v "$tool" >/dev/null || fail "$tool missing: run scripts/install-deps.sh"
done

# --- Docker, the base image, the images ---------------------------------------------------------
stamp "docker setup"
bash "$ROOT/scripts/docker-setup.sh" || fail "scripts/docker-setup.sh failed"
"$DOCKER" image inspect "$BASE" >/dev/null || fail "base image $BASE missing after docker-setup"

# Runs of this test that died (killed by a CTest timeout) left containers: remove those whose
# process is gone.
for old in $("$DOCKER" ps -a --filter "label=$LABEL" --format "{{.Label \"$LABEL\"}}" | sort -u); do
  pid=${old##*-}
  if [[ "$old" != "$RUN" && "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
    stamp "removing containers of an earlier run ($old)"
    remove_run "$old"
  fi
done
trap cleanup EXIT

export DOCKER_BUILDKIT=1
build() { # image context [docker build args...]
  local image=$1 context=$2 start
  shift 2
  start=$(date +%s)
  timeout 1200 "$DOCKER" build --progress=plain --build-arg "BASE=$BASE" -t "$image" "$@" \
    "$context" >"/tmp/$RUN-build.log" 2>&1 || {
    tail -n 60 "/tmp/$RUN-build.log" >&2
    rm -f "/tmp/$RUN-build.log"
    fail "docker build of $image failed"
  }
  rm -f "/tmp/$RUN-build.log"
  stamp "built $image in $(($(date +%s) - start)) s ($("$DOCKER" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}
build "$PROXY_IMAGE" "$ROOT" --build-arg "JOBS=$JOBS"
build "$COUNTER_IMAGE" "$ROOT/examples/counter"
build "$ETCD_IMAGE" "$ROOT/test/e2e" -f "$ROOT/test/e2e/etcd.Dockerfile"

# The images are what the issue asks: proxy as 1337 by default, no compilers in the final stage.
expect_eq "$("$DOCKER" image inspect -f '{{.Config.User}}' "$PROXY_IMAGE")" "1337:1337" "proxy image user"
expect_eq "$("$DOCKER" image inspect -f '{{json .Config.Entrypoint}}' "$PROXY_IMAGE")" \
  '["/usr/local/bin/k8shmir-proxy"]' "proxy image entrypoint"
compilers=$(timeout 60 "$DOCKER" run --rm --entrypoint /bin/sh "$PROXY_IMAGE" -c \
  'for c in gcc g++ cc c++ cmake make; do command -v $c; done; true')
expect_eq "$compilers" "" "compilers in the proxy image"
expect_eq "$(timeout 60 "$DOCKER" run --rm --entrypoint /bin/sh "$PROXY_IMAGE" -c \
  'for c in k8shmir-init iptables ip6tables; do command -v $c; done')" \
  $'/usr/local/bin/k8shmir-init\n/usr/sbin/iptables\n/usr/sbin/ip6tables' \
  "init tool and iptables in the proxy image"

# --- etcd: three members ------------------------------------------------------------------------
stamp "starting etcd and 3 pods (run $RUN)"
# Dual-stack: Docker picks the IPv4 subnet; the IPv6 one is a ULA /64 not routed here yet.
subnet6=""
for ((attempt = 0; attempt < 50; attempt++)); do
  candidate=$(printf 'fd6b:8a5e:%x:%x::' $((RANDOM)) $((RANDOM)))
  if ! ip -6 route show table all | grep -qF "$candidate/64"; then
    subnet6=$candidate/64
    break
  fi
done
[[ -n "$subnet6" ]] || fail "no free IPv6 /64 in fd6b:8a5e::/32"
timeout 60 "$DOCKER" network create --label "$LABEL=$RUN" --ipv6 --subnet "$subnet6" "$RUN" >/dev/null

ip_of() { "$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$RUN\").IPAddress}}" "$1"; }
ip6_of() { "$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$RUN\").GlobalIPv6Address}}" "$1"; }

cluster=""
for ((i = 0; i < 3; i++)); do
  cluster+="${cluster:+,}etcd$i=http://$RUN-etcd$i:2380"
done
for ((i = 0; i < 3; i++)); do
  timeout 60 "$DOCKER" run -d --name "$RUN-etcd$i" --hostname "etcd$i" --network "$RUN" \
    --label "$LABEL=$RUN" --tmpfs /var/lib/etcd "$ETCD_IMAGE" \
    --name "etcd$i" --data-dir /var/lib/etcd/data \
    --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://$RUN-etcd$i:2379" \
    --listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls "http://$RUN-etcd$i:2380" \
    --initial-cluster "$cluster" --initial-cluster-token "$RUN" --initial-cluster-state new \
    --heartbeat-interval 100 --election-timeout 1000 \
    --experimental-watch-progress-notify-interval 1s >/dev/null
done
ETCD_IPS=()
for ((i = 0; i < 3; i++)); do ETCD_IPS+=("$(ip_of "$RUN-etcd$i")"); done
endpoints=""
for ip in "${ETCD_IPS[@]}"; do endpoints+="${endpoints:+,}$ip:2379"; done

wait_until() { # seconds description command...
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@"; do
    (($(date +%s) < deadline)) || fail "timed out after ${secs}s waiting for $what"
    sleep 0.3
  done
}
etcd_healthy() {
  local ip
  for ip in "${ETCD_IPS[@]}"; do
    curl -sf --max-time 2 "http://$ip:2379/health" | grep -q '"health":"true"' || return 1
  done
}
wait_until 90 "etcd healthy" etcd_healthy

# --- the pods -----------------------------------------------------------------------------------
POD_IPS=()
POD_IP6S=()
sandbox() { echo "$RUN-pod$1"; }
app_c() { echo "$RUN-pod$1-app"; }
proxy_c() { echo "$RUN-pod$1-proxy"; }

run_init() { # pod name-suffix: the init container; prints its log
  local c
  c="$(sandbox "$1")-$2"
  timeout 120 "$DOCKER" run --name "$c" --label "$LABEL=$RUN" --network "container:$(sandbox "$1")" \
    --user 0 --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW --entrypoint k8shmir-init \
    "$PROXY_IMAGE" --app-port "$APP_PORT" --proxy-port "$PROXY_PORT" --admin-port "$ADMIN_PORT" \
    --proxy-uid "$PROXY_UID" 2>&1 || fail "init container $c failed"
}

nat_rules() { # pod [iptables-save|ip6tables-save]: the nat table without timestamps and counters
  timeout 60 "$DOCKER" run --rm --network "container:$(sandbox "$1")" --user 0 --cap-drop ALL \
    --cap-add NET_ADMIN --cap-add NET_RAW --entrypoint "${2:-iptables-save}" "$PROXY_IMAGE" -t nat |
    grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]$/[-]/'
}

start_app() { timeout 60 "$DOCKER" start "$(app_c "$1")" >/dev/null; }
start_proxy() { timeout 60 "$DOCKER" start "$(proxy_c "$1")" >/dev/null; }

for ((i = 0; i < N; i++)); do
  timeout 60 "$DOCKER" run -d --name "$(sandbox "$i")" --hostname "pod$i" --network "$RUN" \
    --label "$LABEL=$RUN" "$BASE" sleep infinity >/dev/null
  POD_IPS+=("$(ip_of "$(sandbox "$i")")")
  POD_IP6S+=("$(ip6_of "$(sandbox "$i")")")
  [[ "${POD_IP6S[$i]}" == *:* ]] || fail "pod$i has no IPv6 address ('${POD_IP6S[$i]}')"

  out=$(run_init "$i" init)
  grep -q "IPv4 done: .* 12 changes" <<<"$out" || fail "pod$i init: unexpected output: $out"
  grep -q "IPv6 done: .* 12 changes" <<<"$out" || fail "pod$i init: no ip6tables rules: $out"
  before=$(nat_rules "$i")
  before6=$(nat_rules "$i" ip6tables-save)
  expect_eq "$(grep -c '^-A .*K8SHMIR' <<<"$before" || true)" 8 "pod$i: k8shmir's rules (2 jumps, 6 in its chains)"
  expect_eq "$(grep -c '^-A .*K8SHMIR' <<<"$before6" || true)" 8 "pod$i: k8shmir's ip6tables rules"
  grep -qF -- "-A K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport $APP_PORT -m owner ! --uid-owner $PROXY_UID" <<<"$before" ||
    fail "pod$i: no OUTPUT redirect for local callers: $before"
  grep -qF -- "-A K8SHMIR_OUTPUT -d ::1/128 -p tcp -m tcp --dport $APP_PORT -m owner ! --uid-owner $PROXY_UID" <<<"$before6" ||
    fail "pod$i: no OUTPUT redirect for local callers over ::1: $before6"
  # A second run (the kubelet re-runs init containers when it recreates a pod's sandbox; an
  # operator may run it by hand) adds nothing.
  out=$(run_init "$i" init-again)
  expect_eq "$(grep -c "0 changes (the rules were already in place)" <<<"$out" || true)" 2 "pod$i second init (both families): $out"
  expect_eq "$(nat_rules "$i")" "$before" "pod$i: iptables-save after a second init run"
  expect_eq "$(nat_rules "$i" ip6tables-save)" "$before6" "pod$i: ip6tables-save after a second init run"

  timeout 60 "$DOCKER" create --name "$(app_c "$i")" --label "$LABEL=$RUN" \
    --network "container:$(sandbox "$i")" "$COUNTER_IMAGE" --host :: --port "$APP_PORT" >/dev/null
  timeout 60 "$DOCKER" create --name "$(proxy_c "$i")" --label "$LABEL=$RUN" \
    --network "container:$(sandbox "$i")" \
    -e "K8SHMIR_ETCD_ENDPOINTS=$endpoints" -e K8SHMIR_GROUP=e2e -e "K8SHMIR_REPLICA_ID=pod$i" \
    -e "K8SHMIR_APP_PORT=$APP_PORT" -e "K8SHMIR_LISTEN_PORT=$PROXY_PORT" \
    -e "K8SHMIR_ADMIN_PORT=$ADMIN_PORT" "$PROXY_IMAGE" >/dev/null
  start_app "$i"
  start_proxy "$i"
done
for ((i = 0; i < N; i++)); do
  expect_eq "$(timeout 30 "$DOCKER" exec "$(proxy_c "$i")" id -u)" "$PROXY_UID" "pod$i proxy uid"
done

ready() { curl -sf --max-time 2 -o /dev/null "http://${POD_IPS[$1]}:$ADMIN_PORT/readyz"; }
all_ready() {
  local i
  for ((i = 0; i < N; i++)); do ready "$i" || return 1; done
}
wait_until 120 "all proxies ready" all_ready
stamp "3 pods ready: ${POD_IPS[*]} ${POD_IP6S[*]}"

# --- requests -----------------------------------------------------------------------------------
# Each request is retried only when it certainly had no effect: no connection (the proxy
# restarting behind the redirect), or 503 with K8shmir-Outcome: not-committed. Anything else that
# is not 200 + committed fails the test (an "unknown" outcome would make the expected values
# unknowable).
RESP_STATUS="" RESP_HEADERS="" RESP_BODY=""

parse_raw() { # raw HTTP response on stdin -> RESP_*
  local raw
  raw=$(cat)
  RESP_HEADERS=${raw%%$'\r\n\r\n'*}
  RESP_BODY=${raw#*$'\r\n\r\n'}
  RESP_STATUS=$(head -n1 <<<"$RESP_HEADERS" | awk '{print $2}')
}

header() { # name -> value from RESP_HEADERS
  grep -i "^$1:" <<<"$RESP_HEADERS" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//;s/ *$//'
}

# From outside the pod: the host, to the pod's address on the app port.
http_outside() { # pod method path body content-type
  local raw rc=0
  raw=$(curl -sS --max-time 20 -D - -X "$2" -H 'Expect:' -H "Content-Type: $5" \
    --data-binary "$4" "http://${POD_IPS[$1]}:$APP_PORT$3" 2>/dev/null) || rc=$?
  ((rc == 0)) || { RESP_STATUS=conn$rc; return 0; }
  parse_raw <<<"$raw"
}

# The same to the pod's IPv6 address.
http_outside6() { # pod method path body content-type
  local raw rc=0
  raw=$(curl -sS -g --max-time 20 -D - -X "$2" -H 'Expect:' -H "Content-Type: $5" \
    --data-binary "$4" "http://[${POD_IP6S[$1]}]:$APP_PORT$3" 2>/dev/null) || rc=$?
  ((rc == 0)) || { RESP_STATUS=conn$rc; return 0; }
  parse_raw <<<"$raw"
}

# From inside the pod: a process in the app container, to 127.0.0.1:app-port (what kubectl
# port-forward does; LOCAL_HOST=::1 for IPv6), as `user`.
LOCAL_HOST=127.0.0.1
http_local() { # pod user method path body content-type
  local raw rc=0
  raw=$(printf '%s' "$5" | timeout 30 "$DOCKER" exec -i -u "$2" "$(app_c "$1")" bash -c '
    body=$(cat)
    exec 3<>"/dev/tcp/$5/$1" || exit 7
    printf "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" \
      "$2" "$3" "$4" "${#body}" "$body" >&3
    timeout 20 cat <&3' _ "$APP_PORT" "$3" "$4" "$6" "$LOCAL_HOST") || rc=$?
  ((rc == 0)) || { RESP_STATUS=conn$rc; return 0; }
  parse_raw <<<"$raw"
}

LAST_INDEX=0
replicated() { # what expected-json-without-index http_* args...
  local what=$1 expected=$2 attempt index
  shift 2
  for ((attempt = 1; attempt <= 60; attempt++)); do
    "$@"
    if [[ "$RESP_STATUS" == conn7 ]] ||
      [[ "$RESP_STATUS" == 503 && "$(header K8shmir-Outcome)" == not-committed ]]; then
      sleep 0.5
      continue
    fi
    break
  done
  expect_eq "$RESP_STATUS" 200 "$what: status (headers: $RESP_HEADERS body: $RESP_BODY)"
  expect_eq "$(header K8shmir-Outcome)" committed "$what: K8shmir-Outcome"
  index=$(header K8shmir-Log-Index)
  [[ "$index" =~ ^[0-9]+$ ]] || fail "$what: K8shmir-Log-Index '$index'"
  ((index > LAST_INDEX)) || fail "$what: log index $index not above the previous $LAST_INDEX"
  LAST_INDEX=$index
  expect_eq "$(jq -cS . <<<"$RESP_BODY")" "$(jq -cS --argjson i "$index" '. + {index: $i}' <<<"$expected")" \
    "$what: response"
}

int_op() { printf '{"op":"%s","value":%s}' "$1" "$2"; }
JSON=application/json
TEXT=text/plain

stamp "client traffic to each pod's address"
replicated "pod0 SET 5" '{"value":5}' http_outside 0 POST /integer "$(int_op SET 5)" $JSON
replicated "pod1 MUL 3" '{"value":15}' http_outside 1 POST /integer "$(int_op MUL 3)" $JSON
replicated "pod2 DEC 4" '{"value":11}' http_outside 2 POST /integer "$(int_op DEC 4)" $JSON
replicated "pod0 journal" '{"length":4}' http_outside 0 POST /journal "p0-a" $TEXT
replicated "pod1 journal" '{"length":5}' http_outside 1 POST /journal "p1-a" $TEXT
replicated "pod2 journal" '{"length":6}' http_outside 2 POST /journal "p2-a" $TEXT

stamp "local connections inside pods (port-forward's path)"
replicated "pod1 local MUL -2" '{"value":-22}' http_local 1 0 POST /integer "$(int_op MUL -2)" $JSON
replicated "pod2 local journal" '{"length":8}' http_local 2 1000 POST /journal "p2-local" $TEXT
# The proxy's uid is not redirected: it reaches the app itself (no K8shmir headers, no entry).
http_local 0 "$PROXY_UID" GET /integer "" $JSON
expect_eq "$RESP_STATUS" 200 "direct read as uid $PROXY_UID"
expect_eq "$(header K8shmir-Outcome)" "" "direct read as uid $PROXY_UID: K8shmir-Outcome"
expect_eq "$(jq -c . <<<"$RESP_BODY")" '{"value":-22}' "direct read as uid $PROXY_UID"

# All apps applied index `LAST_INDEX`?
app_index() { # pod -> the app's last index, read directly as the proxy's uid
  http_local "$1" "$PROXY_UID" GET /last-index "" $JSON
  [[ "$RESP_STATUS" == 200 ]] && jq -r '.index // 0' <<<"$RESP_BODY"
}
all_applied() {
  local i
  for ((i = 0; i < N; i++)); do
    [[ "$(app_index "$i")" == "$LAST_INDEX" ]] || return 1
  done
}

stamp "kill and restart pod1's app container"
timeout 60 "$DOCKER" kill "$(app_c 1)" >/dev/null
start_app 1
replicated "pod1 INC 100 after app restart" '{"value":78}' http_outside 1 POST /integer "$(int_op INC 100)" $JSON
replicated "pod0 journal" '{"length":10}' http_outside 0 POST /journal "after-app-restart" $TEXT
wait_until 60 "every app at index $LAST_INDEX" all_applied

stamp "kill and restart pod2's proxy container"
timeout 60 "$DOCKER" kill "$(proxy_c 2)" >/dev/null
start_proxy 2
replicated "pod2 MUL 2 after proxy restart" '{"value":156}' http_outside 2 POST /integer "$(int_op MUL 2)" $JSON
replicated "pod0 reset" '{"value":0}' http_outside 0 POST /integer/reset "" $JSON
replicated "pod2 INC 9" '{"value":9}' http_outside 2 POST /integer "$(int_op INC 9)" $JSON

stamp "kill and restart pod0's app and proxy containers at once"
timeout 60 "$DOCKER" kill "$(app_c 0)" "$(proxy_c 0)" >/dev/null
start_app 0
start_proxy 0
replicated "pod0 DEC 10 after both restarted" '{"value":-1}' http_outside 0 POST /integer "$(int_op DEC 10)" $JSON
replicated "pod1 journal" '{"length":15}' http_outside 1 POST /journal "end" $TEXT
wait_until 60 "all proxies ready" all_ready

# IPv6: the apps listen on [::], so only the ip6tables rules stand between these clients and a
# request applied on one replica only.
stamp "clients over IPv6 (${POD_IP6S[*]}) and local callers over ::1"
replicated "pod2 IPv6 MUL -7" '{"value":7}' http_outside6 2 POST /integer "$(int_op MUL -7)" $JSON
replicated "pod0 IPv6 journal" '{"length":17}' http_outside6 0 POST /journal "p0-v6" $TEXT
LOCAL_HOST=::1
replicated "pod1 local [::1] INC 5" '{"value":12}' http_local 1 1000 POST /integer "$(int_op INC 5)" $JSON
http_local 0 "$PROXY_UID" GET /integer "" $JSON
expect_eq "$RESP_STATUS" 200 "direct read over ::1 as uid $PROXY_UID"
expect_eq "$(header K8shmir-Outcome)" "" "direct read over ::1 as uid $PROXY_UID: K8shmir-Outcome"
LOCAL_HOST=127.0.0.1
wait_until 60 "every app at index $LAST_INDEX" all_applied

# --- every journal, read from each app directly, identical and as expected ----------------------
stamp "comparing journals"
expected_ops='[
 {"op":"SET","value":5},{"op":"MUL","value":3},{"op":"DEC","value":4},
 {"op":"APPEND","text":"p0-a"},{"op":"APPEND","text":"p1-a"},{"op":"APPEND","text":"p2-a"},
 {"op":"MUL","value":-2},{"op":"APPEND","text":"p2-local"},
 {"op":"INC","value":100},{"op":"APPEND","text":"after-app-restart"},
 {"op":"MUL","value":2},{"op":"RESET"},{"op":"INC","value":9},
 {"op":"DEC","value":10},{"op":"APPEND","text":"end"},
 {"op":"MUL","value":-7},{"op":"APPEND","text":"p0-v6"},{"op":"INC","value":5}]'
first=""
for ((i = 0; i < N; i++)); do
  http_local "$i" "$PROXY_UID" GET /journal "" $JSON
  expect_eq "$RESP_STATUS" 200 "pod$i journal read"
  journal=$(jq -cS '.entries' <<<"$RESP_BODY")
  expect_eq "$(jq -cS 'map(del(.index))' <<<"$journal")" "$(jq -cS . <<<"$expected_ops")" "pod$i journal operations"
  jq -e 'map(.index) | . == (sort | unique) and length == 18 and (.[-1] > 0)' <<<"$journal" >/dev/null ||
    fail "pod$i journal indices not strictly increasing: $journal"
  expect_eq "$(jq -r '.[-1].index' <<<"$journal")" "$LAST_INDEX" "pod$i last journal index"
  if [[ -z "$first" ]]; then first=$journal; fi
  expect_eq "$journal" "$first" "pod$i journal identical to pod0's"
  http_local "$i" "$PROXY_UID" GET /journal/digest "" $JSON
  expect_eq "$(jq -c '{value, count, violations, last_index}' <<<"$RESP_BODY")" \
    "{\"value\":12,\"count\":18,\"violations\":0,\"last_index\":$LAST_INDEX}" "pod$i digest"
done

# --- k8shmirctl from the proxy image, as `kubectl exec` runs it --------------------------------
# The proxy container's environment names the etcd endpoints and the group: no flags needed.
stamp "k8shmirctl status inside pod0's proxy container"
CTL_OUT="" CTL_RC=0
ctl_status() {
  CTL_RC=0
  CTL_OUT=$(timeout 60 "$DOCKER" exec "$(proxy_c 0)" k8shmirctl status --output json 2>&1) || CTL_RC=$?
}
# Replica records are refreshed every 2 s: wait until each shows the last index.
ctl_caught_up() {
  ctl_status
  ((CTL_RC == 0)) &&
    jq -e --argjson i "$LAST_INDEX" '[.replicas[] | select(.serving and .applied_index == $i)] | length == 3' \
      <<<"$CTL_OUT" >/dev/null
}
wait_until 30 "k8shmirctl showing 3 serving replicas at index $LAST_INDEX" ctl_caught_up ||
  fail "k8shmirctl status (exit $CTL_RC): $CTL_OUT"
expect_eq "$(jq -c '[.replicas[].id] | sort' <<<"$CTL_OUT")" '["pod0","pod1","pod2"]' "k8shmirctl replicas"
expect_eq "$(jq -c '{exit_code, verdict, members: (.etcd.members | length), alarms: .etcd.alarms}' <<<"$CTL_OUT")" \
  '{"exit_code":0,"verdict":"healthy","members":3,"alarms":[]}' "k8shmirctl verdict and etcd health"
CTL_RC=0
CTL_OUT=$(timeout 60 "$DOCKER" exec "$(proxy_c 0)" k8shmirctl groups 2>&1) || CTL_RC=$?
expect_eq "$CTL_RC" 0 "k8shmirctl groups exit code ($CTL_OUT)"
grep -qE '^e2e +1 +3 ' <<<"$CTL_OUT" || fail "k8shmirctl groups does not list e2e (format 1, 3 replicas): $CTL_OUT"

stamp "PASS: 3 pods, 18 replicated requests (3 over IPv6), identical journals (last index $LAST_INDEX)"
echo "1 passed, 0 failed"
