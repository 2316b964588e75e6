"""The task contract: every task is a seeded generator, a loss, metrics, a baseline and an
explicit "solved" test. The trainer and the ESN readout only ever talk to this interface.

Shapes (batch-first, float64 from the generator; the trainer casts to the model's dtype):
    x:        (B, T, input_size)
    y:        readout "all":  (B, T) int labels  | (B, T, output_size) floats
              readout "last": (B,)   int labels  | (B, output_size) floats
    out:      what the output layer produced, same leading shape as y, last axis output_size
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class Batch:
    x: np.ndarray
    y: np.ndarray


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy over every labelled position; returns (loss, dL/dlogits)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    flat = logp.reshape(-1, logp.shape[-1])
    idx = labels.reshape(-1)
    loss = -flat[np.arange(idx.size), idx].mean()
    grad = np.exp(flat)
    grad[np.arange(idx.size), idx] -= 1.0
    return float(loss), (grad / idx.size).reshape(logits.shape).astype(logits.dtype, copy=False)


def mean_squared_error(out, target):
    """Mean over every element; returns (loss, dL/dout)."""
    diff = out - target
    return float(np.mean(diff * diff)), (2.0 * diff / diff.size).astype(out.dtype, copy=False)


def accuracy(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


# -- small helpers shared by the generators

SPLITS = ("train", "test")


def check_batch(batch_size, split: str) -> int:
    """Validate ``generate``'s arguments once, at the edge; returns batch_size as an int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer (1 or more), got {batch_size}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return int(batch_size)


def one_hot(indices, n: int, dtype=np.float64) -> np.ndarray:
    """Integer array of any shape -> one-hot (float64 unless asked) with a trailing axis of n."""
    return (np.asarray(indices)[..., None] == np.arange(n)).astype(dtype)


class Task:
    """Base class. Subclasses set the class attributes and implement ``generate``."""

    name = ""
    kind = "classification"  # or "regression"
    readout = "last"  # "all": a target at every step; "last": one per sequence
    input_size = 1
    output_size = 1
    default_seq_len = 100
    min_seq_len = 1  # a task that needs more says so, and why (min_seq_len_why)
    min_seq_len_why = ""
    options = ()  # seqbench.options.Option declarations of the constructor's keywords

    # -- optional: what a task may declare; these defaults mean "nothing special"
    # training (seqbench.config, seqbench.train) and the console
    causal = False  # True: the targets are the next inputs, so a bidirectional model would cheat
    loss_unit = ""  # the loss's unit for the console (char-lm: "nats/char", also shown in bits)
    # one-hot inputs are built in this dtype: the trainer sets its run's, so that no step
    # casts a float64 batch (exact either way: 0 and 1)
    input_dtype = np.float64
    # check_batch_size(B): raises ConfigError where B cannot run (char-lm: text too short for
    # B streams); held_out_batches(B): the whole held-out split as batches, evaluated in place
    # of eval_batch_count random test batches; weight_file_extras(): arrays saved beside the
    # trained weights, and a task declaring it has its runs' weights written. None: not declared.
    check_batch_size = None
    held_out_batches = None
    weight_file_extras = None
    # the echo-state readout fit (seqbench.esn_fit)
    washout = 0  # first steps of each sequence that only warm the state up, left out of the fit
    horizon = 1  # the target is the input this many steps ahead (free run needs 1)
    free_run = 0  # K > 0: the last K steps of a test window are generated, predictions fed back
    train_windows = None  # output-feedback fit: windows fitted (None: train_batches x batch)
    test_windows = None  # ... and windows tested (None: eval_batches x batch)
    windows_set = False  # True: train_windows/test_windows were asked for, not a protocol's

    @classmethod
    def options_for_model(cls, options: dict, hidden_size: int) -> dict:
        """The constructor's keywords for a model of ``hidden_size`` units: ``options`` with
        any default that depends on the model filled in (memory capacity: max_delay = 2N)."""
        return dict(options)

    def __init__(self, seq_len: int | None = None):
        seq_len = self.default_seq_len if seq_len is None else seq_len
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ConfigError(f"seq_len must be a positive integer, got {seq_len!r}")
        self.seq_len = int(seq_len)
        if self.seq_len < self.min_seq_len:
            raise ConfigError(
                f"{self.name} needs seq_len >= {self.min_seq_len} ({self.min_seq_len_why}), "
                f"got {self.seq_len}"
            )

    # -- to implement
    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        """A batch drawn from ``rng`` alone. Tasks with a fixed data set sample ``split``;
        synthetic tasks draw fresh sequences for either split. ``solved`` is meant to be
        judged on metrics of a batch drawn with split="test"."""
        raise NotImplementedError

    @property
    def baseline(self) -> float:
        """Loss of the best memoryless predictor."""
        raise NotImplementedError

    solved_rule = "eval loss < 0.1 x baseline"  # solved() in words, for the verdict line

    def solved(self, loss: float, metrics: dict) -> bool:
        return loss < 0.1 * self.baseline

    # -- shared
    @property
    def steps(self) -> int:
        """Length of the generated sequences (may exceed seq_len, e.g. copy: T + 20)."""
        return self.seq_len

    def loss(self, out, y):
        if self.kind == "classification":
            return softmax_cross_entropy(out, y)
        return mean_squared_error(out, y)

    def metrics(self, out, y) -> dict:
        if self.kind == "classification":
            return {"accuracy": accuracy(out, y)}
        return {"nrmse": float(np.sqrt(np.mean((out - y) ** 2)) / max(np.std(y), 1e-12))}
