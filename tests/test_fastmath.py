"""The float32 approximations of kernels/_math.py: error bounds over the whole float32 range,
exact limits, NaN, monotonicity; and that the float32 kernels use them, vectorised, without
float64 promotion, while float64 keeps the exact functions.

The sweep takes every 257th float32 bit pattern of both signs (16.7 million values, every
binade, subnormals included) plus every float32 near the places where a formula switches.
"""

import math
import re

import numba
import numpy as np
import pytest
from numba import njit
from seqbench.kernels import _math, config

# Bounds stated in kernels/_math.py: the maxima over all 2^32 float32 inputs, rounded up.
TANH_ABS, TANH_REL = 8.1e-8, 1.5e-7
SIGMOID_ABS = 9e-8
SIGMOID_REL = 3.3e-7  # for x >= SIGMOID_ZERO_BELOW, where sigmoid(x) >= 1.2e-38
SIGMOID_ZERO_BELOW = -87.3
EXP_REL = 3.1e-7  # inside [EXP_LO, EXP_HI]
EXP_LO, EXP_HI = -87.3, 88.3

STRIDE = 257
CHUNK = 1 << 22


def _apply(fn):
    @njit(fastmath=config.FASTMATH, error_model=config.ERROR_MODEL)
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    def run(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x)
        apply(x, out)
        return out

    return run


APPROX = {
    "tanh": (_apply(_math.tanh_fast), np.tanh),
    "sigmoid": (_apply(_math.sigmoid_fast), lambda x: 1.0 / (1.0 + np.exp(-x))),
    "exp": (_apply(_math.exp_fast), np.exp),
}


def _sweep():
    """Chunks of float32 values: the strided sweep of all finite patterns, both signs."""
    top = np.float32(np.inf).view(np.uint32)  # 0x7f800000: first non-finite pattern
    for start in range(0, int(top), CHUNK * STRIDE):
        bits = np.arange(start, min(start + CHUNK * STRIDE, int(top)), STRIDE, dtype=np.uint32)
        x = bits.view(np.float32)
        yield np.concatenate([x, -x])


def _near(points, n=1 << 16):
    """Every float32 within n ulps of each (nonzero) point."""
    out = []
    for p in points:
        c = int(np.float32(p).view(np.int32))
        out.append(np.arange(c - n, c + n, dtype=np.int32).view(np.float32))
    return np.concatenate(out)


def _errors(name, x):
    fn, ref = APPROX[name]
    y = fn(x).astype(np.float64)
    with np.errstate(over="ignore"):
        r = ref(x.astype(np.float64))
    return y, r, np.abs(y - r)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_absolute_error_over_float32(name):
    bound = {"tanh": TANH_ABS, "sigmoid": SIGMOID_ABS}[name]
    worst = 0.0
    for x in [*_sweep(), _near([0.625, -0.625, 9.0, -9.0, 17.0, -87.3, 44.0, 7.8592])]:
        _, _, err = _errors(name, x)
        worst = max(worst, float(err.max()))
    assert worst <= bound, f"{name}: max abs error {worst:.3g} > {bound:.3g}"


def test_tanh_relative_error():
    worst = 0.0
    for x in [*_sweep(), _near([0.625, -0.625, 1e-3, 1e-30])]:
        x = x[x != 0]
        _, r, err = _errors("tanh", x)
        worst = max(worst, float((err / np.abs(r)).max()))
    assert worst <= TANH_REL, f"tanh: max rel error {worst:.3g}"


def test_sigmoid_relative_error():
    worst = 0.0
    for x in [*_sweep(), _near([SIGMOID_ZERO_BELOW, -87.06, -40.0, -17.0])]:
        x = x[x >= SIGMOID_ZERO_BELOW]
        _, r, err = _errors("sigmoid", x)
        worst = max(worst, float((err / r).max()))
    assert worst <= SIGMOID_REL, f"sigmoid: max rel error {worst:.3g}"


def test_exp_relative_error_in_range():
    worst = 0.0
    for x in [*_sweep(), _near([EXP_LO, EXP_HI, 88.03, 1e-3, 0.3465736, -0.3465736])]:
        x = x[(x >= EXP_LO) & (x <= EXP_HI)]
        _, r, err = _errors("exp", x)
        worst = max(worst, float((err / r).max()))
    assert worst <= EXP_REL, f"exp: max rel error {worst:.3g}"


def test_exact_limits_and_special_values():
    tanh, _ = APPROX["tanh"]
    sig, _ = APPROX["sigmoid"]
    inf = np.float32(np.inf)
    np.testing.assert_array_equal(tanh([inf, -inf, 9.5, -9.5, 1e30, -1e30]), [1, -1, 1, -1, 1, -1])
    np.testing.assert_array_equal(sig([inf, -inf, 17.0, 1e30, -88.0, -1e30]), [1, 0, 1, 1, 0, 0])
    assert sig([0.0])[0] == 0.5
    np.testing.assert_array_equal(tanh([0.0, -0.0]), [0, 0])  # sign of zero: fastmath 'nsz'
    for name in APPROX:
        assert np.isnan(APPROX[name][0]([np.nan])[0]), f"{name}(NaN) must be NaN"


def test_tanh_is_exact_on_subnormals_and_tiny():
    tanh, _ = APPROX["tanh"]
    bits = np.arange(1, 1 << 23, 97, dtype=np.uint32)  # positive subnormals
    x = np.concatenate([bits.view(np.float32), -bits.view(np.float32), [1e-30, -1e-20]])
    np.testing.assert_array_equal(tanh(x), x.astype(np.float32))


def test_sigmoid_underflows_to_zero_below_cutoff():
    sig, _ = APPROX["sigmoid"]
    x = np.float32(SIGMOID_ZERO_BELOW) - np.arange(1, 1000, dtype=np.float32) * np.float32(0.01)
    assert np.all(sig(x) == 0)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_monotone(name):
    """Non-decreasing along the sweep; sigmoid may dip by two float32 spacings (exp's steps
    between reduction intervals), tanh not at all."""
    fn, _ = APPROX[name]
    allowed_ulps = {"tanh": 0, "sigmoid": 2}[name]
    x = np.sort(
        np.concatenate([*_sweep(), _near([0.625, -0.625, 1e-3, -1e-3, 0.3465736, -0.3465736])])
    )
    y = fn(x)
    d = np.diff(y.astype(np.float64))
    spacing = np.spacing(np.abs(y[1:])).astype(np.float64)
    assert np.all(d >= -allowed_ulps * spacing), f"{name}: dips of {(-d / spacing).max()} ulp"
    assert y[0] == (-1 if name == "tanh" else 0) and y[-1] == 1


# ---------------------------------------------------------------- what the kernels call


def test_kernel_dispatch_by_dtype():
    @njit
    def both(x):
        return _math.sigmoid_kernel(x), _math.tanh_kernel(x)

    xs = [-20.0, -3.0, -0.5, 0.0, 0.3, 2.0, 12.0]
    for v in xs:
        s64, t64 = both(np.float64(v))
        assert s64 == 1.0 / (1.0 + math.exp(-v)) and t64 == math.tanh(v)  # exact in float64
        s32, t32 = both(np.float32(v))
        if config.FAST_FLOAT32:
            assert s32 == APPROX["sigmoid"][0]([v])[0] and t32 == APPROX["tanh"][0]([v])[0]
    returns = {
        str(sig.args[0]): str(both.overloads[sig.args].signature.return_type)
        for sig in both.nopython_signatures
    }
    assert returns == {"float64": "UniTuple(float64 x 2)", "float32": "UniTuple(float32 x 2)"}


def _compiled_float32_rows():
    """LLVM IR of every cell's per-row gate helpers, compiled here for float32 (the kernels
    themselves may come from the disk cache, which leaves the helpers uncompiled)."""
    from seqbench.kernels.cpu import elman, gru, jordan, lstm

    H = 16
    v = lambda n: np.linspace(-1, 1, n).astype(np.float32)  # noqa: E731
    calls = [
        (lstm._forward_row, (v(4 * H), v(4 * H), v(4 * H), v(H), v(4 * H), v(H), v(H), H)),
        (lstm._forward_row, (None, v(4 * H), v(4 * H), v(H), v(4 * H), v(H), v(H), H)),
        (lstm._backward_row, (v(H), v(H), v(H), v(4 * H), v(H), v(H), v(4 * H), H)),
        (gru._forward_row, (v(3 * H), v(3 * H), v(3 * H), v(H), v(4 * H), v(H), H)),
        (gru._backward_row, (v(H), v(H), v(4 * H), v(H), v(3 * H), v(3 * H), v(H), H)),
        (elman._forward_row, (v(H), v(H), v(H), False, v(H))),
        (elman._forward_row, (None, v(H), v(H), False, v(H))),
        (elman._backward_row, (v(H), v(H), v(H), False, v(H))),
        (jordan._tanh_row, (v(H), v(H), v(H))),
        (jordan._dtanh_row, (v(H), v(H), v(H))),
    ]
    for f, args in calls:
        f(*args)
        sig = tuple(numba.typeof(a) for a in args)
        yield f"{f.__module__}.{f.__name__}", f.inspect_llvm(sig)


def _body(ir_text, name):
    """The IR of the helper's own function (not its CPython wrapper)."""
    short = name.split(".")[-1]
    for m in re.finditer(r"^define .*?^}", ir_text, re.S | re.M):
        head = m.group(0).split("\n", 1)[0]
        if short in head and "cpython" not in head and "cfunc" not in head:
            return m.group(0)
    raise AssertionError(f"no function body for {name}")


def test_float32_gate_loops_stay_float32_and_vectorise():
    seen = 0
    for name, ir_text in _compiled_float32_rows():
        body = _body(ir_text, name)
        assert "fpext" not in body and "double" not in body, f"{name} promotes to float64"
        assert re.search(r"<\d+ x float>", body), f"{name}: no vector instructions"
        seen += 1
    assert seen >= 10


# ---------------------------------------------------------------- training outcome

_COPY_RUN = """
import json
from seqbench.config import RunConfig
from seqbench.train import run
cfg = RunConfig(task="adding", model="gru", seq_len=20, hidden_size=32, batch_size=64,
                steps=600, lr=1e-2, optimizer="adam", clip="norm:1", seed=0, eval_every=50)
r = run(cfg).record
keys = ("status", "final_loss", "baseline_loss", "solved", "solved_step")
print(json.dumps({k: r[k] for k in keys}))
"""


@pytest.mark.slow
def test_training_outcome_matches_exact_activations():
    """float32 training with the approximations against SEQBENCH_EXACT_ACTIVATIONS=1 (exact
    libm gates, compiled afresh in a subprocess) on a task a GRU solves in a few hundred
    steps: both solve, within one evaluation of each other, to the same final loss within
    1% of the baseline. (A run that stays on the baseline, e.g. a short copy task, is chaotic:
    float32 rounding alone sends trajectories apart, so it cannot tell the two apart.)"""
    import json
    import os
    import subprocess
    import sys

    out = {}
    for mode, exact in (("fast", "0"), ("exact", "1")):
        env = {**os.environ, "SEQBENCH_EXACT_ACTIVATIONS": exact}
        res = subprocess.run(
            [sys.executable, "-c", _COPY_RUN], env=env, capture_output=True, text=True, check=True
        )
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    fast, exact = out["fast"], out["exact"]
    assert fast["status"] == exact["status"] == "finished"
    assert fast["solved"] and exact["solved"], out
    assert abs(fast["solved_step"] - exact["solved_step"]) <= 50, out
    assert abs(fast["final_loss"] - exact["final_loss"]) <= 0.01 * exact["baseline_loss"], out
