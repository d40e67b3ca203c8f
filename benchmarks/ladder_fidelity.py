"""Ladder fidelity: does each rung of the fidelity ladder rank cells the way the full run does?

Cells: the human library, the three best cells of the earlier PTB search (docs/results.md,
"What the 20k-token proxy got wrong"), then seeded random valid cells, ``--cells`` in all
(default 16); then each ``--cell EXPR`` (a ladder search's best cells, say).
Each cell's learning rate is probed at rung 0 (`cellzoo.evolve.probe`; a probe recorded
under the older rule, which stopped at the first passing rate, is probed again); then every cell
with a rate (also one no rate passed: the probe's `choose`) is trained through every
rung, breadth-first (all cells' rung 1, then rung 2, ...), each rung continuing from the
rung below's branch checkpoint. A cell that diverged at every rate has no rung result to
compare: every rung would rank it last, in agreement with the full run by construction, so
it is counted in the table's footnote and left out of tau and rho. A probe record of an
older journal with no rate (written when a cell had to pass to climb) gets its rate from
its stored outcomes by `choose`, without probing again: the chosen rate's rung-0 run and
an updated probe record are appended. Every result is
appended to
``OUT/results.jsonl``; checkpoints live in ``OUT/runs/<hash>/``. Rerunning the same
command continues: finished runs are read back from the JSONL, unfinished ones continue
from their checkpoints. Checkpoints no longer needed (failed probe rates, finished rungs
below the one in progress) are deleted unless ``--keep-checkpoints``.

``--zoo FILE`` (repeatable): a rung run already stored in one of these zoos (same cell,
same configuration key) is taken from there instead of trained. The top rung's
configuration is the preset's own, so full runs of `cellzoo train CELL --preset P
--match-params LSTM --lr RATE --zoo FILE` at a cell's probed rate count as top-rung results.
On prefix rungs (``--schedule prefix``: the first tokens of the full run) such a full run
also gives the lower rungs' validation results when its learning curve has a point where
each rung would stop: `cellzoo train ... --eval-at B0,B1,...` with the ladder's budgets
(printed first). Evaluation changes nothing in training, so that point is the rung run's
result; its cost is counted as the full run's seconds times the rung's share of its tokens.
A cell's rung-0 run that a ladder search stored in such a zoo (same ladder) gives its
probe: the rate that search's probe chose and its rung-0 result, without probing again
(the record keeps no per-rate outcomes).

``--points N,N,...`` (prefix schedule, with ``--zoo``): more rows, at these token counts,
read from the full runs' learning curves without training (a full run validates at every
epoch's end, so ``--points 929560,1859120`` gives PTB's epochs 1 and 2: prefixes at 7.7%
and 15.4% of the run that no rung sits on).

It prints, per rung: its tokens and cost as a share of the full run (tokens; seconds per
cell as measured), and Kendall tau / Spearman rho of its validation ranking against the top
rung's test perplexity and against the next rung's validation ranking, each over the cells
that have both results; and beside them the old proxy's tau (`TrainConfig.proxy(task,
budget_tokens=20000)`, Adam). A result that diverged or failed (a cell that trains at its
rate on one rung and not on another) ranks last. Under it, one row per cell with a top-rung
result, best test first: the numbers those taus rank (``OUT/cells.json``; the rung rows are
in ``OUT/summary.json``).

    python benchmarks/ladder_fidelity.py --task ptb --out runs/ladder-ptb        # hours of CPU
    python benchmarks/ladder_fidelity.py --task ptb --out runs/ladder-ptb --max-rung 1
    python benchmarks/ladder_fidelity.py --task ptb --out runs/ladder-ptb --max-rung 2 \
        --zoo runs/full-runs.h5                  # top-rung results from full runs stored there
    python benchmarks/ladder_fidelity.py --task synthetic --out /tmp/lf --cells 3 \\
        --rungs 2 --top-tokens 60000                                             # seconds
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from cellzoo.common.io import json_safe
from cellzoo.dsl import canonical_text, cell_hash, parse_cell
from cellzoo.dsl.library import LIBRARY, resolve_cell
from cellzoo.evolve.ladder import SCHEDULES, Ladder, prefix_point, prune_rungs, train_rung
from cellzoo.evolve.probe import SCALES, RateOutcome, choose, descend, probe
from cellzoo.evolve.variation import Variation
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.train import TrainConfig, TrainResult, load_corpus, train_cell
from cellzoo.zoo import Zoo

PRESETS = {"ptb": "zaremba-small", "synthetic": "synthetic-small"}
#: the three best cells of the PTB search on the 20k-token Adam proxy (docs/results.md)
WINNERS = (
    "Gate3(MM(MM(Gate3(SeLU(Sub(h, MM(x))), Max(MM(x), h), MM(x)))), LayerNorm(MM(x)), MM(x))",
    "Gate3(MM(Gate3(SeLU(Sub(h, MM(x))), MM(Gate3(Sub(h, MM(x)), Max(MM(x), h), MM(x_prev))), "
    "MM(x))), LayerNorm(MM(x)), MM(x))",
    "Gate3(MM(MM(Gate3(SeLU(Sub(h, MM(x))), Max(MM(x), h), MM(x_prev)))), LayerNorm(MM(x)), "
    "MM(x))",
)
PROXY_TOKENS = 20_000


def fidelity_cells(n: int, seed: int) -> list[str]:
    """Library cells, the search's winners, then distinct random valid cells: ``n`` in all."""
    cells = [canonical_text(parse_cell(c.expr)) for c in LIBRARY.values()]
    cells += [canonical_text(parse_cell(expr)) for expr in WINNERS]
    variation = Variation(level="extended", seed=seed)
    while len(cells) < n:
        expr = canonical_text(variation.random_cell())
        if expr not in cells:
            cells.append(expr)
    return cells[:n]


class Journal:
    """The JSONL of finished work: one record per probe, rung run or proxy run. A cell's
    rung runs are looked up at its current rate (its last probe record's), so runs at a
    rate an older probe chose stay in the file but no longer count."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.records[self.key(record)] = record

    @staticmethod
    def key(record: dict[str, Any]) -> tuple:
        rate = record["lr"] if record["kind"] == "rung" else None
        return record["kind"], record["hash"], record.get("rung"), rate

    def get(self, kind: str, cell: str, rung: int | None = None) -> dict[str, Any] | None:
        rate = self.rate(cell) if kind == "rung" else None
        return self.records.get((kind, cell, rung, rate))

    def rate(self, cell: str) -> float | None:
        """The cell's rate: its probe record's (None before its probe, or when none ran)."""
        return (self.records.get(("probe", cell, None, None)) or {}).get("lr")

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        self.records[self.key(record)] = record
        return record


def result_record(kind: str, expr: str, rung: int | None, result: TrainResult) -> dict:
    return {"kind": kind, "hash": result.hash, "expr": expr, "rung": rung,
            "lr": result.config.learning_rate, "result": result.to_json()}


def run_probe(expr: str, ladder: Ladder, args: argparse.Namespace, journal: Journal) -> None:
    """Probe the cell's rate, unless its probe record is final (see `stale`)."""
    key = cell_hash(expr)
    record = journal.get("probe", key)
    if record is not None and not stale(record):
        upgrade_probe(expr, ladder, args, journal)
        return
    if journal.get("skip", key) is not None:
        return
    try:
        ladder.width(expr, load_corpus(ladder.base.task, args.data))
    except ValueError as err:  # no width gives the reference's parameter count
        journal.add({"kind": "skip", "hash": key, "expr": expr, "error": str(err)})
        print(f"skip {expr}: {err}", flush=True)
        return
    if take_search_probe(expr, ladder, args, journal):
        return
    root = args.out / "runs" / key
    found = probe(expr, ladder, args.train_seed, root, args.data)
    journal.add(result_record("rung", expr, 0, found.result))
    journal.add({"kind": "probe", "hash": key, "expr": expr, "lr": found.lr,
                 "passed": found.passed, "outcomes": found.to_json()["outcomes"]})
    print(f"probe {key}: lr {found.lr} (passed: {found.passed}) "
          f"val {found.result.val_ppl:.2f} {expr}", flush=True)
    if not args.keep_checkpoints:
        prune_rungs(root, 0, found.lr)


def take_search_probe(expr: str, ladder: Ladder, args: argparse.Namespace,
                      journal: Journal) -> bool:
    """Record the probe of a ladder search instead of probing again: a rung-0 run of the cell
    that a search stored in a ``--zoo`` file under this ladder's rung-0 configuration (at the
    rate its probe chose, with the same rule) gives the rate and the rung-0 result. The
    search's run keeps no per-rate outcomes, so the record has none (and is never stale)."""
    corpus, key, rung0 = load_corpus(ladder.base.task, args.data), cell_hash(expr), {}
    for zoo in args.zoos:
        for run in zoo.runs():
            if run.hash != key or run.search_id is None:
                continue
            rate = run.config["lr"]
            if rate not in rung0:  # the cell's width is searched once per rate, not per run
                rung0[rate] = ladder.configs(expr, corpus, rate, args.train_seed)[0].key()
            if run.config_key != rung0[rate]:
                continue
            ok = run.status == "ok"
            passed = ok and not (run.error or "").startswith("no rate passed")
            fields = ("status", "val_ppl", "test_ppl", "seconds", "tokens_trained", "device")
            journal.add({"kind": "rung", "hash": run.hash, "expr": expr, "rung": 0,
                         "lr": run.config["lr"], "zoo": str(zoo.path), "run_id": run.run_id,
                         "result": json_safe({f: getattr(run, f) for f in fields})})
            journal.add({"kind": "probe", "hash": run.hash, "expr": expr,
                         "lr": run.config["lr"] if ok else None, "passed": passed,
                         "outcomes": [], "zoo": str(zoo.path), "run_id": run.run_id})
            print(f"probe {run.hash}: lr {run.config['lr']} (passed: {passed}) val "
                  f"{run.val_ppl:.2f} from the search in {zoo.path}", flush=True)
            return True
    return False


def stale(record: dict[str, Any]) -> bool:
    """Whether a probe record was written under the older rule that stopped at the first
    passing rate, where today's probe would try the next rate (`descend`): probed again
    (runs pruned from the checkpoints are trained again, to the same results)."""
    if "zoo" in record:  # taken from a search's probe (`take_search_probe`)
        return False
    outcomes = [RateOutcome.from_json(o) for o in record["outcomes"]]
    return record["lr"] is not None and len(outcomes) < len(SCALES) and descend(outcomes)


def upgrade_probe(expr: str, ladder: Ladder, args: argparse.Namespace,
                  journal: Journal) -> None:
    """An older probe record with no rate gets one from its stored outcomes by `choose`
    (no probing again); when that gives a rate, its rung-0 run (read back from its
    checkpoint, or trained again when it was pruned) and the updated record are appended."""
    record = journal.get("probe", cell_hash(expr))
    if record["lr"] is not None or "passed" in record:
        return
    rate, passed = choose([RateOutcome.from_json(o) for o in record["outcomes"]])
    if rate is not None:
        root = args.out / "runs" / record["hash"]
        journal.add(result_record("rung", expr, 0, train_rung(
            expr, ladder, 0, rate, args.train_seed, root, args.data)))
        print(f"rate {record['hash']}: lr {rate} from the stored outcomes", flush=True)
        if not args.keep_checkpoints:
            prune_rungs(root, 0, rate)
    journal.add(record | {"lr": rate, "passed": passed})


def run_rung(expr: str, rung: int, ladder: Ladder, args: argparse.Namespace,
             journal: Journal, train: bool = True) -> None:
    """Record ``expr``'s run at ``rung``: from a ``--zoo`` file, else trained (if ``train``)."""
    key = cell_hash(expr)
    rate = (journal.get("probe", key) or {}).get("lr")
    if rate is None or journal.get("rung", key, rung) is not None:
        return
    stored = stored_run(expr, ladder, rung, rate, args)
    if stored is not None:
        journal.add(stored)
        where = ("the learning curve of the full run in " if stored.get("curve_point")
                 else "") + stored["zoo"]
        print(f"rung {rung} {key}: val {stored['result']['val_ppl']:.2f} from {where}",
              flush=True)
        return
    if not train:
        return
    root = args.out / "runs" / key
    result = train_rung(expr, ladder, rung, rate, args.train_seed, root, args.data)
    journal.add(result_record("rung", expr, rung, result))
    print(f"rung {rung} {key}: {result.status} val {result.val_ppl:.2f} "
          f"test {result.test_ppl:.2f} ({result.seconds:.0f} s)", flush=True)
    if not args.keep_checkpoints:
        prune_rungs(root, rung, rate)


def stored_run(expr: str, ladder: Ladder, rung: int, rate: float,
               args: argparse.Namespace) -> dict[str, Any] | None:
    """The journal record of ``expr``'s run at ``rung`` found in a ``--zoo`` file, if any: a
    run of the rung's own configuration, or (prefix rungs) the point of the cell's full run
    whose learning curve reached the rung's budget in the step a rung run would stop at
    (`cellzoo train --eval-at` puts points there)."""
    configs = ladder.configs(expr, load_corpus(ladder.base.task, args.data), rate,
                             args.train_seed)
    fields = ("status", "val_ppl", "test_ppl", "seconds", "tokens_trained", "device")
    for zoo in args.zoos:
        run = zoo.find_run(cell_hash(expr), configs[rung].key())
        if run is not None:
            return {"kind": "rung", "hash": run.hash, "expr": expr, "rung": rung, "lr": rate,
                    "zoo": str(zoo.path), "run_id": run.run_id,
                    "result": json_safe({f: getattr(run, f) for f in fields})}
        full = None if ladder.schedule != "prefix" else zoo.find_run(cell_hash(expr),
                                                                      configs[-1].key())
        point = None if full is None else prefix_point(full.curve, configs[rung])
        if point is not None:
            result = {"status": "ok", "val_ppl": point["val_ppl"], "test_ppl": None,
                      "tokens_trained": point["tokens"], "device": full.device,
                      "seconds": full.seconds * point["tokens"] / full.tokens_trained}
            return {"kind": "rung", "hash": full.hash, "expr": expr, "rung": rung, "lr": rate,
                    "zoo": str(zoo.path), "run_id": full.run_id, "curve_point": True,
                    "result": json_safe(result)}
    return None


def run_proxy(expr: str, args: argparse.Namespace, journal: Journal) -> None:
    if journal.get("proxy", cell_hash(expr)) is None:
        config = TrainConfig.proxy(args.task, budget_tokens=PROXY_TOKENS, seed=args.train_seed)
        journal.add(result_record("proxy", expr, None, train_cell(expr, config, args.data)))


def value(record: dict[str, Any] | None, field: str) -> float:
    """A result's perplexity; inf (ranked last) for diverged, failed or missing results."""
    if record is None or record["result"]["status"] != "ok":
        return math.inf
    return float(record["result"][field])


def agreement(a: list[float], b: list[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho, with non-finite values ranked last (tied)."""
    both = np.array([a, b], dtype=float)
    finite = np.isfinite(both)
    worst = 10 * both[finite].max() if finite.any() else 1.0
    ranked_a, ranked_b = np.where(finite, both, worst)
    return rank_metrics(ranked_a, ranked_b)


def no_rate(journal: Journal, key: str) -> bool:
    """Whether the cell's probe found no rate (it diverged or failed at every rate)."""
    probe = journal.get("probe", key)
    return probe is not None and probe["lr"] is None


def results(journal: Journal, keys: list[str], kind: str, rung: int | None,
            field: str) -> dict[str, float]:
    """Cell hash -> perplexity (``field``) of the cells in ``keys`` that have that result."""
    return {k: value(r, field) for k in keys if (r := journal.get(kind, k, rung))}


def ranked(a: dict[str, float], b: dict[str, float]) -> dict:
    """Rank agreement of two results over the cells that have both (at least 3), with the
    count of those cells as ``n``."""
    both = [k for k in a if k in b]
    if len(both) < 3:
        return {}
    return agreement([a[k] for k in both], [b[k] for k in both]) | {"n": len(both)}


def compare(journal: Journal, keys: list[str], a: tuple, b: tuple, field_b: str) -> dict:
    """Rank agreement of results ``a`` and ``b`` ((kind, rung) each; validation perplexity
    for ``a``) over the cells that have both, with the count of those cells."""
    return ranked(results(journal, keys, *a, "val_ppl"), results(journal, keys, *b, field_b))


def mean_seconds(journal: Journal, keys: list[str], kind: str, rung: int | None) -> float:
    seconds = [r["result"]["seconds"] for k in keys if (r := journal.get(kind, k, rung))]
    return sum(seconds) / len(seconds) if seconds else math.nan


def compared(cells: list[str], journal: Journal) -> dict[str, str]:
    """Cell hash -> text of the cells that enter tau and rho: not skipped, and with a rate
    (cells the probe found no rate for are left out: `main` counts them)."""
    return {k: c for c in cells if journal.get("skip", k := cell_hash(c)) is None
            and not no_rate(journal, k)}


def summary(cells: list[str], budgets: list[int], journal: Journal,
            points: dict[int, dict[str, float]] | None = None) -> list[dict]:
    """One row per rung (and per curve point of `curve_points`, and one for the proxy):
    tokens, cost per cell as a share of the top rung's, and rank agreements over the cells
    that have both results, over the `compared` cells."""
    keys = list(compared(cells, journal))
    top = ("rung", len(budgets) - 1)
    top_seconds = mean_seconds(journal, keys, *top)
    rows = []
    for rung, tokens in enumerate(budgets):
        records = [journal.get("rung", k, rung) for k in keys]
        if not any(records):
            break
        row = {"rung": rung, "tokens": tokens, "token_share": tokens / budgets[-1],
               "cells": sum(r is not None for r in records),
               "seconds": mean_seconds(journal, keys, "rung", rung)}
        row["seconds_share"] = row["seconds"] / top_seconds
        row |= {f"{k}_top": v for k, v in compare(journal, keys, ("rung", rung), top,
                                                  "test_ppl").items()}
        if rung < top[1]:
            row |= {f"{k}_next": v for k, v in compare(
                journal, keys, ("rung", rung), ("rung", rung + 1), "val_ppl").items()}
        rows.append(row)
    tests = results(journal, keys, *top, "test_ppl")
    for tokens, values in sorted((points or {}).items()):
        row = {"rung": f"point {tokens:,}", "tokens": tokens,
               "token_share": tokens / budgets[-1], "cells": len(values)}
        rows.append(row | {f"{k}_top": v for k, v in ranked(values, tests).items()})
    proxies = [journal.get("proxy", k) for k in keys]
    if any(proxies):
        row = {"rung": f"proxy {PROXY_TOKENS // 1000}k", "tokens": PROXY_TOKENS,
               "cells": sum(p is not None for p in proxies),
               "seconds": mean_seconds(journal, keys, "proxy", None)}
        row |= {f"{k}_top": v for k, v in compare(journal, keys, ("proxy", None), top,
                                                  "test_ppl").items()}
        rows.append(row)
    return rows


def curve_points(cells: list[str], ladder: Ladder, journal: Journal,
                 args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Token count -> cell hash -> validation perplexity where the cell's full run (at its
    probed rate, in a ``--zoo`` file) reached that count: prefixes of the run the ladder
    has no rung at (`ladder.prefix_point`)."""
    out: dict[int, dict[str, float]] = {n: {} for n in args.points}
    corpus = load_corpus(ladder.base.task, args.data)
    for expr in cells:
        key = cell_hash(expr)
        rate = journal.rate(key)
        if rate is None:
            continue
        top = ladder.configs(expr, corpus, rate, args.train_seed)[-1]
        full = next((r for z in args.zoos if (r := z.find_run(key, top.key()))), None)
        if full is None:
            continue
        for n in args.points:
            if (point := prefix_point(full.curve, top, n)) is not None:
                out[n][key] = point["val_ppl"]
    return out


def known_names() -> dict[str, str]:
    """Cell text -> short name for the per-cell table: the library's names, and "winner #i"
    for the earlier search's winners (other cells go by their hash)."""
    names = {canonical_text(parse_cell(c.expr)): name for name, c in LIBRARY.items()}
    return names | {canonical_text(parse_cell(w)): f"winner #{i}"
                    for i, w in enumerate(WINNERS, 1)}


def cell_rows(cells: list[str], budgets: list[int], journal: Journal,
              points: dict[int, dict[str, float]] | None = None) -> list[dict]:
    """One row per cell with a top-rung result, best test first: its rate, its validation at
    every rung and curve point (None where it has none), its proxy result and its test."""
    top, names = len(budgets) - 1, known_names()
    rows = []
    for key, expr in compared(cells, journal).items():
        if (full := journal.get("rung", key, top)) is None:
            continue
        row = {"cell": names.get(expr, key[:8]), "hash": key, "lr": journal.rate(key)}
        row |= {f"rung {r}": value(rec, "val_ppl") if (rec := journal.get("rung", key, r))
                else None for r in range(top)}
        row |= {f"point {n:,}": v.get(key) for n, v in sorted((points or {}).items())}
        proxy = journal.get("proxy", key)
        rows.append(row | {"proxy": value(proxy, "val_ppl") if proxy else None,
                           "test": value(full, "test_ppl")})
    return sorted(rows, key=lambda row: row["test"])


def print_cells(rows: list[dict]) -> None:
    """The per-cell table of `cell_rows` in Markdown (inf: diverged or failed)."""
    def cell(column: str, v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:g}" if column == "lr" else f"{v:.2f}" if isinstance(v, float) else str(v)

    if not rows:
        return
    columns = [c for c in rows[0] if c != "hash"]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(c, row[c]) for c in columns) + " |")


def print_table(rows: list[dict]) -> None:
    def num(row: dict, key: str, fmt: str = ".3f") -> str:
        v = row.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    print("| rung | tokens | tokens / top | seconds / top (per cell) | cells | "
          "tau / rho vs top test (cells) | tau / rho vs next rung (cells) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rung']} | {r['tokens']:,} | {num(r, 'token_share')} | "
              f"{num(r, 'seconds_share')} | {r['cells']} | {num(r, 'tau_top')} / "
              f"{num(r, 'rho_top')} ({r.get('n_top', 0)}) | {num(r, 'tau_next')} / "
              f"{num(r, 'rho_next')} ({r.get('n_next', 0)}) |")


def token_counts(text: str) -> list[int]:
    """argparse type of --points: whole numbers like 929560,1859120."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers like "
                                         "929560,1859120") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: token counts must be positive")
    return counts


def same_ladder(out: Path, ladder: dict[str, Any]) -> str | None:
    """Why ``out`` holds the journal of another ladder (None: it is this one's, or new). A
    journal older than ``OUT/ladder.json`` was written on compressed rungs."""
    path, journal = out / "ladder.json", out / "results.jsonl"
    if path.is_file():
        stored = json.loads(path.read_text())
    elif journal.is_file():
        stored = ladder | {"schedule": "compressed"}
    else:
        stored = ladder
    if stored != ladder:
        changed = ", ".join(f"{k} {stored.get(k)!r} there, {v!r} here"
                            for k, v in ladder.items() if stored.get(k) != v)
        return f"{out} holds the journal of another ladder ({changed}); use another --out"
    path.write_text(json.dumps(ladder) + "\n")
    return None


def parse_args() -> argparse.Namespace:
    """The command line, checked; the ladder, its budgets and the extra cells as attributes
    ``ladder``, ``budgets`` and ``extra``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(PRESETS), default="ptb")
    parser.add_argument("--preset", default=None, help="default: zaremba-small / synthetic-small")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--cell", action="append", default=[], metavar="EXPR",
                        help="one more cell (DSL text or a library name), e.g. a search's "
                             "best (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cells")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--rungs", type=int, default=None)
    parser.add_argument("--rung0-tokens", type=int, default=None)
    parser.add_argument("--top-tokens", type=int, default=None)
    parser.add_argument("--schedule", choices=SCHEDULES, default=SCHEDULES[0],
                        help="the rungs' learning-rate schedule (a separate --out per schedule)")
    parser.add_argument("--max-rung", type=int, default=None, help="stop after this rung")
    parser.add_argument("--no-proxy", action="store_true", help="skip the 20k-token proxy runs")
    parser.add_argument("--keep-checkpoints", action="store_true")
    parser.add_argument("--zoo", type=Path, action="append", default=[],
                        help="take rung runs stored here (repeatable)")
    parser.add_argument("--points", type=token_counts, default=[], metavar="N,N,...",
                        help="prefix schedule: also rank by the full runs' validation at these "
                             "token counts (from their learning curves in --zoo)")
    args = parser.parse_args()
    if args.points and (args.schedule != "prefix" or not args.zoo):
        parser.error("--points reads the full runs' curves: it needs --schedule prefix and --zoo")
    try:
        ladder = Ladder(args.preset or PRESETS[args.task], eta=args.eta, rungs=args.rungs,
                        rung0_tokens=args.rung0_tokens, top_tokens=args.top_tokens,
                        schedule=args.schedule)
        budgets = ladder.budgets(load_corpus(ladder.base.task, args.data))
    except ValueError as err:
        parser.error(str(err))
    try:
        extra = [canonical_text(resolve_cell(expr)) for expr in args.cell]
    except ValueError as err:
        parser.error(f"--cell: {err}")
    args.out.mkdir(parents=True, exist_ok=True)
    mismatch = same_ladder(args.out, {"preset": ladder.preset, "schedule": ladder.schedule,
                                      "budgets": budgets, "train_seed": args.train_seed})
    if mismatch:
        parser.error(mismatch)
    args.ladder, args.budgets, args.extra = ladder, budgets, extra
    return args


def main() -> None:
    args = parse_args()
    ladder, budgets = args.ladder, args.budgets
    journal = Journal(args.out / "results.jsonl")
    cells = fidelity_cells(args.cells, args.seed)
    cells += [expr for expr in dict.fromkeys(args.extra) if expr not in cells]
    print(f"ladder {ladder.preset}: rungs of {budgets} tokens; {len(cells)} cells", flush=True)
    last = len(budgets) - 1 if args.max_rung is None else min(args.max_rung, len(budgets) - 1)
    with ExitStack() as stack:  # the --zoo files, opened once for every lookup
        args.zoos = [stack.enter_context(Zoo.open(path)) for path in args.zoo]
        for expr in cells:
            run_probe(expr, ladder, args, journal)
            if not args.no_proxy:
                run_proxy(expr, args, journal)
        for rung in range(1, len(budgets)):  # above --max-rung: only runs found in --zoo
            for expr in cells:
                run_rung(expr, rung, ladder, args, journal, train=rung <= last)
        points = curve_points(cells, ladder, journal, args) if args.points else None
    rows = summary(cells, budgets, journal, points)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    print_table(rows)
    cells_table = cell_rows(cells, budgets, journal, points)
    (args.out / "cells.json").write_text(json.dumps(json_safe(cells_table), indent=1) + "\n")
    print_cells(cells_table)
    dropped = sum(no_rate(journal, cell_hash(c)) for c in cells)
    print(f"\n{dropped} of {len(cells)} cells diverged or failed at every probed rate: every "
          f"rung ranks them last, as the full run does; they are not in tau and rho.")


if __name__ == "__main__":
    main()
