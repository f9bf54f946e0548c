"""Thompson allocation: posterior probability of being best (checked by integration), floors."""

from __future__ import annotations

import math

import pytest
from scipy import integrate
from scipy import stats as sps

from closeloop.stats.bandit import (
    MIN_VARIANT_SHARE,
    AllocationCode,
    floor_shares,
    probability_best,
    thompson_allocation,
)
from closeloop.stats.statistics import ProportionStatistic as Arm


def _exact_second_is_best(first: Arm, second: Arm) -> float:
    """P(p2 > p1) for independent Beta posteriors, by numerical integration."""
    a = sps.beta(1 + first.successes, 1 + first.n - first.successes)
    b = sps.beta(1 + second.successes, 1 + second.n - second.successes)
    value, _ = integrate.quad(lambda x: b.pdf(x) * a.cdf(x), 0, 1, limit=200)
    return float(value)


@pytest.mark.parametrize(
    ("first", "second"),
    [(Arm(20, 5), Arm(20, 8)), (Arm(200, 30), Arm(180, 30)), (Arm(10, 0), Arm(3, 1))],
)
def test_monte_carlo_matches_numerical_integration(first: Arm, second: Arm) -> None:
    estimate = probability_best([first, second], seed=11, draws=200_000)
    exact = _exact_second_is_best(first, second)
    # 200k draws: the Monte Carlo standard error is at most 0.0012; allow four of them.
    assert estimate[1] == pytest.approx(exact, abs=0.005)
    assert math.fsum(estimate) == pytest.approx(1.0)


def test_a_clearly_better_arm_gets_most_of_the_allocation() -> None:
    result = thompson_allocation([Arm(500, 50), Arm(500, 100), Arm(500, 55)], seed=3)
    assert result.code == AllocationCode.POSTERIOR
    assert result.shares[1] > 0.85
    assert result.shares[0] == pytest.approx(MIN_VARIANT_SHARE)
    assert math.fsum(result.shares) == pytest.approx(1.0)


def test_equal_arms_stay_near_equal() -> None:
    result = thompson_allocation([Arm(1000, 200), Arm(1000, 200)], seed=5)
    assert result.shares[0] == pytest.approx(0.5, abs=0.02)


def test_no_data_splits_equally_and_says_so() -> None:
    result = thompson_allocation([Arm(0, 0), Arm(0, 0), Arm(0, 0)], seed=1)
    assert result.code == AllocationCode.NO_DATA
    assert result.shares == pytest.approx((1 / 3,) * 3)


def test_floors_are_respected_and_keep_the_others_ratio() -> None:
    shares = floor_shares([0.9, 0.06, 0.03, 0.01], 0.05)
    assert min(shares) >= 0.05 - 1e-12
    assert math.fsum(shares) == pytest.approx(1.0)
    assert shares[2] == shares[3] == pytest.approx(0.05)
    # Raising two arms to the floor must not push the third under it.
    assert shares[1] >= 0.05
    assert shares[0] / shares[1] == pytest.approx(0.9 / 0.06)


def test_a_floor_too_high_for_the_arms_becomes_an_equal_split() -> None:
    arms = [Arm(100, 10 + i) for i in range(25)]
    result = thompson_allocation(arms, seed=2)
    assert result.minimum_share == pytest.approx(1 / 25)
    assert result.shares == pytest.approx((1 / 25,) * 25)
    with pytest.raises(ValueError, match="at most 1/25"):
        floor_shares([1.0] * 25, 0.05)


def test_deterministic_with_a_seed() -> None:
    arms = [Arm(40, 6), Arm(40, 9)]
    assert thompson_allocation(arms, seed=42) == thompson_allocation(arms, seed=42)
    assert probability_best(arms, seed=42) != probability_best(arms, seed=43)


def test_programming_errors_raise() -> None:
    with pytest.raises(ValueError, match="at least two"):
        thompson_allocation([Arm(10, 1)], seed=0)
    with pytest.raises(ValueError, match="between 0 and n"):
        probability_best([Arm(10, 11), Arm(10, 1)], seed=0)
