"""Subnormals are flushed to zero inside seqbench's CPU kernel calls, and only there."""

import platform

import numpy as np
import pytest
from numba import njit
from seqbench.kernels.cpu._fpenv import flush_denormals, restore

import seqbench as sb
from seqbench.backends import cpu_runtime

X86 = platform.machine().lower() in {"x86_64", "amd64"}
TINY = np.float32(1e-30)  # TINY * TINY = 1e-60 underflows; TINY / 1e9 = 1e-39 is subnormal


@njit
def _subnormal(a):
    return a / np.float32(1e9)


def _numpy_subnormal():
    return np.float32(1e-38) / np.float32(10)  # numpy's own float division, same MXCSR


@pytest.mark.skipif(not X86, reason="MXCSR is x86's; elsewhere both calls do nothing")
def test_flush_and_restore_switch_subnormals_off_and_back_on():
    assert _subnormal(TINY) != 0 and _numpy_subnormal() != 0
    old = flush_denormals()
    try:
        assert _subnormal(TINY) == 0 and _numpy_subnormal() == 0
    finally:
        restore(old)
    assert _subnormal(TINY) != 0 and _numpy_subnormal() != 0


@pytest.mark.skipif(not X86, reason="MXCSR is x86's; elsewhere both calls do nothing")
def test_every_thread_of_a_parallel_call_flushes_and_the_caller_gets_its_state_back():
    threads = cpu_runtime.get_num_threads()
    cpu_runtime.set_num_threads(2)
    try:
        out = np.ones(4, dtype=np.float32)

        def job(i):
            out[i] = _subnormal(TINY)

        cpu_runtime.run_parallel([lambda i=i: job(i) for i in range(4)])
    finally:
        cpu_runtime.set_num_threads(threads)
    assert (out == 0).all()
    assert _subnormal(TINY) != 0 and _numpy_subnormal() != 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_saturated_gates_give_the_reference_results(cell, rng):
    """Weights x300 drive gates to sigmoid(z < -87), under float32's smallest normal: the
    flushed kernels still match the unflushed NumPy reference, and leave numpy's MXCSR as
    it was."""
    model = sb.build_model(cell, 3, 16, dtype="float32", seed=1)
    big = {k: np.asarray(v) * 300 for k, v in model.state_dict().items()}
    model.load_state_dict(big)
    ref = sb.build_model(cell, 3, 16, dtype="float32", backend="numpy", seed=1)
    ref.load_state_dict(big)
    x = rng.standard_normal((9, 5, 3)).astype(np.float32)
    y, tape = model.forward(x)
    y_ref, tape_ref = ref.forward(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = model.backward(tape, dy)
    grads_ref = ref.backward(tape_ref, dy)
    for name in ("weight_hh_l0", "bias_ih_l0"):  # x300 weights: float32 keeps ~3 digits here
        scale = np.abs(grads_ref[name]).max()
        np.testing.assert_allclose(grads[name] / scale, grads_ref[name] / scale, atol=2e-3)
    assert _numpy_subnormal() != 0
