#!/usr/bin/env bash
# Builds the chart test's tools into the cache: helm (render, lint, then validate
# against the real apiserver with a server-side dry run) and kubeconform (schema
# validation of every rendered combination of the chart's toggles, against schemas
# generated from the control plane's own OpenAPI: test/support/kube-schemas.ts).
# Also copies the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs out of
# its Go module into the cache (tools/crds/monitoring), so that the chart's
# monitoring objects are validated like the rest. The first build takes a few
# minutes. Idempotent.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/go-tools.sh"
install_go_tool helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION:-v3.22.0}"
install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "${KUBECONFORM_VERSION:-v0.7.0}"

po_version="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
crds="$(dirname "$bin")/crds/monitoring"
if [[ "$(cat "$crds/.version" 2>/dev/null)" == "$po_version" ]]; then
  echo "Prometheus Operator CRDs $po_version: cached in $crds"
else
  echo "Prometheus Operator CRDs $po_version: copying into $crds"
  module_dir="$(cd "${TMPDIR:-/tmp}" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$po_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  mkdir -p "$crds"
  for f in servicemonitors prometheusrules; do
    install -m 644 "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$f.yaml" "$crds/"
  done
  echo "$po_version" >"$crds/.version"
fi
