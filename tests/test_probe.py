"""The gradient probe of the recurrence against an independent NumPy product of Jacobians."""

import math

import numpy as np
import pytest

from seqbench.config import RunConfig
from seqbench.probe import summarise
from seqbench.telemetry import grad_ratio_log10
from seqbench.train import Trainer

T = 100


def trainer(task="adding", model="elman", seq_len=T, **kw):
    base = dict(hidden_size=16, batch_size=4, dtype="float32", steps=1)
    return Trainer(RunConfig(task=task, model=model, seq_len=seq_len, **{**base, **kw}).validated())


def elman_log_profile(tr, dh_last):
    """log10 mean_b ||dL_T/dh_t,b|| by J_t = diag(1 - h_t^2) W_hh, in float64, from dh_last."""
    p = {k: v.astype(np.float64) for k, v in tr.model.params.items()}
    x = tr.probe.x
    B, steps, _ = x.shape
    h, hs = np.zeros((B, p["weight_hh_l0"].shape[0])), []
    for t in range(steps):
        pre = x[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T
        h = np.tanh(pre + p["bias_hh_l0"])
        hs.append(h)
    g, norms = dh_last(hs[-1]), np.zeros(steps)
    for t in range(steps - 1, -1, -1):
        norms[t] = np.mean(np.linalg.norm(g, axis=1))
        g = ((1.0 - hs[t] ** 2) * g) @ p["weight_hh_l0"]  # dL/dh_{t-1} = J_t^T dL/dh_t
    return np.log10(norms)


def head64(tr):
    return {k: v.astype(np.float64) for k, v in tr.head.params.items()}


def test_elman_probe_equals_the_product_of_jacobians():
    """Adding (readout of the last state), tanh, W_hh at spectral radius 0.9, T = 100."""
    tr = trainer(init="spectral:0.9")
    w = head64(tr)

    def dh_last(h):  # MSE on the last state's readout
        out = h @ w["head.weight"].T + w["head.bias"]
        return (2.0 * (out - tr.probe.y) / out.size) @ w["head.weight"]

    want = elman_log_profile(tr, dh_last)
    got = tr.measure_probe()
    assert got.note is None
    assert got.log_ratio == pytest.approx(want[0] - want[-1], rel=1e-6)
    np.testing.assert_allclose(got.log10_norms[0], want, rtol=1e-9, atol=1e-9)
    assert -30 < got.log_ratio < -5  # vanishes, as a radius below 1 and tanh must


def test_per_step_task_probes_the_last_step_alone():
    """Copy task: the probe backs up the loss at the last step only; the training gradient's
    own ||dL/dh_1|| includes step 1's loss and reads a very different ratio."""
    tr = trainer(task="copy-task", seq_len=20, init="spectral:0.9")
    w = head64(tr)

    def dh_last(h):  # cross-entropy at the last step, mean over the batch
        z = h @ w["head.weight"].T + w["head.bias"]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(p)), tr.probe.y[:, -1]] -= 1.0
        return (p / len(p)) @ w["head.weight"]

    want = elman_log_profile(tr, dh_last)
    got = tr.measure_probe()
    assert got.log_ratio == pytest.approx(want[0] - want[-1], rel=1e-6)
    with np.errstate(all="ignore"):
        from seqbench.tasks.base import Batch

        _, _, dh_norms = tr.loss_and_grads(Batch(tr.probe.x, tr.probe.y))
    training = grad_ratio_log10(dh_norms[0])
    assert training > got.log_ratio + 2


def test_lstm_with_forget_bias_decays_far_slower_than_elman():
    elman = trainer(init="spectral:0.9").measure_probe().log_ratio
    lstm = trainer(model="lstm", model_options={"forget_bias": 1.0}).measure_probe().log_ratio
    assert lstm > elman + 5  # about -6.5 against -17.3 here


def test_float32_model_below_float32_range_reads_a_finite_log_ratio():
    tr = trainer(init="spectral:0.25")
    got = tr.measure_probe()
    assert got.note is None and math.isfinite(got.log_ratio)
    assert -200 < got.log_ratio < -45  # a ratio below 1e-45: float32's smallest subnormal
    # the float32 training gradient itself cannot see it: its ||dL/dh_1|| is flushed to 0
    from seqbench.tasks.base import Batch

    _, _, dh_norms = tr.loss_and_grads(Batch(tr.probe.x, tr.probe.y))
    assert grad_ratio_log10(dh_norms[0]) == -math.inf


def test_rescaling_reads_past_float64_range():
    """T = 1000: the ratio falls far below 1e-308 and still reads as a number, and twice the
    length reads about twice the fall (each step multiplies by about the same factor)."""
    short = trainer(init="spectral:0.25", seq_len=500).measure_probe().log_ratio
    long = trainer(init="spectral:0.25", seq_len=1000).measure_probe().log_ratio
    assert math.isfinite(long) and long < -308
    assert long / short == pytest.approx(2.0, rel=0.1)


def test_exact_zero_reads_minus_inf_with_a_note():
    tr = trainer()
    tr.model.params["weight_hh_l0"][:] = 0.0  # no path from h_T back to h_{T-1}
    got = tr.measure_probe()
    assert got.log_ratio == -math.inf
    assert "dL_T/dh_1 is exactly 0" in got.note
    assert np.isfinite(got.log10_norms[0, -1])


def test_summary_of_the_ends():
    assert summarise(-3.0, 1.0) == (-4.0, None)
    value, note = summarise(-math.inf, 0.0)
    assert value == -math.inf and "exactly 0" in note
    value, note = summarise(-2.0, -math.inf)
    assert math.isnan(value) and "dL_T/dh_T is exactly 0" in note
    assert math.isnan(summarise(math.nan, 0.0)[0])


def test_probe_touches_neither_weights_nor_generators():
    tr = trainer(task="copy-task", seq_len=10)
    params = {k: v.copy() for k, v in tr.params.items()}
    states = [r.bit_generator.state for r in (tr.data_rng, tr.eval_rng)]
    tr.measure_probe()
    tr.measure_probe()
    assert all(np.array_equal(params[k], tr.params[k]) for k in params)
    assert [r.bit_generator.state for r in (tr.data_rng, tr.eval_rng)] == states
    assert tr.model.params["weight_hh_l0"].dtype == np.float32


@pytest.mark.parametrize("model, options", [("gru", {}), ("lstm", {"bidirectional": True})])
def test_gated_and_bidirectional_models_probe(model, options):
    got = trainer(model=model, seq_len=40, num_layers=2, **options).measure_probe()
    assert got.note is None and math.isfinite(got.log_ratio) and got.log_ratio < 0
    assert got.log10_norms.shape == (2 * (2 if options else 1), 40)
