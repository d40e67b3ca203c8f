"""The language model around a cell: embedding -> L compiled cells -> dropout -> decoder."""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor, nn

from cellzoo.dsl.compile import MODES, CompiledCell
from cellzoo.dsl.tree import Node
from cellzoo.train.config import TrainConfig

LayerState = tuple[Tensor, ...]

#: how cells run, per device type, chosen by measurement (docs/results.md, "compiled step"):
#: the compiled step must cost at most 10% of a rung-0 evaluation and beat eager over it
DEFAULT_MODES = {"cpu": "eager", "cuda": "eager"}
MODE_VARIABLE = "CELLZOO_CELL_MODE"


def cell_mode(device: str) -> str:
    """The mode cells run in on ``device`` ('cpu', 'cuda' or 'auto'): ``$CELLZOO_CELL_MODE``
    when set (the mode changes speed, not results), else the measured default."""
    chosen = os.environ.get(MODE_VARIABLE)
    if chosen is not None:
        if chosen not in MODES:
            raise ValueError(f"{MODE_VARIABLE}={chosen!r}: choose one of {', '.join(MODES)}")
        return chosen
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return DEFAULT_MODES.get(torch.device(device).type, "eager")


class LanguageModel(nn.Module):
    """Predicts the next token with a stack of DSL cells.

    Dropout (Zaremba et al.'s non-recurrent dropout) acts on the embedding
    output, between layers and before the decoder. The decoder shares the
    embedding's weights when ``config.tied`` (tie_weights and emb == hidden).
    """

    def __init__(self, cell: Node | str, vocab_size: int, config: TrainConfig,
                 mode: str | None = None):
        super().__init__()
        emb, hidden = config.emb_size, config.hidden
        mode = mode or cell_mode(config.device)
        self.encoder = nn.Embedding(vocab_size, emb)
        self.cells = nn.ModuleList(CompiledCell(cell, emb if i == 0 else hidden, hidden, mode)
                                   for i in range(config.layers))
        self.drop = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(hidden, vocab_size)
        if config.tied:
            self.decoder.weight = self.encoder.weight
        self._init_weights(config.init_range)

    def _init_weights(self, init_range: float | None) -> None:
        """Every parameter uniform in +-init_range (Zaremba et al.), except LayerNorm gains and
        biases, which keep 1 and 0; unset: the PyTorch example's embedding/decoder init (+-0.1,
        zero decoder bias) and the cells' own default init."""
        if init_range is not None:
            norms = {id(p) for m in self.modules() if isinstance(m, nn.LayerNorm)
                     for p in m.parameters()}
            for p in self.parameters():
                if id(p) not in norms:
                    nn.init.uniform_(p, -init_range, init_range)
            return
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if self.decoder.weight is not self.encoder.weight:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> list[LayerState]:
        return [cell.init_state(batch, device=device) for cell in self.cells]

    def forward(self, tokens: Tensor, state: list[LayerState]) -> tuple[Tensor, list[LayerState]]:
        """tokens [T, B] -> logits [T, B, V] and the new per-layer state."""
        x = self.drop(self.encoder(tokens))
        new_state = []
        for cell, layer_state in zip(self.cells, state, strict=True):
            x, s = cell(x, layer_state)
            new_state.append(s)
            x = self.drop(x)
        return self.decoder(x), new_state


def detach_state(state: list[LayerState]) -> list[LayerState]:
    """Cut the graph between BPTT windows; the values carry over."""
    return [tuple(t.detach() for t in layer) for layer in state]


def count_params(model: nn.Module) -> int:
    """Trainable parameters, counting tied weights once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cell: Node | str, vocab_size: int, config: TrainConfig) -> LanguageModel:
    return LanguageModel(cell, vocab_size, config)


def model_params(cell: Node | str, vocab_size: int, config: TrainConfig) -> int:
    """Parameters of the language model around ``cell``, built on the meta device (no memory)."""
    with torch.device("meta"):
        return count_params(build_model(cell, vocab_size, config))


def matched_hidden(cell: Node | str, reference: Node | str, vocab_size: int,
                   config: TrainConfig, tolerance: float = 0.05) -> tuple[int, int, int]:
    """(width, its parameter count, the reference's count): the hidden width at which
    ``cell``'s model has as many parameters as ``reference``'s at ``config.hidden`` (the
    closest width; the embedding follows it unless ``config.emb`` is set).

    Comparisons of cells are fair only at equal parameter counts: a tanh-RNN has a quarter of
    an LSTM's recurrent weights at the same width. Raises ValueError when no width comes within
    ``tolerance`` (relative) of the reference's count.
    """
    target = model_params(reference, vocab_size, config)

    @functools.cache
    def params(hidden: int) -> int:
        return model_params(cell, vocab_size, config.replace(hidden=hidden))

    low, high = 1, max(2 * config.hidden, 2)
    while params(high) < target:
        high *= 2
    while high - low > 1:  # the count grows with the width: bisect to target's neighbours
        mid = (low + high) // 2
        low, high = (mid, high) if params(mid) < target else (low, mid)
    best = min((low, high), key=lambda h: abs(params(h) - target))
    if abs(params(best) - target) > tolerance * target:
        raise ValueError(f"no hidden width gives {cell} within {tolerance:.0%} of {target:,} "
                         f"parameters (closest: {params(best):,} at hidden {best})")
    return best, params(best), target
