"""Optimizer updates, CPU: one fused in-place pass per parameter, torch.optim's arithmetic.

Shapes (any, all four arrays the same; the kernel walks them flat):
    p:     [...]  parameter, updated in place; C-contiguous
    g:     [...]  dL/dp of this step; C-contiguous, same dtype as p
    buf:   [...]  SGD momentum buffer; zeros before the first step (then buf = g, as torch)
    m, v:  [...]  Adam first and second moments; zeros before the first step
    sq:    [...]  RMSprop running mean of g^2; zeros before the first step

Hyperparameters arrive as Python floats and are cast once to the arrays' dtype, so a float32
model updates in float32 throughout, as torch does. Adam's bias corrections are computed
once per call in float64 from ``step`` (1 on the first step), like torch's Python scalars.
"""

from math import sqrt

from numba import njit

from .. import config


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def sgd_update(p, g, buf, lr, momentum, nesterov):
    # torch.optim.SGD, dampening 0: buf = mu buf + g; p -= lr (g + mu buf if nesterov else buf)
    dt = p.dtype.type
    lr_, mu = dt(lr), dt(momentum)
    pf, gf, bf = p.reshape(p.size), g.reshape(g.size), buf.reshape(buf.size)
    for i in range(pf.size):
        b = mu * bf[i] + gf[i]
        bf[i] = b
        d = gf[i] + mu * b if nesterov else b
        pf[i] -= lr_ * d


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step):
    # torch.optim.Adam: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
    # p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    dt = p.dtype.type
    step_size = dt(lr / (1.0 - beta1**step))
    bc2_sqrt = dt(sqrt(1.0 - beta2**step))
    w1, b2, w2, eps_ = dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(eps)
    pf, gf = p.reshape(p.size), g.reshape(g.size)
    mf, vf = m.reshape(m.size), v.reshape(v.size)
    for i in range(pf.size):
        gi = gf[i]
        mi = mf[i] + w1 * (gi - mf[i])
        vi = b2 * vf[i] + w2 * (gi * gi)
        mf[i] = mi
        vf[i] = vi
        pf[i] -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps_)


@njit(cache=config.CACHE, fastmath=config.FASTMATH)
def rmsprop_update(p, g, sq, lr, alpha, eps):
    # torch.optim.RMSprop (no momentum, not centred): sq = a sq + (1 - a) g^2;
    # p -= lr g / (sqrt(sq) + eps)
    dt = p.dtype.type
    lr_, a, w, eps_ = dt(lr), dt(alpha), dt(1.0 - alpha), dt(eps)
    pf, gf, sf = p.reshape(p.size), g.reshape(g.size), sq.reshape(sq.size)
    for i in range(pf.size):
        gi = gf[i]
        s = a * sf[i] + w * (gi * gi)
        sf[i] = s
        pf[i] -= lr_ * gi / (sqrt(s) + eps_)
