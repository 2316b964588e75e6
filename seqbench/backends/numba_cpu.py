"""Numba CPU backend: one layer, one direction, over the kernels in seqbench.kernels.cpu.

Every function here takes batch-first arrays (B, T, F), does the time-independent GEMMs
(input projection, weight gradients, input gradient) with BLAS, and hands the recurrence to
one compiled kernel call. Kernels are imported on first use so that ``import seqbench``
never pays for numba.
"""

from __future__ import annotations

import importlib

import numpy as np


def _kernels(cell: str):
    return importlib.import_module(f"seqbench.kernels.cpu.{cell}")


def _time_major(a):  # (B, T, F) -> C-contiguous (T, B, F)
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def _project(x_tm, w, b):  # (T, B, I) @ (G, I)^T + (G,) -> (T, B, G), one GEMM
    T, B, I = x_tm.shape
    return (x_tm.reshape(T * B, I) @ w.T + b).reshape(T, B, w.shape[0])


def _wgrad(d, inp):  # sum_t d_t^T inp_t: (T, B, G), (T, B, K) -> (G, K), one GEMM
    return d.reshape(-1, d.shape[2]).T @ inp.reshape(-1, inp.shape[2])


def _prev(seq, first):  # the state before each step: [first, seq_0, ..., seq_{T-2}]
    return np.concatenate([first[None], seq[:-1]], axis=0)


def _input_grads(dx_proj, x_tm, p):
    """Gradients of the hoisted input projection: weight_ih, bias_ih and dL/dx."""
    T, B, G = dx_proj.shape
    dx = (dx_proj.reshape(T * B, G) @ p["weight_ih"]).reshape(T, B, -1)
    return _wgrad(dx_proj, x_tm), dx_proj.sum(axis=(0, 1)), dx


def _hidden_grads(dh_proj, h_prev):
    return _wgrad(dh_proj, h_prev), dh_proj.sum(axis=(0, 1))


def _finish(grads, dx, dstate0, dh_norms):
    return grads, dx.transpose(1, 0, 2), dstate0, dh_norms


# ---------------------------------------------------------------- elman


def elman_forward(p, x, state0, opts):
    k = _kernels("elman")
    x_tm = _time_major(x)
    (h0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    h_seq = np.empty_like(x_proj)
    relu = opts["nonlinearity"] == "relu"
    k.elman_forward(x_proj, np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"], h0, relu, h_seq)
    cache = (x_tm, h0, h_seq, relu)
    return h_seq.transpose(1, 0, 2), (h_seq[-1].copy(),), cache


def elman_backward(p, cache, dout, dstate_n):
    k = _kernels("elman")
    x_tm, h0, h_seq, relu = cache
    dpre = np.empty_like(h_seq)
    dh0 = np.empty_like(h0)
    dh_norms = np.empty(h_seq.shape[0], dtype=h_seq.dtype)
    k.elman_backward(
        _time_major(dout), dstate_n[0], h_seq, p["weight_hh"], relu, dpre, dh0, dh_norms
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_tm, p)
    g["weight_hh"], g["bias_hh"] = _hidden_grads(dpre, _prev(h_seq, h0))
    return _finish(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- lstm


def lstm_forward(p, x, state0, opts):
    k = _kernels("lstm")
    x_tm = _time_major(x)
    h0, c0 = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    T, B, G = x_proj.shape
    gates = np.empty_like(x_proj)
    c_seq = np.empty((T, B, G // 4), dtype=x_proj.dtype)
    h_seq = np.empty_like(c_seq)
    k.lstm_forward(
        x_proj, np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"], h0, c0, gates, c_seq, h_seq
    )
    cache = (x_tm, h0, c0, gates, c_seq, h_seq)
    return h_seq.transpose(1, 0, 2), (h_seq[-1].copy(), c_seq[-1].copy()), cache


def lstm_backward(p, cache, dout, dstate_n):
    k = _kernels("lstm")
    x_tm, h0, c0, gates, c_seq, h_seq = cache
    dpre = np.empty_like(gates)
    dh0, dc0 = np.empty_like(h0), np.empty_like(c0)
    dh_norms = np.empty(gates.shape[0], dtype=gates.dtype)
    k.lstm_backward(
        _time_major(dout),
        dstate_n[0],
        dstate_n[1],
        gates,
        c_seq,
        c0,
        p["weight_hh"],
        dpre,
        dh0,
        dc0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_tm, p)
    g["weight_hh"], g["bias_hh"] = _hidden_grads(dpre, _prev(h_seq, h0))
    return _finish(g, dx, (dh0, dc0), dh_norms)


# ---------------------------------------------------------------- gru


def gru_forward(p, x, state0, opts):
    k = _kernels("gru")
    x_tm = _time_major(x)
    (h0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    T, B, G = x_proj.shape
    H = G // 3
    gates = np.empty((T, B, 4 * H), dtype=x_proj.dtype)
    h_seq = np.empty((T, B, H), dtype=x_proj.dtype)
    k.gru_forward(x_proj, np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"], h0, gates, h_seq)
    cache = (x_tm, h0, gates, h_seq)
    return h_seq.transpose(1, 0, 2), (h_seq[-1].copy(),), cache


def gru_backward(p, cache, dout, dstate_n):
    k = _kernels("gru")
    x_tm, h0, gates, h_seq = cache
    T, B, H = h_seq.shape
    dx_proj = np.empty((T, B, 3 * H), dtype=h_seq.dtype)
    dh_proj = np.empty_like(dx_proj)
    dh0 = np.empty_like(h0)
    dh_norms = np.empty(T, dtype=h_seq.dtype)
    k.gru_backward(
        _time_major(dout),
        dstate_n[0],
        gates,
        h_seq,
        h0,
        p["weight_hh"],
        dx_proj,
        dh_proj,
        dh0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dx_proj, x_tm, p)
    g["weight_hh"], g["bias_hh"] = _hidden_grads(dh_proj, _prev(h_seq, h0))
    return _finish(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- jordan


def jordan_forward(p, x, state0, opts):
    k = _kernels("jordan")
    x_tm = _time_major(x)
    (y0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    T, B, H = x_proj.shape
    h_seq = np.empty_like(x_proj)
    y_seq = np.empty((T, B, y0.shape[1]), dtype=x_proj.dtype)
    k.jordan_forward(
        x_proj,
        np.ascontiguousarray(p["weight_yh"].T),
        np.ascontiguousarray(p["weight_hy"].T),
        p["bias_hy"],
        y0,
        h_seq,
        y_seq,
    )
    cache = (x_tm, y0, h_seq, y_seq)
    return y_seq.transpose(1, 0, 2), (y_seq[-1].copy(),), cache


def jordan_backward(p, cache, dout, dstate_n):
    k = _kernels("jordan")
    x_tm, y0, h_seq, y_seq = cache
    dy_tot = np.empty_like(y_seq)
    dpre = np.empty_like(h_seq)
    dy0 = np.empty_like(y0)
    dh_norms = np.empty(h_seq.shape[0], dtype=h_seq.dtype)
    k.jordan_backward(
        _time_major(dout),
        dstate_n[0],
        h_seq,
        p["weight_yh"],
        p["weight_hy"],
        dy_tot,
        dpre,
        dy0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_tm, p)
    g["weight_yh"] = _wgrad(dpre, _prev(y_seq, y0))
    g["weight_hy"], g["bias_hy"] = _hidden_grads(dy_tot, h_seq)
    return _finish(g, dx, (dy0,), dh_norms)


LAYERS = {
    "elman": (elman_forward, elman_backward),
    "jordan": (jordan_forward, jordan_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}
