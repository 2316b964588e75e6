"""Echo-state network (leaky-integrator reservoir), CPU. No backward: only the readout learns.

    x_t = (1 - a) x_{t-1} + a f(W x_{t-1} + W_in u_t + b + W_fb y_{t-1}),   f = tanh or identity

Shapes (batch-first, unlike the cell kernels: the hoisted projection comes out of its GEMM
as (B*T, N), and ``states`` may be the very same array, read before written, which halves
the memory of long runs: B=32, T=10^4, N=10^3 is 2.6 GB per array in float64):
    u_proj:  [B, T, N]  W_in u_t + b for all steps, computed once by one GEMM; under teacher
                        forcing it also holds W_fb y_{t-1} of the teacher's outputs
    w_hh_t:  [N, N]     dense W transposed (one step is x @ w_hh_t, a BLAS GEMM)
    indptr:  [N + 1]    W in CSR, rows = receiving units; uint32, as signed indices make
    indices: [nnz]        numba guard every gather against wrap-around
    data:    [nnz]
    leak:    scalar a in (0, 1];  linear: True for f = identity (memory-capacity studies)
    x0:      [B, N]     initial state
    states:  [B, T, N]  x_1 .. x_T (output)
    free run (output feedback; O = 0 turns it off, pass empty arrays):
    w_fb:    [N, O]     feedback weights; y_{t-1} enters the step through W_fb y_{t-1}
    w_out:   [O, N]     readout, y_t = w_out x_t + b_out, computed inside the loop
    b_out:   [O]
    y0:      [B, O]     the output before the first step
    outputs: [B, T, O]  y_1 .. y_T (output)

Kernels. ``esn_forward`` (dense W) and ``esn_forward_csr`` run the batch on the calling
thread (the CUDA module mirrors both). seqbench.models.esn runs a CSR reservoir on the CPU
through the threaded pair at the end of this module instead, with the input projected inside
the time loop when it is small (``input_at``):
- ``esn_forward_rows``, fewer than 4 series: series one by one, each step's units
  split over the threads, which meet at a barrier (_sync.barrier: ~1 us spinning, then
  yielding the core while a partner is off its own) once a step.
  A step is bound by its 100k indexed loads x[j] (N = 1000, 10%), so W is held in sliced
  ELLPACK (8 units a slice, one 8-lane gather a slot, see _sparse.make_slice_rows): no
  per-row reduction or loop exit, as CSR rows have. One series, one thread: 37-39 us a
  step against 47-51 for LLVM's vectorised CSR rows; two threads: 22-28 against 25-38.
  The two threads exchange the state each step: with a private copy each (wrong results,
  timing only) a step took 20-21 us. Dense 8x1 row blocks (no gathers, but 5.7x the
  weights to stream) ran 4x slower than CSR (measured).
- ``esn_forward_chunks``, more series: sparse x dense in chunks of 16 series, each team of
  threads its own chunks through all T steps. While there are at least as many chunks as
  threads a team is one thread and nobody waits; with fewer, the spare threads join the
  teams and split each step's units, meeting at the barrier once a step (2 threads, B = 8:
  10.1 against 16.3 us a series-step on one; 16 cores, B = 32: 2.0-2.3, against 8.9 with
  the rows kernel that B = 32 took there before). The chunk's state lives unit-major,
  (N + 1, 16), so each nonzero W_ij is loaded once and multiplies 16 contiguous x_j values;
  W is cut into column blocks of 256 so that the x rows a block reads stay in L1. A row's
  nonzeros run through ``_sparse.make_sparse_row``: explicit vector IR with four accumulator
  sets of 16 lanes held in registers, so a nonzero costs its loads (index, weight, two 512-bit rows
  of x), not an FMA latency; the state starts on a cache line (``_simd.empty_aligned``) so that
  no row load straddles two. The input of a chunk is projected for all 16 lanes at once
  (``chunk_inputs``). Measured at B = 32, T = 1000, two threads: 13.6 -> 7.1 us per
  series-step (one thread, 16 series: 16.3 -> 9.0; with today's tanh_f64 8.4, of which the
  product ~5.4, tanh and the leak ~1.2, input ~0.5, transposes into ``states`` ~0.5).
  Chunks of 32 series (a third fewer loads per series) ran no faster on one thread, and a
  batch of 32 would then leave the second thread idle.

tanh is a branch-free expm1-based evaluation in float64 (``tanh_f64``: at most 4 ulp, 5e-16
absolute, from the correctly rounded value; tested; ~1 ns an element) that LLVM vectorises
(unlike _math's float32 ``tanh_fast``, it keeps float64 states equal to NumPy's to 1e-12);
``math.tanh`` is a scalar libm call that costs ~15 ns and dominates a batched step. The
kernels use numba's NumPy error model so that float division carries no ZeroDivisionError
branch, which would block vectorisation.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import config
from .._math import tanh_f64
from ._sparse import (
    make_slice_rows,
    make_sparse_row,
    transpose8,
    transpose8_stream,
)
from ._sync import barrier, store_fence


@njit(inline="always")
def _activate(z, linear):
    return z if linear else tanh_f64(z)


@njit(inline="always")
def _readout(x, w_out, b_out, y):  # y = w_out @ x + b_out; x: (N,), w_out: (O, N)
    for o in range(w_out.shape[0]):
        s = b_out[o]
        for i in range(x.shape[0]):
            s += w_out[o, i] * x[i]
        y[o] = s


# Up to this batch size running the series one by one beats the sparse x dense step (CPU us
# per series-step at N=1000, 10%: one by one ~40-55; sparse x dense B=2 ~90, B=4 ~74, B=8 ~49,
# B=16 ~32, B=32 ~25, B=64 ~23).
_SERIES_AT_ONCE = 6
_BLOCK = 64  # units per block of the per-step transposes: 64 x B values stay in L1


def input_at(x, w_in_t, bias, b, t, i):
    """The input of unit i at step t of series b: x[b, t, i] when w_in_t is None (x is the
    projected input, (B, T, N)), else bias[i] + x[b, t] @ w_in_t[:, i] (x raw, (B, T, K);
    w_in_t (K, N)): a small input projected inside the time loop saves two passes over a
    (B, T, N) array, the GEMM writing it and the kernel reading it back."""


@overload(input_at, inline="always")
def _input_at(x, w_in_t, bias, b, t, i):
    if isinstance(w_in_t, types.NoneType):
        return lambda x, w_in_t, bias, b, t, i: x[b, t, i]

    def fused(x, w_in_t, bias, b, t, i):
        s = bias[i]
        for m in range(x.shape[2]):
            s += x[b, t, m] * w_in_t[m, i]
        return s

    return fused


@njit(inline="always")
def _to_unit_major(x, w_in_t, bias, t, out, b0, n, r0, r1):  # out[i, j], r0 <= i < r1: input
    for i0 in range(r0, r1, _BLOCK):  # of unit i of series b0 + j
        i1 = min(i0 + _BLOCK, r1)
        for j in range(n):
            for i in range(i0, i1):
                out[i, j] = input_at(x, w_in_t, bias, b0 + j, t, i)


def chunk_inputs(x, w_in_t, bias, t, out, b0, n, lanes, r0, r1):
    """out[i, j] = the input of unit i at step t of series b0 + j, j < n and r0 <= i < r1, as
    ``input_at`` reads it; out: (N + 1, CHUNK). A raw input (w_in_t not None) goes through lanes, a
    (K, CHUNK) scratch array, and is projected for all CHUNK lanes at once, unit by unit in
    contiguous vectors (its strided form, unit-major stores through input_at, cost 2.9 against
    ~1 us per series-step); lanes past n hold input 0 and a state nobody reads."""


@overload(chunk_inputs, inline="always")
def _chunk_inputs(x, w_in_t, bias, t, out, b0, n, lanes, r0, r1):
    if isinstance(w_in_t, types.NoneType):

        def transposed(x, w_in_t, bias, t, out, b0, n, lanes, r0, r1):
            _to_unit_major(x, w_in_t, bias, t, out, b0, n, r0, r1)

        return transposed

    def fused(x, w_in_t, bias, t, out, b0, n, lanes, r0, r1):
        K = x.shape[2]
        for m in range(K):
            for j in range(n):
                lanes[m, j] = x[b0 + j, t, m]
        for i in range(r0, r1):
            row = out[i]
            for j in range(CHUNK):
                row[j] = bias[i]
            for m in range(K):
                w = w_in_t[m, i]
                for j in range(CHUNK):
                    row[j] += w * lanes[m, j]

    return fused


@njit(inline="always")
def _to_batch_major(x, states, t, b0, n, r0, r1):
    """states[b0 + j, t, i] = x[i, j] for j < n, r0 <= i < r1: 8 x 8 blocks transposed in
    registers, with
    streaming stores where every row of the view starts at the same offset from a 64-byte
    boundary (its stride a multiple of 64: N = 1000 in float64), the units before the first
    boundary and after the last block, and the series past the last 8, one by one. One
    thread, 16 series, N = 1000: 1.05 -> 0.52 us per series-step (the stores no longer read
    each line of ``states`` from memory before writing it)."""
    dst = states[b0 : b0 + n, t]  # (n, N), rows contiguous
    width = 8 * x.itemsize  # bytes of a block's row
    stream = dst.strides[0] % width == 0
    lead = (-dst.ctypes.data) % width // x.itemsize if stream else 0
    first = r0 + (lead - r0) % 8  # the first unit >= r0 on a line boundary
    units, series = first + max(0, r1 - first) // 8 * 8, n // 8 * 8
    for j0 in range(0, series, 8):
        for i0 in range(first, units, 8):
            if stream:
                transpose8_stream(x, dst, i0, j0)
            else:
                transpose8(x, dst, i0, j0)
    for j in range(n):
        row = dst[j]
        if j < series:
            for i in range(r0, min(first, r1)):
                row[i] = x[i, j]
        for i in range(units if j < series else r0, r1):
            row[i] = x[i, j]


@njit(cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy")
def esn_forward(u_proj, w_hh_t, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs):
    """Dense W: one (B, N) @ (N, N) GEMM per step, then the elementwise update."""
    B, T, N = u_proj.shape
    O = w_out.shape[0]
    keep = 1.0 - leak
    x = x0.copy()  # (B, N)
    rec = np.empty_like(x)  # (B, N)
    y = y0.copy()  # (B, O)
    for t in range(T):
        np.dot(x, w_hh_t, rec)
        for b in range(B):
            pre = rec[b]
            for i in range(N):
                pre[i] += u_proj[b, t, i]
            for o in range(O):  # output feedback of the free run
                for i in range(N):
                    pre[i] += w_fb[i, o] * y[b, o]
            xb = x[b]
            for i in range(N):
                v = keep * xb[i] + leak * _activate(pre[i], linear)
                xb[i] = v
                states[b, t, i] = v
            if O > 0:
                _readout(xb, w_out, b_out, y[b])
                outputs[b, t] = y[b]


@njit(cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy")
def esn_forward_csr(
    u_proj, indptr, indices, data, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs
):
    """CSR W with uint32 indices. Up to _SERIES_AT_ONCE series run one after another, each
    with a vectorised gather matvec; a larger batch runs as one sparse x dense product."""
    B, T, N = u_proj.shape
    O = w_out.shape[0]
    keep = 1.0 - leak
    y = y0.copy()  # (B, O)
    if B <= _SERIES_AT_ONCE:
        x = np.empty(N, dtype=x0.dtype)
        pre = np.empty_like(x)
        for b in range(B):
            x[:] = x0[b]
            yb = y[b]
            for t in range(T):
                pre[:] = u_proj[b, t]
                for o in range(O):  # output feedback of the free run
                    for i in range(N):
                        pre[i] += w_fb[i, o] * yb[o]
                for i in range(N):
                    s = 0.0
                    for k in range(indptr[i], indptr[i + 1]):
                        s += data[k] * x[indices[k]]
                    pre[i] += s
                for i in range(N):
                    v = keep * x[i] + leak * _activate(pre[i], linear)
                    x[i] = v
                    states[b, t, i] = v
                if O > 0:
                    _readout(x, w_out, b_out, yb)
                    outputs[b, t] = yb
        return
    x = np.ascontiguousarray(x0.T)  # (N, B): row j holds unit j of every series
    x_new = np.empty_like(x)  # (N, B): pre-activation, then the new state
    for t in range(T):
        _to_unit_major(u_proj, None, None, t, x_new, 0, B, 0, N)
        for o in range(O):
            for i in range(N):
                for b in range(B):
                    x_new[i, b] += w_fb[i, o] * y[b, o]
        for i in range(N):
            acc = x_new[i]  # (B,)
            k = indptr[i]
            end = indptr[i + 1]
            while k + 4 <= end:  # one load and store of acc per four nonzeros
                w0, w1, w2, w3 = data[k], data[k + 1], data[k + 2], data[k + 3]
                r0, r1 = x[indices[k]], x[indices[k + 1]]
                r2, r3 = x[indices[k + 2]], x[indices[k + 3]]
                for b in range(B):
                    acc[b] += (w0 * r0[b] + w1 * r1[b]) + (w2 * r2[b] + w3 * r3[b])
                k += 4
            while k < end:
                w0, r0 = data[k], x[indices[k]]
                for b in range(B):
                    acc[b] += w0 * r0[b]
                k += 1
        for i in range(N):
            old, new = x[i], x_new[i]
            for b in range(B):
                new[b] = keep * old[b] + leak * _activate(new[b], linear)
        x, x_new = x_new, x
        _to_batch_major(x, states, t, 0, B, 0, N)
        if O > 0:
            for b in range(B):
                _readout(x[:, b], w_out, b_out, y[b])
                outputs[b, t] = y[b]


# ---- threaded kernels (seqbench.models.esn picks one by batch size and thread count)

# Without output feedback the threaded kernels take None for w_fb, w_out, b_out, y0 and
# outputs: numba prunes the ``is not None`` branches for a None argument, so the feedback code
# is not compiled in at all. Its mere presence, zero-length loops and all, cost 2-7% of a
# batched step (one thread, B = 16, interleaved: 8.54-8.82 against 8.35-8.47 us per
# series-step; a copy without it against the kernel, 8.5-8.8 against 9.1-9.4).
_NO_FEEDBACK = (None, None, None, None, None)

CHUNK = 16  # series per pass of the blocked sparse x dense product
GROUP = 4  # nonzeros per pass; each (block, row) segment is padded to a multiple of it
_sparse_row = make_sparse_row(CHUNK, GROUP)


@njit(inline="always")
def _chunk_step(
    x_in, w_in_t, bias, bptr, bidx, bdat, keep, leak, linear, w_fb, w_out, y, x, x_new, t,
    b0, n, lanes, r0, r1,
):  # fmt: skip
    """Units r0..r1-1 of step t of the chunk of series b0..b0+n-1: x_new from x."""
    chunk_inputs(x_in, w_in_t, bias, t, x_new, b0, n, lanes, r0, r1)
    if w_out is not None:
        for o in range(w_out.shape[0]):
            for i in range(r0, r1):
                for j in range(n):
                    x_new[i, j] += w_fb[i, o] * y[j, o]
    for c in range(bptr.shape[0]):
        ptr = bptr[c]
        for i in range(r0, r1):
            _sparse_row(x, bidx, bdat, x_new, i, ptr[i], ptr[i + 1])
    for i in range(r0, r1):
        old, new = x[i], x_new[i]
        for j in range(CHUNK):
            new[j] = keep * old[j] + leak * _activate(new[j], linear)


@njit(cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy", nogil=True)
def esn_forward_chunks(
    x_in, w_in_t, bias, bptr, bidx, bdat, leak, linear, x0, states, w_fb, w_out, b_out, y0,
    outputs, lo, hi, x_pair, rows, counters, me, team,
):  # fmt: skip
    """Series lo..hi-1, CHUNK at a time, each chunk through all T steps, by a team of
    ``team`` threads (called once per member, ``me`` = 0 .. team-1, all at the same time):
    member k computes units rows[k] .. rows[k + 1] - 1 of every step, and the team meets at
    a barrier (_sync.barrier) once a step. A team of one runs without barriers. W in blocked
    CSR: for column block c (the x rows it reads stay in L1), row i's nonzeros are
    bidx/bdat[bptr[c, i]:bptr[c, i + 1]], a multiple of GROUP long, padded with weight 0 at
    column N (a row of x that stays 0).
        bptr:     [n_blocks, N + 1] uint32; bidx: [nnz_padded] uint32; bdat: [nnz_padded]
        x_pair:   [2 * (N + 1), CHUNK] on a 64-byte boundary (_simd.empty_aligned), zeros:
                  the team's chunk state, unit-major, double-buffered
        rows:     int64 [team + 1] the members' unit ranges
        counters: int64 [team * _sync.STRIDE], zeros
    The input is x_in, w_in_t, bias as in ``input_at`` (w_in_t None: x_in is u_proj, and may
    be ``states`` itself). Other arguments as esn_forward_csr, except that w_fb, w_out, b_out,
    y0 and outputs are all None without output feedback (see ``_NO_FEEDBACK``); member 0
    writes ``outputs``."""
    B, T, N = states.shape
    keep = 1.0 - leak
    r0, r1 = rows[me], rows[me + 1]
    x, x_new = x_pair[: N + 1], x_pair[N + 1 :]  # lanes past the chunk's series stay 0
    O = 0
    if w_out is not None:
        O = w_out.shape[0]
    y = np.empty((CHUNK, O), dtype=x0.dtype)
    lanes = np.zeros((x_in.shape[2], CHUNK), dtype=x0.dtype)
    generation = 0
    for b0 in range(lo, hi, CHUNK):
        n = min(CHUNK, hi - b0)
        if team > 1:  # the last step's readout may still read the other members' rows
            generation += 1
            barrier(counters, me, team, generation)
        lanes[:] = 0.0
        x[r0:r1] = 0.0
        x_new[r0:r1] = 0.0
        for j in range(n):
            x[r0:r1, j] = x0[b0 + j, r0:r1]
        if w_out is not None:
            y[:n] = y0[b0 : b0 + n]
        for t in range(T):
            if team > 1:  # every member's rows of x are in place
                generation += 1
                barrier(counters, me, team, generation)
            _chunk_step(
                x_in, w_in_t, bias, bptr, bidx, bdat, keep, leak, linear, w_fb, w_out, y, x,
                x_new, t, b0, n, lanes, r0, r1,
            )  # fmt: skip
            x, x_new = x_new, x
            _to_batch_major(x, states, t, b0, n, r0, r1)
            if w_out is not None:
                if team > 1:  # y_t needs every member's rows
                    generation += 1
                    barrier(counters, me, team, generation)
                for j in range(n):
                    _readout(x[:N, j], w_out, b_out, y[j])
                    if me == 0:
                        outputs[b0 + j, t] = y[j]
    store_fence()  # the streamed states are complete before the caller reads them


SLICE = 8  # units per slice of the one-series kernels' W (sliced ELLPACK, one gather each)
SLICE_GROUP = 4  # gathers per pass; each slice is padded to a multiple of SLICE * SLICE_GROUP
_slice_rows = make_slice_rows(SLICE, SLICE_GROUP)


@njit(inline="always")
def _readout_in_order(x, order, split, w_out, b_out, y):  # _readout of x[p] = unit order[p]
    for o in range(w_out.shape[0]):
        s = b_out[o]
        for k in range(split.shape[1] - 1):
            p0 = split[0, k] * SLICE
            for p in range(p0, p0 + split[1, k + 1] - split[1, k]):
                s += w_out[o, order[p]] * x[p]
        y[o] = s


@njit(cache=config.CACHE, fastmath=config.FASTMATH, error_model="numpy", nogil=True)
def esn_forward_rows(
    x_in, w_in_t, bias, sptr, sidx, sdat, order, split, leak, linear, x0, states, w_fb, w_out,
    b_out, y0, outputs, x_buf, counters, me, threads,
):  # fmt: skip
    """Series one after another, each step's units split over ``threads`` threads that meet
    at a barrier (_sync.barrier) once a step. Called once per thread, ``me`` = 0 .. threads-1,
    all at the same time; thread 0 writes ``outputs``.
        sptr:     [n_slices + 1] int64  W in sliced ELLPACK made for ``threads`` threads
        sidx:     [slots] uint32          (seqbench.models.esn.sliced_ell): position
        sdat:     [slots]                 p = s * SLICE + l holds unit order[p], and its j-th
        order:    [n_slices * SLICE]      nonzero is slot sptr[s] + j * SLICE + l; columns are
        split:    [2, threads + 1]        positions, padding points at the zero position
                  n_slices * SLICE; thread k runs slices split[0, k] .. split[0, k + 1] - 1
                  and units split[1, k] .. split[1, k + 1] - 1 (at its first positions)
        x_buf:    [2, n_slices * SLICE + 1] zeros: the state by position, double-buffered
                  (step t reads one, writes the other)
        counters: int64 [threads * _sync.STRIDE], zeros
    The input and the feedback arguments as in esn_forward_chunks; the others as
    esn_forward_csr. One core, N = 1000 at 10%: a product takes 27 us, against 34-35 us for
    the CSR rows (see make_slice_rows)."""
    B, T, N = states.shape
    keep = 1.0 - leak
    s_lo, s_hi = split[0, me], split[0, me + 1]
    p_lo = s_lo * SLICE
    p_hi = p_lo + split[1, me + 1] - split[1, me]
    pre = np.empty((s_hi - s_lo) * SLICE, dtype=x0.dtype)  # W x, by position from p_lo
    inp = np.empty(p_hi - p_lo, dtype=x0.dtype)
    if w_out is not None:
        y = np.empty(w_out.shape[0], dtype=x0.dtype)
    generation = 0
    cur = 0
    for b in range(B):
        # the previous series' last state (x_buf[cur]) may still be read by another thread's
        # readout, so the new series starts in the other buffer, read by nobody now
        cur = 1 - cur
        for p in range(p_lo, p_hi):
            x_buf[cur, p] = x0[b, order[p]]
        if w_out is not None:
            y[:] = y0[b]
        generation += 1
        barrier(counters, me, threads, generation)
        for t in range(T):
            x, x_new = x_buf[cur], x_buf[1 - cur]
            for p in range(p_lo, p_hi):  # read before this thread overwrites it (states is u_proj)
                inp[p - p_lo] = input_at(x_in, w_in_t, bias, b, t, order[p])
            if w_out is not None:
                for o in range(w_out.shape[0]):
                    for p in range(p_lo, p_hi):
                        inp[p - p_lo] += w_fb[order[p], o] * y[o]
            for s in range(s_lo, s_hi):
                _slice_rows(x, sidx, sdat, pre, (s - s_lo) * SLICE, sptr[s], sptr[s + 1])
            for p in range(p_lo, p_hi):
                v = keep * x[p] + leak * _activate(pre[p - p_lo] + inp[p - p_lo], linear)
                x_new[p] = v
                states[b, t, order[p]] = v
            generation += 1
            barrier(counters, me, threads, generation)
            cur = 1 - cur
            if w_out is not None:  # every thread needs y_t for its rows' next feedback
                _readout_in_order(x_new, order, split, w_out, b_out, y)
                if me == 0:
                    outputs[b, t] = y
