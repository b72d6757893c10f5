#!/usr/bin/env bash
# Builds the test-only tools the conformance suite drives, into the cache:
#   grpcurl                      (a gRPC client keyward did not write)
#   keyward-conformance-go       (test/conformance/go: go-control-plane's generated Envoy types)
#   keyward-bench-go-null        (bench/servers/go-null: the Go floor of `make bench`'s check path)
# Idempotent: a tool already built for the same recipe is kept.
set -euo pipefail

command -v go >/dev/null 2>&1 || { echo "tools-build: Go 1.26 or newer is needed (https://go.dev/dl/)" >&2; exit 1; }

GRPCURL_VERSION="${GRPCURL_VERSION:-v1.9.3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
bin="$cache/tools/bin"
mkdir -p "$bin"

if [[ -x "$bin/grpcurl" ]] && [[ "$(cat "$bin/.grpcurl-version" 2>/dev/null)" == "$GRPCURL_VERSION" ]]; then
  echo "grpcurl $GRPCURL_VERSION: cached in $bin"
else
  echo "grpcurl $GRPCURL_VERSION: building into $bin"
  GOBIN="$bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" >"$bin/.grpcurl-version"
fi

# keyward's own Go programs are rebuilt when their sources change (hash of go.mod, go.sum, *.go).
if command -v sha256sum >/dev/null 2>&1; then sum=(sha256sum); else sum=(shasum -a 256); fi
build_go_dir() {
  local name="$1" src="$2" hash
  hash="$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | "${sum[@]}" | cut -c1-16)"
  if [[ -x "$bin/$name" ]] && [[ "$(cat "$bin/.$name-hash" 2>/dev/null)" == "$hash" ]]; then
    echo "$name: cached in $bin"
  else
    echo "$name: building into $bin"
    (cd "$src" && go build -buildvcs=false -o "$bin/$name" .)
    echo "$hash" >"$bin/.$name-hash"
  fi
}
build_go_dir keyward-conformance-go "$root/test/conformance/go"
build_go_dir keyward-bench-go-null "$root/bench/servers/go-null"

# ghz, the gRPC load generator `make bench` drives (github.com/bojand/ghz).
GHZ_VERSION="${GHZ_VERSION:-v0.121.0}"
if [[ -x "$bin/ghz" ]] && [[ "$(cat "$bin/.ghz-version" 2>/dev/null)" == "$GHZ_VERSION" ]]; then
  echo "ghz $GHZ_VERSION: cached in $bin"
else
  echo "ghz $GHZ_VERSION: building into $bin"
  GOBIN="$bin" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  echo "$GHZ_VERSION" >"$bin/.ghz-version"
fi
