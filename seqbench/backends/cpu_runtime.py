"""The CPU runtime every numba kernel runs on: seqbench's thread pool, BLAS held to one
thread, subnormals flushed, row blocks, and the GEMMs of the time-independent work.

Threads. A recurrence runs on ``get_num_threads()`` threads: the batch is cut into blocks
of rows (``row_blocks``) and each thread runs one block through all T steps
(``run_blocks``; the ``*_rows`` kernels release the GIL), so threads never wait for each
other inside the time loop. The per-step product runs as register tiles inside the kernel
(kernels/cpu/_simd.py), or, above ``config.BLAS_MIN_MACS`` multiply-adds per block, as one
BLAS call per step with BLAS held to one thread: two thread pools taking turns inside a time
loop ran ~20x slower (numba's OpenMP pool against OpenBLAS's, on the first prototypes). A
per-step product of at least ``config.BLAS_THREADED_MACS`` runs as a single block instead, on
BLAS's own threads. Both thresholds are off by default (measured in kernels/config.py).
Kernels whose threads meet at a barrier every step (the reservoir's) run through
``run_group``, on no more threads than the machine's load leaves free
(``barrier_threads_now``): a group runs at its slowest member's pace, and a member sharing its
core with a busy process waits out that process's time slices. One series, N = 1000, T = 10^4
on 2 vCPUs at load 5-8: one thread 0.40-0.99 s, two threads at the yielding barrier 0.45-1.06 s.

The time-independent GEMMs go through numpy's BLAS, held to one thread, with the rows of the
product split over seqbench's threads (``gemm``): an OpenBLAS thread spins for ~0.1 s after
each call, taking a core from the kernels that follow. numba's ``np.dot`` calls scipy's BLAS,
and the numpy and scipy wheels each bring an OpenBLAS: scipy's build (0.3.30) ran these GEMMs
3-13x slower than numpy's (0.3.31), e.g. (3200 x 512)^T (3200 x 128) 6.8 ms vs 2.3 ms, so
numpy's does them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import buffers

# ---------------------------------------------------------------- threads

_THREADS = {"n": None, "pool": None}


def set_num_threads(n: int | None = None) -> int:
    """Threads the recurrence kernels use (None: SEQBENCH_THREADS, else every usable CPU)."""
    from seqbench.kernels import config

    if n is None:
        n = config.THREADS or _cpus()
    n = max(1, int(n))
    if n != _THREADS["n"]:
        old = _THREADS["pool"]
        _THREADS.update(n=n, pool=ThreadPoolExecutor(n - 1, "seqbench") if n > 1 else None)
        if old is not None:
            old.shutdown(wait=False)
    return n


def get_num_threads() -> int:
    return _THREADS["n"] or set_num_threads()


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def threads_beside_load(threads: int, cpus: int, others: int) -> int:
    """Threads a barrier-bound group should use when ``others`` runnable tasks that are not
    this process's share the machine's ``cpus`` CPUs: no more than the CPUs the others leave
    free, and at least one. A group whose threads meet every step runs only as fast as its
    slowest member, and a member that shares its core with another task waits out that
    task's time slices, holding up the whole group."""
    return max(1, min(threads, cpus - max(0, others)))


def runnable_others(samples: int = 3, gap_s: float = 2e-4) -> int | None:
    """Runnable tasks other than the calling thread, the least of a few readings of the
    kernel's run-queue count (/proc/loadavg's 4th field) ``gap_s`` apart: a task counted in
    every reading is busy, not passing through. None where the count cannot be read."""
    least = None
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        least = running if least is None else min(least, running)
    return least - 1  # this thread is running while it reads


_LOAD = {"at": -1.0, "others": None}
_LOAD_FRESH_S = 1.0  # a reading serves the calls of the next second


def barrier_threads_now(threads: int) -> int:
    """``threads`` cut to what the machine's current load leaves free (threads_beside_load),
    read at most once a second; ``threads`` where the load cannot be read."""
    if threads <= 1:
        return threads
    now = time.monotonic()
    if now - _LOAD["at"] > _LOAD_FRESH_S:
        _LOAD.update(at=now, others=runnable_others())
    if _LOAD["others"] is None:
        return threads
    return threads_beside_load(threads, os.cpu_count() or threads, _LOAD["others"])


_BLAS = []  # [threadpoolctl controller of the BLAS libraries, or None]


def _blas_controller():
    if not _BLAS:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # no threadpoolctl: kernels still run, BLAS threads unmanaged
            _BLAS.append(None)
    return _BLAS[0]


def row_blocks(B, K, N):
    """Row blocks [(lo, hi), ...] and the BLAS choice for a recurrence whose per-step product
    is (B x K) @ (K x N). Block edges fall on multiples of 8 rows (the register tile's height,
    kernels/cpu/_simd.py) when every thread gets at least 8."""
    from seqbench.kernels import config
    from seqbench.kernels.cpu._common import use_blas

    n = min(get_num_threads(), B)
    if n == 1 or B * K * N >= config.BLAS_THREADED_MACS:
        return [(0, B)], use_blas.py_func(B, K, N)
    q = 8 if B >= 8 * n else 1
    edges = sorted({0, B, *(min(B, (i * B // n + q - 1) // q * q) for i in range(1, n))})
    blocks = list(zip(edges[:-1], edges[1:], strict=True))
    rows = max(hi - lo for lo, hi in blocks)
    return blocks, use_blas.py_func(rows, K, N)


def run_blocks(fn, blocks, blas, *args, per_block=None):
    """fn(*args, *[a[i] for a in per_block], lo, hi, blas) for every block i, one block per
    thread; per_block: arrays with one slice per block (partial sums)."""

    def call(i):
        extra = () if per_block is None else tuple(a[i] for a in per_block)
        lo, hi = blocks[i]
        return fn(*args, *extra, lo, hi, blas)

    t0 = time.perf_counter()
    if len(blocks) == 1:  # on this thread; BLAS, if used, keeps its own threads
        flushed(lambda: call(0))
    else:
        calls = [lambda i=i: call(i) for i in range(len(blocks))]
        with serial_blas() if blas else contextlib.nullcontext():
            run_parallel(calls)
    _charge(fn.__name__, t0)


# ---------------------------------------------------------------- where the time goes

_PHASES = []  # the recorder of the innermost active ``phases()``, if any


@contextlib.contextmanager
def phases():
    """Seconds spent, while the block runs, in each recurrence kernel (by its name, e.g.
    ``lstm_backward_rows``) and in ``gemm``, summed over calls: ``seqbench bench
    --roofline``'s profile of a train step. Outside such a block the cost is one list test
    per kernel or GEMM call."""
    rec = {}
    _PHASES.append(rec)
    try:
        yield rec
    finally:
        _PHASES.remove(rec)


def _charge(name, t0):
    if _PHASES:
        rec = _PHASES[-1]
        rec[name] = rec.get(name, 0.0) + time.perf_counter() - t0


def run_parallel(calls) -> None:
    """Run the callables at once: the first on this thread, the others on the pool (one
    after another here if threads were set to 1 meanwhile)."""
    pool = _THREADS["pool"]
    if pool is None:
        for fn in calls:
            flushed(fn)
        return
    futures = [pool.submit(flushed, fn) for fn in calls[1:]]
    flushed(calls[0])
    for f in futures:
        f.result()


def flushed(fn):
    """fn() with subnormals flushed to zero on this thread, as the kernels expect
    (kernels/cpu/_fpenv.py: saturated gates made them, at ~100 cycles an instruction)."""
    from seqbench.kernels.cpu._fpenv import flush_denormals, restore

    old = flush_denormals()
    try:
        return fn()
    finally:
        restore(old)


_GROUP = threading.Lock()


def run_group(fn, threads: int, *args) -> None:
    """fn(*args, me, threads) for me = 0 .. threads-1, all running at the same time: for
    kernels whose threads meet at a barrier every step. One group at a time, so that a group
    never spins waiting for a pool thread that another group holds."""
    threads = min(threads, get_num_threads())
    if threads == 1:
        fn(*args, 0, 1)
        return
    with _GROUP:
        run_parallel([lambda me=me: fn(*args, me, threads) for me in range(threads)])


def block_means(part, B):  # (blocks, T) sums of ||dL/dh_t|| over each block's rows -> mean
    return part.sum(axis=0) / B


# ---------------------------------------------------------------- GEMMs


# A GEMM at least this big (multiply-adds) is split by rows over seqbench's threads; smaller
# ones run whole on the calling thread: handing half to a pool thread costs 80-200 us when that
# thread's vCPU has gone idle. Timed inside train steps (the pool thread just back from the
# recurrence kernels), 2 threads, Intel EMR 2-vCPU VM, three thresholds interleaved, medians
# of 23 steps, ms: LSTM 1,1000,1,64 (dW_hh 16M MACs) 4.12 / 3.91 / 4.00 at 2^18 / 2^25 /
# 2^27; GRU 32,100,10,128 9.61 / 9.27 / 9.65; Elman 4.03 / 3.85 / 4.35; whole steps: copy-task
# GRU 10.57 / 10.29 / 11.24, char-lm Elman 19.09 / 18.47 / 20.80. (GEMMs timed alone after
# an idle pause favour one thread up to ~0.1 G MACs: that measures the idle wake-up.)
_SPLIT_GEMM_MACS = 1 << 25


def gemm(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) of 2-D arrays, C-contiguous, through numpy's BLAS on seqbench's threads.

    BLAS is held to one thread and the rows of the product are split over seqbench's pool
    instead: an OpenBLAS thread that has worked spins for ~0.1 s before it sleeps, and the
    recurrence kernels that come next lost up to 3x to spinners taking their cores (LSTM
    backward, B=32: 9.8 vs 3.4 ms a block).
    """
    t0 = time.perf_counter()
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = buffers.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    M = a.shape[0]
    n = min(get_num_threads(), M)
    with serial_blas():
        if n == 1 or M * a.shape[1] * b.shape[1] < _SPLIT_GEMM_MACS:
            np.matmul(a, b, out=out)
        else:
            edges = [i * M // n for i in range(n + 1)]
            parts = zip(edges[:-1], edges[1:], strict=True)
            run_parallel([lambda i=i, j=j: np.matmul(a[i:j], b, out=out[i:j]) for i, j in parts])
    _charge("gemm", t0)
    return out


@contextlib.contextmanager
def serial_blas():
    """BLAS held to the calling thread (seqbench's threads do the parallel work). Straight
    through threadpoolctl's per-library controllers: its ``limit`` context rebuilds its
    bookkeeping on every use (25 us against 11 us a GEMM here)."""
    ctl = _blas_controller()
    libs = [] if ctl is None else ctl.lib_controllers
    old = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, old, strict=True):
            lib.set_num_threads(n)
