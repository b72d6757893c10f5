#!/usr/bin/env bash
# Installs the Debian packages keyward's end-to-end tests need, when missing:
#   nginx (the auth_request e2e suite, test/integration/authz-nginx.test.ts).
#   prometheus (promtool: `make rules` checks and tests deploy/prometheus; the server:
#     test/integration/prometheus.test.ts runs the shipped rules against real keyward processes).
#   redis-server (redis-server and redis-cli: the shared-limits suites, test/integration/limits-*.test.ts).
#   postgresql (initdb, pg_ctl and the server: the analytics store suites, test/integration/analytics-*.test.ts,
#     start throwaway clusters as the `postgres` user the package creates).
#   prometheus-alertmanager (/usr/bin/prometheus-alertmanager: the alert evaluator's suite,
#     test/integration/analytics-alerts.test.ts, pushes to a real Alertmanager on a free port).
#   chromium (headless, driven by puppeteer-core: the web console's browser suite, test/integration/console-*.test.ts).
#   libjemalloc2, linked at /usr/local/lib/libjemalloc.so.2 as in the image (ADR 0073): the image's
#     LD_PRELOAD, which the start-up bench and test/integration/image-build.test.ts run keyward with.
# Idempotent: does nothing when every package is present. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=(nginx prometheus redis-server postgresql prometheus-alertmanager chromium libjemalloc2)
# Where the image links jemalloc (the Dockerfile), whatever the architecture's library directory.
jemalloc_link=/usr/local/lib/libjemalloc.so.2
present() {
  case "$1" in
    # The server lives in /usr/lib/postgresql/<major>/bin, off the PATH.
    postgresql) compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null ;;
    libjemalloc2) [[ -e "$jemalloc_link" ]] ;;
    *) command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] || [[ -x "/usr/bin/$1" ]] ;;
  esac
}
missing=()
for p in "${packages[@]}"; do
  present "$p" || missing+=("$p")
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
if [[ ! -e "$jemalloc_link" ]]; then
  $sudo ln -sf "$(dpkg -L libjemalloc2 | grep '/libjemalloc\.so\.2$' | head -1)" "$jemalloc_link"
fi
# The e2e suite runs its own nginx on free ports; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then $sudo systemctl stop nginx || true; fi
# Nor is the packaged Prometheus service: the Prometheus suite starts its own server on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then $sudo systemctl stop prometheus || true; fi
# Nor is the packaged Redis: the limits suites start their own redis-server on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then $sudo systemctl disable --now redis-server || true; fi
if command -v service >/dev/null 2>&1 && [[ -x /etc/init.d/redis-server ]]; then $sudo service redis-server stop >/dev/null 2>&1 || true; fi
# Nor is the packaged PostgreSQL cluster: the analytics suites start their own clusters on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then $sudo systemctl disable --now postgresql || true; fi
if command -v service >/dev/null 2>&1 && [[ -x /etc/init.d/postgresql ]]; then $sudo service postgresql stop >/dev/null 2>&1 || true; fi
# Nor is the packaged Alertmanager: the alerts suite starts its own on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then $sudo systemctl disable --now prometheus-alertmanager || true; fi
if command -v service >/dev/null 2>&1 && [[ -x /etc/init.d/prometheus-alertmanager ]]; then $sudo service prometheus-alertmanager stop >/dev/null 2>&1 || true; fi
