"""CUDA backend: one layer, one direction, over the kernels in seqbench.kernels.cuda.

Same layer contract as ``numba_cpu`` (batch-first host arrays in and out). The input
projection, the recurrence, the weight gradients and dL/dx all run on the device; the tape
(``cache``) holds device arrays, so backward starts where forward left off.

What is copied when:
    weights  uploaded on first use and kept on the device, keyed on the host array's identity
             (``_DeviceWeights``); each use compares the host array with the snapshot taken at
             upload (host work O(size), no transfer) and uploads again only if it changed, e.g.
             after an optimizer updated it in place. Forward's transposed forms are cached alike.
    forward  x (and h0) go up once; y and the final state come back.
    backward dout (and the final state's gradient) go up; the gradients, dL/dx, dL/d(state0)
             and the per-step ||dL/dh_t|| come back.

Importing this module touches no CUDA driver; looking up a cell in ``LAYERS`` (what building a
model does) checks for a GPU and raises one ConfigError where there is none.
"""

from __future__ import annotations

import functools
import importlib
import weakref
from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError

# ---------------------------------------------------------------- is there a GPU?


def _reason(exc: BaseException) -> str:
    """The first informative line of a CUDA error ("CUDA driver library cannot be found")."""
    for line in str(exc).splitlines():
        line = line.strip(" :.")
        if line and not line.startswith("Error at driver init"):
            return line
    return type(exc).__name__


@functools.cache
def gpu_missing() -> str | None:
    """None where numba.cuda has a device (or the simulator runs), else why not."""
    try:
        from numba import cuda
    except Exception as exc:  # numba without its CUDA target
        return f"numba.cuda cannot be imported: {_reason(exc)}"
    try:
        if cuda.is_available():
            return None
        cuda.current_context()  # raises with the driver's own reason
    except Exception as exc:
        return _reason(exc)
    return "no CUDA device is visible"


def require_gpu() -> None:
    reason = gpu_missing()
    if reason is not None:
        raise ConfigError(
            f"backend 'cuda' needs an NVIDIA GPU with a CUDA driver; none was found ({reason}). "
            "Use backend='numba'."
        )


# ---------------------------------------------------------------- device arrays


def _cuda():
    from numba import cuda

    return cuda


def _kernels(cell: str):
    return importlib.import_module(f"seqbench.kernels.cuda.{cell}")


def _common():
    return importlib.import_module("seqbench.kernels.cuda._common")


class _DeviceWeights:
    """Device copies of parameter arrays, keyed on identity, checked against content."""

    def __init__(self):
        self._entries = {}  # id(host array) -> (snapshot, {"N" | "T": device array})

    def __call__(self, a: np.ndarray, transposed: bool = False):
        key = id(a)
        entry = self._entries.get(key)
        if entry is None or entry[0].shape != a.shape or not np.array_equal(entry[0], a):
            if entry is None:
                weakref.finalize(a, self._entries.pop, key, None)
            entry = (a.copy(), {})
            self._entries[key] = entry
        form = "T" if transposed else "N"
        if form not in entry[1]:
            entry[1][form] = _cuda().to_device(np.ascontiguousarray(a.T if transposed else a))
        return entry[1][form]

    def clear(self):
        self._entries.clear()


weights = _DeviceWeights()


def _up_time_major(a):  # host (B, T, F) -> device (T, B, F)
    return _cuda().to_device(np.ascontiguousarray(np.asarray(a).transpose(1, 0, 2)))


def _up(a):
    return _cuda().to_device(np.ascontiguousarray(a))


def _empty(shape, dtype):
    return _cuda().device_array(shape, dtype=dtype)


def _flat(d):  # device (T, B, F) -> (T*B, F) view
    return d.reshape(d.shape[0] * d.shape[1], d.shape[2])


def _project(x_d, p):
    """x_proj = x @ weight_ih^T + bias_ih for all steps: one GEMM, (T, B, G) on the device."""
    T, B, _ = x_d.shape
    w = weights(p["weight_ih"])
    out = _empty((T, B, w.shape[0]), w.dtype)
    _common().gemm(_flat(x_d), w, _flat(out), trans_b=True, bias=weights(p["bias_ih"]))
    return out


def _wgrad(d, inp, accumulate_into=None):
    """sum_t d_t^T inp_t over (T, B, G), (T, B, K) device arrays -> (G, K) device array."""
    out = accumulate_into
    if out is None:
        out = _empty((d.shape[2], inp.shape[2]), d.dtype)
    _common().gemm(_flat(d), _flat(inp), out, trans_a=True, accumulate=accumulate_into is not None)
    return out


def _colsum(d):
    out = _empty((d.shape[2],), d.dtype)
    _common().colsum(_flat(d), out)
    return out


def _prev_wgrad(d, seq, first):
    """sum_t d_t^T prev_t with prev = [first, seq_0, ..., seq_{T-2}], without concatenating."""
    T, B, _ = d.shape
    out = _wgrad(d[:1], first.reshape(1, B, first.shape[1]))
    if T > 1:
        _wgrad(d[1:], seq[: T - 1], accumulate_into=out)
    return out


def _input_grads(dx_proj, x_d, p):
    """weight_ih, bias_ih and dL/dx (T, B, I) of the hoisted input projection."""
    T, B, _ = dx_proj.shape
    w = weights(p["weight_ih"])
    dx = _empty((T, B, w.shape[1]), w.dtype)
    _common().gemm(_flat(dx_proj), w, _flat(dx))
    return _wgrad(dx_proj, x_d), _colsum(dx_proj), dx


def _down(grads, dx, dstate0, dh_norms):
    """Everything backward returns, copied to the host in the contract's layout."""
    host = {k: v.copy_to_host() for k, v in grads.items()}
    return (
        host,
        dx.copy_to_host().transpose(1, 0, 2),
        tuple(s.copy_to_host() for s in dstate0),
        dh_norms.copy_to_host(),
    )


def _outputs(seq_d):  # device (T, B, F) -> host y (B, T, F) and the last step (B, F)
    seq = seq_d.copy_to_host()
    return seq.transpose(1, 0, 2), seq[-1].copy()


# ---------------------------------------------------------------- elman


def elman_forward(p, x, state0, opts):
    require_gpu()
    x_d = _up_time_major(x)
    h0 = _up(state0[0])
    x_proj = _project(x_d, p)
    h_seq = _empty(x_proj.shape, x_proj.dtype)
    relu = opts["nonlinearity"] == "relu"
    _kernels("elman").elman_forward(
        x_proj, weights(p["weight_hh"], True), weights(p["bias_hh"]), h0, relu, h_seq
    )
    y, h_n = _outputs(h_seq)
    return y, (h_n,), (x_d, h0, h_seq, relu)


def elman_backward(p, cache, dout, dstate_n):
    x_d, h0, h_seq, relu = cache
    T, B, H = h_seq.shape
    dpre, dh0 = _empty(h_seq.shape, h_seq.dtype), _empty((B, H), h_seq.dtype)
    dh_norms = _empty((T,), h_seq.dtype)
    _kernels("elman").elman_backward(
        _up_time_major(dout),
        _up(dstate_n[0]),
        h_seq,
        weights(p["weight_hh"]),
        relu,
        dpre,
        dh0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_d, p)
    g["weight_hh"], g["bias_hh"] = _prev_wgrad(dpre, h_seq, h0), _colsum(dpre)
    return _down(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- lstm


def lstm_forward(p, x, state0, opts):
    require_gpu()
    x_d = _up_time_major(x)
    h0, c0 = _up(state0[0]), _up(state0[1])
    x_proj = _project(x_d, p)
    T, B, G = x_proj.shape
    gates = _empty(x_proj.shape, x_proj.dtype)
    c_seq, h_seq = _empty((T, B, G // 4), x_proj.dtype), _empty((T, B, G // 4), x_proj.dtype)
    _kernels("lstm").lstm_forward(
        x_proj, weights(p["weight_hh"], True), weights(p["bias_hh"]), h0, c0, gates, c_seq, h_seq
    )
    y, h_n = _outputs(h_seq)
    return y, (h_n, c_seq[T - 1].copy_to_host()), (x_d, h0, c0, gates, c_seq, h_seq)


def lstm_backward(p, cache, dout, dstate_n):
    x_d, h0, c0, gates, c_seq, h_seq = cache
    T, B, H = h_seq.shape
    dpre = _empty(gates.shape, gates.dtype)
    dh0, dc0 = _empty((B, H), gates.dtype), _empty((B, H), gates.dtype)
    dh_norms = _empty((T,), gates.dtype)
    _kernels("lstm").lstm_backward(
        _up_time_major(dout),
        _up(dstate_n[0]),
        _up(dstate_n[1]),
        gates,
        c_seq,
        c0,
        weights(p["weight_hh"]),
        dpre,
        dh0,
        dc0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_d, p)
    g["weight_hh"], g["bias_hh"] = _prev_wgrad(dpre, h_seq, h0), _colsum(dpre)
    return _down(g, dx, (dh0, dc0), dh_norms)


# ---------------------------------------------------------------- gru


def gru_forward(p, x, state0, opts):
    require_gpu()
    x_d = _up_time_major(x)
    h0 = _up(state0[0])
    x_proj = _project(x_d, p)
    T, B, G = x_proj.shape
    H = G // 3
    gates = _empty((T, B, 4 * H), x_proj.dtype)
    h_seq = _empty((T, B, H), x_proj.dtype)
    _kernels("gru").gru_forward(
        x_proj, weights(p["weight_hh"], True), weights(p["bias_hh"]), h0, gates, h_seq
    )
    y, h_n = _outputs(h_seq)
    return y, (h_n,), (x_d, h0, gates, h_seq)


def gru_backward(p, cache, dout, dstate_n):
    x_d, h0, gates, h_seq = cache
    T, B, H = h_seq.shape
    dx_proj, dh_proj = _empty((T, B, 3 * H), h_seq.dtype), _empty((T, B, 3 * H), h_seq.dtype)
    dh0, dh_norms = _empty((B, H), h_seq.dtype), _empty((T,), h_seq.dtype)
    _kernels("gru").gru_backward(
        _up_time_major(dout),
        _up(dstate_n[0]),
        gates,
        h_seq,
        h0,
        weights(p["weight_hh"]),
        dx_proj,
        dh_proj,
        dh0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dx_proj, x_d, p)
    g["weight_hh"], g["bias_hh"] = _prev_wgrad(dh_proj, h_seq, h0), _colsum(dh_proj)
    return _down(g, dx, (dh0,), dh_norms)


# ---------------------------------------------------------------- jordan


def jordan_forward(p, x, state0, opts):
    require_gpu()
    x_d = _up_time_major(x)
    y0 = _up(state0[0])
    x_proj = _project(x_d, p)
    T, B, H = x_proj.shape
    h_seq = _empty((T, B, H), x_proj.dtype)
    y_seq = _empty((T, B, y0.shape[1]), x_proj.dtype)
    _kernels("jordan").jordan_forward(
        x_proj,
        weights(p["weight_yh"], True),
        weights(p["weight_hy"], True),
        weights(p["bias_hy"]),
        y0,
        h_seq,
        y_seq,
    )
    y, y_n = _outputs(y_seq)
    return y, (y_n,), (x_d, y0, h_seq, y_seq)


def jordan_backward(p, cache, dout, dstate_n):
    x_d, y0, h_seq, y_seq = cache
    T, B, H = h_seq.shape
    dy_tot, dpre = _empty(y_seq.shape, y_seq.dtype), _empty(h_seq.shape, h_seq.dtype)
    dy0, dh_norms = _empty(y0.shape, y0.dtype), _empty((T,), h_seq.dtype)
    _kernels("jordan").jordan_backward(
        _up_time_major(dout),
        _up(dstate_n[0]),
        h_seq,
        weights(p["weight_yh"]),
        weights(p["weight_hy"]),
        dy_tot,
        dpre,
        dy0,
        dh_norms,
    )
    g = {}
    g["weight_ih"], g["bias_ih"], dx = _input_grads(dpre, x_d, p)
    g["weight_yh"] = _prev_wgrad(dpre, y_seq, y0)
    g["weight_hy"], g["bias_hy"] = _wgrad(dy_tot, h_seq), _colsum(dy_tot)
    return _down(g, dx, (dy0,), dh_norms)


# ---------------------------------------------------------------- registry

_FUNCTIONS = {
    "elman": (elman_forward, elman_backward),
    "jordan": (jordan_forward, jordan_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}


class _Layers(Mapping):
    """``{cell: (forward, backward)}`` whose lookups first check for a GPU, so that building a
    model with backend='cuda' without one fails at once with one ConfigError, while importing
    this module and listing its cells (``in``, ``keys()``) never touch CUDA."""

    def __getitem__(self, cell):
        functions = _FUNCTIONS[cell]
        require_gpu()
        return functions

    def __contains__(self, cell):
        return cell in _FUNCTIONS

    def __iter__(self):
        return iter(_FUNCTIONS)

    def __len__(self):
        return len(_FUNCTIONS)


LAYERS = _Layers()
