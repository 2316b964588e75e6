"""Where a train step's time goes (cpu_runtime.phases, bench_roofline): every kernel and GEMM
call is charged to its name, the phases add up to the step, and the GEMMs give the same
product whether cut over the threads or not."""

from __future__ import annotations

import numpy as np
import pytest

import seqbench as sb
from seqbench.backends import cpu_runtime
from seqbench.bench_roofline import PHASES, case_phase_flops, gemm_flops, phase_ms


def _step(model, x):
    y, tape = model.forward(x)
    model.backward(tape, np.ones_like(y), input_grad=False)


def test_phases_charges_each_kernel_and_gemm_and_nothing_outside(rng, two_threads):
    model = sb.build_model("lstm", 40, 6, dtype="float32")  # I > FUSE_INPUT_MAX: x_proj GEMM
    x = rng.standard_normal((4, 3, 40)).astype("float32")
    _step(model, x)
    with cpu_runtime.phases() as rec:
        _step(model, x)
    assert set(rec) == {"lstm_forward_rows", "lstm_backward_rows", "gemm"}
    assert min(rec.values()) > 0
    _step(model, x)  # after the block: nothing more is charged
    assert set(rec) == {"lstm_forward_rows", "lstm_backward_rows", "gemm"}


def test_phase_ms_splits_the_step_into_phases_that_add_up(rng):
    model = sb.build_model("gru", 3, 8, dtype="float32")
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    ms = phase_ms(lambda: _step(model, x), repeat=2)
    assert set(ms) == {*PHASES, "step"}
    assert min(ms[p] for p in PHASES[:3]) > 0 and ms["rest"] >= 0
    assert sum(ms[p] for p in PHASES) == pytest.approx(ms["step"])


def test_phase_flops_share_out_the_train_steps_products():
    """Fused input (I <= FUSE_INPUT_MAX): W_ih's product in the forward kernel and its weight
    gradient in the backward kernel; else GEMMs."""
    B, T, H = 2, 7, 5
    for I, fused in ((3, True), (40, False)):
        model = sb.build_model("lstm", I, H)
        g = case_phase_flops(model, "lstm", (B, T, I, H))
        rec = 2 * B * T * 4 * H * H / 1e9
        inside = rec + fused * 2 * B * T * 4 * H * I / 1e9
        assert g["forward recurrence"] == g["backward recurrence"] == pytest.approx(inside)
        assert sum(g.values()) == pytest.approx(gemm_flops(model, B, T, train=True) / 1e9)


@pytest.mark.parametrize("trans_a", [False, True])
def test_gemm_cut_over_the_threads_is_the_whole_product(rng, monkeypatch, two_threads, trans_a):
    a = rng.standard_normal((37, 11))
    b = rng.standard_normal((37 if trans_a else 11, 9))
    whole = cpu_runtime.gemm(a, b, trans_a=trans_a)
    monkeypatch.setattr(cpu_runtime, "_SPLIT_GEMM_MACS", 1)
    with cpu_runtime.phases() as rec:
        cut = cpu_runtime.gemm(a, b, trans_a=trans_a)
    np.testing.assert_allclose(cut, (a.T if trans_a else a) @ b, rtol=1e-12)
    np.testing.assert_allclose(cut, whole, rtol=1e-12)
    assert set(rec) == {"gemm"}
