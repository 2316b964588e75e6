"""Kernel speed: forward and train step per cell x backend x shape x dtype, compile time,
peak memory. The asv counterpart of ``seqbench bench``.

Fair by construction: asv times every parameter combination in its own process, so the torch
backend's cases and the numba ones never share a process and their thread pools cannot slow
each other (``seqbench bench`` does the same with a worker process per side)."""

from __future__ import annotations

import os
import sys

from .common import BACKENDS, CELLS, DTYPES, SHAPES, SMOKE, make_case, parse, set_threads


class _KernelCase:
    """Shared by Forward and TrainStep: the full grid, one model and input built per case."""

    params = [CELLS, BACKENDS, SHAPES, DTYPES]
    param_names = ["cell", "backend", "shape", "dtype"]
    timeout = 600

    def setup(self, cell, backend, shape, dtype):
        set_threads(backend)
        self.case = make_case(cell, backend, shape, dtype)


class Forward(_KernelCase):
    """One forward pass (inference; seqbench saves its tape, torch runs under no_grad)."""

    def time_forward(self, cell, backend, shape, dtype):
        self.case.forward()


class TrainStep(_KernelCase):
    """Forward + backward of the summed output, parameter gradients included."""

    def time_train_step(self, cell, backend, shape, dtype):
        self.case.train_step()

    def peakmem_train_step(self, cell, backend, shape, dtype):
        self.case.train_step()


class SaturatedTrainStep:
    """The train step with saturated gates: biases x3000 put most pre-activations beyond
    +-87, where sigmoid's float32 value (or an intermediate of it) is subnormal, which costs
    ~100 cycles an instruction unless the kernels flush it (kernels/cpu/_fpenv.py; LSTM at
    32,100,10,128 with all weights x300 took 50 against 17 ms before that). Weights stay as
    they are, so that the gradients stay finite."""

    params = [CELLS, ["numba", "torch"]]
    param_names = ["cell", "backend"]
    timeout = 600

    def setup(self, cell, backend):
        set_threads(backend)
        shape = SHAPES[0]
        ours = make_case(cell, "numba", shape, "float32")
        saturated = {
            k: v * (3000 if k.startswith("bias") else 1) for k, v in ours.model.state_dict().items()
        }
        ours.model.load_state_dict(saturated)
        if backend == "torch":
            from seqbench.bench import TorchCase, _torch

            if _torch() is None:
                raise NotImplementedError("torch is not installed")
            ours = TorchCase(cell, parse(shape), "float32", saturated, ours.x)
        self.case = ours
        self.case.train_step()

    def time_train_step(self, cell, backend):
        self.case.train_step()


_FIRST_STEP = """
import os
os.environ["SEQBENCH_NO_CACHE"] = {no_cache!r}
import numpy as np
import seqbench as sb
model = sb.build_model({cell!r}, 10, 32, dtype={dtype!r})
x = np.ones((4, 8, 10), dtype={dtype!r})
"""


class FirstStep:
    """A fresh process's first train step: numba compiling every kernel it needs ("cold",
    SEQBENCH_NO_CACHE=1) or loading them from the disk cache ("cached"). Importing seqbench
    and numpy is setup, not timed."""

    params = [["cold", "cached"], ["gru"] if SMOKE else [*CELLS, "jordan"], ["float32"]]
    param_names = ["cache", "cell", "dtype"]
    number = 1
    repeat = (1, 3, 600.0)
    timeout = 900

    def setup(self, cache, cell, dtype):
        if cache == "cached":  # make sure the cache holds this cell's kernels
            import subprocess

            code = _FIRST_STEP.format(no_cache="0", cell=cell, dtype=dtype) + _STEP
            env = {k: v for k, v in os.environ.items() if k != "SEQBENCH_NO_CACHE"}
            subprocess.run([sys.executable, "-c", code], check=True, env=env)

    def timeraw_first_step(self, cache, cell, dtype):
        setup = _FIRST_STEP.format(no_cache="1" if cache == "cold" else "0", cell=cell, dtype=dtype)
        return _STEP, setup


_STEP = "y, tape = model.forward(x); model.backward(tape, np.ones_like(y))"
