"""Short-term memory capacity (Jaeger 2001): how many past inputs a reservoir can recall.

    MC = sum_{k=1..K} corr^2(u(t - k), y_k(t)),   u ~ U[-0.8, 0.8] i.i.d.

Task: input u(t), K targets u(t-1) .. u(t-K) at every step (readout "all", one linear output
per delay); K = ``max_delay``, by default 2N for N hidden units (twice the bound, so the
sum sees where the capacity runs out). The washout must cover the first K steps, whose
targets reach before the sequence (default max(K, 100)). ``distribution="normal"`` draws
u ~ N(0, 0.64 / 3) instead, the same variance. Metric "memory_capacity" (squared Pearson
correlation per delay over every post-washout step of the test batches, summed), bounded by
MC <= N for N reservoir units (and by K); ``esn_fit`` adds "memory_capacity_bound" = min(N, K).
Loss: mean squared error over the delays; baseline: the mean predictor, var(u) = 0.64 / 3.
Solved: MC >= 0.9 x the bound.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..options import Option
from .base import Batch, Task, check_batch

AMPLITUDE = 0.8
DISTRIBUTIONS = ("uniform", "normal")


class MemoryCapacity(Task):
    name = "memory-capacity"
    kind = "regression"
    readout = "all"
    input_size = 1
    default_seq_len = 2000
    metric_descriptions = {"memory_capacity": "sum over delays of corr^2(u(t-k), y_k(t))"}

    options = (
        Option("max_delay", int, None, "delays K recalled (auto: 2N, N the hidden size)", 1),
        Option("washout", int, None, "steps the readout skips (auto: max(K, 100); >= K)", 0),
        Option(
            "distribution",
            str,
            "uniform",
            "u(t): U[-0.8, 0.8] or a normal of that variance",
            choices=DISTRIBUTIONS,
        ),  # fmt: skip
    )

    @classmethod
    def options_for_model(cls, options: dict, hidden_size: int) -> dict:
        out = dict(options)
        if out.get("max_delay") is None:
            out["max_delay"] = 2 * hidden_size
        return out

    def __init__(self, seq_len=None, *, max_delay=100, washout=None, distribution="uniform"):
        super().__init__(seq_len)
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(f"distribution={distribution!r} is not known; use uniform or normal")
        self.distribution = distribution
        max_delay = 100 if max_delay is None else max_delay  # no model to size it by
        if isinstance(max_delay, bool) or not isinstance(max_delay, (int, np.integer)):
            raise ConfigError(f"max_delay must be a positive integer, got {max_delay!r}")
        if max_delay < 1:
            raise ConfigError(f"max_delay must be a positive integer, got {max_delay!r}")
        self.max_delay = int(max_delay)
        self.washout = max(self.max_delay, 100) if washout is None else int(washout)
        if self.washout < self.max_delay:
            raise ConfigError(
                f"washout={washout} must cover max_delay={max_delay}: earlier targets do not exist"
            )

    @property
    def output_size(self) -> int:
        return self.max_delay

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        T, K = self.seq_len, self.max_delay
        if self.distribution == "normal":
            u = rng.normal(0.0, AMPLITUDE / np.sqrt(3.0), (batch_size, T))
        else:
            u = rng.uniform(-AMPLITUDE, AMPLITUDE, (batch_size, T))
        y = np.zeros((batch_size, T, K))
        for k in range(1, min(K, T - 1) + 1):
            y[:, k:, k - 1] = u[:, :-k]
        return Batch(u[..., None], y)

    @property
    def baseline(self) -> float:
        return (2 * AMPLITUDE) ** 2 / 12.0

    @staticmethod
    def capacity_by_delay(out, y) -> np.ndarray:
        """MC_k = corr^2(u(t - k), y_k(t)) for k = 1..K: the forgetting curve, (K,)."""
        o = np.asarray(out).reshape(-1, out.shape[-1])
        t = np.asarray(y).reshape(-1, y.shape[-1])
        oc, tc = o - o.mean(axis=0), t - t.mean(axis=0)
        denom = np.sqrt((oc**2).sum(axis=0) * (tc**2).sum(axis=0))
        corr = np.where(denom > 0, (oc * tc).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)
        return corr**2

    def metrics(self, out, y) -> dict:
        mc = float(np.sum(self.capacity_by_delay(out, y)))
        return {**super().metrics(out, y), "memory_capacity": mc}

    solved_rule = "memory capacity >= 0.9 x its bound min(N, max_delay)"

    def solved(self, loss: float, metrics: dict) -> bool:
        bound = metrics.get("memory_capacity_bound", self.max_delay)
        return metrics.get("memory_capacity", 0.0) >= 0.9 * bound


TASK = MemoryCapacity
