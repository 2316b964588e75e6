"""Jordan cell (output recurrence), CPU.

    h_t = tanh(x_proj_t + y_{t-1} W_yh^T),   y_t = h_t W_hy^T + b_hy

The recurrent state is the output y (size O), not h.

The contract (what seqbench.backends.numba_cpu calls): the recurrence for batch rows
[lo, hi) only, one block per thread (_common.py); ``blas``: the per-step products of the
block go to BLAS (cpu_runtime arranges BLAS on the calling thread). The input always comes
projected.

    jordan_forward_rows(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq, rec, lo, hi, blas)
    x_proj:   [T, B, H]  W_ih x_t + b_ih for all steps, one GEMM
    w_yh_t:   [O, H]     output-to-hidden weights transposed from [H, O]
    w_hy_t:   [H, O]     hidden-to-output weights transposed from [O, H]
    b_hy:     [O]
    y0:       [B, O]     initial output state
    h_seq:    [T, B, H]  hidden activations, saved for backward
    y_seq:    [T, B, O]  outputs, the layer's output and its recurrent state
    rec:      [B, H]     scratch: y_{t-1} W_yh^T

    jordan_backward_rows(dy_out, h_seq, w_yh, w_hy, dy_tot, dpre, dy, dh, norms,
                         lo, hi, blas)
    dy_out:   [T, B, O]  dL/dy_t from the consumers
    w_yh:     [H, O], w_hy: [O, H] in their own layouts
    dy_tot:   [T, B, O]  dL/dy_t through time (feeds dW_hy, db_hy)
    dpre:     [T, B, H]  dL/d(hidden pre-activation) = dL/dx_proj
    dy:       [B, O]     dL/dy_T in (from the final state), dL/dy0 out
    dh:       [B, H]     scratch
    norms:    [T]        each row's ||dL/dy_t|| (the recurrent state) added to norms[t]: the
                         block's partial sum; the caller sums the blocks and divides by B

``jordan_forward(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq)`` and
``jordan_backward(dy_out, dy_last, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh_norms)`` wrap
the pair for the whole batch on the calling thread (dy_last in, dy0 out, dh_norms [T] the
mean over B): the tests' entry points and the oracle of kernels/cuda/jordan.py, which takes
the same arguments.
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import dtanh_kernel, tanh_kernel
from ._batch import batch_backward, batch_forward, batch_norms
from ._common import add_into, at, at2, packed, rows_matmul

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(cache=config.CACHE, **_JIT)
def jordan_forward(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq):
    rec, B, blas = batch_forward(x_proj, w_yh_t)  # rec (B, H): y_{t-1} W_yh^T
    # blas serves both per-step products: each has O * H terms per row
    jordan_forward_rows(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq, rec, 0, B, blas)


@njit(cache=config.CACHE, **_JIT)
def jordan_forward_rows(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq, rec, lo, hi, blas):
    """jordan_forward for batch rows [lo, hi) (arguments: the module docstring)."""
    rows = hi - lo
    w_yh_p, w_hy_p = packed(w_yh_t, rows), packed(w_hy_t, rows)  # once for all steps
    for t in range(x_proj.shape[0]):
        y_prev = y0 if t == 0 else at(y_seq, t - 1)
        rows_matmul(y_prev, w_yh_p, rec, lo, hi, blas)
        for b in range(lo, hi):
            _tanh_row(at2(x_proj, t, b), at(rec, b), at2(h_seq, t, b))
        rows_matmul(at(h_seq, t), w_hy_p, at(y_seq, t), lo, hi, blas)
        for b in range(lo, hi):
            add_into(b_hy, at2(y_seq, t, b))


@njit(**_JIT)
def _tanh_row(xp, z, h):
    for j in range(h.shape[0]):
        h[j] = tanh_kernel(xp[j] + z[j])


@njit(cache=config.CACHE, **_JIT)
def jordan_backward(dy_out, dy_last, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh_norms):
    dh = np.empty((dy0.shape[0], h_seq.shape[2]), dtype=h_seq.dtype)  # (B, H)
    sums, B, blas = batch_backward(dy0, dy_last, w_hy, h_seq)  # dy0 carries dL/dy_t back
    jordan_backward_rows(dy_out, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh, sums, 0, B, blas)
    batch_norms(sums, B, dh_norms)


@njit(cache=config.CACHE, **_JIT)
def jordan_backward_rows(dy_out, h_seq, w_yh, w_hy, dy_tot, dpre, dy, dh, norms, lo, hi, blas):
    """jordan_backward for batch rows [lo, hi) (arguments: the module docstring)."""
    rows = hi - lo
    w_hy_p, w_yh_p = packed(w_hy, rows), packed(w_yh, rows)  # once for all steps
    for t in range(h_seq.shape[0] - 1, -1, -1):
        s = norms[t]
        for b in range(lo, hi):
            s += _sum_row(at(dy, b), at2(dy_out, t, b), at2(dy_tot, t, b))
        norms[t] = s
        rows_matmul(at(dy_tot, t), w_hy_p, dh, lo, hi, blas)
        for b in range(lo, hi):
            _dtanh_row(at(dh, b), at2(h_seq, t, b), at2(dpre, t, b))
        rows_matmul(at(dpre, t), w_yh_p, dy, lo, hi, blas)


@njit(**_JIT)
def _sum_row(a, b, out):  # out = a + b; returns ||out||
    sq = a.dtype.type(0.0)
    for k in range(out.shape[0]):
        v = a[k] + b[k]
        out[k] = v
        sq += v * v
    return sqrt(sq)


@njit(**_JIT)
def _dtanh_row(dh, h, d):
    for j in range(d.shape[0]):
        d[j] = dh[j] * dtanh_kernel(h[j])
