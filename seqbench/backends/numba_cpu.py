"""Numba CPU backend: one layer, one direction, over the kernels in seqbench.kernels.cpu.

One forward and one backward serve every cell, reading the cell's declaration in
cell_kernels.py. They take batch-first arrays (B, T, F), do the time-independent GEMMs (input
projection, weight gradients, input gradient) with BLAS, and hand the recurrence to the
compiled ``<cell>_forward_rows`` / ``<cell>_backward_rows`` kernels, one block of batch rows
per thread (cpu_runtime.py says how threads, BLAS and subnormals are managed). Kernels are
imported on first use so that ``import seqbench`` never pays for numba.
"""

from __future__ import annotations

import functools
import importlib
from typing import NamedTuple

import numpy as np

from . import buffers
from .cell_kernels import CELLS, GradientOps, assemble_gradients, layer_dims
from .cpu_runtime import block_means, gemm, row_blocks, run_blocks


@functools.cache
def _kernel(module: str, name: str):  # ("lstm", "forward_rows") -> lstm_forward_rows
    return getattr(importlib.import_module(f"seqbench.kernels.cpu.{module}"), f"{module}_{name}")


def _time_major(a):  # (B, T, F) -> C-contiguous (T, B, F)
    return buffers.contiguous(a.transpose(1, 0, 2))


def _onehot():
    from seqbench.kernels.cpu import onehot

    return onehot


def _one_hot_rows(x_tm):
    """(T*B,) the column of each row's 1.0 (-1: a zero row) if x (T, B, I) is one-hot, else
    None (kernels/cpu/onehot.py; a dense x is told apart at its first element)."""
    idx = _onehot().one_hot_index(x_tm.reshape(-1, x_tm.shape[2]))
    return idx if idx.size else None


def _project(x_tm, w, b=None, idx=None):
    """(T, B, I) @ (G, I)^T [+ (G,)] -> (T, B, G): one GEMM, or for one-hot x (idx) a gather
    of W_ih^T's rows."""
    T, B, I = x_tm.shape
    if idx is None:
        out = gemm(x_tm.reshape(T * B, I), w, trans_b=True)
        if b is not None:
            out += b
        return out.reshape(T, B, w.shape[0])
    out = buffers.empty((T * B, w.shape[0]), dtype=np.result_type(x_tm, w))
    _onehot().gather_rows(np.ascontiguousarray(w.T), idx, b, out)
    return out.reshape(T, B, w.shape[0])


def _input_side(x, w_ih, b_ih=None, fusable=True):
    """-> (x_tm, idx, x_proj, x_in, w_ih_t): the input projection of all steps (x_proj, with
    b_ih if given) as one GEMM, or a gather for one-hot x (idx: _one_hot_rows, which backward
    also reads for dW_ih); or, for small I, x and W_ih^T for the kernel to fuse."""
    x_tm = _time_major(x)  # also kept for dW_ih in backward
    idx = _one_hot_rows(x_tm)
    fused = fusable and _fused_input(x, w_ih)
    x_proj = None if fused else _project(x_tm, w_ih, b_ih, idx)
    x_in, w_ih_t = fused or (None, None)
    return x_tm, idx, x_proj, x_in, w_ih_t


def _wgrad(d, inp):
    """sum_t d_t^T inp_t: (T, B, G), (T, B, K) -> (G, K), one GEMM; d may be a range of a
    buffer's columns (its rows then stride over the others, which BLAS reads in place)."""
    return gemm(d.reshape(-1, d.shape[2]), inp.reshape(-1, inp.shape[2]), trans_a=True)


def _wgrad_prev(d, seq, first):
    """sum_t d_t^T s_{t-1} with s_{-1} = first: (T, B, G), (T, B, K), (B, K) -> (G, K)."""
    g = gemm(d[0], first, trans_a=True)
    if d.shape[0] > 1:
        g += _wgrad(d[1:], seq[:-1])
    return g


# ---------------------------------------------------------------- input and outputs


def _fused_input(x, w_ih):
    """Small inputs are projected inside the kernel: (x batch-first, W_ih^T), else None."""
    from seqbench.kernels import config

    if x.shape[2] > config.FUSE_INPUT_MAX:
        return None
    return np.ascontiguousarray(x), np.ascontiguousarray(w_ih.T)


def _fused_input_grad(cell, v, blocks, G, dt):
    """Sets v["x_fused"] for a kernel that sums W_ih's gradient itself: the time-major input
    where it is dense and small (the forward fused its projection), else an empty (T, B, 0)
    (one-hot inputs keep their scatter). -> the per-block partials of dW_ih^T, (blocks, I, G)
    (I = 0 when unused; v["weight_ih.partial"] then None), or () for a cell without it."""
    if not cell.fused_input_grad:
        return ()
    from seqbench.kernels import config

    x_tm = v["x_tm"]
    T, B, I = x_tm.shape
    used = v["x_idx"] is None and I <= config.FUSE_INPUT_MAX
    v["x_fused"] = x_tm if used else np.empty((T, B, 0), dtype=dt)
    partial = np.zeros((blocks, I if used else 0, G), dtype=dt)
    v["weight_ih.partial"] = partial if used else None
    return (partial,)


def _bias_grads(db, dtype):  # (blocks, G) float64 partial sums -> (G,)
    return db.sum(axis=0).astype(dtype)


# ---------------------------------------------------------------- one adapter for every cell


class _Plan(NamedTuple):
    """What the CPU adapter reads off one cell's declaration, once at import."""

    cell: object
    fold_bias: bool  # the kernel adds bias_ih with bias_hh ("bias"), so x_proj leaves it out
    writes_y: bool  # the kernel also writes the output batch-first ("y")
    dout_batch_first: bool  # backward reads dout batch-first ("batch_first")
    scratch: dict  # forward scratch when the kernel projects the input itself
    scratch_projected: dict  # ... and when x_proj comes projected: no fused-only scratch


def _plan(cell):
    fw, rows = cell.forward, cell.forward.rows_args
    projected = {k: s for k, s in fw.scratch.items() if k not in fw.fused_only}
    return _Plan(
        cell, "bias" in rows, "y" in rows, "batch_first" in cell.backward.rows_args,
        fw.scratch, projected,
    )  # fmt: skip


def _allocate(table, dims, dtype, v):
    for name, shape in table.items():
        v[name] = buffers.empty(shape(dims), dtype=dtype)


def forward(plan, p, x, state0, opts):
    cell = plan.cell
    fw, args = cell.forward, cell.forward.rows_args
    B, T, _ = x.shape
    dims = layer_dims(cell, p, B, T, state0)
    dt = p["weight_ih"].dtype
    v = dict(p)  # every argument by its declared name (cell_kernels.py)
    v.update(zip(cell.initial, state0, strict=True))
    v.update(cell.options(opts))
    x_tm, idx, v["x_proj"], v["x"], v["weight_ih.T"] = _input_side(
        x, p["weight_ih"], None if plan.fold_bias else p["bias_ih"], cell.fused_input
    )
    for name, param in args.transposed:
        if name not in v:  # weight_ih.T: the fused input's, or None
            v[name] = np.ascontiguousarray(p[param].T)
    if plan.fold_bias:
        v["bias"] = p["bias_hh"] + p["bias_ih"]
    _allocate(fw.buffers, dims, dt, v)
    if plan.writes_y:
        v["y"] = buffers.empty((B, T, dims["O"]), dtype=dt)
    if v["x_proj"] is None:
        _allocate(plan.scratch, dims, dt, v)
    else:  # the kernel never touches the fused input's scratch: another stands in
        _allocate(plan.scratch_projected, dims, dt, v)
        for name, stand_in in fw.fused_only.items():
            v[name] = v[stand_in]
    blocks, blas = row_blocks(B, *cell.product(dims))
    run_blocks(_kernel(cell.module, "forward_rows"), blocks, blas, *args.pick(v))
    seqs = cell.pick_sequences(v)
    y = v["y"] if plan.writes_y else seqs[0].transpose(1, 0, 2)
    cache = dict(zip(fw.keep, fw.pick_keep(v), strict=True))
    cache["x_tm"], cache["x_idx"] = x_tm, idx
    return y, tuple([s[-1].copy() for s in seqs]), cache


def backward(plan, p, cache, dout, dstate_n, need_dx=True):
    cell = plan.cell
    bw, args = cell.backward, cell.backward.rows_args
    v = dict(cache, need_dx=need_dx)
    v.update(p)
    T, B, _ = v["x_tm"].shape
    dims = layer_dims(cell, p, B, T, dstate_n)
    dt = p["weight_ih"].dtype
    _allocate(bw.buffers, dims, dt, v)
    for name, d in zip(cell.grads_out, dstate_n, strict=True):
        v[name] = d.copy()  # dL/d(final state) in, carried back, dL/d(state0) out
    _allocate(bw.scratch, dims, dt, v)
    v["dout"] = buffers.contiguous(dout) if plan.dout_batch_first else _time_major(dout)
    v["batch_first"] = True
    blocks, blas = row_blocks(B, *cell.product_back(dims))
    part = np.zeros((len(blocks), T), dtype=dt)  # per block: sum over rows of ||dL/dh_t||
    sums = v["partial_sums"] = {n: np.zeros((len(blocks), v[n].shape[2])) for n in bw.sums}
    wgrad = _fused_input_grad(cell, v, len(blocks), dims["G"], dt)
    run_blocks(
        _kernel(cell.module, "backward_rows"),
        blocks,
        blas,
        *args.pick(v),
        per_block=(part, *sums.values(), *wgrad),
    )
    g, dx = assemble_gradients(cell, _OPS, v, p, dims)
    dx = None if dx is None else dx.transpose(1, 0, 2)
    return g, dx, cell.pick_grads_out(v), block_means(part, B)


# ---------------------------------------------------------------- weight gradients


def _input_grads(v, p, d):
    """weight_ih, bias_ih and dL/dx (T, B, I) from v[d] = dL/d(x W_ih^T): two GEMMs (dL/dx:
    None where v["need_dx"] is False)."""
    dx_proj = v[d]
    T, B, G = dx_proj.shape
    dx = None
    if v["need_dx"]:
        dx = gemm(dx_proj.reshape(T * B, G), p["weight_ih"]).reshape(T, B, -1)
    wgrad = _input_wgrad(dx_proj, v["x_tm"], v["x_idx"], v.get("weight_ih.partial"))
    return wgrad, _column_sums(v, d), dx


def _input_wgrad(d, x_tm, idx, partial=None):
    """dW_ih = sum_t d_t^T x_t: the kernel's per-block partials of its transpose where it
    summed them (``partial``), else one GEMM, or for one-hot x (idx) a scatter of d's rows."""
    if partial is not None:
        return np.ascontiguousarray(partial.sum(axis=0).T)
    if idx is None:
        return _wgrad(d, x_tm)
    T, B, G = d.shape
    w_t = buffers.empty((x_tm.shape[2], G), dtype=d.dtype)
    _onehot().scatter_rows(d.reshape(T * B, G), idx, w_t)
    return np.ascontiguousarray(w_t.T)


def _column_sums(v, name, cols=None):
    """Column sums of v[name] (its columns ``cols`` only, where given): from the kernel's
    per-block float64 partial sums where it kept them, else by numpy. A buffer is summed
    once; what a later request, or a part of the columns, gets is a copy, so that no two
    gradients share memory (bias_ih and bias_hh of one buffer)."""
    key = f"{name}.sums"
    fresh = key not in v
    if fresh:
        partial = v["partial_sums"].get(name)
        sums = v[name].sum(axis=(0, 1)) if partial is None else _bias_grads(partial, v[name].dtype)
        v[key] = sums
    s = v[key] if cols is None else v[key][cols]
    return s if fresh and cols is None else s.copy()


def _columns(d, cols):  # (T, B, G) -> its columns cols, a view (None: d)
    return d if cols is None else d[..., cols]


def _stack(blocks):  # [(n_i, ...)] -> (sum of n_i, ...): the rows of the blocks in order
    if len(blocks) == 1:
        return blocks[0]
    out = buffers.empty((sum(len(b) for b in blocks), *blocks[0].shape[1:]), blocks[0].dtype)
    return np.concatenate(blocks, out=out)


_OPS = GradientOps(
    _input_grads,
    lambda d, cols, seq, first: _wgrad_prev(_columns(d, cols), seq, first),
    lambda d, cols, seq: _wgrad(_columns(d, cols), seq),
    _column_sums,
    _stack,
)

LAYERS = {
    name: (functools.partial(forward, plan), functools.partial(backward, plan))
    for name, plan in ((name, _plan(cell)) for name, cell in CELLS.items())
}
