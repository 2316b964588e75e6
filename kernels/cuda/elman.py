"""Elman cell (torch.nn.RNN), CUDA. Same cell and shapes as kernels/cpu/elman.py.

The contract here is elman_forward / elman_backward with the arguments of the CPU whole-batch
pair, as device or host arrays. Each launch covers the whole batch: no row blocks, lo/hi/blas,
fused input or per-block partial sums. The time loop is one persistent cooperative launch, or
a launch per step where that cannot run (_launch.py, _common.py).

Unit space: the H hidden units, 1 column per unit; dot length H both ways (h_{t-1} forward,
dpre_{t+1} backward).
"""

from numba import cuda

from . import _common as cc
from . import _launch
from ._common import drelu_from_output, dtanh_from_output, relu, tanh_


@cuda.jit(device=True)
def _forward_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    x_proj, b_hh, h0, use_relu, h_seq = args
    T, B, H = x_proj.shape
    h_prev = h0 if t == 0 else h_seq[t - 1]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, H)
        a = cc.dots1(h_prev, b, H, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
        a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            z = x_proj[t, b, j] + a + b_hh[j]
            h_seq[t, b, j] = relu(z) if use_relu else tanh_(z)


@cuda.jit(device=True)
def _backward_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    """Step t (T-1 down to 0); t == -1 only writes dh0 = dpre_0 W_hh."""
    dh_out, dh_last, h_seq, use_relu, dpre, dh0, sq_part = args
    sqs = red[cc.cu.blockDim.x :]  # after the group sums
    T, B, H = h_seq.shape
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        p = base + grp
        b, j, live = cc.pair(p, grp, ngrp, blk, S, B, H)
        a = zero
        if t + 1 < T:  # dpre_{t+1} . w_hh[:, j]
            a = cc.dots1(dpre[t + 1], b, H, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
            a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            dh = a if t + 1 < T else dh_last[b, j]
            if t < 0:
                dh0[b, j] = dh
            else:
                g = dh + dh_out[t, b, j]
                sqs[p] = g * g
                s = h_seq[t, b, j]
                dpre[t, b, j] = g * (drelu_from_output(s) if use_relu else dtanh_from_output(s))
    if t >= 0:
        cc.block_squares(sqs, sq_part, t, blk, S, B, H, zero)


_FORWARD = (_launch.Phase(_forward_step),)
_BACKWARD = (_launch.Phase(_backward_step),)


def elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq):
    with cc.DeviceCall() as d:
        x_proj, w_hh_t, b_hh, h0 = d.inputs(x_proj, w_hh_t, b_hh, h0)
        (h_seq,) = d.outputs(h_seq)
        _launch.forward(_FORWARD, [w_hh_t], (x_proj, b_hh, h0, bool(use_relu), h_seq))


def elman_backward(dh_out, dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms):
    with cc.DeviceCall() as d:
        dh_out, dh_last, h_seq, w_hh = d.inputs(dh_out, dh_last, h_seq, w_hh)
        dpre, dh0, dh_norms = d.outputs(dpre, dh0, dh_norms)
        args = (dh_out, dh_last, h_seq, bool(use_relu), dpre, dh0)
        _launch.backward(_BACKWARD, [w_hh], args, dh_norms)
