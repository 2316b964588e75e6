"""Model registry and ``build_model``: the one way to construct any model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..backends import check_backend, layer_functions, reservoir_functions
from ..errors import ConfigError
from .cells import CELLS, check_size
from .recurrent import DTYPES, Gradients, RecurrentModel, Tape, check_dtype

__all__ = [
    "CELLS",
    "DTYPES",
    "MODELS",
    "ModelKind",
    "build_model",
    "build_for_run",
    "RecurrentModel",
    "Tape",
    "Gradients",
]

# build_model's own keywords among RunConfig's fields; the others go in as model options
_STRUCTURE = ("num_layers", "bidirectional")


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
    from .esn import FIT_OPTIONS, build_esn

    fit = {o.name for o in FIT_OPTIONS}
    options = {k: v for k, v in options.items() if k not in fit}  # the fit's, not the build's

    return build_esn(
        input_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dtype=dtype,
        backend=backend,
        seed=seed,
        **options,
    )


@dataclass(frozen=True)
class ModelKind:
    """What the harness needs to know of one kind of model, declared once here.

    build:        build_model's constructor for it
    functions:    backend -> its implementation there (ConfigError where it has none)
    fitted:       the readout is fitted in closed form: no optimizer, clipping or BPTT,
                  and ``steps`` (None) is left to the fit
    gates:        weight_ih rows per hidden unit (cost estimates)
    states:       state vectors per unit (LSTM: h and c; memory estimates)
    run_options:  the RunConfig fields, besides model_options, that the build takes
    options:      seqbench.options.Option declarations of its model_options
    fit_options:  those of ``options`` that go to the readout fit, not the build
    ignores:      RunConfig fields it does not use: set to other than their default they are
                  an error, at their default they are left out of the run's identity
    """

    build: Callable
    functions: Callable[[str], object]
    fitted: bool = False
    gates: int = 1
    states: int = 1
    run_options: tuple[str, ...] = ("num_layers", "bidirectional", "init")
    options: tuple = ()
    fit_options: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()

    def options_for(self, cfg) -> dict:
        """The build's model options for a RunConfig: its options fields, then model_options."""
        own = {k: getattr(cfg, k) for k in self.run_options if k not in _STRUCTURE}
        given = {k: v for k, v in cfg.model_options.items() if k not in self.fit_options}
        return {**own, **given}

    def fit_options_for(self, cfg) -> dict:
        """The readout fit's keywords a RunConfig sets (e.g. ridge), for esn_fit.fit_esn."""
        return {k: v for k, v in cfg.model_options.items() if k in self.fit_options}

    def memory_bytes(self, cfg, task) -> int:
        """Estimated peak bytes of a run of this model on ``task`` (seqbench.memory)."""
        from ..memory import data_bytes, reservoir_bytes, trained_bytes

        itemsize = DTYPES[cfg.dtype]().itemsize
        per_step = task.readout == "all"
        data = data_bytes(cfg.batch_size, task.steps, task.input_size, task.output_size,
                          per_step, task.kind == "classification", itemsize,
                          out_copies=1 if self.fitted else 3)  # fmt: skip
        shape = {"batch": cfg.batch_size, "steps": task.steps, "input_size": task.input_size,
                 "hidden": cfg.hidden_size, "itemsize": itemsize}  # fmt: skip
        if self.fitted:
            given = {o.name: o.default for o in self.options} | cfg.model_options
            return data + reservoir_bytes(
                **shape, output_size=task.output_size, connectivity=given.get("connectivity", 1.0),
                sparse=given.get("sparse", False),
            )  # fmt: skip
        layers = cfg.num_layers if "num_layers" in self.run_options else 1
        dirs = 2 if cfg.bidirectional and "bidirectional" in self.run_options else 1
        return data + trained_bytes(
            **shape, layers=layers, directions=dirs, gates=self.gates, states=self.states
        )

    def structure_for(self, cfg) -> dict:
        """The build's num_layers and bidirectional for a RunConfig, where they apply."""
        return {k: getattr(cfg, k) for k in self.run_options if k in _STRUCTURE}


def _cell_kind(cell: str) -> ModelKind:
    functions = partial(layer_functions, cell=cell)
    spec = CELLS[cell]
    return ModelKind(
        _build_recurrent, functions, gates=spec.gates, states=spec.n_states, options=spec.options
    )


def _esn_kind() -> ModelKind:
    from .esn import FIT_OPTIONS, OPTIONS

    # no gradient, one closed-form fit of the readout from the final state
    ignores = ("num_layers", "bidirectional", "init", "lr", "optimizer", "clip", "tbptt",
               "readout", "stop_when_solved")  # fmt: skip
    return ModelKind(
        _build_esn,
        reservoir_functions,
        fitted=True,
        run_options=(),
        options=OPTIONS + FIT_OPTIONS,
        fit_options=tuple(o.name for o in FIT_OPTIONS),
        ignores=ignores,
    )


# Every model the CLI, the suites and the tests can name: the cells, and the reservoir.
MODELS = {**{name: _cell_kind(name) for name in CELLS}, "esn": _esn_kind()}


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
    dtype = check_dtype(dtype)
    check_backend(backend)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return MODELS[cell].build(
        cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend, seed, cell_options
    )


def build_for_run(cfg, input_size: int):
    """The model a validated RunConfig describes, for a task of ``input_size`` features.

    RunConfig.validated already checked the sizes, dtype, backend and seed, so this goes to
    the model's constructor directly; model options are checked there, once."""
    kind = MODELS[cfg.model]
    structure = {"num_layers": 1, "bidirectional": False, **kind.structure_for(cfg)}
    return kind.build(
        cfg.model,
        input_size,
        cfg.hidden_size,
        structure["num_layers"],
        structure["bidirectional"],
        cfg.dtype,
        cfg.backend,
        cfg.seed,
        kind.options_for(cfg),
    )
