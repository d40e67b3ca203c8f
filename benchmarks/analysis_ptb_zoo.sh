#!/usr/bin/env bash
# Build a small PTB zoo of different library cells for `cellzoo compare` / `cellzoo ensemble`.
# One training at a time (shared CPU). Usage: benchmarks/analysis_ptb_zoo.sh ZOO [TOKENS] [CELLS...]
set -euo pipefail
zoo=${1:?usage: analysis_ptb_zoo.sh ZOO [TOKENS] [CELLS...]}
tokens=${2:-1000000}
shift $(( $# >= 2 ? 2 : 1 ))
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(LSTM GRU MinimalRNN QRNN tanh-RNN)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for cell in "${cells[@]}"; do
  echo "== $cell $(date +%T)"
  cellzoo train "$cell" --task ptb --hidden 128 --budget-tokens "$tokens" --zoo "$zoo" --json
done
echo "== done $(date +%T)"
