"""The training step's output head and loss, CPU: a linear layer, its gradient, softmax
cross-entropy fused with its gradient, and one-pass passes over a flat gradient buffer.

Shapes (rows N: every position the head reads, B*T per step or B per sequence):
    feats:   [N, F]  features the head reads; C-contiguous
    w:       [O, F]  head.weight, torch's layout
    b:       [O]     head.bias
    out:     [N, O]  logits or predictions
    labels:  [N]     int class of each row, in [0, O)
    dout:    [N, O]  dL/dout
    dw, db:  [O, F], [O]  written (not accumulated)
    dfeats:  [N, F]  dL/dfeats, written
    g:       [P]     every parameter's gradient, one flat buffer

One thread each, no BLAS: seqbench.head sends the head's products here only while they are
small (N x F x O under its GEMM_MACS), where a BLAS call's fixed cost would dominate; larger
ones go to BLAS held to one thread. Arrays keep their dtype (float32 stays float32); the
loss and the norm accumulate in float64. The softmax's exponentials use the float32
approximation of kernels/_math.py (relative error <= 3.1e-7), which vectorises.
"""

from math import log

from numba import njit

from .. import config
from .._math import exp_kernel

_JIT = {"cache": config.CACHE, "fastmath": config.FASTMATH, "error_model": config.ERROR_MODEL}


@njit(**_JIT)
def linear_forward(feats, w, b, out):
    # out[n, o] = b[o] + sum_f feats[n, f] w[o, f]
    N, F = feats.shape
    O = w.shape[0]
    for n in range(N):
        for o in range(O):
            acc = feats.dtype.type(0.0)
            for f in range(F):
                acc += feats[n, f] * w[o, f]
            out[n, o] = acc + b[o]


@njit(**_JIT)
def linear_backward(feats, w, dout, dw, db, dfeats):
    # dw = dout^T feats, db = sum_n dout[n], dfeats = dout w; row by row, the first class
    # writes dfeats[n] (no zeroing pass), each pass over F streams one row of w and dw
    N, F = feats.shape
    O = w.shape[0]
    dw[:] = 0.0
    db[:] = 0.0
    for n in range(N):
        fr, dr = feats[n], dfeats[n]
        d = dout[n, 0]
        db[0] += d
        w0, dw0 = w[0], dw[0]
        for f in range(F):
            dr[f] = d * w0[f]
            dw0[f] += d * fr[f]
        for o in range(1, O):
            d = dout[n, o]
            db[o] += d
            wo, dwo = w[o], dw[o]
            for f in range(F):
                dr[f] += d * wo[f]
                dwo[f] += d * fr[f]


@njit(**_JIT)
def softmax_xent(logits, labels, dlogits):
    """Mean cross-entropy over the N rows -> float64 loss; dlogits = (softmax - onehot) / N.
    A label outside [0, O) raises ValueError."""
    N, O = logits.shape
    dt = logits.dtype.type
    inv_n = dt(1.0 / N)
    total = 0.0
    for n in range(N):
        k = labels[n]
        if k < 0 or k >= O:
            raise ValueError("a label is outside [0, classes)")
        m = logits[n, 0]
        for o in range(1, O):
            m = max(m, logits[n, o])
        s = dt(0.0)
        for o in range(O):  # one exp per element: e kept in dlogits, then scaled
            e = exp_kernel(logits[n, o] - m)
            dlogits[n, o] = e
            s += e
        scale = inv_n / s
        for o in range(O):
            dlogits[n, o] *= scale
        dlogits[n, k] -= inv_n
        total -= logits[n, k] - m - dt(log(s))
    return total / N


@njit(**_JIT)
def sum_squares(g):
    """sum g^2 in float64, one pass (NaN or Inf anywhere gives NaN or Inf)."""
    total = 0.0
    for i in range(g.size):
        v = float(g[i])
        total += v * v
    return total


@njit(**_JIT)
def scale(g, factor):  # g *= factor, in g's dtype
    f = g.dtype.type(factor)
    for i in range(g.size):
        g[i] *= f


@njit(**_JIT)
def clamp(g, c):
    """g clamped to [-c, c] in place; True if any element was outside."""
    hi = g.dtype.type(c)
    lo = -hi
    hit = False
    for i in range(g.size):
        v = g[i]
        if v > hi:
            g[i] = hi
            hit = True
        elif v < lo:
            g[i] = lo
            hit = True
    return hit
