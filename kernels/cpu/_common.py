"""What every CPU kernel shares: the recurrent product and the split of a batch into rows.

Batch rows are independent through the whole recurrence. Each cell module has, besides its
public ``<cell>_forward`` / ``<cell>_backward`` (the whole batch on the calling thread, set up
by _batch.py), the same recurrence for a block of rows, ``<cell>_forward_rows`` /
``<cell>_backward_rows`` (arguments: the kernel's arrays, scratch, then ``lo, hi, blas``). They
release the GIL, so seqbench.backends.cpu_runtime runs one block per thread, each through all
T steps: no thread waits for another inside the time loop, and no OpenMP runtime is involved.
The ``_rows`` variants also take the input unprojected (x batch-first and W_ih^T, projected
step by step: no x_proj round trip through memory for a small input), write a batch-first
copy of the output, read dL/dy batch-first and sum the bias gradient, which saves the backend
four passes over (T, B, .) arrays.

The recurrent product of a block is a register-tiled matmul (_simd.py: 8 rows x 2 vectors
of accumulators held in registers, no call overhead) or, when ``blas``, one BLAS call per
step (then BLAS must run on the calling thread only, which cpu_runtime arranges).
"""

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .. import config
from ._simd import aligned_copy, pack_panels, tile_matmul, wide_vectors

_JIT = {"fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL, "nogil": True}


# ---- borrowed views. numba gives every view it makes (a[i], a[lo:hi]) a reference to its
# parent's buffer: an atomic increment and a decrement through two out-of-line calls, ~12 ns
# a view. Kernels pass views of rows to small functions thousands of times a call (~25 views
# a step for LSTM at B=1; its 1000-step forward, H=64: 1.47 -> 1.22 ms without them). These views
# hold no reference (meminfo NULL, which numba's refcount calls skip): valid only while the
# array they come from is alive, which inside a kernel call its caller guarantees. Never
# return one from a kernel.


def _borrowed(context, builder, ty, data, shape, strides, itemsize):
    out = context.make_array(ty)(context, builder)
    context.populate_array(
        out, data=data, shape=shape, strides=strides, itemsize=itemsize, meminfo=None
    )
    return out._getvalue()


def _count(builder, dims):  # elements of an array of shape dims
    n = dims[0]
    for d in dims[1:]:
        n = builder.mul(n, d)
    return n


@intrinsic
def at(typingctx, a, i):
    """a[i] of a C-contiguous array (ndim >= 2), borrowed (see above)."""
    if not (isinstance(a, types.Array) and a.ndim >= 2 and a.layout == "C"):
        return None
    if not isinstance(i, types.Integer):
        return None
    sig = a.copy(ndim=a.ndim - 1)(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, arr.shape)
        strides = cgutils.unpack_tuple(builder, arr.strides)
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        data = builder.gep(arr.data, [builder.mul(idx, _count(builder, shape[1:]))])
        return _borrowed(
            context, builder, signature.return_type, data, shape[1:], strides[1:], arr.itemsize
        )

    return sig, codegen


@njit(inline="always", **_JIT)
def at2(a, i, j):
    """a[i, j] of a C-contiguous array (ndim >= 3), borrowed."""
    return at(at(a, i), j)


@njit(inline="always", **_JIT)
def quarters(a, H):
    """The four (H,) parts of a (4H,) row (LSTM's gates; GRU's r, z, n and W_hn h), borrowed."""
    return span(a, 0, H), span(a, H, 2 * H), span(a, 2 * H, 3 * H), span(a, 3 * H, 4 * H)


@intrinsic
def span(typingctx, a, lo, hi):
    """a[lo:hi] of a C-contiguous 1-D array, borrowed (see above); 0 <= lo <= hi <= len."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"):
        return None
    if not (isinstance(lo, types.Integer) and isinstance(hi, types.Integer)):
        return None
    sig = a(a, lo, hi)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        lo_, hi_ = (
            context.cast(builder, v, t, types.intp)
            for v, t in zip(args[1:], signature.args[1:], strict=True)
        )
        data = builder.gep(arr.data, [lo_])
        strides = cgutils.unpack_tuple(builder, arr.strides)
        return _borrowed(
            context,
            builder,
            signature.return_type,
            data,
            [builder.sub(hi_, lo_)],
            strides,
            arr.itemsize,
        )

    return sig, codegen


@njit(**_JIT)
def use_blas(rows, K, N):
    """Whether a block's per-step product (rows x K) @ (K x N) goes to BLAS."""
    return rows * K * N >= config.BLAS_MIN_MACS


@njit(**_JIT)
def packed(w, rows):
    """(w copied to a 64-byte boundary, its tile panels): the form rows_matmul takes a weight
    matrix that every step of the time loop multiplies by, prepared once before the loop for
    a block of ``rows`` rows (_simd.pack_panels), each part only when the block reads it.
    Groups of 8 rows read the panels; single rows read the copy: with rows of W straddling
    cache lines every vector load touches two, which doubled a 64 x 192 row product (0.25 ->
    0.5 us)."""
    wa = aligned_copy(w) if rows % 8 else w
    return wa, pack_panels(w if rows >= 8 else w[:0])


@njit(inline="always", **_JIT)
def rows_matmul(a, w, out, lo, hi, blas):
    """out[lo:hi] = a[lo:hi] @ w[0].   a: (B, K), w: ``packed`` (K, N), out: (B, N),
    C-contiguous."""
    if blas:
        np.dot(a[lo:hi], w[0], out[lo:hi])
    else:
        tile_matmul(a, w[0], w[1], out, lo, hi, False)


@njit(**_JIT)
def rows_matmul_bt(a, t, w, out, lo, hi, acc):
    """out[lo:hi] (+)= a[lo:hi, t] @ w, rows of a batch-first a: (B, T, K); w: (K, N)."""
    if a.shape[2] > 4:
        tile_matmul(a[:, t], w, None, out, lo, hi, acc)
        return
    for b in range(lo, hi):  # a few input features: axpy rows, no tile set-up
        o = at(out, b)
        if not acc:
            for n in range(o.shape[0]):
                o[n] = 0
        for k in range(a.shape[2]):
            add_scaled(a[b, t, k], at(w, k), o)


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
    return lambda x_proj, t, b: at2(x_proj, t, b)


def input_row_biased(x_proj, xrec, b_ih, t, b):
    """x_proj[t, b] (bias included), or, fused, xrec[b] + b_ih (added in place)."""


@overload(input_row_biased, jit_options=_JIT)
def _input_row_biased(x_proj, xrec, b_ih, t, b):
    if isinstance(x_proj, types.NoneType):

        def fused(x_proj, xrec, b_ih, t, b):
            row = at(xrec, b)
            add_into(b_ih, row)
            return row

        return fused
    return lambda x_proj, xrec, b_ih, t, b: at2(x_proj, t, b)


@njit(**_JIT)
def copy_into(a, out):  # out[:] = a, as a loop: numba's slice assignment costs ~0.4 us a call
    for j in range(out.shape[0]):
        out[j] = a[j]


@njit(**_JIT)
def add_scaled(s, a, out):  # out += s * a
    for j in range(out.shape[0]):
        out[j] += s * a[j]


@njit(**_JIT)
def add_into(a, out):  # out += a
    for j in range(out.shape[0]):
        out[j] += a[j]


@njit(**_JIT)
def accumulate(rows, out):  # out (float64) += sum of the rows of rows: (n, G)
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(out.shape[0]):
            out[j] += r[j]


@njit(**_JIT)
def accumulate_outer(x, d, out):
    """out (I, G) += x^T d for one step's rows, x (n, I), d (n, G): the weight gradient of a
    small fused input, summed while the step's rows of d are still in L1. As one GEMM after
    the loop (BLAS, skinny: I columns) it streamed all of d from memory again: 1.3-2.1 ms of
    a 15 ms LSTM train step at (32, 100, 10, 128)."""
    wide_vectors()
    n, G = d.shape
    I = x.shape[1]
    b = 0
    while b + 4 <= n:  # four rows of d stay in L1 while every row of out takes them
        d0, d1, d2, d3 = at(d, b), at(d, b + 1), at(d, b + 2), at(d, b + 3)
        for i in range(I):
            a0, a1, a2, a3 = x[b, i], x[b + 1, i], x[b + 2, i], x[b + 3, i]
            acc = at(out, i)
            for g in range(G):
                acc[g] += (a0 * d0[g] + a1 * d1[g]) + (a2 * d2[g] + a3 * d3[g])
        b += 4
    for r in range(b, n):
        dr = at(d, r)
        for i in range(I):
            a, acc = x[r, i], at(out, i)
            for g in range(G):
                acc[g] += a * dr[g]
