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

import functools

import numba
import numpy as np
from numba import cuda

from . import _common as cc
from ._common import dtanh_from_output, tanh_


@cuda.jit(device=True)
def _hidden_step(t, blk, x_proj, w, w0, kp, S, ks, y0, y_seq, h_seq, red, zero):
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
def _output_step(t, blk, w, w0, kp, S, ks, b_hy, h_seq, y_seq, red, zero):
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
def _output_grad_step(
    t, blk, w, w0, kp, S, ks, dy_out, dy_last, dpre, dy_tot, dy0, sq_part, red, sqs, zero
):
    """dL/dy_t for step t (T-1 down to 0); t == -1 only writes dy0 = dpre_0 W_yh."""
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
def _hidden_grad_step(t, blk, w, w0, kp, S, ks, dy_tot, h_seq, dpre, red, zero):
    T, B, H = h_seq.shape
    O = dy_tot.shape[2]
    lane, grp, ngrp = cc.thread_group(ks)
    for base in range(0, B * S, ngrp):
        b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, H)
        a = cc.dots1(dy_tot[t], b, O, w, w0 + (j - blk * S) * kp, lane, ks, live, zero)
        a = cc.reduce1(red, a, lane, ks)
        if live and lane == 0:
            dpre[t, b, j] = a * dtanh_from_output(h_seq[t, b, j])


@functools.cache
def _kernels(dtype):
    dt = numba.from_dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit
    def forward_persistent(x_proj, pa, kpa, Sa, ksa, pb, kpb, Sb, ksb, b_hy, y0, h_seq, y_seq):
        sm = cuda.shared.array(0, dt)  # [hidden slice][output slice][group sums tpb]
        blk = cuda.blockIdx.x
        na = Sa * kpa
        nb = Sb * kpb
        cc.load_slice(sm, 0, pa, blk * na, na)
        cc.load_slice(sm, na, pb, blk * nb, nb)
        red = sm[na + nb :]
        grid = cuda.cg.this_grid()
        for t in range(x_proj.shape[0]):
            _hidden_step(t, blk, x_proj, sm, 0, kpa, Sa, ksa, y0, y_seq, h_seq, red, zero)
            grid.sync()
            _output_step(t, blk, sm, na, kpb, Sb, ksb, b_hy, h_seq, y_seq, red, zero)
            grid.sync()

    @cuda.jit
    def hidden_step(t, x_proj, packed, kp, S, ks, y0, y_seq, h_seq):
        red = cuda.shared.array(0, dt)
        blk = cuda.blockIdx.x
        _hidden_step(t, blk, x_proj, packed, blk * S * kp, kp, S, ks, y0, y_seq, h_seq, red, zero)

    @cuda.jit
    def output_step(t, packed, kp, S, ks, b_hy, h_seq, y_seq):
        red = cuda.shared.array(0, dt)
        blk = cuda.blockIdx.x
        _output_step(t, blk, packed, blk * S * kp, kp, S, ks, b_hy, h_seq, y_seq, red, zero)

    @cuda.jit
    def backward_persistent(
        pa, kpa, Sa, ksa, pb, kpb, Sb, ksb, dy_out, dy_last, h_seq, dy_tot, dpre, dy0, sq_part
    ):
        sm = cuda.shared.array(0, dt)  # [output slice][hidden slice][group sums tpb][squares]
        blk = cuda.blockIdx.x
        na = Sa * kpa
        nb = Sb * kpb
        cc.load_slice(sm, 0, pa, blk * na, na)
        cc.load_slice(sm, na, pb, blk * nb, nb)
        red = sm[na + nb :]
        sqs = sm[na + nb + cuda.blockDim.x :]
        grid = cuda.cg.this_grid()
        for t in range(h_seq.shape[0] - 1, -2, -1):
            _output_grad_step(
                t,
                blk,
                sm,
                0,
                kpa,
                Sa,
                ksa,
                dy_out,
                dy_last,
                dpre,
                dy_tot,
                dy0,
                sq_part,
                red,
                sqs,
                zero,
            )
            grid.sync()
            if t >= 0:
                _hidden_grad_step(t, blk, sm, na, kpb, Sb, ksb, dy_tot, h_seq, dpre, red, zero)
                grid.sync()

    @cuda.jit
    def output_grad_step(t, packed, kp, S, ks, dy_out, dy_last, dpre, dy_tot, dy0, sq_part):
        sm = cuda.shared.array(0, dt)  # [group sums tpb][squares B*S]
        blk = cuda.blockIdx.x
        _output_grad_step(
            t,
            blk,
            packed,
            blk * S * kp,
            kp,
            S,
            ks,
            dy_out,
            dy_last,
            dpre,
            dy_tot,
            dy0,
            sq_part,
            sm,
            sm[cuda.blockDim.x :],
            zero,
        )

    @cuda.jit
    def hidden_grad_step(t, packed, kp, S, ks, dy_tot, h_seq, dpre):
        red = cuda.shared.array(0, dt)
        blk = cuda.blockIdx.x
        _hidden_grad_step(t, blk, packed, blk * S * kp, kp, S, ks, dy_tot, h_seq, dpre, red, zero)

    return (
        forward_persistent,
        hidden_step,
        output_step,
        backward_persistent,
        output_grad_step,
        hidden_grad_step,
    )


def _geometry(packed, sp):
    return (packed, sp.kp, sp.per_block, sp.split)


def jordan_forward(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq):
    with cc.DeviceCall() as d:
        x_proj, w_yh_t, w_hy_t, b_hy, y0 = d.inputs(x_proj, w_yh_t, w_hy_t, b_hy, y0)
        h_seq, y_seq = d.outputs(h_seq, y_seq)
        T, B, H = x_proj.shape
        O = y0.shape[1]
        dtype = np.dtype(x_proj.dtype)
        persistent, hidden_step, output_step = _kernels(dtype)[:3]
        one = np.empty(1, dtype)
        probe = (x_proj, one, 1, 1, 1, one, 1, 1, 1, b_hy, y0, h_seq, y_seq)
        plan = cc.plan_recurrence(
            [(H, 1, O), (O, 1, H)], B, dtype, 1, persistent=(persistent, probe)
        )
        sa, sb = plan.spaces
        ga = _geometry(cc.pack_slices(w_yh_t, sa, plan.blocks or sa.blocks), sa)
        gb = _geometry(cc.pack_slices(w_hy_t, sb, plan.blocks or sb.blocks), sb)
        if plan.persistent:
            persistent[plan.blocks, plan.threads, 0, plan.persistent_shared](
                x_proj, *ga, *gb, b_hy, y0, h_seq, y_seq
            )
        else:
            hidden = hidden_step[sa.blocks, plan.threads, 0, plan.step_shared(0)]
            output = output_step[sb.blocks, plan.threads, 0, plan.step_shared(1)]
            for t in range(T):
                hidden(t, x_proj, *ga, y0, y_seq, h_seq)
                output(t, *gb, b_hy, h_seq, y_seq)


def jordan_backward(dy_out, dy_last, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh_norms):
    with cc.DeviceCall() as d:
        dy_out, dy_last, h_seq, w_yh, w_hy = d.inputs(dy_out, dy_last, h_seq, w_yh, w_hy)
        dy_tot, dpre, dy0, dh_norms = d.outputs(dy_tot, dpre, dy0, dh_norms)
        T, B, H = h_seq.shape
        O = dy_last.shape[1]
        dtype = np.dtype(h_seq.dtype)
        persistent, output_grad_step, hidden_grad_step = _kernels(dtype)[3:]
        one = np.empty(1, dtype)
        probe = (
            one,
            1,
            1,
            1,
            one,
            1,
            1,
            1,
            dy_out,
            dy_last,
            h_seq,
            dy_tot,
            dpre,
            dy0,
            np.empty((1, 1, 1), dtype),
        )
        plan = cc.plan_recurrence(
            [(O, 1, H), (H, 1, O)], B, dtype, 1, norms=0, persistent=(persistent, probe)
        )
        sa, sb = plan.spaces
        blocks_a = plan.blocks or sa.blocks
        ga = _geometry(cc.pack_slices(w_yh, sa, blocks_a), sa)
        gb = _geometry(cc.pack_slices(w_hy, sb, plan.blocks or sb.blocks), sb)
        sq_part = cuda.device_array((T, blocks_a, B), dtype=dtype)
        if plan.persistent:
            persistent[plan.blocks, plan.threads, 0, plan.persistent_shared](
                *ga, *gb, dy_out, dy_last, h_seq, dy_tot, dpre, dy0, sq_part
            )
        else:
            outputs = output_grad_step[sa.blocks, plan.threads, 0, plan.step_shared(0)]
            hidden = hidden_grad_step[sb.blocks, plan.threads, 0, plan.step_shared(1)]
            for t in range(T - 1, -2, -1):
                outputs(t, *ga, dy_out, dy_last, dpre, dy_tot, dy0, sq_part)
                if t >= 0:
                    hidden(t, *gb, dy_tot, h_seq, dpre)
        cc.finish_norms(sq_part, dh_norms)
