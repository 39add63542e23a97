#!/usr/bin/env bash
# Prepares this machine for the container tests (CTest label `e2e`): Debian's Docker engine
# (docker.io) running, and an offline-built Debian bookworm base image, because no image can be
# pulled from a registry here. Idempotent and bounded:
#   1. apt-installs docker.io and debootstrap when missing (nothing else touches apt);
#   2. starts dockerd when no engine answers, and waits (at most 90 s) until it does;
#   3. builds the base image with `debootstrap --variant=minbase bookworm` + `docker import`,
#      unless an image of that name exists already.
# Must run as root. Prints the docker client to use on its last line ("docker=/usr/bin/docker").
#
# Environment:
#   K8SHMIR_BASE_IMAGE     name of the base image (default k8shmir/base:bookworm)
#   K8SHMIR_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the first of this machine's apt
#                          sources, else http://deb.debian.org/debian)
#   K8SHMIR_DOCKERD_LOG    dockerd's log when this script starts it (default /var/log/k8shmir-dockerd.log)
set -euo pipefail

BASE_IMAGE=${K8SHMIR_BASE_IMAGE:-k8shmir/base:bookworm}
DOCKERD_LOG=${K8SHMIR_DOCKERD_LOG:-/var/log/k8shmir-dockerd.log}
# Debian's client: /usr/local/bin may hold another (newer) docker client that needs plugins.
DOCKER=/usr/bin/docker

log() { printf 'docker-setup: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

((EUID == 0)) || die "run as root: installing packages and starting dockerd need it"

# --- 1. packages ---------------------------------------------------------------------------------
is_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}
missing=()
for pkg in docker.io debootstrap iptables ca-certificates; do
  is_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package's maintainer scripts must not start a daemon: this script starts it below.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# added by k8shmir scripts/docker-setup.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    added_policy=1
  fi
  rc=0
  { apt-get update -q && apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"; } || rc=$?
  if ((added_policy)); then rm -f "$policy"; fi
  ((rc == 0)) || die "apt-get failed (exit $rc)"
fi
[[ -x "$DOCKER" ]] || die "$DOCKER missing after installing docker.io"

# --- 2. the engine -------------------------------------------------------------------------------
engine_up() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

if ! engine_up; then
  if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd runs but does not answer yet; waiting"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    # A pid file left by a dockerd that was killed with the machine's processes would stop it.
    for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
      if [[ -f "$f" ]] && ! kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null; then rm -f "$f"; fi
    done
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # Its own session, detached from this script's stdio, so that it outlives the caller.
    setsid dockerd --host unix:///var/run/docker.sock >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for ((i = 0; i < 90; i++)); do
    engine_up && break
    sleep 1
  done
  engine_up || {
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    die "the Docker engine did not answer within 90 s (log: $DOCKERD_LOG)"
  }
  log "Docker engine is up"
fi

# --- 3. the base image ---------------------------------------------------------------------------
if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE exists"
else
  mirror=${K8SHMIR_DEBIAN_MIRROR:-}
  if [[ -z "$mirror" ]]; then
    mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
      /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
      head -n1 | awk '{print $2}') || true
    mirror=${mirror:-http://deb.debian.org/debian}
  fi
  security=${mirror%/debian*}/debian-security
  root=$(mktemp -d /var/tmp/k8shmir-rootfs-XXXXXX)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
  start=$(date +%s)
  timeout 900 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    die "debootstrap failed"
  }
  rm -f "$root.log"
  # As Debian's official images: updates and security sources, no recommends, no apt caches.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$root/etc/apt/apt.conf.d/90k8shmir-no-recommends"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
  tar -C "$root" --numeric-owner -c . |
    "$DOCKER" import --change 'CMD ["/bin/bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  log "base image $BASE_IMAGE built in $(($(date +%s) - start)) s"
fi
echo "docker=$DOCKER"
