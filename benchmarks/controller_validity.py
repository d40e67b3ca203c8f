"""The RL controller, measured: validity and diversity of samples, learning on known rewards.

Validity: ``--samples`` cells from a fresh and from a library-pre-trained policy (core and
extended operators) are checked with `cellzoo.dsl.is_valid`; the script reports the share
of valid and of distinct canonical cells, their size, and how many are library cells.

Learning: REINFORCE on two cheap rewards that are fixed functions of the tree (no training):
``mult`` (number of Mult nodes, from a fresh policy) and ``lstm`` (similarity to the LSTM:
multiset Jaccard of parent->child edges, from a pre-trained policy). The mean reward of each
update's samples should rise.

    python benchmarks/controller_validity.py                       # 10,000 samples, 30 updates
    python benchmarks/controller_validity.py --samples 2000 --updates 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cellzoo.dsl import Node, canonical_text, depth, is_valid, node_count, op_counts, parse_cell
from cellzoo.dsl.library import LIBRARY
from cellzoo.dsl.tree import preorder
from cellzoo.evolve.controller import Controller


def edges(tree: Node) -> Counter[tuple[str, str]]:
    return Counter((n.op, c.op) for n in preorder(tree) for c in n.children)


LSTM_EDGES = edges(parse_cell(LIBRARY["LSTM"].expr))


def lstm_similarity(tree: Node) -> float:
    """Multiset Jaccard of parent->child edges against the LSTM (1.0 for the LSTM itself)."""
    mine = edges(tree)
    return sum((mine & LSTM_EDGES).values()) / sum((mine | LSTM_EDGES).values())


REWARDS: dict[str, tuple[Callable[[Node], float], bool]] = {
    "mult": (lambda tree: float(op_counts(tree)["Mult"]), False),  # (reward, pre-train)
    "lstm": (lstm_similarity, True),
}


def validity(level: str, pretrain: bool, samples: int, seed: int) -> dict:
    start = time.perf_counter()
    controller = Controller(level=level, pretrain=pretrain, seed=seed)
    built = time.perf_counter()
    cells = controller.sample(samples)
    sampled = time.perf_counter()
    canon = [canonical_text(c) for c in cells]
    library = {canonical_text(parse_cell(c.expr)) for c in LIBRARY.values()}
    return {"level": level, "pretrain": pretrain, "samples": samples,
            "valid": sum(is_valid(c) for c in cells), "distinct": len(set(canon)),
            "distinct_share": len(set(canon)) / samples,
            "library_share": sum(c in library for c in canon) / samples,
            "mean_nodes": sum(map(node_count, cells)) / samples,
            "mean_depth": sum(map(depth, cells)) / samples,
            "build_s": built - start, "sample_s": sampled - built}


def learning(reward: str, updates: int, batch: int, seed: int, lr: float) -> dict:
    fn, pretrain = REWARDS[reward]
    controller = Controller(pretrain=pretrain, seed=seed, lr=lr)
    means = []
    for _ in range(updates):
        cells = controller.propose(batch)
        means.append(controller.reinforce(cells, [fn(c) for c in cells])["reward"])
    return {"reward": reward, "pretrain": pretrain, "batch": batch, "lr": lr, "means": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_out", default=None, help="write results here")
    args = parser.parse_args()

    rows = []
    for level, pretrain in (("core", False), ("core", True), ("extended", False),
                            ("extended", True)):
        row = validity(level, pretrain, args.samples, args.seed)
        rows.append(row)
        print(f"{level:8s} pretrain={pretrain!s:5s} valid {row['valid']}/{row['samples']}  "
              f"distinct {row['distinct_share']:.3f}  library {row['library_share']:.3f}  "
              f"nodes {row['mean_nodes']:.1f}  depth {row['mean_depth']:.1f}  "
              f"sample {row['sample_s']:.1f} s", flush=True)
    curves = []
    for reward in REWARDS:
        curve = learning(reward, args.updates, args.batch, args.seed, args.lr)
        curves.append(curve)
        m = curve["means"]
        k = max(1, len(m) // 5)
        print(f"learning {reward}: mean reward first {k} updates {sum(m[:k]) / k:.3f}, "
              f"last {k} {sum(m[-k:]) / k:.3f}; per update "
              + " ".join(f"{v:.2f}" for v in m), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "validity": rows,
                                                   "learning": curves}, indent=1))


if __name__ == "__main__":
    main()
