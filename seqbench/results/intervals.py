"""Means over seeds with a 95% t interval, and how a table cell shows them.

Seeds are draws; a cell that averages n of them shows n, the mean and the two-sided Student t
interval mean ± t(1 - (1 - level)/2, n - 1) · s / sqrt(n), with s the sample standard
deviation (ddof=1). One seed has no interval: the cell shows the value alone, never a made-up
width. Non-finite values (a diverged run's missing loss) are left out of n; callers count them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
CAPTION = "mean [95% t interval over seeds]; n=1: the value alone, no interval"


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    low: float  # NaN when n < 2
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The two-sided t critical value for n values (n - 1 degrees of freedom)."""
    from scipy.stats import t  # imported late: the CLI starts without scipy

    return float(t.ppf(1 - (1 - level) / 2, n - 1))


def t_interval(values, level: float = LEVEL) -> Interval:
    """Mean and two-sided t interval of the finite ``values``."""
    x = np.asarray(pd_float(values), dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(1, mean, math.nan, math.nan)
    half = t_quantile(n, level) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


def pd_float(values):
    """A list, array or pandas Series (nullable dtypes included) as float64 with NaN gaps."""
    to_numpy = getattr(values, "to_numpy", None)
    if to_numpy is not None:
        return to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def fmt(value: float, digits: int = 3) -> str:
    """3 significant digits, no exponent for large numbers, '–' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def fmt_interval(iv: Interval, digits: int = 3) -> str:
    """'0.53 [0.41, 0.65]', or '0.53' for one value, or '–' for none."""
    if iv.n == 0:
        return "–"
    if iv.n == 1:
        return fmt(iv.mean, digits)
    return f"{fmt(iv.mean, digits)} [{fmt(iv.low, digits)}, {fmt(iv.high, digits)}]"
