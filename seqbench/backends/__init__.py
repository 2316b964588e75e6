"""Backends behind one layer contract.

Each backend module exposes ``LAYERS = {cell: (forward, backward)}`` with

    forward(p, x, state0, opts) -> (out (B, T, O), state_n tuple, cache)
    backward(p, cache, dout (B, T, O), dstate_n tuple)
        -> (grads, dx (B, T, I), dstate0, dh_norms (T,))

for one layer and one direction; ``p`` holds short parameter names (``weight_ih``, ...).
Modules are imported on first use so that ``import seqbench`` stays light.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

BACKENDS = {
    "numba": "seqbench.backends.numba_cpu",
    "numpy": "seqbench.backends.reference",
    "cuda": "seqbench.backends.cuda_gpu",
}


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"backend {name!r} is not known; use one of {', '.join(BACKENDS)}")
    return name


def layer_functions(backend: str, cell: str):
    """(forward, backward) of one cell on one backend."""
    module = importlib.import_module(BACKENDS[check_backend(backend)])
    if cell not in module.LAYERS:
        raise ConfigError(f"cell {cell!r} has no {backend!r} implementation")
    return module.LAYERS[cell]


def check_environment() -> None:
    """Read every SEQBENCH_* setting now, so that a malformed one is a ConfigError before any
    work starts rather than wherever it is first needed."""
    from .buffers import POOL

    try:
        from ..kernels import config  # noqa: F401  (its numbers are parsed on import)

        POOL.cap  # noqa: B018  (read lazily otherwise)
    except ValueError as exc:  # kernels raise plain ValueError: they know nothing of seqbench
        raise ConfigError(str(exc)) from None
