"""Writing runs: each file to a temp file in its directory, renamed into place, runs file last."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from . import schema
from .identity import run_id
from .provenance import environment


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

    ``record`` holds schema.RUN_COLUMNS keys (missing ones are stored as missing; run_id is computed
    from the config when absent; loss_ratio from final_loss/baseline_loss when absent;
    environment fields default to ``environment()``); other keys become extra columns, dicts
    and lists as JSON. A rewrite of the same run_id replaces all of its files.
    """
    row = _run_row(record)
    rid = row.at[0, "run_id"]
    frames = {
        schema.HISTORY: _companion(history, rid, schema.HISTORY_SCHEMA, ["step"], "history"),
        schema.PROFILES: _companion(
            profiles, rid, schema.PROFILE_SCHEMA, list(schema.PROFILE_SCHEMA)[1:], "profiles"
        ),
        schema.RUNS: row,  # last: its rename marks the run as complete
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
    return out / schema.RUNS / f"{rid}.parquet"


WEIGHTS = "weights"  # out/weights/<run_id>.npz: a trained run's state_dict, where kept


def weights_path(out, rid: str) -> Path:
    return Path(out) / WEIGHTS / f"{rid}.npz"


def write_atomic(path, write) -> Path:
    """``write(temp_path)`` fills a temp file beside ``path``, which is then renamed onto it:
    a reader sees the old file or the whole new one, never a part; an interrupted write leaves
    no temp file. The file gets the umask's mode (mkstemp's 0600 would hide shared results)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path


def write_weights(out, rid: str, arrays: Mapping) -> Path:
    """``arrays`` (state_dict names -> arrays) as an uncompressed .npz under out/weights/,
    atomically: loadable with ``np.load(path)`` (no pickles) into ``load_state_dict``."""
    final = weights_path(out, rid)

    def savez(tmp):
        with open(tmp, "wb") as f:  # a file, not a name: np.savez would append ".npz"
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(final, savez)
    except OSError as e:
        raise _unwritable(Path(out), e) from e


def read_weights(out, rid: str) -> dict | None:
    """The arrays of out/weights/<run_id>.npz, or None where the run kept none."""
    path = weights_path(out, rid)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write_table(table: pa.Table, path) -> None:
    pq.write_table(table, path)


def _make_dirs(out: Path) -> list[Path]:
    dirs = [out / sub for sub in (schema.RUNS, schema.HISTORY, schema.PROFILES)]
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
    if row.get("status") not in schema.STATUSES:
        allowed = ", ".join(schema.STATUSES)
        raise ValueError(f"status must be one of {allowed}, got {row.get('status')!r}")
    if row.get("loss_ratio") is None and row.get("final_loss") is not None:
        if row.get("baseline_loss"):
            row["loss_ratio"] = float(row["final_loss"]) / float(row["baseline_loss"])
    if row.get("options") is None:
        row["options"] = {}
    columns = schema.RUN_COLUMNS + [k for k in row if k not in schema.RUN_SCHEMA]
    frame = pd.DataFrame([[_cell(row.get(c)) for c in columns]], columns=columns, dtype=object)
    return frame.astype(schema.RUN_SCHEMA)


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
