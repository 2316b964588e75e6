"""The one training loop: gradients end to end, determinism, divergence, clipping, TBPTT."""

import numpy as np
import pytest

from seqbench import ConfigError
from seqbench.config import RunConfig
from seqbench.train import Trainer, run, run_and_save

TINY = dict(
    seq_len=4,
    hidden_size=6,
    batch_size=3,
    steps=6,
    eval_every=3,
    eval_batches=1,
    profile_every=2,
    dtype="float64",
)


@pytest.mark.parametrize(
    "task, readout",
    [("copy-task", "last"), ("adding", "last"), ("adding", "mean"), ("temporal-order", "last")],
)
def test_pipeline_gradients_match_finite_differences(task, readout):
    """Head + model + task loss: every parameter's gradient, through the whole pipeline."""
    cfg = {**TINY, "seq_len": 10} if task == "temporal-order" else TINY
    tr = Trainer(RunConfig(task=task, model="lstm", readout=readout, **cfg).validated())
    batch = tr.task.generate(np.random.default_rng(0), 3)
    loss, grads, _ = tr.loss_and_grads(batch)
    rng = np.random.default_rng(1)
    for name, p in tr.params.items():
        for _ in range(3):
            i = tuple(rng.integers(0, n) for n in p.shape)
            old = p[i]
            p[i] = old + 1e-6
            up = tr.loss_and_grads(batch)[0]
            p[i] = old - 1e-6
            down = tr.loss_and_grads(batch)[0]
            p[i] = old
            fd = (up - down) / 2e-6
            assert abs(grads[name][i] - fd) <= 1e-6 * max(1.0, abs(fd)), name


def test_same_seed_is_bit_identical():
    cfg = RunConfig(task="copy-task", model="gru", **{**TINY, "dtype": "float32"})
    a, b = run(cfg), run(cfg)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.profiles == b.profiles
    for k in ("final_loss", "grad_ratio_log10", "max_preclip_norm", "spectral_radius"):
        assert a.record[k] == b.record[k]
    c = run(RunConfig(task="copy-task", model="gru", seed=1, **{**TINY, "dtype": "float32"}))
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_divergence_is_a_recorded_result(tmp_path):
    cfg = RunConfig(
        task="adding",
        model="elman",
        optimizer="sgd",
        lr=1e6,
        clip="none",
        init="spectral:3",
        **{**TINY, "steps": 50},
    )
    record = run_and_save(cfg, tmp_path)
    assert record["status"] == "diverged"
    assert 1 <= record["diverged_step"] <= 50
    from seqbench import results

    df = results.load(tmp_path)
    assert (
        df.loc[0, "status"] == "diverged" and df.loc[0, "diverged_step"] == record["diverged_step"]
    )


def test_run_records_its_start_and_the_code_it_ran(tmp_path, monkeypatch):
    """The start time and the environment (git commit) are read before training: a checkout
    that moves on during a long run must not relabel it."""
    from seqbench import results, train

    moments = iter(["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"])
    commits = iter(["before", "after"])
    monkeypatch.setattr(results, "utc_now", lambda: next(moments))
    monkeypatch.setattr(results, "environment", lambda: {"git_commit": next(commits)})
    real_run = train.run

    def run_that_moves_on(cfg, progress=None):
        out = real_run(cfg, progress)
        results.utc_now(), results.environment()  # the clock and the checkout, after training
        return out

    monkeypatch.setattr(train, "run", run_that_moves_on)
    record = run_and_save(RunConfig(task="adding", model="elman", **TINY), tmp_path)
    assert record["started_at"] == "2026-01-01T00:00:00Z"
    assert record["git_commit"] == "before"


def test_clipping_is_recorded():
    base = dict(task="adding", model="elman", **{**TINY, "steps": 5})
    tight = run(RunConfig(clip="norm:1e-6", **base)).record
    loose = run(RunConfig(clip="none", **base)).record
    assert tight["clip_fraction"] == 1.0 and loose["clip_fraction"] == 0.0
    assert tight["max_preclip_norm"] > 1e-6


def test_tbptt_equals_full_bptt_when_window_covers_sequence():
    full = Trainer(RunConfig(task="copy-task", model="gru", **TINY).validated())
    window = full.task.steps  # the longest window allowed: the whole sequence
    trunc = Trainer(RunConfig(task="copy-task", model="gru", tbptt=window, **TINY).validated())
    batch = full.task.generate(np.random.default_rng(0), 3)
    (l1, g1, n1), (l2, g2, n2) = full.loss_and_grads(batch), trunc.loss_and_grads(batch)
    assert l1 == l2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert np.array_equal(n1, n2)
    short = Trainer(RunConfig(task="copy-task", model="gru", tbptt=5, **TINY).validated())
    l3, g3, n3 = short.loss_and_grads(batch)
    assert l3 == pytest.approx(l1) and n3.shape == n1.shape  # same forward, truncated backward
    assert not np.allclose(g3["weight_hh_l0"], g1["weight_hh_l0"])


def test_telemetry_columns():
    r = run(RunConfig(task="copy-task", model="elman", **TINY))
    rec = r.record
    assert np.isfinite(rec["grad_ratio_log10"]) and rec["spectral_radius"] > 0
    assert rec["max_singular_value"] >= rec["spectral_radius"] - 1e-12
    assert rec["steps_run"] == 6 and rec["steps_per_second"] > 0
    steps = {row[0] for row in r.profiles}
    assert steps == {1, 2, 4, 6}
    T = 4 + 20
    assert len(r.profiles) == len(steps) * T


@pytest.mark.parametrize(
    "change, match",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"clip": "norm:"}, "clip"),
        ({"task": "nope"}, "task 'nope'"),
        ({"model": "rnn"}, "model 'rnn'"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"steps": 2.5}, "steps"),
        ({"readout": "first"}, "readout"),
        ({"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_bad_config(change, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**{**TINY, **change}).validated()


def test_a_run_is_validated_once_on_its_way_in(monkeypatch, tmp_path):
    """A validated config passes run_and_save, run and the model's construction without being
    checked again; a changed copy is checked afresh; the mark changes no identity."""
    import dataclasses

    import seqbench.config as config_module
    import seqbench.models as models_module
    from seqbench.results import run_id

    cfg = RunConfig(task="adding", model="gru", **TINY).validated()
    assert cfg.validated() is cfg
    fresh = dataclasses.replace(cfg)
    assert fresh == cfg and run_id(fresh.identity()) == run_id(cfg.identity())
    assert fresh.validated() is not fresh  # a copy made after validation is checked again

    def checked_again(*args, **kwargs):
        raise AssertionError("validated twice")

    monkeypatch.setattr(config_module, "_choice", checked_again)
    monkeypatch.setattr(models_module, "check_backend", checked_again)
    monkeypatch.setattr(models_module, "check_size", checked_again)
    record = run_and_save(cfg, tmp_path)
    assert record["steps_run"] == TINY["steps"] and record["model"] == "gru"
    with pytest.raises(AssertionError, match="validated twice"):
        fresh.validated()


# ----------------------------------------------------------------- probe and evaluation


def test_record_carries_probe_and_spectra_at_init_and_end(tmp_path):
    from seqbench import results

    cfg = RunConfig(task="adding", model="elman", init="spectral:0.9", **TINY)
    r = run(cfg)
    rec = r.record
    for name in ("grad_ratio_log10", "spectral_radius", "max_singular_value"):
        assert np.isfinite(rec[f"{name}_init"]) and rec[name] == rec[f"{name}_final"]
    assert rec["spectral_radius_init"] == pytest.approx(0.9, rel=1e-5)
    assert rec["spectral_radius_final"] != rec["spectral_radius_init"]  # it trained
    assert rec["grad_probe_note_init"] is None and rec["grad_probe_note_final"] is None
    probed = [h for h in r.history if "grad_ratio_log10" in h]
    assert [h["step"] for h in probed] == [1, 2, 4, 6]
    assert probed[-1]["grad_ratio_log10"] == rec["grad_ratio_log10_final"]
    assert all(len(row) == 5 and np.isfinite(row[4]) for row in r.profiles)
    record = run_and_save(cfg, tmp_path)
    df = results.load(tmp_path)
    assert df.loc[0, "grad_ratio_log10_init"] == pytest.approx(record["grad_ratio_log10_init"])
    prof = results.load_profiles(tmp_path)
    assert prof["probe_log10"].notna().all() and len(prof) == 4 * 4


def test_evaluation_sees_1024_sequences_by_default_and_reports_its_se():
    from seqbench.train import eval_batch_count

    assert eval_batch_count(RunConfig(batch_size=64)) == 16
    assert eval_batch_count(RunConfig(batch_size=1000)) == 4  # the default stays a floor
    assert eval_batch_count(RunConfig(batch_size=64, eval_batches=2)) == 2  # set: honoured
    cfg = RunConfig(task="adding", model="gru", **{**TINY, "eval_batches": 5})
    tr = Trainer(cfg.validated())
    ev = tr.evaluate()
    assert ev.sequences == 5 * 3 and ev.loss_se > 0
    # the SE is that of per-sequence losses, whose mean is the (per-batch) eval loss
    again = Trainer(cfg.validated())
    per_seq = []
    for _ in range(5):
        batch = again.task.generate(again.eval_rng, 3, split="test")
        out = again.head.forward(again._forward(batch.x)[0])
        per_seq += [again.task.loss(out[i : i + 1], batch.y[i : i + 1])[0] for i in range(3)]
    assert np.mean(per_seq) == pytest.approx(ev.loss, rel=1e-12)
    assert ev.loss_se == pytest.approx(np.std(per_seq, ddof=1) / np.sqrt(15), rel=1e-12)
    rec = run(cfg).record
    assert rec["eval_sequences"] == 15 and rec["eval_loss_se"] > 0


def test_probe_leaves_training_bit_identical():
    """Training consumes the same batches and reaches the same weights with any cadence of
    the probe: its pass draws nothing from the training generators and writes no weight."""
    base = dict(task="copy-task", model="lstm", **{**TINY, "dtype": "float32", "steps": 8})
    often = run(RunConfig(**{**base, "profile_every": 1}))
    rarely = run(RunConfig(**{**base, "profile_every": 100}))
    assert [h["loss"] for h in often.history] == [h["loss"] for h in rarely.history]
    assert often.record["final_loss"] == rarely.record["final_loss"]
    assert often.record["grad_ratio_log10_final"] == rarely.record["grad_ratio_log10_final"]


# ----------------------------------------------------------------- what a person reads


def test_verdict_names_the_bar_the_probe_and_the_speed_basis():
    from seqbench.console import solved_rule, verdict_lines

    assert solved_rule("copy-task") == "eval loss < 0.1 x baseline or every recalled symbol right"
    assert solved_rule("adding") == "MSE < 0.1 x baseline"
    assert solved_rule("narma10") == "eval loss < 0.1 x baseline"  # Task.solved's own bar
    assert solved_rule("no-such-task") is None
    rec = run(RunConfig(task="adding", model="elman", **TINY)).record
    text = "\n".join(verdict_lines(rec))
    assert "(solved = MSE < 0.1 x baseline)" in text
    assert f"(SE over {rec['eval_sequences']} sequences)" in text
    assert "steps/s excl. compile" in text
    init, final = rec["grad_ratio_log10_init"], rec["grad_ratio_log10_final"]
    assert f"{init:.2f} at init, {final:.2f} at the end" in text
    radius = f"{rec['spectral_radius_init']:.3g} -> {rec['spectral_radius_final']:.3g}"
    assert f"spectral radius W_hh {radius}" in text
    dead = {**rec, "grad_ratio_log10_final": float("-inf"), "grad_probe_note_final": "why"}
    assert "-inf at the end" in "\n".join(verdict_lines(dead))
    assert "probe at the end: why" in "\n".join(verdict_lines(dead))


def test_without_a_terminal_a_run_prints_one_line_per_evaluation(capsys, monkeypatch):
    from seqbench.console import TrainingProgress

    cfg = RunConfig(task="adding", model="gru", **TINY).validated()
    monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
    with TrainingProgress(cfg) as progress:
        run(cfg, progress=progress)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines] == ["3/6", "6/6"]
    assert all("eval loss" in ln and "±" in ln and "baseline 0.1667" in ln for ln in lines)
    with TrainingProgress(cfg, enabled=False) as progress:  # --quiet: silent
        run(cfg, progress=progress)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- the step's compiled parts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_head_and_loss_kernels_match_numpy(dtype):
    from seqbench.kernels.cpu import head as k

    from seqbench.tasks.base import softmax_cross_entropy

    rng = np.random.default_rng(0)
    N, F, O = 37, 19, 9
    feats, w = rng.standard_normal((N, F)).astype(dtype), rng.standard_normal((O, F)).astype(dtype)
    b, dout = rng.standard_normal(O).astype(dtype), rng.standard_normal((N, O)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    out = np.empty((N, O), dtype)
    k.linear_forward(feats, w, b, out)
    np.testing.assert_allclose(out, feats @ w.T + b, rtol=tol, atol=tol)
    dw, db, dfeats = np.empty_like(w), np.empty_like(b), np.empty_like(feats)
    k.linear_backward(feats, w, dout, dw, db, dfeats)
    for got, want in ((dw, dout.T @ feats), (db, dout.sum(0)), (dfeats, dout @ w)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    labels = rng.integers(0, O, N)
    dlogits = np.empty_like(out)
    loss = k.softmax_xent(out, labels, dlogits)
    want_loss, want_grad = softmax_cross_entropy(out.astype(np.float64), labels)
    assert loss == pytest.approx(want_loss, rel=tol) and dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, want_grad, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="label"):
        k.softmax_xent(out, np.full(N, O), dlogits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_head_products_agree_on_the_loop_and_the_blas_path(dtype, monkeypatch):
    """seqbench.head sends small products to the compiled loops and large ones to BLAS: both
    paths give numpy's answer, in the arrays' dtype."""
    from seqbench import head

    rng = np.random.default_rng(2)
    N, F, O = 41, 23, 11
    rows, w = rng.standard_normal((N, F)).astype(dtype), rng.standard_normal((O, F)).astype(dtype)
    b, d = rng.standard_normal(O).astype(dtype), rng.standard_normal((N, O)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    want = (rows @ w.T + b, d.T @ rows, d.sum(0), d @ w)
    for macs in (1 << 40, 0):  # every product to the loops, then every one to BLAS
        monkeypatch.setattr(head, "GEMM_MACS", macs)
        monkeypatch.setattr(head, "GEMM_MIN_OUTPUTS", 0)
        got = (head.linear_forward(rows, w, b), *head.linear_backward(rows, w, d))
        for g, x in zip(got, want, strict=True):
            assert g.dtype == dtype and g.shape == x.shape
            np.testing.assert_allclose(g, x, rtol=tol, atol=tol)


def test_pipeline_gradients_through_the_blas_head(monkeypatch):
    """The finite-difference check of the whole pipeline with the head on its BLAS path."""
    from seqbench import head

    monkeypatch.setattr(head, "GEMM_MACS", 0)
    monkeypatch.setattr(head, "GEMM_MIN_OUTPUTS", 0)
    test_pipeline_gradients_match_finite_differences("adding", "last")


def test_trainer_arrays_are_one_buffer_and_loaded_weights_are_honoured():
    """Model and head arrays are views of the Trainer's flat buffer; weights loaded between
    steps take effect (copied into the buffer), as when the optimizer read the dicts."""
    tr = Trainer(RunConfig(task="copy-task", model="gru", **TINY).validated())
    arrays = {**tr.model.params, **tr.head.params}
    assert all(a.base is tr.flat.p and a is tr.params[k] for k, a in arrays.items())
    new = {k: np.full_like(v, 0.01) for k, v in tr.model.params.items()}
    tr.model.load_state_dict(new)
    batch = tr.task.generate(np.random.default_rng(0), 3)
    twin = Trainer(RunConfig(task="copy-task", model="gru", **TINY).validated())
    twin.model.load_state_dict(new)
    assert tr.step(batch).loss == pytest.approx(twin.step(batch).loss, rel=1e-14)
    assert all(tr.model.params[k].base is tr.flat.p for k in new)
    for k in tr.params:
        np.testing.assert_array_equal(tr.params[k], twin.params[k])
