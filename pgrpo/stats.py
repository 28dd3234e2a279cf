"""Means and 95% intervals over seeds, and the paired P-GRPO - GRPO difference.

Every cell of the paper's tables and figures is the mean over training seeds with a
two-sided 95% Student-t interval: ``ci95 = t(0.975, n - 1) * s / sqrt(n)``, ``s`` the sample
standard deviation (``ddof=1``). With one value (the base model: greedy decoding, no seed)
the interval is undefined: ``ci95`` is NaN and tables print it as ``-``.

A difference comes with the *minimum detectable difference* (MDD) of its design: the
smallest true difference that a two-sided paired t-test at level 0.05 would detect with 80%
power, given the number of seeds and the observed spread of the per-seed differences
(:func:`minimum_detectable_difference`, exact with the noncentral t distribution). An
interval that contains 0 says "no difference larger than about the MDD", not "no
difference"; :func:`seeds_for_half_width` says how many seeds a narrower interval needs.

The difference of two methods is paired by seed (seed ``s`` of P-GRPO against seed ``s`` of
GRPO: same prompts sampled in the same order, same LoRA initialisation), so its interval is
the interval of the per-seed differences. An interval containing 0 means the seeds cannot
tell the methods apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from pgrpo.io import PgrpoError


@dataclass(frozen=True)
class Interval:
    mean: float
    ci95: float  # half-width; NaN with fewer than two values
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    @property
    def defined(self) -> bool:
        """An interval from at least two values (a spread, and so a test, exist)."""
        return not math.isnan(self.ci95) and self.n >= 2

    def overlaps_zero(self) -> bool:
        """True when 0 lies inside the interval (or the interval is undefined)."""
        return math.isnan(self.ci95) or self.low <= 0.0 <= self.high


def t_quantile(n: int) -> float:
    """The 0.975 quantile of Student's t with ``n - 1`` degrees of freedom."""
    return float(stats.t.ppf(0.975, n - 1))


def mean_ci95(values: Iterable[float]) -> Interval:
    """Mean and 95% t-interval half-width of ``values`` (NaN values are an error)."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise PgrpoError("no values to average (a table cell without any run)")
    if np.isnan(x).any():
        raise PgrpoError(f"a table cell has a missing (NaN) value among {x.tolist()}")
    if x.size == 1:
        return Interval(float(x[0]), math.nan, 1)
    half = t_quantile(x.size) * x.std(ddof=1) / math.sqrt(x.size)
    return Interval(float(x.mean()), float(half), int(x.size))


def paired_difference(first: dict, second: dict) -> Interval:
    """Interval of ``first[s] - second[s]`` over the seeds ``s`` both have.

    ``first`` and ``second`` map seed -> value; seeds present in only one are an error (a
    missing run would silently unpair the comparison)."""
    if first.keys() != second.keys():
        only = sorted(set(first) ^ set(second), key=str)
        raise PgrpoError(f"paired difference: seeds {only} are missing on one side")
    return mean_ci95(first[s] - second[s] for s in sorted(first, key=str))


def format_cell(interval: Interval, digits: int = 3) -> str:
    """``mean ± ci95`` (just the mean when the interval is undefined)."""
    if math.isnan(interval.ci95):
        return f"{interval.mean:.{digits}f}"
    return f"{interval.mean:.{digits}f} ± {interval.ci95:.{digits}f}"


def standard_error(interval: Interval) -> float:
    """The standard error of the mean behind an interval's half-width."""
    return interval.ci95 / t_quantile(interval.n)


def spread(interval: Interval) -> float:
    """The sample standard deviation behind an interval's half-width: for a paired
    difference, the seed-to-seed spread of the differences (NaN when undefined)."""
    return standard_error(interval) * math.sqrt(interval.n)


def p_value(interval: Interval) -> float:
    """Two-sided p-value of the paired t-test of mean 0 behind an interval (the one-sample t
    test on the per-seed differences); NaN when the interval is undefined."""
    if not interval.defined:
        return math.nan
    if interval.ci95 == 0:
        return 1.0 if interval.mean == 0 else 0.0
    t = interval.mean / standard_error(interval)
    return float(2 * stats.t.sf(abs(t), interval.n - 1))


def paired_power(difference: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample (paired) t-test at level ``alpha`` with ``n``
    differences of standard deviation ``sd`` when the true mean difference is ``difference``."""
    df, shift = n - 1, difference * math.sqrt(n) / sd
    critical = stats.t.ppf(1 - alpha / 2, df)
    # The lower tail by symmetry, P(T < -c | shift) = P(T > c | -shift): scipy's cdf there
    # returns NaN for some shifts with few degrees of freedom.
    return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift))


def minimum_detectable_difference(interval: Interval, power: float = 0.8) -> float:
    """The smallest true difference detected with ``power`` by a two-sided paired t-test at
    0.05 with the interval's seeds and spread; NaN when the interval is undefined."""
    if not interval.defined:
        return math.nan
    sd = spread(interval)
    if sd == 0:
        return 0.0
    high = 4 * sd / math.sqrt(interval.n)  # the normal approximation gives 2.8 sd / sqrt(n)
    while paired_power(high, sd, interval.n) < power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, sd, interval.n) - power, 0, high))


def seeds_for_half_width(interval: Interval, half_width: float) -> int | None:
    """Seeds whose 95% interval would have ``half_width`` at the interval's spread (None when
    the spread is undefined)."""
    if not interval.defined:
        return None
    sd, n = spread(interval), 2
    while t_quantile(n) * sd / math.sqrt(n) > half_width:
        n += 1
    return n
