#!/usr/bin/env bash
# Install cellzoo into ./.venv (created if missing).
#   ./install.sh              the tool
#   ./install.sh test ray     with extras: the test tools; Ray (for `--executor ray`)
# PyTorch: a torch already in .venv is kept (install your CUDA build first to use it);
# otherwise a machine with an NVIDIA GPU gets the default (CUDA) build of torch==2.13.0
# and any other machine the CPU build, chosen explicitly (the default on Linux is the
# much larger CUDA build). The script says which it chose.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH=2.13.0
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "torch: keeping the installed $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "torch: an NVIDIA GPU is present: installing the CUDA build of torch==$TORCH"
  .venv/bin/python -m pip install -q "torch==$TORCH"
else
  echo "torch: no NVIDIA GPU found: installing the CPU build of torch==$TORCH"
  # from the configured indexes or wheel folders if they hold it, else from PyTorch's own
  .venv/bin/python -m pip install -q "torch==$TORCH+cpu" 2>/dev/null \
    || .venv/bin/python -m pip install -q "torch==$TORCH+cpu" \
         --extra-index-url https://download.pytorch.org/whl/cpu
fi
EXTRAS=$(IFS=,; echo "$*")
.venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
echo "cellzoo installed${EXTRAS:+ with $EXTRAS}: $(.venv/bin/cellzoo --version)"
