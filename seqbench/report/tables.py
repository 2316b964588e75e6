"""Comparison tables of a results directory: how runs are labelled, and the model x T pivots.

Per task, model x T of runs solved over seeds ("which model solves which length"), final loss
/ baseline as mean [95% t interval] over seeds, median steps to solve and median steps per
second; and, when a sweep varies clipping, divergence and solve rates per clipping setting and
T. A cell pools seeds only: every config column that varies is a row key unless pooled, and
with several learning rates a cell shows the runs at its best one (table 'best lr').
``seqbench sweep`` prints them; each table's notes are in ``table.attrs["notes"]``.
"""

from __future__ import annotations

import json

import pandas as pd

from ..errors import ConfigError
from ..results.intervals import CAPTION, fmt

# Config columns that, when they vary within a task, become row keys of its tables; the others
# are the task, T (the columns), the seed (pooled) and what the label shows (LABELLED).
ROW_CANDIDATES = (
    "clip", "hidden_size", "init", "optimizer", "lr", "batch_size", "steps", "dtype", "backend",
)  # fmt: skip
LABELLED = ("model", "num_layers", "bidirectional", "options")


def _options(df: pd.DataFrame) -> list[dict]:
    out = []
    for text in df["options"]:
        try:
            value = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out


def model_labels(df: pd.DataFrame) -> pd.Series:
    """'lstm', 'lstm-bi', 'gru x2', 'esn leak=0.3': the model plus what tells its runs apart.

    Options appear only when they differ between runs of the same model in ``df``.
    """
    opts = _options(df)
    models = list(df["model"])
    varying = {}  # model -> option keys whose values differ between its runs
    for model in set(models):
        mine = [o for o, m in zip(opts, models, strict=True) if m == model]
        keys = {k for o in mine for k in o}
        varying[model] = sorted(k for k in keys if len({json.dumps(o.get(k)) for o in mine}) > 1)
    labels = []
    for (_, row), o in zip(df.iterrows(), opts, strict=True):
        label = str(row["model"])
        if _true(row.get("bidirectional")):
            label += "-bi"
        if pd.notna(row.get("num_layers")) and int(row["num_layers"]) > 1:
            label += f" x{int(row['num_layers'])}"
        label += "".join(f" {k}={o[k]}" for k in varying[row["model"]] if k in o)
        labels.append(label)
    return pd.Series(labels, index=df.index, dtype="string")


def _true(value) -> bool:
    return bool(value) if value is not None and not pd.isna(value) else False


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    d["label"] = model_labels(d) if len(d) else pd.Series(dtype="string")
    return d


def row_keys(d: pd.DataFrame, columns: str = "seq_len", pool=()) -> list[str]:
    """'label' and every candidate config column, less ``pool``, that varies within a column
    of the table (one that only changes with T, such as steps set per T, would just split the
    rows)."""
    keys = ["label"]
    for c in ROW_CANDIDATES:
        if c in d.columns and c != columns and c not in pool and d[c].nunique(dropna=False) > 1:
            if d.groupby(columns, dropna=False)[c].nunique(dropna=False).max() > 1:
                keys.append(c)
    return keys


def pivot(d: pd.DataFrame, value: str, rows: list[str], columns: str = "seq_len") -> pd.DataFrame:
    """One results.SUMMARIES value, rows x ``columns`` (T=... by default)."""
    from ..results import compare

    table = compare(d, by=[*rows, columns], values=[value])[value].unstack(columns)
    return _t_columns(table, columns)


def _t_columns(table: pd.DataFrame, columns: str) -> pd.DataFrame:
    if columns == "seq_len":
        table.columns = [f"T={int(t)}" if pd.notna(t) else "T=?" for t in table.columns]
    return table


def _cells(stats: pd.DataFrame, cell, columns: str = "seq_len") -> pd.DataFrame:
    """by_seed() rows -> one text cell each (``cell(row)``), rows x T; '–' where no run."""
    text = pd.Series([cell(r) for _, r in stats.iterrows()], index=stats.index, dtype=object)
    return _t_columns(text.unstack(columns).fillna("–"), columns)


def _kn(k, n) -> str:
    return f"{int(k)}/{int(n)}"


def _loss(r) -> str:
    from ..results.display import loss_cell

    return loss_cell(r) + (f", {int(r['diverged'])} diverged" if r["diverged"] else "")


def solved_table(d: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """'k/n' runs solved, over seeds: the classic which-model-solves-which-length table."""
    from ..results import by_seed

    return _cells(by_seed(d, [*rows, "seq_len"]), lambda r: _kn(r["solved"], r["runs"]))


def _with_notes(table: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    table.attrs["notes"] = list(notes)
    return table


def choose_best(d: pd.DataFrame, pool, best_of) -> tuple[pd.DataFrame, str | None]:
    """The runs at the best ``best_of`` per cell, when it varies (and is not pooled)."""
    from ..results import best_of as pick

    if not best_of or best_of in pool or best_of not in d.columns:
        return d, None
    if d[best_of].nunique(dropna=False) < 2:
        return d, None
    return pick(d, best_of, pool), best_of


def _notes(pool, best) -> list[str]:
    notes = ["pooled over seeds and " + ", ".join(pool)] if pool else []
    if best:
        notes.append(
            f"at the best {best} of each cell (fewest diverged, then lowest mean eval loss; "
            f"see 'best {best}'): fails means failed at the best {best} of its grid"
        )
    return notes


def summary_tables(df: pd.DataFrame, pool=(), best_of: str | None = "lr") -> dict:
    """Title -> table: per task the model x T tables (runs solved, final loss / baseline with
    its interval, steps to solve, speed; the best ``best_of`` when it varies), then clipping if
    it varies. Seeds are pooled; any other varying config column is a row key unless in
    ``pool``."""
    from ..results import by_seed

    tables = {}
    if df.empty:
        return tables
    pool = [pool] if isinstance(pool, str) else list(pool)
    if set(pool) - set(ROW_CANDIDATES):
        raise ConfigError(
            f"the report cannot pool over {', '.join(sorted(set(pool) - set(ROW_CANDIDATES)))}: "
            f"it can pool over {', '.join(ROW_CANDIDATES)}"
        )
    for task in sorted(df["task"].dropna().unique()):
        d, best = choose_best(labelled(df[df["task"] == task]), pool, best_of)
        rows = row_keys(d, pool=[*pool, best] if best else pool)
        stats = by_seed(d, [*rows, "seq_len"])
        notes = _notes(pool, best)
        tables[f"{task}: runs solved (model x T, over seeds)"] = _with_notes(
            _cells(stats, lambda r: _kn(r["solved"], r["runs"])), notes
        )
        tables[f"{task}: final loss / baseline, mean [95% interval] over seeds"] = _with_notes(
            _cells(stats, _loss), [f"{CAPTION}; diverged runs are counted, not averaged", *notes]
        )
        tables[f"{task}: median steps to solve"] = _with_notes(
            _cells(stats, lambda r: fmt(r["solved_step_median"])), notes
        )
        tables[f"{task}: median steps per second"] = _with_notes(
            _cells(stats, lambda r: fmt(r["steps_per_second_median"])), notes
        )
        if best:
            chosen = d.groupby([*rows, "seq_len"], sort=True, dropna=False)[best].first()
            tables[f"{task}: best {best}"] = _with_notes(
                _t_columns(chosen.map(fmt).unstack("seq_len").fillna("–"), "seq_len"), notes
            )
    if df["clip"].nunique() > 1 and "clip" not in pool:
        tables["clipping: divergence and solve rates"] = clipping_table(df, pool, best_of)
    return tables


def clipping_table(df: pd.DataFrame, pool=(), best_of: str | None = "lr") -> pd.DataFrame:
    """Per task, model, T and clipping setting (and any other config column that varies):
    runs, diverged and solved k/n, final loss / baseline [95% interval], clipped steps."""
    from ..results import by_seed
    from ..results.display import loss_cell

    pool = [pool] if isinstance(pool, str) else list(pool)
    d, best = choose_best(labelled(df), pool, best_of)
    skip = {"clip", *pool, *([best] if best else [])}
    by = ["task", "label", "seq_len", "clip"] + [
        c for c in ROW_CANDIDATES if c in d.columns and c not in skip and d[c].nunique() > 1
    ]
    stats = by_seed(d, by)
    groups = d.groupby(by, sort=True, dropna=False)
    table = pd.DataFrame(index=stats.index)
    table["runs"] = stats["runs"]
    table["diverged"] = list(map(_kn, stats["diverged"], stats["runs"]))
    table["solved"] = list(map(_kn, stats["solved"], stats["runs"]))
    table["final loss / baseline"] = [loss_cell(r) for _, r in stats.iterrows()]
    table["clipped steps (mean)"] = groups["clip_fraction"].mean().reindex(stats.index).map(fmt)
    table["max pre-clip norm (median)"] = (
        groups["max_preclip_norm"].median().reindex(stats.index).map(fmt)
    )
    notes = [f"final loss / baseline: {CAPTION}", *_notes(pool, best)]
    return _with_notes(table, notes)
