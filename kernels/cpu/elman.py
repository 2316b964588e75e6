"""Elman cell (torch.nn.RNN), CPU. h_t = act(x_proj_t + h_{t-1} W_hh^T + b_hh), act tanh or relu.

Shapes (time-major inside the kernel):
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
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import drelu_from_output, dtanh_from_output, relu, tanh_


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def elman_forward(x_proj, w_hh_t, b_hh, h0, use_relu, h_seq):
    T, B, H = x_proj.shape
    rec = np.empty((B, H), dtype=x_proj.dtype)  # (B, H)
    h_prev = h0
    for t in range(T):
        np.dot(h_prev, w_hh_t, rec)
        for b in range(B):
            for j in range(H):
                z = x_proj[t, b, j] + rec[b, j] + b_hh[j]
                h_seq[t, b, j] = relu(z) if use_relu else tanh_(z)
        h_prev = h_seq[t]


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def elman_backward(dh_out, dh_last, h_seq, w_hh, use_relu, dpre, dh0, dh_norms):
    T, B, H = h_seq.shape
    dh = dh_last.copy()  # (B, H): dL/dh_t through time, then dh0
    for t in range(T - 1, -1, -1):
        norm_sum = 0.0
        for b in range(B):
            sq = 0.0
            for j in range(H):
                g = dh[b, j] + dh_out[t, b, j]
                sq += g * g
                s = h_seq[t, b, j]
                d = drelu_from_output(s) if use_relu else dtanh_from_output(s)
                dpre[t, b, j] = g * d
            norm_sum += sqrt(sq)
        dh_norms[t] = norm_sum / B
        np.dot(dpre[t], w_hh, dh)
    dh0[:] = dh
