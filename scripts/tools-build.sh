#!/usr/bin/env bash
# Builds the test-only tools the conformance suite drives, into the cache:
#   grpcurl                      (a gRPC client keyward did not write)
#   keyward-conformance-go       (test/conformance/go: go-control-plane's generated Envoy types)
#   ghz                          (the gRPC load generator `make bench` drives)
#   keyward-bench-go-null        (bench/servers/go-null: the Go floor of `make bench`'s check path)
#   keyward-bench-go-load        (bench/clients/go-load: the closed loop that saturates the check path)
#   keyward-h2spec               (test/conformance/h2spec: h2spec's HTTP/2 conformance cases)
#   vegeta                       (the fixed-rate HTTP load generator of `make bench`'s Envoy section)
# Idempotent: a tool already built for the same recipe is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/go-tools.sh"

install_go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "${GRPCURL_VERSION:-v1.9.3}"
build_go_dir keyward-conformance-go "$root/test/conformance/go"
install_go_tool ghz github.com/bojand/ghz/cmd/ghz "${GHZ_VERSION:-v0.121.0}"
build_go_dir keyward-bench-go-null "$root/bench/servers/go-null"
build_go_dir keyward-h2spec "$root/test/conformance/h2spec"
install_go_tool vegeta github.com/tsenart/vegeta/v12 "${VEGETA_VERSION:-v12.13.0}"
build_go_dir keyward-bench-go-load "$root/bench/clients/go-load"
