"""Elman cell (torch.nn.RNN), CPU. h_t = act(x_proj_t + h_{t-1} W_hh^T + b_hh), act tanh or relu.

The contract (what seqbench.backends.numba_cpu calls): the recurrence for batch rows
[lo, hi) only, one block per thread (_common.py); ``blas``: the per-step product of the
block goes to BLAS (cpu_runtime arranges BLAS on the calling thread).

    elman_forward_rows(x_proj, x, w_ih_t, w_hh_t, bias, h0, use_relu, h_seq, y, rec,
                       lo, hi, blas)
    x_proj:   [T, B, H]  W_ih x_t for all steps, one GEMM; or None, and then
    x:        [B, T, I]  the input, batch-first, projected here step by step with
    w_ih_t:   [I, H]     W_ih^T (for small I: saves writing and reading back x_proj)
    w_hh_t:   [H, H]     recurrent weights transposed from torch's [H, H]
    bias:     [H]        b_ih + b_hh
    h0:       [B, H]     initial state
    h_seq:    [T, B, H]  hidden states, the layer's output; backward reads them as saved
    y:        [B, T, H]  a batch-first copy of h_seq to fill, or None
    rec:      [B, H]     scratch: h_{t-1} W_hh^T (+ the fused input)

    elman_backward_rows(dh_out, dout_bt, h_seq, w_hh, use_relu, dpre, dh, x, norms, db,
                        dw_ih_t, lo, hi, blas)
    dh_out:   [T, B, H]  dL/dh_t arriving from the layer's consumers; [B, T, H] when dout_bt
    w_hh:     [H, H]     recurrent weights in torch's layout
    dpre:     [T, B, H]  dL/d(pre-activation); equals dL/dx_proj and dL/d(h W_hh^T + b_hh)
    dh:       [B, H]     dL/dh_T in (from the final state), dL/dh0 out
    x:        [T, B, I]  the input, time-major, where the kernel sums W_ih's gradient (a
                         small dense input); else an empty [T, B, 0], or None
    norms:    [T]        each row's ||dL/dh_t|| (L2 over H, through time) added to norms[t]:
                         the block's partial sum; the caller sums the blocks and divides by B
    db:       [H]        float64, the column sums of the block's dpre rows added to it (the
                         bias gradient's partial sum), or None
    dw_ih_t:  [I, H]     x^T dpre of the block's rows added to it (dW_ih^T's partial sum)
                         where x is given, else None

``elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq)`` and ``elman_backward(dh_out,
dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms)`` wrap the pair for the whole batch on
the calling thread (x_proj includes b_ih; dh_last in, dh0 out, dh_norms [T] the mean over
B): the tests' entry points and the oracle of kernels/cuda/elman.py, which takes the same
arguments. Per row the pointwise math is a flat loop LLVM vectorises (float32 tanh:
kernels/_math.py).
"""

from math import sqrt

from numba import njit

from .. import config
from .._math import drelu_kernel, dtanh_kernel, relu_kernel, tanh_kernel
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
    rows_matmul,
)
from ._simd import wide_vectors

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(cache=config.CACHE, **_JIT)
def elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq):
    rec, B, blas = batch_forward(x_proj, w_hh_t)  # rec (B, H): h_{t-1} W_hh^T
    elman_forward_rows(x_proj, None, None, w_hh_t, b_hh, h0, use_relu, h_seq, None, rec, 0, B, blas)


@njit(cache=config.CACHE, **_JIT)
def elman_forward_rows(x_proj, x, w_ih_t, w_hh_t, bias, h0, use_relu, h_seq, y, rec, lo, hi, blas):
    """elman_forward for batch rows [lo, hi) (arguments: the module docstring)."""
    w_hh_p = packed(w_hh_t, hi - lo)  # the tiles' panels, once for all steps
    for t in range(h_seq.shape[0]):
        h_prev = h0 if t == 0 else at(h_seq, t - 1)
        rows_matmul(h_prev, w_hh_p, rec, lo, hi, blas)
        input_step(x_proj, x, w_ih_t, t, rec, lo, hi, True)
        for b in range(lo, hi):
            xp = input_row(x_proj, t, b)
            h = at2(h_seq, t, b)
            _forward_row(xp, at(rec, b), bias, use_relu, h)
            if y is not None:
                copy_into(h, at2(y, b, t))


@njit(**_JIT)
def _forward_row(xp, z, bias, use_relu, h):
    """One row of one step: z (H,) holds the recurrent (and fused input) product."""
    wide_vectors()
    if xp is not None:
        for j in range(h.shape[0]):
            z[j] += xp[j]
    if use_relu:
        for j in range(h.shape[0]):
            h[j] = relu_kernel(z[j] + bias[j])
    else:
        for j in range(h.shape[0]):
            h[j] = tanh_kernel(z[j] + bias[j])


@njit(cache=config.CACHE, **_JIT)
def elman_backward(dh_out, dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms):
    sums, B, blas = batch_backward(dh0, dh_last, w_hh, h_seq)  # dh0 carries dL/dh_t back
    elman_backward_rows(
        dh_out, False, h_seq, w_hh, use_relu, dpre, dh0, None, sums, None, None, 0, B, blas
    )
    batch_norms(sums, B, dh_norms)


@njit(cache=config.CACHE, **_JIT)
def elman_backward_rows(
    dh_out, dout_bt, h_seq, w_hh, use_relu, dpre, dh, x, norms, db, dw_ih_t, lo, hi, blas
):
    """elman_backward for batch rows [lo, hi) (arguments: the module docstring)."""
    w_hh_p = packed(w_hh, hi - lo)  # the tiles' panels, once for all steps
    for t in range(h_seq.shape[0] - 1, -1, -1):
        s = norms[t]
        for b in range(lo, hi):
            d_out = at2(dh_out, b, t) if dout_bt else at2(dh_out, t, b)
            s += _backward_row(at(dh, b), d_out, at2(h_seq, t, b), use_relu, at2(dpre, t, b))
        norms[t] = s
        if db is not None:
            accumulate(dpre[t, lo:hi], db)
        if x is not None:
            accumulate_outer(x[t, lo:hi], dpre[t, lo:hi], dw_ih_t)
        rows_matmul(at(dpre, t), w_hh_p, dh, lo, hi, blas)  # dL/dh_{t-1} = dpre_t W_hh


@njit(**_JIT)
def _backward_row(dh, dh_out, h, use_relu, d):
    """d = dL/dh_t * act'(.) for one row; returns ||dL/dh_t||."""
    wide_vectors()
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
