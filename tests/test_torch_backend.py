"""The torch backend: the same run as the numba backend, the whole step in torch.

Same batches, same seeds, same initial weights (torch's parameters are the Trainer's arrays),
torch's loss, clipping and optimizer: in float64 the losses agree step by step with numba's.
"""

import math

import numpy as np
import pytest

from seqbench.config import RunConfig
from seqbench.errors import ConfigError

torch = pytest.importorskip("torch")

TINY = dict(hidden_size=6, batch_size=4, eval_every=1000, eval_batches=1, profile_every=1000)
# (task, seq_len, optimizer, clip): every optimizer and clipping mode meets every cell once
CASES = {
    "elman": ("copy-task", 3, "sgd", "norm:1"),
    "lstm": ("adding", 8, "adam", "value:0.05"),
    "gru": ("copy-task", 3, "rmsprop", "none"),
}
STEPS = 6


def _trainer(cell, backend, dtype="float64", **kw):
    from seqbench.train import Trainer

    task, seq_len, optimizer, clip = CASES[cell]
    cfg = dict(task=task, seq_len=seq_len, optimizer=optimizer, clip=clip, lr=1e-2, **TINY)
    return Trainer(RunConfig(model=cell, backend=backend, dtype=dtype, **{**cfg, **kw}).validated())


def _losses(tr, steps):
    out = []
    for _ in range(steps):
        s = tr.step(tr.task.generate(tr.data_rng, tr.cfg.batch_size))
        out.append((s.loss, s.preclip_norm, s.clipped))
    return np.array(out)


def step_agreement(cell, steps=STEPS, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Per step (loss, pre-clip norm, clipped) of the numba and the torch backend."""
    return _losses(_trainer(cell, "numba", **kw), steps), _losses(
        _trainer(cell, "torch", **kw), steps
    )


@pytest.mark.parametrize("cell", sorted(CASES))
def test_losses_match_numba_step_by_step_in_float64(cell):
    ours, theirs = step_agreement(cell)
    np.testing.assert_allclose(theirs[:, :2], ours[:, :2], rtol=1e-6)
    assert (theirs[:, 2] == ours[:, 2]).all()
    assert len(set(ours[:, 0])) == STEPS  # the weights moved: a real comparison


@pytest.mark.parametrize("layers, bidirectional", [(2, False), (1, True)])
def test_stacked_and_bidirectional_models_match_too(layers, bidirectional):
    ours, theirs = step_agreement("gru", 3, num_layers=layers, bidirectional=bidirectional)
    np.testing.assert_allclose(theirs[:, :2], ours[:, :2], rtol=1e-6)


@pytest.mark.parametrize(
    "cell, kw",
    [
        ("elman", dict(model_options={"nonlinearity": "relu"})),  # clipped: torch's 1e-6 eps
        ("gru", dict(task="char-lm", seq_len=5, clip="norm:1")),  # streams: state carried on
    ],
    ids=["relu", "char-lm"],
)
def test_options_and_carried_state_match(cell, kw):
    ours, theirs = step_agreement(cell, 4, **kw)
    np.testing.assert_allclose(theirs[:, :2], ours[:, :2], rtol=1e-6)


def test_truncated_bptt_matches():
    ours, theirs = step_agreement("lstm", 3, tbptt=3)
    np.testing.assert_allclose(theirs[:, :2], ours[:, :2], rtol=1e-6)


def test_torch_trains_the_trainers_own_arrays():
    """No copies: the probe, the spectra and evaluation read torch's current weights."""
    tr = _trainer("gru", "torch")
    before = {k: v.copy() for k, v in tr.params.items()}
    _losses(tr, 1)
    assert all(not np.array_equal(before[k], tr.params[k]) for k in tr.params)
    for p, (k, a) in zip(tr.engine.rnn.parameters(), tr.model.params.items(), strict=True):
        assert np.shares_memory(p.detach().numpy(), a), k


def test_a_float32_run_records_every_field_and_follows_numba():
    from seqbench.train import run

    cfg = dict(task="copy-task", model="gru", seq_len=3, steps=30, lr=1e-2, **TINY)
    cfg.update(eval_every=30, profile_every=10)
    a = run(RunConfig(backend="numba", **cfg))
    b = run(RunConfig(backend="torch", **cfg))
    assert b.record["backend"] == "torch" and b.record["status"] == "finished"
    assert set(b.record) == set(a.record)
    assert b.record["steps_run"] == 30 and math.isfinite(b.record["grad_ratio_log10"])
    np.testing.assert_allclose([r["loss"] for r in b.history], [r["loss"] for r in a.history],
                               rtol=1e-3)  # fmt: skip
    assert b.record["final_loss"] == pytest.approx(a.record["final_loss"], rel=1e-3)
    probed = [r["step"] for r in b.history if "grad_ratio_log10" in r]
    assert probed == [1, 10, 20, 30] and b.profiles == []  # torch has no ||dL/dh_t|| rows


# ---------------------------------------------------------------- bad input, one line


def test_esn_on_torch_is_a_config_error():
    with pytest.raises(ConfigError, match="backend 'torch' has no echo-state reservoir"):
        RunConfig(task="mackey-glass", model="esn", backend="torch").validated()


def test_a_cell_torch_lacks_is_a_config_error():
    with pytest.raises(ConfigError, match="cell 'jordan' has no 'torch' implementation"):
        RunConfig(model="jordan", backend="torch").validated()


def test_without_torch_the_backend_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    from seqbench.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    assert main(["run", "copy-task", "--backend", "torch", "--steps", "1", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "seqbench: error: backend 'torch' needs PyTorch: pip install torch==2.13.0"


@pytest.mark.parametrize(
    "argv, match",
    [
        (["mackey-glass", "--model", "esn"], "backend 'torch' has no echo-state reservoir"),
        (["copy-task", "--model", "jordan"], "cell 'jordan' has no 'torch' implementation"),
    ],
)
def test_bad_runs_on_torch_are_one_line_exit_2(argv, match, capsys, tmp_path):
    from seqbench.cli import main

    code = main(["run", *argv, "--backend", "torch", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and match in err and "\n" not in err
