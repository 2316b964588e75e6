"""The reservoir kernels' barrier beside other work: its fallback (a thread that has spun
SEQBENCH_BARRIER_SPINS times gives its core away at every further check) gives the same
states, bit for bit, as the default; the choice of fewer threads on a loaded machine is a
pure function of the load, read at most once a second, and the reservoir follows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seqbench.backends import cpu_runtime, numba_esn
from seqbench.models.esn import build_esn

# Reservoirs whose steps split over two threads meeting at the barrier: one series (rows
# split, N = 300 at 10% has enough nonzeros for two threads), and 8 series (one chunk whose
# units a team of two splits); float64 and float32, with output feedback (a second barrier
# a step in the chunk kernel).
_STATES = """
import json, sys
import numpy as np
from seqbench.backends import cpu_runtime
from seqbench.kernels import config
from seqbench.models.esn import build_esn

cpu_runtime.set_num_threads(2)
out = {}
for dtype in ("float64", "float32"):
    for B in (1, 8):
        kw = {"seed": 5, "leak": 0.6, "bias_scaling": 0.3, "feedback_size": 1, "dtype": dtype}
        rng = np.random.default_rng(B)
        x = rng.uniform(-1, 1, (B, 200, 2)).astype(dtype)
        teacher = rng.uniform(-1, 1, (B, 200, 1)).astype(dtype)
        states = build_esn(2, 300, **kw).forward(x, teacher=teacher)[0]
        out[f"{dtype}-{B}"] = states.tobytes().hex()
print(json.dumps({"spins": config.BARRIER_SPINS, "cache": config.CACHE, "states": out}))
"""


def _states(spins=None):
    env = dict(os.environ)
    env.pop("SEQBENCH_BARRIER_SPINS", None)
    if spins is not None:
        env["SEQBENCH_BARRIER_SPINS"] = str(spins)
    res = subprocess.run(
        [sys.executable, "-c", _STATES], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_barrier_fallback_gives_the_default_states_bit_for_bit():
    """SEQBENCH_BARRIER_SPINS=0 (read at compile time, so compiled afresh and never cached):
    every wait at the barrier goes straight to the yield; the states equal the default's."""
    from seqbench.kernels import config

    default, fallback = _states(), _states(spins=0)
    assert default["spins"] == config.BARRIER_SPINS_DEFAULT > 0
    assert fallback["spins"] == 0 and not fallback["cache"]
    assert fallback["states"] == default["states"]


def test_barrier_fallback_orders_every_step_across_threads():
    """The ordering test of tests/test_esn.py with the fallback barrier: each thread reads
    the other's write of the same step, never an older or newer one."""
    code = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from barrier_cases import check_order
from seqbench.kernels import config

assert config.BARRIER_SPINS == 0
check_order(2000)
print("ordered")
"""
    env = {**os.environ, "SEQBENCH_BARRIER_SPINS": "0"}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and "ordered" in res.stdout, res.stderr[-3000:]


@pytest.mark.parametrize(
    "threads, cpus, others, expected",
    [
        (2, 2, 0, 2),  # a quiet machine: every thread
        (2, 2, 1, 1),  # one busy process beside: one thread, which never waits
        (2, 2, 7, 1),  # heavily loaded: still one
        (16, 16, 3, 13),  # the CPUs the others leave
        (4, 16, 3, 4),  # no more than asked
        (2, 2, -1, 2),  # a reading below zero counts as none
        (1, 2, 0, 1),
    ],
)
def test_threads_beside_load(threads, cpus, others, expected):
    assert cpu_runtime.threads_beside_load(threads, cpus, others) == expected


@pytest.fixture
def fresh_load(monkeypatch):
    monkeypatch.setitem(cpu_runtime._LOAD, "at", -1e9)
    monkeypatch.setitem(cpu_runtime._LOAD, "others", None)
    monkeypatch.setattr(cpu_runtime.os, "cpu_count", lambda: 2)


def test_barrier_threads_now_reads_the_load_at_most_once_a_second(fresh_load, monkeypatch):
    readings = iter([1, 0])
    monkeypatch.setattr(cpu_runtime, "runnable_others", lambda: next(readings))
    clock = iter([100.0, 100.5, 101.6])
    monkeypatch.setattr(cpu_runtime.time, "monotonic", lambda: next(clock))
    assert cpu_runtime.barrier_threads_now(2) == 1  # reads: one busy task
    assert cpu_runtime.barrier_threads_now(2) == 1  # half a second later: the same reading
    assert cpu_runtime.barrier_threads_now(2) == 2  # over a second: read again, now quiet
    assert cpu_runtime.barrier_threads_now(1) == 1  # one thread needs no reading


def test_barrier_threads_now_without_a_reading_keeps_the_threads(fresh_load, monkeypatch):
    monkeypatch.setattr(cpu_runtime, "runnable_others", lambda: None)
    assert cpu_runtime.barrier_threads_now(2) == 2


def test_runnable_others_is_the_least_reading_less_this_thread(monkeypatch):
    lines = iter(["3.1 2.0 1.5 4/180 999\n", "3.1 2.0 1.5 2/180 999\n", "3.1 2.0 1.5 5/180 9\n"])

    class Loadavg:
        def __init__(self, *_):
            self.text = next(lines)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def read(self):
            return self.text

    monkeypatch.setattr("builtins.open", Loadavg)
    monkeypatch.setattr(cpu_runtime.time, "sleep", lambda s: None)
    assert cpu_runtime.runnable_others(samples=3) == 1


@pytest.mark.parametrize("B", [1, 8])
def test_reservoir_runs_on_the_threads_the_load_leaves(B, monkeypatch):
    """A long enough run on a loaded machine splits its steps over the threads the load
    leaves (here one), with the same states as the two-thread run on a quiet one."""
    old = cpu_runtime.get_num_threads()
    cpu_runtime.set_num_threads(2)
    try:
        kw = {"seed": 5, "leak": 0.6, "bias_scaling": 0.3}
        model = build_esn(1, 300, **kw)
        x = np.random.default_rng(0).uniform(-1, 1, (B, 40, 1))
        monkeypatch.setattr(numba_esn, "_LOAD_CHECK_WORK", 0)
        groups = []
        run_group = cpu_runtime.run_group
        monkeypatch.setattr(
            cpu_runtime, "run_group", lambda fn, n, *a: groups.append(n) or run_group(fn, n, *a)
        )
        monkeypatch.setattr(cpu_runtime, "barrier_threads_now", lambda threads: threads)
        quiet = model.forward(x)[0].copy()
        monkeypatch.setattr(cpu_runtime, "barrier_threads_now", lambda threads: 1)
        loaded = model.forward(x)[0]
    finally:
        cpu_runtime.set_num_threads(old)
    assert np.array_equal(quiet, loaded)
    if B == 1:
        assert groups == [2, 1]
    else:  # a team of two threads meets at the barrier; on the loaded machine, a team of one
        assert groups == [2]


def test_dense_reservoir_states_do_not_depend_on_blas_threads():
    """The dense path's per-step product runs with BLAS held to this thread (its own threads
    spun ~50 ms after each call, taking the core from whatever ran next): the states are then
    the same whatever thread count BLAS was given around the call."""
    from threadpoolctl import threadpool_limits

    model = build_esn(2, 1000, seed=4, sparse=False, dtype="float64")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 20, 2))
    runs = []
    for blas_threads in (1, 2):
        with threadpool_limits(blas_threads):
            runs.append(model.forward(x)[0])
    np.testing.assert_array_equal(runs[0], runs[1])
