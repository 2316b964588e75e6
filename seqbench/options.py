"""Options of tasks and models, declared once: name, type, range, default and one line of help.

A task class or a model declares ``options = (Option(...), ...)``; the CLI (``--task-opt``,
``--model-opt``, ``seqbench list NAME``), suite files (``task_options``, ``model_options``)
and RunConfig.validated all read that declaration. Values arrive as Python values (a suite
file, the API) or as text (the CLI's KEY=VALUE); ``Option.check`` takes either and returns
the value in the declared type, or raises a one-line ConfigError naming the option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool"}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class Option:
    """One option. ``low``/``high`` bound numbers (inclusive unless ``low_open``);
    ``choices`` bound strings; a default of None means "chosen from other settings" (help
    says how) and None is then also accepted as a value."""

    name: str
    type: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.type is bool:
            return "true | false"
        if self.low is None and self.high is None:
            return "any"
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "(" if self.low_open or self.low is None else "["
        right = "]" if self.high is not None else ")"
        return f"{left}{lo}, {hi}{right}"

    def check(self, value, owner: str = ""):
        """``value`` (or its text) in the declared type, range-checked."""
        where = f"{owner} option {self.name!r}" if owner else f"option {self.name!r}"
        if isinstance(value, str) and self.type is not str:
            value = self._parse(value, where)
        if value is None:
            if self.default is None:
                return None
            raise ConfigError(f"{where} must be {self._kind()}, got None")
        if isinstance(value, str) and value.lower() in ("none", "null") and self.default is None:
            return None
        value = self._typed(value, where)
        self._in_range(value, where)
        return value

    # -- helpers

    def _kind(self) -> str:
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[
            self.type
        ]

    def _parse(self, text: str, where: str):
        t = text.strip()
        if t.lower() in ("none", "null") and self.default is None:
            return None
        if self.type is bool:
            if t.lower() in _TRUE:
                return True
            if t.lower() in _FALSE:
                return False
            raise ConfigError(f"{where} must be true or false, got {text!r}")
        try:
            return int(t) if self.type is int else float(t)
        except ValueError:
            raise ConfigError(f"{where} must be {self._kind()}, got {text!r}") from None

    def _typed(self, value, where: str):
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            and not _numpy_number(value)
        ):
            raise ConfigError(f"{where} must be {self._kind()}, got {value!r}")
        if self.type is int:
            if float(value) != int(value):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            return int(value)
        v = float(value)
        if not math.isfinite(v):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return v

    def _in_range(self, value, where: str) -> None:
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where} is {value!r}; use one of {', '.join(self.choices)}")
        if self.type in (int, float):
            too_low = self.low is not None and (
                value <= self.low if self.low_open else value < self.low
            )
            too_high = self.high is not None and value > self.high
            if too_low or too_high:
                raise ConfigError(f"{where} must be in {self.range_text()}, got {value!r}")


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _numpy_number(value) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, (np.integer, np.floating))


def check_options(declared, given: dict, owner: str) -> dict:
    """``given`` checked against ``declared``: each value in its declared type. Unknown names
    are an error naming the allowed ones; options not given are left out (their defaults are
    the owner's business, and a run's identity records only what was asked for)."""
    if not isinstance(given, dict):
        raise ConfigError(f"{owner} options must be a table of name = value, got {given!r}")
    by_name = {o.name: o for o in declared}
    out = {}
    for key, value in given.items():
        if key not in by_name:
            allowed = ", ".join(by_name) or "none"
            raise ConfigError(f"{owner} has no option {key!r}; its options: {allowed}")
        out[key] = by_name[key].check(value, owner)
    return out


def parse_assignments(items, flag: str) -> dict:
    """["KEY=VALUE", ...] -> {KEY: "VALUE"}; a missing '=', an empty key or a repeated key is
    a ConfigError naming ``flag``."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        if key in out:
            raise ConfigError(f"{flag} sets {key!r} twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def _default_text(o: Option) -> str:
    if o.default is None:
        return "none" if o.type is str else "auto"
    return str(o.default).lower() if o.type is bool else str(o.default)


def describe(declared) -> list[str]:
    """Lines of a table of the options: name, type, range, default, help."""
    if not declared:
        return ["  (no options)"]
    rows = [("name", "type", "range", "default", "help")]
    rows += [
        (
            o.name,
            _TYPE_NAMES[o.type],
            o.range_text(),
            _default_text(o),
            o.help,
        )
        for o in declared
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
