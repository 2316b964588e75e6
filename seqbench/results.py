"""Run records -> Parquet files -> pandas DataFrames.

One run is one record (config, outcome, speed, gradient-stability summary, environment) and
up to two companion tables. On disk, under a results directory ``out``:

    out/runs/<run_id>.parquet      one row, RUN_COLUMNS first, extra record keys after
    out/history/<run_id>.parquet   per-step history: run_id, step, loss, preclip_norm, ...
    out/profiles/<run_id>.parquet  gradient profiles, long form: run_id, step, layer_dir, t, dh_norm

Every file is written to a temp file in its own directory and renamed into place; the runs
file is renamed last, so a run counts as done (``completed_run_ids``) only once all of its
files exist. Missing values are pd.NA in the nullable columns (Int64, boolean, string) and
NaN in the float columns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from .errors import ConfigError

RUNS, HISTORY, PROFILES = "runs", "history", "profiles"
STATUSES = ("finished", "diverged", "failed")

_STR, _INT, _FLOAT, _BOOL = "string", "Int64", "float64", "boolean"

# The fields that define a run: run_id hashes exactly these (options: a dict of extra choices
# such as readout, nonlinearity, forget_bias, tbptt).
CONFIG_FIELDS = (
    "task", "model", "backend", "dtype", "seq_len", "hidden_size", "num_layers",
    "bidirectional", "batch_size", "optimizer", "lr", "clip", "init", "seed", "steps",
    "options",
)  # fmt: skip

ENVIRONMENT_FIELDS = (
    "seqbench_version", "numpy_version", "numba_version", "python_version", "cpu", "gpu",
    "git_commit",
)  # fmt: skip

RUN_SCHEMA = {
    "run_id": _STR,
    # config
    "task": _STR,
    "model": _STR,
    "backend": _STR,
    "dtype": _STR,
    "seq_len": _INT,
    "hidden_size": _INT,
    "num_layers": _INT,
    "bidirectional": _BOOL,
    "batch_size": _INT,
    "optimizer": _STR,
    "lr": _FLOAT,
    "clip": _STR,
    "init": _STR,
    "seed": _INT,
    "steps": _INT,
    "options": _STR,  # JSON object
    # outcome
    "status": _STR,  # one of STATUSES
    "diverged_step": _INT,
    "final_loss": _FLOAT,
    "baseline_loss": _FLOAT,
    "loss_ratio": _FLOAT,  # final_loss / baseline_loss
    "solved": _BOOL,
    "solved_step": _INT,
    "metrics": _STR,  # JSON object
    # speed
    "train_seconds": _FLOAT,
    "compile_seconds": _FLOAT,
    "steps_per_second": _FLOAT,
    "sequence_steps_per_second": _FLOAT,
    # gradient stability
    "grad_ratio_log10": _FLOAT,
    "clip_fraction": _FLOAT,
    "max_preclip_norm": _FLOAT,
    "spectral_radius": _FLOAT,
    "max_singular_value": _FLOAT,
    "parameters": _INT,
    # environment
    "started_at": _STR,  # UTC, ISO 8601
    **{name: _STR for name in ENVIRONMENT_FIELDS},
}
RUN_COLUMNS = list(RUN_SCHEMA)

HISTORY_SCHEMA = {
    "run_id": _STR,
    "step": _INT,
    "loss": _FLOAT,
    "preclip_norm": _FLOAT,
    "clipped": _BOOL,
    "seconds": _FLOAT,
}
PROFILE_SCHEMA = {"run_id": _STR, "step": _INT, "layer_dir": _STR, "t": _INT, "dh_norm": _FLOAT}

# Arrow -> pandas on load: nullable dtypes, so an integer column with a gap stays integer.
_NULLABLE = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}.get


# -- run ids


def run_id(config) -> str:
    """First 12 hex digits of the sha1 of the canonical JSON of CONFIG_FIELDS.

    Other keys are ignored, so a full record gives the same id as its config. Key order does
    not matter, numbers are compared by value (1e-3 == 0.001, 1 == 1.0, np.float32(0.001) ==
    0.001), a missing field hashes as None and a missing or empty ``options`` as {}.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    fields = {name: config.get(name) for name in CONFIG_FIELDS}
    fields["options"] = fields["options"] or {}
    text = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _canonical(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(str(value))  # str: the shortest repr in value's own precision (float32)
        return int(x) if x.is_integer() else x
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"run_id cannot hash a {type(value).__name__}: {value!r}")


def utc_now() -> str:
    """The current time as started_at wants it: UTC, ISO 8601, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- environment


def environment() -> dict:
    """Versions, CPU, GPU and git commit of this process; computed once, returned as a copy."""
    return dict(_environment())


@functools.cache
def _environment() -> dict:
    from . import __version__

    return {
        "seqbench_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": _distribution_version("numba"),  # without importing numba (~0.7 s)
        "python_version": platform.python_version(),
        "cpu": _cpu_name(),
        "gpu": _gpu_name(),
        "git_commit": _git_commit(),
    }


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    """NVIDIA model names from the driver's /proc files: no CUDA context, no subprocess."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model" and value.strip() not in names:
                    names.append(value.strip())
    return "; ".join(names) or None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # an installed copy: not our checkout, whatever encloses it
        return None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


# -- writing


def check_writable(out) -> Path:
    """Create ``out`` and its subdirectories and prove a file can be written in each.

    The CLI calls this before training so that no run is trained in vain.
    """
    out = Path(out)
    for directory in _make_dirs(out):
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".check.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise _unwritable(out, e) from e
    return out


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def write_run(out, record: Mapping, history=None, profiles=None) -> Path:
    """Write one run under ``out`` atomically; returns the path of its runs file.

    ``record`` holds RUN_COLUMNS keys (missing ones are stored as missing; run_id is computed
    from the config when absent; loss_ratio from final_loss/baseline_loss when absent;
    environment fields default to ``environment()``); other keys become extra columns, dicts
    and lists as JSON. A rewrite of the same run_id replaces all of its files.
    """
    row = _run_row(record)
    rid = row.at[0, "run_id"]
    frames = {
        HISTORY: _companion(history, rid, HISTORY_SCHEMA, ["step"], "history"),
        PROFILES: _companion(profiles, rid, PROFILE_SCHEMA, list(PROFILE_SCHEMA)[1:], "profiles"),
        RUNS: row,  # last: its rename marks the run as complete
    }
    out = Path(out)
    _make_dirs(out)
    staged = []  # (temp, final); nothing is renamed until every temp file is written
    try:
        for sub, frame in frames.items():
            final = out / sub / f"{rid}.parquet"
            if frame is None:
                continue
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{rid}.", suffix=".tmp")
            os.close(fd)
            os.chmod(tmp, _FILE_MODE)  # mkstemp's 0600 would make shared results unreadable
            staged.append((Path(tmp), final))
            _write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        for sub, frame in frames.items():
            if frame is None:  # left by an earlier run with this id: would not match this one
                (out / sub / f"{rid}.parquet").unlink(missing_ok=True)
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as e:
        raise _unwritable(out, e) from e
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return out / RUNS / f"{rid}.parquet"


def _write_table(table: pa.Table, path) -> None:
    pq.write_table(table, path)


def _make_dirs(out: Path) -> list[Path]:
    dirs = [out / sub for sub in (RUNS, HISTORY, PROFILES)]
    try:
        for directory in dirs:
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(out, e) from e
    return dirs


def _unwritable(out: Path, e: OSError) -> ConfigError:
    if out.exists() and not out.is_dir():
        reason = "it is a file, not a directory"
    else:
        reason = e.strerror or str(e)
        if e.filename:
            reason += f" ({e.filename})"
    return ConfigError(f"cannot write results to {out}: {reason}")


def _run_row(record: Mapping) -> pd.DataFrame:
    row = {**environment(), **{str(k): v for k, v in record.items()}}
    if row.get("run_id") is None:
        row["run_id"] = run_id(row)
    if not isinstance(row["run_id"], str) or not re.fullmatch(r"\w[\w.-]*", row["run_id"]):
        raise ValueError(f"run_id must be a plain file name, got {row['run_id']!r}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {row.get('status')!r}")
    if row.get("loss_ratio") is None and row.get("final_loss") is not None:
        if row.get("baseline_loss"):
            row["loss_ratio"] = float(row["final_loss"]) / float(row["baseline_loss"])
    if row.get("options") is None:
        row["options"] = {}
    columns = RUN_COLUMNS + [k for k in row if k not in RUN_SCHEMA]
    frame = pd.DataFrame([[_cell(row.get(c)) for c in columns]], columns=columns, dtype=object)
    return frame.astype(RUN_SCHEMA)


def _cell(value):
    """A record value as one Parquet cell: containers as JSON, NumPy scalars as Python."""
    if isinstance(value, (Mapping, list, tuple, set, np.ndarray)):
        return json.dumps(value, sort_keys=True, default=_json_default)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


def _companion(frame, rid: str, schema: dict, required: list, what: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
    frame = frame.drop(columns="run_id", errors="ignore").reset_index(drop=True)
    frame.insert(0, "run_id", rid)
    return frame.astype({c: d for c, d in schema.items() if c in frame.columns})


# -- reading


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


# -- comparison


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


# -- display


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


__all__ = [
    "CONFIG_FIELDS",
    "ENVIRONMENT_FIELDS",
    "RUN_COLUMNS",
    "RUN_SCHEMA",
    "HISTORY_SCHEMA",
    "PROFILE_SCHEMA",
    "STATUSES",
    "SUMMARIES",
    "run_id",
    "utc_now",
    "environment",
    "check_writable",
    "write_run",
    "completed_run_ids",
    "load",
    "load_history",
    "load_profiles",
    "compare",
    "to_rich_table",
    "render_table",
]
