"""A writer that adds runs to a zoo in a loop, for the crash tests and benchmarks/zoo_stress.py.

``python -m cellzoo.zoo.soak ZOO TEMPLATE`` adds copies of one real training
result (saved by `save_template`) forever, printing ``ACK <run_id>`` after
each `add_run` returns: whatever it printed must survive a SIGKILL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cellzoo.zoo.store import Zoo


def save_template(result, path: Path) -> None:
    """Store a `TrainResult` (metadata and weights) for the writer to replay."""
    torch.save({"meta": result.to_json(), "state_dict": result.state_dict}, path)


def load_template(path: Path):
    from cellzoo.train import TrainResult

    data = torch.load(path, weights_only=True)
    result = TrainResult.from_json(data["meta"])
    result.state_dict = data["state_dict"]
    return result


def write_forever(zoo_path: Path, template: Path, max_pending: int = 256) -> None:
    result = load_template(template)
    with Zoo.open(zoo_path, "a", timeout=10.0, max_pending=max_pending) as zoo:
        generation = len(zoo)
        while True:
            run_id = zoo.add_run(result, {"origin": "manual", "generation": generation})
            print(f"ACK {run_id}", flush=True)
            generation += 1


def lost_runs(zoo_path: Path, acknowledged: list[str], template: Path) -> list[str]:
    """Acknowledged runs that are missing or whose weights differ from the template's."""
    expected = load_template(template).state_dict
    lost = []
    with Zoo.open(zoo_path, "r") as zoo:
        known = {r.run_id for r in zoo.runs()}
        for run_id in acknowledged:
            if run_id not in known:
                lost.append(run_id)
                continue
            weights = zoo.load_state_dict(run_id)
            if weights.keys() != expected.keys() or not all(
                    torch.equal(weights[k], expected[k]) for k in expected):
                lost.append(run_id)
    return lost


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit("usage: python -m cellzoo.zoo.soak ZOO TEMPLATE [MAX_PENDING]")
    write_forever(Path(args[0]), Path(args[1]), *(json.loads(a) for a in args[2:]))
