"""Copy task, as Arjovsky, Shah & Bengio 2016 (unitary RNNs), section 4.1.

With delay T, each sequence has T + 20 steps (classes: 0..7 symbols a0..a7, 8 blank, 9 delimiter):
    input:  10 symbols from a0..a7 | T-1 blanks | delimiter | 10 blanks     one-hot, 10 channels
    target: T+10 blanks                         | the same 10 symbols       9 classes
Readout "all": cross-entropy over every one of the T + 20 steps.

Baseline: the best memoryless predictor outputs the blank wherever the target is the blank
(loss 0) and the uniform over a0..a7 on the 10 recall steps (loss ln 8 each):
10 ln 8 / (T + 20).
"""

from __future__ import annotations

import numpy as np

from .base import Batch, Task, check_batch, one_hot

N_SYMBOLS = 8  # a0..a7
BLANK = 8
DELIMITER = 9
N_COPY = 10  # symbols to remember


class CopyTask(Task):
    name = "copy-task"
    kind = "classification"
    readout = "all"
    input_size = 10
    output_size = 9  # targets never hold the delimiter (Arjovsky's code: n_output = 9)
    # T=20 (40 steps) keeps the default run cheap yet past the baseline: a torch GRU (H=64
    # or 128, Adam lr 3e-3 or 1e-3, batch 64, clip norm 1, one core) fell below 0.9 x baseline
    # after 1900 / 3200 steps, 50-90 s; at T=50 with lr 1e-3 it still sat at 0.94 x after
    # 2 minutes, and the numba GRU step costs ~3.5x more there. Long delays are for sweeps.
    default_seq_len = 20

    @property
    def steps(self) -> int:
        return self.seq_len + 2 * N_COPY

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        T = self.seq_len
        symbols = rng.integers(0, N_SYMBOLS, size=(batch_size, N_COPY))
        seq = np.full((batch_size, self.steps), BLANK, dtype=np.int64)
        seq[:, :N_COPY] = symbols
        seq[:, T + N_COPY - 1] = DELIMITER
        target = np.full((batch_size, self.steps), BLANK, dtype=np.int64)
        target[:, -N_COPY:] = symbols
        return Batch(one_hot(seq, self.input_size), target)

    @property
    def baseline(self) -> float:
        return float(N_COPY * np.log(N_SYMBOLS) / self.steps)

    def metrics(self, out, y) -> dict:
        recall = np.argmax(out[:, -N_COPY:], axis=-1) == y[:, -N_COPY:]
        return {**super().metrics(out, y), "recall_accuracy": float(np.mean(recall))}

    def solved(self, loss: float, metrics: dict) -> bool:
        """Loss below a tenth of the baseline, or every recalled symbol right."""
        return loss < 0.1 * self.baseline or metrics.get("recall_accuracy", 0.0) == 1.0


TASK = CopyTask
