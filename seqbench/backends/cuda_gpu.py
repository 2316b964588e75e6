"""CUDA backend: one layer, one direction, over the kernels in seqbench.kernels.cuda.

Same layer contract as ``numba_cpu`` (batch-first host arrays in and out), and one forward
and one backward for every cell, reading the cell's declaration in cell_kernels.py. The input
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
from .cell_kernels import CELLS, GradientOps, assemble_gradients, layer_dims

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


@functools.cache
def _kernel(module: str, name: str):  # ("lstm", "forward") -> lstm_forward
    return getattr(importlib.import_module(f"seqbench.kernels.cuda.{module}"), f"{module}_{name}")


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


def _flat(d, cols=None):  # device (T, B, F) -> (T*B, F) view, or of its columns cols only
    f = d.reshape(d.shape[0] * d.shape[1], d.shape[2])  # before the columns: a device
    return f if cols is None else f[:, cols]  # array reshapes only when contiguous


def _project(x_d, p):
    """x_proj = x @ weight_ih^T + bias_ih for all steps: one GEMM, (T, B, G) on the device."""
    T, B, _ = x_d.shape
    w = weights(p["weight_ih"])
    out = _empty((T, B, w.shape[0]), w.dtype)
    _common().gemm(_flat(x_d), w, _flat(out), trans_b=True, bias=weights(p["bias_ih"]))
    return out


def _wgrad(d, inp, cols=None, accumulate_into=None):
    """sum_t d_t^T inp_t over (T, B, G), (T, B, K) device arrays -> (G, K) device array; d's
    columns cols only, where given."""
    a = _flat(d, cols)
    out = accumulate_into
    if out is None:
        out = _empty((a.shape[1], inp.shape[2]), d.dtype)
    _common().gemm(a, _flat(inp), out, trans_a=True, accumulate=accumulate_into is not None)
    return out


def _colsum(d, cols=None):
    a = _flat(d, cols)
    out = _empty((a.shape[1],), d.dtype)
    _common().colsum(a, out)
    return out


def _prev_wgrad(d, cols, seq, first):
    """sum_t d_t^T prev_t with prev = [first, seq_0, ..., seq_{T-2}], without concatenating."""
    T, B, _ = d.shape
    out = _wgrad(d[:1], first.reshape(1, B, first.shape[1]), cols)
    if T > 1:
        _wgrad(d[1:], seq[: T - 1], cols, accumulate_into=out)
    return out


def _stack(blocks):  # device [(n_i, ...)] -> (sum of n_i, ...): the rows in order
    if len(blocks) == 1:
        return blocks[0]
    out = _empty((sum(b.shape[0] for b in blocks), *blocks[0].shape[1:]), blocks[0].dtype)
    row = 0
    for b in blocks:
        out[row : row + b.shape[0]].copy_to_device(b)
        row += b.shape[0]
    return out


def _input_grads(dx_proj, x_d, p, need_dx):
    """weight_ih, bias_ih and dL/dx (T, B, I) of the hoisted input projection (dL/dx: None
    unless need_dx)."""
    T, B, _ = dx_proj.shape
    dx = None
    if need_dx:
        w = weights(p["weight_ih"])
        dx = _empty((T, B, w.shape[1]), w.dtype)
        _common().gemm(_flat(dx_proj), w, _flat(dx))
    return _wgrad(dx_proj, x_d), _colsum(dx_proj), dx


def _down(grads, dx, dstate0, dh_norms):
    """Everything backward returns, copied to the host in the contract's layout."""
    host = {k: v.copy_to_host() for k, v in grads.items()}
    return (
        host,
        None if dx is None else dx.copy_to_host().transpose(1, 0, 2),
        tuple(s.copy_to_host() for s in dstate0),
        dh_norms.copy_to_host(),
    )


def _outputs(seq_d):  # device (T, B, F) -> host y (B, T, F) and the last step (B, F)
    seq = seq_d.copy_to_host()
    return seq.transpose(1, 0, 2), seq[-1].copy()


# ---------------------------------------------------------------- one adapter for every cell


def _allocate(table, dims, dtype, v):
    for name, shape in table.items():
        v[name] = _empty(shape(dims), dtype)


def _parameters(args, p, v):  # the device copies the kernel takes, by declared name
    for name in args.parameters:
        v[name] = weights(p[name])
    for name, param in args.transposed:
        v[name] = weights(p[param], True)


def forward(cell, p, x, state0, opts):
    require_gpu()
    fw = cell.forward
    x_d = _up_time_major(x)
    v = {name: _up(s) for name, s in zip(cell.initial, state0, strict=True)}
    v.update(cell.options(opts))
    x_proj = v["x_proj"] = _project(x_d, p)
    T, B, _ = x_proj.shape
    _parameters(fw.args, p, v)
    _allocate(fw.buffers, layer_dims(cell, p, B, T, state0), x_proj.dtype, v)
    _kernel(cell.module, "forward")(*fw.args.pick(v))
    first, *others = cell.pick_sequences(v)
    y, state_n = _outputs(first)
    cache = dict(zip(fw.keep, fw.pick_keep(v), strict=True))
    cache["x_d"] = x_d
    return y, (state_n, *(s[T - 1].copy_to_host() for s in others)), cache


def backward(cell, p, cache, dout, dstate_n, need_dx=True):
    bw = cell.backward
    v = dict(cache, need_dx=need_dx)
    T, B, _ = v["x_d"].shape
    dt = p["weight_ih"].dtype
    dims = layer_dims(cell, p, B, T, dstate_n)
    _allocate(bw.buffers, dims, dt, v)
    for name_in, name_out, d in zip(cell.grads_in, cell.grads_out, dstate_n, strict=True):
        v[name_in], v[name_out] = _up(d), _empty(d.shape, dt)
    v["dh_norms"] = _empty((T,), dt)
    v["dout"] = _up_time_major(dout)
    _parameters(bw.args, p, v)
    _kernel(cell.module, "backward")(*bw.args.pick(v))
    g, dx = assemble_gradients(cell, _OPS, v, p, dims)
    return _down(g, dx, tuple(v[name] for name in cell.grads_out), v["dh_norms"])


_OPS = GradientOps(
    lambda v, p, d: _input_grads(v[d], v["x_d"], p, v["need_dx"]),
    _prev_wgrad,
    lambda d, cols, seq: _wgrad(d, seq, cols),
    lambda v, d, cols: _colsum(v[d], cols),
    _stack,
)


# ---------------------------------------------------------------- registry

_FUNCTIONS = {
    name: (functools.partial(forward, cell), functools.partial(backward, cell))
    for name, cell in CELLS.items()
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
