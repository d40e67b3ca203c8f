#!/usr/bin/env bash
# The PTB results of docs/results.md, step by step. Every step is resumable: rerun the same
# command after an interruption and it continues (trainings from their checkpoints, searches
# from their run directories). One training per CPU core: run two steps side by side on two.
#
# The ladder results (docs/results.md, "Results on real text" and "The fidelity ladder"):
#   benchmarks/ptb_results.sh ladder                       # configs/ptb-ladder.toml search
#   benchmarks/ptb_results.sh ladder-random                # its random-search arm
#   benchmarks/ptb_results.sh full CELL RATE [SEED]        # zaremba-small at the LSTM's params
#        # at RATE (a cell's probed rate: its rung-0 `lr` in a ladder search's evaluations.jsonl),
#        # validating at every prefix rung's budget too, into $ZOO_FULL
#   benchmarks/ptb_results.sh ladder-winner                # the evolution arm's searched finalist
#        # with the best top-rung validation perplexity: hash, rate, valid, test, cell, into
#        # $OUT/ladder-winner.tsv; its second seed is then
#        # benchmarks/ptb_results.sh full "$(cut -f5 results/ladder-winner.tsv)" "$(cut -f2 results/ladder-winner.tsv)" 1
#   benchmarks/ptb_results.sh fidelity [--cell EXPR ...]   # the fidelity table from those runs
#   benchmarks/ptb_results.sh wikitext CELL RATE [SEED]    # the same recipe on WikiText-2, into
#        # $ZOO_WT2 (about 10 hours of one loaded CPU core; the rate is the cell's PTB probe's)
#   benchmarks/ptb_results.sh ensembles A B C              # LSTM seeds A+B against LSTM A + cell C
#        # (run ids in $ZOO_FULL), then the greedy ensemble and CKA over the best runs of
#        # $ZOO_FULL and the evolution arm's zoo together ($OUT/ptb-all.h5)
#   benchmarks/ptb_results.sh finish                       # after the evolution arm: its winner's
#        # second seed and the LSTM's seeds 0 and 1 (for their weights: a rebuilt arm's zoo keeps
#        # none), two at a time, then `ensembles` over them
#   benchmarks/ptb_results.sh keep                         # each arm's log into docs/data (run it
#        # every so often while the arms run, and commit: the machine may not outlive the session)
#   benchmarks/ptb_results.sh pack ARM FILE                # a stopped arm's run directory (without
#        # its branch checkpoints) and a weightless copy of its zoo, a few MB, into FILE (.tar.gz)
#   benchmarks/ptb_results.sh unpack ARM FILE              # on another machine, with RUNS at the
#        # same absolute path: the run directory's files, and the zoo's runs merged into the zoo
#        # there (or made the zoo); then `ladder` / `ladder-random` resumes it (docs/search.md)
#
# The earlier 20k-token proxy ("What the 20k-token proxy got wrong"):
#   benchmarks/ptb_results.sh baseline LSTM|GRU|tanh-RNN   # zaremba-small at the LSTM's params
#                                                          # (learning rate halved on divergence)
#   benchmarks/ptb_results.sh search                       # configs/ptb-search.toml, 150 trainings
#   benchmarks/ptb_results.sh random                       # configs/ptb-random.toml, 150 trainings
#   benchmarks/ptb_results.sh winners                      # the search's 3 best evolved cells
#   benchmarks/ptb_results.sh retrain K                    # zaremba-small retraining of winner K
#   benchmarks/ptb_results.sh analysis N                   # ensemble + compare + report, top N
#
# A ladder arm whose run directory is missing starts anew and takes every result its recorded
# log (docs/data/ptb-ARM-evaluations.jsonl, or $RESTORE; RESTORE= for none) holds instead of
# training it (`cellzoo evolve --restore`), then trains on from where that log ends.
#
# Environment: ZOO (default ptb.h5), ZOO_FULL (default ptb-full.h5: the full runs), ZOO_WT2
# (default wikitext-2-full.h5: the WikiText-2 runs), RUNS (default runs), OUT (default
# results), PROXY_TOKENS (default 20000: the proxy budget), WORKERS (default 1: a ladder
# arm's trainings side by side; the evolution arm has run with 2 since its row 189),
# STOP_AFTER (seconds: a ladder arm is stopped then, to go on with the same command or to
# be packed and moved; unset: it runs to its end).
set -euo pipefail
zoo=${ZOO:-ptb.h5}
zoo_full=${ZOO_FULL:-ptb-full.h5}
zoo_wt2=${ZOO_WT2:-wikitext-2-full.h5}
rungs=149188,447565,1342697,4028093  # the PTB ladder's prefix rungs below the full run
runs=${RUNS:-runs}
out=${OUT:-results}
proxy_tokens=${PROXY_TOKENS:-20000}
workers=${WORKERS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$runs" "$out"

run_name() {  # run_name PREFIX CELL RATE SEED: PREFIX-<hash>-lr<RATE>-s<SEED>
  local hash
  hash=$(cellzoo dsl check "$2" --json | python -c "import json,sys; print(json.load(sys.stdin)['hash'][:8])")
  echo "$1-$hash-lr$3-s$4"
}

full_run() {  # full_run PREFIX TASK ZOO CELL RATE SEED [OPTION ...]: zaremba-small at the
  # LSTM's parameter count on TASK, checkpointed in $runs/<run_name>, its result in $out. A
  # result there with its zoo run id is taken as it is (delete it to train and store anew):
  # training a finished checkpoint again would read it back and store it in the zoo twice
  local prefix=$1 task=$2 zoo_=$3 cell=$4 rate=$5 seed=$6 name
  shift 6
  name=$(run_name "$prefix" "$cell" "$rate" "$seed")
  if grep -q '"run_id": "[0-9a-f]' "$out/$name.json" 2>/dev/null; then
    cat "$out/$name.json"
    return
  fi
  cellzoo train "$cell" --task "$task" --preset zaremba-small --match-params LSTM --lr "$rate" \
    --seed "$seed" --checkpoint "$runs/$name" --zoo "$zoo_" --lock-timeout 3600 "$@" --json \
    > "$out/$name.json"
  cat "$out/$name.json"
}

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

case ${1:?usage: ptb_results.sh ladder|ladder-random|keep|pack ARM FILE|unpack ARM FILE|full CELL RATE [SEED]|wikitext CELL RATE [SEED]|fidelity|ensembles A B C|finish|baseline CELL|search|random|winners|retrain K|analysis N} in
  ladder|ladder-random)
    dir="$runs/ptb-$1"
    log=${RESTORE-docs/data/ptb-$1-evaluations.jsonl}  # the arm's recorded results
    if [ -f "$dir/checkpoint.json" ]; then
      command=(cellzoo evolve --resume "$dir" --workers "$workers")
    else  # a new machine rebuilds the arm from its recorded log instead of training it again
      command=(cellzoo evolve --config "configs/ptb-$1.toml" --zoo "$runs/ptb-$1.h5"
               --run-dir "$dir" --workers "$workers")
      [ -n "$log" ] && [ -f "$log" ] && command+=(--restore "$log")
    fi
    if [ -z "${STOP_AFTER:-}" ]; then
      "${command[@]}"
    else  # SIGTERM after STOP_AFTER seconds to the search and its workers (a background job
      # ignores SIGINT): a killed search resumes from its checkpoint, its jobs in flight anew
      setsid "${command[@]}" &
      pid=$!
      (sleep "$STOP_AFTER"; kill -TERM -- "-$pid" 2>/dev/null) &
      wait "$pid" || echo "stopped after $STOP_AFTER s; the same command resumes it" >&2
    fi ;;
  keep)  # whole lines only: the rows past the kept ones (a rebuilt arm's restored rows
    # stand in the kept log as they were first written)
    for arm in ladder ladder-random; do
      python - "$runs/ptb-$arm/evaluations.jsonl" "docs/data/ptb-$arm-evaluations.jsonl" <<'EOF'
import sys
from pathlib import Path
src, dst = map(Path, sys.argv[1:])
text = src.read_text() if src.is_file() else ""
lines = text[: text.rfind("\n") + 1].splitlines(keepends=True)
old = dst.read_text().splitlines(keepends=True) if dst.is_file() else []
rows, kept = len(lines), len(old)
if rows > kept:
    dst.write_text("".join(old + lines[kept:]))
print(f"{dst}: {max(rows, kept)} rows", "(updated)" if rows > kept else "(kept)")
EOF
    done ;;
  pack)  # the arm must be stopped: its files are read as they stand
    dir="$runs/ptb-${2:?ladder|ladder-random}"; file=${3:?tarball to write}
    [ -f "$dir/checkpoint.json" ] || { echo "no search checkpoint in $dir" >&2; exit 2; }
    tmp=$(mktemp -d)
    cellzoo zoo import --without-weights "$tmp/zoo.h5" "$runs/ptb-$2.h5"
    tar -czf "$file" --exclude=cells -C "$dir" . -C "$tmp" zoo.h5
    rm -rf "$tmp"
    echo "$file: $(du -h "$file" | cut -f1), the search's files and its zoo's runs" ;;
  unpack)  # the arm here must be stopped; its branch checkpoints stay (a job continues its own)
    dir="$runs/ptb-${2:?ladder|ladder-random}"; file=${3:?tarball from pack}
    tmp=$(mktemp -d)
    tar -xzf "$file" -C "$tmp"
    cellzoo zoo import "$runs/ptb-$2.h5" "$tmp/zoo.h5"
    rm "$tmp/zoo.h5"
    mkdir -p "$dir"
    cp -r "$tmp/." "$dir/"
    rm -rf "$tmp"
    echo "$dir: the search's files from $file; resume with: benchmarks/ptb_results.sh $2" ;;
  full)  # several can run side by side into one zoo (the lock is taken only to store)
    full_run zs ptb "$zoo_full" "${2:?which cell}" "${3:?its probed rate}" "${4:-0}" \
      --eval-at "$rungs" ;;
  ladder-winner)  # chosen by validation perplexity, as the search chooses; test plays no part
    log=$runs/ptb-ladder/evaluations.jsonl
    [ -f "$log" ] || log=docs/data/ptb-ladder-evaluations.jsonl
    cellzoo plot progress "$log" --out "$out/ladder-progress.png" --json | python -c '
import json, sys
(run,) = json.load(sys.stdin)["runs"]
searched = [f for f in run["finalists"] if f["status"] == "ok" and f["origin"] != "library"]
if not searched:
    sys.exit("no searched cell has finished the top rung yet")
w = min(searched, key=lambda f: f["val_ppl"])
print(w["hash"], format(w["lr"], "g"), format(w["val_ppl"], ".2f"),
      format(w["test_ppl"], ".2f"), w["expr"], sep="\t")
' > "$out/ladder-winner.tsv"
    cat "$out/ladder-winner.tsv" ;;
  wikitext)
    full_run wt2 wikitext-2 "$zoo_wt2" "${2:?which cell}" "${3:?its probed rate}" "${4:-0}" ;;
  fidelity)  # reads the searches' zoos (the random arm's when it has one) and the full runs
    shift
    random_zoo=()
    [ -f "$runs/ptb-ladder-random.h5" ] && random_zoo=(--zoo "$runs/ptb-ladder-random.h5")
    python benchmarks/ladder_fidelity.py --task ptb --schedule prefix --out "$runs/fidelity-prefix" \
      --max-rung 0 --zoo "$runs/ptb-ladder.h5" "${random_zoo[@]}" --zoo "$zoo_full" \
      --points 929560,1859120 "$@" ;;
  ensembles)  # each result also in $out/ensemble-*.json and $out/compare-all/
    a=${2:?LSTM seed 0 run id}; b=${3:?LSTM seed 1 run id}; c=${4:?searched cell run id}
    cellzoo ensemble "$zoo_full" --runs "$a,$b" --select top --json | tee "$out/ensemble-lstm-seeds.json"
    cellzoo ensemble "$zoo_full" --runs "$a,$c" --select top --json | tee "$out/ensemble-lstm-cell.json"
    all=$out/ptb-all.h5  # the full runs and the arm's: the greedy pool is the whole zoo's best
    ladder_zoo=()
    [ -f "$runs/ptb-ladder.h5" ] && ladder_zoo=("$runs/ptb-ladder.h5")
    cellzoo zoo import "$all" "$zoo_full" "${ladder_zoo[@]}"
    cellzoo ensemble "$all" --task ptb --top 10 --select greedy --size 5 --json \
      | tee "$out/ensemble-greedy.json"
    cellzoo compare "$all" --task ptb --top 10 --out "$out/compare-all" --json ;;
  finish)  # longest first: the winner's run, then the LSTM's two, on whichever core frees
    "$0" ladder-winner > /dev/null
    IFS=$'\t' read -r _ rate _ _ cell < "$out/ladder-winner.tsv"
    trainings=("$cell|$rate|1" "LSTM|1|0" "LSTM|1|1")
    for t in "${trainings[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
      IFS='|' read -r c r s <<< "$t"
      "$0" full "$c" "$r" "$s" > /dev/null &
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n; done
    ids=()
    for t in "${trainings[1]}" "${trainings[2]}" "${trainings[0]}"; do  # LSTM 0, 1, winner
      IFS='|' read -r c r s <<< "$t"
      ids+=("$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["run_id"])' \
        "$out/$(run_name zs "$c" "$r" "$s").json")")
    done
    "$0" ensembles "${ids[@]}" ;;
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
