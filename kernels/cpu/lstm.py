"""LSTM cell (torch.nn.LSTM), CPU. Gate order i, f, g, o.

    i, f, o = sigmoid(.), g = tanh(.) of x_proj_t + h_{t-1} W_hh^T + b_hh
    c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)

The contract (what seqbench.backends.numba_cpu calls): the recurrence for batch rows
[lo, hi) only, one block per thread (_common.py); ``blas``: the per-step product of the
block goes to BLAS (cpu_runtime arranges BLAS on the calling thread).

    lstm_forward_rows(x_proj, x, w_ih_t, w_hh_t, bias, h0, c0, gates, c_seq, h_seq, y, rec,
                      lo, hi, blas)
    x_proj:   [T, B, 4H] W_ih x_t for all steps, one GEMM; or None, and then
    x:        [B, T, I]  the input, batch-first, projected here step by step with
    w_ih_t:   [I, 4H]    W_ih^T (for small I: saves writing and reading back x_proj)
    w_hh_t:   [H, 4H]    recurrent weights transposed from torch's [4H, H]
    bias:     [4H]       b_ih + b_hh
    h0, c0:   [B, H]
    gates:    [T, B, 4H] saved activations i, f, g, o; backward needs them as-is
    c_seq:    [T, B, H]  cell states
    h_seq:    [T, B, H]  hidden states, the layer's output
    y:        [B, T, H]  a batch-first copy of h_seq to fill, or None
    rec:      [B, 4H]    scratch: h_{t-1} W_hh^T (+ the fused input)

    lstm_backward_rows(dh_out, dout_bt, gates, c_seq, c0, w_hh, dpre, dh, dc, x, norms, db,
                       dw_ih_t, lo, hi, blas)
    dh_out:   [T, B, H]  dL/dh_t from the consumers; [B, T, H] when dout_bt
    w_hh:     [4H, H]    recurrent weights in torch's layout
    dpre:     [T, B, 4H] dL/d(gate pre-activations) = dL/dx_proj = dL/d(h W_hh^T + b_hh)
    dh, dc:   [B, H]     dL/dh_T, dL/dc_T in (from the final state), dL/dh0, dL/dc0 out
    x:        [T, B, I]  the input, time-major, where the kernel sums W_ih's gradient (a
                         small dense input); else an empty [T, B, 0], or None
    norms:    [T]        each row's ||dL/dh_t|| (L2 over H) added to norms[t]: the block's
                         partial sum; the caller sums the blocks and divides by B
    db:       [4H]       float64, the column sums of the block's dpre rows added to it (the
                         bias gradient's partial sum), or None
    dw_ih_t:  [I, 4H]    x^T dpre of the block's rows added to it (dW_ih^T's partial sum)
                         where x is given, else None

``lstm_forward(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq)`` and
``lstm_backward(dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh, dpre, dh0, dc0, dh_norms)``
wrap the pair for the whole batch on the calling thread (x_proj includes b_ih; dh_last,
dc_last in, dh0, dc0 out, dh_norms [T] the mean over B): the tests' entry points and the
oracle of kernels/cuda/lstm.py, which takes the same arguments. Per step and row the gate
math runs as a few flat loops over contiguous rows, which LLVM vectorises (float32 gates use
the approximations of kernels/_math.py).
"""

from math import sqrt

from numba import njit

from .. import config
from .._math import dsigmoid_kernel, dtanh_kernel, sigmoid_kernel, tanh_kernel
from ._batch import batch_backward, batch_forward, batch_norms
from ._common import (
    accumulate,
    accumulate_outer,
    at,
    at2,
    copy_into,
    input_row,
    input_step,
    packed,
    quarters,
    rows_matmul,
    span,
)
from ._simd import wide_vectors

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(cache=config.CACHE, **_JIT)
def lstm_forward(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq):
    rec, B, blas = batch_forward(x_proj, w_hh_t)  # rec (B, 4H): h_{t-1} W_hh^T
    lstm_forward_rows(
        x_proj, None, None, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq, None, rec, 0, B, blas
    )


@njit(cache=config.CACHE, **_JIT)
def lstm_forward_rows(
    x_proj, x, w_ih_t, w_hh_t, bias, h0, c0, gates, c_seq, h_seq, y, rec, lo, hi, blas
):
    """lstm_forward for batch rows [lo, hi) (arguments: the module docstring)."""
    H = h0.shape[1]
    w_hh_p = packed(w_hh_t, hi - lo)  # the tiles' panels, once for all steps
    for t in range(gates.shape[0]):
        h_prev = h0 if t == 0 else at(h_seq, t - 1)
        c_prev = c0 if t == 0 else at(c_seq, t - 1)
        rows_matmul(h_prev, w_hh_p, rec, lo, hi, blas)
        input_step(x_proj, x, w_ih_t, t, rec, lo, hi, True)
        for b in range(lo, hi):
            xp = input_row(x_proj, t, b)
            h = at2(h_seq, t, b)
            _forward_row(
                xp, at(rec, b), bias, at(c_prev, b), at2(gates, t, b), at2(c_seq, t, b), h, H
            )
            if y is not None:
                copy_into(h, at2(y, b, t))


@njit(**_JIT)
def _forward_row(xp, z, bias, c_prev, g, c, h, H):
    """One row of one step: z (4H,) holds the recurrent (and fused input) product."""
    wide_vectors()
    if xp is None:
        for j in range(4 * H):
            z[j] += bias[j]
    else:
        for j in range(4 * H):
            z[j] += xp[j] + bias[j]
    _sigmoid_into(span(z, 0, 2 * H), span(g, 0, 2 * H))  # i, f
    _tanh_into(span(z, 2 * H, 3 * H), span(g, 2 * H, 3 * H))  # g
    _sigmoid_into(span(z, 3 * H, 4 * H), span(g, 3 * H, 4 * H))  # o
    gi, gf, gg, go = quarters(g, H)
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


@njit(cache=config.CACHE, **_JIT)
def lstm_backward(dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh, dpre, dh0, dc0, dh_norms):
    dc0[:] = dc_last  # dh0, dc0 carry dL/dh_t, dL/dc_t back through time
    sums, B, blas = batch_backward(dh0, dh_last, w_hh, gates)
    lstm_backward_rows(
        dh_out, False, gates, c_seq, c0, w_hh, dpre, dh0, dc0, None, sums, None, None, 0, B, blas
    )
    batch_norms(sums, B, dh_norms)


@njit(cache=config.CACHE, **_JIT)
def lstm_backward_rows(
    dh_out, dout_bt, gates, c_seq, c0, w_hh, dpre, dh, dc, x, norms, db, dw_ih_t, lo, hi, blas
):
    """lstm_backward for batch rows [lo, hi) (arguments: the module docstring)."""
    H = dh.shape[1]
    w_hh_p = packed(w_hh, hi - lo)  # the tiles' panels, once for all steps
    for t in range(gates.shape[0] - 1, -1, -1):
        c_prev = c0 if t == 0 else at(c_seq, t - 1)
        s = norms[t]
        for b in range(lo, hi):
            d_out = at2(dh_out, b, t) if dout_bt else at2(dh_out, t, b)
            s += _backward_row(
                at(dh, b), d_out, at(dc, b), at2(gates, t, b), at2(c_seq, t, b), at(c_prev, b),
                at2(dpre, t, b), H,
            )  # fmt: skip
        norms[t] = s
        if db is not None:
            accumulate(dpre[t, lo:hi], db)
        if x is not None:
            accumulate_outer(x[t, lo:hi], dpre[t, lo:hi], dw_ih_t)
        rows_matmul(at(dpre, t), w_hh_p, dh, lo, hi, blas)  # dL/dh_{t-1} = dpre_t W_hh


@njit(**_JIT)
def _backward_row(dh, dh_out, dc, g, c, c_prev, d, H):
    """One row of dpre from dL/dh (carried, plus dh_out); dh and dc are updated in place.

    Returns ||dL/dh_t||. Each loop touches few arrays so that LLVM vectorises it (its runtime
    alias checks grow with the product of written and read arrays).
    """
    wide_vectors()
    gi, gf, gg, go = quarters(g, H)
    di, df, dg, do = quarters(d, H)
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
