#!/usr/bin/env bash
# Install everything the tests need (Xvfb for the napari viewer tests) and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Xvfb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 \
    libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3 >/dev/null
fi
bash scripts/setup.sh
.venv/bin/ruff check src tests scripts bench
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
