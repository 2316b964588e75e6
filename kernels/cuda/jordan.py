"""Jordan cell (output recurrence), CUDA. Same cell and shapes as kernels/cpu/jordan.py.

The contract here is jordan_forward / jordan_backward with the arguments of the CPU whole-batch
pair, as device or host arrays. Each launch covers the whole batch: no row blocks, lo/hi/blas,
fused input or per-block partial sums. The time loop is one persistent cooperative launch, or
a launch per step where that cannot run (_launch.py, _common.py).

Two unit spaces and two phases per step, each followed by a barrier:
    forward:  hidden units (dot length O with y_{t-1}), then outputs (dot length H with h_t);
    backward: outputs (dy_tot_t from dpre_{t+1}, dot length H; the norms), then hidden units
              (dpre_t from dy_tot_t, dot length O).
"""

from numba import cuda

from . import _common as cc
from . import _launch
from ._common import dtanh_from_output, tanh_


@cuda.jit(device=True)
def _hidden_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    x_proj, _, y0, h_seq, y_seq = args
    T, B, H = x_proj.shape
    O = y0.shape[1]
    y_prev = y0 if t == 0 else y_seq[t - 1]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, H)
        a = cc.dots1(y_prev, b, O, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
        a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            h_seq[t, b, j] = tanh_(x_proj[t, b, j] + a)


@cuda.jit(device=True)
def _output_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    _, b_hy, _, h_seq, y_seq = args
    T, B, H = h_seq.shape
    O = y_seq.shape[2]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, k, live = cc.pair(base + grp, grp, ngrp, blk, S, B, O)
        a = cc.dots1(h_seq[t], b, H, w, w0 + (k - blk * S) * kp, lane, ks, live, zero)
        a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            y_seq[t, b, k] = a + b_hy[k]


@cuda.jit(device=True)
def _output_grad_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    """dL/dy_t for step t (T-1 down to 0); t == -1 only writes dy0 = dpre_0 W_yh."""
    dy_out, dy_last, _, dy_tot, dpre, dy0, sq_part = args
    sqs = red[cc.cu.blockDim.x :]  # after the group sums
    T, B, O = dy_out.shape
    H = dpre.shape[2]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        p = base + grp
        b, k, live = cc.pair(p, grp, ngrp, blk, S, B, O)
        a = zero
        if t + 1 < T:  # dpre_{t+1} . w_yh[:, k]
            a = cc.dots1(dpre[t + 1], b, H, w, w0 + (k - blk * S) * kp, lane, ks, live, zero)
            a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            dy = a if t + 1 < T else dy_last[b, k]
            if t < 0:
                dy0[b, k] = dy
            else:
                g = dy + dy_out[t, b, k]
                dy_tot[t, b, k] = g
                sqs[p] = g * g
    if t >= 0:
        cc.block_squares(sqs, sq_part, t, blk, S, B, O, zero)


@cuda.jit(device=True)
def _hidden_grad_step(t, blk, w, w0, kp, S, ks, args, red, zero):
    _, _, h_seq, dy_tot, dpre, _, _ = args
    T, B, H = h_seq.shape
    O = dy_tot.shape[2]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, H)
        a = cc.dots1(dy_tot[t], b, O, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
        a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            dpre[t, b, j] = a * dtanh_from_output(h_seq[t, b, j])


_FORWARD = (_launch.Phase(_hidden_step), _launch.Phase(_output_step))
_BACKWARD = (_launch.Phase(_output_grad_step), _launch.Phase(_hidden_grad_step))


def jordan_forward(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq):
    with cc.DeviceCall() as d:
        x_proj, w_yh_t, w_hy_t, b_hy, y0 = d.inputs(x_proj, w_yh_t, w_hy_t, b_hy, y0)
        h_seq, y_seq = d.outputs(h_seq, y_seq)
        _launch.forward(_FORWARD, [w_yh_t, w_hy_t], (x_proj, b_hy, y0, h_seq, y_seq))


def jordan_backward(dy_out, dy_last, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh_norms):
    with cc.DeviceCall() as d:
        dy_out, dy_last, h_seq, w_yh, w_hy = d.inputs(dy_out, dy_last, h_seq, w_yh, w_hy)
        dy_tot, dpre, dy0, dh_norms = d.outputs(dy_tot, dpre, dy0, dh_norms)
        args = (dy_out, dy_last, h_seq, dy_tot, dpre, dy0)
        _launch.backward(_BACKWARD, [w_yh, w_hy], args, dh_norms)
