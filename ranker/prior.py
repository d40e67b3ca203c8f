"""The NAS-Bench-NLP prior: a ranker pre-trained on NAS-Bench-NLP's PTB and WikiText-2 runs.

`build_prior` fits one ranker on both files at once, each dataset its own target
(``nas-bench-nlp/ptb``, ``nas-bench-nlp/wikitext-2``: different heads, shared
trunk). Node types NAS-Bench-NLP never uses start from the trained weights of a
stand-in (`STAND_INS`: ``ReLU`` and ``SeLU`` from ``LeakyReLU``, ``x_prev``
from ``x``); the others keep their seeded initial weights until a search's own
results train them. The package ships the result as `DEFAULT_PRIOR` (built by
``cellzoo rank build-prior``); `from_prior` loads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cellzoo.ranker.fit import ANY_TASK, DEFAULT_TASK, Examples, Ranker, RankerConfig
from cellzoo.ranker.graph import VOCAB
from cellzoo.ranker.nbnlp import STAND_INS, TARGETS

DEFAULT_PRIOR = Path(__file__).with_name("nbnlp_prior.pt")
PTB_TARGET, WT2_TARGET = TARGETS["ptb"], TARGETS["wikitext-2"]
#: which prior head a search's task starts from
TASK_HEADS = {"ptb": PTB_TARGET, "wikitext-2": WT2_TARGET, ANY_TASK: PTB_TARGET}
#: the configuration the shipped prior was built with (epochs capped to keep it under 10 min)
PRIOR_CONFIG = RankerConfig(epochs=12, patience=3)


#: values of a prior option that name no file
PRIOR_WORDS = ("default", "none")


class PriorError(ValueError):
    """The prior file is missing or unreadable."""


def read_prior(path: str | os.PathLike) -> dict:
    """The saved state at ``path``; a clear `PriorError` when it is missing or damaged."""
    hint = "rebuild it with `cellzoo rank build-prior`, or run without it (--ranker-prior none)"
    if not Path(path).is_file():
        raise PriorError(f"ranker prior {path} does not exist; {hint}")
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        Ranker().load_state_dict(state)
    except Exception as e:  # a truncated or foreign file: name it instead of a traceback
        raise PriorError(f"ranker prior {path} is damaged or not a cellzoo ranker ({e}); "
                         f"{hint}") from e
    return state


def prior_path(choice: str) -> Path | None:
    """The file a prior option names: ``default`` the shipped prior, ``none`` no prior (None),
    anything else a path."""
    return {"default": DEFAULT_PRIOR, "none": None}.get(choice, Path(choice))


def from_prior(path: str | os.PathLike | None, task: str | None = None,
               config: RankerConfig | None = None) -> Ranker:
    """A ranker that starts from the prior at ``path`` and scores for ``task``: a task
    the prior knows uses its head, any other task starts from the prior's default head.
    Fits fine-tune from the prior with ``config`` (default: the defaults at the prior's
    width). ``path=None``: a cold ranker (no prior) with an untrained head for ``task``.
    A missing or damaged file raises `PriorError` naming the file."""
    ranker = Ranker(config or RankerConfig())
    if path is None:
        ranker.adopt(task or DEFAULT_TASK)
        return ranker
    ranker.load_state_dict(read_prior(path))
    dim, members = ranker.model.dim, len(ranker.model.nets)
    if config is not None and (config.dim, config.members) != (dim, members):
        raise ValueError(f"the prior {path} has width {dim} and {members} member(s), the "
                         f"config asks for {config.dim} and {config.members}")
    ranker.config = config or RankerConfig(dim=dim, members=members)
    if task is not None:
        ranker.adopt(task)
    ranker.prior = ranker.state_dict(with_prior=False)
    return ranker


def build_prior(data: Examples, config: RankerConfig = PRIOR_CONFIG,
                epochs: int | None = None,
                progress: Callable[[dict], None] | None = None) -> Ranker:
    """Fit a ranker on NAS-Bench-NLP examples (targets already named per dataset, see
    `cellzoo.ranker.fit.join` for several), then give unseen node types their stand-ins'
    weights and name the heads new tasks start from. ``progress`` as in `Ranker.fit`."""
    ranker = Ranker(config).fit(data, epochs=epochs, progress=progress)
    seen = {VOCAB[i] for i in np.unique(data.packed.op)}
    _copy_stand_ins(ranker, seen)
    ranker.like = {k: v for k, v in TASK_HEADS.items() if v in ranker.model.targets}
    ranker.task = None
    return ranker


def _copy_stand_ins(ranker: Ranker, seen: set[str]) -> None:
    with torch.no_grad():
        for name, stand_in in STAND_INS.items():
            if name in seen or stand_in not in seen:
                continue
            for net in ranker.model.nets:
                if name in net.source:
                    net.source[name].copy_(net.source[stand_in])
                else:
                    net.fns[name].load_state_dict(net.fns[stand_in].state_dict())
