"""Run records -> Parquet files -> pandas DataFrames.

One run is one record (config, outcome, speed, gradient-stability summary, environment) and
up to two companion tables. On disk, under a results directory ``out``:

    out/runs/<run_id>.parquet      one row, RUN_COLUMNS first, extra record keys after
    out/history/<run_id>.parquet   per-step history: run_id, step, loss, preclip_norm, ...
    out/profiles/<run_id>.parquet  gradient profiles, long form: run_id, step, layer_dir, t, dh_norm
    out/sweeps.jsonl               one JSON line per sweep invocation (seqbench.sweep)

Every file is written to a temp file in its own directory and renamed into place; the runs
file is renamed last, so a run counts as done (``completed_run_ids``) only once all of its
files exist. Missing values are pd.NA in the nullable columns (Int64, boolean, string) and
NaN in the float columns.

Modules: schema (layout, columns, dtypes), identity (run ids), provenance (environment, time),
storage (atomic writes), loading (DataFrames), summaries (compare; by seed, best of),
intervals (95% t intervals over seeds), display (text tables),
sweeplog (the sweep log).
"""

from .display import render_table, seed_caption, seed_cells, seeds_line, to_rich_table
from .identity import run_id
from .intervals import Interval, t_interval
from .loading import completed_run_ids, load, load_history, load_profiles
from .provenance import environment, utc_now
from .schema import (
    CONFIG_FIELDS,
    ENVIRONMENT_FIELDS,
    HISTORY,
    HISTORY_SCHEMA,
    PROFILE_SCHEMA,
    PROFILES,
    RUN_COLUMNS,
    RUN_SCHEMA,
    RUNS,
    STATUSES,
)
from .storage import check_writable, write_atomic, write_run
from .summaries import (
    CONFIG_KEYS,
    PROBE_COLUMNS,
    SUMMARIES,
    best_of,
    by_seed,
    compare,
    group_keys,
)
from .sweeplog import SWEEP_LOG, append_sweep_log, load_sweep_log

__all__ = [
    "CONFIG_FIELDS",
    "ENVIRONMENT_FIELDS",
    "RUN_COLUMNS",
    "RUN_SCHEMA",
    "HISTORY_SCHEMA",
    "PROFILE_SCHEMA",
    "STATUSES",
    "SUMMARIES",
    "RUNS",
    "HISTORY",
    "PROFILES",
    "SWEEP_LOG",
    "run_id",
    "utc_now",
    "environment",
    "check_writable",
    "write_run",
    "write_atomic",
    "completed_run_ids",
    "load",
    "load_history",
    "load_profiles",
    "compare",
    "CONFIG_KEYS",
    "PROBE_COLUMNS",
    "group_keys",
    "by_seed",
    "best_of",
    "Interval",
    "t_interval",
    "seed_cells",
    "seed_caption",
    "seeds_line",
    "to_rich_table",
    "render_table",
    "append_sweep_log",
    "load_sweep_log",
]
