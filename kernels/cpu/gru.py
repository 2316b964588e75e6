"""GRU cell (torch.nn.GRU), CPU. Gate order r, z, n; reset applied to W_hn h + b_hn.

    r = sigmoid(xr + hr), z = sigmoid(xz + hz), n = tanh(xn + r hn),  h_t = (1 - z) n + z h_{t-1}
    where [xr, xz, xn] = x_proj_t, [hr, hz, hn] = h_{t-1} W_hh^T + b_hh

The contract (what seqbench.backends.numba_cpu calls): the recurrence for batch rows
[lo, hi) only, one block per thread (_common.py); ``blas``: the per-step product of the
block goes to BLAS (cpu_runtime arranges BLAS on the calling thread).

    gru_forward_rows(x_proj, x, w_ih_t, b_ih, w_hh_t, b_hh, h0, gates, h_seq, y, rec, xrec,
                     lo, hi, blas)
    x_proj:   [T, B, 3H] W_ih x_t + b_ih for all steps, one GEMM; or None, and then
    x:        [B, T, I]  the input, batch-first, projected here step by step into xrec with
    w_ih_t:   [I, 3H]    W_ih^T and
    b_ih:     [3H]       (apart from b_hh: the reset gate multiplies only W_hn h + b_hn)
    w_hh_t:   [H, 3H]    recurrent weights transposed from torch's [3H, H]
    b_hh:     [3H]
    h0:       [B, H]
    gates:    [T, B, 4H] saved r, z, n and hn (needed by dL/dr); backward needs them as-is
    h_seq:    [T, B, H]  hidden states, the layer's output
    y:        [B, T, H]  a batch-first copy of h_seq to fill, or None
    rec:      [B, 3H]    scratch: h_{t-1} W_hh^T
    xrec:     [B, 3H]    scratch of the fused input (untouched when x_proj is given)

    gru_backward_rows(dh_out, dout_bt, gates, h_seq, h0, w_hh, dx_proj, dhn, dh, drec, direct,
                      x, norms, db_ih, db_hn, dw_ih_t, lo, hi, blas)
    dh_out:   [T, B, H]  dL/dh_t from the consumers; [B, T, H] when dout_bt
    w_hh:     [3H, H]    recurrent weights in torch's layout
    dx_proj:  [T, B, 3H] dL/dx_proj = [dr, dz, dn]
    dhn:      [T, B, H]  dL/d(W_hn h + b_hn) = dn * r. dL/d(h W_hh^T + b_hh), what W_hh and
                         b_hh see, is [dr, dz, dn * r]: dx_proj's r and z blocks, and dhn
    dh:       [B, H]     dL/dh_T in (from the final state), dL/dh0 out
    drec:     [B, 3H]    scratch: dL/d(h_{t-1} W_hh^T + b_hh) of the step, the operand of
                         dL/dh_{t-1} = drec @ W_hh (forward's rec, in reverse)
    direct:   [B, H]     scratch: dL/dh_{t-1} through the z-gated skip
    x:        [T, B, I]  the input, time-major, where the kernel sums W_ih's gradient (a
                         small dense input); else an empty [T, B, 0], or None
    norms:    [T]        each row's ||dL/dh_t|| (L2 over H) added to norms[t]: the block's
                         partial sum; the caller sums the blocks and divides by B
    db_ih:    [3H]       float64, the column sums of the block's dx_proj rows, and
    db_hn:    [H]        of its dhn rows, added to them (the bias gradients' partial sums:
                         bias_hh's are db_ih's r and z blocks and db_hn), or None
    dw_ih_t:  [I, 3H]    x^T dx_proj of the block's rows added to it (dW_ih^T's partial sum)
                         where x is given, else None

``gru_forward(x_proj, w_hh_t, b_hh, h0, gates, h_seq)`` and ``gru_backward(dh_out, dh_last,
gates, h_seq, h0, w_hh, dx_proj, dhn, dh0, dh_norms)`` wrap the pair for the whole batch
on the calling thread (dh_last in, dh0 out, dh_norms [T] the mean over B): the tests' entry
points and the oracle of kernels/cuda/gru.py, which takes the same arguments. Per row the
gate math runs as a few flat loops LLVM vectorises (float32 gates: kernels/_math.py).
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import dsigmoid_kernel, dtanh_kernel, sigmoid_kernel, tanh_kernel
from ._batch import batch_backward, batch_forward, batch_norms
from ._common import (
    accumulate,
    accumulate_outer,
    add_into,
    at,
    at2,
    copy_into,
    input_row_biased,
    input_step,
    packed,
    quarters,
    rows_matmul,
    span,
)
from ._simd import wide_vectors

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(cache=config.CACHE, **_JIT)
def gru_forward(x_proj, w_hh_t, b_hh, h0, gates, h_seq):
    rec, B, blas = batch_forward(x_proj, w_hh_t)  # rec (B, 3H): h_{t-1} W_hh^T
    gru_forward_rows(
        x_proj, None, None, None, w_hh_t, b_hh, h0, gates, h_seq, None, rec, rec, 0, B, blas
    )


@njit(cache=config.CACHE, **_JIT)
def gru_forward_rows(
    x_proj, x, w_ih_t, b_ih, w_hh_t, b_hh, h0, gates, h_seq, y, rec, xrec, lo, hi, blas
):
    """gru_forward for batch rows [lo, hi) (arguments: the module docstring)."""
    H = h0.shape[1]
    w_hh_p = packed(w_hh_t, hi - lo)  # the tiles' panels, once for all steps
    for t in range(h_seq.shape[0]):
        h_prev = h0 if t == 0 else at(h_seq, t - 1)
        rows_matmul(h_prev, w_hh_p, rec, lo, hi, blas)
        input_step(x_proj, x, w_ih_t, t, xrec, lo, hi, False)
        for b in range(lo, hi):
            xp = input_row_biased(x_proj, xrec, b_ih, t, b)
            h = at2(h_seq, t, b)
            _forward_row(xp, at(rec, b), b_hh, at(h_prev, b), at2(gates, t, b), h, H)
            if y is not None:
                copy_into(h, at2(y, b, t))


@njit(**_JIT)
def _forward_row(xp, rec, b_hh, h_prev, g, h, H):
    wide_vectors()
    one = h.dtype.type(1.0)
    for j in range(2 * H):  # r, z
        g[j] = sigmoid_kernel(xp[j] + rec[j] + b_hh[j])
    r, z, gn, hn = quarters(g, H)
    rn, bn, xn = span(rec, 2 * H, 3 * H), span(b_hh, 2 * H, 3 * H), span(xp, 2 * H, 3 * H)
    for j in range(H):
        hn[j] = rn[j] + bn[j]
    for j in range(H):
        gn[j] = tanh_kernel(xn[j] + r[j] * hn[j])
    for j in range(H):
        h[j] = (one - z[j]) * gn[j] + z[j] * h_prev[j]


@njit(cache=config.CACHE, **_JIT)
def gru_backward(dh_out, dh_last, gates, h_seq, h0, w_hh, dx_proj, dhn, dh0, dh_norms):
    drec = np.empty((dh0.shape[0], w_hh.shape[0]), dtype=h_seq.dtype)  # (B, 3H)
    direct = np.empty(dh0.shape, dtype=h_seq.dtype)  # dL/dh_{t-1} through the z-gated skip
    sums, B, blas = batch_backward(dh0, dh_last, w_hh, h_seq)  # dh0 carries dL/dh_t back
    gru_backward_rows(
        dh_out, False, gates, h_seq, h0, w_hh, dx_proj, dhn, dh0, drec, direct, None, sums,
        None, None, None, 0, B, blas,
    )  # fmt: skip
    batch_norms(sums, B, dh_norms)


@njit(cache=config.CACHE, **_JIT)
def gru_backward_rows(
    dh_out, dout_bt, gates, h_seq, h0, w_hh, dx_proj, dhn, dh, drec, direct, x, norms, db_ih,
    db_hn, dw_ih_t, lo, hi, blas,
):  # fmt: skip
    """gru_backward for batch rows [lo, hi) (arguments: the module docstring)."""
    H = dh.shape[1]
    w_hh_p = packed(w_hh, hi - lo)  # the tiles' panels, once for all steps
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h_prev = h0 if t == 0 else at(h_seq, t - 1)
        s = norms[t]
        for b in range(lo, hi):
            d_out = at2(dh_out, b, t) if dout_bt else at2(dh_out, t, b)
            s += _backward_row(
                at(dh, b), d_out, at2(gates, t, b), at(h_prev, b), at2(dx_proj, t, b),
                at2(dhn, t, b), at(drec, b), at(direct, b), H,
            )  # fmt: skip
        norms[t] = s
        if db_ih is not None:
            accumulate(dx_proj[t, lo:hi], db_ih)
            accumulate(dhn[t, lo:hi], db_hn)
        if x is not None:
            accumulate_outer(x[t, lo:hi], dx_proj[t, lo:hi], dw_ih_t)
        rows_matmul(drec, w_hh_p, dh, lo, hi, blas)
        for b in range(lo, hi):
            add_into(at(direct, b), at(dh, b))


@njit(**_JIT)
def _backward_row(dh, dh_out, g, h_prev, dx, dhn, drec, direct, H):
    """dx_proj, dhn and drec rows from dL/dh_t; direct = the skip term; returns ||dL/dh_t||."""
    wide_vectors()
    one = dh.dtype.type(1.0)
    r, z, gn, hn = quarters(g, H)
    dr, dz, dn = span(dx, 0, H), span(dx, H, 2 * H), span(dx, 2 * H, 3 * H)
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
    for j in range(2 * H):  # r, z: x_proj and h W_hh^T enter them alike
        drec[j] = dx[j]
    rn = span(drec, 2 * H, 3 * H)
    for j in range(H):  # n: r scales W_hn h + b_hn
        v = dn[j] * r[j]
        dhn[j] = v
        rn[j] = v
    return sqrt(sq)
