"""analysis.stats on small inputs whose answers are worked out by hand (t quantiles from tables:
t(0.975, 1) = 12.706, t(0.975, 2) = 4.3027, t(0.975, 4) = 2.7764)."""
import math

import pytest

from analysis import stats


def test_describe_three_seeds():
    est = stats.describe([10.0, 12.0, 14.0])
    # mean 12, sd 2, half-width 4.3027 * 2 / sqrt(3) = 4.968
    assert (est.n, est.mean, est.sd) == (3, 12.0, 2.0)
    assert est.lo == pytest.approx(7.032, abs=1e-3) and est.hi == pytest.approx(16.968, abs=1e-3)
    assert stats.describe_text(est) == "12.00 ± 2.00 [7.03, 16.97]"


def test_describe_one_seed_says_so_and_none_is_empty():
    est = stats.describe([5.0, math.nan])
    assert est.n == 1 and est.mean == 5.0 and math.isnan(est.sd) and not est.has_interval
    assert stats.describe_text(est) == "5.00 (n = 1)"
    assert stats.describe([]).n == 0 and stats.describe_text(stats.describe([])) == ""


def test_describe_constant_values_have_a_zero_width_interval():
    est = stats.describe([3.0, 3.0, 3.0])
    assert (est.sd, est.lo, est.hi) == (0.0, 3.0, 3.0)


def test_paired_difference_interval_and_p():
    # differences 2, 3, 5 (seed 3 of a has no partner and is ignored): mean 3.333, sd 1.528, se 0.882,
    # t = 3.780 on 2 df; for 2 df, P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2)) -> p = 2 (1 - 0.9683) = 0.0634
    est = stats.paired({0: 10.0, 1: 12.0, 2: 17.0, 3: 99.0}, {0: 8.0, 1: 9.0, 2: 12.0})
    assert est.n == 3 and est.mean == pytest.approx(10 / 3)
    assert est.sd == pytest.approx(1.5275, abs=1e-4)
    assert est.lo == pytest.approx(-0.461, abs=1e-3) and est.hi == pytest.approx(7.128, abs=1e-3)
    assert est.p == pytest.approx(0.0634, abs=1e-3)
    assert stats.comparison_text(est) == "+3.33 [-0.46, 7.13], p = 0.063"


def test_paired_exact_difference_and_ratio():
    exact = stats.paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert (exact.mean, exact.lo, exact.hi, exact.p) == (1.0, 1.0, 1.0, 0.0)
    # ratios 0.5 and 0.75: mean 0.625, sd 0.1768, half-width 12.706 * 0.1768 / sqrt(2) = 1.588
    ratio = stats.paired_ratio({0: 2.0, 1: 3.0}, {0: 4.0, 1: 4.0})
    assert ratio.mean == pytest.approx(0.625)
    assert ratio.lo == pytest.approx(-0.963, abs=1e-3) and ratio.hi == pytest.approx(2.213, abs=1e-3)
    assert stats.paired_ratio({0: 2.0}, {1: 4.0}).n == 0


def test_welch_unpaired():
    # var 1 and 7/3: se = sqrt(1/3 + 7/9) = 1.054, t = -4.111, Welch df = 1.2346 / (0.0556 + 0.3025) = 3.448
    est = stats.welch([1.0, 2.0, 3.0], [5.0, 6.0, 8.0])
    assert est.mean == pytest.approx(-13 / 3)
    assert est.lo == pytest.approx(-7.454, abs=1e-3) and est.hi == pytest.approx(-1.212, abs=1e-3)
    assert est.p == pytest.approx(0.0199, abs=1e-3)
    assert stats.welch([1.0], [2.0, 3.0]).n == 1


def test_kendall_tau_by_hand():
    # pairs of (1,10) (2,30) (3,20) (4,40): 5 concordant, 1 discordant -> tau = 4/6; exact p: of the 24
    # orderings, 4 have <= 1 inversion and 4 have >= 5 -> 8/24
    tau, p, n = stats.kendall([1, 2, 3, 4], [10, 30, 20, 40])
    assert tau == pytest.approx(2 / 3) and p == pytest.approx(1 / 3) and n == 4
    assert stats.kendall([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(stats.kendall([1, 2], [5, 5])[0]) and math.isnan(stats.kendall([1], [2])[0])


def test_published_inside_interval():
    est = stats.describe([10.0, 12.0, 14.0])          # [7.03, 16.97]
    assert stats.inside(est, 14.8) is True
    assert stats.inside(est, 20.0) is False
    assert stats.inside(stats.describe([12.0]), 12.0) is None   # one seed: no interval, no verdict
