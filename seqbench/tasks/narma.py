"""NARMA10 (Atiya & Parlos 2000), exactly the tenth-order system:

    y(t+1) = 0.3 y(t) + 0.05 y(t) sum_{i=0..9} y(t-i) + 1.5 u(t-9) u(t) + 0.1,  u ~ U[0, 0.5]

Task: input u(t), target y(t+1) at every step (readout "all"; it depends on u up to t). Each
sequence starts from y = 0 and runs a burn-in of 100 steps that is not shown, then T steps;
the rare input sequence that drives the system to blow up (|y| > 10) is redrawn. Metric
"nrmse" = RMSE / std(target). Baseline: the mean predictor, i.e. the variance of y (from a
long fixed-seed run).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .base import Batch, Task, check_batch

ORDER = 10
BURN_IN = 100
BLOW_UP = 10.0


def narma10(u) -> np.ndarray:
    """u (S, T) -> y (S, T) with y[:, t] = y(t + 1) of the system driven by u(0..t)."""
    S, T = u.shape
    y = np.zeros((S, T + 1))
    with np.errstate(over="ignore", invalid="ignore"):  # blown-up rows are redrawn
        _recur(u, y)
    return y[:, 1:]


def _recur(u, y):
    for t in range(u.shape[1]):
        window = y[:, max(t - ORDER + 1, 0) : t + 1].sum(axis=1)  # y(t-9) .. y(t)
        u_lag = u[:, t - ORDER + 1] if t >= ORDER - 1 else 0.0
        y[:, t + 1] = 0.3 * y[:, t] + 0.05 * y[:, t] * window + 1.5 * u_lag * u[:, t] + 0.1


def _draw(rng, n, T):
    u = rng.uniform(0.0, 0.5, (n, BURN_IN + T))
    y = narma10(u)
    return u[:, BURN_IN:], y[:, BURN_IN:]


class Narma10(Task):
    name = "narma10"
    kind = "regression"
    readout = "all"
    input_size = 1
    output_size = 1
    default_seq_len = 2000
    washout = 100
    metric_descriptions = {"nrmse": "RMSE / std(target)"}

    def __init__(self, seq_len=None, *, washout=100):
        super().__init__(seq_len)
        self.washout = int(washout)

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        u, y = _draw(rng, batch_size, self.seq_len)
        bad = ~np.all(np.abs(y) < BLOW_UP, axis=1)
        while bad.any():
            u[bad], y[bad] = _draw(rng, int(bad.sum()), self.seq_len)
            bad = ~np.all(np.abs(y) < BLOW_UP, axis=1)
        return Batch(u[..., None], y[..., None])

    @property
    def baseline(self) -> float:
        return _target_variance()


@cache
def _target_variance() -> float:
    _, y = _draw(np.random.default_rng(12345), 64, 5000)
    return float(np.var(y[np.all(np.abs(y) < BLOW_UP, axis=1)]))


TASK = Narma10
