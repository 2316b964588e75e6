"""Adding problem, as Hochreiter & Schmidhuber 1997 (exp. 4) in the form of Arjovsky et al. 2016.

Shapes, sequence length T (T >= 2):
    x: (B, T, 2)  channel 0: values U[0, 1]; channel 1: marker, 1.0 at exactly two steps,
                  one in the first half [0, T//2) and one in the second half [T//2, T)
    y: (B, 1)     sum of the two marked values
Readout "last", mean squared error.

Baseline: the best memoryless predictor outputs the mean of the sum, 1.0; its MSE is the
variance of the sum of two independent U[0, 1], 2 * 1/12 = 1/6 (about 0.167).
Solved: MSE below a tenth of that, 1/60 (about 0.0167).
"""

from __future__ import annotations

import numpy as np

from .base import Batch, Task, check_batch


class Adding(Task):
    name = "adding"
    kind = "regression"
    readout = "last"
    input_size = 2
    output_size = 1
    # Arjovsky's shortest setting; a torch GRU (H=64, Adam 3e-3, batch 64) solves it in
    # ~600 steps (30 s of one core).
    default_seq_len = 100
    min_seq_len = 2
    min_seq_len_why = "one marker in each half"

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        T, half = self.seq_len, self.seq_len // 2
        values = rng.random((batch_size, T))
        rows = np.arange(batch_size)
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, T, size=batch_size)
        markers = np.zeros((batch_size, T))
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        target = values[rows, first] + values[rows, second]
        return Batch(np.stack([values, markers], axis=-1), target[:, None])

    @property
    def baseline(self) -> float:
        return 1.0 / 6.0

    solved_rule = "MSE < 0.1 x baseline"

    def solved(self, loss: float, metrics: dict) -> bool:
        return loss < 0.1 * self.baseline


TASK = Adding
