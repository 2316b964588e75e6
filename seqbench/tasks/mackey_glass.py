"""Mackey-Glass chaotic series prediction (tau = 17: mildly chaotic), the classic ESN benchmark.

    dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t),   a = 0.2, b = 0.1, n = 10

Integration: classical RK4 with step dt = 0.1 on a fine grid (tau / dt = 170 grid steps of
delay; the delayed value at a half step is the mean of its two grid neighbours), sampled every
1.0 time unit. Each sequence starts from its own random history (1.2 + U(-0.1, 0.1) on the
grid) and discards a transient of 500 time units, so windows lie on the attractor and are
independent. The series is scaled to [-1, 1] by one fixed affine map: the range of a long
reference trajectory (windows may step outside by a hair).

Task: input s(t), target s(t + horizon) at every step (readout "all"); the first ``washout``
steps of each window only warm the reservoir up. Metric "nrmse" = RMSE / std(target) (the
standard deviation of the target, not ReservoirPy's default min-max range). Baseline: the
persistence forecast s(t + h) ~ s(t). Option ``free_run=K``: after the one-step fit, windows
are driven to T - K and the last K values are generated with each prediction fed back as the
next input; metrics "free_run_nrmse" (over the K steps) and "free_run_nrmse_last" (at step K).
``protocol="jaeger2004"`` sets Jaeger & Haas (2004)'s lengths: 3084 steps, washout 1000,
free run 84 (NRMSE at step 84), with this module's [-1, 1] scaling unless ``scaling="tanh"``
asks for theirs, tanh(x - 1); and, for a reservoir with output feedback (seqbench.esn_fit's
teacher-forced fit), their trial counts: one training window (3000 steps: 1000 washout, 2000
fitted) and 100 test windows. Options ``train_windows`` and ``test_windows`` set those counts
for any protocol (None: the protocol's, else set by the batches: train_batches and
eval_batches x batch_size); only the output-feedback fit reads them (another fit refuses
them when set).
``attractor_std`` is the standard deviation of the (scaled or original) series over the long
reference trajectory: the normaliser of the free-run NRMSE of that fit.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..errors import ConfigError
from ..kernels import config
from ..options import Option
from .base import Batch, Task, check_batch

A, B_, N_EXP = 0.2, 0.1, 10
DT = 0.1
SUBSTEPS = 10  # fine steps per sample: one sample per time unit
TRANSIENT = 500  # samples discarded from each random start
REFERENCE_SAMPLES = 20_000
SCALINGS = ("minmax", "tanh")
_WINDOWS_HELP = "{} windows of the output-feedback fit (auto: the batches; jaeger2004: {})"


@njit(cache=config.CACHE)
def _deriv(x, xd, a, b, n):
    return a * xd / (1.0 + xd**n) - b * x


@njit(cache=config.CACHE)
def integrate(history, n_samples, delay, substeps, dt, a, b, n):
    """RK4 on the fine grid from history (S, delay + 1); returns (S, n_samples) samples, the
    first one being the last history value."""
    S = history.shape[0]
    out = np.empty((S, n_samples))
    buf = np.empty(delay + 1 + n_samples * substeps)
    for s in range(S):
        buf[: delay + 1] = history[s]
        k = delay
        for j in range(n_samples):
            out[s, j] = buf[k]
            for _ in range(substeps):
                xt = buf[k]
                xd0, xd1 = buf[k - delay], buf[k - delay + 1]
                xdm = 0.5 * (xd0 + xd1)
                k1 = _deriv(xt, xd0, a, b, n)
                k2 = _deriv(xt + 0.5 * dt * k1, xdm, a, b, n)
                k3 = _deriv(xt + 0.5 * dt * k2, xdm, a, b, n)
                k4 = _deriv(xt + dt * k3, xd1, a, b, n)
                buf[k + 1] = xt + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                k += 1
    return out


def _delay(tau: float) -> int:
    d = tau / DT
    if abs(d - round(d)) > 1e-9 or d < 1:
        raise ConfigError(f"tau must be a positive multiple of dt={DT}, got {tau!r}")
    return int(round(d))


def raw_series(histories, n_samples: int, tau: float) -> np.ndarray:
    """Unscaled samples (S, n_samples) from grid histories (S, tau/dt + 1)."""
    return integrate(
        np.asarray(histories, dtype=np.float64),
        n_samples,
        _delay(tau),
        SUBSTEPS,
        DT,
        A,
        B_,
        float(N_EXP),
    )


@cache
def reference(tau: float = 17.0):
    """(lo, hi) of a long trajectory from the constant history 1.2, and its scaled samples."""
    hist = np.full((1, _delay(tau) + 1), 1.2)
    s = raw_series(hist, TRANSIENT + REFERENCE_SAMPLES, tau)[0, TRANSIENT:]
    lo, hi = float(s.min()), float(s.max())
    return lo, hi, 2.0 * (s - lo) / (hi - lo) - 1.0


def scale(raw, tau: float, scaling: str) -> np.ndarray:
    """minmax: the reference trajectory's range mapped to [-1, 1]; tanh: Jaeger's tanh(x - 1)."""
    if scaling == "tanh":
        return np.tanh(raw - 1.0)
    lo, hi, _ = reference(tau)
    return 2.0 * (raw - lo) / (hi - lo) - 1.0


def _windows(name, value, default):
    """A count of windows >= 1, or ``default`` (the protocol's, or None: set by the batches)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return int(value)


class MackeyGlass(Task):
    name = "mackey-glass"
    kind = "regression"
    readout = "all"
    input_size = 1
    output_size = 1
    default_seq_len = 1000
    metric_descriptions = {"nrmse": "RMSE / std(target)"}
    options = (
        Option("tau", float, 17.0, "delay of the equation (a multiple of dt=0.1)", 0.1, 1000.0),
        Option("horizon", int, 1, "predict s(t + horizon) from s(..t)", 1),
        Option("free_run", int, 0, "generate the last K steps, predictions fed back (ESN)", 0),
        Option("washout", int, 100, "first steps of a window that only warm the state up", 0),
        Option(
            "protocol",
            str,
            None,
            "jaeger2004: T=3084, washout 1000, free run 84",
            choices=("jaeger2004",),
        ),  # fmt: skip
        Option("scaling", str, "minmax", "minmax: [-1, 1]; tanh: tanh(x - 1)", choices=SCALINGS),
        Option("train_windows", int, None, _WINDOWS_HELP.format("training", 1), 1),
        Option("test_windows", int, None, _WINDOWS_HELP.format("test", 100), 1),
    )

    def __init__(
        self,
        seq_len=None,
        *,
        horizon=None,
        free_run=None,
        tau=17.0,
        washout=None,
        protocol=None,
        scaling="minmax",
        train_windows=None,
        test_windows=None,
    ):
        if protocol not in (None, "jaeger2004"):
            raise ConfigError(f"protocol={protocol!r} is not known; use 'jaeger2004' or None")
        if scaling not in SCALINGS:
            raise ConfigError(f"scaling={scaling!r} is not known; use {' or '.join(SCALINGS)}")
        if protocol == "jaeger2004":
            given = [n for n, v in (("horizon", horizon), ("free_run", free_run),
                                    ("washout", washout)) if v is not None]  # fmt: skip
            if given:
                raise ConfigError(f"protocol=jaeger2004 sets {given[0]} itself; leave it out")
            seq_len, washout, free_run, horizon = seq_len or 3084, 1000, 84, 1
        horizon = 1 if horizon is None else horizon
        free_run = 0 if free_run is None else free_run
        washout = 100 if washout is None else washout
        super().__init__(seq_len)
        for name, v, low in (
            ("horizon", horizon, 1),
            ("free_run", free_run, 0),
            ("washout", washout, 0),
        ):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau):
            raise ConfigError(f"tau must be a number, got {tau!r}")
        _delay(float(tau))
        if free_run and horizon != 1:
            raise ConfigError("free_run needs horizon=1 (each prediction is the next input)")
        if free_run >= self.seq_len:
            raise ConfigError(f"free_run={free_run} must be shorter than seq_len={self.seq_len}")
        self.horizon, self.free_run, self.tau = int(horizon), int(free_run), float(tau)
        self.washout, self.protocol, self.scaling = int(washout), protocol, scaling
        jaeger = protocol == "jaeger2004"
        self.train_windows = _windows("train_windows", train_windows, 1 if jaeger else None)
        self.test_windows = _windows("test_windows", test_windows, 100 if jaeger else None)
        self.windows_set = (train_windows, test_windows) != (None, None)  # asked for

    def generate(self, rng: np.random.Generator, batch_size: int, split: str = "train") -> Batch:
        batch_size = check_batch(batch_size, split)
        hist = 1.2 + rng.uniform(-0.1, 0.1, (batch_size, _delay(self.tau) + 1))
        n = TRANSIENT + self.seq_len + self.horizon
        s = scale(raw_series(hist, n, self.tau)[:, TRANSIENT:], self.tau, self.scaling)
        x = s[:, : self.seq_len, None]
        y = s[:, self.horizon :, None]
        return Batch(np.ascontiguousarray(x), np.ascontiguousarray(y))

    @property
    def baseline(self) -> float:
        """MSE of the persistence forecast s(t + h) ~ s(t) on the reference trajectory."""
        s = reference(self.tau)[2]
        if self.scaling != "minmax":
            hist = np.full((1, _delay(self.tau) + 1), 1.2)
            raw = raw_series(hist, TRANSIENT + REFERENCE_SAMPLES, self.tau)[0, TRANSIENT:]
            s = scale(raw, self.tau, self.scaling)
        return float(np.mean((s[self.horizon :] - s[: -self.horizon]) ** 2))

    def attractor_std(self, original: bool = False) -> float:
        """std of the series on the reference trajectory: scaled (the task's coordinates) or
        the equation's own x(t)."""
        hist = np.full((1, _delay(self.tau) + 1), 1.2)
        raw = raw_series(hist, TRANSIENT + REFERENCE_SAMPLES, self.tau)[0, TRANSIENT:]
        return float(np.std(raw if original else scale(raw, self.tau, self.scaling)))

    def unscale(self, s) -> np.ndarray:
        """The inverse of ``scale``: the equation's x(t) from the task's series."""
        if self.scaling == "tanh":
            return np.arctanh(np.clip(s, -1 + 1e-15, 1 - 1e-15)) + 1.0
        lo, hi, _ = reference(self.tau)
        return (np.asarray(s) + 1.0) * (hi - lo) / 2.0 + lo

    def metrics(self, out, y) -> dict:
        """nrmse = RMSE / std(target)."""
        return super().metrics(out, y)


TASK = MackeyGlass
