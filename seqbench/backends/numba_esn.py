"""The reservoir on the CPU kernels (seqbench.kernels.cpu.esn): how a run is scheduled.

Dense W: one kernel call, subnormals flushed as numba_cpu's. Sparse W, at least
CHUNK_MIN_SERIES series: chunks of CHUNK series (sparse x dense, blocked CSR), one team of
threads a chunk at a time (_chunk_teams); fewer: one series at a time (sliced ELLPACK), its
rows split over the threads. A long run splits its steps over no more threads than the
machine's load leaves free (cpu_runtime.barrier_threads_now); the states are the same, bit for
bit, on any number of threads. The layouts are built on first use and kept in the handle until
the next load_state_dict. Kernels are imported on first use: ``import seqbench`` never pays
for numba.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import buffers, cpu_runtime
from .reservoir import KernelReady, ReservoirFunctions, kernel_arguments, project


class NumbaReservoir(KernelReady):
    def __init__(self, model):
        super().__init__(model)
        self.blocked = []  # blocked CSR of the batched kernel, one per thread, on first use
        self.sliced = {}  # sliced ELLPACK of the one-series kernel per thread count


def _kernels():
    from ..kernels.cpu import esn

    return esn


def run(h: NumbaReservoir, x, w_in_t, s0, free):
    """States (and free-run outputs) for the input x (B, T, K) through w_in_t (K, N)."""
    from ..kernels.config import FUSE_INPUT_MAX

    if h.csr is not None and x.shape[2] <= FUSE_INPUT_MAX:
        states = buffers.empty((x.shape[0], x.shape[1], h.hidden_size), h.dtype)
        inputs = (x, np.ascontiguousarray(w_in_t), h.params["bias_hh_l0"])
        return run_kernels(h, inputs, states, s0, free)
    u_proj = project(h, x, w_in_t)
    # states written in place: the kernels read each u_proj[b, t] before writing it
    return run_kernels(h, (u_proj, None, None), u_proj, s0, free)


def run_kernels(h: NumbaReservoir, inputs, states, s0, free):
    """inputs: (x, w_in_t, bias) as kernels.cpu.esn.input_at takes them; w_in_t None
    (x = u_proj, projected) except on the sparse kernels."""
    kernels = _kernels()
    common, outputs = kernel_arguments(h, states, s0, free)
    if h.csr is None:  # BLAS on this thread: its own threads spin ~0.1 s after their last call
        with cpu_runtime.serial_blas():
            cpu_runtime.flushed(lambda: kernels.esn_forward(inputs[0], h.w_hh_t, *common))
    else:
        _run_sparse(h, kernels, inputs, common)
    return states, outputs


def _run_sparse(h, kernels, inputs, common):
    """At least CHUNK_MIN_SERIES series: chunks of CHUNK series (sparse x dense), one team
    of threads a chunk at a time (see _chunk_teams); fewer: one series at a time, its
    rows split over the threads."""
    states = common[3]
    if common[5].shape[0] == 0:  # no output feedback: compiled out of the kernels
        common = (*common[:4], *kernels._NO_FEEDBACK)
    B, _, N = states.shape
    threads = cpu_runtime.get_num_threads()
    if B >= CHUNK_MIN_SERIES:
        _run_chunks(h, kernels, inputs, common, threads)
        return
    from ..kernels.cpu._sync import STRIDE

    # a barrier per step costs ~1 us: worth it only for steps of a few thousand nonzeros
    threads = _barrier_threads(threads, h.csr[1].size)
    if _checks_load(states, h.csr[1].size):
        threads = cpu_runtime.barrier_threads_now(threads)
    if states is not inputs[0]:  # a fresh array: fault its pages in on this thread, as
        states.fill(0.0)  # a page fault in the loop stalls every thread at the barrier
        # (one series, N = 1000, T = 10^4: 61 -> 42 us a step, the fill included)
    if threads not in h.sliced:
        w = h.params["weight_hh_l0"]
        h.sliced[threads] = sliced_ell(w, kernels.SLICE, kernels.SLICE_GROUP, threads)
    sliced = h.sliced[threads]
    x_buf = np.zeros((2, sliced[3].size + 1), dtype=h.dtype)  # + zero position
    counters = np.zeros(threads * STRIDE, dtype=np.int64)
    cpu_runtime.run_group(
        kernels.esn_forward_rows, threads, *inputs, *sliced, *common, x_buf, counters
    )


# Runs of at least this many nonzero-steps (series x steps x nnz; ~25 ms on one core) read
# the machine's load before they split each step over threads that meet at a barrier: the
# reading (~1 ms, cpu_runtime.runnable_others) is then a small part of the run.
_LOAD_CHECK_WORK = 1 << 26


def _checks_load(states, nnz):
    B, T, _ = states.shape
    return B * T * nnz >= _LOAD_CHECK_WORK


def _run_chunks(h, kernels, inputs, common, threads):
    """Teams of threads, each its own contiguous chunks (_chunk_teams); a team's members
    split every step's units at nonzero-balanced, 8-aligned edges."""
    from ..kernels.cpu._simd import empty_aligned
    from ..kernels.cpu._sync import STRIDE

    states = common[3]
    B, _, N = states.shape
    teams, size = _chunk_teams(B, kernels.CHUNK, threads, h.csr[1].size)
    if size > 1 and _checks_load(states, h.csr[1].size):  # members wait for each other
        size = max(1, min(size, cpu_runtime.barrier_threads_now(teams * size) // teams))
    chunks = -(-B // kernels.CHUNK)
    edges = [min(B, i * chunks // teams * kernels.CHUNK) for i in range(teams + 1)]
    rows = _unit_ranges(h.csr[0], size)
    calls = []
    blocked = blocked_copies(h, kernels.GROUP, teams)
    for w, lo, hi in zip(blocked, edges[:-1], edges[1:], strict=True):
        x_pair = empty_aligned(2 * (N + 1), kernels.CHUNK, h.dtype)
        x_pair[:] = 0.0
        counters = np.zeros(size * STRIDE, dtype=np.int64)
        team = (*inputs, *w, *common, lo, hi, x_pair, rows, counters)
        calls += [partial(kernels.esn_forward_chunks, *team, me, size) for me in range(size)]
    if size == 1:  # no barriers: the teams need not all start at once
        cpu_runtime.run_parallel(calls)
    else:
        cpu_runtime.run_group(lambda me, _: calls[me](), len(calls))


def blocked_copies(h, group, threads):
    """The blocked W for each of ``threads`` threads: a copy of its own for each while W
    is small enough to sit in a core's L2, where every step reads all of it. Two threads
    on one shared W ran 5-11% slower than on their own copies on this 2-vCPU VM (median
    of 20 interleaved runs, B = 32, N = 1000: 4.90-5.31 against 4.72-4.74 us per
    series-step, 14 and 18 of 20 pairs faster); a larger W streams from L3 anyway and is
    shared."""
    if not h.blocked:
        h.blocked.append(blocked_csr(h.params["weight_hh_l0"], group))
    first = h.blocked[0]
    if sum(a.nbytes for a in first) > _OWN_COPY_BYTES:
        return [first] * threads
    while len(h.blocked) < threads:
        h.blocked.append(tuple(a.copy() for a in first))
    return h.blocked[:threads]


# Fewest series that run as a chunk (sparse x dense) rather than one by one: a chunk step costs
# about as much for 1 as for 16 series, ~3.4x one series' step on one thread (N = 1000, 10%:
# 134 against 37-41 us), so from 4 series on the chunk is cheaper per series.
CHUNK_MIN_SERIES = 4


def _barrier_threads(threads, nnz):
    """Threads that may split one step of W's ``nnz`` nonzeros and meet at a barrier once a
    step (~1 us): each keeps at least 4096 nonzeros."""
    return max(1, min(threads, nnz // 4096))


def _chunk_teams(batch, chunk, threads, nnz):
    """(teams, members a team) for ``batch`` series in chunks of ``chunk`` on ``threads``
    threads: a team a chunk while there are fewer chunks than threads, the spare threads
    splitting each chunk's units (_barrier_threads)."""
    chunks = -(-batch // chunk)
    teams = min(threads, chunks)
    return teams, _barrier_threads(threads // teams, nnz)


def _unit_ranges(indptr, parts):
    """int64 [parts + 1] unit edges with about equal nonzeros each, on multiples of 8 (a range
    then writes whole 64-byte lines of a float64 ``states`` row wherever the row starts on one)."""
    N = indptr.size - 1
    want = np.arange(1, parts) * (int(indptr[-1]) / parts)
    inner = (np.searchsorted(indptr, want) + 4) // 8 * 8
    return np.concatenate([[0], np.clip(inner, 0, N), [N]]).astype(np.int64)


# Columns of W per block of the batched kernel: the x rows a block reads, 256 x 16 float64
# = 32 KB, stay in L1 while every row of W takes its nonzeros from that block.
COLUMN_BLOCK = 256
# Largest blocked W copied once per thread (see blocked_copies): about a core's L2.
_OWN_COPY_BYTES = 2 << 20


def blocked_csr(w, group, block=COLUMN_BLOCK):
    """W (CSR, N x N, sorted indices) as (bptr [n_blocks, N + 1], bidx, bdat): for each block
    of ``block`` columns, each row's nonzeros in it, padded with zeros at column N (a state row
    that stays 0) to a multiple of ``group``."""
    N = w.shape[0]
    n_blocks = max(1, -(-N // block))
    rows = np.repeat(np.arange(N), np.diff(w.indptr))
    segment = (w.indices // block).astype(np.int64) * N + rows  # block-major, then row
    order = np.argsort(segment, kind="stable")  # keeps each row's columns sorted
    counts = np.bincount(segment, minlength=n_blocks * N)
    starts = np.concatenate(([0], np.cumsum(counts)))
    offsets = np.concatenate(([0], np.cumsum(-(-counts // group) * group)))
    seg = segment[order]
    pos = offsets[seg] + np.arange(seg.size) - starts[seg]
    bidx = np.full(offsets[-1], N, dtype=np.uint32)
    bdat = np.zeros(offsets[-1], dtype=w.data.dtype)
    bidx[pos] = w.indices[order]
    bdat[pos] = w.data[order]
    bptr = np.stack([offsets[c * N : c * N + N + 1] for c in range(n_blocks)]).astype(np.uint32)
    return bptr, bidx, bdat


def sliced_ell(w, lanes, group, parts):
    """W (CSR, N x N, sorted indices) in sliced ELLPACK for esn_forward_rows run on ``parts``
    threads: (sptr, sidx, sdat, order, split).

    The units are cut into ``parts`` contiguous ranges of about equal nonzeros, one a thread,
    so that each thread writes its own stretch of every row of ``states`` (with the ranges
    interleaved, both threads wrote every cache line of a row). Within a range the units
    are sorted by their number of nonzeros, longest first, and cut into slices of ``lanes``,
    so that a slice's rows have nearly the same length: 0.7% padding at N = 1000, 10% (13%
    for units in their own order). Each slice is padded to a multiple of ``group`` slots
    with weight 0 at the zero position ``n_slices * lanes``. Range k holds slices
    split[0, k] .. split[0, k + 1] - 1 and units split[1, k] .. split[1, k + 1] - 1, at the
    first positions of its slices; order[p] is the unit at position p (N at the positions
    past a range's units, which nothing reads)."""
    N = w.shape[0]
    lengths = np.diff(w.indptr).astype(np.int64)
    cum = np.concatenate(([0], np.cumsum(lengths)))
    units = np.searchsorted(cum, np.arange(parts + 1) * cum[-1] // parts)
    units[0], units[-1] = 0, N
    slices = np.concatenate(([0], np.cumsum(-(-np.diff(units) // lanes))))
    n_slices = slices[-1]
    order = np.full(n_slices * lanes, N, dtype=np.int64)
    for k in range(parts):
        own = np.arange(units[k], units[k + 1])
        own = own[np.argsort(-lengths[own], kind="stable")]
        order[slices[k] * lanes : slices[k] * lanes + own.size] = own
    real = order < N
    position = np.empty(N, dtype=np.int64)
    position[order[real]] = np.flatnonzero(real)
    by_position = np.zeros(order.size, dtype=np.int64)
    by_position[real] = lengths[order[real]]
    slots = -(-by_position.reshape(n_slices, lanes).max(axis=1) // group) * group
    sptr = np.concatenate(([0], np.cumsum(slots * lanes)))
    sidx = np.full(sptr[-1], n_slices * lanes, dtype=np.uint32)
    sdat = np.zeros(sptr[-1], dtype=w.data.dtype)
    p = np.repeat(position, lengths)  # position of each nonzero's row, in CSR order
    j = np.arange(w.nnz) - np.repeat(cum[:-1], lengths)
    slot = sptr[p // lanes] + j * lanes + p % lanes
    sidx[slot] = position[w.indices]
    sdat[slot] = w.data
    return sptr, sidx, sdat, order.astype(np.uint32), np.stack([slices, units])


RESERVOIR = ReservoirFunctions(prepare=NumbaReservoir, run=run)
