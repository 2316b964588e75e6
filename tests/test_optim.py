"""Optimizers and clipping: NumPy oracle, torch.optim / clip_grad_norm_ parity, bad input."""

import math

import numpy as np
import pytest
from seqbench.kernels.cpu.optim import sgd_update

from seqbench import ConfigError, build_model
from seqbench.clipping import Clip, parse_clip
from seqbench.optim import OPTIMIZERS, FlatParams, make_optimizer
from seqbench.telemetry import flat_norm

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 1e-5}
STEPS = 6

# (optimizer, hyperparameters) beyond the defaults; every registered optimizer appears.
CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.5, "nesterov": True}),
    ("sgd", {"momentum": 0.0}),
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.95), "eps": 1e-6}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.9, "eps": 1e-4}),
]
LR = {"sgd": 0.1, "adam": 1e-2, "rmsprop": 1e-2}


def case_id(case):
    name, hyper = case
    return "-".join([name, *(f"{k}={v}" for k, v in hyper.items())])


def test_cases_cover_registry():
    assert {name for name, _ in CASES} == set(OPTIMIZERS)


def random_problem(dtype, seed=0):
    """Parameters of two shapes (a matrix and a bias) and STEPS gradients for each."""
    rng = np.random.default_rng(seed)
    shapes = {"weight_hh_l0": (5, 3), "bias_hh_l0": (5,)}
    params = {k: rng.uniform(-1, 1, s).astype(dtype) for k, s in shapes.items()}
    grads = [
        {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(STEPS)
    ]
    return params, grads


# ----------------------------------------------------------------- NumPy oracle


def reference_step(name, hyper, lr, p, g, state, t):
    """torch.optim's update rules written out in float64; state is a dict of arrays."""
    if name == "sgd":
        mu, nesterov = hyper.get("momentum", 0.9), hyper.get("nesterov", False)
        buf = g.copy() if t == 1 else mu * state["buf"] + g
        state["buf"] = buf
        return p - lr * (g + mu * buf if nesterov else buf)
    if name == "adam":
        (b1, b2), eps = hyper.get("betas", (0.9, 0.999)), hyper.get("eps", 1e-8)
        m = b1 * state.get("m", 0.0) + (1 - b1) * g
        v = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        state.update(m=m, v=v)
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # Kingma & Ba's form
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    alpha, eps = hyper.get("alpha", 0.99), hyper.get("eps", 1e-8)
    sq = alpha * state.get("sq", 0.0) + (1 - alpha) * g * g
    state["sq"] = sq
    return p - lr * g / (np.sqrt(sq) + eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_numpy_reference(case, dtype):
    name, hyper = case
    params, grads = random_problem(dtype)
    expected = {k: v.astype(np.float64) for k, v in params.items()}
    states = {k: {} for k in params}
    opt = make_optimizer(name, params, LR[name], **hyper)
    for t, g in enumerate(grads, start=1):
        opt.step(params, g)
        for k in params:
            g64 = g[k].astype(np.float64)
            expected[k] = reference_step(name, hyper, LR[name], expected[k], g64, states[k], t)
    for k, p in params.items():
        assert p.dtype == dtype
        np.testing.assert_allclose(p, expected[k], rtol=TOL[dtype], atol=TOL[dtype])


# ----------------------------------------------------------------- torch parity


def torch_optimizer(torch, name, hyper, lr, tensors):
    if name == "sgd":
        kw = {"momentum": 0.9, **hyper}
        return torch.optim.SGD(tensors, lr=lr, **kw)
    if name == "adam":
        return torch.optim.Adam(tensors, lr=lr, **hyper)
    return torch.optim.RMSprop(tensors, lr=lr, **hyper)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    name, hyper = case
    params, grads = random_problem(dtype, seed=1)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = torch_optimizer(torch, name, hyper, LR[name], list(tensors.values()))
    opt = make_optimizer(name, params, LR[name], **hyper)
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        topt.step()
        opt.step(params, g)
    for k, p in params.items():
        want = tensors[k].detach().numpy()
        np.testing.assert_allclose(p, want, rtol=TOL[dtype], atol=TOL[dtype])


# ----------------------------------------------------------------- optimizer contract


def test_step_is_in_place_ignores_input_and_keeps_state():
    params, grads = random_problem(np.float32)
    ids = {k: id(v) for k, v in params.items()}
    opt = make_optimizer("adam", params, 1e-3)
    state_ids = {k: [id(a) for a in s.values()] for k, s in opt.state.items()}
    before = {k: v.copy() for k, v in params.items()}
    for g in grads:
        opt.step(params, {**g, "input": np.ones((2, 3, 4))})
    assert {k: id(v) for k, v in params.items()} == ids
    assert {k: [id(a) for a in s.values()] for k, s in opt.state.items()} == state_ids
    assert all(not np.array_equal(before[k], params[k]) for k in params)
    assert set(opt.state["bias_hh_l0"]) == {"exp_avg", "exp_avg_sq"}
    assert opt.state["weight_hh_l0"]["exp_avg"].dtype == np.float32
    assert opt.steps == STEPS


def test_missing_gradient_changes_nothing():
    params, grads = random_problem(np.float64)
    opt = make_optimizer("sgd", params, 0.1)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(KeyError, match="bias_hh_l0"):
        opt.step(params, {"weight_hh_l0": grads[0]["weight_hh_l0"]})
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert opt.steps == 0


def test_kernel_takes_nd_arrays():
    params, grads = random_problem(np.float64)
    p, g = params["weight_hh_l0"], grads[0]["weight_hh_l0"]
    flat_p, flat_buf = p.ravel().copy(), np.zeros(p.size)
    buf = np.zeros_like(p)
    sgd_update(p, g, buf, 0.1, 0.9, False)
    sgd_update(flat_p, g.ravel(), flat_buf, 0.1, 0.9, False)
    np.testing.assert_array_equal(p.ravel(), flat_p)
    np.testing.assert_array_equal(buf.ravel(), flat_buf)


def test_model_training_step_reduces_loss():
    model = build_model("elman", 2, 4, backend="numpy", dtype="float64", seed=3)
    x = np.random.default_rng(0).standard_normal((3, 5, 2))
    opt = make_optimizer("sgd", model.params, 0.05)

    def loss_and_grads():
        y, tape = model.forward(x)
        return 0.5 * float(np.sum(y**2)), model.backward(tape, y)

    first, grads = loss_and_grads()
    for _ in range(5):
        opt.step(model.params, grads)
        loss, grads = loss_and_grads()
    assert loss < first


@pytest.mark.parametrize(
    ("name", "lr", "hyper", "match"),
    [
        ("lbfgs", 0.1, {}, "use one of sgd, adam, rmsprop"),
        ("sgd", 0.0, {}, "lr must be > 0"),
        ("sgd", -1.0, {}, "lr must be > 0"),
        ("sgd", math.nan, {}, "lr must be finite"),
        ("sgd", math.inf, {}, "lr must be finite"),
        ("sgd", True, {}, "lr must be a number"),
        ("sgd", "0.1", {}, "lr must be a number"),
        ("sgd", 0.1, {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ("sgd", 0.1, {"momentum": -0.1}, r"momentum must be in \[0, 1\)"),
        ("sgd", 0.1, {"momentum": 0.0, "nesterov": True}, "nesterov needs momentum > 0"),
        ("sgd", 0.1, {"nesterov": 1}, "nesterov must be true or false"),
        ("sgd", 0.1, {"betas": (0.9, 0.99)}, "allowed: momentum, nesterov"),
        ("adam", 0.1, {"betas": (1.0, 0.999)}, r"beta1 must be in \[0, 1\)"),
        ("adam", 0.1, {"betas": (0.9, 1.5)}, r"beta2 must be in \[0, 1\)"),
        ("adam", 0.1, {"betas": 0.9}, "betas must be a pair"),
        ("adam", 0.1, {"eps": 0.0}, "eps must be > 0"),
        ("rmsprop", 0.1, {"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
        ("rmsprop", 0.1, {"momentum": 0.9}, "allowed: alpha, eps"),
    ],
)
def test_bad_hyperparameters(name, lr, hyper, match):
    params, _ = random_problem(np.float64)
    with pytest.raises(ConfigError, match=match):
        make_optimizer(name, params, lr, **hyper)


def test_bad_params():
    with pytest.raises(ConfigError, match="non-empty dict"):
        make_optimizer("sgd", {}, 0.1)
    with pytest.raises(ConfigError, match="float32 or float64"):
        make_optimizer("sgd", {"w": np.zeros(3, dtype=np.int64)}, 0.1)


# ----------------------------------------------------------------- clipping


def clip_problem(scale=1.0):
    rng = np.random.default_rng(7)
    g = {"w": scale * rng.standard_normal((4, 3)), "b": scale * rng.standard_normal(4)}
    g["input"] = rng.standard_normal((2, 3, 1))
    return g


def total_norm(g, keys=("w", "b")):
    return float(np.sqrt(sum(np.sum(g[k] ** 2) for k in keys)))


@pytest.mark.parametrize(
    ("text", "kind", "threshold", "canonical"),
    [
        ("none", "none", None, "none"),
        (None, "none", None, "none"),
        ("value:1", "value", 1.0, "value:1"),
        ("norm:1.0", "norm", 1.0, "norm:1"),
        (" norm:0.25 ", "norm", 0.25, "norm:0.25"),
        ("norm:1e-3", "norm", 1e-3, "norm:0.001"),
    ],
)
def test_parse_clip(text, kind, threshold, canonical):
    clip = parse_clip(text)
    assert (clip.kind, clip.threshold, str(clip)) == (kind, threshold, canonical)
    assert parse_clip(str(clip)) == clip


@pytest.mark.parametrize(
    "text",
    [
        "",
        "norm",
        "norm:",
        "norm:-1",
        "norm:0",
        "norm:nan",
        "norm:inf",
        "value:abc",
        "foo:1",
        "none:1",
        "Norm:1",
        3,
    ],
)
def test_parse_clip_errors(text):
    with pytest.raises(ConfigError, match="use none, value:C or norm:C with C > 0"):
        parse_clip(text)


def test_clip_none_reports_norm_and_changes_nothing():
    g = clip_problem(10.0)
    before = {k: v.copy() for k, v in g.items()}
    norm, clipped = parse_clip("none").apply(g, ["w", "b"])
    assert norm == pytest.approx(total_norm(before), rel=1e-12)
    assert not clipped
    assert all(np.array_equal(before[k], g[k]) for k in g)


def test_value_clip_is_elementwise():
    g = clip_problem(2.0)
    before = {k: v.copy() for k, v in g.items()}
    norm, clipped = parse_clip("value:1").apply(g, ["w", "b"])
    assert clipped
    assert norm == pytest.approx(total_norm(before), rel=1e-12)
    for k in ("w", "b"):
        np.testing.assert_array_equal(g[k], np.clip(before[k], -1.0, 1.0))
    np.testing.assert_array_equal(g["input"], before["input"])
    _, again = parse_clip("value:1").apply(g, ["w", "b"])
    assert not again


def test_norm_clip_rescales_all_parameters_together():
    g = clip_problem(3.0)
    before = {k: v.copy() for k, v in g.items()}
    n0 = total_norm(before)
    assert n0 > 2.0
    norm, clipped = parse_clip("norm:2").apply(g, ["w", "b"])
    assert clipped and norm == pytest.approx(n0, rel=1e-12)
    assert total_norm(g) == pytest.approx(2.0, rel=1e-12)
    for k in ("w", "b"):
        np.testing.assert_allclose(g[k], before[k] * (2.0 / n0), rtol=1e-12)
    np.testing.assert_array_equal(g["input"], before["input"])
    norm2, clipped2 = parse_clip(f"norm:{n0 * 1.01}").apply(g, ["w", "b"])
    assert not clipped2 and norm2 == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_norm_clip_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    g = {k: v.astype(dtype) for k, v in clip_problem(3.0).items()}
    tensors = [torch.zeros(g[k].shape, dtype=getattr(torch, dtype.__name__)) for k in ("w", "b")]
    for t, k in zip(tensors, ("w", "b"), strict=True):
        t.grad = torch.tensor(g[k])
    want_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm=2.0))
    norm, clipped = Clip("norm", 2.0).apply(g, ["w", "b"])
    assert clipped
    assert norm == pytest.approx(want_norm, rel=TOL[dtype])
    # torch divides by (norm + 1e-6), Pascanu's rule by norm: 1e-6 / norm apart at most
    for t, k in zip(tensors, ("w", "b"), strict=True):
        np.testing.assert_allclose(g[k], t.grad.numpy(), rtol=max(1e-6, TOL[dtype]))
        assert g[k].dtype == dtype


@pytest.mark.parametrize("text", ["value:1", "norm:1"])
def test_clip_leaves_non_finite_gradients_to_the_guard(text):
    g = clip_problem(5.0)
    g["w"][0, 0] = np.inf
    before = {k: v.copy() for k, v in g.items()}
    norm, clipped = parse_clip(text).apply(g, ["w", "b"])
    assert norm == math.inf and not clipped
    assert all(np.array_equal(before[k], g[k]) for k in g)


# ----------------------------------------------------------------- one flat buffer


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_step_flat_matches_step(case, dtype):
    """The training loop's form: the same updates, element for element, over one buffer."""
    name, hyper = case
    params, grads = random_problem(dtype)
    twin = {k: v.copy() for k, v in params.items()}
    flat = FlatParams(twin)
    per_array = make_optimizer(name, params, LR[name], **hyper)
    one_pass = make_optimizer(name, twin, LR[name], **hyper)
    for g in grads:
        per_array.step(params, g)
        one_pass.step_flat(flat.p, flat.gather(g))
    for k, p in params.items():
        assert twin[k].base is flat.p and twin[k].dtype == dtype
        np.testing.assert_allclose(twin[k], p, rtol=TOL[dtype] * 1e-3, atol=TOL[dtype] * 1e-3)
        assert all(one_pass.state[k][b].base is one_pass._flat[b] for b in one_pass.buffers)


def test_flat_params_share_memory_and_adopt_replaced_arrays():
    a = {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(2)}
    h = {"head.bias": np.full(3, 2.0)}
    flat = FlatParams(a, h)
    np.testing.assert_array_equal(flat.p, [0, 1, 2, 3, 4, 5, 1, 1, 2, 2, 2])
    a["w"][1, 2] = -1.0  # the dict's array is the buffer
    assert flat.p[5] == -1.0
    merged = {**a, **h}
    a["b"] = np.array([7.0, 8.0])  # a load_state_dict replaced it
    flat.adopt(merged)
    assert a["b"] is flat.views["b"] and merged["b"] is flat.views["b"]
    np.testing.assert_array_equal(flat.p[6:8], [7.0, 8.0])
    g = flat.gather({"w": np.ones((2, 3)), "b": np.zeros(2), "head.bias": np.full(3, 3.0)})
    np.testing.assert_array_equal(g, [1] * 6 + [0, 0, 3, 3, 3])


def test_step_flat_rejects_a_buffer_of_another_layout():
    params, _ = random_problem(np.float64)
    opt = make_optimizer("adam", params, 1e-3)
    n = sum(v.size for v in params.values())
    with pytest.raises(ValueError, match="step_flat"):
        opt.step_flat(np.zeros(n + 1), np.zeros(n + 1))
    with pytest.raises(ValueError, match="step_flat"):
        opt.step_flat(np.zeros(n, np.float32), np.zeros(n, np.float32))
    assert opt.steps == 0


@pytest.mark.parametrize("text", ["none", "value:0.5", "norm:1", "norm:100"])
def test_apply_flat_matches_apply(text):
    g = clip_problem(2.0)
    keys = ["w", "b"]
    flat = np.concatenate([g[k].ravel() for k in keys])
    norm, clipped = parse_clip(text).apply(g, keys)
    assert flat_norm(flat) == pytest.approx(norm, rel=1e-15)
    assert parse_clip(text).apply_flat(flat, norm) == clipped
    np.testing.assert_allclose(flat, np.concatenate([g[k].ravel() for k in keys]), rtol=1e-15)


def test_flat_norm_overflow_and_non_finite():
    big = np.array([1e200, 1e200])
    assert flat_norm(big) == pytest.approx(math.sqrt(2) * 1e200)
    assert flat_norm(np.array([1.0, np.inf])) == math.inf
    assert math.isnan(flat_norm(np.array([1.0, np.nan])))
    assert flat_norm(np.array([3.0, 4.0], np.float32)) == 5.0
