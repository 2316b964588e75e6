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
from . import _launch, _steps
from ._common import dsigmoid_from_output, dtanh_from_output, sigmoid, tanh_


@cuda.jit(device=True)
def _operands(t, args):
    x_proj, _, h0, c0, _, c_seq, h_seq = args
    T, B, G = x_proj.shape
    h_prev = h0 if t == 0 else h_seq[t - 1]
    return h_prev, (c0 if t == 0 else c_seq[t - 1]), B, G // 4, G // 4


@cuda.jit(device=True)
def _gates(t, b, j, sums, c_prev, args):
    x_proj, b_hh, _, _, gates, c_seq, h_seq = args
    H = x_proj.shape[2] // 4
    ai, af, ag, ao = sums
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
def _grad_operands(args):
    """dL/dh_t through the recurrence: dpre_{t+1} . w_hh[:, j], K = 4H."""
    dh_out, dh_last, gates, _, _, dpre, dh0, _, _ = args
    T, B, G = gates.shape
    return dpre, G, dh_out, dh_last, dh0, T, B, G // 4


@cuda.jit(device=True)
def _grad(t, b, j, gh, args):
    _, _, gates, c_seq, c0, dpre, _, dc0, _ = args
    H = gates.shape[2] // 4
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


_FORWARD = (_steps.dot_phase(4, _operands, _gates),)
_BACKWARD = (_steps.gradient_phase(_grad_operands, _steps.as_is, _grad),)


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
