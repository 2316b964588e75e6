"""Task registry: name -> module holding a ``TASK`` class (imported on first use)."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..options import check_options
from .base import Batch, Task

TASKS = {
    "copy-task": "seqbench.tasks.copy",
    "adding": "seqbench.tasks.adding",
    "temporal-order": "seqbench.tasks.temporal_order",
    "seq-digits": "seqbench.tasks.digits",
    "pseq-digits": "seqbench.tasks.digits",
    "mackey-glass": "seqbench.tasks.mackey_glass",
    "narma10": "seqbench.tasks.narma",
    "memory-capacity": "seqbench.tasks.memory_capacity",
    "char-lm": "seqbench.tasks.char_lm",
}

__all__ = ["TASKS", "Task", "Batch", "make_task", "available_tasks", "task_options"]


def _task_class(name: str):
    module = importlib.import_module(TASKS[name])
    return module.TASKS[name] if hasattr(module, "TASKS") else module.TASK


def available_tasks() -> list[str]:
    """Registered tasks whose module is present."""
    out = []
    for name in TASKS:
        try:
            _task_class(name)
        except ImportError:
            continue
        out.append(name)
    return out


def make_task(name: str, seq_len: int | None = None, **options) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task {name!r} is not known; use one of {', '.join(TASKS)}")
    cls = _task_class(name)
    return cls(seq_len, **check_options(cls.options, options, f"task {name!r}"))


def task_options(name: str) -> tuple:
    """The Option declarations of a task (its constructor's keywords)."""
    if name not in TASKS:
        raise ConfigError(f"task {name!r} is not known; use one of {', '.join(TASKS)}")
    return _task_class(name).options
