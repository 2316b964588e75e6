"""The sweep log: one JSON line per sweep invocation, in ``out/sweeps.jsonl`` next to runs/."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SWEEP_LOG = "sweeps.jsonl"


def append_sweep_log(out, entry: dict) -> None:
    with open(Path(out) / SWEEP_LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def load_sweep_log(out) -> pd.DataFrame | None:
    """Every logged sweep under ``out``, one row each; None when nothing was logged."""
    path = Path(out) / SWEEP_LOG
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    return pd.DataFrame(rows)
