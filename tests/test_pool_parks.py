"""seqbench's threads leave the CPU when a call returns, so the user's next library call (torch,
NumPy) gets every core. A pool whose idle threads spin (OpenMP's default, OpenBLAS's ~0.1 s
after each call) takes a core from whatever runs next: issue 23 saw torch's GRU step 3x
slower right after such a call. Checked by CPU time, not speed: while this process sleeps
right after a call, a thread still spinning would burn CPU time for the whole sleep.
(suites/after_call.py measures the effect on torch, NumPy and seqbench timings.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

import seqbench as sb
from seqbench.config import RunConfig
from seqbench.models.esn import build_esn
from seqbench.train import Trainer

SLEEP_S = 0.2
# CPU seconds the whole process may use during the sleep: a spinning thread would use ~0.2
BUDGET_S = 0.04


def cpu_while_asleep() -> float:
    t0 = time.process_time()
    time.sleep(SLEEP_S)
    return time.process_time() - t0


@pytest.fixture(autouse=True)
def _on_two_threads(two_threads):  # every test here: conftest's two_threads
    yield


def _model_step(cell):
    model = sb.build_model(cell, 6, 32, dtype="float32", seed=0)
    x = np.random.default_rng(0).standard_normal((16, 20, 6)).astype(np.float32)

    def step():
        y, tape = model.forward(x)
        model.backward(tape, np.ones_like(y))

    return step


def _trainer_step(cell):
    cfg = RunConfig(task="copy-task", model=cell, seq_len=5, hidden_size=32, batch_size=16)
    tr = Trainer(cfg.validated())
    return lambda: tr.step(tr.task.generate(tr.data_rng, cfg.batch_size))


def _reservoir_run():
    model = build_esn(1, 300, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 200, 1))
    return lambda: model.forward(x)


CALLS = {
    **{f"{cell} forward+backward": (_model_step, cell) for cell in ("lstm", "gru", "elman")},
    **{f"{cell} Trainer.step": (_trainer_step, cell) for cell in ("lstm", "gru")},
}


@pytest.mark.parametrize("name", [*CALLS, "reservoir"])
def test_threads_leave_the_cpu_when_a_call_returns(name):
    call = _reservoir_run() if name == "reservoir" else CALLS[name][0](CALLS[name][1])
    call()  # compiles or loads the kernels
    used = []
    for _ in range(3):
        call()
        used.append(cpu_while_asleep())
    assert min(used) < BUDGET_S, f"{name}: {used} CPU s during {SLEEP_S} s of sleep"
