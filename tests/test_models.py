"""Numerics of every cell: Numba kernels vs the NumPy reference, finite differences, torch."""

import numpy as np
import pytest
from conftest import CELL_CASES, case_id

import seqbench as sb

STACKS = [(1, False), (1, True), (2, False), (2, True)]  # (num_layers, bidirectional)


def _model(case, backend, dtype="float64", layers=1, bi=False, I=3, H=5, seed=7):
    cell, opts = case
    return sb.build_model(
        cell,
        I,
        H,
        num_layers=layers,
        bidirectional=bi,
        dtype=dtype,
        backend=backend,
        seed=seed,
        **opts,
    )


def _random_state(model, rng, B):
    n = model.num_layers * model.num_directions
    h = rng.standard_normal((n, B, model.state_size)) * 0.5
    if model.spec.n_states == 2:
        return (h, rng.standard_normal((n, B, model.hidden_size)) * 0.5)
    return h


def _as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def _run(model, x, h0, dy, dh_n):
    y, tape = model.forward(x, h0)
    return y, tape, model.backward(tape, dy, dh_n)


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: f"L{s[0]}{'-bi' if s[1] else ''}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_numba_matches_reference(case, dtype, stack, rng):
    layers, bi = stack
    ref, fast = (_model(case, b, dtype, layers, bi) for b in ("numpy", "numba"))
    x = rng.standard_normal((3, 6, 3))
    h0 = _random_state(ref, rng, 3)
    y_ref, tape_ref = ref.forward(x, h0)
    dy = rng.standard_normal(y_ref.shape)
    dh_n = tuple(rng.standard_normal(s.shape) for s in _as_tuple(tape_ref.state_n))
    dh_n = dh_n if len(dh_n) == 2 else dh_n[0]
    g_ref = ref.backward(tape_ref, dy, dh_n)
    y, tape, g = _run(fast, x, h0, dy, dh_n)
    tol = 1e-12 if dtype == "float64" else 1e-5

    def close(a, b, what):
        scale = max(1.0, float(np.max(np.abs(b))))
        assert np.max(np.abs(a - b)) <= tol * scale, what

    assert y.dtype == np.dtype(dtype) and g["input"].dtype == np.dtype(dtype)
    close(y, y_ref, "y")
    for a, b in zip(_as_tuple(tape.state_n), _as_tuple(tape_ref.state_n), strict=True):
        close(a, b, "final state")
    assert set(g) == set(g_ref) == set(fast.state_dict()) | {"input"}
    for k in g_ref:
        close(g[k], g_ref[k], k)
    close(g.dh_norms, g_ref.dh_norms, "dh_norms")
    for a, b in zip(_as_tuple(g.initial_state), _as_tuple(g_ref.initial_state), strict=True):
        close(a, b, "dL/dh0")


def _loss(model, x, h0, r_y, r_state):
    y, tape = model.forward(x, h0)
    total = np.sum(y * r_y)
    for s, r in zip(_as_tuple(tape.state_n), r_state, strict=True):
        total += np.sum(s * r)
    return total


def _fd(f, a, eps=1e-6):
    """Central finite differences of the scalar f() w.r.t. every entry of a (in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def _rel_err(a, b):  # max entry error relative to the tensor's largest entry
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-8)


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: f"L{s[0]}{'-bi' if s[1] else ''}")
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_backward_matches_finite_differences(case, stack, rng):
    layers, bi = stack
    model = _model(case, "numba", "float64", layers, bi, I=2, H=3)
    x = rng.standard_normal((2, 4, 2))
    h0 = _random_state(model, rng, 2)
    y, tape = model.forward(x, h0)
    r_y = rng.standard_normal(y.shape)
    r_state = [rng.standard_normal(s.shape) for s in _as_tuple(tape.state_n)]
    dh_n = tuple(r_state) if len(r_state) == 2 else r_state[0]
    grads = model.backward(tape, r_y, dh_n)

    def loss():
        return _loss(model, x, h0, r_y, r_state)

    for name, p in model.params.items():
        assert _rel_err(grads[name], _fd(loss, p)) < 1e-6, name
    assert _rel_err(grads["input"], _fd(loss, x)) < 1e-6
    for g0, s0 in zip(_as_tuple(grads.initial_state), _as_tuple(h0), strict=True):
        assert _rel_err(g0, _fd(loss, s0)) < 1e-6


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_backward_without_the_input_gradient(case, backend, rng):
    """input_grad=False (what the training loop asks): no "input" key, every other gradient
    bit-identical to a full backward's, stacked and bidirectional."""
    model = _model(case, backend, layers=2, bi=True)
    x = rng.standard_normal((2, 4, 3))
    y, tape = model.forward(x)
    dy = rng.standard_normal(y.shape)
    full, lean = model.backward(tape, dy), model.backward(tape, dy, input_grad=False)
    assert "input" in full and "input" not in lean
    assert set(full) - {"input"} == set(lean)
    for name in lean:
        np.testing.assert_array_equal(lean[name], full[name], err_msg=name)
    np.testing.assert_array_equal(lean.dh_norms, full.dh_norms)
    for a, b in zip(_as_tuple(lean.initial_state), _as_tuple(full.initial_state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dh_norms_are_the_state_gradient_norms(rng):
    """Unidirectional, one layer: dh_norms[t] = mean_b ||dL/dh_t|| with dL/dh_T = dy_T."""
    model = _model(("gru", {}), "numba", layers=1)
    x = rng.standard_normal((4, 5, 3))
    y, tape = model.forward(x)
    dy = np.zeros_like(y)
    dy[:, -1] = rng.standard_normal((4, 5))
    g = model.backward(tape, dy)
    assert g.dh_norms.shape == (1, 5)
    assert np.isclose(g.dh_norms[0, -1], np.linalg.norm(dy[:, -1], axis=1).mean())
    assert np.all(g.dh_norms[0, :-1] > 0)


def test_final_state_is_last_output_and_layout(rng):
    model = _model(("lstm", {}), "numba", layers=2, bi=True)
    x = rng.standard_normal((3, 4, 3))
    y, tape = model.forward(x)
    assert y.shape == (3, 4, 10) and tape.h_n.shape == (4, 3, 5) and tape.c_n.shape == (4, 3, 5)
    np.testing.assert_array_equal(tape.h_n[2], y[:, -1, :5])  # layer 1 forward: last step
    np.testing.assert_array_equal(tape.h_n[3], y[:, 0, 5:])  # layer 1 reverse: first step


@pytest.mark.parametrize("init", ["orthogonal", "identity", "spectral:0.5"])
def test_recurrent_inits(init):
    model = sb.build_model("elman", 3, 8, init=init, dtype="float64")
    w = model.params["weight_hh_l0"]
    if init == "orthogonal":
        np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-12)
    elif init == "identity":
        np.testing.assert_array_equal(w, np.eye(8))
        assert not model.params["bias_hh_l0"].any()
    else:
        assert np.isclose(np.max(np.abs(np.linalg.eigvals(w))), 0.5)


def test_lstm_forget_bias_and_seeding():
    a = sb.build_model("lstm", 3, 4, forget_bias=1.0, seed=3)
    total = a.params["bias_ih_l0"][4:8] + a.params["bias_hh_l0"][4:8]
    np.testing.assert_array_equal(total, np.ones(4, dtype=np.float32))
    b = sb.build_model("lstm", 3, 4, forget_bias=1.0, seed=3)
    c = sb.build_model("lstm", 3, 4, forget_bias=1.0, seed=4)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["weight_hh_l0"], c.params["weight_hh_l0"])


def _check_against_reference(case, dtype, rng, B, T, I, H, x=None, **stack):
    """Forward and backward of the numba model equal the NumPy reference's."""
    ref, fast = (_model(case, b, dtype, I=I, H=H, **stack) for b in ("numpy", "numba"))
    x = rng.standard_normal((B, T, I)) if x is None else x
    h0 = _random_state(ref, rng, B)
    y_ref, tape_ref = ref.forward(x, h0)
    dy = rng.standard_normal(y_ref.shape)
    g_ref = ref.backward(tape_ref, dy)
    y, tape = fast.forward(x, h0)
    g = fast.backward(tape, dy)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for a, b in [(y, y_ref), *((g[k], g_ref[k]) for k in g_ref), (g.dh_norms, g_ref.dh_norms)]:
        assert np.max(np.abs(a - b)) <= tol * max(1.0, float(np.max(np.abs(b))))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_wide_input_path_matches_reference(case, dtype, rng):
    """I above the fused-input limit: the input projection runs as one hoisted GEMM."""
    _check_against_reference(case, dtype, rng, 3, 5, 40, 5, layers=2, bi=True)


def _one_hot_x(rng, B, T, I, dtype="float64"):  # token -1: a row of zeros
    tokens = rng.integers(-1, I, (B, T))
    return (tokens[..., None] == np.arange(I)).astype(dtype)


@pytest.mark.parametrize("I", [40, 7], ids=["gathered", "fused"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_one_hot_input_path_matches_reference(case, dtype, I, rng):
    """A one-hot x (rows of zeros too): dW_ih is a scatter (kernels/cpu/onehot.py), and the
    projection a gather where I is above the fused-input limit (below it the kernel projects
    step by step); the layers above get dense input."""
    x = _one_hot_x(rng, 3, 5, I, dtype)
    _check_against_reference(case, dtype, rng, 3, 5, I, 5, x=x, layers=2, bi=True)


def test_one_hot_path_is_taken_and_its_forward_is_the_gemms_exactly(rng, monkeypatch):
    """The gather gives the GEMM's numbers bit for bit (one product with 1.0, zeros added);
    dW_ih sums the same terms in another order."""
    from seqbench.kernels.cpu import onehot

    model = _model(("lstm", {}), "numba", "float32", I=40, H=5)
    x = _one_hot_x(rng, 4, 6, 40, "float32")
    y, tape = model.forward(x)
    assert tape.caches[0]["x_idx"] is not None
    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = model.backward(tape, dy)
    # now as if x were not one-hot: the two GEMMs
    monkeypatch.setattr(onehot, "one_hot_index", lambda a: np.empty(0, dtype=np.int64))
    y2, tape2 = model.forward(x)
    assert tape2.caches[0]["x_idx"] is None
    np.testing.assert_array_equal(y, y2)
    g2 = model.backward(tape2, dy)
    for k in g:
        np.testing.assert_allclose(g[k], g2[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_small_dense_input_weight_gradient_is_summed_in_the_kernel(cell, rng, monkeypatch):
    """A dense input of at most FUSE_INPUT_MAX features: the backward kernel sums x^T d per
    block (no GEMM after the loop), and dW_ih equals the GEMM's; a one-hot input keeps its
    scatter."""
    from seqbench.kernels import config

    import seqbench.backends.numba_cpu as nc

    seen = []  # per layer's backward: whether dW_ih came from the kernel's partials
    real = nc._input_wgrad
    monkeypatch.setattr(nc, "_input_wgrad", lambda *a: seen.append(a[3] is not None) or real(*a))
    model = _model((cell, {}), "numba", "float64", layers=2, I=7, H=5)  # layer 2: I = 5
    x = rng.standard_normal((9, 4, 7))  # 9 rows: a block on each of two threads
    y, tape = model.forward(x)
    dy = rng.standard_normal(y.shape)
    g = model.backward(tape, dy)
    assert seen == [True, True]
    with monkeypatch.context() as m:
        m.setattr(config, "FUSE_INPUT_MAX", 0)  # as for a wide input: the GEMMs
        y2, tape2 = model.forward(x)
        g2 = model.backward(tape2, dy)
    assert seen[2:] == [False, False]
    for k in g:
        np.testing.assert_allclose(g[k], g2[k], rtol=1e-12, atol=1e-13, err_msg=k)
    seen.clear()
    y3, tape3 = model.forward(_one_hot_x(rng, 9, 4, 7))
    model.backward(tape3, dy)
    assert seen == [True, False]  # backward runs top down: the dense layer 2, the one-hot 1


@pytest.mark.parametrize(
    "row, one_hot",
    [([0, 1, 0], True), ([0, 0, 0], True), ([1, 1, 0], False), ([0, 2, 0], False),
     ([0, 0.5, 0], False), ([0, np.nan, 0], False), ([-1, 0, 0], False)],
)  # fmt: skip
def test_one_hot_index_accepts_only_one_hot_rows(row, one_hot):
    from seqbench.kernels.cpu import onehot

    x = np.array([[1.0, 0, 0], row, [0, 0, 1.0]])
    idx = onehot.one_hot_index(x)
    if one_hot:
        assert idx.tolist() == [0, int(np.argmax(row)) if any(row) else -1, 2]
    else:
        assert idx.size == 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_register_tiles_match_reference(case, dtype, rng):
    """Shapes that run every part of the tiled recurrent product (kernels/cpu/_simd.py):
    full 8-row tiles and leftover rows, whole vectors and a ragged column tail."""
    _check_against_reference(case, dtype, rng, 19, 4, 3, 21)


@pytest.mark.parametrize("threaded", [False, True], ids=["blas-per-block", "blas-threads"])
@pytest.mark.parametrize("case", CELL_CASES, ids=case_id)
def test_blas_recurrence_paths_match_reference(case, threaded, rng, monkeypatch):
    """The per-step BLAS product (off by default, chosen per call from the config)."""
    from seqbench.kernels import config

    monkeypatch.setattr(config, "BLAS_MIN_MACS", 0)
    monkeypatch.setattr(config, "BLAS_THREADED_MACS", 0 if threaded else 1 << 40)
    _check_against_reference(case, "float64", rng, 9, 4, 3, 6)
