"""Elman cell (torch.nn.RNN), CUDA. h_t = act(x_proj_t + h_{t-1} W_hh^T + b_hh), act tanh or relu.
Mirrors kernels/cpu/elman.py.

Shapes (time-major inside the kernel; device or host arrays):
    x_proj:   [T, B, H]  W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, H]     recurrent weights transposed from torch's [H, H] (forward)
    w_hh:     [H, H]     recurrent weights in torch's layout (backward)
    b_hh:     [H]
    h0:       [B, H]     initial state
    h_seq:    [T, B, H]  hidden states, the layer's output; backward reads them as saved
    dh_out:   [T, B, H]  dL/dh_t arriving from the layer's consumers
    dh_last:  [B, H]     dL/dh_T arriving from the final state
    dpre:     [T, B, H]  dL/d(pre-activation); equals dL/dx_proj and dL/d(h W_hh^T + b_hh)
    dh0:      [B, H]     dL/dh0
    dh_norms: [T]        ||dL/dh_t|| (total, through time), L2 over H, mean over B

Unit space: the H hidden units, 1 column per unit; dot length H both ways (h_{t-1} forward,
dpre_{t+1} backward).
"""

import functools

import numba
import numpy as np
from numba import cuda

from . import _common as cc
from ._common import drelu_from_output, dtanh_from_output, relu, tanh_


@cuda.jit(device=True)
def _forward_step(t, blk, x_proj, w, w0, kp, S, ks, b_hh, h0, use_relu, h_seq, red, zero):
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
def _backward_step(
    t, blk, w, w0, kp, S, ks, dh_out, dh_last, h_seq, use_relu, dpre, dh0, sq_part, red, sqs, zero
):
    """Step t (T-1 down to 0); t == -1 only writes dh0 = dpre_0 W_hh."""
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


@functools.cache
def _kernels(dtype):
    dt = numba.from_dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit
    def forward_persistent(x_proj, packed, kp, S, ks, b_hh, h0, use_relu, h_seq):
        sm = cuda.shared.array(0, dt)  # [w slice S*kp][group sums tpb]
        blk = cuda.blockIdx.x
        nw = S * kp
        cc.load_slice(sm, 0, packed, blk * nw, nw)
        red = sm[nw:]
        grid = cuda.cg.this_grid()
        for t in range(x_proj.shape[0]):
            _forward_step(t, blk, x_proj, sm, 0, kp, S, ks, b_hh, h0, use_relu, h_seq, red, zero)
            grid.sync()

    @cuda.jit
    def forward_step(t, x_proj, packed, kp, S, ks, b_hh, h0, use_relu, h_seq):
        red = cuda.shared.array(0, dt)
        blk = cuda.blockIdx.x
        _forward_step(
            t, blk, x_proj, packed, blk * S * kp, kp, S, ks, b_hh, h0, use_relu, h_seq, red, zero
        )

    @cuda.jit
    def backward_persistent(
        packed, kp, S, ks, dh_out, dh_last, h_seq, use_relu, dpre, dh0, sq_part
    ):
        sm = cuda.shared.array(0, dt)  # [w slice S*kp][group sums tpb][squares B*S]
        blk = cuda.blockIdx.x
        nw = S * kp
        cc.load_slice(sm, 0, packed, blk * nw, nw)
        red = sm[nw:]
        sqs = sm[nw + cuda.blockDim.x :]
        grid = cuda.cg.this_grid()
        for t in range(h_seq.shape[0] - 1, -2, -1):
            _backward_step(
                t,
                blk,
                sm,
                0,
                kp,
                S,
                ks,
                dh_out,
                dh_last,
                h_seq,
                use_relu,
                dpre,
                dh0,
                sq_part,
                red,
                sqs,
                zero,
            )
            grid.sync()

    @cuda.jit
    def backward_step(t, packed, kp, S, ks, dh_out, dh_last, h_seq, use_relu, dpre, dh0, sq_part):
        sm = cuda.shared.array(0, dt)  # [group sums tpb][squares B*S]
        blk = cuda.blockIdx.x
        _backward_step(
            t,
            blk,
            packed,
            blk * S * kp,
            kp,
            S,
            ks,
            dh_out,
            dh_last,
            h_seq,
            use_relu,
            dpre,
            dh0,
            sq_part,
            sm,
            sm[cuda.blockDim.x :],
            zero,
        )

    return forward_persistent, forward_step, backward_persistent, backward_step


def elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq):
    with cc.DeviceCall() as d:
        x_proj, w_hh_t, b_hh, h0 = d.inputs(x_proj, w_hh_t, b_hh, h0)
        (h_seq,) = d.outputs(h_seq)
        T, B, H = x_proj.shape
        dtype = np.dtype(x_proj.dtype)
        persistent, step = _kernels(dtype)[:2]
        tail = (b_hh, h0, bool(use_relu), h_seq)
        probe = (x_proj, np.empty(1, dtype), 1, 1, 1, *tail)
        plan = cc.plan_recurrence([(H, 1, H)], B, dtype, 1, persistent=(persistent, probe))
        sp = plan.spaces[0]
        packed = cc.pack_slices(w_hh_t, sp, plan.blocks or sp.blocks)
        geo = (packed, sp.kp, sp.per_block, sp.split)
        if plan.persistent:
            persistent[plan.blocks, plan.threads, 0, plan.persistent_shared](x_proj, *geo, *tail)
        else:
            launch = step[sp.blocks, plan.threads, 0, plan.step_shared(0)]
            for t in range(T):
                launch(t, x_proj, *geo, *tail)


def elman_backward(dh_out, dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms):
    with cc.DeviceCall() as d:
        dh_out, dh_last, h_seq, w_hh = d.inputs(dh_out, dh_last, h_seq, w_hh)
        dpre, dh0, dh_norms = d.outputs(dpre, dh0, dh_norms)
        T, B, H = h_seq.shape
        dtype = np.dtype(h_seq.dtype)
        persistent, step = _kernels(dtype)[2:]
        tail = (dh_out, dh_last, h_seq, bool(use_relu), dpre, dh0)
        probe = (np.empty(1, dtype), 1, 1, 1, *tail, np.empty((1, 1, 1), dtype))
        plan = cc.plan_recurrence([(H, 1, H)], B, dtype, 1, norms=0, persistent=(persistent, probe))
        sp = plan.spaces[0]
        blocks = plan.blocks or sp.blocks
        packed = cc.pack_slices(w_hh, sp, blocks)
        sq_part = cuda.device_array((T, blocks, B), dtype=dtype)
        geo = (packed, sp.kp, sp.per_block, sp.split)
        if plan.persistent:
            persistent[blocks, plan.threads, 0, plan.persistent_shared](*geo, *tail, sq_part)
        else:
            launch = step[blocks, plan.threads, 0, plan.step_shared(0)]
            for t in range(T - 1, -2, -1):
                launch(t, *geo, *tail, sq_part)
        cc.finish_norms(sq_part, dh_norms)
