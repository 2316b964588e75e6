"""The checks of a suite: its layout, each key's type and value, and each model's options."""

from __future__ import annotations

import json
from dataclasses import fields

from ..errors import ConfigError
from .source import SuiteSource

SECTIONS = ("defaults", "grid", "runs")
TOP_LEVEL = ("name", "description", *SECTIONS)


# RunConfig annotation -> the TOML kind it takes: the first prefix that matches, else "string".
_KINDS = (("dict", "table"), ("bool", "bool"), ("int", "int"), ("float", "number"))


def _field_types() -> dict:
    """RunConfig field -> the TOML types it takes (from the dataclass's annotations)."""
    from ..config import RunConfig

    return {
        f.name: next((kind for prefix, kind in _KINDS if str(f.type).startswith(prefix)), "string")
        for f in fields(RunConfig)
    }


_TYPE_WORDS = {
    "table": "an inline table like {key = value}",
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "string": "a string",
}


def _type_ok(kind: str, value) -> bool:
    if kind == "table":
        return isinstance(value, dict)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _describe(value) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind.update({list: "a list", dict: "a table"})
    return f"{json.dumps(value, default=str)} ({kind.get(type(value), type(value).__name__)})"


def check_document(source: SuiteSource, doc: dict) -> None:
    for key, value in doc.items():
        if key not in TOP_LEVEL:
            raise source.error(
                source.line_of(None, key) if key not in SECTIONS else 1,
                f"unknown top-level key {key!r}; a suite has [defaults], [grid], [[runs]] "
                "and optionally name and description",
            )
        if key in ("name", "description") and not isinstance(value, str):
            raise source.error(source.line_of(None, key), f"{key} must be a string")
    if "defaults" in doc and not isinstance(doc["defaults"], dict):
        raise source.error(source.line_of(None, "defaults"), "defaults must be a table")
    if "grid" in doc:
        if not isinstance(doc["grid"], dict):
            raise source.error(source.line_of(None, "grid"), "grid must be a table")
        if not doc["grid"]:
            raise source.error(
                source.line_of("grid"),
                "[grid] is empty: give it lists to sweep (e.g. seed = [0, 1]) or leave it out",
            )
    runs = doc.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise source.error(source.line_of(None, "runs"), "runs must be written as [[runs]] tables")
    if "grid" not in doc and not runs:
        raise source.error(1, "the suite sweeps nothing: add a [grid] table or [[runs]] entries")
    _check_keys(source, doc)


def _check_keys(source: SuiteSource, doc: dict) -> None:
    kinds = _field_types()
    known = ", ".join(kinds)
    tables = [(("defaults", 0), doc.get("defaults", {})), (("grid", 0), doc.get("grid", {}))]
    tables += [(("runs", i), run) for i, run in enumerate(doc.get("runs", []))]
    for block, table in tables:
        section, index = block
        for key, value in table.items():
            line = source.line_of(section, key, index)
            where = source.where(block)
            if key not in kinds:
                raise source.error(line, f"unknown key {key!r} in {where}; known: {known}")
            if section == "grid" and not isinstance(value, list):
                raise source.error(
                    line, f"{key!r} in [grid] must be a list of values, got {_describe(value)}"
                )
            values = value if isinstance(value, list) and section != "defaults" else [value]
            if not values:
                raise source.error(line, f"{key!r} in {where} is an empty list: nothing to sweep")
            for v in values:
                if not _type_ok(kinds[key], v):
                    raise source.error(
                        line,
                        f"{key!r} in {where} must be {_TYPE_WORDS[kinds[key]]}, got {_describe(v)}",
                    )
                _check_value(source, line, where, key, v)


def _check_value(source, line, where, key, value) -> None:
    """One value on its own, against RunConfig's rules, so the error can name its line."""
    from ..config import RunConfig

    if key in ("model_options", "task_options"):
        return  # depends on the model or task: checked with them (RunConfig, check_models)
    try:
        RunConfig(**{key: value}).validated(whole=False)
    except ConfigError as e:
        raise source.error(line, f"{key!r} in {where}: {e}") from None
    except ImportError as e:
        raise source.error(
            line, f"{key!r} in {where}: {value!r} is not available here ({e})"
        ) from None


def check_models(source: SuiteSource, doc: dict, configs, origins: dict) -> None:
    """Build each distinct model once at a tiny size: bad model_options fail here, not mid-sweep."""
    from ..models import MODELS, build_model
    from ..results import run_id

    checked = set()
    for cfg in configs:
        opts = MODELS[cfg.model].options_for(cfg)
        key = (cfg.model, cfg.num_layers, cfg.bidirectional, json.dumps(opts, sort_keys=True))
        if key in checked:
            continue
        checked.add(key)
        try:
            build_model(
                cfg.model,
                1,
                4,
                num_layers=cfg.num_layers,
                bidirectional=cfg.bidirectional,
                dtype=cfg.dtype,
                backend="numpy",
                seed=0,
                **opts,
            )
        except (ConfigError, ImportError, TypeError) as e:
            block = origins[run_id(cfg.identity())]
            line = key_line(source, doc, block, "model_options")
            where = source.where(block)
            raise source.error(line, f"model {cfg.model!r} in {where}: {e}") from None


def key_line(source: SuiteSource, doc: dict, block: tuple, key: str) -> int:
    """``key``'s line in the block, else in [grid], else in [defaults], else the block's
    header."""
    section, index = block
    table = doc["runs"][index] if section == "runs" else doc.get(section, {})
    if key in table:
        return source.line_of(section, key, index)
    if section == "runs" and key in doc.get("grid", {}):
        return source.line_of("grid", key)
    if key in doc.get("defaults", {}):
        return source.line_of("defaults", key)
    return source.line_of(section, None, index)


def key_of_error(message: str, entry: dict) -> str | None:
    """The entry's key a RunConfig error is about, to point at its line (None: unknown)."""
    for owner in ("model", "task"):
        if message.startswith(f"{owner} ") and " option" in message:
            return f"{owner}_options"
    return next((k for k in entry if message.startswith((f"{k}=", f"{k} "))), None)
