"""LSTM cell (torch.nn.LSTM), CPU. Gate order i, f, g, o.

    i, f, o = sigmoid(.), g = tanh(.) of x_proj_t + h_{t-1} W_hh^T + b_hh
    c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)

Shapes (time-major inside the kernel):
    x_proj:   [T, B, 4H] W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, 4H]    recurrent weights transposed from torch's [4H, H] (forward)
    w_hh:     [4H, H]    recurrent weights in torch's layout (backward)
    b_hh:     [4H]
    h0, c0:   [B, H]
    gates:    [T, B, 4H] saved activations i, f, g, o; backward needs them as-is
    c_seq:    [T, B, H]  cell states
    h_seq:    [T, B, H]  hidden states, the layer's output
    dh_out:   [T, B, H]  dL/dh_t from the consumers; dh_last, dc_last: [B, H] from the final state
    dpre:     [T, B, 4H] dL/d(gate pre-activations) = dL/dx_proj = dL/d(h W_hh^T + b_hh)
    dh0, dc0: [B, H];    dh_norms: [T] ||dL/dh_t||, L2 over H, mean over B

Threads take groups of batch rows through all T steps (see _common.py). Per step and row the
gate math runs as a few flat loops over contiguous rows, which LLVM vectorises (float32 gates
use the approximations of kernels/_math.py).
"""

from math import sqrt

import numpy as np
from numba import njit, prange

from .. import config
from .._math import dsigmoid_kernel, dtanh_kernel, sigmoid_kernel, tanh_kernel
from ._common import finish_norms, group_rows, plan, rows_matmul

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL}


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def lstm_forward(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq):
    T, B, G = x_proj.shape
    H = G // 4
    n, rows, blas = plan(B, H, G)
    rec = np.empty((B, G), dtype=x_proj.dtype)  # (B, 4H): h_{t-1} W_hh^T, rows per group
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _forward_rows(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq, rec, 0, B, blas)
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _forward_rows(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq, rec, lo, hi, blas)


@njit(**_JIT)
def _forward_rows(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq, rec, lo, hi, blas):
    """Rows [lo, hi) through all T steps."""
    H = h0.shape[1]
    for t in range(x_proj.shape[0]):
        h_prev = h0 if t == 0 else h_seq[t - 1]
        c_prev = c0 if t == 0 else c_seq[t - 1]
        rows_matmul(h_prev, w_hh_t, rec, lo, hi, blas)
        for b in range(lo, hi):
            _forward_row(
                x_proj[t, b], rec[b], b_hh, c_prev[b], gates[t, b], c_seq[t, b], h_seq[t, b], H
            )


@njit(**_JIT)
def _forward_row(xp, z, b_hh, c_prev, g, c, h, H):
    G = 4 * H
    for j in range(G):  # pre-activations, in place of the recurrent product
        z[j] += xp[j] + b_hh[j]
    _sigmoid_into(z[: 2 * H], g[: 2 * H])  # i, f
    _tanh_into(z[2 * H : 3 * H], g[2 * H : 3 * H])  # g
    _sigmoid_into(z[3 * H :], g[3 * H :])  # o
    gi, gf, gg, go = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    for j in range(H):
        cj = gf[j] * c_prev[j] + gi[j] * gg[j]
        c[j] = cj
        h[j] = go[j] * tanh_kernel(cj)


@njit(**_JIT)
def _sigmoid_into(z, out):
    for j in range(z.shape[0]):
        out[j] = sigmoid_kernel(z[j])


@njit(**_JIT)
def _tanh_into(z, out):
    for j in range(z.shape[0]):
        out[j] = tanh_kernel(z[j])


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def lstm_backward(dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh, dpre, dh0, dc0, dh_norms):
    T, B, G = gates.shape
    H = G // 4
    n, rows, blas = plan(B, G, H)
    dh = dh_last.copy()  # (B, H): dL/dh_t through time, rows per group
    dc = dc_last.copy()  # (B, H)
    part = np.zeros((n, T), dtype=gates.dtype)  # per group: sum over its rows of ||dL/dh_t||
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _backward_rows(dh_out, gates, c_seq, c0, w_hh, dpre, dh, dc, part[0], 0, B, blas)
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _backward_rows(dh_out, gates, c_seq, c0, w_hh, dpre, dh, dc, part[grp], lo, hi, blas)
    dh0[:] = dh
    dc0[:] = dc
    finish_norms(part, B, dh_norms)


@njit(**_JIT)
def _backward_rows(dh_out, gates, c_seq, c0, w_hh, dpre, dh, dc, norms, lo, hi, blas):
    """Rows [lo, hi) back through all T steps; norms[t] += ||dL/dh_t|| of each row."""
    H = dh.shape[1]
    for t in range(gates.shape[0] - 1, -1, -1):
        c_prev = c0 if t == 0 else c_seq[t - 1]
        s = norms[t]
        for b in range(lo, hi):
            s += _backward_row(
                dh[b], dh_out[t, b], dc[b], gates[t, b], c_seq[t, b], c_prev[b], dpre[t, b], H
            )
        norms[t] = s
        rows_matmul(dpre[t], w_hh, dh, lo, hi, blas)  # dL/dh_{t-1} = dpre_t W_hh


@njit(**_JIT)
def _backward_row(dh, dh_out, dc, g, c, c_prev, d, H):
    """One row of dpre from dL/dh (carried, plus dh_out); dh and dc are updated in place.

    Returns ||dL/dh_t||. Each loop touches few arrays so that LLVM vectorises it (its runtime
    alias checks grow with the product of written and read arrays).
    """
    gi, gf, gg, go = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    di, df, dg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
    sq = dh.dtype.type(0.0)
    for j in range(H):  # dh <- dL/dh_t
        v = dh[j] + dh_out[j]
        dh[j] = v
        sq += v * v
    for j in range(H):  # do <- tanh(c_t), for now
        do[j] = tanh_kernel(c[j])
    for j in range(H):  # dc <- dL/dc_t
        dc[j] += dh[j] * go[j] * dtanh_kernel(do[j])
    for j in range(H):
        do[j] = dh[j] * do[j] * dsigmoid_kernel(go[j])
    for j in range(H):
        di[j] = dc[j] * gg[j] * dsigmoid_kernel(gi[j])
    for j in range(H):
        df[j] = dc[j] * c_prev[j] * dsigmoid_kernel(gf[j])
    for j in range(H):
        dg[j] = dc[j] * gi[j] * dtanh_kernel(gg[j])
    for j in range(H):  # dL/dc_{t-1}
        dc[j] *= gf[j]
    return sqrt(sq)
