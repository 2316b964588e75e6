"""Echo-state networks: kernels against the NumPy oracle, ridge against lstsq, ReservoirPy
parity, construction, memory capacity, the reservoir tasks and bad input."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import scipy.sparse as sp

from seqbench import readout
from seqbench.backends import cpu_runtime
from seqbench.errors import ConfigError
from seqbench.esn_fit import default_train_batches, fit_esn, linear_memory_capacity
from seqbench.models.esn import build_esn, estimate_spectral_radius
from seqbench.readout import Ridge, fit_ridge, free_run, warm_then_free_run
from seqbench.tasks import make_task
from seqbench.tasks.narma import narma10

N_SMALL = 40


def pair(**kw):
    """The same reservoir on the numba kernels and on the NumPy oracle."""
    kw = {"seed": 3, "spectral_radius": 0.95, "connectivity": 0.2, **kw}
    return build_esn(2, N_SMALL, backend="numba", **kw), build_esn(
        2, N_SMALL, backend="numpy", **kw
    )


# -- kernels equal the oracle


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
@pytest.mark.parametrize("B", [1, 3, 9])  # 9: the sparse x dense path of the CSR kernel
@pytest.mark.parametrize("leak, bias", [(1.0, 0.0), (0.3, 0.5)])
def test_states_match_numpy_reference(sparse, B, leak, bias, rng):
    fast, ref = pair(sparse=sparse, leak=leak, bias_scaling=bias, input_scaling=2.0)
    x = rng.uniform(-1, 1, (B, 25, 2))
    h0 = rng.uniform(-0.5, 0.5, (1, B, N_SMALL))
    ys, tape = fast.forward(x, h0)
    yr, tape_r = ref.forward(x, h0)
    assert ys.shape == (B, 25, N_SMALL)
    np.testing.assert_allclose(ys, yr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tape.h_n[0], ys[:, -1])
    np.testing.assert_allclose(tape.h_n, tape_r.h_n, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
@pytest.mark.parametrize("B", [1, 9])
def test_feedback_teacher_forcing_and_free_run_match_reference(sparse, B, rng):
    fast, ref = pair(sparse=sparse, leak=0.5, bias_scaling=0.2, feedback_size=2)
    x = rng.uniform(-1, 1, (B, 20, 2))
    teacher = rng.uniform(-1, 1, (B, 20, 2))
    a, _ = fast.forward(x, teacher=teacher)
    b, _ = ref.forward(x, teacher=teacher)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    w_out, b_out = 0.1 * rng.standard_normal((2, N_SMALL)), rng.standard_normal(2)
    y0, h0 = rng.uniform(-1, 1, (B, 2)), a[:, -1]
    sa, oa, _ = fast.generate(15, w_out, b_out, x=x[:, :15], h0=h0, y0=y0)
    sb, ob, _ = ref.generate(15, w_out, b_out, x=x[:, :15], h0=h0, y0=y0)
    np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-12)
    np.testing.assert_allclose(oa, ob, rtol=0, atol=1e-12)
    np.testing.assert_allclose(oa, sa @ w_out.T + b_out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("B", [2, 9])  # 9: the chunked kernel, with no input but the output
def test_autoregressive_free_run_matches_reference(B, rng):
    fast, ref = build_esn(1, N_SMALL, seed=1), build_esn(1, N_SMALL, seed=1, backend="numpy")
    w_out, b_out = 0.05 * rng.standard_normal((1, N_SMALL)), np.array([0.1])
    y0 = rng.uniform(-0.5, 0.5, (B, 1))
    oa = fast.generate(12, w_out, b_out, y0=y0)[1]
    ob = ref.generate(12, w_out, b_out, y0=y0)[1]
    np.testing.assert_allclose(oa, ob, rtol=0, atol=1e-12)


# 1, 2: one series at a time, rows split over two threads meeting at a barrier each step
# (N = 300 at 10%: enough nonzeros for two threads); 4, 8: one chunk, its units split over a
# team of two threads (a barrier a step); 17, 40: chunks of 16 series per thread (the last
# chunk partly empty)
@pytest.mark.parametrize("B", [1, 2, 4, 8, 17, 40])
def test_threaded_sparse_kernels_match_reference(B, two_threads, rng):
    kw = {"seed": 5, "connectivity": 0.1, "leak": 0.6, "bias_scaling": 0.3, "feedback_size": 1}
    fast, ref = build_esn(2, 300, **kw), build_esn(2, 300, backend="numpy", **kw)
    x, teacher = rng.uniform(-1, 1, (B, 12, 2)), rng.uniform(-1, 1, (B, 12, 1))
    h0 = rng.uniform(-0.5, 0.5, (1, B, 300))
    a, b = fast.forward(x, h0, teacher=teacher)[0], ref.forward(x, h0, teacher=teacher)[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    w_out, b_out = 0.05 * rng.standard_normal((1, 300)), rng.standard_normal(1)
    y0 = rng.uniform(-1, 1, (B, 1))
    sa, oa, _ = fast.generate(10, w_out, b_out, x=x[:, :10], h0=a[:, -1], y0=y0)
    sb, ob, _ = ref.generate(10, w_out, b_out, x=x[:, :10], h0=a[:, -1], y0=y0)
    np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-12)
    np.testing.assert_allclose(oa, ob, rtol=0, atol=1e-12)


def test_each_thread_gets_its_own_blocked_w_refreshed_on_load(two_threads, monkeypatch, rng):
    from seqbench.backends import numba_esn

    kw = {"seed": 6, "connectivity": 0.1}
    fast, ref = build_esn(1, 300, **kw), build_esn(1, 300, backend="numpy", **kw)
    x = rng.uniform(-1, 1, (40, 6, 1))
    fast.forward(x)
    first, second = numba_esn.blocked_copies(fast.backend_state, 4, 2)
    assert all(a is not b and np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # a new W replaces every thread's copy: no thread runs on the old one
    sd = ref.state_dict()
    sd["weight_hh_l0"] = sd["weight_hh_l0"] * 0.5
    fast.load_state_dict(sd)
    ref.load_state_dict(sd)
    np.testing.assert_allclose(fast.forward(x)[0], ref.forward(x)[0], rtol=0, atol=1e-12)
    monkeypatch.setattr(numba_esn, "_OWN_COPY_BYTES", 0)  # a W too large to copy is shared
    fast.load_state_dict(sd)
    first, second = numba_esn.blocked_copies(fast.backend_state, 4, 2)
    assert first is second


@pytest.mark.parametrize("B", [1, 9])
def test_threaded_sparse_kernels_take_a_large_input_projected(B, two_threads, rng):
    from seqbench.kernels import config

    I = config.FUSE_INPUT_MAX + 8  # projected by one GEMM, states written over it in place
    kw = {"seed": 6, "connectivity": 0.1, "leak": 0.8}
    fast, ref = build_esn(I, 300, **kw), build_esn(I, 300, backend="numpy", **kw)
    x = rng.uniform(-1, 1, (B, 10, I))
    np.testing.assert_allclose(fast.forward(x)[0], ref.forward(x)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_major_transpose_every_alignment_and_remainder(dtype, rng):
    """The chunk kernels' state write: 8 x 8 register blocks, streaming stores when every row
    of states[b0:b0+n, t] starts at the same offset from a 64-byte line (N = 1000), plain
    stores otherwise (N = 300, T = 7), and the units and series past the blocks."""
    from numba import njit
    from seqbench.kernels.cpu.esn import _to_batch_major

    @njit
    def write(x, states, t, b0, n, r0, r1):
        _to_batch_major(x, states, t, b0, n, r0, r1)

    cases = [(20, 5, 1000, 2, 16), (20, 7, 300, 0, 17), (9, 3, 13, 1, 8), (4, 2, 5, 0, 3)]
    for B, T, N, b0, n in cases:
        # all units, and a team member's range: from a line boundary or not, to one or not
        for r0, r1 in ((0, N), (N // 3, N - N // 4), (8, N), (1, 5)):
            r1 = min(r1, N)
            for offset in (0, 1, 3):  # the array's start: on a line, or 1 or 3 elements past
                buf = np.zeros(B * T * N + 8, dtype=dtype)
                states = buf[offset : offset + B * T * N].reshape(B, T, N)
                x = rng.standard_normal((N + 1, 24)).astype(dtype)
                expected = states.copy()
                expected[b0 : b0 + n, T - 1, r0:r1] = x[r0:r1, :n].T
                write(x, states, T - 1, b0, n, r0, r1)
                np.testing.assert_array_equal(states, expected)


def test_spin_barrier_orders_every_step_across_threads(two_threads):
    from barrier_cases import check_order

    check_order(3000)


def test_blocked_csr_holds_w_padded_to_groups(rng):
    from seqbench.backends.numba_esn import blocked_csr

    w = sp.random_array((70, 70), density=0.15, format="csr", rng=rng)
    w.sort_indices()
    bptr, bidx, bdat = blocked_csr(w, 4, block=32)
    assert bptr.shape == (3, 71) and bidx.dtype == np.uint32
    lengths = np.diff(bptr, axis=1)
    assert np.all(lengths % 4 == 0) and bptr[-1, -1] == bidx.size
    dense = np.zeros((70, 71))
    for c in range(3):
        for i in range(70):
            cols = bidx[bptr[c, i] : bptr[c, i + 1]]
            real = cols < 70
            assert np.all((cols[real] >= 32 * c) & (cols[real] < 32 * (c + 1)))
            assert np.all(np.diff(cols[real]) > 0)  # sorted, no repeats
            np.add.at(dense[i], cols, bdat[bptr[c, i] : bptr[c, i + 1]])
    np.testing.assert_array_equal(dense[:, :70], w.toarray())
    assert np.all(dense[:, 70] == 0)  # padding: weight 0 on the zero row


@pytest.mark.parametrize("parts", [1, 3])
def test_sliced_ell_holds_w_by_position(parts, rng):
    from seqbench.backends.numba_esn import sliced_ell

    w = sp.random_array((61, 61), density=0.2, format="csr", rng=rng).tolil()
    w[[3, 40], :] = 0  # empty rows
    w = w.tocsr()
    w.sort_indices()
    sptr, sidx, sdat, order, split = sliced_ell(w, 8, 2, parts)
    slices, units = split
    assert units[0] == 0 and units[-1] == 61 and np.all(np.diff(units) > 0)
    assert np.all(np.diff(slices) == -(-np.diff(units) // 8)) and sptr.size == slices[-1] + 1
    assert np.all(np.diff(sptr) % 16 == 0) and sptr[-1] == sidx.size
    zero = 8 * slices[-1]  # the padding's position, a state that stays 0
    dense = np.zeros((zero, zero + 1))
    for s in range(slices[-1]):
        for k in range(sptr[s], sptr[s + 1]):
            dense[8 * s + (k - sptr[s]) % 8, sidx[k]] += sdat[k]
    assert np.all(dense[:, zero] == 0)
    nnz = np.diff(w.indptr)
    for k in range(parts):  # each range: its own units, contiguous, longest first
        at = order[8 * slices[k] : 8 * slices[k + 1]]
        own, rest = at[: units[k + 1] - units[k]], at[units[k + 1] - units[k] :]
        assert sorted(own) == list(range(units[k], units[k + 1])) and np.all(rest == 61)
        assert np.all(np.diff(nnz[own]) <= 0)
        assert np.all(dense[8 * slices[k] + own.size : 8 * slices[k + 1]] == 0)
    real = np.flatnonzero(order < 61)
    # W by position: W[order[p], order[q]] at (p, q)
    np.testing.assert_array_equal(
        dense[np.ix_(real, real)], w.toarray()[np.ix_(order[real], order[real])]
    )
    assert np.all(dense[:, np.setdiff1d(np.arange(zero), real)] == 0)
    if parts == 3:  # about equal nonzeros a range
        per_range = [nnz[units[k] : units[k + 1]].sum() for k in range(3)]
        assert max(per_range) - min(per_range) <= 2 * nnz.max()


def test_one_series_kernel_with_empty_rows_on_two_threads(two_threads, rng):
    kw = {"seed": 8, "connectivity": 0.12, "leak": 0.7}
    fast, ref = build_esn(1, 301, **kw), build_esn(1, 301, backend="numpy", **kw)
    sd = fast.state_dict()
    w = sd["weight_hh_l0"].tolil()
    w[rng.choice(301, 20, replace=False), :] = 0  # units with no input from the reservoir
    sd["weight_hh_l0"] = w.tocsr()
    assert sd["weight_hh_l0"].nnz >= 2 * 4096  # enough nonzeros for two threads
    fast.load_state_dict(sd)
    ref.load_state_dict(sd)
    x = rng.uniform(-1, 1, (2, 15, 1))
    h0 = rng.uniform(-0.5, 0.5, (1, 2, 301))
    np.testing.assert_allclose(fast.forward(x, h0)[0], ref.forward(x, h0)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
def test_float32_follows_float64(sparse, rng):
    kw = {"sparse": sparse, "leak": 0.5, "bias_scaling": 0.2, "seed": 4}
    m32, m64 = build_esn(2, N_SMALL, dtype="float32", **kw), build_esn(2, N_SMALL, **kw)
    for B in (1, 9):
        x = rng.uniform(-1, 1, (B, 30, 2))
        a, b = m32.forward(x)[0], m64.forward(x)[0]
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_linear_reservoir_is_linear(rng):
    m = build_esn(1, N_SMALL, activation="identity", spectral_radius=0.5)
    x1, x2 = rng.standard_normal((1, 30, 1)), rng.standard_normal((1, 30, 1))
    s = lambda x: m.forward(x)[0]  # noqa: E731
    np.testing.assert_allclose(s(x1 + 2 * x2), s(x1) + 2 * s(x2), rtol=0, atol=1e-12)


def test_tanh_f64_is_within_four_ulp():
    from numba import njit
    from seqbench.kernels import config
    from seqbench.kernels._math import tanh_f64

    @njit(fastmath=config.FASTMATH, error_model="numpy")  # as the kernels compile it
    def apply(z, out):
        for i in range(z.shape[0]):
            out[i] = tanh_f64(z[i])

    rng = np.random.default_rng(0)
    z = np.concatenate(
        [rng.uniform(-25, 25, 20000), rng.uniform(-1, 1, 20000), [0.0, 0.625, -0.625, 1e-300]]
    )
    out = np.empty_like(z)
    apply(z, out)
    exact = np.array([math.tanh(v) for v in z])  # glibc: correctly rounded in practice
    ulp = np.abs(out - exact) / np.spacing(np.maximum(np.abs(exact), 1e-300))
    assert ulp.max() <= 4.0
    assert np.abs(out - exact).max() < 5e-16


# -- ridge readout


def test_ridge_equals_lstsq_on_the_augmented_system(rng):
    X, Y, lam = rng.standard_normal((3, 50, 7)), rng.standard_normal((3, 50, 2)), 0.3
    r = Ridge(lam)
    r.accumulate(X[:2], Y[:2], washout=5)  # two batches, accumulated
    r.accumulate(X[2:], Y[2:], washout=5)
    w, b = r.solve()
    A = np.hstack([X[:, 5:].reshape(-1, 7), np.ones((135, 1))])
    P = np.hstack([np.sqrt(lam) * np.eye(7), np.zeros((7, 1))])  # bias not penalised
    sol = np.linalg.lstsq(
        np.vstack([A, P]), np.vstack([Y[:, 5:].reshape(-1, 2), np.zeros((7, 2))]), rcond=None
    )[0]
    np.testing.assert_allclose(w, sol[:-1].T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, sol[-1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.predict(X[0]), X[0] @ w.T + b)


def test_gram_in_column_blocks_equals_the_full_product(rng):
    # blocks of 3 over 10 columns: a partial last block, GEMM above the diagonal blocks
    a = rng.standard_normal((7, 10))
    g = np.zeros((10, 10))
    readout.add_gram_upper(g, a, block=3)
    readout.add_gram_upper(g, 2 * a, block=3)  # accumulates
    np.testing.assert_allclose(np.triu(g), np.triu(5 * a.T @ a), rtol=1e-12, atol=1e-12)
    readout.mirror_upper(g, block=3)
    np.testing.assert_allclose(g, 5 * a.T @ a, rtol=1e-12, atol=1e-12)


def test_large_ridge_systems_take_the_blocked_gram_and_a_serial_solve(rng, monkeypatch):
    # N = 20000 segfaulted in OpenBLAS's threaded SYRK (readout's docstring); the same path
    # at a small N: 3-column Gram blocks, and the solve under serial_blas
    X, Y = rng.standard_normal((2, 40, 9)), rng.standard_normal((2, 40, 2))
    whole = fit_ridge(X, Y, washout=3, ridge=0.1)
    serial = []

    @contextlib.contextmanager
    def recorded():
        serial.append(True)
        yield

    monkeypatch.setattr(readout, "GRAM_BLOCK", 3)
    monkeypatch.setattr(readout, "SERIAL_SOLVE_MIN", 10)  # N + 1 = 10 unknowns
    monkeypatch.setattr(cpu_runtime, "serial_blas", recorded)
    blocked = fit_ridge(X, Y, washout=3, ridge=0.1)
    assert serial == [True]
    np.testing.assert_allclose(blocked.weight, whole.weight, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(blocked.bias, whole.bias, rtol=1e-10, atol=1e-12)


def test_ridge_errors():
    with pytest.raises(ConfigError, match="washout"):
        Ridge(1e-6).accumulate(np.zeros((1, 10, 3)), np.zeros((1, 10, 1)), washout=10)
    with pytest.raises(ConfigError, match="ridge"):
        Ridge(-1.0)
    with pytest.raises(ConfigError, match="no samples"):
        Ridge(1e-6).solve()


def test_teacher_forced_readout_generates_a_sine():
    m = build_esn(1, 100, seed=0, feedback_size=1, input_scaling=0.1, spectral_radius=0.8)
    t = np.arange(600)
    y = np.sin(2 * np.pi * t / 25)[None, :, None] * 0.5
    x = np.zeros((1, 600, 1))
    states, _ = m.forward(x, teacher=y)
    r = fit_ridge(states[:, :500], y[:, :500], washout=100, ridge=1e-8)
    out, _ = free_run(m, r, 100, x=x[:, 500:], h0=states[:, 499], y0=y[:, 499])
    assert np.sqrt(np.mean((out - y[:, 500:]) ** 2)) < 0.05


# -- construction


def test_construction_is_reproducible_per_seed():
    a, b, c = (build_esn(3, 300, seed=s, bias_scaling=0.1) for s in (7, 7, 8))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa["weight_hh_l0"].nnz == round(0.1 * 300**2)
    for k in sa:
        da = sa[k].toarray() if sp.issparse(sa[k]) else sa[k]
        db = sb[k].toarray() if sp.issparse(sb[k]) else sb[k]
        np.testing.assert_array_equal(da, db)
    assert not np.array_equal(sa["weight_ih_l0"], sc["weight_ih_l0"])
    # the input size does not change W (separate child seeds)
    d = build_esn(5, 300, seed=7)
    np.testing.assert_array_equal(
        d.state_dict()["weight_hh_l0"].toarray(), sa["weight_hh_l0"].toarray()
    )


@pytest.mark.parametrize(
    "N, sparse, dist", [(100, True, "normal"), (300, True, "uniform"), (300, False, "normal")]
)
def test_spectral_radius_is_hit(N, sparse, dist):
    m = build_esn(1, N, spectral_radius=1.25, sparse=sparse, weight_distribution=dist, seed=2)
    w = m.state_dict()["weight_hh_l0"]
    dense = w.toarray() if sp.issparse(w) else w
    rho = np.max(np.abs(np.linalg.eigvals(dense)))
    assert abs(rho - 1.25) < 1e-3 * 1.25
    assert abs(estimate_spectral_radius(w) - rho) < 1e-3 * rho


def test_linear_reservoir_memory_capacity_is_close_to_n():
    """Under linear_memory_capacity's conditions (float64, orthogonal W at rho 1 - 2/N, input
    scaling 0.3, ridge 1e-12, long series) a linear reservoir of 20 units recalls >= 0.9 N."""
    N = 20
    r = linear_memory_capacity(N)
    mc = r["metrics"]["memory_capacity"]
    assert r["metrics"]["memory_capacity_bound"] == N
    assert 0.9 * N <= mc <= N + 0.05
    curve = np.array(r["curves"]["memory_capacity_by_delay"])
    assert curve.shape == (2 * N,) and curve.sum() == pytest.approx(mc)
    assert curve[0] > 0.8 and curve[-1] < 0.1  # recalled at once, forgotten by k = 2N


# -- ReservoirPy parity


def test_same_states_as_reservoirpy(rng):
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir

    res = Reservoir(
        60,
        lr=0.4,
        sr=0.9,
        input_scaling=0.7,
        rc_connectivity=0.2,
        input_connectivity=0.5,
        bias=0.3,
        seed=5,
    )
    u = rng.uniform(-1, 1, (80, 2))
    expected = res.run(u)
    bias = np.broadcast_to(np.asarray(res.bias, dtype=float), (60,))
    m = build_esn(2, 60, leak=0.4)
    m.load_state_dict({"weight_ih_l0": res.Win, "weight_hh_l0": res.W, "bias_hh_l0": bias})
    assert m.sparse
    states, _ = m.forward(u[None])
    np.testing.assert_allclose(states[0], expected, rtol=0, atol=1e-10)


def test_mackey_glass_nrmse_comparable_to_reservoirpy():
    pytest.importorskip("reservoirpy")
    from reservoirpy.nodes import Reservoir
    from reservoirpy.nodes import Ridge as RpyRidge

    task = make_task("mackey-glass", 1500)
    b = task.generate(np.random.default_rng(0), 1)
    x, y = b.x[0], b.y[0]  # one series: 1000 train (100 washout), 500 test
    m = build_esn(1, 100, seed=0, leak=0.5, spectral_radius=0.9)
    sd = m.state_dict()
    res = Reservoir(W=sd["weight_hh_l0"], Win=sd["weight_ih_l0"], bias=sd["bias_hh_l0"], lr=0.5)
    states_rpy = res.run(x)
    readout = RpyRidge(ridge=1e-8).fit(states_rpy[:1000], y[:1000], warmup=100)
    pred_rpy = readout.run(states_rpy[1000:])
    states, _ = m.forward(x[None])
    r = fit_ridge(states[:, :1000], y[None, :1000], washout=100, ridge=1e-8)
    pred = r.predict(states[0, 1000:])
    nrmse = lambda p: np.sqrt(np.mean((p - y[1000:]) ** 2)) / np.std(y[1000:])  # noqa: E731
    assert nrmse(pred) < 1e-2
    assert nrmse(pred) <= 1.05 * nrmse(pred_rpy) + 1e-9


# -- state dict


def test_state_dict_round_trip_and_validation(rng):
    m = build_esn(2, N_SMALL, sparse=False)
    sd = m.state_dict()
    assert isinstance(sd["weight_hh_l0"], np.ndarray)
    assert m.parameters == N_SMALL * N_SMALL + N_SMALL * 2 + N_SMALL
    before = m.state_dict()
    bad = {**sd, "weight_ih_l0": np.zeros((N_SMALL, 3))}
    with pytest.raises(ConfigError, match="weight_ih_l0"):
        m.load_state_dict(bad)
    with pytest.raises(ConfigError, match="NaN"):
        m.load_state_dict({**sd, "bias_hh_l0": np.full(N_SMALL, np.nan)})
    with pytest.raises(ConfigError, match="missing"):
        m.load_state_dict({"weight_ih_l0": sd["weight_ih_l0"]})
    for k in before:
        np.testing.assert_array_equal(m.state_dict()[k], before[k])
    # a sparse W loads into a dense-built model and switches it to the CSR kernel
    m.load_state_dict({**sd, "weight_hh_l0": sp.csr_matrix(sd["weight_hh_l0"])})
    assert m.sparse


# -- bad input


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"spectral_radius": 0.0}, "spectral_radius"),
        ({"spectral_radius": -1.0}, "spectral_radius"),
        ({"connectivity": 0.0}, "connectivity"),
        ({"connectivity": 1.5}, "connectivity"),
        ({"leak": 0.0}, "leak"),
        ({"leak": 1.5}, "leak"),
        ({"input_connectivity": 2.0}, "input_connectivity"),
        ({"weight_distribution": "cauchy"}, "weight_distribution"),
        ({"backend": "fortran"}, "backend"),
        ({"spectral_radius": float("nan")}, "spectral_radius"),
        ({"leakage": 0.5}, "leakage"),
    ],
)
def test_bad_construction_raises_config_error(kw, name):
    with pytest.raises(ConfigError, match=name):
        build_esn(1, 10, **kw)


def test_bad_series_raise_config_error():
    m = build_esn(1, 10)
    x = np.zeros((1, 5, 1))
    x[0, 2, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        m.forward(x)
    with pytest.raises(ConfigError, match="features"):
        m.forward(np.zeros((1, 5, 2)))
    with pytest.raises(ConfigError, match="washout"):
        fit_esn(m, make_task("narma10", 50), np.random.default_rng(0), washout=50)


# -- fitting and the reservoir tasks


def test_fit_esn_returns_the_run_record_fields():
    m = build_esn(1, 100, seed=0, leak=0.3, spectral_radius=1.0, input_scaling=0.5)
    r = fit_esn(
        m,
        make_task("mackey-glass", 400, free_run=20),
        np.random.default_rng(1),
        batch_size=4,
        train_batches=2,
        ridge=1e-8,
    )
    for key in (
        "final_loss",
        "baseline_loss",
        "solved",
        "metrics",
        "fit_seconds",
        "compile_seconds",
        "sequence_steps_per_second",
        "status",
    ):
        assert key in r
    assert r["status"] == "finished" and r["solved"]
    assert r["metrics"]["nrmse"] < 0.05
    assert 0 < r["metrics"]["free_run_nrmse"] < 1.0


def test_fit_esn_classification_uses_one_hot_targets():
    m = build_esn(10, 100, seed=0, input_scaling=0.5)
    r = fit_esn(
        m, make_task("copy-task", 5), np.random.default_rng(0), batch_size=16, train_batches=4
    )
    assert r["readout_temperature"] > 0
    assert r["metrics"]["accuracy"] > 0.6  # the blanks are trivially right


def test_mackey_glass_series():
    task = make_task("mackey-glass", 200, horizon=3)
    a = task.generate(np.random.default_rng(0), 4)
    b = task.generate(np.random.default_rng(0), 4)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (4, 200, 1) and a.y.shape == (4, 200, 1)
    np.testing.assert_array_equal(a.y[:, :-3], a.x[:, 3:])  # h-step-ahead targets
    assert -1.05 < a.x.min() and a.x.max() < 1.05 and a.x.std() > 0.3
    assert 0 < task.baseline < 0.5
    with pytest.raises(ConfigError, match="free_run"):
        make_task("mackey-glass", 100, horizon=2, free_run=10)


def test_narma10_follows_its_recursion():
    task = make_task("narma10", 300)
    b = task.generate(np.random.default_rng(0), 2)
    u, y = b.x[..., 0], b.y[..., 0]
    assert np.all((u >= 0) & (u <= 0.5))
    for t in range(10, 299):  # y[t] = y(t+1), driven by u(t)
        want = 0.3 * y[:, t - 1] + 0.05 * y[:, t - 1] * y[:, t - 10 : t].sum(axis=1)
        want += 1.5 * u[:, t - 9] * u[:, t] + 0.1
        np.testing.assert_allclose(y[:, t], want, rtol=1e-12)
    direct = narma10(np.full((1, 50), 0.25))
    assert direct[0, 0] == pytest.approx(0.1)


def test_memory_capacity_targets_are_delayed_inputs():
    task = make_task("memory-capacity", 50, max_delay=5)
    b = task.generate(np.random.default_rng(0), 2)
    assert b.y.shape == (2, 50, 5) and task.washout >= 5
    for k in range(1, 6):
        np.testing.assert_array_equal(b.y[:, k:, k - 1], b.x[:, :-k, 0])
    assert task.metrics(b.y, b.y)["memory_capacity"] == pytest.approx(5.0)


def test_warm_then_free_run_continues_the_series():
    task = make_task("mackey-glass", 700)
    m = build_esn(1, 100, seed=0, leak=0.3, spectral_radius=1.0, input_scaling=0.5)
    b = task.generate(np.random.default_rng(2), 2)
    states, _ = m.forward(b.x)
    r = fit_ridge(states, b.y, washout=100, ridge=1e-8)
    pred = warm_then_free_run(m, r, b.x[:, :600], 20)
    assert pred.shape == (2, 20, 1)
    assert np.sqrt(np.mean((pred - b.x[:, 600:620]) ** 2)) < 0.1


# -- the asv suite


def test_asv_benchmarks_are_well_formed():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "suites" / "asv" / "bench_esn.py"
    spec = importlib.util.spec_from_file_location("bench_esn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    classes = [bench.ReservoirRun, bench.ReservoirBuild, bench.MackeyGlassQuality]
    for cls in classes:
        assert len(cls.params) == len(cls.param_names)
        methods = [m for m in vars(cls) if m.startswith(("time_", "track_", "peakmem_"))]
        assert methods, cls.__name__
        assert callable(cls.setup)


def test_declared_esn_options_match_build_esn():
    """The declaration the CLI and suites read and build_esn's keywords do not drift apart."""
    import inspect

    from seqbench.models.esn import FIT_OPTIONS, OPTIONS

    params = inspect.signature(build_esn).parameters
    for o in OPTIONS:
        assert params[o.name].default == o.default, o.name
    fit = inspect.signature(fit_esn).parameters
    assert fit["ridge"].default == 1e-6 and {o.name for o in FIT_OPTIONS} <= set(fit)


# -- output feedback: the teacher-forced fit and the free run (Jaeger & Haas 2004)


def _reference_feedback_fit(m, task, rng, n_train, n_test, washout, ridge, noise):
    """fit_feedback in plain NumPy: the loop over steps, the ridge as lstsq of the augmented
    system, the free run fed its own outputs. Returns (one-step outputs, free runs)."""
    sd = m.state_dict()
    w, w_fb, b = sd["weight_hh_l0"], sd["weight_fb_l0"][:, 0], sd["bias_hh_l0"]
    w = w.toarray() if sp.issparse(w) else w
    K = task.free_run
    driven = task.steps - K

    def drive(series):  # step t receives W_fb series(t)
        x, out = np.zeros(m.hidden_size), []
        for s in series:
            x = np.tanh(w @ x + b + w_fb * s)
            out.append(x)
        return np.array(out)

    feats, targets = [], []
    for _ in range(n_train):
        bt = task.generate(rng, 1, "train")
        fed = bt.x[0, :driven, 0]
        fed = fed + rng.uniform(-noise, noise, (1, driven, 1))[0, :, 0] if noise else fed
        feats.append(drive(fed)[washout:])
        targets.append(bt.y[0, washout:driven, 0])
    a = np.concatenate(feats)
    a = np.hstack([a, np.ones((len(a), 1))])
    y = np.concatenate(targets)
    pen = np.sqrt(ridge) * np.eye(m.hidden_size + 1)[:-1]  # the bias is not penalised
    coef = np.linalg.lstsq(np.vstack([a, pen]), np.concatenate([y, np.zeros(m.hidden_size)]),
                           rcond=None)[0]  # fmt: skip
    w_out, b_out = coef[:-1], coef[-1]
    outs, runs = [], []
    for _ in range(n_test):
        bt = task.generate(rng, 1, "test")
        states = drive(bt.x[0, :driven, 0])
        outs.append(states[washout:] @ w_out + b_out)
        x, y_prev, run = states[-1], states[-1] @ w_out + b_out, []
        for _ in range(K):
            run.append(y_prev)
            x = np.tanh(w @ x + b + w_fb * y_prev)
            y_prev = x @ w_out + b_out
        runs.append(run)
    return np.array(outs), np.array(runs)


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_teacher_forced_feedback_fit_equals_numpy_reference(noise):
    task = make_task("mackey-glass", 300, free_run=20, washout=50, scaling="tanh")
    m = build_esn(1, 10, seed=4, spectral_radius=0.8, connectivity=0.3, bias_scaling=0.2,
                  output_feedback=True, sparse=False)  # fmt: skip
    assert m.feedback_size == 1
    r = fit_esn(m, task, np.random.default_rng(7), batch_size=1, train_batches=2, eval_batches=2,
                ridge=1e-6, teacher_noise=noise)  # fmt: skip
    outs, runs = _reference_feedback_fit(m, task, np.random.default_rng(7), 2, 2, 50, 1e-6, noise)
    np.testing.assert_allclose(r["curves"]["trace_pred"], runs[0], rtol=0, atol=1e-10)
    assert len(r["curves"]["free_run_nrmse_by_step"]) == 20
    sigma = task.attractor_std()
    assert r["metrics"]["test_windows"] == 2 and r["metrics"]["train_windows"] == 2
    assert r["teacher_noise"] == noise and r["washout"] == 50
    assert 0 < r["metrics"]["free_run_nrmse_last"] < 1 and 0 < sigma < 1
    assert r["metrics"]["nrmse"] < 0.2 and outs.shape == (2, 230)


def test_free_run_feeds_back_the_readouts_outputs(rng):
    """Teacher-forcing the reservoir with the free run's own outputs gives the free run's
    states; forcing it with anything else (here the true series) does not."""
    task = make_task("mackey-glass", 400, free_run=30, washout=50)
    m = build_esn(1, 30, seed=1, spectral_radius=0.8, bias_scaling=0.1, output_feedback=True)
    b = task.generate(rng, 2)
    states = m.forward(np.zeros((2, 370, 1)), teacher=b.y[:, :370], y0=b.x[:, 0])[0]
    r = fit_ridge(states, b.y[:, :370], washout=50, ridge=1e-8)
    y0 = r.predict(states[:, -1])
    outs, gen = free_run(m, r, 30, h0=states[:, -1], y0=y0)
    np.testing.assert_allclose(outs, r.predict(gen), rtol=0, atol=1e-12)
    fed = np.concatenate([y0[:, None], outs[:, :-1]], axis=1)  # what step t received
    again, _ = m.forward(np.zeros((2, 30, 1)), states[:, -1], teacher=outs, y0=y0)
    np.testing.assert_allclose(again, gen, rtol=0, atol=1e-12)
    truth, _ = m.forward(np.zeros((2, 30, 1)), states[:, -1], teacher=b.y[:, 370:], y0=b.y[:, 369])
    assert np.max(np.abs(truth - gen)) > 1e-9 and fed.shape == (2, 30, 1)


def test_output_feedback_needs_a_free_running_task():
    m = build_esn(1, 10, seed=0, output_feedback=True)
    with pytest.raises(ConfigError, match="free-running"):
        fit_esn(m, make_task("narma10", 200), np.random.default_rng(0), batch_size=2)
    with pytest.raises(ConfigError, match="teacher_noise"):
        fit_esn(build_esn(1, 10), make_task("narma10", 200), np.random.default_rng(0),
                batch_size=2, teacher_noise=1e-3)  # fmt: skip


def test_jaeger2004_protocol_settings_parsed_and_recorded():
    from seqbench.config import RunConfig, task_for
    from seqbench.models import MODELS, build_for_run
    from seqbench.options import check_options

    text = {"output_feedback": "true", "teacher_noise": "1e-10", "spectral_radius": "0.8",
            "feedback_scaling": "0.5", "orthogonal": "false"}  # fmt: skip
    opts = check_options(MODELS["esn"].options, text, "model 'esn'")
    assert opts == {"output_feedback": True, "teacher_noise": 1e-10, "spectral_radius": 0.8,
                    "feedback_scaling": 0.5, "orthogonal": False}  # fmt: skip
    cfg = RunConfig(task="mackey-glass", model="esn", hidden_size=20, dtype="float64",
                    task_options={"protocol": "jaeger2004", "scaling": "tanh"},
                    model_options=opts).validated()  # fmt: skip
    ident = cfg.identity()
    assert ident["options"]["task_options"] == {"protocol": "jaeger2004", "scaling": "tanh"}
    assert ident["options"]["output_feedback"] is True
    assert ident["options"]["teacher_noise"] == 1e-10
    task = task_for(cfg)
    assert (task.seq_len, task.washout, task.free_run, task.horizon) == (3084, 1000, 84, 1)
    assert (task.train_windows, task.test_windows, task.scaling) == (1, 100, "tanh")
    m = build_for_run(cfg, task.input_size)
    assert m.feedback_size == 1 and "weight_fb_l0" in m.state_dict()
    assert MODELS["esn"].fit_options_for(cfg) == {"teacher_noise": 1e-10}
    plain = RunConfig(task="mackey-glass", model="esn", hidden_size=20).validated()
    assert plain.identity()["options"] == {} and task_for(plain).test_windows is None


def test_orthogonal_reservoir_is_scaled_orthogonal():
    m = build_esn(1, 30, orthogonal=True, spectral_radius=0.95, sparse=False, seed=3)
    w = m.state_dict()["weight_hh_l0"]
    np.testing.assert_allclose(w @ w.T, 0.95**2 * np.eye(30), atol=1e-12)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(w)), 0.95, atol=1e-10)
    other = build_esn(1, 30, orthogonal=False, spectral_radius=0.95, sparse=False, seed=3)
    assert not np.allclose(other.state_dict()["weight_hh_l0"], w)


@pytest.mark.parametrize("name", ["jaeger2004-mackey-glass", "jaeger2002-memory-capacity"])
def test_reservoir_reproductions_smoke(name, tmp_path):
    """The two reservoir reproductions' smoke modes end to end: runs, claims, figure."""
    from seqbench.reproduce import REPRODUCTIONS, VERDICTS, reproduce

    outcome = reproduce(REPRODUCTIONS[name], "smoke", out=tmp_path, workers=1, progress=False)
    claims = outcome.claims
    assert set(claims["verdict"]) <= set(VERDICTS) and len(outcome.figures) == 1
    first = claims.iloc[0]  # nrmse84 / mc-at-most-n: measured on every run
    assert first["n"] == 2 and np.isfinite(first["measured"])
    assert outcome.figures[0].stat().st_size > 0


def test_ridge_lstsq_equals_the_normal_equations(rng):
    x, y = rng.standard_normal((300, 12)), rng.standard_normal((300, 2))
    a, b = Ridge(1e-3), Ridge(1e-3)
    a.accumulate(x, y)
    a.solve()
    b.fit_lstsq(x, y)
    np.testing.assert_allclose(b.weight, a.weight, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=1e-10)
    assert b.samples == 300
    with pytest.raises(ConfigError, match="pair up"):
        Ridge(1e-3).fit_lstsq(x, y[:10])


# -- activation linear, state noise (issue 20)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
def test_linear_activation_is_identity_bit_for_bit(backend, sparse, rng):
    kw = {"seed": 5, "spectral_radius": 0.9, "connectivity": 0.2, "sparse": sparse}
    lin = build_esn(1, 30, backend=backend, activation="linear", **kw)
    ident = build_esn(1, 30, backend=backend, activation="identity", **kw)
    assert lin.options["activation"] == "identity"
    x = rng.standard_normal((3, 40, 1))
    assert np.array_equal(lin.forward(x)[0], ident.forward(x)[0])
    task = make_task("narma10", 120)
    a, b = (fit_esn(m, task, np.random.default_rng(1), batch_size=4) for m in (lin, ident))
    assert a["final_loss"] == b["final_loss"] and a["metrics"] == b["metrics"]
    with pytest.raises(ConfigError, match="activation"):
        build_esn(2, 30, activation="relu")


def _noisy_states(m, x, a, seed=0):
    return m.forward(x, state_noise=a, noise_rng=np.random.default_rng(seed))[0]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
def test_state_noise_enters_each_pre_activation(backend, sparse, rng):
    """x_t = (1 - l) x_t-1 + l tanh(W x_t-1 + W_in u_t + b + v_t), v_t ~ U(-a, a) per unit and
    step from the noise's own generator; a = 0 is the noiseless forward bit for bit."""
    m = build_esn(2, 20, backend=backend, sparse=sparse, seed=2, leak=0.7, bias_scaling=0.3,
                  connectivity=0.3)  # fmt: skip
    x = rng.standard_normal((2, 25, 2))
    plain = m.forward(x)[0]
    assert np.array_equal(_noisy_states(m, x, 0.0), plain)
    assert np.array_equal(m.forward(x, state_noise=0.0, noise_rng=None)[0], plain)
    noisy = _noisy_states(m, x, 0.05, seed=9)
    assert np.array_equal(noisy, _noisy_states(m, x, 0.05, seed=9))  # reproducible
    assert not np.array_equal(noisy, _noisy_states(m, x, 0.05, seed=10))
    sd = m.state_dict()
    w, w_in, b = sd["weight_hh_l0"], sd["weight_ih_l0"], sd["bias_hh_l0"]
    w = w.toarray() if sp.issparse(w) else w
    v = np.random.default_rng(9).uniform(-0.05, 0.05, (2, 25, 20))
    s, ref = np.zeros((2, 20)), []
    for t in range(25):
        s = 0.3 * s + 0.7 * np.tanh(s @ w.T + x[:, t] @ w_in.T + b + v[:, t])
        ref.append(s)
    np.testing.assert_allclose(noisy, np.stack(ref, axis=1), rtol=0, atol=1e-12)
    assert np.max(np.abs(noisy - plain)) > 1e-3
    with pytest.raises(ConfigError, match="noise_rng"):
        m.forward(x, state_noise=0.1)
    with pytest.raises(ConfigError, match="state_noise"):
        m.forward(x, state_noise=-0.1, noise_rng=np.random.default_rng(0))


def test_state_noise_with_output_feedback_teacher_forcing(rng):
    from seqbench.readout import teacher_forced_states

    m = build_esn(1, 15, seed=1, output_feedback=True, sparse=False, spectral_radius=0.8)
    x, y = np.zeros((2, 30, 1)), rng.uniform(-1, 1, (2, 30, 1))
    plain = teacher_forced_states(m, x, y)
    assert np.array_equal(teacher_forced_states(m, x, y, state_noise=0.0), plain)
    a = teacher_forced_states(m, x, y, state_noise=0.01, noise_rng=np.random.default_rng(3))
    b = teacher_forced_states(m, x, y, state_noise=0.01, noise_rng=np.random.default_rng(3))
    assert np.array_equal(a, b) and 1e-5 < np.max(np.abs(a - plain)) < 0.1


def _spy_noise(m, monkeypatch) -> list:
    """The state_noise of each forward call of m, in order."""
    seen, forward = [], m.forward

    def spy(*args, **kw):
        seen.append(kw.get("state_noise", 0.0))
        return forward(*args, **kw)

    monkeypatch.setattr(m, "forward", spy)
    return seen


@pytest.mark.parametrize("feedback", [False, True], ids=["plain", "output-feedback"])
def test_state_noise_changes_the_fit_only_and_is_reproducible(feedback, monkeypatch):
    if feedback:
        task = make_task("mackey-glass", 200, free_run=10, washout=30)
        kw = {"output_feedback": True, "sparse": False, "spectral_radius": 0.8}
    else:
        task, kw = make_task("narma10", 150), {}

    def fit(a=None, spy=False):
        m = build_esn(1, 20, seed=6, bias_scaling=0.2, **kw)
        seen = _spy_noise(m, monkeypatch) if spy else None
        noise = {} if a is None else {"state_noise": a}  # None: the keyword left out
        r = fit_esn(m, task, np.random.default_rng(2), batch_size=3, train_batches=2,
                    eval_batches=2, **noise)  # fmt: skip
        return r, seen

    plain, default = fit(0.0)[0], fit()[0]
    noisy, seen = fit(0.02, spy=True)
    again = fit(0.02)[0]
    assert plain["final_loss"] == default["final_loss"] and plain["metrics"] == default["metrics"]
    assert noisy["final_loss"] != plain["final_loss"]
    assert noisy["final_loss"] == again["final_loss"] and noisy["metrics"] == again["metrics"]
    assert seen[:2] == [0.02, 0.02] and set(seen[2:]) == {0.0} and len(seen) == 4  # eval: none
    with pytest.raises(ConfigError, match="state_noise"):
        fit(-0.1)


def test_asv_busy_neighbour_benchmark_is_well_formed():
    """The busy-neighbour variant of the run benchmark (issue 23) has matching params and
    a teardown that ends the neighbour it starts."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "suites" / "asv" / "bench_esn.py"
    spec = importlib.util.spec_from_file_location("bench_esn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cls = bench.ReservoirRunBesideBusy
    assert len(cls.params) == len(cls.param_names)
    assert callable(cls.time_run) and callable(cls.setup) and callable(cls.teardown)


@pytest.mark.parametrize(
    ("task_name", "T", "N", "batch", "washout", "expected"),
    [
        ("copy-task", 10, 20000, 64, 0, 42),  # 30 steps a sequence: 1920 samples a batch
        ("copy-task", 10, 1000, 64, 0, 4),  # 4 batches already give 7680 >= 4000
        ("adding", 50, 300, 32, 0, 38),  # readout "last": one sample a sequence
        ("copy-task", 10, 500, 8, 10, 13),  # the washout's steps are no samples
    ],
)
def test_default_training_batches_give_4n_samples(task_name, T, N, batch, washout, expected):
    from seqbench.tasks import make_task

    task = make_task(task_name, T)
    n = default_train_batches(N, task, batch, washout)
    per_batch = batch * (1 if task.readout == "last" else task.steps - washout)
    assert n == expected
    assert n >= 4 and n * per_batch >= 4 * N and (n == 4 or (n - 1) * per_batch < 4 * N)


def test_a_run_records_the_training_batches_its_fit_chose():
    """steps unset: the fit picks its batches (4 N samples); the record says how many."""
    from seqbench.config import RunConfig
    from seqbench.train import run

    cfg = RunConfig(task="copy-task", model="esn", seq_len=10, hidden_size=100, batch_size=2)
    record = run(cfg).record
    assert record["steps_run"] == 7  # 4 x 100 samples at 2 x 30 a batch
    assert record["readout_samples"] == 7 * 2 * 30
