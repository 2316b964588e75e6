"""What every CUDA kernel shares: scalar math, the tiled GEMM, the recurrence's building blocks
and its launch plan. The cell modules only hold their own operands and gate math; the two
shapes of a step built from those are in _steps.py, the time loops and launches in _launch.py.

How a recurrence is split over the GPU (forward and backward alike):

    A *unit space* is U units (hidden units; for Jordan also outputs) whose value at step t
    needs, per gate, one dot product of length K with a vector of the step before (h_{t-1} in
    forward, dpre_{t+1} in backward). Block ``blk`` owns the S units [blk*S, blk*S + S). Its
    threads walk the (batch row, unit) pairs p = b*S + s in rounds; a *group* of ``ks``
    consecutive threads (ks a power of two, at most a warp) splits the K terms of one pair and
    sums them in shared memory, so a small batch still fills the block.

    Weight slices: ``pack_slices`` lays out each block's columns contiguously, gate-major,
    with K padded to an odd ``kp`` (no shared-memory bank conflicts between columns):

        packed[(blk*cols + g*S + s)*kp + k] = w[k, g*U + blk*S + s],   cols = gates*S

    Persistent path: one cooperative launch, the block's slice copied once into shared memory,
    a grid-wide barrier (``this_grid().sync()``) after each step. Every step reads only data
    written before the previous barrier (h_{t-1}, dpre_{t+1}); the carried per-unit state
    (c_t, dL/dc_t, GRU's skip term) is read and written by its owning thread only.
    Per-step path: the same step body, one launch per step, weights read from the packed
    slices in global memory. ``_plan.plan_recurrence`` picks the path (kernels/config.py).

    ||dL/dh_t||: each block sums the squares over its units into ``sq_part[t, blk, b]``;
    ``finish_norms`` takes sqrt, sums blocks and averages the batch (deterministic order).

Kernels that allocate shared memory are built per dtype (``cuda.shared.array`` needs its dtype
at compile time) by ``functools.cache``-d factories (_launch.py for the cells, esn.py for the
reservoir, ``_gemm_kernels`` here); device functions are generic. Arrays are device arrays;
``DeviceCall`` accepts host arrays too.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from .. import config

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

if SIMULATOR:
    from numba.cuda.simulator.kernel import _get_kernel_context

    class _LaunchModule:
        """The running launch's fake ``cuda`` module. The simulator swaps the ``cuda`` global
        of a device function's module on every call and back on return, which races between
        the threads of a block when the device function lives in another module than the
        kernel; device functions here read ``cu`` instead, which never moves."""

        def __getattr__(self, name):
            return getattr(_get_kernel_context(), name)

    cu = _LaunchModule()
else:
    cu = cuda  # device code below uses `cu` where it would say `cuda` (see above)


def _quiet_small_grids() -> None:
    """Small grids are by design here: a B=1 step is a few blocks of units, and the persistent
    grid is sized to what fits co-resident. numba-cuda warns at every launch of fewer than 128
    blocks, which floods the user's output and, under warnings-as-errors, fails the call. A
    value the user set in NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS is kept; the variable is set as
    well as the option because numba re-reads its options whenever the environment changes."""
    import os

    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" in os.environ:
        return
    os.environ["NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS"] = "0"
    from numba.cuda import dispatcher

    dispatcher.config.CUDA_LOW_OCCUPANCY_WARNINGS = 0


if not SIMULATOR:
    _quiet_small_grids()


# ---------------------------------------------------------------- scalar math


# Device twins of _math.py's exact functions (same formulas, derivatives from the saved
# output), with every constant in the argument's own type: _math's float literals (1.0)
# would turn float32 gate math into float64 on the GPU (exact, but float64 runs at a small
# fraction of float32's rate on most GPUs). math.exp / math.tanh of a float32 are libdevice's
# float32 functions. tests/test_ptx.py checks that no float32 kernel has an f64 instruction.


@cuda.jit(device=True)
def sigmoid(z):
    one = type(z)(1.0)
    return one / (one + math.exp(-z))


@cuda.jit(device=True)
def dsigmoid_from_output(s):  # d/dz sigmoid(z) = s (1 - s)
    return s * (type(s)(1.0) - s)


@cuda.jit(device=True)
def tanh_(z):
    return math.tanh(z)


@cuda.jit(device=True)
def dtanh_from_output(s):  # d/dz tanh(z) = 1 - s^2
    return type(s)(1.0) - s * s


@cuda.jit(device=True)
def relu(z):
    zero = type(z)(0.0)
    return z if z > zero else zero * z


@cuda.jit(device=True)
def drelu_from_output(s):  # d/dz relu(z) = [z > 0] = [s > 0]
    zero = type(s)(0.0)
    return type(s)(1.0) if s > zero else zero


# ---------------------------------------------------------------- host arrays in and out


def is_device(a) -> bool:
    return cuda.devicearray.is_cuda_ndarray(a)


def to_device(a):
    """a itself if it is a device array (or exposes the CUDA array interface), else a copy."""
    if is_device(a):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


class DeviceCall:
    """Device views of a kernel function's arguments: inputs are copied to the device if
    they are host arrays; host outputs get a device buffer copied back on leaving the block."""

    def __init__(self):
        self._back = []

    def inputs(self, *arrays):
        return tuple(to_device(a) for a in arrays)

    def outputs(self, *arrays):
        out = []
        for a in arrays:
            if is_device(a) or hasattr(a, "__cuda_array_interface__"):
                out.append(to_device(a))
            else:
                d = cuda.device_array(a.shape, dtype=a.dtype)
                self._back.append((d, a))
                out.append(d)
        return tuple(out)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for d, a in self._back:
                d.copy_to_host(a)
        return False


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------- weight slices


@cuda.jit
def _pack_kernel(w, packed, units, per_block, kp):
    e = cuda.grid(1)
    if e < packed.size:
        cols = (w.shape[1] // units) * per_block
        c = e // kp  # column over all blocks
        k = e - c * kp
        blk = c // cols
        g = (c - blk * cols) // per_block
        j = blk * per_block + c - blk * cols - g * per_block
        if k < w.shape[0] and j < units:
            packed[e] = w[k, g * units + j]
        else:
            packed[e] = 0


def pack_slices(w, space, blocks: int):
    """Device 1D array of the per-block column slices of w [K, gates*U] (module docstring);
    space: a _plan.Space."""
    packed = cuda.device_array(blocks * space.weights, dtype=w.dtype)
    tpb = config.THREADS_PER_BLOCK
    _pack_kernel[_ceil(packed.size, tpb), tpb](w, packed, space.units, space.per_block, space.kp)
    return packed


@cuda.jit(device=True)
def load_slice(dst, dst0, src, src0, n):
    """dst[dst0 : dst0+n] = src[src0 : src0+n] by the whole block, then a block barrier."""
    for i in range(cu.threadIdx.x, n, cu.blockDim.x):
        dst[dst0 + i] = src[src0 + i]
    cu.syncthreads()


# ---------------------------------------------------------------- the recurrence's pieces


@cuda.jit(device=True)
def thread_group(ks):
    """(lane within the group, group, groups in the block); threads past the last full
    group get group == groups and stay idle."""
    tid = cu.threadIdx.x
    return tid % ks, tid // ks, cu.blockDim.x // ks


@cuda.jit(device=True)
def pair(p, grp, ngrp, blk, per_block, batch, units):
    """(batch row, unit, live) of pair p = b*S + s of block blk."""
    b = p // per_block
    j = blk * per_block + p - b * per_block
    return b, j, grp < ngrp and b < batch and j < units


@cuda.jit(device=True)
def dots(vec, b, n, w, w0, stride, lane, ks, live, zero, gates):
    """Partial sums over k = lane, lane + ks, ... < n of vec[b, k] * w[w0 + g*stride + k] for
    the gates g < ``gates`` (1 to 4), as a 4-tuple; the entries past ``gates`` stay ``zero``.
    Call it with ``gates`` a constant, directly (not through a wrapper): the tests on it then
    fold away and the PTX has the instructions of a dedicated 1-, 3- or 4-gate loop (compared
    at cc 9.0 when this replaced dots1/dots3/dots4; through a wrapper the loop came out
    differently)."""
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    if live:
        for k in range(lane, n, ks):
            v = vec[b, k]
            a0 += v * w[w0 + k]
            if gates > 1:
                a1 += v * w[w0 + stride + k]
            if gates > 2:
                a2 += v * w[w0 + 2 * stride + k]
            if gates > 3:
                a3 += v * w[w0 + 3 * stride + k]
    return a0, a1, a2, a3


@cuda.jit(device=True)
def _group_sum(red, n, lane, ks):
    """Tree sum of red[g*tpb + tid] over each group's ks lanes, for g < n; the total lands in
    the group's first slot. Every thread of the block must call it (it synchronises)."""
    tpb = cu.blockDim.x
    tid = cu.threadIdx.x
    whole = tid - lane + ks <= tpb  # idle threads past the last full group add nothing
    off = ks // 2
    while off > 0:
        cu.syncthreads()
        if lane < off and whole:
            for g in range(n):
                red[g * tpb + tid] += red[g * tpb + tid + off]
        off //= 2
    cu.syncthreads()


@cuda.jit(device=True)
def reduce(red, sums, lane, ks, gates):
    """The group totals of the first ``gates`` of the 4-tuple ``sums`` (a thread's partial
    sums from ``dots``), in every lane; entries past ``gates`` come back as they went in.
    Every thread of the block must call it (it synchronises); ``gates`` a constant, as for
    ``dots``."""
    if ks == 1:
        return sums
    a0, a1, a2, a3 = sums
    tid = cu.threadIdx.x
    tpb = cu.blockDim.x
    cu.syncthreads()  # the previous round's readers are done with red
    red[tid] = a0
    if gates > 1:
        red[tpb + tid] = a1
    if gates > 2:
        red[2 * tpb + tid] = a2
    if gates > 3:
        red[3 * tpb + tid] = a3
    _group_sum(red, gates, lane, ks)
    r = tid - lane
    return (
        red[r],
        red[tpb + r] if gates > 1 else a1,
        red[2 * tpb + r] if gates > 2 else a2,
        red[3 * tpb + r] if gates > 3 else a3,
    )


@cuda.jit(device=True)
def block_squares(sqs, sq_part, t, blk, per_block, batch, units, zero):
    """sq_part[t, blk, b] = sum over the block's live units of sqs[b*S + s]."""
    cu.syncthreads()  # every pair's square is in sqs
    for b in range(cu.threadIdx.x, batch, cu.blockDim.x):
        acc = zero
        for s in range(per_block):
            if blk * per_block + s < units:
                acc += sqs[b * per_block + s]
        sq_part[t, blk, b] = acc


@functools.cache
def _norms_kernel(dtype: np.dtype):
    """The kernel of ``finish_norms`` for one dtype: its zero and the batch size as a divisor
    in that dtype (an integer divisor would make float32 divide in float64)."""
    zero, cast = dtype.type(0), dtype.type

    @cuda.jit
    def norms(sq_part, dh_norms):
        t = cuda.grid(1)
        if t < sq_part.shape[0]:
            total = zero
            for b in range(sq_part.shape[2]):
                sq = zero
                for blk in range(sq_part.shape[1]):
                    sq += sq_part[t, blk, b]
                total += math.sqrt(sq)
            dh_norms[t] = total / cast(sq_part.shape[2])

    return norms


def finish_norms(sq_part, dh_norms):
    """dh_norms[t] = mean over b of sqrt(sum over blocks of sq_part[t, blk, b])."""
    tpb = config.THREADS_PER_BLOCK
    kernel = _norms_kernel(np.dtype(sq_part.dtype))
    kernel[_ceil(sq_part.shape[0], tpb), tpb](sq_part, dh_norms)


# ---------------------------------------------------------------- GEMM and column sums


@functools.cache
def _gemm_kernels(dtype: np.dtype):
    dt = numba.from_dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit
    def gemm(a, b, c, bias, trans_a, trans_b, accumulate, add_bias, tile):
        """c[M, N] = [c +] op(a) @ op(b) [+ bias]; op(a): (M, K), op(b): (K, N).

        Block (tile/2, tile/2) threads computes a tile x tile block of c, each thread a 2x2
        micro-tile (rows ty, ty + tile/2; columns tx, tx + tile/2) from K-slices of a and b
        staged in shared memory as [k][m] and [k][n].
        """
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        sm = cuda.shared.array(0, dt)
        half = tile // 2
        tt = tile * tile
        tx = cu.threadIdx.x
        ty = cu.threadIdx.y
        tid = ty * half + tx
        nthreads = half * half
        m0 = cu.blockIdx.y * tile
        n0 = cu.blockIdx.x * tile
        c00 = zero
        c01 = zero
        c10 = zero
        c11 = zero
        for k0 in range(0, K, tile):
            for e in range(tid, tt, nthreads):
                kk, mm, v = _tile_element(a, trans_a, e, tile, k0, m0, K, M, zero)
                sm[kk * tile + mm] = v
                kk, nn, v = _tile_element(b, not trans_b, e, tile, k0, n0, K, N, zero)
                sm[tt + kk * tile + nn] = v
            cu.syncthreads()
            for kk in range(tile):
                a0 = sm[kk * tile + ty]
                a1 = sm[kk * tile + ty + half]
                b0 = sm[tt + kk * tile + tx]
                b1 = sm[tt + kk * tile + tx + half]
                c00 += a0 * b0
                c01 += a0 * b1
                c10 += a1 * b0
                c11 += a1 * b1
            cu.syncthreads()
        _store(c, bias, m0 + ty, n0 + tx, c00, accumulate, add_bias)
        _store(c, bias, m0 + ty, n0 + tx + half, c01, accumulate, add_bias)
        _store(c, bias, m0 + ty + half, n0 + tx, c10, accumulate, add_bias)
        _store(c, bias, m0 + ty + half, n0 + tx + half, c11, accumulate, add_bias)

    @cuda.jit
    def colsum_partial(a, part, rows_per):
        """part[r, n] = sum of a[r*rows_per : (r+1)*rows_per, n]; grid (columns, row chunks)."""
        n = cu.blockIdx.x * cu.blockDim.x + cu.threadIdx.x
        r = cu.blockIdx.y
        if n < a.shape[1]:
            acc = zero
            stop = (r + 1) * rows_per  # not min(): numba 0.68's CUDA target fails to type it
            if stop > a.shape[0]:
                stop = a.shape[0]
            for m in range(r * rows_per, stop):
                acc += a[m, n]
            part[r, n] = acc

    @cuda.jit
    def colsum_finish(part, out, accumulate):
        n = cuda.grid(1)
        if n < out.shape[0]:
            acc = out[n] if accumulate else zero
            for r in range(part.shape[0]):
                acc += part[r, n]
            out[n] = acc

    return gemm, colsum_partial, colsum_finish


@cuda.jit(device=True)
def _tile_element(x, k_rows, e, tile, k0, r0, K, R, zero):
    """(kk, rr, x's entry at (k0 + kk, r0 + rr)) for the e-th element of a tile of op(x),
    op(x) (K, R); x is (K, R) where ``k_rows``, else (R, K). Elements go along x's
    contiguous axis; past the edges the value is zero."""
    if k_rows:
        kk = e // tile
        rr = e - kk * tile
        v = x[k0 + kk, r0 + rr] if (k0 + kk < K and r0 + rr < R) else zero
    else:
        rr = e // tile
        kk = e - rr * tile
        v = x[r0 + rr, k0 + kk] if (k0 + kk < K and r0 + rr < R) else zero
    return kk, rr, v


@cuda.jit(device=True)
def _store(c, bias, m, n, v, accumulate, add_bias):
    if m < c.shape[0] and n < c.shape[1]:
        if add_bias:
            v += bias[n]
        if accumulate:
            v += c[m, n]
        c[m, n] = v


def gemm(a, b, c, *, trans_a=False, trans_b=False, bias=None, accumulate=False):
    """c = [c +] op(a) @ op(b) [+ bias] for 2D device arrays of one dtype, one launch."""
    kernel = _gemm_kernels(np.dtype(c.dtype))[0]
    tile = config.GEMM_TILE
    M, N = c.shape
    grid = (_ceil(N, tile), _ceil(M, tile))
    shared = 2 * tile * tile * np.dtype(c.dtype).itemsize
    args = (a, b, c, c[0] if bias is None else bias, trans_a, trans_b, accumulate)
    kernel[grid, (tile // 2, tile // 2), 0, shared](*args, bias is not None, tile)


def colsum(a, out, *, accumulate=False):
    """out[n] = [out[n] +] sum over rows of a[:, n], two launches, a fixed summation order."""
    partial_kernel, finish_kernel = _gemm_kernels(np.dtype(a.dtype))[1:]
    M, N = a.shape
    tpb = config.THREADS_PER_BLOCK
    chunks = min(M, 64)
    rows_per = _ceil(M, chunks)
    chunks = _ceil(M, rows_per)
    part = cuda.device_array((chunks, N), dtype=a.dtype)
    partial_kernel[(_ceil(N, tpb), chunks), tpb](a, part, rows_per)
    finish_kernel[_ceil(N, tpb), tpb](part, out, accumulate)
