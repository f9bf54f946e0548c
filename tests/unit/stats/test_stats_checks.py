"""SRM, multiple testing, power and NPS against scipy/statsmodels, and the modules' doctests."""

from __future__ import annotations

import doctest
import importlib
import math
import pkgutil

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

import closeloop.stats
from closeloop.stats import (
    adjust_p_values,
    minimum_detectable_effect,
    nps,
    nps_from_scores,
    required_sample_size,
    srm_test,
)

MODULES = sorted(
    f"closeloop.stats.{module.name}" for module in pkgutil.iter_modules(closeloop.stats.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    failures, _ = doctest.testmod(importlib.import_module(name))
    assert failures == 0


def test_there_are_docstring_examples() -> None:
    assert doctest.testmod(importlib.import_module("closeloop.stats.checks")).attempted >= 2


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([480, 520], [0.5, 0.5]), ([700, 1000, 300], [0.3, 0.5, 0.2]), ([180, 820], [1, 4])],
)
def test_srm_equals_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    expected = [sum(observed) * w / sum(weights) for w in weights]
    reference = sps.chisquare(observed, expected)
    result = srm_test(observed, weights)
    assert result.chi2 == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.mismatch == (reference.pvalue < 0.001)


def test_srm_threshold_and_edges() -> None:
    skewed = srm_test([1000, 1100], [0.5, 0.5])
    assert 0.001 < skewed.p_value < 0.05
    assert not skewed.mismatch
    assert srm_test([1000, 1100], [0.5, 0.5], threshold=0.05).mismatch
    assert srm_test([0, 0], [0.8, 0.2]).mismatch is False
    # Units in an arm configured to receive none: the worst mismatch there is.
    leak = srm_test([990, 10], [1.0, 0.0])
    assert leak.mismatch and leak.p_value == 0.0 and leak.chi2 == math.inf
    assert not srm_test([1000, 0], [1.0, 0.0]).mismatch
    with pytest.raises(ValueError, match="one weight per arm"):
        srm_test([10, 10], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        srm_test([10, 10], [1.0, -1.0])


@pytest.mark.parametrize(
    ("method", "statsmodels_method"),
    [("benjamini_hochberg", "fdr_bh"), ("holm", "holm"), ("bonferroni", "bonferroni")],
)
def test_adjust_p_values_is_statsmodels_in_input_order(
    method: str, statsmodels_method: str
) -> None:
    p_values = np.random.default_rng(9).uniform(0, 0.2, 12)
    _, expected, _, _ = multipletests(p_values, method=statsmodels_method)
    adjusted = adjust_p_values(p_values.tolist(), method=method)
    assert adjusted == pytest.approx(expected.tolist())
    assert all(a >= p for a, p in zip(adjusted, p_values, strict=True))


def test_adjust_p_values_skips_untested_comparisons() -> None:
    """A NaN (insufficient data) stays NaN and does not dilute or poison the others."""
    adjusted = adjust_p_values([0.01, math.nan, 0.04, 0.03])
    assert math.isnan(adjusted[1])
    assert [adjusted[0], adjusted[2], adjusted[3]] == pytest.approx(
        list(adjust_p_values([0.01, 0.04, 0.03]))
    )
    assert all(math.isnan(p) for p in adjust_p_values([math.nan, math.nan], method="holm"))
    assert adjust_p_values([]) == ()
    assert adjust_p_values((0.3, 0.9), method="bonferroni") == (0.6, 1.0)


@pytest.mark.parametrize(("n_control", "n_treatment"), [(500, 500), (400, 1600), (2000, 8000)])
def test_minimum_detectable_effect_agrees_with_statsmodels(
    n_control: int, n_treatment: int
) -> None:
    baseline = 0.2
    effect_size = NormalIndPower().solve_power(
        nobs1=n_control, ratio=n_treatment / n_control, alpha=0.05, power=0.8
    )
    expected = effect_size * math.sqrt(baseline * (1 - baseline))
    # statsmodels also counts the (negligible) chance of rejecting in the wrong direction.
    assert minimum_detectable_effect(n_control, n_treatment, baseline) == pytest.approx(
        expected, rel=1e-3
    )


def test_minimum_detectable_effect_shrinks_with_sample_and_degenerates_to_nan() -> None:
    small = minimum_detectable_effect(200, 800, 0.3)
    large = minimum_detectable_effect(800, 3200, 0.3)
    assert large == pytest.approx(small / 2)
    assert minimum_detectable_effect(200, 800, 0.3, power=0.9) > small
    assert math.isnan(minimum_detectable_effect(0, 800, 0.3))
    assert math.isnan(minimum_detectable_effect(200, 800, 0.0))


@pytest.mark.parametrize("holdout_fraction", [0.1, 0.2, 0.5])
def test_required_sample_size_detects_the_effect(holdout_fraction: float) -> None:
    baseline, effect = 0.2, 0.03
    total = required_sample_size(baseline, effect, holdout_fraction=holdout_fraction)
    n_control = total * holdout_fraction
    n_treatment = total - n_control
    # The achieved power at that size, by the same normal approximation, is just above 80%.
    se = math.sqrt(
        baseline * (1 - baseline) / n_control
        + (baseline + effect) * (1 - baseline - effect) / n_treatment
    )
    achieved = sps.norm.sf(sps.norm.isf(0.025) - effect / se)
    assert 0.8 <= achieved < 0.801


def test_required_sample_size_rejects_impossible_plans() -> None:
    with pytest.raises(ValueError):
        required_sample_size(0.2, 0.0, holdout_fraction=0.2)
    with pytest.raises(ValueError):
        required_sample_size(0.2, 0.03, holdout_fraction=1.0)


def test_nps_standard_error_is_the_multinomial_one() -> None:
    scores = np.array([10, 9, 9, 8, 7, 6, 3, 10, 0, 9, 10, 2, 8, 9, 5])
    per_answer = 100.0 * ((scores >= 9).astype(float) - (scores <= 6).astype(float))
    result = nps_from_scores(scores.tolist(), alpha=0.1)
    assert result.score == pytest.approx(per_answer.mean())
    assert result.se == pytest.approx(per_answer.std(ddof=0) / math.sqrt(len(scores)))
    assert result.ci.width == pytest.approx(2 * sps.norm.isf(0.05) * result.se)
    assert result.n == len(scores)


def test_nps_edges() -> None:
    assert nps(10, 0, 0).score == 100.0
    assert nps(0, 0, 4).score == -100.0
    empty = nps(0, 0, 0)
    assert math.isnan(empty.score) and math.isnan(empty.se) and empty.n == 0
    with pytest.raises(ValueError, match="0–10"):
        nps_from_scores([3, 11])
