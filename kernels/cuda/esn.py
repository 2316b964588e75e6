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

Two ways to run the time loop (config.CUDA_RECURRENCE, as for the trained cells):
- persistent (the default where cooperative launch works): one launch for all T steps and a
  grid-wide barrier after each; a group of ks threads takes one (batch row, unit) pair and
  splits its dot product (the row's nonzeros, lane-strided so a warp reads W coalesced),
  summing in shared memory; the pairs go round the grid's groups in rounds. With feedback a
  second phase, after the barrier, computes the readout the same way, one group per (batch
  row, output), and a second barrier follows. Python launches once, not T times, which at
  B = 1 is what a step costs.
- per-step: one launch per step, one thread per (batch row, unit) pair, B*N threads in blocks
  of config.THREADS_PER_BLOCK; with feedback a second launch per step for the readout.
Either way x_{t-1} is read back from states[:, t-1] (x0 at t = 0), so no buffer is swapped,
and the next step reads y_{t-1} from outputs[:, t-1].
tanh is the device's math.tanh (the CPU's tanh_f64 agrees with it to a few ulp).
"""

import functools
import math

import numba
import numpy as np
from numba import cuda

from .. import config
from . import _common as cc
from . import _plan


@cuda.jit(device=True)
def _finish(pre, x_old, keep, leak, linear):
    return keep * x_old + leak * (pre if linear else math.tanh(pre))


@cuda.jit(device=True)
def _feedback(pre, w_fb, y_prev, b, i, O):
    for o in range(O):
        pre += w_fb[i, o] * y_prev[b, o]
    return pre


@cuda.jit(device=True)
def _thread_pair(u_proj):
    """(batch row, unit, live) of this thread in a per-step launch: one thread a pair."""
    B, T, N = u_proj.shape
    p = cc.cu.grid(1)
    b = p // N
    return b, p - b * N, p < B * N


@cuda.jit
def _dense_step(t, u_proj, w_hh_t, keep, leak, linear, x0, states, w_fb, y0, outputs, O):
    N = u_proj.shape[2]
    b, i, live = _thread_pair(u_proj)
    if live:
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
    b, i, live = _thread_pair(u_proj)
    if live:
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


@cuda.jit(device=True)
def _csr_dot(weights, x_prev, i, lane, ks, live, zero):
    """A lane's share of row i of W against x_prev: nonzeros lane, lane + ks, ..."""
    indptr, indices, data = weights
    a = zero
    if live:
        for k in range(indptr[i] + lane, indptr[i + 1], ks):
            a += data[k] * x_prev[indices[k]]
    return a


@cuda.jit(device=True)
def _dense_dot(weights, x_prev, i, lane, ks, live, zero):
    (w_hh_t,) = weights
    a = zero
    if live:
        for j in range(lane, x_prev.shape[0], ks):
            a += x_prev[j] * w_hh_t[j, i]
    return a


@cuda.jit(device=True)
def _pair_of(r, groups, g0, grp, ngrp, rows, n):
    """(batch row, index, live) of the pair that group g0 takes in round r, of rows*n."""
    p = r * groups + g0
    live = grp < ngrp and p < rows * n
    if not live:
        p = 0
    b = p // n
    return b, p - b * n, live


@functools.cache
def _persistent(dtype, dot):
    """The whole time loop in one cooperative launch (module docstring), for one dtype (the
    shared array's) and one way of taking a row's dot product."""
    dt = numba.from_dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit
    def run(
        u_proj, weights, ks, keep, leak, linear, x0, states, w_fb, w_out, b_out, y0, O, outputs
    ):
        red = cuda.shared.array(0, dt)  # the groups' partial sums, one slot a thread
        B, T, N = u_proj.shape
        lane, grp, ngrp = cc.thread_group(ks)
        groups = ngrp * cuda.gridDim.x
        g0 = cuda.blockIdx.x * ngrp + grp
        grid = cuda.cg.this_grid()
        for t in range(T):
            for r in range((B * N + groups - 1) // groups):  # every thread: reduce syncs
                b, i, live = _pair_of(r, groups, g0, grp, ngrp, B, N)
                x_prev = x0[b] if t == 0 else states[b, t - 1]
                a = dot(weights, x_prev, i, lane, ks, live, zero)
                a = cc.reduce(red, (a, a, a, a), lane, ks, 1)[0]
                if live and lane == 0:
                    pre = u_proj[b, t, i]
                    if O > 0:
                        pre = _feedback(pre, w_fb, y0 if t == 0 else outputs[:, t - 1], b, i, O)
                    states[b, t, i] = _finish(pre + a, x_prev[i], keep, leak, linear)
            grid.sync()
            if O > 0:
                for r in range((B * O + groups - 1) // groups):
                    b, o, live = _pair_of(r, groups, g0, grp, ngrp, B, O)
                    a = zero
                    if live:
                        for j in range(lane, N, ks):
                            a += w_out[o, j] * states[b, t, j]
                    a = cc.reduce(red, (a, a, a, a), lane, ks, 1)[0]
                    if live and lane == 0:
                        outputs[b, t, o] = b_out[o] + a
                grid.sync()

    return run


def _split_for(weights, N, pairs, threads):
    """Lanes a pair's dot product. Dense W: one, so that neighbouring threads read neighbouring
    columns. CSR: as many as still let one round cover all `pairs` with the `threads` that run
    at once, up to a warp and about four nonzeros a lane. On an H100 (N = 1000, 10%) a round
    too many cost more than the lanes saved: B = 32 ran 18 us a step at 2 lanes (one round),
    59 at 32 (four rounds); B = 1 ran 6.3 at 16 lanes, 11.5 at 2."""
    if config.CUDA_ESN_LANES:
        return config.CUDA_ESN_LANES
    ks = 1
    if len(weights) == 3:
        per_row = weights[2].size / max(N, 1)
        limit = min(config.CUDA_MAX_SPLIT, config.THREADS_PER_BLOCK, per_row / 4, threads / pairs)
        while ks * 2 <= limit:
            ks *= 2
    return ks


def _run(step, dot, u_proj, weights, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs):
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
        keep, leak, linear = dtype.type(1.0 - float(leak)), dtype.type(leak), bool(linear)
        kernel = _persistent(dtype, dot)
        args = (u_proj, weights, 1, keep, leak, linear, x0, states, w_fb, w_out, b_out, y0, O)
        tpb = config.THREADS_PER_BLOCK
        shared = tpb * dtype.itemsize  # the groups' partial sums
        capacity = 0
        if config.CUDA_RECURRENCE != "per-step":
            capacity = _plan.cooperative_capacity(kernel, (*args, outputs), tpb, shared)
        if capacity > 0:
            ks = _split_for(weights, N, B * N, capacity * tpb)
            blocks = min(capacity, cc._ceil(B * N, tpb // ks))
            kernel[blocks, tpb, 0, shared](*args[:2], ks, *args[3:], outputs)
            return
        if config.CUDA_RECURRENCE == "persistent":
            raise _plan.persistent_refused("reservoir")
        launch = step[cc._ceil(B * N, tpb), tpb]
        readout = _readout_step[cc._ceil(B * max(O, 1), tpb), tpb]
        for t in range(T):
            launch(t, u_proj, *weights, keep, leak, linear, x0, states, w_fb, y0, outputs, O)
            if O > 0:
                readout(t, states, w_out, b_out, outputs)


def esn_forward(u_proj, w_hh_t, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs):
    """Dense W: pair (b, i) takes the dot product x_{t-1}[b] . w_hh_t[:, i]."""
    rest = (leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs)
    _run(_dense_step, _dense_dot, u_proj, (w_hh_t,), *rest)


def esn_forward_csr(
    u_proj, indptr, indices, data, leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs
):
    """CSR W: pair (b, i) gathers row i of W against x_{t-1}[b]."""
    rest = (leak, linear, x0, states, w_fb, w_out, b_out, y0, outputs)
    _run(_csr_step, _csr_dot, u_proj, (indptr, indices, data), *rest)
