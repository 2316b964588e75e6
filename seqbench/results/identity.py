"""Run ids: the hash of a run's config fields, the same in every process."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping

import numpy as np

from .schema import CONFIG_FIELDS


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
