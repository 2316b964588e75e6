"""Reading runs back: the finished run ids, and the tables as pandas DataFrames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from .schema import HISTORY, HISTORY_SCHEMA, PROFILE_SCHEMA, PROFILES, RUN_COLUMNS, RUN_SCHEMA, RUNS

# Arrow -> pandas on load: nullable dtypes, so an integer column with a gap stays integer.
_NULLABLE = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}.get


def completed_run_ids(out) -> set[str]:
    """Ids of the runs whose files are all written (from file names; nothing is read)."""
    return {p.stem for p in (Path(out) / RUNS).glob("*.parquet")}


def load(out="results") -> pd.DataFrame:
    """All runs under ``out``, one row each: RUN_COLUMNS in order, then extra columns."""
    frame = _read_all(_files(out, RUNS, None))
    if frame is None:
        return _empty(RUN_SCHEMA)
    extras = [c for c in frame.columns if c not in RUN_SCHEMA]
    return frame.reindex(columns=RUN_COLUMNS + extras).astype(RUN_SCHEMA)


def load_history(out="results", run_id=None) -> pd.DataFrame:
    """Per-step history of every run (or of the run id(s) given), long form with run_id."""
    return _load_companion(out, HISTORY, run_id, HISTORY_SCHEMA)


def load_profiles(out="results", run_id=None) -> pd.DataFrame:
    """Gradient profiles ‖dL/dh_t‖ of every run (or of the run id(s) given), long form."""
    return _load_companion(out, PROFILES, run_id, PROFILE_SCHEMA)


def _load_companion(out, sub: str, ids, schema: dict) -> pd.DataFrame:
    frame = _read_all(_files(out, sub, ids))
    if frame is None:
        return _empty(schema)
    first = [c for c in schema if c in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in schema]]
    return frame.astype({c: schema[c] for c in first})


def _files(out, sub: str, ids) -> list[Path]:
    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"no results directory at {out}")
    if ids is None:
        return sorted((out / sub).glob("*.parquet"))
    ids = [ids] if isinstance(ids, str) else list(ids)
    return [p for p in (out / sub / f"{i}.parquet" for i in ids) if p.is_file()]


def _read_all(paths: list[Path]) -> pd.DataFrame | None:
    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(path).replace_schema_metadata(None))
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ConfigError(f"cannot read results file {path}: {e}") from e
    if not tables:
        return None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # an extra column typed differently per file
        frames = [t.to_pandas(types_mapper=_NULLABLE) for t in tables]
        return pd.concat(frames, ignore_index=True)
    return table.to_pandas(types_mapper=_NULLABLE)


def _empty(schema: dict) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in schema.items()})
