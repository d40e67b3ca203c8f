"""The compiled-step mode: one `torch.compile`d time step per cell, shared by the process.

Compiling the unrolled sequence (``mode="compile"``) costs a compilation per
sequence length and per module. The step (one time step of one layer, forward
and, through AOTAutograd, backward) is the same function for every layer, every
sequence length and every epoch, so it is compiled once and kept here, keyed by
the hidden width and the step's generated source (the source is fixed by the
cell's structure; two trees with one canonical hash may order their weights
differently, so the source, not the hash, is the key). Torch's inductor also caches
its generated kernels on disk (``TORCHINDUCTOR_CACHE_DIR``, by default under
``/tmp/torchinductor_<user>``), which spares a later process most of the work.

`CompiledCell` uses the step only while recording gradients: evaluation under
``torch.no_grad`` runs the cell's eager function rather than paying for a second
(inference) graph. A step that torch cannot compile falls back to eager with one
warning line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class CompiledStep:
    """A cell's step function, compiled on its first call with gradients."""

    def __init__(self, eager: Callable[..., tuple[Tensor, Tensor]],
                 backend: str | Callable = "inductor"):
        self.eager = eager
        self.compiled = torch.compile(eager, backend=backend, dynamic=False)
        self.failed = False

    def __call__(self, *args) -> tuple[Tensor, Tensor]:
        if self.failed:
            return self.eager(*args)
        try:
            return self.compiled(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
            self.failed = True
            reason = getattr(err, "inner_exception", None) or err  # the backend's own error
            first = (str(reason).strip().splitlines() or [""])[0][:200]
            log.warning("cellzoo: the cell step could not be compiled, running eager (%s: %s)",
                        type(reason).__name__, first)
            return self.eager(*args)


_STEPS: dict[tuple[int, str], CompiledStep] = {}


def compiled_step(hidden: int, source: str,
                  materialise: Callable[[str], Callable]) -> CompiledStep:
    """The process's compiled step for this width and generated ``source`` (made once)."""
    key = (hidden, source)
    if key not in _STEPS:
        _STEPS[key] = CompiledStep(materialise(source))
    return _STEPS[key]


def run_steps(step: Callable[..., tuple[Tensor, Tensor]], length: int, statics: list[Tensor],
              h: Tensor, c: Tensor, pos: Tensor, uses_pos: bool,
              weights: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """``length`` steps of ``step``: outputs [T, B, H], the last h and c."""
    per_step = [s.unbind(0) for s in statics]  # unbind once, not T indexings
    outs = []
    for t in range(length):
        pos_t = pos + t if uses_pos else pos
        h, c = step(*(s[t] for s in per_step), h, c, pos_t, *weights)
        outs.append(h)
    return torch.stack(outs), h, c
