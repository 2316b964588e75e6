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
from . import _launch, _steps
from ._common import dtanh_from_output, tanh_


@cuda.jit(device=True)
def _hidden_operands(t, args):
    x_proj, _, y0, _, y_seq = args
    T, B, H = x_proj.shape
    y_prev = y0 if t == 0 else y_seq[t - 1]
    return y_prev, y_prev, B, H, y0.shape[1]


@cuda.jit(device=True)
def _hidden(t, b, j, sums, _, args):
    x_proj, _, _, h_seq, _ = args
    h_seq[t, b, j] = tanh_(x_proj[t, b, j] + sums[0])


@cuda.jit(device=True)
def _output_operands(t, args):
    _, _, _, h_seq, y_seq = args
    T, B, H = h_seq.shape
    return h_seq[t], h_seq[t], B, y_seq.shape[2], H


@cuda.jit(device=True)
def _output(t, b, k, sums, _, args):
    _, b_hy, _, _, y_seq = args
    y_seq[t, b, k] = sums[0] + b_hy[k]


@cuda.jit(device=True)
def _output_grad_operands(args):
    """dL/dy_t; at t == -1 it writes dy0 = dpre_0 W_yh."""
    dy_out, dy_last, _, _, dpre, dy0, _ = args
    T, B, O = dy_out.shape
    return dpre, dpre.shape[2], dy_out, dy_last, dy0, T, B, O


@cuda.jit(device=True)
def _output_grad(t, b, k, g, args):
    dy_tot = args[3]
    dy_tot[t, b, k] = g


@cuda.jit(device=True)
def _hidden_grad_operands(t, args):
    _, _, h_seq, dy_tot, _, _, _ = args
    T, B, H = h_seq.shape
    return dy_tot[t], dy_tot[t], B, H, dy_tot.shape[2]


@cuda.jit(device=True)
def _hidden_grad(t, b, j, sums, _, args):
    _, _, h_seq, _, dpre, _, _ = args
    dpre[t, b, j] = sums[0] * dtanh_from_output(h_seq[t, b, j])


_FORWARD = (
    _steps.dot_phase(1, _hidden_operands, _hidden),
    _steps.dot_phase(1, _output_operands, _output),
)
_BACKWARD = (
    _steps.gradient_phase(_output_grad_operands, _steps.as_is, _output_grad),
    _steps.dot_phase(1, _hidden_grad_operands, _hidden_grad),
)


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
