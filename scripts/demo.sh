#!/usr/bin/env bash
# k8shmir demo (`make demo`): on loopback, start a 3-member etcd cluster, 3 counter apps and
# 3 k8shmir proxies; send a short concurrent workload of non-commutative operations through the
# proxies; then show, per replica, what each app applied, and check that all three agree.
#
# Everything it starts runs in its own process group and is stopped on exit (also on Ctrl-C);
# logs go to a temporary directory that is removed on exit (set K8SHMIR_DEMO_KEEP=1 to keep it).
#
# Environment:
#   K8SHMIR_DEMO_BASE_PORT  first of the 15 consecutive loopback ports used (default 23790)
#   K8SHMIR_DEMO_REQUESTS   requests per client (default 40)
#   K8SHMIR_DEMO_KEEP       1 = keep the temporary directory with all logs
#   BUILD_DIR               where the binaries are (default: <repo>/build)
#   ETCD_BIN                etcd binary (default /usr/bin/etcd)

# Functions called through traps and wait_for look unreachable to shellcheck:
# shellcheck disable=SC2317
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SCRIPT")/.." && pwd)

# ---------------------------------------------------------------------------------------------
# Workload client, run as `demo.sh __client ID PORT COUNT SEED DEADLINE RESULTS` in its own
# session so that the parent can stop it (and its curl) as one process group.
# Each result line: "<http code> <kind> <journal text or ->".
# ---------------------------------------------------------------------------------------------
if [[ "${1:-}" == "__client" ]]; then
  id=$2 port=$3 count=$4 seed=$5 deadline=$6 results=$7
  RANDOM=$seed
  base="http://127.0.0.1:$port"
  : >"$results"
  for ((n = 1; n <= count; n++)); do
    if (($(date +%s) >= deadline)); then
      echo "skipped skipped -" >>"$results"
      continue
    fi
    r=$((RANDOM % 20))
    text=-
    if ((r == 0)); then
      kind=reset
      args=(-X POST --data-binary '' "$base/integer/reset")
    elif ((r < 10)); then
      case $((RANDOM % 4)) in
        0) op=SET value=$((RANDOM % 50 + 1)) ;;
        1) op=INC value=$((RANDOM % 10 + 1)) ;;
        2) op=MUL value=$((RANDOM % 2 + 2)) ;;
        *) op=DEC value=$((RANDOM % 10 + 1)) ;;
      esac
      kind=$op
      args=(-H 'Content-Type: application/json'
        --data-binary "{\"op\":\"$op\",\"value\":$value}" "$base/integer")
    else
      kind=journal
      text="client-$id op $n"
      args=(-H 'Content-Type: text/plain' --data-binary "$text" "$base/journal")
    fi
    code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "${args[@]}" 2>/dev/null) || true
    [[ "$code" =~ ^[0-9]{3}$ ]] || code=000
    echo "$code $kind $text" >>"$results"
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
PROXY_BIN=$BUILD_DIR/k8shmir-proxy
APP_BIN=$BUILD_DIR/examples/counter/counter-app
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
BASE_PORT=${K8SHMIR_DEMO_BASE_PORT:-23790}
REQUESTS=${K8SHMIR_DEMO_REQUESTS:-40}
KEEP=${K8SHMIR_DEMO_KEEP:-0}
N=3
GROUP=demo

READY_TIMEOUT=30    # seconds for all proxies to report /readyz 200
WORKLOAD_TIMEOUT=30 # seconds after which clients stop sending
CONVERGE_TIMEOUT=20 # seconds for all replicas to reach the same applied index

# Port block: etcd client, etcd peer, app, proxy, admin; one per replica each.
declare -a ETCD_CLIENT ETCD_PEER APP_PORT PROXY_PORT ADMIN_PORT
for ((i = 0; i < N; i++)); do
  ETCD_CLIENT[i]=$((BASE_PORT + i))
  ETCD_PEER[i]=$((BASE_PORT + N + i))
  APP_PORT[i]=$((BASE_PORT + 2 * N + i))
  PROXY_PORT[i]=$((BASE_PORT + 3 * N + i))
  ADMIN_PORT[i]=$((BASE_PORT + 4 * N + i))
done
LAST_PORT=$((BASE_PORT + 5 * N - 1))

if [[ -t 1 ]]; then
  B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' D=$'\e[2m' X=$'\e[0m'
else
  B='' G='' R='' Y='' D='' X=''
fi

say() { printf '%s\n' "$*"; }
step() { printf '%s[%s]%s %s ' "$B" "$1" "$X" "$2"; }
ok() { printf '%sok%s%s\n' "$G" "$X" "${1:+ $1}"; }
die() {
  printf '\n%sERROR:%s %s\n' "$R$B" "$X" "$*" >&2
  exit 1
}
now_ms() { date +%s%3N; }
elapsed() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f s", (b - a) / 1000 }'; }

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
for tool in curl jq ss awk; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' is not installed; run scripts/install-deps.sh (or 'make demo') first"
done
[[ -x "$ETCD_BIN" ]] || die "etcd not found at $ETCD_BIN; run scripts/install-deps.sh (package etcd-server)"
[[ -x "$PROXY_BIN" ]] || die "$PROXY_BIN not found; run 'make build' (or 'make demo')"
[[ -x "$APP_BIN" ]] || die "$APP_BIN not found; run 'make build' (or 'make demo')"
if ! [[ "$BASE_PORT" =~ ^[0-9]+$ ]] || ((BASE_PORT < 1024 || LAST_PORT > 65535)); then
  die "K8SHMIR_DEMO_BASE_PORT must be a number in 1024..$((65535 - 5 * N + 1))"
fi

[[ "$REQUESTS" =~ ^[1-9][0-9]{0,4}$ ]] || die "K8SHMIR_DEMO_REQUESTS must be a number in 1..99999"

busy=()
for ((p = BASE_PORT; p <= LAST_PORT; p++)); do
  if [[ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ]]; then busy+=("$p"); fi
done
if ((${#busy[@]})); then
  die "the demo needs loopback ports $BASE_PORT-$LAST_PORT, but these are in use: ${busy[*]}
       (a previous demo still running?) Free them, or choose another block, e.g.:
       K8SHMIR_DEMO_BASE_PORT=25790 make demo"
fi

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and cleanup
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/k8shmir-demo.XXXXXX")
declare -a PIDS=() NAMES=() LOGS=() WATCH=()
CLEANED=0

# stop_group SECONDS PID...: SIGTERM to each process group, SIGKILL to those still there after SECONDS.
stop_group() {
  local grace=$1 pid
  shift
  (($#)) || return 0
  for pid in "$@"; do kill -TERM -- "-$pid" || kill -TERM "$pid" || true; done
  local deadline=$(($(date +%s%3N) + grace * 1000))
  for pid in "$@"; do
    while kill -0 "$pid" && (($(date +%s%3N) < deadline)); do sleep 0.05; done
    if kill -0 "$pid"; then kill -KILL -- "-$pid" || kill -KILL "$pid" || true; fi
  done
}

stop_all() {
  ((CLEANED)) && return 0
  CLEANED=1
  local k
  local -a others=() etcds=()
  for k in "${!PIDS[@]}"; do
    if [[ "${NAMES[k]}" == etcd-* ]]; then etcds+=("${PIDS[k]}"); else others+=("${PIDS[k]}"); fi
  done
  {
    # Clients, proxies and apps first, then etcd. A throwaway etcd member that is asked to stop
    # while its peers stop too can spend seconds on leadership transfer: it gets 2 s, then SIGKILL.
    stop_group 3 "${others[@]}"
    stop_group 2 "${etcds[@]}"
    wait
  } 2>/dev/null
  return 0
}

on_exit() {
  local rc=$?
  stop_all
  if [[ "$KEEP" == 1 ]]; then
    printf '%slogs kept in %s%s\n' "$D" "$WORK" "$X"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'printf "\n%sinterrupted, stopping everything%s\n" "$Y" "$X" >&2; exit 130' INT
trap 'printf "\n%sterminated, stopping everything%s\n" "$Y" "$X" >&2; exit 143' TERM

# start NAME LOG CMD...: runs CMD in a new session (so its own process group) with output to LOG.
# A service (anything but a workload client) must stay up: check_alive watches it.
start() {
  local name=$1 log=$2
  shift 2
  setsid "$@" </dev/null >"$log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
  LOGS+=("$log")
  if [[ "$name" == client-* ]]; then WATCH+=(0); else WATCH+=(1); fi
}

# Fails loudly, with the tail of its log, if any started process has exited.
check_alive() {
  local k
  for k in "${!PIDS[@]}"; do
    ((WATCH[k])) || continue
    if ! kill -0 "${PIDS[k]}" 2>/dev/null; then
      printf '\n%sERROR:%s %s exited unexpectedly; last lines of its log:\n' "$R$B" "$X" \
        "${NAMES[k]}" >&2
      tail -n 15 "${LOGS[k]}" 2>/dev/null | sed 's/^/    | /' >&2
      exit 1
    fi
  done
}

# wait_for SECONDS DESCRIPTION FUNCTION: polls FUNCTION until it succeeds, or fails loudly.
wait_for() {
  local timeout=$1 what=$2 fn=$3
  local deadline=$(($(date +%s) + timeout))
  until "$fn"; do
    check_alive
    (($(date +%s) < deadline)) || die "timed out after ${timeout} s waiting for $what"
    sleep 0.2
  done
}

http_code() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# 1. etcd
# ---------------------------------------------------------------------------------------------
say "${B}k8shmir demo${X}: 3 etcd members, 3 counter apps, 3 k8shmir proxies on 127.0.0.1:$BASE_PORT-$LAST_PORT"
say "${D}work dir: $WORK${X}"
say ""

t0=$(now_ms)
step 1/6 "starting a 3-member etcd cluster (client ports ${ETCD_CLIENT[0]}-${ETCD_CLIENT[N - 1]}) ..."
initial_cluster=""
endpoints=""
for ((i = 0; i < N; i++)); do
  initial_cluster+="${initial_cluster:+,}etcd-$((i + 1))=http://127.0.0.1:${ETCD_PEER[i]}"
  endpoints+="${endpoints:+,}127.0.0.1:${ETCD_CLIENT[i]}"
done
for ((i = 0; i < N; i++)); do
  name=etcd-$((i + 1))
  start "$name" "$WORK/$name.log" "$ETCD_BIN" \
    --name "$name" \
    --data-dir "$WORK/$name.data" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
    --initial-cluster "$initial_cluster" \
    --initial-cluster-state new \
    --initial-cluster-token "k8shmir-demo-$$" \
    --heartbeat-interval 50 \
    --election-timeout 500 \
    --experimental-watch-progress-notify-interval 1s \
    --logger zap \
    --log-outputs stderr
done
etcd_healthy() {
  local i
  for ((i = 0; i < N; i++)); do
    [[ "$(curl -s --max-time 2 "http://127.0.0.1:${ETCD_CLIENT[i]}/health" 2>/dev/null |
      jq -r '.health' 2>/dev/null)" == "true" ]] || return 1
  done
}
wait_for 20 "the etcd cluster to become healthy" etcd_healthy
ok "($(elapsed "$t0"))"

# ---------------------------------------------------------------------------------------------
# 2. counter apps
# ---------------------------------------------------------------------------------------------
t0=$(now_ms)
step 2/6 "starting 3 counter apps (ports ${APP_PORT[0]}-${APP_PORT[N - 1]}) ..."
for ((i = 0; i < N; i++)); do
  start "counter-app-$((i + 1))" "$WORK/app-$((i + 1)).log" \
    "$APP_BIN" --host 127.0.0.1 --port "${APP_PORT[i]}"
done
apps_up() {
  local i
  for ((i = 0; i < N; i++)); do
    [[ "$(http_code "http://127.0.0.1:${APP_PORT[i]}/last-index")" == 200 ]] || return 1
  done
}
wait_for 10 "the counter apps to answer GET /last-index" apps_up
ok "($(elapsed "$t0"))"

# ---------------------------------------------------------------------------------------------
# 3. proxies
# ---------------------------------------------------------------------------------------------
t0=$(now_ms)
step 3/6 "starting 3 k8shmir proxies (ports ${PROXY_PORT[0]}-${PROXY_PORT[N - 1]}, admin ${ADMIN_PORT[0]}-${ADMIN_PORT[N - 1]}) ..."
for ((i = 0; i < N; i++)); do
  start "k8shmir-proxy replica-$((i + 1))" "$WORK/proxy-$((i + 1)).log" \
    "$PROXY_BIN" \
    --listen-address 127.0.0.1 --listen-port "${PROXY_PORT[i]}" \
    --app-host 127.0.0.1 --app-port "${APP_PORT[i]}" \
    --admin-address 127.0.0.1 --admin-port "${ADMIN_PORT[i]}" \
    --etcd-endpoints "$endpoints" \
    --group "$GROUP" \
    --replica-id "replica-$((i + 1))"
done
proxies_ready() {
  local i
  for ((i = 0; i < N; i++)); do
    [[ "$(http_code "http://127.0.0.1:${ADMIN_PORT[i]}/readyz")" == 200 ]] || return 1
  done
}
wait_for "$READY_TIMEOUT" "every proxy's GET /readyz to answer 200" proxies_ready
ok "($(elapsed "$t0"))"

# ---------------------------------------------------------------------------------------------
# 4. workload
# ---------------------------------------------------------------------------------------------
t0=$(now_ms)
step 4/6 "workload: $N concurrent clients x $REQUESTS requests (SET/INC/MUL/DEC, journal, reset) ..."
deadline=$(($(date +%s) + WORKLOAD_TIMEOUT))
client_pids=()
for ((i = 0; i < N; i++)); do
  start "client-$((i + 1))" "$WORK/client-$((i + 1)).log" \
    bash "$SCRIPT" __client "$((i + 1))" "${PROXY_PORT[i]}" "$REQUESTS" "$((1000 * (i + 1) + 7))" \
    "$deadline" "$WORK/client-$((i + 1)).results"
  client_pids+=("$!")
done
while :; do
  running=0
  for pid in "${client_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then running=1; fi
  done
  ((running)) || break
  (($(date +%s) < deadline + 15)) || die "workload clients did not finish in time"
  sleep 0.2
done
cat "$WORK"/client-*.results >"$WORK/results"
sent=$(awk '$1 != "skipped"' "$WORK/results" | wc -l)
n_ok=$(awk '$1 ~ /^2[0-9][0-9]$/' "$WORK/results" | wc -l)
n_skipped=$(awk '$1 == "skipped"' "$WORK/results" | wc -l)
n_bad=$((sent - n_ok))
if ((n_bad == 0 && n_skipped == 0)); then
  ok "- $sent requests sent, all answered 2xx ($(elapsed "$t0"))"
else
  codes=$(awk '$1 != "skipped" && $1 !~ /^2[0-9][0-9]$/ { c[$1]++ }
    END { s = ""; for (k in c) { printf "%s%s x%d", s, (k == "000" ? "no answer" : k), c[k]; s = ", " } }' \
    "$WORK/results")
  skipped_note=""
  if ((n_skipped)); then skipped_note=", $n_skipped not sent: time limit"; fi
  printf '%sdone%s: %d sent, %d answered 2xx, %d other (%s)%s\n' "$Y" "$X" "$sent" "$n_ok" \
    "$n_bad" "$codes" "$skipped_note"
fi
((n_ok > 0)) || die "no request was answered 2xx; logs: set K8SHMIR_DEMO_KEEP=1 and look in the work dir"

# ---------------------------------------------------------------------------------------------
# 5. convergence
# ---------------------------------------------------------------------------------------------
t0=$(now_ms)
step 5/6 "waiting until every replica has applied the same log index ..."
status_of() { curl -s --max-time 2 "http://127.0.0.1:${ADMIN_PORT[$1]}/status" 2>/dev/null || true; }
applied_of() { status_of "$1" | jq -r '.applied_index // empty' 2>/dev/null || true; }
converged() {
  local i first a
  first=$(applied_of 0)
  [[ "$first" =~ ^[0-9]+$ ]] || return 1
  ((first > 0)) || return 1
  for ((i = 1; i < N; i++)); do
    a=$(applied_of "$i")
    [[ "$a" == "$first" ]] || return 1
  done
}
wait_for "$CONVERGE_TIMEOUT" "all replicas to reach the same applied_index" converged
ok "- applied index $(applied_of 0) everywhere ($(elapsed "$t0"))"

# ---------------------------------------------------------------------------------------------
# 6. per-replica table, read directly from each app (reads through the proxy are replicated too)
# ---------------------------------------------------------------------------------------------
step 6/6 "state of each replica (read directly from its app, not through the proxy):"
say ""
say ""
fmt='  %-10s  %-10s  %8s  %10s  %14s  %8s  %5s  %s\n'
# shellcheck disable=SC2059
printf "$B$fmt$X" REPLICA STATE APPLIED "APP INDEX" VALUE JOURNAL VIOL DIGEST
declare -a V_VALUE V_COUNT V_HASH V_LAST
problems=()
for ((i = 0; i < N; i++)); do
  st=$(status_of "$i")
  rid=$(jq -r '.replica_id // "?"' <<<"$st" 2>/dev/null || echo "?")
  state=$(jq -r '.state // "?"' <<<"$st" 2>/dev/null || echo "?")
  applied=$(jq -r '.applied_index // "?"' <<<"$st" 2>/dev/null || echo "?")
  app="http://127.0.0.1:${APP_PORT[i]}"
  value=$(curl -s --max-time 5 "$app/integer" 2>/dev/null |
    jq -r 'if type == "object" then (.value // .integer // "?") else . end' 2>/dev/null || echo "?")
  digest=$(curl -s --max-time 5 "$app/journal/digest" 2>/dev/null || true)
  count=$(jq -r '.count // "?"' <<<"$digest" 2>/dev/null || echo "?")
  hash=$(jq -r '.hash // "?"' <<<"$digest" 2>/dev/null || echo "?")
  last=$(jq -r '.last_index // "?"' <<<"$digest" 2>/dev/null || echo "?")
  viol=$(jq -r '.violations // 0' <<<"$digest" 2>/dev/null || echo "?")
  # shellcheck disable=SC2059
  printf "$fmt" "${rid:0:10}" "${state:0:10}" "$applied" "$last" "$value" "$count" "$viol" "$hash"
  V_VALUE[i]=$value V_COUNT[i]=$count V_HASH[i]=$hash V_LAST[i]=$last
  [[ "$value" != "?" && "$count" != "?" && "$hash" != "?" ]] ||
    problems+=("replica-$((i + 1)): could not read its app's state")
  [[ "$viol" == 0 ]] || problems+=("replica-$((i + 1)): its app saw $viol Log-Index order violations")
  [[ "$state" == serving ]] || problems+=("replica-$((i + 1)): state is '$state', not 'serving'")
  # Every journal write that was answered 2xx must be in every journal.
  journal=$(curl -s --max-time 5 "$app/journal" 2>/dev/null || true)
  missing=0
  while read -r text; do
    grep -qE -- "${text}([^0-9]|\$)" <<<"$journal" || missing=$((missing + 1))
  done < <(awk '$1 ~ /^2[0-9][0-9]$/ && $2 == "journal" { $1 = ""; $2 = ""; sub(/^ +/, ""); print }' \
    "$WORK/results")
  ((missing == 0)) ||
    problems+=("replica-$((i + 1)): $missing acknowledged journal writes are missing from its journal")
done
say ""

for ((i = 1; i < N; i++)); do
  if [[ "${V_VALUE[i]}" != "${V_VALUE[0]}" || "${V_COUNT[i]}" != "${V_COUNT[0]}" ||
    "${V_HASH[i]}" != "${V_HASH[0]}" || "${V_LAST[i]}" != "${V_LAST[0]}" ]]; then
    problems+=("replica-$((i + 1)) differs from replica-1")
  fi
done

if ((${#problems[@]})); then
  printf '%s!!! REPLICAS DO NOT AGREE OR ARE NOT HEALTHY !!!%s\n' "$R$B" "$X" >&2
  for p in "${problems[@]}"; do printf '%s  - %s%s\n' "$R" "$p" "$X" >&2; done
  printf '%s(rerun with K8SHMIR_DEMO_KEEP=1 to keep all logs)%s\n' "$D" "$X" >&2
  exit 1
fi

printf '%sall %d replicas agree: value=%s, journal=%s entries, digest=%s%s\n' "$G$B" "$N" \
  "${V_VALUE[0]}" "${V_COUNT[0]}" "${V_HASH[0]}" "$X"
say "${D}stopping everything ...${X}"
exit 0
