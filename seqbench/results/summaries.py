"""Comparison of runs: per-run summaries (SUMMARIES) aggregated over groups by compare(), and
the seed-aware view: group_keys() (every config column that varies, unless pooled), by_seed()
(n, mean and 95% t interval over seeds per group) and best_of() (the best learning rate)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .intervals import t_interval
from .schema import CONFIG_FIELDS

# The config columns that tell runs apart; seeds are draws, pooled by every seed-aware table.
CONFIG_KEYS = tuple(c for c in CONFIG_FIELDS if c != "seed")

# Gradient probes of the recurrence (newer records only): before the first update and at the end.
PROBES = ("grad_ratio_log10", "spectral_radius", "max_singular_value")
PROBE_COLUMNS = tuple(f"{p}_{when}" for p in PROBES for when in ("init", "final"))


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


def group_keys(df: pd.DataFrame, lead=("task", "model", "seq_len"), pool=()) -> list[str]:
    """``lead`` then every other config column (not the seed) that varies in ``df``, less the
    ``pool``ed ones: runs that differ in anything but the seed are never pooled unless asked."""
    lead = [lead] if isinstance(lead, str) else list(lead)
    pool = [pool] if isinstance(pool, str) else list(pool)
    _check_names("group by", lead, list(df.columns))
    if pool:
        _check_names("pool over", pool, [c for c in CONFIG_KEYS if c in df.columns])
    keys = [c for c in lead if c not in pool]
    for c in CONFIG_KEYS:
        if c in df.columns and c not in keys and c not in pool:
            if df[c].nunique(dropna=False) > 1:
                keys.append(c)
    return keys


def by_seed(df: pd.DataFrame, by) -> pd.DataFrame:
    """One row per group of ``by``: runs, solved, diverged (counts), the loss ratio's n, mean
    and 95% t interval over the runs that did not diverge, median steps to solve (solved runs),
    median steps per second, mean final (eval) loss, and the mean of each probe column present."""
    by = [by] if isinstance(by, str) else list(by)
    probes = [c for c in PROBE_COLUMNS if c in df.columns and df[c].notna().any()]
    rows, keys = [], []
    for key, g in df.groupby(by, sort=True, dropna=False) if len(df) else []:
        iv = t_interval(_number(g["loss_ratio"]).mask(_diverged(g)))
        row = {
            "runs": len(g),
            "solved": int(_flag(g["solved"]).sum()),
            "diverged": int(_diverged(g).sum()),
            "loss_ratio_n": iv.n,
            "loss_ratio_mean": iv.mean,
            "loss_ratio_low": iv.low,
            "loss_ratio_high": iv.high,
            "solved_step_median": _solved_steps(g).median(),
            "steps_per_second_median": _number(g["steps_per_second"]).median(),
            "final_loss_mean": _finite_mean(g["final_loss"]) if "final_loss" in g else math.nan,
        }
        row.update({f"{c}_mean": _number(g[c]).mean() for c in probes})
        rows.append(row)
        keys.append(key if isinstance(key, tuple) else (key,))
    index = pd.MultiIndex.from_tuples(keys, names=by) if keys else None
    table = pd.DataFrame(rows, index=index)
    if len(by) == 1 and keys:
        table.index = table.index.get_level_values(0)
    return table


def best_of(df: pd.DataFrame, axis: str = "lr", pool=()) -> pd.DataFrame:
    """The runs at the best value of ``axis`` within each group of every other config column
    (less the pooled ones): fewest diverged runs, then the lowest mean final (eval) loss, then
    the smallest value. The result has the chosen value in ``axis`` as before."""
    pool = [pool] if isinstance(pool, str) else list(pool)
    _check_names("pick the best", [axis], [c for c in CONFIG_KEYS if c in df.columns])
    if df.empty:
        return df
    rest = [c for c in CONFIG_KEYS if c in df.columns and c != axis and c not in pool]
    group = (
        df.groupby(rest, dropna=False, sort=False).ngroup()
        if rest
        else pd.Series(0, index=df.index)
    )
    runs = pd.DataFrame({"g": group, "v": df[axis], "div": _diverged(df),
                         "loss": _number(df["final_loss"]).mask(_diverged(df))})  # fmt: skip
    score = runs.groupby(["g", "v"], dropna=False).agg(div=("div", "sum"), loss=("loss", "mean"))
    score = score.fillna({"loss": math.inf}).reset_index()
    best = score.sort_values(["g", "div", "loss", "v"]).groupby("g").head(1)
    chosen = dict(zip(best["g"], best["v"], strict=True))
    return df[(runs["v"] == runs["g"].map(chosen)).fillna(False).to_numpy(dtype=bool)]


def _finite_mean(values: pd.Series) -> float:
    x = _number(values)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan
