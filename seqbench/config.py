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
    eval_batches: int | None = None  # None: enough batches for 1024 held-out sequences
    profile_every: int = 50  # cadence of ||dL/dh_t|| profiles and W_hh spectra
    stop_when_solved: bool = True
    model_options: dict = field(default_factory=dict)  # nonlinearity, forget_bias, leak, ...
    task_options: dict = field(default_factory=dict)  # tau, max_delay, order, n_copy, ...

    def identity(self) -> dict:
        """The results table's config columns: what defines the run and its run id.

        Choices without a column of their own (readout, tbptt, early stop, model options) go
        in ``options``, task options under ``options["task_options"]`` when any are set (so a
        run without them keeps its id); evaluation and profiling cadences do not change the
        run and are left out, and so are the fields the model ignores (ModelKind.ignores).
        """
        from .models import MODELS

        d = asdict(self)
        for k in ("eval_every", "profile_every", "eval_batches"):
            d.pop(k)
        kind = MODELS.get(self.model)
        ignored = kind.ignores if kind is not None else ()
        options = {k: d.pop(k) for k in ("readout", "tbptt", "stop_when_solved")}
        for k in ignored:  # a column the model ignores reads None (hashed as if absent)
            if k in d:
                d[k] = None
            options.pop(k, None)
        task_options = d.pop("task_options")
        d["options"] = {**options, **d.pop("model_options")}
        if task_options:
            d["options"]["task_options"] = task_options
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

    def validated(self, *, whole: bool = True) -> RunConfig | None:
        """This config checked, with its defaults filled in (seq_len, steps, clip's canonical
        form). A config that came out of here is returned as it is: a run is checked once on
        its way in (CLI, suite file or ``train.run``), not again at every layer it passes.

        ``whole=False`` checks each field on its own and returns None: no options, nothing
        checked against the task (tbptt, readout), no memory estimate (a suite file's keys,
        one at a time, before they meet the rest of their run)."""
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
        _check_used(self, kind)
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
            "profile_every",
        ):
            _positive_int(name, getattr(self, name))
        if self.eval_batches is not None:
            _positive_int("eval_batches", self.eval_batches)
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
        if not whole:
            return None
        from .options import check_options

        model_options = check_options(kind.options, self.model_options, f"model {self.model!r}")
        task_options = check_options(
            _task_class(self.task).options, self.task_options, f"task {self.task!r}"
        )
        task = _make_task(self.task, self.seq_len, task_options, self.hidden_size)
        _check_against_task(self, task)
        out = _replace(
            self,
            clip=clip,
            lr=float(self.lr),
            seq_len=task.seq_len,
            steps=steps,
            model_options=model_options,
            task_options=task_options,
        )
        from .memory import check_fits

        check_fits(kind.memory_bytes(out, task))
        object.__setattr__(out, "_validated", True)  # not a field: no part of ==, asdict, ids
        return out


def task_for(cfg: RunConfig):
    """The task a RunConfig describes, its options applied (what the training loop runs)."""
    cfg = cfg.validated()
    return _make_task(cfg.task, cfg.seq_len, cfg.task_options, cfg.hidden_size)


def _task_class(name):
    from .tasks import _task_class

    return _task_class(name)


def _make_task(name, seq_len, options, hidden_size):
    cls = _task_class(name)
    return cls(seq_len, **cls.options_for_model(options, hidden_size))


def _check_used(cfg: RunConfig, kind) -> None:
    """A field the model ignores may only sit at its default (it is then left out of the id)."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    for name in kind.ignores:
        if getattr(cfg, name) != defaults[name]:
            raise ConfigError(
                f"{name}={getattr(cfg, name)!r} does not apply to model {cfg.model!r} "
                "(it has no gradient training); leave it out"
            )


def _check_against_task(cfg: RunConfig, task) -> None:
    if cfg.tbptt is not None and cfg.tbptt > task.steps:
        raise ConfigError(
            f"tbptt={cfg.tbptt} is longer than the {task.steps} steps of {cfg.task}'s sequences; "
            "use a shorter window or leave it out for full BPTT"
        )
    if cfg.bidirectional and task.causal:
        raise ConfigError(
            f"{cfg.task} predicts each next input: a bidirectional model would read the answer "
            "(leave --bidirectional out)"
        )
    if task.check_batch_size is not None:  # e.g. streams of a text
        task.check_batch_size(cfg.batch_size)
    if cfg.readout != "last" and task.readout == "all":
        raise ConfigError(
            f"readout={cfg.readout!r} applies to sequence-level targets; {cfg.task} has a "
            "target at every step (leave --readout out)"
        )


def _replace(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, **changes)


def _choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not known; use one of {', '.join(choices)}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
