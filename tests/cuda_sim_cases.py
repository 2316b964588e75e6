"""CUDA kernels and backend under numba's CUDA simulator, compared with the CPU kernels.

Run by tests/test_cuda_sim.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (numba reads it at
import, so it cannot share a process with the other tests); the file name keeps it out of
the main collection. Shapes are tiny and the launch geometry small (4 threads per block,
GEMM tiles of 4) so that several blocks, ragged edges, split dot products and idle threads
all run; the simulator runs one block of a cooperative grid, so the persistent kernels run
with one block and the per-step kernels with several. Where there is a GPU, the same test
file runs them on the hardware too (NUMBA_ENABLE_CUDASIM=0), where persistent grids have
several blocks.
"""

from __future__ import annotations

import importlib

import numba
import numpy as np
import pytest
from numba import cuda

if not (numba.config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip(
        "needs a GPU or NUMBA_ENABLE_CUDASIM=1; run through tests/test_cuda_sim.py",
        allow_module_level=True,
    )
from seqbench.kernels import config  # noqa: E402
from seqbench.kernels.cuda import _common, _plan  # noqa: E402

import seqbench as sb  # noqa: E402
from seqbench.backends import cuda_gpu  # noqa: E402

CELLS = ("elman", "jordan", "lstm", "gru")
GATES = {"elman": 1, "jordan": 1, "lstm": 4, "gru": 3}
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}

# (recurrence path, threads per block, batch, largest dot-product split): what each exercises
GEOMETRIES = {
    "per-step": ("per-step", 4, 3, 32),  # 5 blocks of one unit, 3 pairs of 4 threads
    "persistent": ("persistent", 4, 3, 32),  # one block, 15 pairs in 4 rounds
    "per-step-split": ("per-step", 4, 1, 32),  # 4 threads share each dot product
    "per-step-idle": ("per-step", 6, 1, 32),  # groups of 4, threads 4 and 5 idle
    "per-step-wide": ("per-step", 8, 2, 1),  # 4 units a block: blocks of 4 + 1 units
    "persistent-split": ("persistent", 16, 1, 32),  # pairs of threads, 3 idle groups
}


@pytest.fixture
def geometry(monkeypatch):
    def use(mode="auto", threads=4, split=32, esn_lanes=0):
        monkeypatch.setattr(config, "CUDA_RECURRENCE", mode)
        monkeypatch.setattr(config, "CUDA_ESN_LANES", esn_lanes)
        monkeypatch.setattr(config, "THREADS_PER_BLOCK", threads)
        monkeypatch.setattr(config, "CUDA_MAX_SPLIT", split)
        monkeypatch.setattr(config, "GEMM_TILE", 4)

    return use


# ---------------------------------------------------------------- kernels


def _data(cell, dtype, T=4, B=3, H=5, O=3, seed=0):
    """Inputs of one forward and one backward call, torch layouts for the weights."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    G = GATES[cell] * H
    d = {"T": T, "B": B, "H": H, "dtype": dtype, "x_proj": r(T, B, G)}
    if cell == "jordan":
        d.update(
            w_yh=r(H, O, scale=0.5),
            w_hy=r(O, H, scale=0.5),
            b_hy=r(O),
            y0=r(B, O),
            dy_out=r(T, B, O),
            dy_last=r(B, O),
            O=O,
        )
    else:
        d.update(
            w_hh=r(G, H, scale=0.5),
            b_hh=r(G),
            h0=r(B, H),
            c0=r(B, H),
            dh_out=r(T, B, H),
            dh_last=r(B, H),
            dc_last=r(B, H),
        )
    return d


def _run(cell, mod, d):
    """Forward, then backward on forward's own outputs; every output by name."""
    T, B, H, dt = d["T"], d["B"], d["H"], d["dtype"]

    def out(*shape):  # NaN: an entry a kernel forgets to write fails the comparison
        return np.full(shape, np.nan, dtype=dt)

    fwd, bwd = getattr(mod, f"{cell}_forward"), getattr(mod, f"{cell}_backward")
    if cell == "jordan":
        O = d["O"]
        h_seq, y_seq = out(T, B, H), out(T, B, O)
        fwd(d["x_proj"], d["w_yh"].T.copy(), d["w_hy"].T.copy(), d["b_hy"], d["y0"], h_seq, y_seq)
        dy_tot, dpre, dy0, dn = out(T, B, O), out(T, B, H), out(B, O), out(T)
        bwd(d["dy_out"], d["dy_last"], h_seq, d["w_yh"], d["w_hy"], dy_tot, dpre, dy0, dn)
        return dict(h_seq=h_seq, y_seq=y_seq, dy_tot=dy_tot, dpre=dpre, dy0=dy0, dh_norms=dn)
    w_t = d["w_hh"].T.copy()
    if cell == "elman":
        for relu in (False, True):
            h_seq = out(T, B, H)
            fwd(d["x_proj"], w_t, d["b_hh"], d["h0"], relu, h_seq)
            dpre, dh0, dn = out(T, B, H), out(B, H), out(T)
            bwd(d["dh_out"], d["dh_last"], h_seq, d["w_hh"], relu, dpre, dh0, dn)
            res = dict(h_seq=h_seq, dpre=dpre, dh0=dh0, dh_norms=dn)
            if not relu:
                tanh_res = res
        return {**{f"tanh_{k}": v for k, v in tanh_res.items()}, **res}
    if cell == "lstm":
        gates, c_seq, h_seq = out(T, B, 4 * H), out(T, B, H), out(T, B, H)
        fwd(d["x_proj"], w_t, d["b_hh"], d["h0"], d["c0"], gates, c_seq, h_seq)
        dpre, dh0, dc0, dn = out(T, B, 4 * H), out(B, H), out(B, H), out(T)
        bwd(
            d["dh_out"],
            d["dh_last"],
            d["dc_last"],
            gates,
            c_seq,
            d["c0"],
            d["w_hh"],
            dpre,
            dh0,
            dc0,
            dn,
        )
        return dict(gates=gates, c_seq=c_seq, h_seq=h_seq, dpre=dpre, dh0=dh0, dc0=dc0, dh_norms=dn)
    gates, h_seq = out(T, B, 4 * H), out(T, B, H)
    fwd(d["x_proj"], w_t, d["b_hh"], d["h0"], gates, h_seq)
    dx_proj, dhn, dh0, dn = out(T, B, 3 * H), out(T, B, H), out(B, H), out(T)
    bwd(d["dh_out"], d["dh_last"], gates, h_seq, d["h0"], d["w_hh"], dx_proj, dhn, dh0, dn)
    return dict(gates=gates, h_seq=h_seq, dx_proj=dx_proj, dhn=dhn, dh0=dh0, dh_norms=dn)


def _kernels(side, cell):
    return importlib.import_module(f"seqbench.kernels.{side}.{cell}")


def _assert_same(want, got, dtype):
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], err_msg=name, **TOL[dtype])


@pytest.mark.parametrize("where", sorted(GEOMETRIES))
@pytest.mark.parametrize("cell", CELLS)
def test_kernel_matches_cpu_float64(cell, where, geometry):
    mode, threads, batch, split = GEOMETRIES[where]
    geometry(mode, threads, split)
    d = _data(cell, np.float64, B=batch)
    got = _run(cell, _kernels("cuda", cell), d)
    assert _plan.last_plan.persistent == (mode == "persistent")
    _assert_same(_run(cell, _kernels("cpu", cell), d), got, np.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_kernel_matches_cpu_float32(cell, geometry):
    geometry("per-step", 4, 32)
    d = _data(cell, np.float32, T=5, B=2, H=7, O=4)
    _assert_same(
        _run(cell, _kernels("cpu", cell), d), _run(cell, _kernels("cuda", cell), d), np.float32
    )


def test_device_arrays_are_written_in_place(geometry):
    """Device arrays in, nothing copied back: outputs land in the caller's device buffers."""
    geometry("auto")
    d = _data("lstm", np.float64)
    want = _run("lstm", _kernels("cpu", "lstm"), d)
    T, B, H = 4, 3, 5
    up = {k: cuda.to_device(v) for k, v in d.items() if isinstance(v, np.ndarray)}
    gates, c_seq, h_seq = (cuda.device_array(s) for s in ((T, B, 4 * H), (T, B, H), (T, B, H)))
    k = _kernels("cuda", "lstm")
    k.lstm_forward(
        up["x_proj"],
        cuda.to_device(d["w_hh"].T.copy()),
        up["b_hh"],
        up["h0"],
        up["c0"],
        gates,
        c_seq,
        h_seq,
    )
    np.testing.assert_allclose(h_seq.copy_to_host(), want["h_seq"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gates.copy_to_host(), want["gates"], rtol=1e-10, atol=1e-10)


def test_persistent_is_refused_where_it_cannot_run(geometry, monkeypatch):
    geometry("persistent")
    monkeypatch.setattr(config, "CUDA_SHARED_BYTES", 64)
    with pytest.raises(RuntimeError, match="persistent"):
        _run("elman", _kernels("cuda", "elman"), _data("elman", np.float64))
    monkeypatch.setattr(config, "CUDA_RECURRENCE", "auto")  # auto falls back to per step
    _run("elman", _kernels("cuda", "elman"), _data("elman", np.float64))
    assert not _plan.last_plan.persistent


# ---------------------------------------------------------------- GEMM and column sums


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_numpy(trans_a, trans_b, geometry):
    geometry()
    rng = np.random.default_rng(1)
    M, N, K = 7, 5, 6  # none a multiple of the tile (4)
    a = rng.standard_normal((K, M) if trans_a else (M, K))
    b = rng.standard_normal((N, K) if trans_b else (K, N))
    c0 = rng.standard_normal((M, N))
    bias = rng.standard_normal(N)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    c = cuda.to_device(c0)
    _common.gemm(cuda.to_device(a), cuda.to_device(b), c, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(c.copy_to_host(), want, rtol=1e-12, atol=1e-12)
    c = cuda.to_device(c0)
    _common.gemm(
        cuda.to_device(a),
        cuda.to_device(b),
        c,
        trans_a=trans_a,
        trans_b=trans_b,
        bias=cuda.to_device(bias),
        accumulate=True,
    )
    np.testing.assert_allclose(c.copy_to_host(), c0 + want + bias, rtol=1e-12, atol=1e-12)


def test_colsum_matches_numpy(geometry):
    geometry()
    a = np.random.default_rng(2).standard_normal((70, 5))  # 64 row chunks, a ragged last one
    out = cuda.to_device(np.ones(5))
    _common.colsum(cuda.to_device(a), out, accumulate=True)
    np.testing.assert_allclose(out.copy_to_host(), 1.0 + a.sum(axis=0), rtol=1e-12)


# ---------------------------------------------------------------- the cuda backend


def _train_step(cell, backend, dtype, x, **kw):
    m = sb.build_model(cell, x.shape[2], 5, dtype=dtype, backend=backend, seed=3, **kw)
    y, tape = m.forward(x)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    g = m.backward(tape, dy)
    return m, y, tape, g


def _assert_models_agree(a, b, tol):
    (_, ya, ta, ga), (_, yb, tb, gb) = a, b
    np.testing.assert_allclose(yb, ya, err_msg="y", **tol)
    np.testing.assert_allclose(tb.h_n, ta.h_n, err_msg="h_n", **tol)
    if ta.c_n is not None:
        np.testing.assert_allclose(tb.c_n, ta.c_n, err_msg="c_n", **tol)
    assert ga.keys() == gb.keys()
    for k in ga:
        np.testing.assert_allclose(gb[k], ga[k], err_msg=k, **tol)
    np.testing.assert_allclose(gb.dh_norms, ga.dh_norms, err_msg="dh_norms", **tol)
    init_a = ga.initial_state if isinstance(ga.initial_state, tuple) else (ga.initial_state,)
    init_b = gb.initial_state if isinstance(gb.initial_state, tuple) else (gb.initial_state,)
    for u, v in zip(init_a, init_b, strict=True):
        np.testing.assert_allclose(v, u, err_msg="initial_state", **tol)


OPTIONS = {"elman": {"nonlinearity": "relu"}, "jordan": {"output_size": 3}, "lstm": {}, "gru": {}}


@pytest.mark.parametrize("cell", CELLS)
def test_model_matches_numba_backend(cell, geometry):
    """Two layers, both directions, float64: forward, every gradient, dh_norms."""
    geometry("auto")
    x = np.random.default_rng(5).standard_normal((2, 3, 2))
    kw = dict(num_layers=2, bidirectional=True, **OPTIONS[cell])
    _assert_models_agree(
        _train_step(cell, "numba", "float64", x, **kw),
        _train_step(cell, "cuda", "float64", x, **kw),
        TOL[np.float64],
    )


def test_model_float32_matches_numba_backend(geometry):
    geometry("auto")
    x = np.random.default_rng(6).standard_normal((2, 4, 3))
    _assert_models_agree(
        _train_step("gru", "numba", "float32", x),
        _train_step("gru", "cuda", "float32", x),
        TOL[np.float32],
    )


def test_weights_stay_on_device_until_they_change(geometry):
    geometry("auto")
    x = np.random.default_rng(7).standard_normal((1, 3, 2))
    m = sb.build_model("elman", 2, 5, dtype="float64", backend="cuda", seed=0)
    ref = sb.build_model("elman", 2, 5, dtype="float64", backend="numba", seed=0)
    w = m.params["weight_hh_l0"]
    m.forward(x)
    first = cuda_gpu.weights(w, True)
    m.forward(x)
    assert cuda_gpu.weights(w, True) is first  # no second upload
    w *= 0.5  # an optimizer's in-place update
    ref.params["weight_hh_l0"] *= 0.5
    np.testing.assert_allclose(m.forward(x)[0], ref.forward(x)[0], rtol=1e-12, atol=1e-12)
    assert cuda_gpu.weights(w, True) is not first


# ---------------------------------------------------------------- echo-state network


def _esn_data(B, N=7, T=5, O=0, seed=11, density=0.4):
    """Inputs of one esn_forward call, float64; W dense and as uint32 CSR."""
    import scipy.sparse as sparse_mod

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, N)) * (rng.random((N, N)) < density)
    w *= 0.9 / max(np.max(np.abs(np.linalg.eigvals(w))), 1e-12)
    csr = sparse_mod.csr_array(w)
    d = dict(
        u_proj=rng.standard_normal((B, T, N)),
        w_hh_t=np.ascontiguousarray(w.T),
        csr=(
            csr.indptr.astype(np.uint32),
            csr.indices.astype(np.uint32),
            np.ascontiguousarray(csr.data),
        ),
        x0=0.5 * rng.standard_normal((B, N)),
        w_fb=rng.uniform(-1.0, 1.0, (N, O)),
        w_out=0.3 * rng.standard_normal((O, N)),
        b_out=rng.standard_normal(O),
        y0=rng.standard_normal((B, O)),
    )
    return d


def _esn_run(mod, d, sparse, leak, linear):
    B, T, N = d["u_proj"].shape
    O = d["w_out"].shape[0]
    states = np.full((B, T, N), np.nan, d["u_proj"].dtype)
    outputs = np.full((B, T, O), np.nan, d["u_proj"].dtype)
    common = (leak, linear, d["x0"], states, d["w_fb"], d["w_out"], d["b_out"], d["y0"], outputs)
    u_proj = d["u_proj"].copy()
    if sparse:
        mod.esn_forward_csr(u_proj, *d["csr"], *common)
    else:
        mod.esn_forward(u_proj, d["w_hh_t"], *common)
    return states, outputs


@pytest.mark.parametrize("O", [0, 2])
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("B", [1, 3])
def test_esn_kernel_matches_cpu_float64(B, sparse, linear, O, geometry):
    geometry("per-step")  # 4 threads per block; N = 7 leaves idle threads in the last block
    d = _esn_data(B, O=O)
    leak = 0.7
    want = _esn_run(_kernels("cpu", "esn"), d, sparse, leak, linear)
    got = _esn_run(_kernels("cuda", "esn"), d, sparse, leak, linear)
    for name, w, g in zip(("states", "outputs"), want, got, strict=True):
        np.testing.assert_allclose(g, w, err_msg=name, **TOL[np.float64])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("O", [0, 2])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    "B, N, density, lanes",
    [(1, 9, 1.0, 4), (3, 7, 0.4, 0)],  # CSR rows split over groups of 4 lanes; lanes chosen
)
def test_esn_persistent_kernel_matches_cpu(B, N, density, lanes, sparse, O, dtype, geometry):
    """The whole time loop in one launch: 4 threads a block, so the B*N pairs (and the B*O
    readout pairs) go round the grid's groups in several rounds."""
    geometry("persistent", esn_lanes=lanes)
    d = _esn_data(B, N=N, O=O, density=density)
    d = {k: v if k == "csr" else v.astype(dtype) for k, v in d.items()}
    d["csr"] = (*d["csr"][:2], d["csr"][2].astype(dtype))
    want = _esn_run(_kernels("cpu", "esn"), d, sparse, 0.7, False)
    got = _esn_run(_kernels("cuda", "esn"), d, sparse, 0.7, False)
    for name, w, g in zip(("states", "outputs"), want, got, strict=True):
        np.testing.assert_allclose(g, w, err_msg=name, **TOL[dtype])


def test_esn_kernel_states_may_alias_u_proj(geometry):
    """The model passes states = u_proj (written in place), as on the CPU."""
    geometry()
    d = _esn_data(3)
    want, _ = _esn_run(_kernels("cpu", "esn"), d, True, 0.6, False)
    u = d["u_proj"].copy()
    common = (0.6, False, d["x0"], u, d["w_fb"], d["w_out"], d["b_out"], d["y0"])
    _kernels("cuda", "esn").esn_forward_csr(u, *d["csr"], *common, np.empty((3, 5, 0)))
    np.testing.assert_allclose(u, want, **TOL[np.float64])


@pytest.mark.parametrize("sparse", [False, True])
def test_esn_model_matches_numba_backend(sparse, geometry):
    geometry()
    kw = dict(seed=2, dtype="float64", leak=0.5, connectivity=0.5, bias_scaling=0.3, sparse=sparse)
    x = np.random.default_rng(8).standard_normal((3, 4, 2))
    ref = sb.build_model("esn", 2, 7, backend="numba", **kw)
    got = sb.build_model("esn", 2, 7, backend="cuda", **kw)
    (s_ref, t_ref), (s_got, t_got) = ref.forward(x), got.forward(x)
    np.testing.assert_allclose(s_got, s_ref, **TOL[np.float64])
    np.testing.assert_allclose(t_got.h_n, t_ref.h_n, **TOL[np.float64])
    # free run with output feedback (feedback_size 2) and teacher forcing
    kw["feedback_size"] = 2
    ref = sb.build_model("esn", 2, 7, backend="numba", **kw)
    got = sb.build_model("esn", 2, 7, backend="cuda", **kw)
    rng = np.random.default_rng(9)
    w_out, b_out = 0.3 * rng.standard_normal((2, 7)), rng.standard_normal(2)
    teacher = rng.standard_normal((3, 4, 2))
    np.testing.assert_allclose(
        got.forward(x, teacher=teacher)[0], ref.forward(x, teacher=teacher)[0], **TOL[np.float64]
    )
    a = ref.generate(5, w_out, b_out, x=np.ones((3, 5, 2)))
    b = got.generate(5, w_out, b_out, x=np.ones((3, 5, 2)))
    for name, u, v in zip(("states", "outputs"), a[:2], b[:2], strict=True):
        np.testing.assert_allclose(v, u, err_msg=name, **TOL[np.float64])
