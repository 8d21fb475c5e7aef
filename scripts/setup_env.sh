#!/usr/bin/env bash
# Create/update the project's virtual environment in .venv (idempotent; skips work when requirements are unchanged).
# Usage: source scripts/setup_env.sh [dev]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TSALLIS_VENV:-$ROOT/.venv}"
WANT_DEV="${1:-}"
base=("$ROOT/requirements.txt")
[ -f "$ROOT/requirements-mm.txt" ] && base+=("$ROOT/requirements-mm.txt")
app_stamp="$VENV/.requirements.app.$(cat "${base[@]}" | sha256sum | cut -c1-16)"
dev_files=("${base[@]}")
[ -f "$ROOT/requirements-dev.txt" ] && dev_files+=("$ROOT/requirements-dev.txt")
dev_stamp="$VENV/.requirements.dev.$(cat "${dev_files[@]}" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  python3 -m venv "$VENV"
fi
# a dev install covers the app's requirements too
if [ "$WANT_DEV" = "dev" ]; then need=("$dev_stamp"); else need=("$app_stamp" "$dev_stamp"); fi
have=""
for s in "${need[@]}"; do [ -f "$s" ] && have=1; done
if [ -z "$have" ]; then
  echo "[setup] installing requirements (first run takes about a minute)"
  "$VENV/bin/python" -m pip install -q -U pip
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" ${WANT_DEV:+-r "$ROOT/requirements-dev.txt"}
  if [ -f "$ROOT/requirements-mm.txt" ]; then
    "$VENV/bin/python" -m pip install -q --no-deps -r "$ROOT/requirements-mm.txt"
  fi
  rm -f "$VENV"/.requirements.*
  touch "${need[0]}"
fi
export PATH="$VENV/bin:$PATH"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
