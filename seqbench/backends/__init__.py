"""Backends behind one layer contract and one reservoir contract.

Each backend names a layer module exposing ``LAYERS = {cell: (forward, backward)}`` with

    forward(p, x, state0, opts) -> (out (B, T, O), state_n tuple, cache)
    backward(p, cache, dout (B, T, O), dstate_n tuple)
        -> (grads, dx (B, T, I), dstate0, dh_norms (T,))

for one layer and one direction; ``p`` holds short parameter names (``weight_ih``, ...);
and a reservoir module exposing ``RESERVOIR`` (prepare, run, check: see reservoir.py) for the
echo-state network. Modules are imported on first use so that ``import seqbench`` stays light.

A backend that runs the whole training step in another library (torch) names a step module
too: ``STEP(trainer)`` builds it over the Trainer's arrays and ``step(batch)`` returns
``(loss, pre-clip norm, clipped, dh_norms or None, diverged)`` (see torch_train.py); the
training loop (seqbench.train) is the same for every backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Backend:
    layers: str  # module path: LAYERS = {cell: (forward, backward)}
    reservoir: str | None  # module path: RESERVOIR = ReservoirFunctions(prepare, run, check)
    step: str | None = None  # module path: STEP, the whole training step (None: seqbench's)
    needs: tuple[str, str] | None = None  # (package, what to install) beyond seqbench's own


BACKENDS = {
    "numba": Backend("seqbench.backends.numba_cpu", "seqbench.backends.numba_esn"),
    "numpy": Backend("seqbench.backends.reference", "seqbench.backends.reference"),
    "cuda": Backend("seqbench.backends.cuda_gpu", "seqbench.backends.cuda_esn"),
    "torch": Backend(
        "seqbench.backends.torch_train",
        None,
        step="seqbench.backends.torch_train",
        needs=("PyTorch", "torch==2.13.0"),
    ),
}


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"backend {name!r} is not known; use one of {', '.join(BACKENDS)}")
    needs = BACKENDS[name].needs
    if needs is not None and importlib.util.find_spec(needs[1].split("=")[0]) is None:
        raise ConfigError(f"backend {name!r} needs {needs[0]}: pip install {needs[1]}")
    return name


def layer_functions(backend: str, cell: str):
    """(forward, backward) of one cell on one backend."""
    module = importlib.import_module(BACKENDS[check_backend(backend)].layers)
    if cell not in module.LAYERS:
        raise ConfigError(f"cell {cell!r} has no {backend!r} implementation")
    return module.LAYERS[cell]


def reservoir_functions(backend: str):
    """ReservoirFunctions (prepare, run, check) of the echo-state reservoir on one backend."""
    module = BACKENDS[check_backend(backend)].reservoir
    if module is None:
        with_one = ", ".join(k for k, b in BACKENDS.items() if b.reservoir is not None)
        raise ConfigError(f"backend {backend!r} has no echo-state reservoir; use {with_one}")
    return importlib.import_module(module).RESERVOIR


def step_engine(backend: str):
    """The class that runs the whole training step on ``backend`` (None: seqbench's own)."""
    module = BACKENDS[check_backend(backend)].step
    return None if module is None else importlib.import_module(module).STEP


def check_environment() -> None:
    """Read every SEQBENCH_* setting now, so that a malformed one is a ConfigError before any
    work starts rather than wherever it is first needed."""
    from .buffers import POOL

    try:
        from ..kernels import config  # noqa: F401  (its numbers are parsed on import)

        POOL.cap  # noqa: B018  (read lazily otherwise)
    except ValueError as exc:  # kernels raise plain ValueError: they know nothing of seqbench
        raise ConfigError(str(exc)) from None
