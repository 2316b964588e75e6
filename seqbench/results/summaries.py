"""Comparison of runs: per-run summaries (SUMMARIES) aggregated over groups by compare()."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import ConfigError


def _flag(values: pd.Series) -> pd.Series:
    return values.astype("boolean").fillna(False).astype(bool)


def _number(values: pd.Series) -> pd.Series:
    return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)


def _diverged(d: pd.DataFrame) -> pd.Series:
    return _flag(d["status"] == "diverged")


def _solved_steps(d: pd.DataFrame) -> pd.Series:
    """Steps to solve, among the runs that solved."""
    return _number(d["solved_step"]).where(_flag(d["solved"]))


def _loss_ratios(d: pd.DataFrame) -> pd.Series:
    """A diverged run counts as an infinite ratio, so divergence cannot flatter the median."""
    return _number(d["loss_ratio"]).mask(_diverged(d), math.inf)


# name -> (per-run value, aggregation over the runs of a group)
SUMMARIES = {
    "runs": (lambda d: pd.Series(1, index=d.index), "sum"),
    "solved_rate": (lambda d: _flag(d["solved"]), "mean"),
    "solved_step_median": (_solved_steps, "median"),
    "loss_ratio_median": (_loss_ratios, "median"),
    "steps_per_second_median": (lambda d: _number(d["steps_per_second"]), "median"),
    "diverged_rate": (_diverged, "mean"),
}


def compare(df: pd.DataFrame, by=("model", "seq_len"), values=tuple(SUMMARIES)) -> pd.DataFrame:
    """One row per combination of ``by`` (model x T by default), one column per summary.

    solved_rate and diverged_rate are fractions of all runs (a missing ``solved`` counts as
    not solved); the medians skip missing values.
    """
    by = [by] if isinstance(by, str) else list(by)
    values = [values] if isinstance(values, str) else list(values)
    _check_names("group by", by, list(df.columns))
    _check_names("summarise", values, list(SUMMARIES))
    try:
        per_run = pd.DataFrame({name: SUMMARIES[name][0](df) for name in values}, index=df.index)
    except KeyError as e:
        raise ConfigError(f"compare needs a {e.args[0]!r} column in the runs table") from e
    groups = per_run.groupby([df[b] for b in by], sort=True, dropna=False)
    return pd.DataFrame({name: groups[name].agg(SUMMARIES[name][1]) for name in values})


def _check_names(what: str, names: list, valid: list) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ConfigError(
            f"cannot {what} {', '.join(map(repr, unknown)) or 'nothing'}: "
            f"valid names are {', '.join(map(str, valid))}"
        )
