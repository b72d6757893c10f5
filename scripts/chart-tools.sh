#!/usr/bin/env bash
# Builds helm (used by the chart test: render, then validate against the real
# apiserver with a server-side dry run) into the cache. Idempotent.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
cache="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
bin="$cache/tools/bin"
mkdir -p "$bin"
if [[ -x "$bin/helm" ]] && [[ "$(cat "$bin/.helm-version" 2>/dev/null)" == "$HELM_VERSION" ]]; then
  echo "helm $HELM_VERSION: cached in $bin"
else
  echo "helm $HELM_VERSION: building into $bin (first run only, a few minutes)"
  GOBIN="$bin" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" >"$bin/.helm-version"
fi
