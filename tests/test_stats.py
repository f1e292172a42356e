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


def test_constant_means_equal_up_to_rounding_relative_to_the_values():
    # the last-bit spread of a sum of equal FLOPs is no spread; a real one is, however large the values
    assert stats.paired({0: 1e6 + 1e-4, 1: 1e6}, {0: 0.0, 1: 0.0}).sd == 0.0   # 1e-10 of the values
    assert stats.paired({0: 0.5 + 1.5e-9, 1: 0.5}, {0: 0.0, 1: 0.0}).sd > 0     # 1.5e-9 of max(1, 0.5)
    assert stats.paired({0: 1e-9, 1: 0.0}, {0: 0.0, 1: 0.0}).sd == 0.0          # a spread of 1e-9 x max(1, .) is none
    same = stats.paired({0: 4.0, 1: 5.0}, {0: 4.0, 1: 5.0})
    assert (same.n, same.mean, same.sd, same.lo, same.hi, same.p) == (2, 0.0, 0.0, 0.0, 0.0, 1.0)


def test_paired_and_ratio_drop_seeds_without_both_values():
    est = stats.paired({0: 3.0, 1: math.nan, 2: 5.0}, {0: 1.0, 1: 2.0, 2: math.nan})
    assert (est.n, est.mean) == (1, 2.0)
    ratio = stats.paired_ratio({0: 3.0, 1: math.nan, 2: 5.0, 3: 2.0}, {0: 1.0, 1: 2.0, 2: 0.0, 3: math.nan})
    assert (ratio.n, ratio.mean) == (1, 3.0) and math.isnan(ratio.lo)
    # ratios 3 and 2 against b = 1 and 2 (b = 1 is a divisor like any other): mean 2.5, sd 0.7071
    both = stats.paired_ratio({0: 3.0, 1: 4.0}, {0: 1.0, 1: 2.0})
    assert (both.n, both.mean) == (2, 2.5) and both.sd == pytest.approx(math.sqrt(0.5))
    # t = 1.5 / (0.7071 / sqrt(2)) = 3 on 1 df: p = 1 - 2 atan(3) / pi = 0.2048
    assert both.p == pytest.approx(0.2048, abs=1e-4)


def test_welch_without_seeds_with_one_and_with_constant_sides():
    assert stats.welch([], [1.0]).n == 0 and math.isnan(stats.welch([], [1.0]).mean)
    one = stats.welch([4.0], [1.0, 2.0])
    assert (one.n, one.mean) == (1, 2.5) and not one.has_interval
    exact = stats.welch([3.0, 3.0], [1.0, 1.0, 1.0])
    assert (exact.n, exact.mean, exact.sd, exact.lo, exact.hi, exact.p) == (2, 2.0, 0.0, 2.0, 2.0, 0.0)
    equal = stats.welch([3.0, 3.0], [3.0, 3.0])
    assert (equal.mean, equal.p) == (0.0, 1.0)
    # one side constant: the other's spread alone, var 0.5, se = sqrt(0.5 / 2) = 0.5 on 1 df: 2 +- 12.706 * 0.5
    half = stats.welch([3.0, 3.0], [0.5, 1.5])
    assert half.lo == pytest.approx(2 - 6.353, abs=1e-3) and half.hi == pytest.approx(2 + 6.353, abs=1e-3)
    assert math.isnan(half.sd)


def test_welch_does_not_pool_the_variances():
    # var 2 (n 2) and 62.5 (n 5): se^2 = 2/2 + 62.5/5 = 13.5, Welch df = 13.5^2 / (1^2/1 + 12.5^2/4) = 4.549,
    # t(0.975, 4.549) = 2.649: half-width 9.73. Pooled: var 50.4, se 5.94 on 5 df (t 2.5706): 15.27
    est = stats.welch([1.0, 3.0], [-10.0, -5.0, 0.0, 5.0, 10.0])
    assert est.mean == 2.0 and est.hi - est.mean == pytest.approx(9.73, abs=0.01)


def test_kendall_drops_pairs_with_a_nan_and_needs_two_values_each_side():
    tau, _, n = stats.kendall([1, 2, math.nan, 3], [1, 2, 5, math.nan])
    assert n == 2 and tau == pytest.approx(1.0)          # two items are enough for a ranking
    assert math.isnan(stats.kendall([1, 1, 1], [1, 2, 3])[0])
    assert stats.kendall([1, 1, 2], [1, 2, 3])[0] == pytest.approx(math.sqrt(2 / 3))  # tau-b with one tie


def test_inside_includes_the_ends_and_scales_its_slack():
    est = stats.describe([10.0, 12.0, 14.0])
    assert stats.inside(est, est.lo) is True and stats.inside(est, est.hi) is True
    ends = stats.Estimate(3, 0.6, 0.1, 0.5, 0.7)
    assert stats.inside(ends, 0.5 - 1e-9) is True and stats.inside(ends, 0.7 + 1e-9) is True   # the slack itself
    big = stats.Estimate(3, 1e6 + 5e-4, 0.0, 1e6 + 5e-4, 1e6 + 5e-4)
    assert stats.inside(big, 1e6) is True                # 5e-10 of the value: rounding
    small = stats.Estimate(3, 0.5 + 1.5e-9, 0.0, 0.5 + 1.5e-9, 0.5 + 1.5e-9)
    assert stats.inside(small, 0.5) is False             # 1.5e-9 off, beyond 1e-9 x max(1, 0.5)


def test_numbers_and_texts_at_their_edges():
    assert [stats.number(v) for v in (100.0, 99.5, 0.01, 0.005, 0.0, math.nan)] == \
        ["100.0", "99.50", "0.01", "0.005", "0.00", ""]
    assert stats.describe_text(stats.Estimate(2, math.nan)) == ""
    assert stats.describe_text(stats.Estimate(1, 0.5), signed=True) == "+0.50 (n = 1)"
    assert stats.describe_text(stats.Estimate(1, 0.0), signed=True) == "0.00 (n = 1)"
    assert stats.comparison_text(stats.Estimate(2, math.nan)) == ""
    assert [stats.comparison_text(stats.Estimate(1, v)) for v in (0.5, 0.0, -0.5)] == \
        ["+0.50 (n = 1)", "0.00 (n = 1)", "-0.50 (n = 1)"]
    assert stats.comparison_text(stats.Estimate(0)) == ""
    assert [stats.p_text(p) for p in (0.001, 0.0009, math.nan)] == ["0.001", "< 0.001", ""]
    assert stats.p_clause(math.nan) == "" and stats.p_clause(0.0005) == "p < 0.001"
