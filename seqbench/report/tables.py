"""Comparison tables of a results directory: how runs are labelled, and the model x T pivots.

Per task, model x T of runs solved over seeds ("which model solves which length"), median
steps to solve, median final loss / baseline and median steps per second; and, when a sweep
varies clipping, divergence and solve rates per clipping setting. ``seqbench sweep`` prints them.
"""

from __future__ import annotations

import json

import pandas as pd

# Config columns that, when they vary within a task, become row keys of its tables.
ROW_CANDIDATES = (
    "clip", "hidden_size", "init", "optimizer", "lr", "batch_size", "steps", "dtype", "backend",
)  # fmt: skip


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


def row_keys(d: pd.DataFrame, columns: str = "seq_len") -> list[str]:
    """'label' and every candidate config column that varies within a column of the table
    (one that only changes with T, such as steps set per T, would just split the rows)."""
    keys = ["label"]
    for c in ROW_CANDIDATES:
        if c in d.columns and c != columns and d[c].nunique(dropna=False) > 1:
            if d.groupby(columns, dropna=False)[c].nunique(dropna=False).max() > 1:
                keys.append(c)
    return keys


def pivot(d: pd.DataFrame, value: str, rows: list[str], columns: str = "seq_len") -> pd.DataFrame:
    """One results.SUMMARIES value, rows x ``columns`` (T=... by default)."""
    from ..results import compare

    table = compare(d, by=[*rows, columns], values=[value])[value].unstack(columns)
    if columns == "seq_len":
        table.columns = [f"T={int(t)}" if pd.notna(t) else "T=?" for t in table.columns]
    return table


def solved_table(d: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """'k/n' runs solved, over seeds: the classic which-model-solves-which-length table."""
    rate = pivot(d, "solved_rate", rows)
    runs = pivot(d, "runs", rows)
    cells = {
        c: [
            "-" if pd.isna(n) else f"{round(r * n)}/{int(n)}"
            for r, n in zip(rate[c], runs[c], strict=True)
        ]
        for c in rate.columns
    }
    return pd.DataFrame(cells, index=rate.index)


def clipping_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per task, model and clipping setting: runs, divergence and solve rates, clipped steps."""
    from ..results import compare

    d = labelled(df)
    by = ["task", "label", "clip"]
    table = compare(d, by=by, values=["runs", "diverged_rate", "solved_rate", "loss_ratio_median"])
    groups = d.groupby(by, sort=True, dropna=False)
    table["clipped_steps_mean"] = groups["clip_fraction"].mean()
    table["max_preclip_norm_median"] = groups["max_preclip_norm"].median()
    return table


def summary_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Title -> table: per task the four model x T pivots, then clipping if it varies."""
    tables = {}
    if df.empty:
        return tables
    for task in sorted(df["task"].dropna().unique()):
        d = labelled(df[df["task"] == task])
        rows = row_keys(d)
        tables[f"{task}: runs solved (model x T, over seeds)"] = solved_table(d, rows)
        tables[f"{task}: median steps to solve"] = pivot(d, "solved_step_median", rows)
        tables[f"{task}: median final loss / baseline"] = pivot(d, "loss_ratio_median", rows)
        tables[f"{task}: median steps per second"] = pivot(d, "steps_per_second_median", rows)
    if df["clip"].nunique() > 1:
        tables["clipping: divergence and solve rates"] = clipping_table(df)
    return tables
