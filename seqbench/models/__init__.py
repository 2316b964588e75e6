"""Model registry and ``build_model``: the one way to construct any model."""

from __future__ import annotations

from ..backends import check_backend
from ..errors import ConfigError
from .cells import CELLS, check_size
from .recurrent import DTYPES, Gradients, RecurrentModel, Tape

__all__ = ["CELLS", "MODELS", "build_model", "RecurrentModel", "Tape", "Gradients"]


def _build_recurrent(
    cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend, seed, options
):
    spec = CELLS[cell]
    options = spec.resolve_options(hidden_size, options)
    return RecurrentModel(
        spec, input_size, hidden_size, num_layers, bidirectional, dtype, backend, seed, options
    )


def _build_esn(
    cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend, seed, options
):
    if num_layers != 1 or bidirectional:
        raise ConfigError("esn is a single reservoir: use num_layers=1 and bidirectional=False")
    from .esn import build_esn

    return build_esn(input_size, hidden_size, dtype=dtype, backend=backend, seed=seed, **options)


# Every model the CLI, the suites and the tests can name: the cells, and the reservoir.
MODELS = {**{name: _build_recurrent for name in CELLS}, "esn": _build_esn}


def build_model(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dtype: str = "float32",
    backend: str = "numba",
    seed: int = 0,
    **cell_options,
):
    """Build a model; every argument is validated here so kernels never see a bad value."""
    if cell not in MODELS:
        raise ConfigError(f"cell {cell!r} is not known; use one of {', '.join(sorted(MODELS))}")
    input_size = check_size("input_size", input_size)
    hidden_size = check_size("hidden_size", hidden_size)
    num_layers = check_size("num_layers", num_layers)
    if not isinstance(bidirectional, bool):
        raise ConfigError(f"bidirectional must be True or False, got {bidirectional!r}")
    dtype = getattr(dtype, "__name__", str(dtype))
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use float32 or float64")
    check_backend(backend)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return MODELS[cell](
        cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend, seed, cell_options
    )
