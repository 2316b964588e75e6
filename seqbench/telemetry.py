"""Gradient-stability telemetry: global gradient norm, spectra of the recurrent matrices,
the vanishing/exploding summary of a ||dL/dh_t|| profile, and the divergence guard. (The
gradient probe of the recurrence, with its own float64 pass, is seqbench.probe.)

NumPy only (``flat_norm``: one compiled pass); every function returns Python floats or bools,
ready for a results row.

Gated recurrent matrices are stacks of square gate blocks, torch's (G*H, H) layout (G = 4 for
LSTM, 3 for GRU). Their spectral radius and largest singular value are reported per block and
the maximum over the G blocks is returned: each block is a recurrent map H -> H of its own,
while the stack as a whole is not square and has no eigenvalues. A block that is not square
(Jordan's weight_yh is (H, O)) has no eigenvalues either; its spectral radius is reported as
its largest singular value, an upper bound on every |eigenvalue| of the loop it closes and the
quantity that init ``spectral:RHO`` rescales such a block to.
"""

from __future__ import annotations

import math

import numpy as np


def global_norm(grads: dict, keys) -> float:
    """L2 norm over all the arrays grads[k], k in keys, accumulated in float64.

    NaN or Inf anywhere gives NaN or Inf. Finite gradients so large that their squares
    overflow float64 (above ~1e154) are rescaled by their largest magnitude first.
    """
    arrays = [np.asarray(grads[k]).ravel() for k in keys]
    with np.errstate(over="ignore", invalid="ignore"):  # reported in the result instead
        total = sum(_sumsq(a) for a in arrays)
    if math.isinf(total):  # overflow, or a real Inf: retry scaled to tell them apart
        peak = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
        if not math.isfinite(peak):
            return math.inf
        return peak * math.sqrt(sum(_sumsq(a / peak) for a in arrays))
    return math.sqrt(total)


def flat_norm(g: np.ndarray) -> float:
    """``global_norm`` of one flat gradient buffer, in one compiled pass (float64 sum)."""
    from .kernels.cpu.head import sum_squares  # numba is imported on first use only

    total = sum_squares(g)
    if math.isinf(total):  # overflow, or a real Inf: global_norm tells them apart
        return global_norm({"g": g}, ["g"])
    return math.sqrt(total)


def _sumsq(a: np.ndarray) -> float:
    a = a.astype(np.float64, copy=False)
    return float(np.dot(a, a))


def _blocks(w, gates):
    """The gate blocks of a (G*H, cols) recurrent matrix, in float64."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"a recurrent matrix must be 2-D, got shape {w.shape}")
    rows, cols = w.shape
    if gates is None:  # (G*H, H) stacks are recognised by shape; pass gates= when it is known
        gates = rows // cols if cols and rows % cols == 0 else 1
    if gates < 1 or rows % gates:
        raise ValueError(f"shape {w.shape} does not split into {gates} gate blocks")
    h = rows // gates
    return [w[i * h : (i + 1) * h] for i in range(gates)]


def spectral_radius(w, gates: int | None = None) -> float:
    """max |eigenvalue| over the gate blocks of w (module docstring); NaN if w is not finite.

    ``gates`` defaults to rows // cols for a (G*H, H) stack, else 1.
    """
    if not np.all(np.isfinite(w)):
        return math.nan
    radii = [
        float(np.max(np.abs(np.linalg.eigvals(b)))) if b.shape[0] == b.shape[1] else _sigma(b)
        for b in _blocks(w, gates)
    ]
    return max(radii)


def largest_singular_value(w, gates: int | None = None) -> float:
    """max ||block||_2 over the gate blocks of w (module docstring); NaN if w is not finite."""
    if not np.all(np.isfinite(w)):
        return math.nan
    return max(_sigma(b) for b in _blocks(w, gates))


def _sigma(b: np.ndarray) -> float:
    return float(np.linalg.norm(b, 2)) if b.size else 0.0


def grad_ratio_log10(dh_norms_row) -> float:
    """log10(||dL/dh_1|| / ||dL/dh_T||) of one (T,) profile, in input time order.

    Negative: the gradient vanishes going back in time; positive: it explodes. Zeros are not
    floored: an exact 0 at step 1 (and not at T) gives -inf, an exact 0 at T (and not at 1)
    +inf, both ends 0 NaN. NaN in either end gives NaN; Inf gives +-Inf (or NaN for Inf / Inf).
    A float32 profile can only resolve what float32 holds: for ratios far below 1e-38 use the
    float64 probe (seqbench.probe), whose log10 profile this function does not need.
    """
    row = np.asarray(dh_norms_row, dtype=np.float64)
    if row.ndim != 1 or row.size == 0:
        raise ValueError(f"a ||dL/dh_t|| profile must be a non-empty (T,) array, got {row.shape}")
    first, last = float(row[0]), float(row[-1])
    if math.isnan(first) or math.isnan(last) or (first == last and first in (0.0, math.inf)):
        return math.nan
    return _log10(first) - _log10(last)


def _log10(v: float) -> float:
    if v == 0.0:
        return -math.inf
    return math.inf if math.isinf(v) else math.log10(v)


def recurrent_summary(model) -> dict:
    """{"spectral_radius", "max_singular_value"}: maxima over every recurrent matrix.

    NaN when any recurrent matrix holds NaN or Inf.
    """
    gates = model.spec.gates
    mats = list(model.recurrent_matrices().values())
    return {  # np.max, unlike max(), lets a NaN through
        "spectral_radius": float(np.max([spectral_radius(w, gates) for w in mats])),
        "max_singular_value": float(np.max([largest_singular_value(w, gates) for w in mats])),
    }


def is_finite(loss, grads: dict, keys=None) -> bool:
    """The divergence guard: loss and every gradient (or those in keys) free of NaN and Inf."""
    if not math.isfinite(float(loss)):
        return False
    names = grads.keys() if keys is None else keys
    return all(np.isfinite(grads[k]).all() for k in names)
