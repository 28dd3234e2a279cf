"""Tests for the power arithmetic of pgrpo.stats: the minimum detectable difference of a
paired design and the seeds a target interval needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgrpo.stats import (
    Interval,
    mean_ci95,
    minimum_detectable_difference,
    p_value,
    paired_power,
    seeds_for_half_width,
    t_quantile,
)


def _interval(sd: float, n: int) -> Interval:
    return Interval(0.0, t_quantile(n) * sd / math.sqrt(n), n)


# Effect sizes d (in units of the sd) of a two-sided one-sample t-test at 0.05 with 80% power,
# as R's pwr.t.test(n = n, power = 0.8, type = "one.sample") gives them.
PWR_T_TEST = {3: 3.2642, 5: 1.6839, 10: 0.9962, 20: 0.6604}


@pytest.mark.parametrize(("n", "d"), PWR_T_TEST.items())
def test_the_minimum_detectable_difference_matches_known_power_tables(n, d):
    assert minimum_detectable_difference(_interval(0.05, n)) == pytest.approx(d * 0.05, rel=2e-3)


@pytest.mark.parametrize("n", [2, 3, 7, 50, 400])
def test_the_test_has_80_percent_power_at_the_mdd_and_tends_to_the_normal_value(n):
    mdd = minimum_detectable_difference(_interval(1.0, n))
    assert paired_power(mdd, 1.0, n) == pytest.approx(0.8, abs=1e-6)
    assert paired_power(0.0, 1.0, n) == pytest.approx(0.05, abs=1e-9)  # the test's level
    normal = 2.8016 / math.sqrt(n)  # (z_0.975 + z_0.8) sd / sqrt(n)
    assert mdd > normal and (n < 400 or mdd == pytest.approx(normal, rel=5e-3))


def test_power_by_simulation():
    """A t-test on simulated paired differences rejects about 80% of the time at the MDD."""
    from scipy import stats

    rng = np.random.default_rng(0)
    n, sd = 5, 0.03
    mdd = minimum_detectable_difference(_interval(sd, n))
    draws = rng.normal(mdd, sd, size=(20000, n))
    rejected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)  # 4 binomial sd of 20000 draws


@pytest.mark.parametrize("values", [[0.01, -0.02, 0.03], [0.02, 0.03, 0.025], [0.1, 0.3, 0.2, 0.6]])
def test_the_p_value_is_the_paired_t_tests(values):
    """The p-value recovered from an interval is scipy's one-sample t-test on the values."""
    from scipy import stats

    expected = stats.ttest_1samp(values, 0.0).pvalue
    assert p_value(mean_ci95(values)) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(p_value(Interval(0.1, math.nan, 1)))
    assert p_value(mean_ci95([0.0, 0.0, 0.0])) == 1.0


def test_seeds_for_a_target_half_width():
    interval = mean_ci95([0.01, -0.02, 0.03])  # sd 0.025
    n = seeds_for_half_width(interval, 0.03)
    sd = 0.025
    assert t_quantile(n) * sd / math.sqrt(n) <= 0.03 < t_quantile(n - 1) * sd / math.sqrt(n - 1)
    assert seeds_for_half_width(Interval(0.1, math.nan, 1), 0.03) is None
    assert math.isnan(minimum_detectable_difference(Interval(0.1, math.nan, 1)))
    assert minimum_detectable_difference(mean_ci95([0.1, 0.1, 0.1])) == pytest.approx(0, abs=1e-12)
