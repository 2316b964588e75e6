"""LSTM cell (torch.nn.LSTM), CPU. Gate order i, f, g, o.

    i, f, o = sigmoid(.), g = tanh(.) of x_proj_t + h_{t-1} W_hh^T + b_hh
    c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)

Shapes (time-major inside the kernel):
    x_proj:   [T, B, 4H] W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, 4H]    recurrent weights transposed from torch's [4H, H] (forward)
    w_hh:     [4H, H]    recurrent weights in torch's layout (backward)
    b_hh:     [4H]
    h0, c0:   [B, H]
    gates:    [T, B, 4H] saved activations i, f, g, o; backward needs them as-is
    c_seq:    [T, B, H]  cell states
    h_seq:    [T, B, H]  hidden states, the layer's output
    dh_out:   [T, B, H]  dL/dh_t from the consumers; dh_last, dc_last: [B, H] from the final state
    dpre:     [T, B, 4H] dL/d(gate pre-activations) = dL/dx_proj = dL/d(h W_hh^T + b_hh)
    dh0, dc0: [B, H];    dh_norms: [T] ||dL/dh_t||, L2 over H, mean over B
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import dsigmoid_from_output, dtanh_from_output, sigmoid, tanh_


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def lstm_forward(x_proj, w_hh_t, b_hh, h0, c0, gates, c_seq, h_seq):
    T, B, G = x_proj.shape
    H = G // 4
    rec = np.empty((B, G), dtype=x_proj.dtype)  # (B, 4H)
    h_prev = h0
    c_prev = c0
    for t in range(T):
        np.dot(h_prev, w_hh_t, rec)
        for b in range(B):
            for j in range(H):
                i = sigmoid(x_proj[t, b, j] + rec[b, j] + b_hh[j])
                f = sigmoid(x_proj[t, b, H + j] + rec[b, H + j] + b_hh[H + j])
                g = tanh_(x_proj[t, b, 2 * H + j] + rec[b, 2 * H + j] + b_hh[2 * H + j])
                o = sigmoid(x_proj[t, b, 3 * H + j] + rec[b, 3 * H + j] + b_hh[3 * H + j])
                c = f * c_prev[b, j] + i * g
                gates[t, b, j] = i
                gates[t, b, H + j] = f
                gates[t, b, 2 * H + j] = g
                gates[t, b, 3 * H + j] = o
                c_seq[t, b, j] = c
                h_seq[t, b, j] = o * tanh_(c)
        h_prev = h_seq[t]
        c_prev = c_seq[t]


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def lstm_backward(dh_out, dh_last, dc_last, gates, c_seq, c0, w_hh, dpre, dh0, dc0, dh_norms):
    T, B, G = gates.shape
    H = G // 4
    dh = dh_last.copy()  # (B, H)
    dc = dc_last.copy()  # (B, H)
    for t in range(T - 1, -1, -1):
        c_prev = c_seq[t - 1] if t > 0 else c0
        norm_sum = 0.0
        for b in range(B):
            sq = 0.0
            for j in range(H):
                gh = dh[b, j] + dh_out[t, b, j]
                sq += gh * gh
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                o = gates[t, b, 3 * H + j]
                tc = tanh_(c_seq[t, b, j])
                dct = dc[b, j] + gh * o * dtanh_from_output(tc)
                dpre[t, b, j] = dct * g * dsigmoid_from_output(i)
                dpre[t, b, H + j] = dct * c_prev[b, j] * dsigmoid_from_output(f)
                dpre[t, b, 2 * H + j] = dct * i * dtanh_from_output(g)
                dpre[t, b, 3 * H + j] = gh * tc * dsigmoid_from_output(o)
                dc[b, j] = dct * f
            norm_sum += sqrt(sq)
        dh_norms[t] = norm_sum / B
        np.dot(dpre[t], w_hh, dh)
    dh0[:] = dh
    dc0[:] = dc
