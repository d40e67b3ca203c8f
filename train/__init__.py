"""Tasks and corpora, the language model around a cell, and the training loop."""

from cellzoo.train.checkpoint import CheckpointError
from cellzoo.train.config import PRESETS, PROXIES, TrainConfig, TrainResult
from cellzoo.train.corpus import Corpus, CorpusNotFoundError, SyntheticSpec, load_corpus
from cellzoo.train.loop import Progress, batchify, evaluate, get_batch, load_run, train_cell
from cellzoo.train.model import LanguageModel, build_model

__all__ = [
    "PRESETS", "PROXIES", "CheckpointError", "Corpus", "CorpusNotFoundError", "LanguageModel",
    "Progress", "SyntheticSpec", "TrainConfig", "TrainResult", "batchify", "build_model",
    "evaluate", "get_batch", "load_corpus", "load_run", "train_cell",
]
