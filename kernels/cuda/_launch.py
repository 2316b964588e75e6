"""The recurrence's kernels and launches, built once for every cell from its step functions.
How the units are split over the GPU, and the two launch paths, are in _common.py.

A cell declares each direction as a tuple of phases, the unit spaces one time step visits in
order (Elman, GRU and LSTM one, Jordan two), each a device function (built by _steps.py
from the cell's own parts)

    step(t, blk, w, w0, kp, S, ks, args, red, zero)

that computes step t for block blk's units: weight slice at w[w0:] (K padded to kp, S units,
ks threads a dot product), ``args`` the cell's own arrays as one tuple, the same for every
phase, ``red`` the block's scratch [group sums gates*tpb][squares B*S], ``zero`` of the dtype.

Forward runs t = 0 .. T-1. Backward runs t = T-1 .. 0 and then t = -1, where only the first
phase runs (it writes the initial state's gradient); its ``args`` end with ``sq_part``, where
the first phase leaves the squares of ||dL/d state_t|| for ``finish_norms``.
"""

import functools
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from . import _common as cc
from . import _plan as plans


@dataclass(frozen=True)
class Phase:
    step: object  # the device function, signature in the module docstring
    gates: int = 1  # weight columns per unit


def _times(T, backward):
    return range(T - 1, -2, -1) if backward else range(T)


_device_times = cuda.jit(device=True)(_times)  # the same steps inside the persistent kernels


def _one_phase(phases, backward, dt, zero):
    (phase,) = phases
    step, gates = phase.step, phase.gates  # numba reads closure variables, not attributes

    @cuda.jit
    def persistent(T, packed, kp, S, ks, args):
        sm = cuda.shared.array(0, dt)  # [w slice gates*S*kp][scratch]
        blk = cuda.blockIdx.x
        nw = gates * S * kp
        cc.load_slice(sm, 0, packed, blk * nw, nw)
        red = sm[nw:]
        grid = cuda.cg.this_grid()
        for t in _device_times(T, backward):
            step(t, blk, sm, 0, kp, S, ks, args, red, zero)
            grid.sync()

    return persistent


def _two_phases(phases, backward, dt, zero):
    (first, ga), (second, gb) = ((p.step, p.gates) for p in phases)

    @cuda.jit
    def persistent(T, pa, kpa, Sa, ksa, pb, kpb, Sb, ksb, args):
        sm = cuda.shared.array(0, dt)  # [slice a][slice b][scratch]
        blk = cuda.blockIdx.x
        na = ga * Sa * kpa
        nb = gb * Sb * kpb
        cc.load_slice(sm, 0, pa, blk * na, na)
        cc.load_slice(sm, na, pb, blk * nb, nb)
        red = sm[na + nb :]
        grid = cuda.cg.this_grid()
        for t in _device_times(T, backward):
            first(t, blk, sm, 0, kpa, Sa, ksa, args, red, zero)
            grid.sync()
            if t >= 0:  # t == -1 belongs to the first phase alone
                second(t, blk, sm, na, kpb, Sb, ksb, args, red, zero)
                grid.sync()

    return persistent


_PERSISTENT = {1: _one_phase, 2: _two_phases}  # by number of phases


def _per_step(phase, dt, zero):
    step, gates = phase.step, phase.gates

    @cuda.jit
    def per_step(t, packed, kp, S, ks, args):
        red = cuda.shared.array(0, dt)  # scratch only: the weights stay in global memory
        blk = cuda.blockIdx.x
        step(t, blk, packed, blk * gates * S * kp, kp, S, ks, args, red, zero)

    return per_step


@functools.cache
def _kernels(phases, backward, dtype):
    """(persistent kernel, per-step kernel of each phase), built per dtype because
    ``cuda.shared.array`` needs its dtype at compile time."""
    dt = numba.from_dtype(dtype)
    zero = dtype.type(0)
    persistent = _PERSISTENT[len(phases)](phases, backward, dt, zero)
    return persistent, [_per_step(p, dt, zero) for p in phases]


def _plan(phases, weights, args, backward, persistent):
    """The launch plan; the persistent kernel's occupancy query types placeholder args."""
    T, B = args[0].shape[:2]
    dtype = np.dtype(args[0].dtype)
    specs = [
        (w.shape[1] // p.gates, p.gates, w.shape[0]) for w, p in zip(weights, phases, strict=True)
    ]
    slices = (np.empty(1, dtype), 1, 1, 1) * len(phases)  # only their types matter
    sq_part = (np.empty((1, 1, 1), dtype),) if backward else ()  # its size needs the plan
    probe = (T, *slices, (*args, *sq_part))
    return plans.plan_recurrence(
        specs,
        B,
        dtype,
        max(p.gates for p in phases),
        norms=0 if backward else -1,
        persistent=(persistent, probe),
    )


def _pack(w, sp, plan):
    """(packed slices, kp, S, ks): what a kernel takes per unit space."""
    return (cc.pack_slices(w, sp, plan.blocks or sp.blocks), sp.kp, sp.per_block, sp.split)


def _launch_per_step(plan, per_step, geos, args, times):
    launches = [
        kernel[sp.blocks, plan.threads, 0, plan.step_shared(i)]
        for i, (kernel, sp) in enumerate(zip(per_step, plan.spaces, strict=True))
    ]
    for t in times:
        for i, (launch, geo) in enumerate(zip(launches, geos, strict=True)):
            if i == 0 or t >= 0:  # t == -1 belongs to the first phase alone
                launch(t, *geo, args)


def _run(phases, weights, args, backward):
    """Plan, pack ``weights`` (phase i's [K, gates*U]) and launch; returns sq_part."""
    T, B = args[0].shape[:2]
    dtype = np.dtype(args[0].dtype)
    persistent, per_step = _kernels(phases, backward, dtype)
    plan = _plan(phases, weights, args, backward, persistent)
    geos = [_pack(w, sp, plan) for w, sp in zip(weights, plan.spaces, strict=True)]
    sq_part = None
    if backward:  # one partial sum of squares per (step, block, batch row)
        sq_part = cuda.device_array((T, plan.blocks or plan.spaces[0].blocks, B), dtype=dtype)
        args = (*args, sq_part)
    if plan.persistent:
        flat = [x for geo in geos for x in geo]
        persistent[plan.blocks, plan.threads, 0, plan.persistent_shared](T, *flat, args)
    else:
        _launch_per_step(plan, per_step, geos, args, _times(T, backward))
    return sq_part


def forward(phases, weights, args):
    """Run the recurrence t = 0 .. T-1 on device arrays; args[0] is time-major [T, B, ...]."""
    _run(phases, weights, args, backward=False)


def backward(phases, weights, args, dh_norms):
    """Run t = T-1 .. -1 on device arrays; the steps' args get sq_part appended and
    dh_norms [T] receives ||dL/d state_t|| over the first phase's units, mean over B."""
    cc.finish_norms(_run(phases, weights, args, backward=True), dh_norms)
