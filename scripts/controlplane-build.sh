#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the wrapper Go
# modules in test/controlplane/ into a per-user cache outside the repository,
# once. A later run finds the binaries and returns at once.
#
#   scripts/controlplane-build.sh          build if missing, print the bin directory
#   KEYWARD_CACHE_DIR=/path ...            cache root (default ${XDG_CACHE_HOME:-~/.cache}/keyward)
#
# The cache key hashes the versions and the wrapper go.mod/go.sum, so changing
# the recipe builds into a new directory and never reuses a stale binary.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cp_dir="$repo/test/controlplane"
# shellcheck source=../test/controlplane/versions.env
. "$cp_dir/versions.env"

cache_root="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
key="$(cat "$cp_dir/versions.env" "$cp_dir"/kube/go.mod "$cp_dir"/kube/go.sum "$cp_dir"/etcd/go.mod "$cp_dir"/etcd/go.sum | sha256sum | cut -c1-12)"
bin="$cache_root/controlplane/k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-${key}/bin"

say() { printf '[controlplane] %s\n' "$*" >&2; }

if [[ -x "$bin/etcd" && -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" ]]; then
  say "using cached binaries in $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { say "Go is required to build the control plane (go 1.26+)"; exit 1; }
export GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0
mkdir -p "$bin"
tmp="$(mktemp -d "$bin/../build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# build <module dir> <label> <ldflags> <packages...>: compiles with a progress line
# every 50 packages (`go build -v` names each package as it compiles it).
# Everything goes to stderr: stdout carries only the final bin directory.
build() {
  local dir="$1" label="$2" ldflags="$3"; shift 3
  local total
  say "$label: downloading modules (first run only)"
  (cd "$dir" && go mod download)
  total="$(cd "$dir" && go list -deps "$@" | wc -l)"
  say "$label: compiling up to $total packages (cached packages are skipped; first build takes minutes)"
  local start=$SECONDS
  (cd "$dir" && go build -v -trimpath -ldflags "$ldflags" -o "$tmp/" "$@" 2>&1) \
    | awk -v label="$label" -v total="$total" '
        / / { print > "/dev/stderr"; fflush("/dev/stderr"); next }   # compiler messages contain spaces; package paths do not
        { n++; if (n % 50 == 0) { printf "[controlplane] %s: %d/%d packages compiled\n", label, n, total > "/dev/stderr"; fflush("/dev/stderr") } }'
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { say "$label: build failed"; exit 1; }
  say "$label: done in $((SECONDS - start))s"
}

# shellcheck source=kube-ldflags.sh
. "$repo/scripts/kube-ldflags.sh"
kube_ldflags="$(kube_ldflags "$KUBERNETES_VERSION")"

say "building the test control plane into $bin"
build "$cp_dir/etcd" "etcd ${ETCD_VERSION}" "-s -w" go.etcd.io/etcd/server/v3
mv "$tmp/v3" "$tmp/etcd" 2>/dev/null || mv "$tmp/server" "$tmp/etcd" 2>/dev/null || true
build "$cp_dir/kube" "kubernetes ${KUBERNETES_VERSION}" "$kube_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
for b in etcd kube-apiserver kube-controller-manager; do
  [[ -x "$tmp/$b" ]] || { say "missing $b after build (found: $(ls "$tmp"))"; exit 1; }
  mv "$tmp/$b" "$bin/$b"
done
say "control plane ready in $bin"
echo "$bin"
