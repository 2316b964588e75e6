"""Character-level language modelling, as Karpathy's char-rnn (Karpathy, Johnson & Fei-Fei 2015).

Text: the corpus shipped in seqbench/data/corpus (2.0 MB of CPython 3.11.7 standard-library
sources, PSF License 2.0; PROVENANCE.md there says which files), or the file given by the
option ``path`` (UTF-8 characters, or raw bytes with ``encoding=bytes``). The held-out split
is the text's fixed tail (``test_fraction``, 5% as char-rnn's val_frac); the vocabulary is
the training split's characters, sorted by code point (a held-out character the training
text never shows maps to one extra "unknown" class, which the shipped corpus does not need).

Batches, as char-rnn makes them: the training split is cut into ``batch`` contiguous streams
of equal length; training step t reads chunk t (``seq_len`` characters) of every stream, and
its ``StreamBatch.continues`` tells the training loop that chunk t continues chunk t - 1, so
the hidden state is carried over (truncated BPTT, k1 = k2 = seq_len; no gradient crosses a
chunk boundary). After the last whole chunk the next epoch starts: ``continues`` is False
and the state starts from zeros. Training reads the streams in order, as char-rnn does: the
seed changes the weights, not the data order.

    x: (B, T, V) one-hot characters     y: (B, T) the next character of each position

Loss: cross-entropy in nats per character (the training loop's unit, as torch's
CrossEntropyLoss); ``metrics`` adds bits per character (bpc = nats / ln 2) and accuracy;
perplexity = e^nats = 2^bpc. Evaluation (``held_out_batches``) reads the whole held-out split
once, as streams with the state carried, from zeros at its start.

Baseline: the unigram entropy of the training split, in nats (the loss of the best memoryless
predictor, which outputs the training text's character frequencies); 4.60 bits per character
on the shipped corpus. Solved: held-out loss below SOLVED_FRACTION of it (bpc below half the
unigram entropy: 2.30 bpc on the shipped corpus). A model that has learned only which
characters are common sits at 1.0x; one that has learned only the previous character (a
bigram model: 3.53 bpc on the shipped corpus's training split, 0.77x) is far from the bar;
only context over several characters (words, indentation) gets below it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..options import Option
from .base import Batch, Task, check_batch, one_hot, softmax_cross_entropy

CORPUS_FILE = "data/corpus/python-stdlib.txt.gz"  # inside the seqbench package
CORPUS_SHA256 = "99f6868819925b9130390701fab41f5efaae7c8007386e4cb6dc01e926c8b4e2"
ENCODINGS = ("utf-8", "bytes")
TEST_FRACTION = 0.05
SOLVED_FRACTION = 0.5


@dataclass
class StreamBatch(Batch):
    """A chunk of the batch's streams. continues: chunk t of the same streams whose chunk
    t - 1 was the previous batch of this split (carry the state); False at a stream's start."""

    continues: bool = False


@lru_cache(maxsize=1)
def corpus_bytes() -> bytes:
    """The shipped corpus, uncompressed, its SHA-256 checked."""
    packed = resources.files("seqbench").joinpath(CORPUS_FILE).read_bytes()
    text = gzip.decompress(packed)
    if hashlib.sha256(text).hexdigest() != CORPUS_SHA256:
        raise ConfigError(
            f"seqbench's corpus {CORPUS_FILE} is damaged (SHA-256 differs); reinstall"
        )
    return text


def read_codes(path: str | None, encoding: str = "utf-8") -> np.ndarray:
    """The text as code points (utf-8) or byte values (bytes), int64; one-line errors."""
    if path is None:
        data = corpus_bytes()
    else:
        data = _read_file(path)
        if encoding == "utf-8" and b"\x00" in data:
            raise ConfigError(
                f"char-lm: {path} looks binary (it holds NUL bytes); give a text file, or "
                "--task-opt encoding=bytes to model its raw bytes"
            )
    if encoding == "bytes":
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"char-lm: {path} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "--task-opt encoding=bytes models its raw bytes"
        ) from None
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def _read_file(path: str) -> bytes:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"char-lm: no such file {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"char-lm: {path} is a directory, not a text file") from None
    except OSError as e:
        raise ConfigError(f"char-lm: cannot read {path}: {e.strerror or e}") from None
    if not data:
        raise ConfigError(f"char-lm: {path} is empty")
    return data


def symbol_text(codes, encoding: str) -> str:
    """Code points or byte values -> text to print (bytes decoded as UTF-8, bad ones replaced)."""
    codes = [int(c) for c in codes]
    if encoding == "bytes":
        return bytes(codes).decode("utf-8", errors="replace")
    return "".join(chr(c) for c in codes)


def stream_chunks(ids: np.ndarray, streams: int, seq_len: int) -> tuple[np.ndarray, int]:
    """(starts (streams,), chunks per epoch): stream b reads ids[starts[b] : starts[b] + L + 1]
    with L = (len(ids) - 1) // streams, in chunks of seq_len inputs (the remainder is unused)."""
    length = (len(ids) - 1) // streams
    return np.arange(streams) * length, length // seq_len


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy of the symbol frequencies of ``ids``, in nats."""
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


class CharLM(Task):
    name = "char-lm"
    kind = "classification"
    readout = "all"
    default_seq_len = 50  # char-rnn's seq_length
    min_seq_len = 1
    causal = True  # the targets are the next inputs: a reverse direction would read them
    loss_unit = "nats/char"
    options = (
        Option("path", str, None, "a text file to model instead of the shipped corpus"),
        Option(
            "encoding", str, "utf-8", "how path is read: characters or raw bytes", choices=ENCODINGS
        ),  # fmt: skip
        Option(
            "test_fraction",
            float,
            TEST_FRACTION,
            "held-out tail of the text",
            0.0,
            0.5,
            low_open=True,
        ),  # fmt: skip
    )

    def __init__(self, seq_len=None, *, path=None, encoding="utf-8", test_fraction=TEST_FRACTION):
        super().__init__(seq_len)
        self.path, self.encoding = path, encoding
        codes = read_codes(path, encoding)
        n_test = max(1, int(round(test_fraction * len(codes))))
        train, test = codes[:-n_test], codes[-n_test:]
        where = "the shipped corpus" if path is None else path
        if len(train) < 2:
            raise ConfigError(f"char-lm: {where} is too short to split ({len(codes)} characters)")
        self.vocab = np.unique(train)  # code points (utf-8) or byte values, sorted
        self.unknown = bool(np.any(~np.isin(test, self.vocab)))  # an extra class at the end
        self.input_size = self.output_size = len(self.vocab) + self.unknown
        self.train_ids, self.test_ids = self.encode(train), self.encode(test)
        self.unigram_nats = unigram_entropy(self.train_ids, self.input_size)
        self._where = where
        self._step = 0  # training chunks read so far

    # -- text <-> ids

    def encode(self, codes) -> np.ndarray:
        """Code points -> class ids (the unknown class for any outside the vocabulary)."""
        codes = np.asarray(codes, dtype=np.int64)
        ids = np.searchsorted(self.vocab, codes)
        known = (ids < len(self.vocab)) & (
            self.vocab[np.minimum(ids, len(self.vocab) - 1)] == codes
        )
        return np.where(known, ids, len(self.vocab))

    def weight_file_extras(self) -> dict:
        """Saved beside the weights, so that a run can be sampled without its text."""
        return {"vocab": self.vocab, "vocab_unknown": np.array(self.unknown),
                "encoding": np.array(self.encoding)}  # fmt: skip

    # -- batches

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a batch whose streams would be shorter than one chunk (a ConfigError)."""
        T = self.seq_len
        if (len(self.train_ids) - 1) // batch_size < T:
            raise ConfigError(
                f"char-lm: the training text of {self._where} ({len(self.train_ids)} characters) "
                f"is too short for {batch_size} streams of seq_len {T} + 1; lower --batch or "
                "--seq-len"
            )
        if len(self.test_ids) - 1 < T:
            raise ConfigError(
                f"char-lm: the held-out tail of {self._where} ({len(self.test_ids)} characters) "
                f"is shorter than seq_len {T} + 1; raise test_fraction or lower --seq-len"
            )

    def _chunk(self, ids, starts, t) -> tuple[np.ndarray, np.ndarray]:
        idx = starts[:, None] + t * self.seq_len + np.arange(self.seq_len + 1)
        window = ids[idx]  # (B, T + 1)
        return one_hot(window[:, :-1], self.input_size, self.input_dtype), window[:, 1:]

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        """train: the next chunk of the training streams (rng unused: the order is fixed).
        test: windows of the held-out split at offsets drawn from rng (the gradient probe's
        batch); the evaluation reads the held-out split whole (``held_out_batches``)."""
        batch_size = check_batch(batch_size, split)
        self.check_batch_size(batch_size)
        if split == "test":
            starts = rng.integers(0, len(self.test_ids) - self.seq_len, size=batch_size)
            return StreamBatch(*self._chunk(self.test_ids, starts, 0), continues=False)
        starts, chunks = stream_chunks(self.train_ids, batch_size, self.seq_len)
        t = self._step % chunks
        self._step += 1
        return StreamBatch(*self._chunk(self.train_ids, starts, t), continues=t > 0)

    def held_out_batches(self, batch_size: int):
        """The whole held-out split once: min(batch, what fits) streams, chunk by chunk."""
        streams = max(1, min(batch_size, (len(self.test_ids) - 1) // self.seq_len))
        starts, chunks = stream_chunks(self.test_ids, streams, self.seq_len)
        for t in range(chunks):
            yield StreamBatch(*self._chunk(self.test_ids, starts, t), continues=t > 0)

    # -- loss, baseline, verdict

    @property
    def baseline(self) -> float:
        return self.unigram_nats

    def metrics(self, out, y) -> dict:
        bpc = softmax_cross_entropy(out, y)[0] / math.log(2)
        return {**super().metrics(out, y), "bpc": bpc}

    solved_rule = (
        f"held-out loss < {SOLVED_FRACTION:g} x the unigram entropy of the training text, "
        f"i.e. bpc below {SOLVED_FRACTION:g} x its bits/char"
    )

    def solved(self, loss: float, metrics: dict) -> bool:
        return loss < SOLVED_FRACTION * self.baseline


TASK = CharLM
