"""Linear readouts of reservoir states, fitted in closed form, and the feedback helpers.

Ridge regression with an unpenalised bias (as ReservoirPy's Ridge):

    [W_out | b_out] = argmin ||[X 1] [W_out b_out]^T - Y||^2 + ridge ||W_out||^2

The normal equations are accumulated batch by batch, A^T A and A^T Y with A = [X 1], so the
states of a long run never have to sit in memory together; one ``scipy.linalg.solve``
(``assume_a="pos"``) at the end. Warm-up (washout) steps are dropped before accumulating:
they still carry the arbitrary initial state.

Large N and OpenBLAS's threaded SYRK: its driver (level3_syrk_threaded.c) packs a thread's
whole share of the N columns (~0.7 N on 2 threads) times up to 2 x GEMM_Q (384) of the inner
dimension into the fixed 32 MiB work buffer of each thread, and writes past it above that:
a segfault from N ~ 15000 on 2 threads (A (1920, 15501): crash; (1920, 14801): none). Numpy
sends ``a.T @ a`` to SYRK, and the Cholesky inside ``solve`` (dpotrf_U_parallel) calls the
same driver. So A^T A is accumulated in column blocks of GRAM_BLOCK (upper triangle, by
GEMM, whose threaded driver blocks N; SYRK only on the diagonal block), and a system above
SERIAL_SOLVE_MIN unknowns is factorised with BLAS on one thread (unthreaded SYRK).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .errors import ConfigError

GRAM_BLOCK = 1024  # columns of A^T A per BLAS call: SYRK of 1024 stays far inside its buffer
SERIAL_SOLVE_MIN = 4096  # unknowns from which the Cholesky runs on one BLAS thread (~1 s)


def drop_washout(a, washout: int) -> np.ndarray:
    """(B, T, F) -> (B, T - washout, F); ConfigError when nothing would be left."""
    washout = check_washout(washout)
    T = a.shape[1]
    if T <= washout:
        raise ConfigError(
            f"too few steps for the washout: sequences have {T} steps and washout={washout} "
            "discards them all; use longer sequences or a shorter washout"
        )
    return a[:, washout:]


def check_washout(washout) -> int:
    if isinstance(washout, bool) or not isinstance(washout, (int, np.integer)) or washout < 0:
        raise ConfigError(f"washout must be a non-negative integer, got {washout!r}")
    return int(washout)


class Ridge:
    """y = x @ weight.T + bias, fitted from accumulated normal equations."""

    def __init__(self, ridge: float = 1e-6):
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating)):
            raise ConfigError(f"ridge must be a number >= 0, got {ridge!r}")
        if not (np.isfinite(ridge) and ridge >= 0):
            raise ConfigError(f"ridge must be a finite number >= 0, got {ridge!r}")
        self.ridge = float(ridge)
        self.weight = None  # (O, N)
        self.bias = None  # (O,)
        self._ata = None  # (N+1, N+1), upper triangle only: solve() mirrors it
        self._aty = None  # (N+1, O)
        self.samples = 0

    def accumulate(self, states, targets, washout: int = 0) -> None:
        """states (B, T, N) with targets (B, T, O), minus ``washout`` leading steps; or already
        flat states (S, N) with targets (S, O)."""
        x, y = np.asarray(states), np.asarray(targets)
        if x.ndim == 3:
            x, y = drop_washout(x, washout), drop_washout(y, washout)
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ConfigError(
                f"states {np.shape(states)} and targets {np.shape(targets)} do not pair up"
            )
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ConfigError("states or targets contain NaN or Inf")
        a = np.empty((x.shape[0], x.shape[1] + 1))
        a[:, :-1] = x
        a[:, -1] = 1.0
        y = y.astype(np.float64, copy=False)
        if self._ata is None:
            self._ata = np.zeros((a.shape[1], a.shape[1]))
            self._aty = np.zeros((a.shape[1], y.shape[1]))
        elif self._ata.shape[0] != a.shape[1] or self._aty.shape[1] != y.shape[1]:
            raise ConfigError("states or targets changed their number of features between batches")
        add_gram_upper(self._ata, a)
        self._aty += a.T @ y
        self.samples += x.shape[0]

    def solve(self):
        """Solve once; returns (weight (O, N), bias (O,))."""
        if self._ata is None or self.samples == 0:
            raise ConfigError("the readout has no samples: accumulate() states first")
        m = self._ata.copy()
        mirror_upper(m)
        idx = np.arange(m.shape[0] - 1)
        m[idx, idx] += self.ridge  # the bias column is not penalised
        try:
            w = _solve_pos(m, self._aty)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError) as err:
            raise ConfigError(
                f"the ridge system is singular ({err}); use ridge > 0 or more samples"
            ) from err
        self.weight = np.ascontiguousarray(w[:-1].T)
        self.bias = np.ascontiguousarray(w[-1])
        return self.weight, self.bias

    def fit_lstsq(self, states, targets):
        """Solve the same problem from the samples themselves, states (S, N) and targets
        (S, O), without forming A^T A: least squares (SVD) of [A; sqrt(ridge) [I 0]] against
        [Y; 0], which keeps the precision that squaring A's condition number would lose.
        Returns (weight, bias)."""
        x, y = np.asarray(states, dtype=np.float64), np.asarray(targets, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or not x.shape[0]:
            raise ConfigError(f"states {x.shape} and targets {y.shape} do not pair up")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ConfigError("states or targets contain NaN or Inf")
        n = x.shape[1]
        a = np.zeros((x.shape[0] + n, n + 1))
        a[: x.shape[0], :n], a[: x.shape[0], n] = x, 1.0
        a[x.shape[0] :, :n] = np.sqrt(self.ridge) * np.eye(n)  # the bias is not penalised
        b = np.zeros((a.shape[0], y.shape[1]))
        b[: x.shape[0]] = y
        w = scipy.linalg.lstsq(a, b, lapack_driver="gelsd")[0]
        self.weight = np.ascontiguousarray(w[:-1].T)
        self.bias = np.ascontiguousarray(w[-1])
        self.samples = x.shape[0]
        return self.weight, self.bias

    def predict(self, states) -> np.ndarray:
        """states (..., N) -> outputs (..., O)."""
        if self.weight is None:
            raise ConfigError("the readout is not fitted: call solve() first")
        return np.asarray(states) @ self.weight.T + self.bias


def add_gram_upper(g, a, block: int | None = None) -> None:
    """g += A^T A on and above the diagonal, ``block`` columns at a time; A (S, n), g (n, n)
    (below the diagonal, g is left as it was). Only the diagonal block goes to SYRK."""
    block = block or GRAM_BLOCK
    for j0 in range(0, a.shape[1], block):
        j1 = min(j0 + block, a.shape[1])
        g[:j1, j0:j1] += a[:, :j1].T @ a[:, j0:j1]  # (j1, S) @ (S, j1 - j0)


def mirror_upper(g, block: int | None = None) -> None:
    """Copy g's upper triangle onto its lower one, in place, one block of rows at a time."""
    block = block or GRAM_BLOCK
    for i0 in range(0, g.shape[0], block):
        i1 = min(i0 + block, g.shape[0])
        g[i0:i1, :i0] = g[:i0, i0:i1].T
        rows = g[i0:i1, i0:i1]
        rows[...] = np.triu(rows) + np.triu(rows, 1).T


def _solve_pos(m, b):
    """m x = b for a symmetric positive definite m, factorised in place (m.T is m, and
    Fortran-ordered: scipy copies neither); one BLAS thread above SERIAL_SOLVE_MIN."""
    if m.shape[0] < SERIAL_SOLVE_MIN:
        return scipy.linalg.solve(m.T, b, assume_a="pos", overwrite_a=True)
    from .backends.cpu_runtime import serial_blas

    with serial_blas():
        return scipy.linalg.solve(m.T, b, assume_a="pos", overwrite_a=True)


def fit_ridge(states, targets, *, washout: int = 0, ridge: float = 1e-6) -> Ridge:
    """One-shot fit of (B, T, N) states to (B, T, O) targets."""
    r = Ridge(ridge)
    r.accumulate(states, targets, washout)
    r.solve()
    return r


# ------------------------------------------------------------------ feedback


def teacher_forced_states(model, x, targets, h0=None, y0=None, state_noise=0.0, noise_rng=None):
    """States of a reservoir with output feedback driven by the desired outputs (teacher
    forcing): step t sees W_fb y_{t-1}. x (B, T, I), targets (B, T, F) -> (B, T, N).
    ``state_noise``/``noise_rng``: as the model's forward (noise in the pre-activations)."""
    states, _ = model.forward(
        x, h0, teacher=targets, y0=y0, state_noise=state_noise, noise_rng=noise_rng
    )
    return states


def state_noise_rng(model) -> np.random.Generator:
    """The state noise's own generator, from the reservoir's seed (the data's generator is
    the run's [seed, 1]): the same seed, the same noise, whatever the data drew."""
    return np.random.default_rng([model.seed, 2])


def fit_with_feedback(model, x, targets, *, washout: int = 0, ridge: float = 1e-6) -> Ridge:
    """Teacher-force the reservoir with ``targets`` and fit the readout that produces them."""
    return fit_ridge(
        teacher_forced_states(model, x, targets), targets, washout=washout, ridge=ridge
    )


def free_run(model, readout: Ridge, steps: int, *, x=None, h0=None, y0=None):
    """Generate ``steps`` outputs with the readout's prediction fed back (through W_fb, or as
    the next input when the reservoir has no feedback weights). Returns (outputs, states)."""
    if readout.weight is None:
        raise ConfigError("the readout is not fitted: call solve() first")
    states, outputs, _ = model.generate(steps, readout.weight, readout.bias, x=x, h0=h0, y0=y0)
    return outputs, states


def warm_then_free_run(model, readout: Ridge, series, steps: int):
    """Drive the reservoir with ``series`` (B, T, I) (teacher forcing through the input), then
    free-run ``steps`` more from its last state, feeding each prediction back as the next
    input. The first generated output predicts the value after ``series``. Returns (B, steps, I).
    """
    states, tape = model.forward(series)
    first = readout.predict(states[:, -1])  # (B, I): the prediction of the next value
    # generate() feeds y0 into its first step, so its outputs predict the values after that
    outputs, _ = free_run(model, readout, steps, h0=tape.h_n, y0=first)
    return np.concatenate([first[:, None], outputs[:, :-1]], axis=1)
