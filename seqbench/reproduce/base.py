"""What a reproduction declares: its runs (a suite per mode), its claims and its figure.

A reproduction is one frozen ``Reproduction`` in its own module, registered by one line in
``seqbench.reproduce.REPRODUCTIONS``. Its claims are ``Claim``s: a statement, the paper's
figure (``published``) and its ``source``, a ``measure`` that turns the runs into one value
per seed, and a ``Rule`` that turns the 95% t interval of those values into a verdict. The
rules are code, fixed before any full run; their one-line text is stored beside each verdict.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MODES = ("smoke", "quick", "full")
DEFAULT_SEEDS = {"smoke": 2, "quick": 3, "full": 5}
VERDICTS = ("reproduced", "partly", "not reproduced")
SMOKE_NOTE = "smoke: tiny settings that check the plumbing; its verdicts mean nothing"


@dataclass(frozen=True)
class Rule:
    """A verdict as a function of the per-seed values' interval, and its one-line text."""

    text: str
    decide: Callable  # (Interval) -> one of VERDICTS


@dataclass(frozen=True)
class Claim:
    """One published claim and how the runs measure it.

    ``measure(runs)`` returns a pandas Series of one value per seed (index: seed); ``each``,
    when given, splits the runs into labelled cases first (one claims row per case, e.g. one
    per T), as ``each(runs) -> [(label, runs of that case), ...]``.
    """

    name: str
    statement: str
    published: str  # the paper's figure, in words and numbers
    source: str  # paper, table or figure number
    measure: Callable
    rule: Rule
    each: Callable | None = None


@dataclass(frozen=True)
class Reproduction:
    """A published result as seqbench reruns it.

    ``suite(mode, seeds)`` returns the RunConfigs of a mode (smoke, quick or full);
    ``figure(runs, history, out)`` draws the paper's figure from this suite's runs table
    and per-step history into the folder ``out`` and returns the PNG paths. ``scale_downs``
    name every way the full mode departs from the paper; ``quick_scale_downs`` the further
    ones of the quick mode. ``seeds``: the default seeds per mode (``--seeds`` overrides them).
    """

    name: str
    title: str
    paper: str
    suite: Callable
    claims: tuple
    figure: Callable
    scale_downs: tuple = ()
    quick_scale_downs: tuple = ()
    notes: str = ""  # the settings' reasoning, shown on the report page
    seeds: dict = field(default_factory=lambda: dict(DEFAULT_SEEDS))
    extra: dict = field(default_factory=dict)

    def scale_down_list(self, mode: str) -> list:
        parts = list(self.scale_downs)
        if mode != "full":
            parts += list(self.quick_scale_downs)
        if mode == "smoke":
            parts.append(SMOKE_NOTE)
        return parts

    def scale_down_text(self, mode: str) -> str:
        """Every scale-down of ``mode`` in one line (stored with each claim)."""
        return "; ".join(self.scale_down_list(mode))


def grid(defaults: dict, seeds: int, *blocks: dict) -> list:
    """RunConfigs of ``defaults`` crossed with each block's lists (a scalar is one value),
    for seeds 0..seeds-1; each config validated, duplicates (same run id) dropped."""
    from ..config import RunConfig
    from ..results import run_id

    configs, seen = [], set()
    for block in blocks or ({},):
        axes = {k: v if isinstance(v, list) else [v] for k, v in block.items()}
        axes["seed"] = list(range(seeds))
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            cfg = RunConfig.from_dict({**defaults, **dict(zip(names, combo, strict=True))})
            rid = run_id(cfg.identity())
            if rid not in seen:
                seen.add(rid)
                configs.append(cfg)
    return configs


def rates_per_model(task: str, settings: dict, seeds: int) -> list:
    """The suite of a "cells over T, each cell over its own lr grid" reproduction (Adam with
    norm clipping at 1): ``settings`` holds ``seq_len`` (a list), ``lr`` ({model: [rates]})
    and the other RunConfig fields, shared by every run."""
    s = dict(settings)
    ts, rates = s.pop("seq_len"), s.pop("lr")
    defaults = dict(task=task, optimizer="adam", clip="norm:1", **s)
    blocks = ({"model": m, "seq_len": ts, "lr": r} for m, r in rates.items())
    return grid(defaults, seeds, *blocks)


# --- rules -------------------------------------------------------------------------------


def _no_data(iv) -> bool:
    return iv.n == 0 or math.isnan(iv.mean)


def _interval_rule(where: str, holds: Callable) -> Rule:
    """Reproduced if the whole interval ``holds`` (both ends), partly if only its mean does."""

    def decide(iv):
        if _no_data(iv):
            return "not reproduced"
        if iv.n >= 2 and holds(iv.low) and holds(iv.high):
            return "reproduced"
        return "partly" if holds(iv.mean) else "not reproduced"

    return Rule(f"reproduced if the 95% interval lies {where}; partly if only the mean does "
                "(or n=1); else not reproduced", decide)  # fmt: skip


def below(limit: float) -> Rule:
    return _interval_rule(f"below {limit:g}", lambda x: x < limit)


def at_least(limit: float) -> Rule:
    return _interval_rule(f"at or above {limit:g}", lambda x: x >= limit)


def above(limit: float) -> Rule:
    return _interval_rule(f"above {limit:g}", lambda x: x > limit)


def zero_rate(partly_up_to: float = 0.1) -> Rule:
    def decide(iv):
        if _no_data(iv):
            return "not reproduced"
        if iv.mean == 0.0:
            return "reproduced"
        return "partly" if iv.mean <= partly_up_to else "not reproduced"

    return Rule(f"reproduced if the rate is 0 in every seed; partly if its mean is at most "
                f"{partly_up_to:g}; else not reproduced", decide)  # fmt: skip


# --- measures' building blocks -----------------------------------------------------------


def number(values) -> pd.Series:
    """A column as float64 with NaN for missing values."""
    return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)


def json_column(runs: pd.DataFrame, column: str) -> list:
    """A JSON column (options, metrics, curves) as dicts; {} where a run has none."""
    values = runs[column] if column in runs.columns else [None] * len(runs)
    return [json.loads(v) if isinstance(v, str) else {} for v in values]


def diverged(runs: pd.DataFrame) -> pd.Series:
    return (runs["status"] == "diverged").astype("boolean").fillna(False).astype(float)


def final_value(runs: pd.DataFrame, column: str = "loss_ratio") -> pd.Series:
    """A final column per run; a diverged run counts as +inf (it failed, it did not vanish)."""
    return number(runs[column]).mask(diverged(runs) > 0, math.inf)


def per_seed(runs: pd.DataFrame, values: pd.Series, how: str = "mean") -> pd.Series:
    """One value per seed: ``values`` (indexed like ``runs``) aggregated over each seed's runs."""
    if runs.empty:
        return pd.Series(dtype=float)
    seeds = runs["seed"].astype("int64")
    return values.groupby(seeds).agg(how).rename_axis("seed")


def best_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the best learning rate per cell (seqbench.results.best_of: fewest diverged,
    then the lowest mean eval loss over seeds)."""
    from ..results import best_of

    return best_of(runs, "lr") if not runs.empty else runs


def each_value(column: str, label: str | None = None, skip_smallest: bool = False) -> Callable:
    """An ``each`` for Claim: one case per value of ``column`` (e.g. seq_len -> 'T=50')."""
    label = label or column

    def split(runs: pd.DataFrame) -> list:
        values = sorted(runs[column].dropna().unique(), key=_sort_key)
        if skip_smallest:
            values = values[1:]
        return [(f"{label}={v}", runs[runs[column] == v]) for v in values]

    return split


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def rho(runs: pd.DataFrame) -> pd.Series:
    """The spectral radius asked for by init 'spectral:RHO' (NaN for other inits)."""
    return (
        runs["init"]
        .astype(str)
        .map(lambda s: float(s.split(":", 1)[1]) if s.startswith("spectral:") else math.nan)
    )
