"""Numba CPU backend: one layer, one direction, over the kernels in seqbench.kernels.cpu.

Every function here takes batch-first arrays (B, T, F), does the time-independent GEMMs
(input projection, weight gradients, input gradient) with BLAS, and hands the recurrence to
one compiled kernel call. Kernels are imported on first use so that ``import seqbench``
never pays for numba.

Threads: the GEMMs here use BLAS's own threads; a kernel uses numba's (prange over batch
rows) and, when its per-step product is large enough, calls BLAS from those threads. BLAS is
held to one thread for the duration of each kernel call (``_kernel_call``), so the two pools
never take turns inside a time loop. The GEMMs here go through scipy's BLAS, the library
numba's ``np.dot`` calls, not numpy's: numpy and scipy wheels each bring an OpenBLAS with its
own threads, and alternating the two ran the big LSTM's per-step products 2.5x slower (their
idle threads spin for a while after each call).
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np


def _kernels(cell: str):
    return importlib.import_module(f"seqbench.kernels.cpu.{cell}")


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


def _kernel_call(fn, product, *args):
    """Run one kernel. ``product`` = (B, K, N) of its per-step recurrent product decides, as
    the kernel does (kernels/cpu/_common.py: plan), whether numba's threads split the batch,
    BLAS then held to one thread, or the whole batch goes to BLAS with BLAS's own threads."""
    from seqbench.kernels.cpu._common import blas_threads

    ctl = None if blas_threads(*product) else _blas_controller()
    with ctl.limit(limits=1) if ctl is not None else contextlib.nullcontext():
        fn(*args)


def _gemm(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) of C-contiguous 2-D arrays, C-contiguous, through scipy's BLAS.

    BLAS is column-major: a C array is its transpose there, so this asks for
    (op(a) op(b))^T = op(b)^T op(a)^T and reads the column-major result as row-major.
    """
    from scipy.linalg.blas import get_blas_funcs

    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    gemm = get_blas_funcs("gemm", (a, b))
    return gemm(1.0, b.T, a.T, trans_a=trans_b, trans_b=trans_a).T


def _time_major(a):  # (B, T, F) -> C-contiguous (T, B, F)
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def _project(x_tm, w, b=None):  # (T, B, I) @ (G, I)^T [+ (G,)] -> (T, B, G), one GEMM
    T, B, I = x_tm.shape
    out = _gemm(x_tm.reshape(T * B, I), w, trans_b=True)
    if b is not None:
        out += b
    return out.reshape(T, B, w.shape[0])


def _wgrad(d, inp):  # sum_t d_t^T inp_t: (T, B, G), (T, B, K) -> (G, K), one GEMM
    return _gemm(d.reshape(-1, d.shape[2]), inp.reshape(-1, inp.shape[2]), trans_a=True)


def _wgrad_prev(d, seq, first):
    """sum_t d_t^T s_{t-1} with s_{-1} = first: (T, B, G), (T, B, K), (B, K) -> (G, K)."""
    g = _gemm(d[0], first, trans_a=True)
    if d.shape[0] > 1:
        g += _wgrad(d[1:], seq[:-1])
    return g


def _input_grads(dx_proj, x_tm, p):
    """Gradients of the hoisted input projection: weight_ih, bias_ih and dL/dx."""
    T, B, G = dx_proj.shape
    dx = _gemm(dx_proj.reshape(T * B, G), p["weight_ih"]).reshape(T, B, -1)
    return _wgrad(dx_proj, x_tm), dx_proj.sum(axis=(0, 1)), dx


def _finish(grads, dx, dstate0, dh_norms):
    return grads, dx.transpose(1, 0, 2), dstate0, dh_norms


def _single_bias_grads(dpre, x_tm, h_seq, h0, p):
    """Elman and LSTM: dL/dx_proj = dL/d(recurrent product), so both biases share one sum."""
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_tm, p)
    g["weight_hh"] = _wgrad_prev(dpre, h_seq, h0)
    g["bias_hh"] = g["bias_ih"].copy()
    return g, dx


# ---------------------------------------------------------------- elman


def elman_forward(p, x, state0, opts):
    k = _kernels("elman")
    x_tm = _time_major(x)
    (h0,) = state0
    # b_ih is folded into the kernel's bias (one add per element instead of a pass over x_proj)
    x_proj = _project(x_tm, p["weight_ih"])
    T, B, H = x_proj.shape
    h_seq = np.empty_like(x_proj)
    relu = opts["nonlinearity"] == "relu"
    _kernel_call(
        k.elman_forward,
        (B, H, H),
        x_proj,
        np.ascontiguousarray(p["weight_hh"].T),
        p["bias_hh"] + p["bias_ih"],
        h0,
        relu,
        h_seq,
    )
    cache = (x_tm, h0, h_seq, relu)
    return h_seq.transpose(1, 0, 2), (h_seq[-1].copy(),), cache


def elman_backward(p, cache, dout, dstate_n):
    k = _kernels("elman")
    x_tm, h0, h_seq, relu = cache
    T, B, H = h_seq.shape
    dpre = np.empty_like(h_seq)
    dh0 = np.empty_like(h0)
    dh_norms = np.empty(h_seq.shape[0], dtype=h_seq.dtype)
    _kernel_call(
        k.elman_backward,
        (B, H, H),
        _time_major(dout),
        dstate_n[0],
        h_seq,
        p["weight_hh"],
        relu,
        dpre,
        dh0,
        dh_norms,
    )
    g, dx = _single_bias_grads(dpre, x_tm, h_seq, h0, p)
    return _finish(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- lstm


def lstm_forward(p, x, state0, opts):
    k = _kernels("lstm")
    x_tm = _time_major(x)
    h0, c0 = state0
    x_proj = _project(x_tm, p["weight_ih"])  # b_ih folded into the kernel's bias, as Elman
    T, B, G = x_proj.shape
    gates = np.empty_like(x_proj)
    c_seq = np.empty((T, B, G // 4), dtype=x_proj.dtype)
    h_seq = np.empty_like(c_seq)
    _kernel_call(
        k.lstm_forward,
        (B, G // 4, G),
        x_proj,
        np.ascontiguousarray(p["weight_hh"].T),
        p["bias_hh"] + p["bias_ih"],
        h0,
        c0,
        gates,
        c_seq,
        h_seq,
    )
    cache = (x_tm, h0, c0, gates, c_seq, h_seq)
    return h_seq.transpose(1, 0, 2), (h_seq[-1].copy(), c_seq[-1].copy()), cache


def lstm_backward(p, cache, dout, dstate_n):
    k = _kernels("lstm")
    x_tm, h0, c0, gates, c_seq, h_seq = cache
    T, B, G = gates.shape
    dpre = np.empty_like(gates)
    dh0, dc0 = np.empty_like(h0), np.empty_like(c0)
    dh_norms = np.empty(gates.shape[0], dtype=gates.dtype)
    _kernel_call(
        k.lstm_backward,
        (B, G, G // 4),
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
    g, dx = _single_bias_grads(dpre, x_tm, h_seq, h0, p)
    return _finish(g, dx, (dh0, dc0), dh_norms)


# ---------------------------------------------------------------- gru


def gru_forward(p, x, state0, opts):
    k = _kernels("gru")
    x_tm = _time_major(x)
    (h0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])  # b_in sits outside r * (.)
    T, B, G = x_proj.shape
    H = G // 3
    gates = np.empty((T, B, 4 * H), dtype=x_proj.dtype)
    h_seq = np.empty((T, B, H), dtype=x_proj.dtype)
    _kernel_call(
        k.gru_forward,
        (B, H, G),
        x_proj,
        np.ascontiguousarray(p["weight_hh"].T),
        p["bias_hh"],
        h0,
        gates,
        h_seq,
    )
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
    _kernel_call(
        k.gru_backward,
        (B, 3 * H, H),
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
    g["weight_hh"] = _wgrad_prev(dh_proj, h_seq, h0)
    g["bias_hh"] = dh_proj.sum(axis=(0, 1))
    return _finish(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- jordan


def jordan_forward(p, x, state0, opts):
    k = _kernels("jordan")
    x_tm = _time_major(x)
    (y0,) = state0
    x_proj = _project(x_tm, p["weight_ih"], p["bias_ih"])
    T, B, H = x_proj.shape
    O = y0.shape[1]
    h_seq = np.empty_like(x_proj)
    y_seq = np.empty((T, B, y0.shape[1]), dtype=x_proj.dtype)
    _kernel_call(
        k.jordan_forward,
        (B, O, H),
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
    T, B, H = h_seq.shape
    O = y0.shape[1]
    dy_tot = np.empty_like(y_seq)
    dpre = np.empty_like(h_seq)
    dy0 = np.empty_like(y0)
    dh_norms = np.empty(h_seq.shape[0], dtype=h_seq.dtype)
    _kernel_call(
        k.jordan_backward,
        (B, O, H),
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
    g["weight_yh"] = _wgrad_prev(dpre, y_seq, y0)
    g["weight_hy"] = _wgrad(dy_tot, h_seq)
    g["bias_hy"] = dy_tot.sum(axis=(0, 1))
    return _finish(g, dx, (dy0,), dh_norms)


LAYERS = {
    "elman": (elman_forward, elman_backward),
    "jordan": (jordan_forward, jordan_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}
