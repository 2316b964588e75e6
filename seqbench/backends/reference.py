"""NumPy reference of every cell and of the reservoir: slow, step by step, obviously correct.
The test oracle.

Same layer contract as the Numba backend (batch-first x: (B, T, I)), written independently
of the kernels: plain textbook equations forward, and the chain rule applied step by step
backward, with no hoisting or fusion.
"""

from __future__ import annotations

import numpy as np

from .reservoir import Prepared, ReservoirFunctions, project


def _sig(z):  # 1 / (1 + e^-z) written with e^-|z| only: saturated gates do not overflow
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def _norms(d):  # (B, H) -> mean over B of ||d_b||
    return np.sqrt((d * d).sum(axis=1)).mean()


def _backward_buffers(p, x):
    """Zeroed (grads like p, dx like x (B, T, I), dh norms (T,)): what every backward fills."""
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    return grads, np.zeros_like(x), np.zeros(x.shape[1], dtype=x.dtype)


def _over_time(x, state0, step):
    """The walk every forward shares, t = 0 .. T-1: ``step(x_t, state)`` returns the new
    carried state (a tuple, the layer's output first) and what backward keeps of step t.
    Returns the outputs y (B, T, .), the final state (copies) and the list of what was kept."""
    state, ys, kept = state0, [], []
    for t in range(x.shape[1]):
        state, k = step(x[:, t], state)
        ys.append(state[0])
        kept.append(k)
    return np.stack(ys, axis=1), tuple(s.copy() for s in state), kept


def _through_time(p, x, dout, dstate_n, step):
    """The walk every backward shares, t = T-1 .. 0: add dout[:, t] to the gradient of the
    first carried state (the layer's output), record its norm, then ``step(t, d, g, dx)``
    fills g and dx[:, t] and returns the carried gradients d for step t-1 (as dstate_n)."""
    g, dx, norms = _backward_buffers(p, x)
    d = tuple(s.copy() for s in dstate_n)
    for t in reversed(range(x.shape[1])):
        d = (d[0] + dout[:, t], *d[1:])
        norms[t] = _norms(d[0])
        d = step(t, d, g, dx)
    return g, dx, d, norms


# ---------------------------------------------------------------- elman


def elman_forward(p, x, state0, opts):
    relu = opts["nonlinearity"] == "relu"

    def step(xt, state):
        (h,) = state
        z = xt @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        return (np.maximum(z, 0.0) if relu else np.tanh(z),), None

    y, state_n, _ = _over_time(x, state0, step)
    return y, state_n, (x, state0[0], y, relu)


def elman_backward(p, cache, dout, dstate_n):
    x, h0, y, relu = cache

    def step(t, d, g, dx):
        (dh,) = d
        h = y[:, t]
        h_prev = y[:, t - 1] if t > 0 else h0
        dz = dh * ((h > 0) if relu else (1.0 - h**2))
        g["weight_ih"] += dz.T @ x[:, t]
        g["weight_hh"] += dz.T @ h_prev
        g["bias_ih"] += dz.sum(0)
        g["bias_hh"] += dz.sum(0)
        dx[:, t] = dz @ p["weight_ih"]
        return (dz @ p["weight_hh"],)

    return _through_time(p, x, dout, dstate_n, step)


# ---------------------------------------------------------------- lstm


def _lstm_gates(p, xt, h):
    H = h.shape[1]
    z = xt @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
    return _sig(i), _sig(f), np.tanh(g), _sig(o)


def lstm_forward(p, x, state0, opts):
    def step(xt, state):
        h, c = state
        i, f, g, o = _lstm_gates(p, xt, h)
        c = f * c + i * g
        return (o * np.tanh(c), c), (c, (i, f, g, o))

    y, state_n, kept = _over_time(x, state0, step)
    cs, gs = zip(*kept, strict=True)  # per step: c_t and the gates i, f, g, o
    return y, state_n, (x, state0, y, cs, gs)


def lstm_backward(p, cache, dout, dstate_n):
    x, (h0, c0), y, cs, gs = cache

    def step(t, d, g_, dx):
        dh, dc = d
        i, f, g, o = gs[t]
        c = cs[t]
        c_prev = cs[t - 1] if t > 0 else c0
        h_prev = y[:, t - 1] if t > 0 else h0
        tc = np.tanh(c)
        dc = dc + dh * o * (1.0 - tc**2)
        do = dh * tc
        di, df, dg = dc * g, dc * c_prev, dc * i
        dz = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
        )
        g_["weight_ih"] += dz.T @ x[:, t]
        g_["weight_hh"] += dz.T @ h_prev
        g_["bias_ih"] += dz.sum(0)
        g_["bias_hh"] += dz.sum(0)
        dx[:, t] = dz @ p["weight_ih"]
        return dz @ p["weight_hh"], dc * f

    return _through_time(p, x, dout, dstate_n, step)


# ---------------------------------------------------------------- gru


def gru_forward(p, x, state0, opts):
    H = state0[0].shape[1]

    def step(xt, state):
        (h,) = state
        gi = xt @ p["weight_ih"].T + p["bias_ih"]
        gh = h @ p["weight_hh"].T + p["bias_hh"]
        r = _sig(gi[:, :H] + gh[:, :H])
        z = _sig(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        hn = gh[:, 2 * H :]
        n = np.tanh(gi[:, 2 * H :] + r * hn)
        return ((1 - z) * n + z * h,), (r, z, n, hn)

    y, state_n, saved = _over_time(x, state0, step)
    return y, state_n, (x, state0[0], y, saved)


def gru_backward(p, cache, dout, dstate_n):
    x, h0, y, saved = cache

    def step(t, d, g, dx):
        (dh,) = d
        r, z, n, hn = saved[t]
        h_prev = y[:, t - 1] if t > 0 else h0
        dn = dh * (1 - z) * (1 - n**2)
        dz = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        d_in = np.concatenate([dr, dz, dn], axis=1)  # dL/d(W_ih x + b_ih)
        d_hid = np.concatenate([dr, dz, dn * r], axis=1)  # dL/d(W_hh h + b_hh)
        g["weight_ih"] += d_in.T @ x[:, t]
        g["bias_ih"] += d_in.sum(0)
        g["weight_hh"] += d_hid.T @ h_prev
        g["bias_hh"] += d_hid.sum(0)
        dx[:, t] = d_in @ p["weight_ih"]
        return (dh * z + d_hid @ p["weight_hh"],)

    return _through_time(p, x, dout, dstate_n, step)


# ---------------------------------------------------------------- jordan


def jordan_forward(p, x, state0, opts):
    def step(xt, state):
        (yv,) = state
        h = np.tanh(xt @ p["weight_ih"].T + p["bias_ih"] + yv @ p["weight_yh"].T)
        return (h @ p["weight_hy"].T + p["bias_hy"],), h

    y, state_n, hs = _over_time(x, state0, step)
    return y, state_n, (x, state0[0], y, hs)


def jordan_backward(p, cache, dout, dstate_n):
    x, y0, y, hs = cache

    def step(t, d, g, dx):
        (dy,) = d
        h = hs[t]
        y_prev = y[:, t - 1] if t > 0 else y0
        g["weight_hy"] += dy.T @ h
        g["bias_hy"] += dy.sum(0)
        dz = (dy @ p["weight_hy"]) * (1 - h**2)
        g["weight_ih"] += dz.T @ x[:, t]
        g["bias_ih"] += dz.sum(0)
        g["weight_yh"] += dz.T @ y_prev
        dx[:, t] = dz @ p["weight_ih"]
        return (dz @ p["weight_yh"],)

    return _through_time(p, x, dout, dstate_n, step)


def _contract(backward):
    """backward(p, cache, dout, dstate_n, need_dx=True) as the layer contract has it: dL/dx
    None unless asked for (the oracle computes it anyway: plain, not fast)."""

    def run(p, cache, dout, dstate_n, need_dx=True):
        g, dx, d, norms = backward(p, cache, dout, dstate_n)
        return g, dx if need_dx else None, d, norms

    return run


LAYERS = {
    "elman": (elman_forward, _contract(elman_backward)),
    "jordan": (jordan_forward, _contract(jordan_backward)),
    "lstm": (lstm_forward, _contract(lstm_backward)),
    "gru": (gru_forward, _contract(gru_backward)),
}


# ---------------------------------------------------------------- reservoir


def reference_run(w, u_proj, s0, leak, linear, free):
    """NumPy oracle of the reservoir, step by step as the equations read.

    u_proj (B, T, N) = W_in u_t + b (+ teacher feedback); free = (W_fb, W_out, b_out, y0) for
    a free run or None. Returns (states (B, T, N), outputs (B, T, O) or None).
    """
    B, T, N = u_proj.shape
    f = (lambda z: z) if linear else np.tanh
    x = np.array(s0, dtype=u_proj.dtype)
    states = np.empty_like(u_proj)
    outputs = None
    if free is not None:
        w_fb, w_out, b_out, y = free
        outputs = np.empty((B, T, w_out.shape[0]), dtype=u_proj.dtype)
    for t in range(T):
        rec = (w @ x.T).T  # W x_{t-1}, dense or sparse
        pre = rec + u_proj[:, t]
        if free is not None:
            pre = pre + y @ w_fb.T
        x = (1.0 - leak) * x + leak * f(pre)
        states[:, t] = x
        if free is not None:
            y = x @ w_out.T + b_out
            outputs[:, t] = y
    return states, outputs


def _reservoir_run(h: Prepared, x, w_in_t, s0, free):
    u_proj = project(h, x, w_in_t)
    return reference_run(h.params["weight_hh_l0"], u_proj, s0, h.leak, h.linear, free)


RESERVOIR = ReservoirFunctions(prepare=Prepared, run=_reservoir_run)
