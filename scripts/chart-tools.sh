#!/usr/bin/env bash
# Builds helm (used by the chart test: render, then validate against the real
# apiserver with a server-side dry run) into the cache; the first build takes a
# few minutes. Idempotent.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/go-tools.sh"
install_go_tool helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION:-v3.22.0}"
