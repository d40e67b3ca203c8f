"""How the zoo scales: add N runs, open, list the top 10; listing vs weight size.

    OMP_NUM_THREADS=1 python benchmarks/zoo_scale.py --runs 10000 [--compare 300] [--dir DIR]

Part 1 adds `--runs` copies of one real small training result (hidden 8) and
reports the time to add them, to open the zoo for reading, to list the top 10
(`cellzoo zoo list --top 10` does the same calls) and the file size.
Part 2 builds two zoos of `--compare` runs, one with small and one with large
weights (hidden 8 vs 256), and times open + top 10 on each: listing reads only
the index, so the times should match while the file sizes differ a hundredfold.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cellzoo.train import TrainConfig, train_cell
from cellzoo.zoo import Zoo


def result_of(hidden: int):
    config = TrainConfig(task="synthetic", hidden=hidden, batch_size=4, bptt=10,
                         budget_tokens=400, eval_tokens=200)
    return train_cell("LSTM", config)


def fill(path: Path, result, runs: int) -> float:
    start = time.perf_counter()
    with Zoo.open(path, "a") as zoo:
        for i in range(runs):
            zoo.add_run(result, {"origin": "manual", "generation": i})
    return time.perf_counter() - start


def open_and_list(path: Path, repeats: int = 3) -> tuple[float, float]:
    """Best-of-`repeats` seconds to open for reading, and to list the top 10."""
    opens, lists = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        zoo = Zoo.open(path)
        opened = time.perf_counter()
        top = zoo.top(10)
        done = time.perf_counter()
        assert len(top) == min(10, len(zoo))
        opens.append(opened - start)
        lists.append(done - opened)
    return min(opens), min(lists)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="zoo-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    small = result_of(8)
    weight_bytes = sum(t.numel() * t.element_size() for t in small.state_dict.values())

    path = work / "scale.h5"
    seconds = fill(path, small, args.runs)
    opened, listed = open_and_list(path)
    print(f"{args.runs} runs ({weight_bytes:,} weight bytes each): add {seconds:.1f} s "
          f"({1000 * seconds / args.runs:.1f} ms/run), open {opened:.3f} s, "
          f"top 10 {1000 * listed:.1f} ms, file {path.stat().st_size / 1e6:.1f} MB")

    for hidden, result in ((8, small), (256, result_of(256))):
        path = work / f"compare-{hidden}.h5"
        fill(path, result, args.compare)
        opened, listed = open_and_list(path)
        weights = sum(t.numel() * t.element_size() for t in result.state_dict.values())
        print(f"{args.compare} runs, hidden {hidden} ({weights:,} weight bytes each): "
              f"open {opened:.3f} s, top 10 {1000 * listed:.2f} ms, "
              f"file {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
