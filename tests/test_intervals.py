"""The 95% t interval over seeds, against numbers worked by hand from scipy.stats.t."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqbench.results.intervals import (
    Interval,
    fmt,
    fmt_interval,
    t_interval,
    t_quantile,
)


@pytest.mark.parametrize(
    "n, critical",  # t(0.975, n - 1), as printed in any t table
    [(2, 12.7062), (3, 4.3027), (5, 2.7764), (10, 2.2622), (30, 2.0452)],
)
def test_t_quantile_is_the_two_sided_95_percent_point(n, critical):
    assert t_quantile(n) == pytest.approx(critical, abs=1e-4)
    assert t_quantile(n) == pytest.approx(stats.t.ppf(0.975, n - 1), rel=1e-12)


def test_interval_of_five_values_by_hand():
    # 1..5: mean 3, s = sqrt(2.5) = 1.5811, s/sqrt(5) = 0.7071, half-width 2.7764 * 0.7071
    iv = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.n == 5 and iv.mean == 3.0
    assert iv.half_width == pytest.approx(1.9632, abs=1e-4)
    assert (iv.low, iv.high) == pytest.approx((1.0368, 4.9632), abs=1e-4)
    lo, hi = stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem([1, 2, 3, 4, 5]))
    assert (iv.low, iv.high) == pytest.approx((lo, hi), rel=1e-12)


def test_interval_of_two_values_by_hand():
    # 0.05 and 0.9: mean 0.475, s/sqrt(2) = 0.425, half-width 12.7062 * 0.425 = 5.4001
    iv = t_interval(pd.Series([0.05, 0.9]))
    assert iv.mean == pytest.approx(0.475)
    assert iv.half_width == pytest.approx(5.4001, abs=1e-4)
    assert fmt_interval(iv) == "0.475 [-4.93, 5.88]"


def test_one_value_has_no_interval_and_none_is_a_dash():
    iv = t_interval([0.53])
    assert iv.n == 1 and iv.mean == 0.53
    assert math.isnan(iv.low) and math.isnan(iv.high)
    assert fmt_interval(iv) == "0.53"  # never a made-up width
    assert fmt_interval(t_interval([])) == "–"


def test_missing_and_non_finite_values_are_left_out_of_n():
    values = pd.Series([1.0, None, 3.0, np.inf], dtype="Float64")
    iv = t_interval(values)
    assert iv.n == 2 and iv.mean == 2.0
    assert iv.half_width == pytest.approx(12.7062, abs=1e-4)  # s = sqrt(2), s/sqrt(2) = 1


def test_equal_values_give_a_zero_width_interval():
    iv = t_interval([0.25, 0.25, 0.25])  # exact in binary: the mean is 0.25 exactly
    assert iv == Interval(3, 0.25, 0.25, 0.25)


def test_numbers_as_text():
    assert fmt(1035.2) == "1035" and fmt(0.03379) == "0.0338" and fmt(math.nan) == "–"
    assert fmt(math.inf) == "inf"
