"""Jordan cell (output recurrence), CPU.

    h_t = tanh(x_proj_t + y_{t-1} W_yh^T),   y_t = h_t W_hy^T + b_hy

The recurrent state is the output y (size O), not h.

Shapes (time-major inside the kernel):
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
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import dtanh_from_output, tanh_


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def jordan_forward(x_proj, w_yh_t, w_hy_t, b_hy, y0, h_seq, y_seq):
    T, B, H = x_proj.shape
    O = y0.shape[1]
    rec = np.empty((B, H), dtype=x_proj.dtype)  # (B, H)
    y_prev = y0
    for t in range(T):
        np.dot(y_prev, w_yh_t, rec)
        for b in range(B):
            for j in range(H):
                h_seq[t, b, j] = tanh_(x_proj[t, b, j] + rec[b, j])
        np.dot(h_seq[t], w_hy_t, y_seq[t])
        for b in range(B):
            for k in range(O):
                y_seq[t, b, k] += b_hy[k]
        y_prev = y_seq[t]


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def jordan_backward(dy_out, dy_last, h_seq, w_yh, w_hy, dy_tot, dpre, dy0, dh_norms):
    T, B, H = h_seq.shape
    O = dy_last.shape[1]
    dy = dy_last.copy()  # (B, O)
    dh = np.empty((B, H), dtype=h_seq.dtype)
    for t in range(T - 1, -1, -1):
        norm_sum = 0.0
        for b in range(B):
            sq = 0.0
            for k in range(O):
                g = dy[b, k] + dy_out[t, b, k]
                dy_tot[t, b, k] = g
                sq += g * g
            norm_sum += sqrt(sq)
        dh_norms[t] = norm_sum / B
        np.dot(dy_tot[t], w_hy, dh)
        for b in range(B):
            for j in range(H):
                dpre[t, b, j] = dh[b, j] * dtanh_from_output(h_seq[t, b, j])
        np.dot(dpre[t], w_yh, dy)
    dy0[:] = dy
