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


def test_clipping_is_recorded():
    base = dict(task="adding", model="elman", **{**TINY, "steps": 5})
    tight = run(RunConfig(clip="norm:1e-6", **base)).record
    loose = run(RunConfig(clip="none", **base)).record
    assert tight["clip_fraction"] == 1.0 and loose["clip_fraction"] == 0.0
    assert tight["max_preclip_norm"] > 1e-6


def test_tbptt_equals_full_bptt_when_window_covers_sequence():
    full = Trainer(RunConfig(task="copy-task", model="gru", **TINY).validated())
    trunc = Trainer(RunConfig(task="copy-task", model="gru", tbptt=100, **TINY).validated())
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
