#!/usr/bin/env bash
# Installs the Debian packages keyward's end-to-end tests need, when missing:
#   nginx (the auth_request e2e suite, test/integration/authz-nginx.test.ts).
#   prometheus (for promtool: `make rules` checks and tests deploy/prometheus).
# Idempotent: does nothing when every package is present. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=(nginx prometheus)
missing=()
for p in "${packages[@]}"; do
  command -v "$p" >/dev/null 2>&1 || [[ -x "/usr/sbin/$p" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  # Not Debian or Ubuntu (macOS, say): everything else still works; the nginx e2e suite says what is missing.
  echo "missing ${missing[*]} and no apt-get here: install them with your package manager (brew install nginx)" >&2
  exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "installing ${missing[*]} needs root" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
# The e2e suite runs its own nginx on free ports; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then $sudo systemctl stop nginx || true; fi
# Nor is the packaged Prometheus server: only promtool is used.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then $sudo systemctl stop prometheus || true; fi
