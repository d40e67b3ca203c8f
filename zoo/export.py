"""`cellzoo zoo export`: a run as plain files that need neither cellzoo nor h5py to use.

The model is a `torch.export` program (``model.pt2``; TorchScript is deprecated) of one
token step, and ``vocab.json`` holds the vocabulary and the tokenisation rule, so that
text can be scored with plain torch (README.txt in the export shows how).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cellzoo.common.io import json_safe
from cellzoo.train.corpus import EOS, load_corpus
from cellzoo.zoo.model import export_step_model, state_shapes
from cellzoo.zoo.records import Run, ZooError
from cellzoo.zoo.store import Zoo

FILES = ("cell.dsl", "config.json", "run.json", "vocab.json", "README.txt", "state_dict.pt",
         "model.pt2")

USAGE = """\
Exported from a cellzoo zoo: run {run_id} of cell {hash} ({task})

  cell.dsl        the cell in the cellzoo DSL (canonical form)
  config.json     the training configuration (cellzoo.train.TrainConfig)
  run.json        everything the zoo knows about the run (perplexities, curve, lineage)
  vocab.json      "tokens": the vocabulary (a token's id is its index) and the tokenisation
  state_dict.pt   the weights: torch.load("state_dict.pt", weights_only=True)
  model.pt2       the language model, one token per call, as a torch.export program

Scoring text with plain torch (no cellzoo needed):

    import json, math, torch
    import torch.nn.functional as F
    model = torch.export.load("model.pt2").module()
    vocab = json.load(open("vocab.json"))
    ids = {{token: i for i, token in enumerate(vocab["tokens"])}}
    tokens = [t for line in open("text.txt") for t in line.split() + [vocab["eos"]]]
    x = torch.tensor([ids.get(t, ids.get(vocab["unk"])) for t in tokens])  # [T]
    state = tuple(torch.zeros(1, *shape[1:]) for shape in {shapes})
    nll = 0.0
    for t in range(len(x) - 1):
        logits, state = model(x[t:t + 1], state)  # tokens [batch] -> logits [batch, vocab]
        nll += F.cross_entropy(logits, x[t + 1:t + 2]).item()
    print("perplexity", math.exp(nll / (len(x) - 1)))

The state is {shapes} for batch size 1 (listed in run.json as "state_shapes";
the batch is the first dimension), all zeros to start.
"""


def choose_run(zoo: Zoo, hash_prefix: str, run_prefix: str | None,
               task: str | None = None) -> Run:
    """The run to export: the named one, else the cell's best ok run with weights on `task`
    (which must be given when the cell was trained on several tasks: perplexities of
    different tasks are not comparable)."""
    cell = zoo.cell(hash_prefix)
    if run_prefix is not None:
        run = zoo.run(run_prefix)
        if run.hash != cell.hash:
            raise ZooError(f"run {run.run_id} belongs to cell {run.hash}, not {cell.hash}")
        return run
    ok = [r for r in cell.runs if r.has_weights and r.status == "ok"
          and task in (None, r.task)]
    if not ok:
        on = f" on task {task}" if task else ""
        raise ZooError(f"cell {cell.hash} has no ok run with weights{on} to export")
    tasks = sorted({r.task for r in ok})
    if len(tasks) > 1:
        raise ZooError(f"cell {cell.hash} has ok runs on {len(tasks)} tasks ({', '.join(tasks)})"
                       f"; choose one with --task (or a run with --run)")
    return min(ok, key=lambda r: r.val_ppl)


def vocabulary(run: Run, rows: int, data_dir: str | Path | None) -> dict:
    """The run's vocabulary (from its task's corpus) and how text becomes tokens."""
    tokens = load_corpus(run.task, data_dir).vocab
    if len(tokens) != rows:
        raise ZooError(f"run {run.run_id} has {rows} embedding rows but the {run.task} corpus "
                       f"found has {len(tokens)} tokens; pass --data with the corpus it was "
                       f"trained on")
    return {"task": run.task, "tokens": tokens, "eos": EOS,
            "unk": "<unk>" if "<unk>" in tokens else None,
            "tokenisation": "each line: its whitespace-separated tokens, then eos"
                            + (" (blank lines skipped)" if run.task == "ptb-char" else "")}


def export_run(zoo: Zoo, run: Run, out: Path, data_dir: str | Path | None = None) -> list[Path]:
    """Write the run's files into `out`; returns their paths."""
    model = zoo.rebuild(run.run_id)
    vocab = vocabulary(run, model.encoder.weight.shape[0], data_dir)
    program = export_step_model(model)
    out.mkdir(parents=True, exist_ok=True)
    shapes = state_shapes(model)
    meta = run.to_dict() | {"curve": run.curve, "state_shapes": shapes}
    files = {
        "cell.dsl": run.expr + "\n",
        "config.json": json.dumps(run.config, indent=2, sort_keys=True) + "\n",
        "run.json": json.dumps(json_safe(meta), indent=2, sort_keys=True) + "\n",
        "vocab.json": json.dumps(vocab, indent=1) + "\n",
        "README.txt": USAGE.format(run_id=run.run_id, hash=run.hash, task=run.task,
                                   shapes=shapes),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    torch.save(zoo.load_state_dict(run.run_id), out / "state_dict.pt")
    torch.export.save(program, out / "model.pt2")
    return [out / name for name in FILES]
