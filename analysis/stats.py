"""Statistics over training seeds: mean, sd and 95% Student-t interval; paired and unpaired
comparisons; Kendall's tau between rankings; the text a table cell shows for each.

Every estimate carries n. With n < 2 there is no spread and no interval (sd, lo and hi are NaN) and
`describe_text` says "n = 1" in the cell instead of pretending to an interval. Values that are the same
on every seed (the FLOPs of a static network) have sd 0 and a zero-width interval, and a comparison of
two such values is exact: its p-value is 0 when they differ and 1 when they are equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
NAN = math.nan


@dataclass(frozen=True)
class Estimate:
    """A mean over n seeds with its sd and 95% interval [lo, hi]; p: two-sided p-value of "the
    effect is 0" (comparisons only)."""

    n: int
    mean: float = NAN
    sd: float = NAN
    lo: float = NAN
    hi: float = NAN
    p: float = NAN

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and not math.isnan(self.lo)


def _finite(values) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    return array[np.isfinite(array)]


def _constant(values: np.ndarray) -> bool:
    """No spread beyond rounding (float sums of equal FLOPs differ in the last bits)."""
    return bool(np.ptp(values) <= 1e-9 * max(1.0, float(np.max(np.abs(values)))))


def _t_estimate(values: np.ndarray) -> Estimate:
    """Mean, sd, Student-t interval and the one-sample t-test p-value (effect = 0) of finite values."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return Estimate(0)
    mean = float(np.mean(values))
    if n == 1:
        return Estimate(1, mean)
    if _constant(values):
        return Estimate(n, mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0)
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_1samp(values, 0.0).pvalue)
    return Estimate(n, mean, sd, mean - half, mean + half, p)


def describe(values) -> Estimate:
    """Mean, sample sd (ddof 1) and 95% Student-t interval of the finite values (NaNs dropped)."""
    estimate = _t_estimate(_finite(values))
    return Estimate(estimate.n, estimate.mean, estimate.sd, estimate.lo, estimate.hi)


def paired(a: dict, b: dict) -> Estimate:
    """a - b over the seeds both have ({seed: value}): mean difference, its interval and the paired
    t-test's p-value (scipy.stats.ttest_rel is the same test as a one-sample test on the differences)."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    return _t_estimate(np.asarray([a[s] - b[s] for s in seeds], dtype=float))


def paired_ratio(a: dict, b: dict) -> Estimate:
    """a / b per seed over the seeds both have, then mean and interval of the ratios; p tests ratio = 1."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]) and b[s] != 0)
    ratios = np.asarray([a[s] / b[s] for s in seeds], dtype=float)
    shifted = _t_estimate(ratios - 1.0)
    if shifted.n == 0:
        return shifted
    return Estimate(shifted.n, shifted.mean + 1, shifted.sd, shifted.lo + 1, shifted.hi + 1, shifted.p)


def welch(a, b) -> Estimate:
    """mean(a) - mean(b) of two independent samples (Welch's t-test, unequal variances: no single sd,
    so sd is NaN); n is the smaller sample's size, so n < 2 means "not enough seeds" for either side."""
    from scipy import stats

    a, b = _finite(a), _finite(b)
    n = min(len(a), len(b))
    if n == 0:
        return Estimate(0)
    diff = float(np.mean(a) - np.mean(b))
    if n == 1:
        return Estimate(1, diff)
    if _constant(a) and _constant(b):
        return Estimate(n, diff, 0.0, diff, diff, 1.0 if diff == 0 else 0.0)
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Estimate(n, diff, NAN, float(interval.low), float(interval.high), float(result.pvalue))


def kendall(x, y) -> tuple[float, float, int]:
    """Kendall's tau-b between two rankings (pairs with a NaN dropped) and its p-value, with the
    number of items; NaN when fewer than 2 items or one side is constant."""
    from scipy import stats

    pairs = [(float(u), float(v)) for u, v in zip(x, y) if math.isfinite(float(u)) and math.isfinite(float(v))]
    if len(pairs) < 2 or len({u for u, _ in pairs}) < 2 or len({v for _, v in pairs}) < 2:
        return NAN, NAN, len(pairs)
    result = stats.kendalltau([u for u, _ in pairs], [v for _, v in pairs])
    return float(result.statistic), float(result.pvalue), len(pairs)


def inside(estimate: Estimate, value: float) -> bool | None:
    """Whether a value lies inside the estimate's 95% interval; None without an interval."""
    if not estimate.has_interval or not math.isfinite(value):
        return None
    slack = 1e-9 * max(1.0, abs(value))  # a mean of equal floats can differ from them in the last bit
    return estimate.lo - slack <= value <= estimate.hi + slack


def number(value: float, digits: int | None = None) -> str:
    """A figure as a table prints it: 1 decimal from 100, else 2, small values to 3 significant digits."""
    if value is None or not math.isfinite(value):
        return ""
    if digits is not None:
        return f"{value:.{digits}f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def describe_text(estimate: Estimate, signed: bool = False) -> str:
    """'mean ± sd [lo, hi]' for n >= 2, 'value (n = 1)' for one seed, '' for none."""
    if estimate.n == 0 or not math.isfinite(estimate.mean):
        return ""
    mean = number(estimate.mean)
    if signed and estimate.mean > 0:
        mean = "+" + mean
    if estimate.n < 2:
        return f"{mean} (n = 1)"
    return f"{mean} ± {number(estimate.sd)} [{number(estimate.lo)}, {number(estimate.hi)}]"


def comparison_text(estimate: Estimate) -> str:
    """'+25.00 [20.10, 29.90], p = 0.003' for n >= 2, '+25.00 (n = 1)' for one pair."""
    if estimate.n == 0 or not math.isfinite(estimate.mean):
        return ""
    mean = ("+" if estimate.mean > 0 else "") + number(estimate.mean)
    if estimate.n < 2:
        return f"{mean} (n = 1)"
    return f"{mean} [{number(estimate.lo)}, {number(estimate.hi)}], {p_clause(estimate.p)}"


def p_text(p: float) -> str:
    if not math.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float) -> str:
    """'p = 0.063', 'p < 0.001', '' without a p-value."""
    text = p_text(p)
    return "" if not text else f"p {text}" if text.startswith("<") else f"p = {text}"
