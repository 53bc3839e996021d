#!/usr/bin/env bash
# Set up (if needed) and run every check: lint, types, and all tests (unit, API, WebSocket, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check app tests scripts bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
