"""The ranker's live ranking replayed: with the NAS-Bench-NLP prior and without, on the very
candidates one finished search scored.

`benchmarks/ranker_live.py` runs a search per arm, so the two arms score different
candidates. This script reads one search's run directory instead: for each breeding round
r, it fits a ranker on the search's rung-0 results recorded before round r (fine-tuned
from the prior, ``--prior``, default the shipped one; and cold, from nothing, once there
are 8 finished results, as the search does), predicts the rung-0 result of every
candidate the search's own ranker scored in round r, and prints Kendall tau per round and
over all those candidates, for both arms beside the search's own (live) predictions. It
trains no cell, so it costs only the ranker fits (seconds each).

An approximation: the search refits when new results arrive, which can be within a round;
the replay fits once per round on everything finished before it.

``--every N`` replays every rung-0 result instead, in the order the search recorded them,
in groups of N (the library and the random initial population too, which the search's
ranker never scored): each group is predicted by both arms fitted on the results before
it, so the first group is the prior's zero-shot ranking (nothing to fit on; the cold arm
waits for 8 finished results, as the search's does). There is no live arm then.

    OMP_NUM_THREADS=1 python benchmarks/ranker_replay.py runs/ptb-ladder
    OMP_NUM_THREADS=1 python benchmarks/ranker_replay.py runs/ptb-ladder --every 4
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator

import numpy as np

from cellzoo.evolve.breeding import MIN_RANKER_RUNS
from cellzoo.evolve.rundir import RunDir
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.prior import from_prior, prior_path

ARMS = ("live", "prior", "cold")


def replay(run_dir: RunDir, prior: str, every: int | None = None) -> list[dict]:
    """Per group (a breeding round, or ``every`` results in order): the candidates' true
    rung-0 log perplexity, the live prediction (rounds only) and both arms' own."""
    task = run_dir.config().task
    results = [r for r in run_dir.evaluations() if r.get("rung", 0) == 0]
    rows = []
    for label, seen, cands in (_chunks(results, every) if every else _rounds(run_dir, results)):
        fit_on = [(r["expr"], r["val_ppl"], r["status"], task) for r in seen
                  if r["status"] != "failed"]
        row = {"round": label, "fitted_on": len(fit_on), "n": len(cands),
               "true": [c["true"] for c in cands],
               **({"live": [c["live"] for c in cands]} if not every else {})}
        ok = sum(s == "ok" and v is not None and math.isfinite(v) for _, v, s, _ in fit_on)
        for arm, path in (("prior", prior_path(prior)), ("cold", None)):
            if path is None and ok < MIN_RANKER_RUNS:
                continue  # the search's cold ranker would not be fitted yet
            ranker = from_prior(path, task=task)
            if fit_on:  # nothing recorded yet: the prior's zero-shot prediction
                ranker.fit(fit_on)
            row[arm] = [float(v) for v in ranker.predict([c["expr"] for c in cands], task=task)[0]]
        rows.append(row)
    return rows


def _rounds(run_dir: RunDir, results: list[dict]) -> Iterator[tuple[int, list, list]]:
    """The candidates the search's ranker scored, per breeding round, with what was recorded
    before that round."""
    exprs = {r["hash"]: r["expr"] for r in results}
    scored = [r for r in run_dir.ranker_log()
              if r.get("rung", 0) == 0 and r["true_log_ppl"] is not None]
    for rnd in sorted({r["round"] for r in scored}):
        cands = [{"expr": exprs[r["hash"]], "true": r["true_log_ppl"], "live": r["predicted"]}
                 for r in scored if r["round"] == rnd]
        yield rnd, [r for r in results if r["round"] < rnd], cands


def _chunks(results: list[dict], every: int) -> Iterator[tuple[int, list, list]]:
    """Every finished rung-0 result, in recorded order, ``every`` at a time, with the results
    recorded before the group (diverged ones too)."""
    for group, start in enumerate(range(0, len(results), every)):
        cands = [{"expr": r["expr"], "true": math.log(r["val_ppl"])}
                 for r in results[start:start + every]
                 if r["status"] == "ok" and r["val_ppl"] is not None
                 and math.isfinite(r["val_ppl"])]
        if cands:
            yield group, results[:start], cands


def tau(rows: list[dict], arm: str) -> tuple[float, int]:
    """Kendall tau over the rows' candidates that ``arm`` predicted, and their number."""
    pred = [p for r in rows if arm in r for p in r[arm]]
    true = [t for r in rows if arm in r for t in r["true"]]
    return (rank_metrics(np.array(pred), np.array(true))["tau"] if len(pred) > 2
            else math.nan), len(pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a finished (or running) search's run directory")
    parser.add_argument("--prior", default="default", help="the prior of the prior arm "
                        "(a file, or default for the shipped one)")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="replay every rung-0 result, N at a time (no live arm)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    if not (run_dir.is_search and (args.every or run_dir.has_ranker_log)):
        parser.error(f"{args.run_dir} is not the run directory of a search with the ranker on")
    if args.every is not None and args.every < 1:
        parser.error("--every takes a group size of at least 1")
    rows = replay(run_dir, args.prior, args.every)
    overall = {arm: dict(zip(("tau", "n"), tau(rows, arm), strict=True)) for arm in ARMS}
    per_round = [{"round": r["round"], "fitted_on": r["fitted_on"], "n": r["n"],
                  **{arm: tau([r], arm)[0] for arm in ARMS}} for r in rows]
    if args.json:
        print(json.dumps({"per_round": per_round, "all": overall}))
        return
    print("| round | fitted on | candidates | live tau | prior tau | cold tau |")
    print("|---|---|---|---|---|---|")
    for r in per_round:
        print(f"| {r['round']} | {r['fitted_on']} | {r['n']} | " + " | ".join(
            "-" if math.isnan(r[a]) else f"{r[a]:.3f}" for a in ARMS) + " |")
    print("| all | | | " + " | ".join(
        f"{overall[a]['tau']:.3f} ({overall[a]['n']})" for a in ARMS) + " |")


if __name__ == "__main__":
    main()
