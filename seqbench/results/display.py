"""Tables as text: a DataFrame as a rich Table, or as plain text for the CLI and logs; and the
cells of a by_seed() table as text (n, mean [95% interval], k/n)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from .intervals import CAPTION, Interval, fmt, fmt_interval
from .summaries import PROBES


def to_rich_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """A rich Table of ``df``; a non-default index becomes the leading columns."""
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    table = Table(title=title)
    cells = [[_format(v) for v in row] for row in df.itertuples(index=False)]
    for i, name in enumerate(df.columns):
        numeric = pd.api.types.is_numeric_dtype(df[name]) and not pd.api.types.is_bool_dtype(
            df[name]
        )
        widest = max((len(row[i]) for row in cells), default=0)  # headers wrap, cells do not
        table.add_column(str(name), justify="right" if numeric else "left", min_width=widest)
    for row in cells:
        table.add_row(*row)
    return table


def render_table(df: pd.DataFrame, title: str | None = None, width: int = 120) -> str:
    """``df`` as plain text (no colour codes), for the CLI and for logs."""
    table = to_rich_table(df, title)
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    need = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(width, need)  # wider rather than cropped
    console.print(table)
    return console.file.getvalue()


def _format(value) -> str:
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


SHORT = {"grad_ratio_log10": "grad log10", "spectral_radius": "rho(W_hh)",
         "max_singular_value": "sigma_max"}  # fmt: skip


def seed_cells(stats: pd.DataFrame) -> pd.DataFrame:
    """A by_seed() table as text, one column per measure: runs, final loss / baseline as
    mean [95% t interval], solved k/n, median steps to solve, diverged k/n (when any), median
    steps per second, and each probe present as 'init -> final' (means over seeds)."""
    out = pd.DataFrame(index=stats.index)
    if stats.empty:
        return out
    out["n"] = stats["runs"].astype(int)
    out["loss_ratio [95% CI]"] = [loss_cell(r) for _, r in stats.iterrows()]
    out["solved_rate"] = [f"{s}/{n}" for s, n in zip(stats["solved"], stats["runs"], strict=True)]
    out["solve_step_median"] = [fmt(v) for v in stats["solved_step_median"]]
    if stats["diverged"].any():
        out["diverged"] = [
            f"{d}/{n}" for d, n in zip(stats["diverged"], stats["runs"], strict=True)
        ]
    out["steps/s"] = [fmt(v) for v in stats["steps_per_second_median"]]
    for p in PROBES:
        init, final = stats.get(f"{p}_init_mean"), stats.get(f"{p}_final_mean")
        if init is not None or final is not None:
            init = init if init is not None else pd.Series(np.nan, index=stats.index)
            final = final if final is not None else pd.Series(np.nan, index=stats.index)
            out[f"{SHORT.get(p, p)} init->final"] = [
                f"{fmt(a)} -> {fmt(b)}" for a, b in zip(init, final, strict=True)
            ]
    return out


def loss_cell(row) -> str:
    """Final loss / baseline as 'mean [low, high]' over the runs that did not diverge."""
    iv = Interval(int(row["loss_ratio_n"]), row["loss_ratio_mean"], row["loss_ratio_low"],
                  row["loss_ratio_high"])  # fmt: skip
    return fmt_interval(iv)


def seed_caption(pooled=(), best=None) -> list[str]:
    """The lines under a seed table: what an interval is, what was pooled, which rate was kept."""
    lines = [f"final loss / baseline: {CAPTION}; diverged runs are left out of it"]
    if pooled:
        lines.append("pooled over: " + ", ".join(pooled) + " (runs differing in these share a row)")
    else:
        lines.append("one row per config; only seeds are pooled")
    if best:
        lines.append(
            f"best {best}: per group of everything else, the {best} with the fewest diverged "
            f"runs, then the lowest mean eval loss; solved, fails and diverged are at that {best}"
        )
    return lines


def seeds_line(stats: pd.DataFrame) -> str:
    """One by_seed() row as a sentence: n, final loss / baseline mean [95% interval], solved
    k/n, median steps to solve (and how many diverged, if any)."""
    r = stats.iloc[0]
    n = int(r["runs"])
    text = (
        f"{n} seeds: final loss / baseline {loss_cell(r)} "
        f"({'mean [95% t interval]' if r['loss_ratio_n'] > 1 else 'one value, no interval'}), "
        f"solved {int(r['solved'])}/{n}, median steps to solve {fmt(r['solved_step_median'])}"
    )
    if r["diverged"]:
        text += f", {int(r['diverged'])} diverged (left out of the mean)"
    return text
