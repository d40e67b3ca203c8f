#!/usr/bin/env bash
# The PTB results of docs/results.md, step by step. Every step is resumable: rerun the same
# command after an interruption and it continues (trainings from their checkpoints, searches
# from their run directories). One training per CPU core: run two steps side by side on two.
#
#   benchmarks/ptb_results.sh baseline LSTM|GRU|tanh-RNN   # zaremba-small at the LSTM's params
#                                                          # (learning rate halved on divergence)
#   benchmarks/ptb_results.sh search                       # configs/ptb-search.toml, 150 trainings
#   benchmarks/ptb_results.sh random                       # configs/ptb-random.toml, 150 trainings
#   benchmarks/ptb_results.sh winners                      # the search's 3 best evolved cells
#   benchmarks/ptb_results.sh retrain K                    # zaremba-small retraining of winner K
#   benchmarks/ptb_results.sh analysis N                   # ensemble + compare + report, top N
#
# Environment: ZOO (default ptb.h5), RUNS (default runs), OUT (default results),
# PROXY_TOKENS (default 20000: the proxy budget each candidate trains on).
set -euo pipefail
zoo=${ZOO:-ptb.h5}
runs=${RUNS:-runs}
out=${OUT:-results}
proxy_tokens=${PROXY_TOKENS:-20000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$runs" "$out"

retrain() {  # retrain CELL NAME: zaremba-small on PTB at the DSL LSTM's parameter count.
  # The preset's learning rate (1, tuned for the LSTM) is halved while a cell diverges at it:
  # the smallest tuning that gives every cell a trained row.
  local lr dir
  for lr in 1 0.5 0.25 0.125; do
    dir="$runs/zs-$2"; [ "$lr" = 1 ] || dir="$dir-lr$lr"
    cellzoo train "$1" --preset zaremba-small --match-params LSTM --lr "$lr" --checkpoint "$dir" \
      --zoo "$zoo" --json > "$out/zs-$2.json"
    cat "$out/zs-$2.json"
    grep -q '"status": "diverged"' "$out/zs-$2.json" || return 0
  done
}

case ${1:?usage: ptb_results.sh baseline CELL|search|random|winners|retrain K|analysis N} in
  baseline)
    retrain "${2:?which cell}" "$2" ;;
  search|random)
    cellzoo evolve --config "configs/ptb-$1.toml" --budget-tokens "$proxy_tokens" --zoo "$zoo" \
      --run-dir "$runs/ptb-$1" --json > "$out/ptb-$1.json"
    cat "$out/ptb-$1.json" ;;
  winners)  # the 3 best distinct cells the search made (library seeds excluded), best first
    python - "$runs/ptb-search/evaluations.jsonl" > "$out/winners.txt" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
evolved = [r for r in rows if r["status"] == "ok" and r["origin"] != "library"]
best = {}
for r in sorted(evolved, key=lambda r: r["val_ppl"]):
    best.setdefault(r["hash"], r)
for r in list(best.values())[:3]:
    print(f"{r['hash']}\t{r['val_ppl']:.2f}\t{r['origin']}\t{r['expr']}")
EOF
    cat "$out/winners.txt" ;;
  retrain)
    k=${2:?which winner (1-3)}
    line=$(sed -n "${k}p" "$out/winners.txt")
    retrain "$(cut -f4 <<< "$line")" "winner$k" ;;
  analysis)
    n=${2:?how many retrained runs: the N best of the zoo by validation perplexity}
    cellzoo ensemble "$zoo" --task ptb --top "$n" --json > "$out/ensemble.json"
    cellzoo compare "$zoo" --task ptb --top "$n" --out "$out/compare" --json > "$out/compare.json"
    cellzoo report --zoo "$zoo" --run-dir "$runs/ptb-search" --run-dir "$runs/ptb-random" \
      --task ptb --top "$n" --out "$out/report" --json
    cat "$out/ensemble.json" ;;
  *)
    echo "unknown step $1" >&2; exit 2 ;;
esac
