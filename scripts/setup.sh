#!/usr/bin/env bash
# Create .venv with the pinned CPU torch first (a floating torch would pull a multi-GB CUDA build),
# then the package with its test extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[testing]"
# napari deprecates PyQt5 (a notice over the canvas); an older .venv may still hold it, and qtpy prefers it
.venv/bin/python -m pip show -q PyQt5 >/dev/null 2>&1 && .venv/bin/python -m pip uninstall -y -q PyQt5 PyQt5-Qt5 PyQt5-sip || true
