"""Planning: which runs of a suite are still to do, most expensive first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .suite import Suite


@dataclass
class Plan:
    suite: Suite
    out: Path
    todo: list  # RunConfigs still to run, most expensive first
    done: list  # run ids already under out


def plan(suite: Suite, out) -> Plan:
    from ..results import completed_run_ids, run_id

    finished = completed_run_ids(out) if Path(out).is_dir() else set()
    todo, done = [], []
    for cfg in suite.configs:
        rid = run_id(cfg.identity())
        (done.append(rid) if rid in finished else todo.append(cfg))
    # Longest first: the pool's last runs are its short ones, so no core waits on a long tail.
    todo.sort(key=estimated_cost, reverse=True)
    return Plan(suite, Path(out), todo, done)


def estimated_cost(cfg) -> float:
    """Multiply-adds of a full run, roughly: steps x batch x T x gates x H^2 x layers x dirs."""
    from ..models import MODELS

    h = cfg.hidden_size
    gates = MODELS[cfg.model].gates
    steps = cfg.steps or 1  # a fitted model's steps (None) are the fit's own: one pass
    return float(steps * cfg.batch_size * (cfg.seq_len or 100) * gates * h * h) * (
        cfg.num_layers * (2 if cfg.bidirectional else 1)
    )
