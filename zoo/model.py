"""From a stored run back to a working model: rebuild, evaluate again, export (torch.export)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from cellzoo.zoo.records import Run, ZooError

if TYPE_CHECKING:
    from cellzoo.train import LanguageModel


def rebuild(run: Run, state: dict[str, Tensor]) -> LanguageModel:
    """The run's language model with its trained weights ``state``, on the CPU, in eval
    mode."""
    from cellzoo.train import TrainConfig, build_model

    if "encoder.weight" not in state:
        raise ZooError(f"run {run.run_id} weights lack 'encoder.weight'; not a cellzoo model")
    config = TrainConfig.from_dict(run.config)
    model = build_model(run.expr, state["encoder.weight"].shape[0], config)
    model.load_state_dict(state)
    return model.eval()


def reevaluate(run: Run, state: dict[str, Tensor], data_dir: str | Path | None = None
               ) -> dict[str, float]:
    """Validation and test perplexity of the rebuilt model, measured as training measured them."""
    from cellzoo.train import TrainConfig, evaluate, load_corpus

    model = rebuild(run, state)
    config = TrainConfig.from_dict(run.config)
    corpus = load_corpus(config.task, data_dir)
    return {"val_ppl": evaluate(model, corpus.valid, config),
            "test_ppl": evaluate(model, corpus.test, config)}


class _Step(nn.Module):
    """One token step with the state flattened: (token [B], state) -> (logits [B, V], state).

    ``state`` is a tuple of 4 tensors per layer: h [B, H], c [B, H], x_prev [B, E or H]
    and the step counter pos [B, 1] (all zeros to start).
    """

    def __init__(self, lm: LanguageModel):
        super().__init__()
        self.lm = lm

    def forward(self, token: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple]:
        layers = [tuple(state[i: i + 4]) for i in range(0, len(state), 4)]
        logits, new = self.lm(token.unsqueeze(0), layers)
        return logits[0], tuple(t for layer in new for t in layer)


def initial_state(lm: LanguageModel, batch: int) -> tuple[Tensor, ...]:
    return tuple(t for layer in lm.init_state(batch) for t in layer)


def export_step_model(lm: LanguageModel) -> torch.export.ExportedProgram:
    """`torch.export` program of the one-token step model, any batch size; save it with
    `torch.export.save` and load it with plain torch: `torch.export.load(path).module()`."""
    lm = lm.eval()
    example = (torch.zeros(2, dtype=torch.long), initial_state(lm, 2))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, tuple({0: batch} for _ in example[1]))
    with torch.no_grad():
        return torch.export.export(_Step(lm), example, dynamic_shapes=dynamic)


def state_shapes(lm: LanguageModel) -> list[list[int]]:
    """Shapes of the initial state tensors for batch size 1 (the batch is the first dim)."""
    return [list(t.shape) for t in initial_state(lm, 1)]
