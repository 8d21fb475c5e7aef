#!/usr/bin/env bash
# Set up (first time) and run the checks: ruff and the whole test suite, browser test included.
# Installs Debian's chromium for the browser test when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh dev
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test] installing chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "[test] chromium install failed; the browser test will say so"
fi
echo "[test] ruff"
ruff check .
echo "[test] pytest"
python -m pytest "$@"
