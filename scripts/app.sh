#!/usr/bin/env bash
# Set up (first time) and start the explorer on http://127.0.0.1:7860 with the bundled model. Offline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python app.py "$@"
