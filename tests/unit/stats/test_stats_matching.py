"""Coarsened exact matching: bins, strata, CEM weights, the ATT and the balance table, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from closeloop.stats import SampleMeanStatistic, Status, welch_test
from closeloop.stats.matching import (
    MISSING_BIN,
    ArmSums,
    Covariate,
    Stratum,
    att_test,
    balance_table,
    cem_weights,
    cutpoints_of,
    match_counts,
    stratify,
    sturges_cutpoints,
)


@pytest.mark.parametrize("n", [2, 7, 8, 9, 100, 1000, 1024, 4097])
def test_sturges_cutpoints_match_numpy(n: int) -> None:
    values = np.random.default_rng(n).normal(size=n)
    expected = np.histogram_bin_edges(values, bins="sturges")[1:-1]
    assert cutpoints_of(values) == pytest.approx(tuple(expected))
    assert sturges_cutpoints(n, float(values.min()), float(values.max())) == pytest.approx(
        tuple(expected)
    )


def test_cutpoints_of_constant_or_tiny_inputs_are_one_bin() -> None:
    assert cutpoints_of([3.0, 3.0, 3.0]) == ()
    assert cutpoints_of([1.0]) == ()
    assert cutpoints_of([1.0, math.nan]) == ()


def test_coarsen_bins_at_or_above_each_cutpoint_and_missing_separately() -> None:
    covariate = Covariate("employees", (10.0, 100.0))
    assert covariate.coarsen([0, 9.99, 10, 99, 100, 5000, None, math.nan]) == [
        0,
        0,
        1,
        1,
        2,
        2,
        MISSING_BIN,
        MISSING_BIN,
    ]
    assert Covariate("one_bin", ()).coarsen([1, 2, 3]) == [0, 0, 0]
    assert Covariate("industry").coarsen(["saas", None]) == ["saas", None]


def test_cutpoints_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Covariate("seats", (3.0, 1.0))


def _example() -> list[Stratum]:
    # stratum a: 2 treated, 4 control; b: 1 treated, 1 control; c: treated only; d: control only
    keys = [("a",)] * 6 + [("b",)] * 2 + [("c",)] + [("d",)] * 3
    treated = [True, True, False, False, False, False, True, False, True, False, False, False]
    outcome = [1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1]
    return stratify(keys, treated, {"y": outcome})


def test_pruning_keeps_strata_with_both_arms() -> None:
    counts = match_counts(_example())
    assert (counts.treated_matched, counts.treated_pruned) == (3, 1)
    assert (counts.control_matched, counts.control_pruned) == (5, 3)
    assert (counts.strata, counts.matched_strata) == (4, 2)
    assert counts.treated_pruned_share == pytest.approx(0.25)


def test_cem_weights_by_hand() -> None:
    # N_T = 3, N_C = 5 matched; a: (2 / 4) * (5 / 3), b: (1 / 1) * (5 / 3)
    weights = cem_weights(_example())
    assert weights[("a",)] == pytest.approx(5 / 6)
    assert weights[("b",)] == pytest.approx(5 / 3)
    assert weights[("c",)] == weights[("d",)] == 0.0
    # Weighted controls add up to the matched control count.
    strata = {s.key: s for s in _example()}
    assert sum(strata[k].control.n * w for k, w in weights.items()) == pytest.approx(5)


def test_att_by_hand_with_a_single_unit_stratum_borrowing_pooled_variance() -> None:
    strata = _example()
    result = att_test(strata, "y")
    # a: treated mean 1/2, control 1/4; b: 1 - 1; weights 2/3 and 1/3
    assert result.estimate == pytest.approx(2 / 3 * (0.5 - 0.25) + 1 / 3 * 0.0)
    # a: var_T = 0.5 (n-1), var_C = 0.25; b has one unit per arm: pooled within-arm variances,
    # which with one stratum of two or more units are stratum a's own.
    variance = (2 / 3) ** 2 * (0.5 / 2 + 0.25 / 4) + (1 / 3) ** 2 * (0.5 / 1 + 0.25 / 1)
    assert result.se == pytest.approx(math.sqrt(variance))
    z = float(sps.norm.isf(0.025))
    assert result.ci.lower == pytest.approx(result.estimate - z * result.se)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(result.estimate / result.se))
    assert result.df == math.inf
    assert "pooled" in result.message
    assert result.status == Status.INCONCLUSIVE


def test_att_with_one_stratum_is_the_simple_difference() -> None:
    rng = np.random.default_rng(5)
    treated_values = rng.normal(1.0, 2.0, 40)
    control_values = rng.normal(0.0, 1.0, 60)
    values = [*treated_values, *control_values]
    strata = stratify([("all",)] * 100, [True] * 40 + [False] * 60, {"y": values})
    result = att_test(strata, "y")
    welch = welch_test(
        SampleMeanStatistic(60, control_values.sum(), (control_values**2).sum()),
        SampleMeanStatistic(40, treated_values.sum(), (treated_values**2).sum()),
    )
    assert result.estimate == pytest.approx(treated_values.mean() - control_values.mean())
    assert result.estimate == pytest.approx(welch.estimate)
    assert result.se == pytest.approx(welch.se)


def test_att_equals_the_cem_weighted_difference_in_means() -> None:
    rng = np.random.default_rng(11)
    n = 400
    keys = [(int(k),) for k in rng.integers(0, 4, n)]
    treated = rng.random(n) < np.array([0.2, 0.4, 0.6, 0.8])[[k for (k,) in keys]]
    y = rng.normal(size=n) + np.array([k for (k,) in keys])
    strata = stratify(keys, list(treated), {"y": list(y)})
    weights = cem_weights(strata)
    w = np.array([1.0 if t else weights[k] for k, t in zip(keys, treated, strict=True)])
    weighted_control = np.sum((w * y)[~treated]) / np.sum(w[~treated])
    assert att_test(strata, "y").estimate == pytest.approx(y[treated].mean() - weighted_control)


def test_missing_outcomes_are_left_out_of_the_quantity() -> None:
    strata = stratify(
        [(0,)] * 5, [True, True, False, False, False], {"y": [1.0, 3.0, 0.0, None, 2.0]}
    )
    assert strata[0].control.statistic("y").n == 2
    assert att_test(strata, "y").estimate == pytest.approx(1.0)


def test_degenerate_data_are_results_not_exceptions() -> None:
    nothing_matched = stratify([(0,), (1,)], [True, False], {"y": [1.0, 0.0]})
    assert att_test(nothing_matched, "y").status == Status.INSUFFICIENT_DATA
    singletons = stratify([(0,), (0,), (1,), (1,)], [True, False] * 2, {"y": [1, 0, 1, 1]})
    assert att_test(singletons, "y").status == Status.INSUFFICIENT_DATA
    constant = stratify([(0,)] * 4, [True, True, False, False], {"y": [1, 1, 1, 1]})
    assert "does not vary" in att_test(constant, "y").message
    assert att_test(constant, "absent").status == Status.INSUFFICIENT_DATA
    with pytest.raises(ValueError, match="alpha"):
        att_test(constant, "y", alpha=1.5)


def test_balance_table_by_hand() -> None:
    keys = [("x", 0)] * 3 + [("y", 0)] * 3 + [("z", 0)]
    treated = [True, False, False, True, True, False, True]
    ages = [30.0, 20.0, 40.0, 50.0, 70.0, 60.0, 10.0]
    strata = stratify(keys, treated, {"age": ages})
    rows = balance_table(strata, [Covariate("plan"), Covariate("age", ())])
    by_level = {row.level: row for row in rows}
    # Before: treated plan shares x 1/4, y 2/4, z 1/4; control x 2/3, y 1/3.
    x = by_level["x"]
    assert (x.treated_before, x.control_before) == pytest.approx((0.25, 2 / 3))
    scale = math.sqrt((0.25 * 0.75 + (2 / 3) * (1 / 3)) / 2)
    assert x.smd_before == pytest.approx((0.25 - 2 / 3) / scale)
    # After: matched treated x 1/3, y 2/3; controls weighted to the same shares.
    assert (x.treated_after, x.control_after) == pytest.approx((1 / 3, 1 / 3))
    assert x.smd_after == pytest.approx(0.0)
    assert by_level["z"].treated_after == pytest.approx(0.0)
    age = by_level[None]
    treated_ages, control_ages = np.array([30, 50, 70, 10.0]), np.array([20, 40, 60.0])
    assert age.smd_before == pytest.approx(
        (treated_ages.mean() - control_ages.mean())
        / math.sqrt((treated_ages.var(ddof=1) + control_ages.var(ddof=1)) / 2)
    )
    # After: treated (30 + 50 + 70) / 3 = 50; controls: x mean 30 weighted 1/3, y mean 60 by 2/3.
    assert age.treated_after == pytest.approx(50.0)
    assert age.control_after == pytest.approx(30 / 3 + 60 * 2 / 3)
    assert age.smd_after == pytest.approx(
        (50.0 - 50.0) / math.sqrt((treated_ages.var(ddof=1) + control_ages.var(ddof=1)) / 2)
    )


def test_arm_sums_add() -> None:
    a = ArmSums(2, {"y": SampleMeanStatistic(2, 3.0, 5.0)})
    b = ArmSums(1, {"z": SampleMeanStatistic(1, 4.0, 16.0)})
    total = a + b
    assert total.n == 3
    assert total.statistic("y") == SampleMeanStatistic(2, 3.0, 5.0)
    assert total.statistic("z") == SampleMeanStatistic(1, 4.0, 16.0)
    assert total.statistic("absent").n == 0


def test_stratify_checks_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per unit"):
        stratify([(0,)], [True, False], {})
