"""LSTM cell (torch.nn.LSTM), CUDA. Same cell and shapes as kernels/cpu/lstm.py.

The contract here is lstm_forward / lstm_backward with the arguments of the CPU whole-batch
pair, as device or host arrays. Each launch covers the whole batch: no row blocks, lo/hi/blas,
fused input or per-block partial sums. The time loop is one persistent cooperative launch, or
a launch per step where that cannot run (_launch.py, _common.py).

Unit space: the H hidden units. Forward: 4 gate columns per unit, dot length H (h_{t-1}).
Backward: 1 column per unit (column j of w_hh), dot length 4H (dpre_{t+1}); dc0 carries
dL/dc_t through the loop, each entry owned by one thread.
"""

from numba import cuda

from . import _common as cc
from . import _launch
from ._common import dsigmoid_from_output, dtanh_from_output, sigmoid, tanh_


@cuda.jit(device=True)
def _forward_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    x_proj, b_hh, h0, c0, gates, c_seq, h_seq = args
    T, B, G = x_proj.shape
    H = G // 4
    h_prev = h0 if t == 0 else h_seq[t - 1]
    c_prev = c0 if t == 0 else c_seq[t - 1]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, H)
        col = w0 + (j - blk * S) * kp  # gate i's column; gate q's is q*S*kp further
        ai, af, ag, ao = cc.dots4(h_prev, b, H, w, col, S * kp, lane, ks, live, zero)
        ai, af, ag, ao = cc.reduce4(red, ai, af, ag, ao, lane, ks)
        if live and lane == 0:
            i = sigmoid(x_proj[t, b, j] + ai + b_hh[j])
            f = sigmoid(x_proj[t, b, H + j] + af + b_hh[H + j])
            g = tanh_(x_proj[t, b, 2 * H + j] + ag + b_hh[2 * H + j])
            o = sigmoid(x_proj[t, b, 3 * H + j] + ao + b_hh[3 * H + j])
            c = f * c_prev[b, j] + i * g
            gates[t, b, j] = i
            gates[t, b, H + j] = f
            gates[t, b, 2 * H + j] = g
            gates[t, b, 3 * H + j] = o
            c_seq[t, b, j] = c
            h_seq[t, b, j] = o * tanh_(c)


@cuda.jit(device=True)
def _backward_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    """Step t (T-1 down to 0); t == -1 only writes dh0 = dpre_0 W_hh."""
    dh_out, dh_last, gates, c_seq, c0, dpre, dh0, dc0, sq_part = args
    sqs = red[cc.cu.blockDim.x :]  # after the group sums
    T, B, G = gates.shape
    H = G // 4
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        p = base + grp
        b, j, live = cc.pair(p, grp, ngrp, blk, S, B, H)
        a = zero
        if t + 1 < T:  # dL/dh_t through the recurrence: dpre_{t+1} . w_hh[:, j]
            a = cc.dots1(dpre[t + 1], b, G, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
            a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            dh = a if t + 1 < T else dh_last[b, j]
            if t < 0:
                dh0[b, j] = dh
            else:
                gh = dh + dh_out[t, b, j]
                sqs[p] = gh * gh
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                o = gates[t, b, 3 * H + j]
                tc = tanh_(c_seq[t, b, j])
                c_prev = c0[b, j] if t == 0 else c_seq[t - 1, b, j]
                dct = dc0[b, j] + gh * o * dtanh_from_output(tc)
                dpre[t, b, j] = dct * g * dsigmoid_from_output(i)
                dpre[t, b, H + j] = dct * c_prev * dsigmoid_from_output(f)
                dpre[t, b, 2 * H + j] = dct * i * dtanh_from_output(g)
                dpre[t, b, 3 * H + j] = gh * tc * dsigmoid_from_output(o)
                dc0[b, j] = dct * f
    if t >= 0:
        cc.block_squares(sqs, sq_part, t, blk, S, B, H, zero)


_FORWARD = (_launch.Phase(_forward_step, gates=4),)
_BACKWARD = (_launch.Phase(_backward_step),)


def lstm_forward(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq):
    with cc.DeviceCall() as d:
        x_proj, w_hh_t, b_hh, h0, c0 = d.inputs(x_proj, w_hh_t, b_hh, h0, c0)
        gates, c_seq, h_seq = d.outputs(gates, c_seq, h_seq)
        _launch.forward(_FORWARD, [w_hh_t], (x_proj, b_hh, h0, c0, gates, c_seq, h_seq))


def lstm_backward(dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh, dpre, dh0, dc0, dh_norms):
    with cc.DeviceCall() as d:
        dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh = d.inputs(
            dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh
        )
        dpre, dh0, dc0, dh_norms = d.outputs(dpre, dh0, dc0, dh_norms)
        dc0.copy_to_device(dc_last)  # dc0 carries dL/dc_t through the loop
        args = (dh_out, dh_last, gates, c_seq, c0, dpre, dh0, dc0)
        _launch.backward(_BACKWARD, [w_hh], args, dh_norms)
