"""Elman cell (torch.nn.RNN), CPU. h_t = act(x_proj_t + h_{t-1} W_hh^T + b_hh), act tanh or relu.

Shapes (time-major inside the kernel):
    x_proj:   [T, B, H]  W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, H]     recurrent weights transposed from torch's [H, H] (forward)
    w_hh:     [H, H]     recurrent weights in torch's layout (backward)
    b_hh:     [H]
    h0:       [B, H]     initial state
    h_seq:    [T, B, H]  hidden states, the layer's output; backward reads them as saved
    dh_out:   [T, B, H]  dL/dh_t arriving from the layer's consumers
    dh_last:  [B, H]     dL/dh_T arriving from the final state
    dpre:     [T, B, H]  dL/d(pre-activation); equals dL/dx_proj and dL/d(h W_hh^T + b_hh)
    dh0:      [B, H]     dL/dh0
    dh_norms: [T]        ||dL/dh_t|| (total, through time), L2 over H, mean over B

Each thread owns a group of batch rows for all T steps (see _common.py); per row the
pointwise math is a flat loop LLVM vectorises (float32 tanh: kernels/_math.py).
"""

from math import sqrt

import numpy as np
from numba import njit, prange

from .. import config
from .._math import drelu_kernel, dtanh_kernel, relu_kernel, tanh_kernel
from ._common import finish_norms, group_rows, plan, rows_matmul

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL}


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq):
    T, B, H = x_proj.shape
    n, rows, blas = plan(B, H, H)
    rec = np.empty((B, H), dtype=x_proj.dtype)  # (B, H): h_{t-1} W_hh^T, rows per group
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _forward_rows(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq, rec, 0, B, blas)
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _forward_rows(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq, rec, lo, hi, blas)


@njit(**_JIT)
def _forward_rows(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq, rec, lo, hi, blas):
    """Rows [lo, hi) through all T steps."""
    for t in range(x_proj.shape[0]):
        h_prev = h0 if t == 0 else h_seq[t - 1]
        rows_matmul(h_prev, w_hh_t, rec, lo, hi, blas)
        for b in range(lo, hi):
            _forward_row(x_proj[t, b], rec[b], b_hh, use_relu, h_seq[t, b])


@njit(**_JIT)
def _forward_row(xp, z, b_hh, use_relu, h):
    if use_relu:
        for j in range(h.shape[0]):
            h[j] = relu_kernel(z[j] + xp[j] + b_hh[j])
    else:
        for j in range(h.shape[0]):
            h[j] = tanh_kernel(z[j] + xp[j] + b_hh[j])


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def elman_backward(dh_out, dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms):
    T, B, H = h_seq.shape
    n, rows, blas = plan(B, H, H)
    dh = dh_last.copy()  # (B, H): dL/dh_t through time, then dh0
    part = np.zeros((n, T), dtype=h_seq.dtype)  # per group: sum over its rows of ||dL/dh_t||
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _backward_rows(dh_out, h_seq, w_hh, use_relu, dpre, dh, part[0], 0, B, blas)
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _backward_rows(dh_out, h_seq, w_hh, use_relu, dpre, dh, part[grp], lo, hi, blas)
    dh0[:] = dh
    finish_norms(part, B, dh_norms)


@njit(**_JIT)
def _backward_rows(dh_out, h_seq, w_hh, use_relu, dpre, dh, norms, lo, hi, blas):
    """Rows [lo, hi) back through all T steps; norms[t] += ||dL/dh_t|| of each row."""
    for t in range(h_seq.shape[0] - 1, -1, -1):
        s = norms[t]
        for b in range(lo, hi):
            s += _backward_row(dh[b], dh_out[t, b], h_seq[t, b], use_relu, dpre[t, b])
        norms[t] = s
        rows_matmul(dpre[t], w_hh, dh, lo, hi, blas)  # dL/dh_{t-1} = dpre_t W_hh


@njit(**_JIT)
def _backward_row(dh, dh_out, h, use_relu, d):
    """d = dL/dh_t * act'(.) for one row; returns ||dL/dh_t||."""
    sq = dh.dtype.type(0.0)
    if use_relu:
        for j in range(h.shape[0]):
            g = dh[j] + dh_out[j]
            sq += g * g
            d[j] = g * drelu_kernel(h[j])
    else:
        for j in range(h.shape[0]):
            g = dh[j] + dh_out[j]
            sq += g * g
            d[j] = g * dtanh_kernel(h[j])
    return sqrt(sq)
