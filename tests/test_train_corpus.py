"""Corpora: the synthetic language's exact entropy, resolution order, tokenisation, real PTB."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cellzoo.train import fetch
from cellzoo.train.corpus import (
    CorpusNotFoundError,
    SyntheticSpec,
    load_corpus,
    resolve_corpus_dir,
    synthetic_corpus,
)

REAL = Path(os.environ["CELLZOO_DATA"]) if os.environ.get("CELLZOO_DATA") else None
needs_real = pytest.mark.skipif(REAL is None or not (REAL / "ptb" / "train.txt").is_file(),
                                reason="set CELLZOO_DATA to the shared data folder")


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No CELLZOO_DATA, and an empty cache folder."""
    monkeypatch.delenv("CELLZOO_DATA", raising=False)
    monkeypatch.setenv("CELLZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path


def write_corpus(folder: Path, train: str, valid: str = "a b\n", test: str = "b a\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text)
    return folder


def conditional_entropy(seq: np.ndarray, delay: int, vocab: int) -> float:
    """Plug-in estimate of H(X_t | X_{t-delay}) in nats."""
    joint = np.zeros((vocab, vocab))
    np.add.at(joint, (seq[:-delay], seq[delay:]), 1)
    joint /= joint.sum()
    cond = joint / joint.sum(axis=1, keepdims=True)
    mask = joint > 0
    return float(-(joint[mask] * np.log(cond[mask])).sum())


@pytest.mark.parametrize("spec", [SyntheticSpec(), SyntheticSpec(vocab=8, delay=5, p=0.5)])
def test_synthetic_best_ppl_matches_empirical_entropy(spec):
    seq = spec.sample(200_000, np.random.default_rng(0))
    empirical = conditional_entropy(seq, spec.delay, spec.vocab)
    assert empirical == pytest.approx(spec.entropy_rate(), abs=0.01)
    assert spec.best_ppl == pytest.approx(math.exp(spec.entropy_rate()))
    # the copy target carries the information: one step back tells (almost) nothing
    assert conditional_entropy(seq, 1, spec.vocab) > empirical + 0.3


def test_synthetic_limits_and_determinism():
    assert SyntheticSpec(vocab=16, p=0.0).best_ppl == pytest.approx(16)
    assert SyntheticSpec(vocab=16, p=1.0).best_ppl == pytest.approx(1.0)
    a, b = synthetic_corpus(), synthetic_corpus()
    assert a.train.equal(b.train) and a.test.equal(b.test)
    assert not a.train[:1000].equal(a.valid[:1000])
    assert a.vocab_size == 16 and 1 < a.best_ppl < 16


def test_resolution_order(no_env, monkeypatch):
    given = write_corpus(no_env / "given", "a b\n")
    nested = write_corpus(no_env / "parent" / "ptb", "a b\n")
    env = write_corpus(no_env / "env" / "ptb", "a b\n")
    cache = write_corpus(no_env / "cache" / "ptb", "a b\n")
    assert resolve_corpus_dir("ptb") == cache
    monkeypatch.setenv("CELLZOO_DATA", str(no_env / "env"))
    assert resolve_corpus_dir("ptb") == env
    assert resolve_corpus_dir("ptb", no_env / "parent") == nested
    assert resolve_corpus_dir("ptb", given) == given


def test_missing_corpus_says_where_and_how(no_env):
    with pytest.raises(CorpusNotFoundError) as info:
        load_corpus("wikitext-2", no_env / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(no_env / "nowhere") in message and str(no_env / "cache" / "wikitext-2") in message
    for hint in ("--data", "CELLZOO_DATA", "cellzoo data fetch wikitext-2"):
        assert hint in message


def test_tokenisation_vocab_and_unknown_words(no_env):
    folder = write_corpus(no_env / "c", " the cat \n the dog \n", " the dog \n", " cat \n")
    corpus = load_corpus("ptb", folder)
    assert corpus.vocab == ["the", "cat", "<eos>", "dog"]
    assert corpus.train.tolist() == [0, 1, 2, 0, 3, 2]
    assert corpus.test.tolist() == [1, 2]
    write_corpus(no_env / "d", "a b\n", "a zebra\n")
    with pytest.raises(ValueError, match="zebra"):
        load_corpus("ptb", no_env / "d")


def test_ptb_char_skips_the_blank_last_line(no_env):
    text = "a b _ c \n d _ e \n "
    folder = write_corpus(no_env / "ch", text, text, text)
    corpus = load_corpus("ptb-char", folder)
    assert corpus.train.numel() == 4 + 3 + 2  # symbols plus one <eos> per real line
    words = load_corpus("wikitext-2", write_corpus(no_env / "wt", " a \n \n b \n"))
    assert words.train.numel() == 2 + 3  # wikitext keeps blank lines: each gives an <eos>


@needs_real
@pytest.mark.parametrize("task, vocab, sizes", [
    ("ptb", 10_000, (929_589, 73_760, 82_430)),
    ("ptb-char", 50, (5_017_482, 393_042, 442_423)),
])
def test_real_corpus_counts(task, vocab, sizes):
    corpus = load_corpus(task)  # found through CELLZOO_DATA
    assert corpus.vocab_size == vocab
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == sizes
    assert corpus.best_ppl is None


@needs_real
def test_char_level_ptb_is_derived_byte_for_byte():
    data = fetch.ptb_to_chars((REAL / "ptb" / "valid.txt").read_bytes())
    assert hashlib.sha256(data).hexdigest() == fetch.SHA256["ptb-char"]["valid"]


@needs_real
def test_fetch_checks_sums_and_fails_clearly(no_env, monkeypatch):
    monkeypatch.setitem(fetch.SOURCES, "ptb", f"file://{REAL}/ptb/{{split}}.txt")
    folder = fetch.fetch_corpus("ptb")
    assert folder == no_env / "cache" / "ptb"
    assert load_corpus("ptb").vocab_size == 10_000
    monkeypatch.setitem(fetch.SOURCES, "wikitext-2", f"file://{REAL}/ptb/{{split}}.txt")
    with pytest.raises(fetch.FetchError, match="does not match"):
        fetch.fetch_corpus("wikitext-2")
    assert not (no_env / "cache" / "wikitext-2" / "train.txt").exists()
    monkeypatch.setitem(fetch.SOURCES, "wikitext-2", f"file://{no_env}/absent/{{split}}.txt")
    with pytest.raises(fetch.FetchError, match="(?s)could not download .*CELLZOO_DATA"):
        fetch.fetch_corpus("wikitext-2")


def test_counter_sanity_of_sample():
    spec = SyntheticSpec(vocab=4, delay=2, p=0.9)
    seq = spec.sample(20_000, np.random.default_rng(1))
    copies = Counter(seq[spec.delay:] == seq[:-spec.delay])[True] / (len(seq) - spec.delay)
    assert copies == pytest.approx(spec.p + (1 - spec.p) / spec.vocab, abs=0.01)
