"""RunConfig: everything that defines one training run, validated once at the edge.

Field names are the results table's column names, so a suite file, a CLI invocation and a
row of the table all speak the same words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError

READOUTS = ("last", "mean")
DEFAULT_STEPS = 3000


@dataclass(frozen=True)
class RunConfig:
    task: str = "copy-task"
    model: str = "gru"
    backend: str = "numba"
    dtype: str = "float32"
    seq_len: int | None = None  # None: the task's default
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    batch_size: int = 64
    steps: int | None = None  # None: DEFAULT_STEPS, or for a fitted model the fit's own choice
    lr: float = 1e-2
    optimizer: str = "adam"
    clip: str = "norm:1"
    init: str = "default"
    seed: int = 0
    readout: str = "last"  # sequence-level tasks: last hidden state or mean over time
    tbptt: int | None = None  # truncated BPTT window (k1 = k2); None: full BPTT
    eval_every: int = 100
    eval_batches: int = 4
    profile_every: int = 50  # cadence of ||dL/dh_t|| profiles and W_hh spectra
    stop_when_solved: bool = True
    model_options: dict = field(default_factory=dict)  # nonlinearity, forget_bias, leak, ...

    def identity(self) -> dict:
        """The results table's config columns: what defines the run and its run id.

        Choices without a column of their own (readout, tbptt, early stop, cell options) go in
        ``options``; evaluation and profiling cadences do not change the run and are left out.
        """
        d = asdict(self)
        for k in ("eval_every", "profile_every", "eval_batches"):
            d.pop(k)
        options = {k: d.pop(k) for k in ("readout", "tbptt", "stop_when_solved")}
        d["options"] = {**options, **d.pop("model_options")}
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown run setting {unknown[0]!r}; known: {', '.join(cls.field_names())}"
            )
        return cls(**d).validated()

    def validated(self) -> RunConfig:
        """This config checked, with its defaults filled in (seq_len, steps, clip's canonical
        form). A config that came out of here is returned as it is: a run is checked once on
        its way in (CLI, suite file or ``train.run``), not again at every layer it passes."""
        if self.__dict__.get("_validated"):
            return self
        from .backends import check_backend
        from .models import DTYPES, MODELS
        from .optim import OPTIMIZERS
        from .tasks import TASKS

        _choice("task", self.task, TASKS)
        _choice("model", self.model, MODELS)
        check_backend(self.backend)
        kind = MODELS[self.model]
        kind.functions(self.backend)  # e.g. a cell on cuda without a GPU fails here
        _choice("dtype", self.dtype, DTYPES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("readout", self.readout, READOUTS)
        if self.seq_len is not None:
            _positive_int("seq_len", self.seq_len)
        steps = self.steps
        if steps is None and not kind.fitted:
            steps = DEFAULT_STEPS
        if steps is not None:
            _positive_int("steps", steps)
        for name in (
            "hidden_size",
            "num_layers",
            "batch_size",
            "eval_every",
            "eval_batches",
            "profile_every",
        ):
            _positive_int(name, getattr(self, name))
        if self.tbptt is not None:
            _positive_int("tbptt", self.tbptt)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not isinstance(self.bidirectional, bool):
            raise ConfigError(f"bidirectional must be true or false, got {self.bidirectional!r}")
        from .clipping import parse_clip
        from .models.cells import check_init

        clip = str(parse_clip(self.clip))
        check_init(self.init)
        seq_len = self.seq_len
        if seq_len is None:
            from .tasks import _task_class

            seq_len = _task_class(self.task).default_seq_len
        out = _replace(self, clip=clip, lr=float(self.lr), seq_len=seq_len, steps=steps)
        object.__setattr__(out, "_validated", True)  # not a field: no part of ==, asdict, ids
        return out


def _replace(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, **changes)


def _choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not known; use one of {', '.join(choices)}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
