"""Numba CPU backend: one layer, one direction, over the kernels in seqbench.kernels.cpu.

Every function here takes batch-first arrays (B, T, F), does the time-independent GEMMs
(input projection, weight gradients, input gradient) with BLAS, and hands the recurrence to
the compiled kernels. Kernels are imported on first use so that ``import seqbench`` never
pays for numba.

Threads. The recurrence runs on ``get_num_threads()`` threads: the batch is cut into blocks
of rows and each thread runs one block through all T steps (``<cell>_forward_rows`` and
``<cell>_backward_rows``, which release the GIL), so threads never wait for each other inside
the time loop. The per-step product runs as register tiles inside the kernel
(kernels/cpu/_simd.py), or, above ``config.BLAS_MIN_MACS`` multiply-adds per block, as one
BLAS call per step with BLAS held to one thread: two thread pools taking turns inside a time
loop ran ~20x slower (DESIGN.md section 6). A per-step product of at least
``config.BLAS_THREADED_MACS`` runs as a single block instead, on BLAS's own threads. Both
thresholds are off by default (measured in kernels/config.py).

The time-independent GEMMs go through numpy's BLAS, held to one thread, with the rows of the
product split over seqbench's threads (``gemm``): an OpenBLAS thread spins for ~0.1 s after
each call, taking a core from the kernels that follow. numba's ``np.dot`` calls scipy's BLAS,
and the numpy and scipy wheels each bring an OpenBLAS: scipy's build (0.3.30) ran these GEMMs
3-13x slower than numpy's (0.3.31), e.g. (3200 x 512)^T (3200 x 128) 6.8 ms vs 2.3 ms, so
numpy's does them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import buffers


def _kernels(cell: str):
    return importlib.import_module(f"seqbench.kernels.cpu.{cell}")


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


def _blocks(B, K, N):
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


def _run(fn, blocks, blas, *args, per_block=None):
    """fn(*args, *[a[i] for a in per_block], lo, hi, blas) for every block i, one block per
    thread; per_block: arrays with one slice per block (partial sums)."""

    def call(i):
        extra = () if per_block is None else tuple(a[i] for a in per_block)
        lo, hi = blocks[i]
        return fn(*args, *extra, lo, hi, blas)

    if len(blocks) == 1:  # on this thread; BLAS, if used, keeps its own threads
        flushed(lambda: call(0))
        return
    calls = [lambda i=i: call(i) for i in range(len(blocks))]
    if not blas:  # the kernels make no BLAS call
        run_parallel(calls)
        return
    with _serial_blas():
        run_parallel(calls)


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


def _norms(part, B):  # (blocks, T) sums of ||dL/dh_t|| over each block's rows -> mean
    return part.sum(axis=0) / B


# ---------------------------------------------------------------- GEMMs


# A GEMM at least this big (multiply-adds) is split by rows over seqbench's threads; smaller
# ones run whole on the calling thread.
_SPLIT_GEMM_MACS = 1 << 18


def gemm(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) of 2-D arrays, C-contiguous, through numpy's BLAS on seqbench's threads.

    BLAS is held to one thread and the rows of the product are split over seqbench's pool
    instead: an OpenBLAS thread that has worked spins for ~0.1 s before it sleeps, and the
    recurrence kernels that come next lost up to 3x to spinners taking their cores (LSTM
    backward, B=32: 9.8 vs 3.4 ms a block).
    """
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = buffers.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    M = a.shape[0]
    n = min(get_num_threads(), M)
    if n == 1 or M * a.shape[1] * b.shape[1] < _SPLIT_GEMM_MACS:
        with _serial_blas():
            np.matmul(a, b, out=out)
        return out
    edges = [i * M // n for i in range(n + 1)]
    parts = list(zip(edges[:-1], edges[1:], strict=True))
    with _serial_blas():
        run_parallel([lambda i=i, j=j: np.matmul(a[i:j], b, out=out[i:j]) for i, j in parts])
    return out


@contextlib.contextmanager
def _serial_blas():
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


def _time_major(a):  # (B, T, F) -> C-contiguous (T, B, F)
    return buffers.contiguous(a.transpose(1, 0, 2))


def _project(x_tm, w, b=None):  # (T, B, I) @ (G, I)^T [+ (G,)] -> (T, B, G), one GEMM
    T, B, I = x_tm.shape
    out = gemm(x_tm.reshape(T * B, I), w, trans_b=True)
    if b is not None:
        out += b
    return out.reshape(T, B, w.shape[0])


def _input_side(x, w_ih, b_ih=None):
    """-> (x_tm, x_proj, x_in, w_ih_t): the input projection of all steps as one GEMM
    (x_proj, with b_ih if given), or, for small I, x and W_ih^T for the kernel to fuse."""
    x_tm = _time_major(x)  # also kept for dW_ih in backward
    fused = _fused_input(x, w_ih)
    x_proj = None if fused else _project(x_tm, w_ih, b_ih)
    x_in, w_ih_t = fused or (None, None)
    return x_tm, x_proj, x_in, w_ih_t


def _wgrad(d, inp):  # sum_t d_t^T inp_t: (T, B, G), (T, B, K) -> (G, K), one GEMM
    return gemm(d.reshape(-1, d.shape[2]), inp.reshape(-1, inp.shape[2]), trans_a=True)


def _wgrad_prev(d, seq, first):
    """sum_t d_t^T s_{t-1} with s_{-1} = first: (T, B, G), (T, B, K), (B, K) -> (G, K)."""
    g = gemm(d[0], first, trans_a=True)
    if d.shape[0] > 1:
        g += _wgrad(d[1:], seq[:-1])
    return g


def _input_grads(dx_proj, x_tm, p):
    """Gradients of the hoisted input projection: weight_ih, bias_ih and dL/dx."""
    g = _wx_grads(dx_proj, x_tm, p)
    return g["weight_ih"], dx_proj.sum(axis=(0, 1)), g["input"]


def _wx_grads(dx_proj, x_tm, p):
    """{"weight_ih": dL/dW_ih, "input": dL/dx (T, B, I)} from dL/d(x W_ih^T): two GEMMs."""
    T, B, G = dx_proj.shape
    dx = gemm(dx_proj.reshape(T * B, G), p["weight_ih"]).reshape(T, B, -1)
    return {"weight_ih": _wgrad(dx_proj, x_tm), "input": dx}


def _finish(grads, dx, dstate0, dh_norms):
    return grads, dx.transpose(1, 0, 2), dstate0, dh_norms


# ---------------------------------------------------------------- input and outputs


def _fused_input(x, w_ih):
    """Small inputs are projected inside the kernel: (x batch-first, W_ih^T), else None."""
    from seqbench.kernels import config

    if x.shape[2] > config.FUSE_INPUT_MAX:
        return None
    return np.ascontiguousarray(x), np.ascontiguousarray(w_ih.T)


def _bias_grads(db, dtype):  # (blocks, G) float64 partial sums -> (G,)
    return db.sum(axis=0).astype(dtype)


# ---------------------------------------------------------------- elman


def elman_forward(p, x, state0, opts):
    k = _kernels("elman")
    (h0,) = state0
    B, T, _ = x.shape
    H = p["weight_hh"].shape[0]
    dt = p["weight_hh"].dtype
    x_tm, x_proj, x_in, w_ih_t = _input_side(x, p["weight_ih"])  # b_ih goes in with b_hh
    h_seq = buffers.empty((T, B, H), dtype=dt)
    y = buffers.empty((B, T, H), dtype=dt)  # batch-first copy for the caller
    rec = buffers.empty((B, H), dtype=dt)
    relu = opts["nonlinearity"] == "relu"
    w_hh_t = np.ascontiguousarray(p["weight_hh"].T)
    bias = p["bias_hh"] + p["bias_ih"]
    blocks, blas = _blocks(B, H, H)
    _run(
        k.elman_forward_rows,
        blocks,
        blas,
        x_proj,
        x_in,
        w_ih_t,
        w_hh_t,
        bias,
        h0,
        relu,
        h_seq,
        y,
        rec,
    )
    cache = (x_tm, h0, h_seq, relu)
    return y, (h_seq[-1].copy(),), cache


def elman_backward(p, cache, dout, dstate_n):
    k = _kernels("elman")
    x_tm, h0, h_seq, relu = cache
    T, B, H = h_seq.shape
    dpre = buffers.empty_like(h_seq)
    dh = dstate_n[0].copy()  # dL/dh_t carried back through time; ends as dL/dh0
    blocks, blas = _blocks(B, H, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    db = np.zeros((len(blocks), H))
    _run(
        k.elman_backward_rows,
        blocks,
        blas,
        buffers.contiguous(dout),
        True,
        h_seq,
        p["weight_hh"],
        relu,
        dpre,
        dh,
        per_block=(part, db),
    )
    g = _wx_grads(dpre, x_tm, p)
    g["weight_hh"] = _wgrad_prev(dpre, h_seq, h0)
    g["bias_ih"] = _bias_grads(db, h_seq.dtype)
    g["bias_hh"] = g["bias_ih"].copy()
    dx = g.pop("input")
    return _finish(g, dx, (dh,), _norms(part, B))


# ---------------------------------------------------------------- lstm


def lstm_forward(p, x, state0, opts):
    k = _kernels("lstm")
    h0, c0 = state0
    B, T, _ = x.shape
    G, H = p["weight_hh"].shape
    dt = p["weight_hh"].dtype
    x_tm, x_proj, x_in, w_ih_t = _input_side(x, p["weight_ih"])  # b_ih goes in with b_hh
    gates = buffers.empty((T, B, G), dtype=dt)
    c_seq = buffers.empty((T, B, H), dtype=dt)
    h_seq = buffers.empty_like(c_seq)
    y = buffers.empty((B, T, H), dtype=dt)
    rec = buffers.empty((B, G), dtype=dt)
    w_hh_t = np.ascontiguousarray(p["weight_hh"].T)
    bias = p["bias_hh"] + p["bias_ih"]
    blocks, blas = _blocks(B, H, G)
    _run(
        k.lstm_forward_rows,
        blocks,
        blas,
        x_proj,
        x_in,
        w_ih_t,
        w_hh_t,
        bias,
        h0,
        c0,
        gates,
        c_seq,
        h_seq,
        y,
        rec,
    )
    cache = (x_tm, h0, c0, gates, c_seq, h_seq)
    return y, (h_seq[-1].copy(), c_seq[-1].copy()), cache


def lstm_backward(p, cache, dout, dstate_n):
    k = _kernels("lstm")
    x_tm, h0, c0, gates, c_seq, h_seq = cache
    T, B, G = gates.shape
    dpre = buffers.empty_like(gates)
    dh, dc = dstate_n[0].copy(), dstate_n[1].copy()  # carried back; end as dL/dh0, dL/dc0
    blocks, blas = _blocks(B, G, G // 4)
    part = np.zeros((len(blocks), T), dtype=gates.dtype)
    db = np.zeros((len(blocks), G))
    _run(
        k.lstm_backward_rows,
        blocks,
        blas,
        buffers.contiguous(dout),
        True,
        gates,
        c_seq,
        c0,
        p["weight_hh"],
        dpre,
        dh,
        dc,
        per_block=(part, db),
    )
    g = _wx_grads(dpre, x_tm, p)
    g["weight_hh"] = _wgrad_prev(dpre, h_seq, h0)
    g["bias_ih"] = _bias_grads(db, gates.dtype)
    g["bias_hh"] = g["bias_ih"].copy()
    dx = g.pop("input")
    return _finish(g, dx, (dh, dc), _norms(part, B))


# ---------------------------------------------------------------- gru


def gru_forward(p, x, state0, opts):
    k = _kernels("gru")
    (h0,) = state0
    B, T, _ = x.shape
    G, H = p["weight_hh"].shape
    dt = p["weight_hh"].dtype
    # b_ih goes with the input: the reset gate multiplies only W_hn h + b_hn
    x_tm, x_proj, x_in, w_ih_t = _input_side(x, p["weight_ih"], p["bias_ih"])
    gates = buffers.empty((T, B, 4 * H), dtype=dt)
    h_seq = buffers.empty((T, B, H), dtype=dt)
    y = buffers.empty((B, T, H), dtype=dt)
    rec = buffers.empty((B, G), dtype=dt)
    xrec = buffers.empty((B, G), dtype=dt) if x_proj is None else rec
    w_hh_t = np.ascontiguousarray(p["weight_hh"].T)
    blocks, blas = _blocks(B, H, G)
    _run(
        k.gru_forward_rows,
        blocks,
        blas,
        x_proj,
        x_in,
        w_ih_t,
        p["bias_ih"],
        w_hh_t,
        p["bias_hh"],
        h0,
        gates,
        h_seq,
        y,
        rec,
        xrec,
    )
    cache = (x_tm, h0, gates, h_seq)
    return y, (h_seq[-1].copy(),), cache


def gru_backward(p, cache, dout, dstate_n):
    k = _kernels("gru")
    x_tm, h0, gates, h_seq = cache
    T, B, H = h_seq.shape
    dx_proj = buffers.empty((T, B, 3 * H), dtype=h_seq.dtype)
    dh_proj = buffers.empty_like(dx_proj)
    dh = dstate_n[0].copy()  # dL/dh_t carried back through time; ends as dL/dh0
    direct = buffers.empty((B, H), dtype=h_seq.dtype)
    blocks, blas = _blocks(B, 3 * H, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    db_ih, db_hh = np.zeros((len(blocks), 3 * H)), np.zeros((len(blocks), 3 * H))
    _run(
        k.gru_backward_rows,
        blocks,
        blas,
        buffers.contiguous(dout),
        True,
        gates,
        h_seq,
        h0,
        p["weight_hh"],
        dx_proj,
        dh_proj,
        dh,
        direct,
        per_block=(part, db_ih, db_hh),
    )
    g = _wx_grads(dx_proj, x_tm, p)
    g["weight_hh"] = _wgrad_prev(dh_proj, h_seq, h0)
    g["bias_ih"] = _bias_grads(db_ih, h_seq.dtype)
    g["bias_hh"] = _bias_grads(db_hh, h_seq.dtype)
    dx = g.pop("input")
    return _finish(g, dx, (dh,), _norms(part, B))


# ---------------------------------------------------------------- jordan


def jordan_forward(p, x, state0, opts):
    k = _kernels("jordan")
    x_tm = _time_major(x)
    (y0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    T, B, H = x_proj.shape
    O = y0.shape[1]
    h_seq = buffers.empty_like(x_proj)
    y_seq = buffers.empty((T, B, O), dtype=x_proj.dtype)
    rec = buffers.empty((B, H), dtype=x_proj.dtype)
    w_yh_t = np.ascontiguousarray(p["weight_yh"].T)
    w_hy_t = np.ascontiguousarray(p["weight_hy"].T)
    blocks, blas = _blocks(B, O, H)  # both per-step products have O * H terms per row
    _run(
        k.jordan_forward_rows,
        blocks,
        blas,
        x_proj,
        w_yh_t,
        w_hy_t,
        p["bias_hy"],
        y0,
        h_seq,
        y_seq,
        rec,
    )
    cache = (x_tm, y0, h_seq, y_seq)
    return y_seq.transpose(1, 0, 2), (y_seq[-1].copy(),), cache


def jordan_backward(p, cache, dout, dstate_n):
    k = _kernels("jordan")
    x_tm, y0, h_seq, y_seq = cache
    T, B, H = h_seq.shape
    O = y0.shape[1]
    dy_tot = buffers.empty_like(y_seq)
    dpre = buffers.empty_like(h_seq)
    dy = dstate_n[0].copy()  # dL/dy_t carried back through time; ends as dL/dy0
    dh = buffers.empty((B, H), dtype=h_seq.dtype)
    blocks, blas = _blocks(B, O, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    _run(
        k.jordan_backward_rows,
        blocks,
        blas,
        _time_major(dout),
        h_seq,
        p["weight_yh"],
        p["weight_hy"],
        dy_tot,
        dpre,
        dy,
        dh,
        per_block=(part,),
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_tm, p)
    g["weight_yh"] = _wgrad_prev(dpre, y_seq, y0)
    g["weight_hy"] = _wgrad(dy_tot, h_seq)
    g["bias_hy"] = dy_tot.sum(axis=(0, 1))
    return _finish(g, dx, (dy,), _norms(part, B))


LAYERS = {
    "elman": (elman_forward, elman_backward),
    "jordan": (jordan_forward, jordan_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}
