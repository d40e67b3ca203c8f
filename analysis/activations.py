"""Run zoo models over the same tokens and record every layer's hidden state per token.

The text is either a slice of a corpus split or user text tokenised with the
run's corpus vocabulary (whitespace tokens, ``<eos>`` after each line, unknown
words become ``<unk>``). Alongside the hidden states each model's log-probability
of every next token is kept, so pairwise ensemble gains need no second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cellzoo.analysis.cache import AnalysisCache, AnalysisError, Arrays, array_key
from cellzoo.train import Corpus, LanguageModel
from cellzoo.train.corpus import EOS
from cellzoo.zoo import Run, Zoo

UNK = "<unk>"
#: time steps run at once; the state carries over between chunks
CHUNK = 256


@dataclass(frozen=True)
class Text:
    """Token ids of a text: the model reads ``ids[:-1]`` and predicts ``ids[1:]``."""

    ids: np.ndarray
    vocab: list[str]
    source: str

    @property
    def words(self) -> list[str]:
        """The input words, one per recorded time step."""
        return [self.vocab[i] for i in self.ids[:-1]]

    @property
    def key(self) -> str:
        return array_key(self.ids, len(self.vocab))

    def __len__(self) -> int:
        return len(self.ids) - 1


def split_text(corpus: Corpus, split: str, tokens: int) -> Text:
    """The first ``tokens`` inputs of a split (and the token after them as the last target)."""
    if split not in ("train", "valid", "test"):
        raise AnalysisError(f"unknown split {split!r}; choose train, valid or test")
    data = getattr(corpus, split)
    if len(data) < 2:
        raise AnalysisError(f"{corpus.name} {split} split has fewer than 2 tokens")
    ids = data[: tokens + 1].numpy().astype(np.int64)
    return Text(ids, corpus.vocab, f"{corpus.name}/{split}[:{len(ids) - 1}]")


def tokenize(text: str, vocab: Sequence[str]) -> np.ndarray:
    """Whitespace tokens plus ``<eos>`` per non-blank line (when the vocabulary has one: the
    synthetic task does not); unknown words map to ``<unk>``."""
    index = {word: i for i, word in enumerate(vocab)}
    end = [EOS] if EOS in index else []
    ids, unknown = [], []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        for word in words + end:
            if word in index:
                ids.append(index[word])
            elif UNK in index:
                ids.append(index[UNK])
            else:
                unknown.append(word)
    if unknown:
        shown = ", ".join(repr(w) for w in sorted(set(unknown))[:8])
        raise AnalysisError(f"{len(unknown)} words are not in the vocabulary and it has no "
                            f"{UNK} token: {shown}")
    return np.asarray(ids, dtype=np.int64)


def user_text(corpus: Corpus, text: str, source: str, tokens: int | None = None) -> Text:
    ids = tokenize(text, corpus.vocab)
    if tokens is not None:
        ids = ids[: tokens + 1]
    if len(ids) < 2:
        raise AnalysisError(f"{source}: the text has fewer than 2 tokens")
    return Text(ids, corpus.vocab, source)


def record(model: LanguageModel, ids: np.ndarray) -> Arrays:
    """Hidden states ``layer<i>`` [T, H] (float32) and ``target_logp`` [T] (float64) of one
    stream (batch 1, state carried from the start). Runs the model's layers itself, in eval
    mode (dropout off), because `LanguageModel.forward` returns only the logits."""
    model.eval()
    inputs = torch.from_numpy(ids[:-1]).view(-1, 1)
    targets = torch.from_numpy(ids[1:])
    layers: list[list[torch.Tensor]] = [[] for _ in model.cells]
    logps = []
    with torch.no_grad():
        state = model.init_state(1)
        for start in range(0, len(inputs), CHUNK):
            x = model.encoder(inputs[start: start + CHUNK])
            new_state = []
            for outputs, cell, layer_state in zip(layers, model.cells, state, strict=True):
                x, s = cell(x, layer_state)
                outputs.append(x[:, 0])
                new_state.append(s)
            state = new_state
            logp = F.log_softmax(model.decoder(x[:, 0]).double(), dim=-1)
            chunk_targets = targets[start: start + CHUNK]
            logps.append(logp.gather(1, chunk_targets.view(-1, 1))[:, 0])
    arrays = {f"layer{i}": torch.cat(out).float().numpy() for i, out in enumerate(layers)}
    arrays["target_logp"] = torch.cat(logps).numpy()
    return arrays


def check_vocab(model: LanguageModel, run: Run, vocab_size: int) -> None:
    found = model.encoder.num_embeddings
    if found != vocab_size:
        raise AnalysisError(f"run {run.run_id} ({run.task}) has a vocabulary of {found} tokens, "
                            f"the corpus has {vocab_size}: it was trained on other data")


def activations(zoo: Zoo, runs: Sequence[Run], text: Text,
                cache: AnalysisCache) -> dict[str, Arrays]:
    """Per run id: its recorded arrays on ``text`` (from the cache when there)."""

    def compute(run: Run) -> Arrays:
        model = zoo.rebuild(run.run_id)
        check_vocab(model, run, len(text.vocab))
        return record(model, text.ids)

    return {run.run_id: cache.fetch(run.run_id, f"acts-{text.key}", lambda r=run: compute(r))
            for run in runs}


def layer(arrays: Arrays, index: int = -1) -> np.ndarray:
    """One layer's hidden states [T, H] of a record (negative index: from the top)."""
    names = sorted((k for k in arrays if k.startswith("layer")), key=lambda k: int(k[5:]))
    try:
        return arrays[names[index]]
    except IndexError:
        raise AnalysisError(f"layer {index} does not exist; the model has {len(names)}") from None
