"""What every CPU kernel shares: the recurrent product and the split of a batch into rows.

Batch rows are independent through the whole recurrence. Each cell module has, besides its
public ``<cell>_forward`` / ``<cell>_backward`` (the whole batch on the calling thread), the
same recurrence for a block of rows, ``<cell>_forward_rows`` / ``<cell>_backward_rows``
(arguments: the kernel's arrays, scratch, then ``lo, hi, blas``). They release the GIL, so
seqbench.backends.numba_cpu runs one block per thread, each through all T steps: no thread
waits for another inside the time loop, and no OpenMP runtime is involved. The ``_rows``
variants also take the input unprojected (x batch-first and W_ih^T, projected step by step:
no x_proj round trip through memory for a small input), write a batch-first copy of the
output, read dL/dy batch-first and sum the bias gradient, which saves the backend four
passes over (T, B, .) arrays.

The recurrent product of a block is a register-blocked loop (4 rows x 4 k per pass over W,
no call overhead) or, when ``blas``, one BLAS call per step (then BLAS must run on the calling
thread only, which numba_cpu arranges).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import config

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


@njit(**_JIT)
def use_blas(rows, K, N):
    """Whether a block's per-step product (rows x K) @ (K x N) goes to BLAS."""
    return rows * K * N >= config.BLAS_MIN_MACS


@njit(**_JIT)
def rows_matmul(a, w, out, lo, hi, blas):
    """out[lo:hi] = a[lo:hi] @ w.   a: (B, K), w: (K, N), out: (B, N), C-contiguous."""
    if blas:
        np.dot(a[lo:hi], w, out[lo:hi])
        return
    b = lo
    while b + 4 <= hi:
        _vecmat4(
            a[b], a[b + 1], a[b + 2], a[b + 3], w, out[b], out[b + 1], out[b + 2], out[b + 3], False
        )
        b += 4
    while b < hi:
        _vecmat1(a[b], w, out[b], False)
        b += 1


@njit(**_JIT)
def rows_matmul_bt(a, t, w, out, lo, hi, acc):
    """out[lo:hi] (+)= a[lo:hi, t] @ w, rows of a batch-first a: (B, T, K); w: (K, N)."""
    b = lo
    while b + 4 <= hi:
        _vecmat4(
            a[b, t], a[b + 1, t], a[b + 2, t], a[b + 3, t], w,
            out[b], out[b + 1], out[b + 2], out[b + 3], acc,
        )  # fmt: skip
        b += 4
    while b < hi:
        _vecmat1(a[b, t], w, out[b], acc)
        b += 1


# ---- the input of a step: hoisted (x_proj given) or fused (x_proj None, raw x and W_ih^T).
# Chosen by type at compile time (numba prunes `if arg is None` only for an argument that is
# None, so a plain branch could not serve both cases).


def input_step(x_proj, x, w_ih_t, t, out, lo, hi, acc):
    """Fused input only: out[lo:hi] (+)= x[lo:hi, t] @ w_ih_t. Nothing when x_proj is given."""


@overload(input_step, jit_options=_JIT)
def _input_step(x_proj, x, w_ih_t, t, out, lo, hi, acc):
    if isinstance(x_proj, types.NoneType):
        return lambda x_proj, x, w_ih_t, t, out, lo, hi, acc: rows_matmul_bt(
            x, t, w_ih_t, out, lo, hi, acc
        )
    return lambda x_proj, x, w_ih_t, t, out, lo, hi, acc: None


def input_row(x_proj, t, b):
    """x_proj[t, b], or None when the input is fused."""


@overload(input_row, jit_options=_JIT)
def _input_row(x_proj, t, b):
    if isinstance(x_proj, types.NoneType):
        return lambda x_proj, t, b: None
    return lambda x_proj, t, b: x_proj[t, b]


def input_row_biased(x_proj, xrec, b_ih, t, b):
    """x_proj[t, b] (bias included), or, fused, xrec[b] + b_ih (added in place)."""


@overload(input_row_biased, jit_options=_JIT)
def _input_row_biased(x_proj, xrec, b_ih, t, b):
    if isinstance(x_proj, types.NoneType):

        def fused(x_proj, xrec, b_ih, t, b):
            row = xrec[b]
            add_into(b_ih, row)
            return row

        return fused
    return lambda x_proj, xrec, b_ih, t, b: x_proj[t, b]


@njit(**_JIT)
def copy_into(a, out):  # out[:] = a, as a loop: numba's slice assignment costs ~0.4 us a call
    for j in range(out.shape[0]):
        out[j] = a[j]


@njit(**_JIT)
def add_into(a, out):  # out += a
    for j in range(out.shape[0]):
        out[j] += a[j]


@njit(**_JIT)
def _vecmat1(x, w, o, acc):  # o (+)= x @ w; x: (K,), w: (K, N), o: (N,)
    K = x.shape[0]
    N = o.shape[0]
    if not acc:
        for n in range(N):
            o[n] = 0
    k = 0
    while k + 4 <= K:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for n in range(N):
            o[n] += x0 * w0[n] + x1 * w1[n] + x2 * w2[n] + x3 * w3[n]
        k += 4
    while k < K:
        x0 = x[k]
        w0 = w[k]
        for n in range(N):
            o[n] += x0 * w0[n]
        k += 1


@njit(**_JIT)
def _vecmat4(x, y, u, v, w, o, p, q, r, acc):  # four rows at once: each load of w used 4 times
    K = x.shape[0]
    N = o.shape[0]
    if not acc:
        for out in (o, p, q, r):
            for n in range(N):
                out[n] = 0
    k = 0
    while k + 4 <= K:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        y0, y1, y2, y3 = y[k], y[k + 1], y[k + 2], y[k + 3]
        u0, u1, u2, u3 = u[k], u[k + 1], u[k + 2], u[k + 3]
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for n in range(N):
            a, b, c, d = w0[n], w1[n], w2[n], w3[n]
            o[n] += x0 * a + x1 * b + x2 * c + x3 * d
            p[n] += y0 * a + y1 * b + y2 * c + y3 * d
            q[n] += u0 * a + u1 * b + u2 * c + u3 * d
            r[n] += v0 * a + v1 * b + v2 * c + v3 * d
        k += 4
    while k < K:
        w0 = w[k]
        x0, y0, u0, v0 = x[k], y[k], u[k], v[k]
        for n in range(N):
            a = w0[n]
            o[n] += x0 * a
            p[n] += y0 * a
            q[n] += u0 * a
            r[n] += v0 * a
        k += 1


@njit(**_JIT)
def accumulate(rows, out):  # out (float64) += sum of the rows of rows: (n, G)
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(out.shape[0]):
            out[j] += r[j]


@njit(**_JIT)
def finish_norms(part, B, dh_norms):
    """dh_norms[t] = sum over row blocks of part[c, t] (sums of ||dL/dh_t,b||) / B."""
    n, T = part.shape
    for t in range(T):
        s = part[0, t]
        for c in range(1, n):
            s += part[c, t]
        dh_norms[t] = s / B
