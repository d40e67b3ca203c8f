#!/usr/bin/env bash
# Install cellzoo into ./.venv (created if missing).
#   ./install.sh          the tool, with test and Ray extras
# A CPU machine gets the CPU build of PyTorch (torch==2.13.0); to use a GPU, install
# your CUDA build of torch into .venv first and this script keeps it.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test,ray]"
echo "cellzoo installed: $(.venv/bin/cellzoo --version)"
