"""GRU cell (torch.nn.GRU), CUDA. Same cell and shapes as kernels/cpu/gru.py.

The contract here is gru_forward / gru_backward with the arguments of the CPU whole-batch
pair, as device or host arrays. Each launch covers the whole batch: no row blocks, lo/hi/blas,
fused input or per-block partial sums. The time loop is one persistent cooperative launch, or
a launch per step where that cannot run (_launch.py, _common.py).

Unit space: the H hidden units, with 3 gate columns each in forward (dot length H, h_{t-1})
and one column of w_hh each in backward (dot length 3H: dL/d(h W_hh^T + b_hh)_{t+1} =
[dr, dz, dn r], read as dx_proj_{t+1}'s r and z blocks, then dhn_{t+1}). The CPU kernel's
scratch has no twin: dh0 carries the z-gated skip term gh_t z_t to step t-1, each entry
owned by one thread (its ``direct``), and the dot product reads dx_proj and dhn in turn
(its ``drec`` holds the step's [dr, dz, dn r] side by side).
"""

from numba import cuda

from . import _common as cc
from . import _launch, _steps
from ._common import dsigmoid_from_output, dtanh_from_output, sigmoid, tanh_


@cuda.jit(device=True)
def _operands(t, args):
    x_proj, _, h0, _, h_seq = args
    T, B, G = x_proj.shape
    h_prev = h0 if t == 0 else h_seq[t - 1]
    return h_prev, h_prev, B, G // 3, G // 3


@cuda.jit(device=True)
def _gates(t, b, j, sums, h_prev, args):
    x_proj, b_hh, _, gates, h_seq = args
    H = x_proj.shape[2] // 3
    ar, az, an, _ = sums
    hn = an + b_hh[2 * H + j]
    r = sigmoid(x_proj[t, b, j] + ar + b_hh[j])
    z = sigmoid(x_proj[t, b, H + j] + az + b_hh[H + j])
    n = tanh_(x_proj[t, b, 2 * H + j] + r * hn)
    gates[t, b, j] = r
    gates[t, b, H + j] = z
    gates[t, b, 2 * H + j] = n
    gates[t, b, 3 * H + j] = hn
    h_seq[t, b, j] = (type(z)(1.0) - z) * n + z * h_prev[b, j]


@cuda.jit(device=True)
def _grad_operands(args):
    """[dr, dz, dn r]_{t+1} . w_hh[:, j]: dx_proj's r and z blocks (K = 2H), then _n_block."""
    dh_out, dh_last, _, h_seq, _, dx_proj, _, dh0, _ = args
    T, B, H = h_seq.shape
    return dx_proj, 2 * H, dh_out, dh_last, dh0, T, B, H


@cuda.jit(device=True)
def _n_block(s, b, K, w, col, lane, ks, live, zero, args, sums):
    """sums plus the lane's partial sums of dhn_s[b] . w_hh[2H:, j] (K = 2H: column j's n
    rows start at w[col + K])."""
    n = cc.dots(args[6][s], b, K // 2, w, col + K, 0, lane, ks, live, zero, 1)
    return sums[0] + n[0], sums[1], sums[2], sums[3]


@cuda.jit(device=True)
def _skip(a, b, j, args):
    """dh0 holds gh_{t+1} z_{t+1}, the z-gated skip term."""
    return a + args[7][b, j]


@cuda.jit(device=True)
def _grad(t, b, j, gh, args):
    _, _, gates, h_seq, h0, dx_proj, dhn, dh0, _ = args
    H = h_seq.shape[2]
    h_prev = h0[b, j] if t == 0 else h_seq[t - 1, b, j]
    r = gates[t, b, j]
    z = gates[t, b, H + j]
    n = gates[t, b, 2 * H + j]
    hn = gates[t, b, 3 * H + j]
    dn = gh * (type(z)(1.0) - z) * dtanh_from_output(n)
    dz = gh * (h_prev - n) * dsigmoid_from_output(z)
    dr = dn * hn * dsigmoid_from_output(r)
    dx_proj[t, b, j] = dr
    dx_proj[t, b, H + j] = dz
    dx_proj[t, b, 2 * H + j] = dn
    dhn[t, b, j] = dn * r
    dh0[b, j] = gh * z


_FORWARD = (_steps.dot_phase(3, _operands, _gates),)
_BACKWARD = (_steps.gradient_phase(_grad_operands, _skip, _grad, _n_block),)


def gru_forward(x_proj, w_hh_t, b_hh, h0, gates, h_seq):
    with cc.DeviceCall() as d:
        x_proj, w_hh_t, b_hh, h0 = d.inputs(x_proj, w_hh_t, b_hh, h0)
        gates, h_seq = d.outputs(gates, h_seq)
        _launch.forward(_FORWARD, [w_hh_t], (x_proj, b_hh, h0, gates, h_seq))


def gru_backward(dh_out, dh_last, gates, h_seq, h0, w_hh, dx_proj, dhn, dh0, dh_norms):
    with cc.DeviceCall() as d:
        dh_out, dh_last, gates, h_seq, h0, w_hh = d.inputs(dh_out, dh_last, gates, h_seq, h0, w_hh)
        dx_proj, dhn, dh0, dh_norms = d.outputs(dx_proj, dhn, dh0, dh_norms)
        args = (dh_out, dh_last, gates, h_seq, h0, dx_proj, dhn, dh0)
        _launch.backward(_BACKWARD, [w_hh], args, dh_norms)
