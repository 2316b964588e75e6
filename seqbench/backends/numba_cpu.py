"""Numba CPU backend: one layer, one direction, over the kernels in seqbench.kernels.cpu.

Every function here takes batch-first arrays (B, T, F), does the time-independent GEMMs
(input projection, weight gradients, input gradient) with BLAS, and hands the recurrence to
the compiled ``*_rows`` kernels, one block of batch rows per thread (cpu_runtime.py says how
threads, BLAS and subnormals are managed). Kernels are imported on first use so that
``import seqbench`` never pays for numba.
"""

from __future__ import annotations

import importlib

import numpy as np

from . import buffers
from .cpu_runtime import block_means, gemm, row_blocks, run_blocks


def _kernels(cell: str):
    return importlib.import_module(f"seqbench.kernels.cpu.{cell}")


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
    blocks, blas = row_blocks(B, H, H)
    run_blocks(
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
    blocks, blas = row_blocks(B, H, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    db = np.zeros((len(blocks), H))
    run_blocks(
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
    return _finish(g, dx, (dh,), block_means(part, B))


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
    blocks, blas = row_blocks(B, H, G)
    run_blocks(
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
    blocks, blas = row_blocks(B, G, G // 4)
    part = np.zeros((len(blocks), T), dtype=gates.dtype)
    db = np.zeros((len(blocks), G))
    run_blocks(
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
    return _finish(g, dx, (dh, dc), block_means(part, B))


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
    blocks, blas = row_blocks(B, H, G)
    run_blocks(
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
    blocks, blas = row_blocks(B, 3 * H, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    db_ih, db_hh = np.zeros((len(blocks), 3 * H)), np.zeros((len(blocks), 3 * H))
    run_blocks(
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
    return _finish(g, dx, (dh,), block_means(part, B))


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
    blocks, blas = row_blocks(B, O, H)  # both per-step products have O * H terms per row
    run_blocks(
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
    blocks, blas = row_blocks(B, O, H)
    part = np.zeros((len(blocks), T), dtype=h_seq.dtype)
    run_blocks(
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
    return _finish(g, dx, (dy,), block_means(part, B))


LAYERS = {
    "elman": (elman_forward, elman_backward),
    "jordan": (jordan_forward, jordan_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}
