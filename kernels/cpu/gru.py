"""GRU cell (torch.nn.GRU), CPU. Gate order r, z, n; reset applied to W_hn h + b_hn.

    r = sigmoid(xr + hr), z = sigmoid(xz + hz), n = tanh(xn + r hn),  h_t = (1 - z) n + z h_{t-1}
    where [hr, hz, hn] = h_{t-1} W_hh^T + b_hh

Shapes (time-major inside the kernel):
    x_proj:   [T, B, 3H] W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, 3H]    recurrent weights transposed from torch's [3H, H] (forward)
    w_hh:     [3H, H]    recurrent weights in torch's layout (backward)
    b_hh:     [3H]
    h0:       [B, H]
    gates:    [T, B, 4H] saved r, z, n and hn (needed by dL/dr); backward needs them as-is
    h_seq:    [T, B, H]  hidden states, the layer's output
    dh_out:   [T, B, H]  dL/dh_t from the consumers; dh_last: [B, H] from the final state
    dx_proj:  [T, B, 3H] dL/dx_proj
    dh_proj:  [T, B, 3H] dL/d(h W_hh^T + b_hh); differs from dx_proj in the n block (times r)
    dh0:      [B, H];    dh_norms: [T] ||dL/dh_t||, L2 over H, mean over B

Each thread owns a group of batch rows for all T steps (see _common.py); per row the gate
math runs as a few flat loops LLVM vectorises (float32 gates: kernels/_math.py).
"""

from math import sqrt

import numpy as np
from numba import njit, prange

from .. import config
from .._math import dsigmoid_kernel, dtanh_kernel, sigmoid_kernel, tanh_kernel
from ._common import finish_norms, group_rows, plan, rows_matmul

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL}


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def gru_forward(x_proj, w_hh_t, b_hh, h0, gates, h_seq):
    T, B, G = x_proj.shape
    H = G // 3
    n, rows, blas = plan(B, H, G)
    rec = np.empty((B, G), dtype=x_proj.dtype)  # (B, 3H): h_{t-1} W_hh^T, rows per group
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _forward_rows(x_proj, w_hh_t, b_hh, h0, gates, h_seq, rec, 0, B, blas)
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _forward_rows(x_proj, w_hh_t, b_hh, h0, gates, h_seq, rec, lo, hi, blas)


@njit(**_JIT)
def _forward_rows(x_proj, w_hh_t, b_hh, h0, gates, h_seq, rec, lo, hi, blas):
    """Rows [lo, hi) through all T steps."""
    H = h0.shape[1]
    for t in range(x_proj.shape[0]):
        h_prev = h0 if t == 0 else h_seq[t - 1]
        rows_matmul(h_prev, w_hh_t, rec, lo, hi, blas)
        for b in range(lo, hi):
            _forward_row(x_proj[t, b], rec[b], b_hh, h_prev[b], gates[t, b], h_seq[t, b], H)


@njit(**_JIT)
def _forward_row(xp, rec, b_hh, h_prev, g, h, H):
    one = h.dtype.type(1.0)
    for j in range(2 * H):  # r, z
        g[j] = sigmoid_kernel(xp[j] + rec[j] + b_hh[j])
    r, z, gn, hn = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    rn, bn, xn = rec[2 * H :], b_hh[2 * H :], xp[2 * H :]
    for j in range(H):
        hn[j] = rn[j] + bn[j]
    for j in range(H):
        gn[j] = tanh_kernel(xn[j] + r[j] * hn[j])
    for j in range(H):
        h[j] = (one - z[j]) * gn[j] + z[j] * h_prev[j]


@njit(cache=config.CACHE, parallel=config.parallel_options(), **_JIT)
def gru_backward(dh_out, dh_last, gates, h_seq, h0, w_hh, dx_proj, dh_proj, dh0, dh_norms):
    T, B, H = h_seq.shape
    n, rows, blas = plan(B, 3 * H, H)
    dh = dh_last.copy()  # (B, H)
    direct = np.empty((B, H), dtype=h_seq.dtype)  # dL/dh_{t-1} through the z-gated skip
    part = np.zeros((n, T), dtype=h_seq.dtype)  # per group: sum over its rows of ||dL/dh_t||
    if n == 1:  # outside any parallel region: BLAS, if used, may run its own threads
        _backward_rows(
            dh_out, gates, h_seq, h0, w_hh, dx_proj, dh_proj, dh, direct, part[0], 0, B, blas
        )
    else:
        for grp in prange(n):
            lo, hi = group_rows(B, rows, grp)
            _backward_rows(
                dh_out,
                gates,
                h_seq,
                h0,
                w_hh,
                dx_proj,
                dh_proj,
                dh,
                direct,
                part[grp],
                lo,
                hi,
                blas,
            )
    dh0[:] = dh
    finish_norms(part, B, dh_norms)


@njit(**_JIT)
def _backward_rows(
    dh_out, gates, h_seq, h0, w_hh, dx_proj, dh_proj, dh, direct, norms, lo, hi, blas
):
    """Rows [lo, hi) back through all T steps; norms[t] += ||dL/dh_t|| of each row."""
    H = dh.shape[1]
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h_prev = h0 if t == 0 else h_seq[t - 1]
        s = norms[t]
        for b in range(lo, hi):
            s += _backward_row(
                dh[b],
                dh_out[t, b],
                gates[t, b],
                h_prev[b],
                dx_proj[t, b],
                dh_proj[t, b],
                direct[b],
                H,
            )
        norms[t] = s
        rows_matmul(dh_proj[t], w_hh, dh, lo, hi, blas)
        for b in range(lo, hi):
            _add_into(direct[b], dh[b])


@njit(**_JIT)
def _backward_row(dh, dh_out, g, h_prev, dx, dhp, direct, H):
    """dx_proj and dh_proj rows from dL/dh_t; direct = the skip term; returns ||dL/dh_t||."""
    one = dh.dtype.type(1.0)
    r, z, gn, hn = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    dr, dz, dn = dx[:H], dx[H : 2 * H], dx[2 * H :]
    sq = dh.dtype.type(0.0)
    for j in range(H):  # dh <- dL/dh_t
        v = dh[j] + dh_out[j]
        dh[j] = v
        sq += v * v
    for j in range(H):
        direct[j] = dh[j] * z[j]
    for j in range(H):
        dn[j] = dh[j] * (one - z[j]) * dtanh_kernel(gn[j])
    for j in range(H):
        dz[j] = dh[j] * (h_prev[j] - gn[j]) * dsigmoid_kernel(z[j])
    for j in range(H):
        dr[j] = dn[j] * hn[j] * dsigmoid_kernel(r[j])
    for j in range(2 * H):
        dhp[j] = dx[j]
    hr = dhp[2 * H :]
    for j in range(H):
        hr[j] = dn[j] * r[j]
    return sqrt(sq)


@njit(**_JIT)
def _add_into(a, out):
    for j in range(out.shape[0]):
        out[j] += a[j]
