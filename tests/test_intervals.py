"""The 95% intervals of the report (bn_lab.report.intervals) against known values."""

import math
import statistics

import pytest

from bn_lab.report import intervals


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        (4, 5, 0.3755, 0.9638),  # Wilson 1927; e.g. Brown, Cai & DasGupta 2001's tables
        (0, 5, 0.0, 0.4345),
        (5, 5, 0.5655, 1.0),
        (10, 20, 0.2993, 0.7007),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_known_values(successes, n, low, high):
    found = intervals.wilson(successes, n)
    assert found == pytest.approx((low, high), abs=5e-5)


def test_wilson_of_no_trials_is_none_and_its_bounds_stay_in_zero_one():
    assert intervals.wilson(0, 0) is None
    for n in range(1, 40):
        for k in range(n + 1):
            low, high = intervals.wilson(k, n)
            assert 0 <= low <= k / n <= high <= 1


def test_t_quantiles_are_students():
    assert intervals.t_975(4) == 2.7764 and intervals.t_975(1) == 12.7062
    for df, quantile in ((40, 2.0211), (60, 2.0003), (120, 1.9799)):  # t tables
        assert intervals.t_975(df) == pytest.approx(quantile, abs=2e-4)


def test_paired_t_interval_is_mean_plus_minus_t_times_the_standard_error():
    differences = [0.031, 0.036, 0.033, 0.038, 0.032]
    low, high = intervals.t_interval(differences)
    half = 2.7764 * statistics.stdev(differences) / math.sqrt(5)
    assert (low, high) == pytest.approx((statistics.mean(differences) - half, statistics.mean(differences) + half))
    assert intervals.t_interval([0.1]) is None and intervals.t_interval([]) is None
    assert intervals.uplift_text(differences) == f"{low:+.4f} to {high:+.4f}"
    assert intervals.rate_text(4, 5) == "4/5 (0.38-0.96)" and intervals.rate_text(0, 0) == "—"


def test_an_accuracy_uplift_is_clipped_to_what_it_can_be_and_a_two_seed_interval_says_so():
    # The README's old example: two seeds, +0.78 ± 0.04 spread: t(1) = 12.7 makes it +0.41 to +1.15.
    two = [0.7497, 0.8083]
    low, high = intervals.t_interval(two)
    assert high > 1  # beyond what a difference of accuracies can be
    assert intervals.uplift_text(two, bounds=intervals.ACCURACY_DIFFERENCE) == f"{low:+.4f} to +1.0000 (clipped, n=2)"
    assert intervals.uplift_text(two) == f"{low:+.4f} to {high:+.4f} (n=2)"
    three = [0.1, 0.2, 0.15]
    assert "(" not in intervals.uplift_text(three, bounds=intervals.ACCURACY_DIFFERENCE)
    assert intervals.uplift_text([-0.99, -0.2, -0.98], bounds=intervals.ACCURACY_DIFFERENCE).startswith("-1.0000 to ")
