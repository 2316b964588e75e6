"""GRU cell (torch.nn.GRU), CPU. Gate order r, z, n; reset applied to W_hn h + b_hn.

    r = sigmoid(xr + hr), z = sigmoid(xz + hz), n = tanh(xn + r hn),  h_t = (1 - z) n + z h_{t-1}
    where [hr, hz, hn] = h_{t-1} W_hh^T + b_hh

Shapes (time-major inside the kernel):
    x_proj:   [T, B, 3H] W_ih x_t + b_ih for all steps, computed once by one GEMM
    w_hh_t:   [H, 3H]    recurrent weights transposed from torch's [3H, H] (forward)
    w_hh:     [3H, H]    recurrent weights in torch's layout (backward)
    b_hh:     [3H]
    h0:       [B, H]
    gates:    [T, B, 4H] saved r, z, n and hn (needed by dL/dr); backward needs them as-is
    h_seq:    [T, B, H]  hidden states, the layer's output
    dh_out:   [T, B, H]  dL/dh_t from the consumers; dh_last: [B, H] from the final state
    dx_proj:  [T, B, 3H] dL/dx_proj
    dh_proj:  [T, B, 3H] dL/d(h W_hh^T + b_hh); differs from dx_proj in the n block (times r)
    dh0:      [B, H];    dh_norms: [T] ||dL/dh_t||, L2 over H, mean over B
"""

from math import sqrt

import numpy as np
from numba import njit

from .. import config
from .._math import dsigmoid_from_output, dtanh_from_output, sigmoid, tanh_


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def gru_forward(x_proj, w_hh_t, b_hh, h0, gates, h_seq):
    T, B, G = x_proj.shape
    H = G // 3
    rec = np.empty((B, G), dtype=x_proj.dtype)  # (B, 3H)
    h_prev = h0
    for t in range(T):
        np.dot(h_prev, w_hh_t, rec)
        for b in range(B):
            for j in range(H):
                hn = rec[b, 2 * H + j] + b_hh[2 * H + j]
                r = sigmoid(x_proj[t, b, j] + rec[b, j] + b_hh[j])
                z = sigmoid(x_proj[t, b, H + j] + rec[b, H + j] + b_hh[H + j])
                n = tanh_(x_proj[t, b, 2 * H + j] + r * hn)
                gates[t, b, j] = r
                gates[t, b, H + j] = z
                gates[t, b, 2 * H + j] = n
                gates[t, b, 3 * H + j] = hn
                h_seq[t, b, j] = (1.0 - z) * n + z * h_prev[b, j]
        h_prev = h_seq[t]


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def gru_backward(dh_out, dh_last, gates, h_seq, h0, w_hh, dx_proj, dh_proj, dh0, dh_norms):
    T, B, H = h_seq.shape
    dh = dh_last.copy()  # (B, H)
    direct = np.empty((B, H), dtype=h_seq.dtype)  # dL/dh_{t-1} through the z-gated skip
    for t in range(T - 1, -1, -1):
        h_prev = h_seq[t - 1] if t > 0 else h0
        norm_sum = 0.0
        for b in range(B):
            sq = 0.0
            for j in range(H):
                gh = dh[b, j] + dh_out[t, b, j]
                sq += gh * gh
                r = gates[t, b, j]
                z = gates[t, b, H + j]
                n = gates[t, b, 2 * H + j]
                hn = gates[t, b, 3 * H + j]
                dn = gh * (1.0 - z) * dtanh_from_output(n)
                dz = gh * (h_prev[b, j] - n) * dsigmoid_from_output(z)
                dr = dn * hn * dsigmoid_from_output(r)
                dx_proj[t, b, j] = dr
                dx_proj[t, b, H + j] = dz
                dx_proj[t, b, 2 * H + j] = dn
                dh_proj[t, b, j] = dr
                dh_proj[t, b, H + j] = dz
                dh_proj[t, b, 2 * H + j] = dn * r
                direct[b, j] = gh * z
            norm_sum += sqrt(sq)
        dh_norms[t] = norm_sum / B
        np.dot(dh_proj[t], w_hh, dh)
        dh += direct
    dh0[:] = dh
