"""`cellzoo zoo export`: a run as plain files that need neither cellzoo nor h5py to use."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cellzoo.common.io import json_safe
from cellzoo.zoo.model import state_shapes, trace_step_model
from cellzoo.zoo.records import Run, ZooError
from cellzoo.zoo.store import Zoo

USAGE = """\
Exported from a cellzoo zoo: run {run_id} of cell {hash}

  cell.dsl        the cell in the cellzoo DSL (canonical form)
  config.json     the training configuration (cellzoo.train.TrainConfig)
  run.json        everything the zoo knows about the run (perplexities, curve, lineage)
  state_dict.pt   the weights: torch.load("state_dict.pt", weights_only=True)
  model.ts        TorchScript language model, one token per call:

    import torch
    model = torch.jit.load("model.ts")
    state = tuple(torch.zeros(batch, *shape[1:]) for shape in STATE_SHAPES)
    logits, state = model(tokens, state)   # tokens: LongTensor [batch] -> logits [batch, vocab]

  with STATE_SHAPES = {shapes} (listed in run.json as "state_shapes"; batch first).
"""


def choose_run(zoo: Zoo, hash_prefix: str, run_prefix: str | None) -> Run:
    """The run to export: the named one, else the cell's best ok run with weights."""
    cell = zoo.cell(hash_prefix)
    if run_prefix is not None:
        run = zoo.run(run_prefix)
        if run.hash != cell.hash:
            raise ZooError(f"run {run.run_id} belongs to cell {run.hash}, not {cell.hash}")
        return run
    ok = [r for r in cell.runs if r.has_weights and r.status == "ok"]
    if not ok:
        raise ZooError(f"cell {cell.hash} has no ok run with weights to export")
    return min(ok, key=lambda r: r.val_ppl)


def export_run(zoo: Zoo, run: Run, out: Path) -> list[Path]:
    """Write the run's files into `out`; returns their paths."""
    model = zoo.rebuild(run.run_id)
    out.mkdir(parents=True, exist_ok=True)
    shapes = state_shapes(model)
    meta = run.to_dict() | {"curve": run.curve, "state_shapes": shapes}
    files = {
        "cell.dsl": run.expr + "\n",
        "config.json": json.dumps(run.config, indent=2, sort_keys=True) + "\n",
        "run.json": json.dumps(json_safe(meta), indent=2, sort_keys=True) + "\n",
        "README.txt": USAGE.format(run_id=run.run_id, hash=run.hash, shapes=shapes),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    torch.save(zoo.load_state_dict(run.run_id), out / "state_dict.pt")
    trace_step_model(model).save(str(out / "model.ts"))
    return [out / name for name in [*files, "state_dict.pt", "model.ts"]]
