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


def _apply(fn, dtype=np.float32):
    """fn over an array, compiled as the kernels compile it, in dtype."""

    @njit(fastmath=config.FASTMATH, error_model=config.ERROR_MODEL)
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    def run(x):
        x = np.ascontiguousarray(x, dtype=dtype)
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
        (gru._backward_row, (v(H), v(H), v(4 * H), v(H), v(3 * H), v(H), v(3 * H), v(H), H)),
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

_TRAIN_RUN = """
import json, sys
from seqbench.config import RunConfig
from seqbench.train import run
cfg = RunConfig(**json.loads(sys.argv[1]))
r = run(cfg).record
keys = ("status", "final_loss", "baseline_loss", "solved", "solved_step")
print(json.dumps({k: r[k] for k in keys}))
"""

# Runs a GRU solves in a few hundred (adding) or a few thousand (copy-task at delay 1) steps;
# the allowed gap in solved_step is two evaluations.
_TRAIN_CASES = {
    "copy-task": (dict(task="copy-task", seq_len=1, hidden_size=64, steps=4000, lr=5e-3), 200),
    "adding": (dict(task="adding", seq_len=20, hidden_size=32, steps=600, lr=1e-2), 50),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(_TRAIN_CASES))
def test_training_outcome_matches_exact_activations(task):
    """float32 training with the approximations against SEQBENCH_EXACT_ACTIVATIONS=1 (exact
    libm gates, compiled afresh in a subprocess) on the copy task and the adding task: both
    solve, within two evaluations of each other, to the same final loss within 2% of the
    baseline. (The task is short enough to be solved: a run that stays on the baseline, e.g.
    a long copy task cut short, is chaotic, as float32 rounding alone sends trajectories
    apart, so it cannot tell the two apart. The final loss is the one at the evaluation that
    first passed the bar, and where under the bar it lands moves with any float32 rounding
    change: 1.3% of the copy task's baseline apart once the softmax's exponentials and the
    head's products summed in another order.)"""
    import json
    import os
    import subprocess
    import sys

    case, gap = _TRAIN_CASES[task]
    cfg = dict(model="gru", batch_size=64, optimizer="adam", clip="norm:1", seed=0, **case)
    cfg["eval_every"] = gap // 2
    out = {}
    for mode, exact in (("fast", "0"), ("exact", "1")):
        env = {**os.environ, "SEQBENCH_EXACT_ACTIVATIONS": exact}
        res = subprocess.run(
            [sys.executable, "-c", _TRAIN_RUN, json.dumps(cfg)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    fast, exact = out["fast"], out["exact"]
    assert fast["status"] == exact["status"] == "finished"
    assert fast["solved"] and exact["solved"], out
    assert abs(fast["solved_step"] - exact["solved_step"]) <= gap, out
    assert abs(fast["final_loss"] - exact["final_loss"]) <= 0.02 * exact["baseline_loss"], out


# ---------------------------------------------------------------- float64 approximations
# (kernels/_math.py, opt-in SEQBENCH_FAST_FLOAT64=1) against long double references


def _apply64(fn):
    return _apply(fn, np.float64)


def _ulps(y, exact):
    """|y - exact| in units of the last place of exact (a long double)."""
    spacing = np.spacing(np.abs(exact).astype(np.float64))
    return np.abs(y.astype(np.longdouble) - exact) / spacing.astype(np.longdouble)


def _points64(lo, hi, rng):
    return np.concatenate(
        [
            rng.uniform(lo, hi, 200_000),
            rng.uniform(-1, 1, 50_000),
            np.sign(rng.uniform(-1, 1, 50_000)) * 10.0 ** rng.uniform(-300, 0, 50_000),
            np.linspace(max(lo, -40), min(hi, 40), 20_001),  # the reduction steps (k ln 2)
            [0.0, -0.0, 0.625, -0.625, 1e-310, -1e-310],
        ]
    )


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs 80-bit long double")
def test_float64_approximations_within_libm_level_ulps(rng):
    ld = np.longdouble
    x = _points64(-708.0, 709.0, rng)
    exp_ulp = _ulps(_apply64(_math.exp_f64)(x), np.exp(x.astype(ld)))
    assert exp_ulp.max() <= 1.0, exp_ulp.max()
    x = _points64(-700.0, 700.0, rng)
    sig_exact = ld(1) / (ld(1) + np.exp(-x.astype(ld)))
    sig_ulp = _ulps(_apply64(_math.sigmoid_f64)(x), sig_exact)
    assert sig_ulp.max() <= 2.5, sig_ulp.max()  # the exact formula itself: up to 2.25
    x = _points64(-25.0, 25.0, rng)
    tanh_y = _apply64(_math.tanh_f64)(x)
    tanh_exact = np.tanh(x.astype(ld))
    assert _ulps(tanh_y, tanh_exact).max() <= 4.0
    assert np.abs(tanh_y - tanh_exact).max() < 5e-16


def test_float64_approximations_limits_and_nan():
    inf, nan = np.inf, np.nan
    special = np.array([-inf, inf, nan, -800.0, 800.0, 0.0])
    e = _apply64(_math.exp_f64)(special)
    assert (
        abs(e[1] / np.exp(709.0) - 1) < 3e-16 and e[0] < 1e-307 and np.isnan(e[2]) and e[5] == 1.0
    )
    s = _apply64(_math.sigmoid_f64)(special)
    np.testing.assert_array_equal(s[[0, 1, 3, 4, 5]], [0.0, 1.0, 0.0, 1.0, 0.5])
    assert np.isnan(s[2])
    t = _apply64(_math.tanh_f64)(special)
    np.testing.assert_array_equal(t[[0, 1, 3, 4, 5]], [-1.0, 1.0, -1.0, 1.0, 0.0])
    assert np.isnan(t[2]) and np.signbit(_apply64(_math.tanh_f64)(np.array([-0.0]))[0])


_FAST64_RUN = r"""
import json, re
import numpy as np
import numba
from numba import njit
from seqbench.kernels import _math, config
from seqbench.models import build_model

assert config.FAST_FLOAT64 and not config.CACHE

@njit
def both(x):
    return _math.sigmoid_kernel(x), _math.tanh_kernel(x)

LIBM = r"call [^\n]*@(tanh|exp)\("
xs = np.linspace(-30, 30, 61)
close = all(
    abs(s - 1 / (1 + np.exp(-v))) <= 3e-16 and abs(t - np.tanh(v)) <= 5e-16
    for v in xs
    for s, t in [both(v)]
)
picked = close and not re.search(LIBM, both.inspect_llvm((numba.float64,)))
rng = np.random.default_rng(0)
errors = {}
for cell in ("lstm", "gru", "elman"):
    kw = dict(num_layers=1, dtype="float64", seed=1)
    fast, ref = build_model(cell, 3, 21, **kw), build_model(cell, 3, 21, backend="numpy", **kw)
    x = rng.standard_normal((19, 7, 3))
    (ya, ta), (yb, tb) = fast.forward(x), ref.forward(x)
    dy = rng.standard_normal(ya.shape)
    ga, gb = fast.backward(ta, dy), ref.backward(tb, dy)
    pairs = [(ya, yb), *((ga[k], gb[k]) for k in gb)]
    errors[cell] = max(float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) for a, b in pairs)
from seqbench.kernels.cpu import elman, lstm
H = 16
v = lambda n: np.linspace(-1, 1, n)
calls = [
    (lstm._forward_row, (None, v(4 * H), v(4 * H), v(H), v(4 * H), v(H), v(H), H)),
    (elman._forward_row, (None, v(H), v(H), False, v(H))),
]
vector = {}
import numba
for f, args in calls:
    f(*args)
    ir_text = f.inspect_llvm(tuple(numba.typeof(a) for a in args))
    vector[f.__module__] = bool(re.search(r"<\d+ x double>", ir_text))
    vector[f.__module__ + " calls libm"] = bool(re.search(LIBM, ir_text))
print(json.dumps({"picked": bool(picked), "errors": errors, "vector": vector}))
"""


@pytest.mark.slow
def test_fast_float64_mode_vectorises_and_matches_the_reference():
    """SEQBENCH_FAST_FLOAT64=1 (compiled afresh in a subprocess, as the flag is read at
    compile time): the kernels pick the float64 approximations, their gate loops vectorise
    without libm calls, and forward and backward still equal the NumPy reference (exact
    functions) to 1e-12 (relative to each array's largest value, as tests/test_models.py
    checks the exact mode) for LSTM, GRU and Elman."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SEQBENCH_FAST_FLOAT64": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _FAST64_RUN], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["picked"], out
    assert all(err < 1e-12 for err in out["errors"].values()), out
    for mod in ("seqbench.kernels.cpu.lstm", "seqbench.kernels.cpu.elman"):
        assert out["vector"][mod] and not out["vector"][mod + " calls libm"], out
