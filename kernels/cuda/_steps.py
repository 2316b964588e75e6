"""The two shapes of a recurrence step that every cell shares; a cell module supplies only
what is its own: where its operands are, and its math per (batch row, unit). Both build the
device function ``step(t, blk, w, w0, kp, S, ks, args, red, zero)`` of _launch.py's contract
and return it as a ``_launch.Phase``. numba inlines the cell's functions into the step, and
the step into the kernel: the PTX holds the instructions the hand-written steps compiled
to (compared at cc 9.0 when these replaced them; some come in another order).

``dot_phase(gates, operands, finish)``: for each (batch row b, unit j) of the block, the
``gates`` dot products of vec[b, :K] with unit j's weight columns, summed over the thread
group, then ``finish(t, b, j, sums, prev, args)`` on the group's first lane (``sums`` a
4-tuple, as ``_common.dots`` returns). ``operands(t, args)`` -> (vec, prev, B, U, K); prev
is what finish reads of step t-1 (LSTM's c_{t-1}, GRU's h_{t-1}), selected once a step as
the hand-written steps did, not once a unit. The forward steps, and Jordan's hidden-unit
gradient.

``gradient_phase(operands, carry, finish, more)``: dL/d(state_t) of unit j, the first phase
of a backward step. At t = T-1 it is d_last[b, j]; before, ``carry(a, b, j, args)`` with a =
dpre_{t+1}[b] . w[:, j] (a itself, or GRU's a plus its skip term). At t = -1 it goes to
d_first (the initial state's gradient) and nothing else runs; otherwise g = it +
d_out[t, b, j], g^2 goes to the block's share of ||dL/d state_t|| (``sq_part``, the last
of ``args``) and ``finish(t, b, j, g, args)`` does the rest of the cell's gradient.
``operands(args)`` -> (src, K, d_out, d_last, d_first, T, B, U); src[t + 1] is dpre_{t+1}
[B, K], or its first K columns where ``more(s, b, K, w, col, lane, ks, live, zero, args,
sums)`` adds the lane's partial sums over the rest (s = t + 1; ``sums`` and what it returns
as ``_common.dots`` gives them): GRU's dpre lies in two arrays.
"""

from numba import cuda

from . import _common as cc
from ._launch import Phase


@cuda.jit(device=True)
def as_is(a, b, j, args):
    """``carry`` of a cell whose state gradient is the recurrent product alone."""
    return a


@cuda.jit(device=True)
def nothing_more(s, b, K, w, col, lane, ks, live, zero, args, sums):
    """``more`` of a cell whose dpre_s is src[s] alone."""
    return sums


def dot_phase(gates, operands, finish):
    @cuda.jit(device=True)
    def step(t, blk, w, w0, kp, S, ks, args, red, zero):
        vec, prev, B, U, K = operands(t, args)
        lane, grp, ngrp = cc.thread_group(ks)
        for base in range(0, B * S, ngrp):
            b, j, live = cc.pair(base + grp, grp, ngrp, blk, S, B, U)
            col = w0 + (j - blk * S) * kp  # gate 0's column; gate q's is q*S*kp further
            sums = cc.dots(vec, b, K, w, col, S * kp, lane, ks, live, zero, gates)
            sums = cc.reduce(red, sums, lane, ks, gates)
            if live and lane == 0:
                finish(t, b, j, sums, prev, args)

    return Phase(step, gates)


def gradient_phase(operands, carry, finish, more=nothing_more):
    @cuda.jit(device=True)
    def step(t, blk, w, w0, kp, S, ks, args, red, zero):
        src, K, d_out, d_last, d_first, T, B, U = operands(args)
        sqs = red[cc.cu.blockDim.x :]  # after the group sums
        lane, grp, ngrp = cc.thread_group(ks)
        for base in range(0, B * S, ngrp):
            p = base + grp
            b, j, live = cc.pair(p, grp, ngrp, blk, S, B, U)
            a = zero
            if t + 1 < T:  # dpre_{t+1} . w[:, j]
                col = w0 + (j - blk * S) * kp
                a = cc.dots(src[t + 1], b, K, w, col, 0, lane, ks, live, zero, 1)
                a = more(t + 1, b, K, w, col, lane, ks, live, zero, args, a)
                a = cc.reduce(red, a, lane, ks, 1)[0]
            if live and lane == 0:
                d = carry(a, b, j, args) if t + 1 < T else d_last[b, j]
                if t < 0:
                    d_first[b, j] = d
                else:
                    g = d + d_out[t, b, j]
                    sqs[p] = g * g
                    finish(t, b, j, g, args)
        if t >= 0:
            cc.block_squares(sqs, args[-1], t, blk, S, B, U, zero)

    return Phase(step)
