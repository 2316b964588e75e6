"""Tables as text: a DataFrame as a rich Table, or as plain text for the CLI and logs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table


def to_rich_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """A rich Table of ``df``; a non-default index becomes the leading columns."""
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    table = Table(title=title)
    for name in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[name]) and not pd.api.types.is_bool_dtype(
            df[name]
        )
        table.add_column(str(name), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_format(v) for v in row))
    return table


def render_table(df: pd.DataFrame, title: str | None = None, width: int = 120) -> str:
    """``df`` as plain text (no colour codes), for the CLI and for logs."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(to_rich_table(df, title))
    return console.file.getvalue()


def _format(value) -> str:
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)
