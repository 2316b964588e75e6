"""Echo-state network (leaky-integrator reservoir), CUDA. Mirrors kernels/cpu/esn.py.

    x_t = (1 - a) x_{t-1} + a f(W x_{t-1} + W_in u_t + b + W_fb y_{t-1}),   f = tanh or identity

Shapes (batch-first, as the CPU kernels; device or host arrays):
    u_proj:  [B, T, N]  W_in u_t + b for all steps (under teacher forcing also W_fb y_{t-1})
    w_hh_t:  [N, N]     dense W transposed (x_t[b] = ... x_{t-1}[b] @ w_hh_t)
    indptr:  [N + 1]    W in CSR, rows = receiving units (uint32 or any integer type)
    indices: [nnz]
    data:    [nnz]
    leak:    scalar a in (0, 1];  linear: True for f = identity
    x0:      [B, N]     initial state
    states:  [B, T, N]  x_1 .. x_T (output); may be the same host array as u_proj (each
                        u_proj[b, t, i] is read by the thread that writes states[b, t, i])
    free run (output feedback; O = 0 turns it off, pass empty arrays):
    w_fb:    [N, O]     feedback weights; y_{t-1} enters the step through W_fb y_{t-1}
    w_out:   [O, N]     readout, y_t = w_out x_t + b_out
    b_out:   [O]
    y0:      [B, O]     the output before the first step
    outputs: [B, T, O]  y_1 .. y_T (output)

One launch per time step: one thread per (batch row, unit) pair, B*N threads in blocks of
config.THREADS_PER_BLOCK; the state x_{t-1} is read back from states[:, t-1] (x0 at t = 0),
so no buffer is swapped. With feedback a second launch per step computes the readout, one
thread per (batch row, output), into outputs[:, t], which the next step reads as y_{t-1}.
tanh is the device's math.tanh (the CPU's tanh_f64 agrees with it to a few ulp).
"""

import math

import numpy as np
from numba import cuda

from .. import config
from . import _common as cc


@cuda.jit(device=True)
def _finish(pre, x_old, keep, leak, linear):
    return keep * x_old + leak * (pre if linear else math.tanh(pre))


@cuda.jit(device=True)
def _feedback(pre, w_fb, y_prev, b, i, O):
    for o in range(O):
        pre += w_fb[i, o] * y_prev[b, o]
    return pre


@cuda.jit
def _dense_step(t, u_proj, w_hh_t, keep, leak, linear, x0, states, w_fb, y0, outputs, O):
    B, T, N = u_proj.shape
    p = cuda.grid(1)
    if p < B * N:
        b = p // N
        i = p - b * N
        x_prev = x0[b] if t == 0 else states[b, t - 1]
        pre = u_proj[b, t, i]
        s = pre - pre  # zero in the array's dtype
        for j in range(N):
            s += x_prev[j] * w_hh_t[j, i]
        pre += s
        if O > 0:
            pre = _feedback(pre, w_fb, y0 if t == 0 else outputs[:, t - 1], b, i, O)
        states[b, t, i] = _finish(pre, x_prev[i], keep, leak, linear)


@cuda.jit
def _csr_step(
    t, u_proj, indptr, indices, data, keep, leak, linear, x0, states, w_fb, y0, outputs, O
):
    B, T, N = u_proj.shape
    p = cuda.grid(1)
    if p < B * N:
        b = p // N
        i = p - b * N
        x_prev = x0[b] if t == 0 else states[b, t - 1]
        pre = u_proj[b, t, i]
        if O > 0:
            pre = _feedback(pre, w_fb, y0 if t == 0 else outputs[:, t - 1], b, i, O)
        s = pre - pre
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x_prev[indices[k]]
        pre += s
        states[b, t, i] = _finish(pre, x_prev[i], keep, leak, linear)


@cuda.jit
def _readout_step(t, states, w_out, b_out, outputs):
    B, T, N = states.shape
    O = w_out.shape[0]
    p = cuda.grid(1)
    if p < B * O:
        b = p // O
        o = p - b * O
        s = b_out[o]
        for i in range(N):
            s += w_out[o, i] * states[b, t, i]
        outputs[b, t, o] = s


def _run(step, u_proj, weights, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs):
    B, T, N = u_proj.shape
    O = w_out.shape[0]
    dtype = np.dtype(u_proj.dtype)
    if O == 0:  # no free run: one-element stand-ins, no zero-size device arrays
        w_fb, w_out, b_out = np.zeros((1, 1), dtype), np.zeros((1, 1), dtype), np.zeros(1, dtype)
        y0, outputs = np.zeros((1, 1), dtype), None
    with cc.DeviceCall() as d:
        u_proj, x0, w_fb, w_out, b_out, y0 = d.inputs(u_proj, x0, w_fb, w_out, b_out, y0)
        weights = d.inputs(*weights)
        (states,) = d.outputs(states)
        if outputs is None:
            outputs = cuda.device_array((1, 1, 1), dtype=dtype)
        else:
            (outputs,) = d.outputs(outputs)
        tpb = config.THREADS_PER_BLOCK
        launch = step[cc._ceil(B * N, tpb), tpb]
        readout = _readout_step[cc._ceil(B * max(O, 1), tpb), tpb]
        keep, leak = dtype.type(1.0 - float(leak)), dtype.type(leak)
        for t in range(T):
            launch(t, u_proj, *weights, keep, leak, bool(linear), x0, states, w_fb, y0, outputs, O)
            if O > 0:
                readout(t, states, w_out, b_out, outputs)


def esn_forward(u_proj, w_hh_t, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs):
    """Dense W: thread (b, i) takes the dot product x_{t-1}[b] . w_hh_t[:, i]."""
    _run(_dense_step, u_proj, (w_hh_t,), leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs)


def esn_forward_csr(
    u_proj, indptr, indices, data, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs
):
    """CSR W: thread (b, i) gathers row i of W against x_{t-1}[b]."""
    _run(
        _csr_step,
        u_proj,
        (indptr, indices, data),
        leak,
        linear,
        x0,
        states,
        w_fb,
        w_out,
        b_out,
        y0,
        outputs,
    )
