"""Corpora: where a task's text lives, how it becomes token ids, and the synthetic language.

A real corpus is a folder with ``train.txt``, ``valid.txt`` and ``test.txt``.
A folder named explicitly (the ``data_dir`` argument: the folder itself, or a
folder holding ``<task>/``) is used or refused, never swapped for another corpus.
Without one, the corpus is looked up in ``$CELLZOO_DATA/<task>/``, then in the cache
folder ``$CELLZOO_CACHE/<task>/`` (default ``~/.cache/cellzoo/<task>/``), where
``cellzoo data fetch`` puts downloads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cellzoo.common.errors import UserError

SPLITS = ("train", "valid", "test")
REAL_TASKS = ("ptb", "ptb-char", "wikitext-2")
EOS = "<eos>"


class CorpusNotFoundError(UserError, FileNotFoundError):
    """A task's corpus is in none of the places searched; the message says how to provide it."""

    def __init__(self, task: str, searched: list[Path]):
        self.task = task
        self.searched = searched
        places = "\n".join(f"  - {p}{_absent(p)}" for p in searched) or \
            "  (nowhere: no place was configured)"
        super().__init__(
            f"corpus {task!r} not found (need train.txt, valid.txt, test.txt). Looked in:\n"
            f"{places}\nProvide it with one of:\n"
            f"  - pass --data DIR (a folder with the three files, or with {task}/ inside)\n"
            f"  - set CELLZOO_DATA to a folder holding {task}/\n"
            f"  - run `cellzoo data fetch {task}` (downloads into {cache_dir() / task})")


@dataclass
class Corpus:
    """Token ids of the three splits and the vocabulary (id -> token).

    ``best_ppl`` is the lowest perplexity any model can reach in expectation
    (known for the synthetic task, None for natural text).
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: list[str]
    best_ppl: float | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def cache_dir() -> Path:
    """Where downloaded corpora live: ``$CELLZOO_CACHE`` or ``~/.cache/cellzoo``."""
    env = os.environ.get("CELLZOO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cellzoo"


def candidate_dirs(task: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``task``, in order: only ``data_dir``'s when one is given."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / task]
    found: list[Path] = []
    env = os.environ.get("CELLZOO_DATA")
    if env:
        found.append(Path(env) / task)
    found.append(cache_dir() / task)
    return found


def has_corpus(folder: Path) -> bool:
    return not missing_files(folder)


def missing_files(folder: Path) -> list[str]:
    """The split files ``folder`` lacks (all three when it does not exist)."""
    return [f"{split}.txt" for split in SPLITS if not (folder / f"{split}.txt").is_file()]


def _absent(folder: Path) -> str:
    """'' for a missing folder, else which split files an existing folder lacks."""
    missing = missing_files(folder)
    if not folder.is_dir() or not missing:
        return ""
    return f" (exists, but has no {', '.join(missing)})"


def resolve_corpus_dir(task: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first folder that holds ``task``'s three files, or `CorpusNotFoundError`."""
    searched = candidate_dirs(task, data_dir)
    for folder in searched:
        if has_corpus(folder):
            return folder
    raise CorpusNotFoundError(task, searched)


def load_corpus(task: str, data_dir: str | os.PathLike | None = None) -> Corpus:
    """Load ``task``: 'synthetic' (built in) or a real corpus from the first folder found."""
    if task == "synthetic":
        return synthetic_corpus()
    if task not in REAL_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of synthetic, {', '.join(REAL_TASKS)}")
    folder = resolve_corpus_dir(task, data_dir).resolve()
    stamps = tuple((st.st_size, st.st_mtime_ns)
                   for st in ((folder / f"{s}.txt").stat() for s in SPLITS))
    return _read_corpus(task, str(folder), stamps)


@lru_cache(maxsize=4)
def _read_corpus(task: str, folder: str, stamps: tuple) -> Corpus:
    """Tokenise a corpus folder (cached per process: a search trains many cells on one corpus)."""
    skip_blank = task == "ptb-char"  # its files end with "\n " (a last line of one space)
    lines = {s: read_lines(Path(folder) / f"{s}.txt", skip_blank) for s in SPLITS}
    index: dict[str, int] = {}
    for line in lines["train"]:
        for token in line:
            index.setdefault(token, len(index))
    tensors = {}
    for split in SPLITS:
        try:
            ids = [index[token] for line in lines[split] for token in line]
        except KeyError as err:
            raise ValueError(f"{folder}/{split}.txt: token {err.args[0]!r} is not in the "
                             f"training vocabulary") from None
        tensors[split] = torch.tensor(ids, dtype=torch.long)
    return Corpus(task, tensors["train"], tensors["valid"], tensors["test"], list(index))


def read_lines(path: Path, skip_blank: bool = False) -> list[list[str]]:
    """Whitespace tokens of each line plus ``<eos>`` (the PyTorch word_language_model rule)."""
    with open(path, encoding="utf-8") as f:
        return [line.split() + [EOS] for line in f if not (skip_blank and not line.strip())]


# --- the synthetic language -------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Each token copies the one ``delay`` steps back with probability ``p``, else is uniform.

    Telling which token comes next needs a memory of the last ``delay`` tokens,
    and the best possible prediction is known exactly (`best_ppl`).
    """

    vocab: int = 16
    delay: int = 3
    p: float = 0.8
    sizes: tuple[int, int, int] = (60_000, 6_000, 6_000)
    seed: int = 1234

    def entropy_rate(self) -> float:
        """Nats per token of the process: P(copy target) = p + (1-p)/V, each other (1-p)/V."""
        hit = self.p + (1 - self.p) / self.vocab
        miss = (1 - self.p) / self.vocab
        return -(_xlogx(hit) + (self.vocab - 1) * _xlogx(miss))

    @property
    def best_ppl(self) -> float:
        return math.exp(self.entropy_rate())

    def sample(self, length: int, rng: np.random.Generator) -> np.ndarray:
        uniform = rng.integers(0, self.vocab, size=length)
        copy = rng.random(length) < self.p
        out = uniform.copy()
        for t in range(self.delay, length):
            if copy[t]:
                out[t] = out[t - self.delay]
        return out


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


def synthetic_corpus(spec: SyntheticSpec = SyntheticSpec()) -> Corpus:
    """The synthetic task's three splits, each an independent sample; same spec, same text."""
    rng = np.random.default_rng(spec.seed)
    train, valid, test = (torch.from_numpy(spec.sample(n, rng)).long() for n in spec.sizes)
    vocab = [f"s{i}" for i in range(spec.vocab)]
    return Corpus("synthetic", train, valid, test, vocab, best_ppl=spec.best_ppl)
