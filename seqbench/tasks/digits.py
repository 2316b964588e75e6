"""Sequential digits: scikit-learn's bundled 8x8 digits (no download) read pixel by pixel.

The small cousin of sequential MNIST (Le et al. 2015): 1797 images, pixels 0..16 scaled to
[0, 1], fed in row-major order as T = 64 steps of one channel.
    seq-digits:  pixels in reading order
    pseq-digits: pixels in one fixed random order, np.random.default_rng(PERMUTATION_SEED)
Split: a fixed 20% of the images (np.random.default_rng(SPLIT_SEED)) is held out as "test";
``generate`` samples images with replacement from the split it is asked for.
    x: (B, 64, 1)   y: (B,) digit 0..9
Readout "last", cross-entropy over 10 classes. Baseline: uniform prediction, ln 10.
Solved: accuracy >= 0.9 on the held-out test split (draw the batch with split="test").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ConfigError
from .base import Batch, Task, check_batch

N_PIXELS = 64
TEST_FRACTION = 0.2
SPLIT_SEED = 0
PERMUTATION_SEED = 1


@lru_cache(maxsize=1)
def load_splits() -> dict:
    """{"train": (images (N, 64) in [0, 1], labels (N,)), "test": (...)}; loaded once."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.data.astype(np.float64) / 16.0
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = int(round(TEST_FRACTION * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


class SeqDigits(Task):
    name = "seq-digits"
    kind = "classification"
    readout = "last"
    input_size = 1
    output_size = 10
    default_seq_len = N_PIXELS
    permuted = False

    def __init__(self, seq_len: int | None = None):
        super().__init__(seq_len)
        if self.seq_len != N_PIXELS:
            raise ConfigError(
                f"{self.name} has a fixed length of {N_PIXELS} steps (8x8 pixels); "
                f"leave seq_len unset or pass {N_PIXELS}, got {self.seq_len}"
            )
        self.order = (
            np.random.default_rng(PERMUTATION_SEED).permutation(N_PIXELS)
            if self.permuted
            else np.arange(N_PIXELS)
        )

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        images, labels = load_splits()[split]
        pick = rng.integers(0, len(labels), size=batch_size)
        return Batch(images[pick][:, self.order, None], labels[pick])

    def full_split(self, split: str = "test") -> Batch:
        """Every image of a split once, in a fixed order (for a complete test evaluation)."""
        check_batch(1, split)
        images, labels = load_splits()[split]
        return Batch(images[:, self.order, None], labels.copy())

    @property
    def baseline(self) -> float:
        return float(np.log(10))

    solved_rule = "accuracy >= 0.9 on held-out digits"

    def solved(self, loss: float, metrics: dict) -> bool:
        return metrics.get("accuracy", 0.0) >= 0.9


class PermutedSeqDigits(SeqDigits):
    name = "pseq-digits"
    permuted = True


TASKS = {"seq-digits": SeqDigits, "pseq-digits": PermutedSeqDigits}
