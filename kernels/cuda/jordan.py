"""Jordan cell (output recurrence), CUDA. Mirrors kernels/cpu/jordan.py.

    h_t = tanh(x_proj_t + y_{t-1} W_yh^T),   y_t = h_t W_hy^T + b_hy

The recurrent state is the output y (size O), not h.

Shapes (time-major inside the kernel; device or host arrays):
    x_proj:   [T, B, H]  W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_yh_t:   [O, H]     output-to-hidden weights transposed from [H, O] (forward)
    w_hy_t:   [H, O]     hidden-to-output weights transposed from [O, H] (forward)
    b_hy:     [O]
    y0:       [B, O]     initial output state
    h_seq:    [T, B, H]  hidden activations, saved for backward
    y_seq:    [T, B, O]  outputs, the layer's output and its recurrent state
    dy_out:   [T, B, O]  dL/dy_t from the consumers; dy_last: [B, O] from the final state
    w_yh:     [H, O], w_hy: [O, H] in their own layouts (backward)
    dy_tot:   [T, B, O]  dL/dy_t through time (feeds dW_hy, db_hy)
    dpre:     [T, B, H]  dL/d(hidden pre-activation) = dL/dx_proj
    dy0:      [B, O];    dh_norms: [T] ||dL/dy_t|| (the recurrent state), mean over B

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
