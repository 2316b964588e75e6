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
from . import _launch, _steps
from ._common import drelu_from_output, dtanh_from_output, relu, tanh_


@cuda.jit(device=True)
def _operands(t, args):
    x_proj, _, h0, _, h_seq = args
    T, B, H = x_proj.shape
    h_prev = h0 if t == 0 else h_seq[t - 1]
    return h_prev, h_prev, B, H, H


@cuda.jit(device=True)
def _activate(t, b, j, sums, _, args):
    x_proj, b_hh, _, use_relu, h_seq = args
    z = x_proj[t, b, j] + sums[0] + b_hh[j]
    h_seq[t, b, j] = relu(z) if use_relu else tanh_(z)


@cuda.jit(device=True)
def _grad_operands(args):
    dh_out, dh_last, h_seq, _, dpre, dh0, _ = args
    T, B, H = h_seq.shape
    return dpre, H, dh_out, dh_last, dh0, T, B, H


@cuda.jit(device=True)
def _grad(t, b, j, g, args):
    _, _, h_seq, use_relu, dpre, _, _ = args
    s = h_seq[t, b, j]
    dpre[t, b, j] = g * (drelu_from_output(s) if use_relu else dtanh_from_output(s))


_FORWARD = (_steps.dot_phase(1, _operands, _activate),)
_BACKWARD = (_steps.gradient_phase(_grad_operands, _steps.as_is, _grad),)


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
