"""NARMA10 (Atiya & Parlos 2000), exactly the tenth-order system:

    y(t+1) = 0.3 y(t) + 0.05 y(t) sum_{i=0..9} y(t-i) + 1.5 u(t-9) u(t) + 0.1,  u ~ U[0, 0.5]

Option ``order=n`` runs the same equation with n in place of 10 (sum over y(t-n+1)..y(t),
u(t-n+1) u(t)); the task keeps its name.

Task: input u(t), target y(t+1) at every step (readout "all"; it depends on u up to t). Each
sequence starts from y = 0 and runs a burn-in of 100 steps that is not shown, then T steps;
the rare input sequence that drives the system to blow up (|y| > 10) is redrawn. Metric
"nrmse" = RMSE / std(target). Baseline: the mean predictor, i.e. the variance of y (from a
long fixed-seed run).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..errors import ConfigError
from ..options import Option
from .base import Batch, Task, check_batch

ORDER = 10
BURN_IN = 100
BLOW_UP = 10.0
MAX_REDRAWS = 100  # an order whose system blows up for every input is refused, not looped on


def narma(u, order: int = ORDER) -> np.ndarray:
    """u (S, T) -> y (S, T) with y[:, t] = y(t + 1) of the system driven by u(0..t)."""
    S, T = u.shape
    y = np.zeros((S, T + 1))
    with np.errstate(over="ignore", invalid="ignore"):  # blown-up rows are redrawn
        _recur(u, y, order)
    return y[:, 1:]


def narma10(u) -> np.ndarray:
    return narma(u, ORDER)


def _recur(u, y, order):
    for t in range(u.shape[1]):
        window = y[:, max(t - order + 1, 0) : t + 1].sum(axis=1)  # y(t-9) .. y(t)
        u_lag = u[:, t - order + 1] if t >= order - 1 else 0.0
        y[:, t + 1] = 0.3 * y[:, t] + 0.05 * y[:, t] * window + 1.5 * u_lag * u[:, t] + 0.1


def _draw(rng, n, T, order=ORDER):
    u = rng.uniform(0.0, 0.5, (n, BURN_IN + T))
    y = narma(u, order)
    return u[:, BURN_IN:], y[:, BURN_IN:]


def draw_stable(rng, n, T, order=ORDER):
    """(u, y) of n sequences, rows that blew up (|y| > BLOW_UP) redrawn."""
    u, y = _draw(rng, n, T, order)
    bad = ~np.all(np.abs(y) < BLOW_UP, axis=1)
    for _ in range(MAX_REDRAWS):
        if not bad.any():
            return u, y
        u[bad], y[bad] = _draw(rng, int(bad.sum()), T, order)
        bad = ~np.all(np.abs(y) < BLOW_UP, axis=1)
    if bad.any():
        raise ConfigError(f"NARMA of order {order} blows up (|y| > {BLOW_UP}); use a lower order")
    return u, y


class Narma10(Task):
    name = "narma10"
    kind = "regression"
    readout = "all"
    input_size = 1
    output_size = 1
    default_seq_len = 2000
    washout = 100
    metric_descriptions = {"nrmse": "RMSE / std(target)"}
    options = (
        Option("order", int, ORDER, "n of NARMA-n (above 11 this form blows up)", 1, 11),
        Option("washout", int, 100, "first steps the ESN readout fit skips", 0),
    )

    def __init__(self, seq_len=None, *, washout=100, order=ORDER):
        super().__init__(seq_len)
        self.washout = int(washout)
        self.order = int(order)

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        u, y = draw_stable(rng, batch_size, self.seq_len, self.order)
        return Batch(u[..., None], y[..., None])

    @property
    def baseline(self) -> float:
        return _target_variance(self.order)


@cache
def _target_variance(order: int = ORDER) -> float:
    _, y = _draw(np.random.default_rng(12345), 64, 5000, order)
    return float(np.var(y[np.all(np.abs(y) < BLOW_UP, axis=1)]))


TASK = Narma10
