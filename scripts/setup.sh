#!/usr/bin/env bash
# Set up filterscope from scratch: a virtual environment in .venv with the app (and, with --dev, the test
# tools and Debian's Chromium for the browser tests). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
python=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch is pinned to the CPU build in pyproject.toml; an unpinned torch would pull gigabytes of CUDA wheels.
if [ "$dev" = 1 ]; then
  "${pip[@]}" -e ".[dev]"
else
  "${pip[@]}" -e .
fi

# Byte-compiled now, as pip does for an installed wheel: where PYTHONDONTWRITEBYTECODE is set (this machine's
# environment sets it), the server would otherwise compile its ~100 modules at every start (~0.13 s).
.venv/bin/python -m compileall -q app

if [ "$dev" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium for the browser tests"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
