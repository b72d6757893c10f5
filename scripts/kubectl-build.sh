#!/usr/bin/env bash
# Builds kubectl, at the control plane's Kubernetes version, into the tools
# cache and prints its path. kubectl comes from the same wrapper module as
# kube-apiserver (test/controlplane/kube); the few modules kubectl adds are
# resolved with -mod=mod in a scratch copy of that module, so the repository's
# go.mod and go.sum are never rewritten.
#
#   scripts/kubectl-build.sh        build if missing, print the kubectl path
#   KEYWARD_CACHE_DIR=/path ...     cache root (default ${XDG_CACHE_HOME:-~/.cache}/keyward)
#
# Idempotent: a kubectl built from the same recipe is kept, and a second run
# returns at once.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cp_dir="$repo/test/controlplane"
# shellcheck source=../test/controlplane/versions.env
. "$cp_dir/versions.env"

say() { printf '[kubectl] %s\n' "$*" >&2; }
sum=(sha256sum)
command -v sha256sum >/dev/null 2>&1 || sum=(shasum -a 256)

bin="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}/tools/bin"
key="$(cat "$cp_dir/versions.env" "$cp_dir/kube/go.mod" "$cp_dir/kube/go.sum" "$0" "$repo/scripts/kube-ldflags.sh" | "${sum[@]}" | cut -c1-16)"
if [[ -x "$bin/kubectl" ]] && [[ "$(cat "$bin/.kubectl-hash" 2>/dev/null)" == "$key" ]]; then
  say "kubectl ${KUBERNETES_VERSION}: cached"
  echo "$bin/kubectl"
  exit 0
fi

command -v go >/dev/null || { say "Go is required to build kubectl (go 1.26+)"; exit 1; }
mkdir -p "$bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$cp_dir/kube/go.mod" "$cp_dir/kube/go.sum" "$tmp/"

# shellcheck source=kube-ldflags.sh
. "$repo/scripts/kube-ldflags.sh"
ldflags="$(kube_ldflags "$KUBERNETES_VERSION")"

say "building kubectl ${KUBERNETES_VERSION} into $bin (first build takes minutes)"
start=$SECONDS
(cd "$tmp" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" \
  go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl) \
  || { say "build failed"; exit 1; }
"$tmp/kubectl" version --client >/dev/null || { say "the built kubectl does not run"; exit 1; }
mv "$tmp/kubectl" "$bin/kubectl"
echo "$key" >"$bin/.kubectl-hash"
say "kubectl ready in $((SECONDS - start))s"
echo "$bin/kubectl"
