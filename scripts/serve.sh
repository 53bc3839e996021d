#!/usr/bin/env bash
# Set up (if needed) and start filterscope on http://127.0.0.1:8000 (pass --host/--port to change).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/filterscope serve "$@"
