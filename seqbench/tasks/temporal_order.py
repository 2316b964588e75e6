"""Temporal order, Hochreiter & Schmidhuber 1997 (exp. 6a) as Pascanu et al. 2013 ("tempOrder").

Six symbols, one-hot: 0 = A, 1 = B, 2..5 = distractors, drawn uniformly at every other step.
With d = T // 10, an A or B sits at p0 in [d, 2d) and another at p1 in [T//2, T//2 + d),
i.e. p0 in [0.1T, 0.2T), p1 in [0.5T, 0.6T) as in Pascanu's code. T >= 10 so that d >= 1.
    x: (B, T, 6)
    y: (B,)   class of the ordered pair: 0 = AA, 1 = AB, 2 = BA, 3 = BB  (2 * first + second)
Readout "last", cross-entropy over the 4 classes.

Baseline: the classes are equally likely, so the best memoryless predictor is the uniform: ln 4.
Solved: accuracy >= 0.99 on a fresh batch, or loss below a tenth of the baseline.
"""

from __future__ import annotations

import numpy as np

from .base import Batch, Task, check_batch, one_hot

N_SYMBOLS = 6
N_CLASSES = 4


class TemporalOrder(Task):
    name = "temporal-order"
    kind = "classification"
    readout = "last"
    input_size = N_SYMBOLS
    output_size = N_CLASSES
    # Pascanu et al. 2013 start their curriculum at 50. A torch GRU (H=64, Adam 3e-3, batch
    # 64) solves T=50 in ~400 steps (10 s); at T=100 it was still on the baseline after 90 s.
    default_seq_len = 50
    min_seq_len = 10
    min_seq_len_why = "the first symbol sits in [0.1T, 0.2T), empty below 10"

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        T, d = self.seq_len, self.seq_len // 10
        rows = np.arange(batch_size)
        seq = rng.integers(2, N_SYMBOLS, size=(batch_size, T))
        p0 = rng.integers(d, 2 * d, size=batch_size)
        p1 = rng.integers(T // 2, T // 2 + d, size=batch_size)
        first = rng.integers(0, 2, size=batch_size)
        second = rng.integers(0, 2, size=batch_size)
        seq[rows, p0] = first
        seq[rows, p1] = second
        return Batch(one_hot(seq, N_SYMBOLS, self.input_dtype), 2 * first + second)

    @property
    def baseline(self) -> float:
        return float(np.log(N_CLASSES))

    solved_rule = "accuracy >= 0.99 or eval loss < 0.1 x baseline"

    def solved(self, loss: float, metrics: dict) -> bool:
        return metrics.get("accuracy", 0.0) >= 0.99 or loss < 0.1 * self.baseline


TASK = TemporalOrder
