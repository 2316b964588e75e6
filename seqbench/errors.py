"""The one exception type for bad input, and the number checks that raise it; the CLI turns
it into one line and exit code 2."""

from __future__ import annotations

import math

import numpy as np


class ConfigError(ValueError):
    """Bad user input: the message says what is wrong and how to fix it."""


def check_number(name: str, value) -> float:
    """A finite real number (a bool is not one), as a float; ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(name: str, value) -> float:
    """A finite number > 0, as a float."""
    v = check_number(name, value)
    if v <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return v
