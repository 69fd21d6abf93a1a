"""Tiny Shakespeare for the common task: loading, vocabulary, the 90/10 split, batches.

Nothing is downloaded: the text ships in ``data/tinyshakespeare.txt``.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LSTMBOOK_DATA", REPO_ROOT / "data"))
TRAIN_FRACTION = 0.9


def data_path(name: str = "tinyshakespeare.txt") -> Path:
    """Path of a data file, or a FileNotFoundError that says where it should be and how to fix
    it."""
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Data file not found: {path}. The course ships it in the repository's data/ folder: "
            f"restore it with `git checkout -- data/{name}`, or point LSTMBOOK_DATA at the folder "
            "that holds it. Nothing is downloaded at run time.")
    return path


# The course's corpus, as ../shared/data/README describes it: a damaged copy (empty, cut short,
# re-encoded) would otherwise surface as an obscure error far from its cause.
CORPUS_NAME = "tinyshakespeare.txt"
CORPUS_BYTES = 1_115_394
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class DataError(ValueError):
    """A data file that is there but is not what the course expects."""


def check_corpus(path: Path, raw: bytes) -> None:
    """Refuse a copy of the course's corpus whose size or checksum differs, saying how to
    restore it."""
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) == CORPUS_BYTES and digest == CORPUS_SHA256:
        return
    raise DataError(
        f"{path} is not the course's corpus: expected {CORPUS_BYTES:,} bytes with SHA-256 "
        f"{CORPUS_SHA256[:16]}..., found {len(raw):,} bytes with SHA-256 {digest[:16]}... "
        f"(empty, cut short or re-encoded). Restore it with `git checkout -- data/{CORPUS_NAME}` "
        "(or copy it again from the course's shared data folder).")


def load_text(path=None) -> str:
    """The whole corpus as one string (1,115,394 characters for tiny Shakespeare). The
    course's own file is checked against its size and checksum."""
    path = Path(path or data_path())
    raw = path.read_bytes()
    if path.name == CORPUS_NAME:
        check_corpus(path, raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start} cannot be decoded): "
                        "save it as UTF-8, or pass a UTF-8 text file") from None


class Vocab:
    """Character vocabulary: ``encode`` maps text to int64 ids, ``decode`` maps them back."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.array([self.stoi[ch] for ch in text], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"Character {err.args[0]!r} is not in the vocabulary of "
                             f"{len(self)} symbols; use only characters seen in the corpus."
                             ) from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def split(ids: np.ndarray, fraction: float = TRAIN_FRACTION):
    """The course's split, in order: first 90% for training, last 10% for validation."""
    n_train = int(len(ids) * fraction)
    return ids[:n_train], ids[n_train:]


@dataclass
class Corpus:
    text: str
    vocab: Vocab
    train: np.ndarray  # int64 ids, 1,003,854 for tiny Shakespeare
    val: np.ndarray    # int64 ids, 111,540


def load_shakespeare(path=None) -> Corpus:
    """Tiny Shakespeare encoded and split: the data of the common task."""
    text = load_text(path)
    vocab = Vocab(text)
    train, val = split(vocab.encode(text))
    return Corpus(text, vocab, train, val)


def bptt_batches(ids: np.ndarray, batch_size: int, num_steps: int):
    """Yield (X, Y) chunks of shape (batch_size, num_steps) for truncated BPTT.

    The sequence is cut into ``batch_size`` contiguous streams, one per row; chunk k+1 of a row
    continues chunk k of the same row, so a model may carry its state (h, c) from one chunk to
    the next. Y is X shifted by one character (the next-character targets).
    """
    if batch_size < 1 or num_steps < 1:
        raise ValueError(f"batch_size and num_steps must be >= 1, got {batch_size} and "
                         f"{num_steps}")
    stream_len = (len(ids) - 1) // batch_size
    if stream_len < num_steps:
        raise ValueError(f"{len(ids)} ids are too few for {batch_size} streams of "
                         f"{num_steps} steps")
    X = ids[: batch_size * stream_len].reshape(batch_size, stream_len)
    Y = ids[1: batch_size * stream_len + 1].reshape(batch_size, stream_len)
    for start in range(0, stream_len - num_steps + 1, num_steps):
        yield X[:, start:start + num_steps], Y[:, start:start + num_steps]


def random_batches(ids: np.ndarray, batch_size: int, num_steps: int, rng=None):
    """Yield endless (X, Y) batches of windows at random offsets (each started from zero state)."""
    rng = rng or np.random.default_rng()
    offsets = np.arange(num_steps)
    while True:
        starts = rng.integers(0, len(ids) - num_steps - 1, size=batch_size)
        X = ids[starts[:, None] + offsets]
        yield X, ids[starts[:, None] + offsets + 1]
