"""Every case of tests/data/stats_cases.json, at the decimals the case states."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from closeloop.stats import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    RiskTable,
    SampleMeanStatistic,
    adjust_p_values,
    confidence_sequence,
    cuped_test,
    kaplan_meier,
    logrank_test,
    nps_from_scores,
    pooled_theta,
    restricted_mean,
    rmst_difference,
    srm_test,
    welch_test,
)

DATA = Path(__file__).parent.parent / "data"
CASES: dict[str, Any] = json.loads((DATA / "stats_cases.json").read_text())


def _close(actual: float, expected: float, decimals: int) -> None:
    assert actual == pytest.approx(expected, abs=10**-decimals), (actual, expected)


def _statistic(values: dict[str, Any]) -> ProportionStatistic | SampleMeanStatistic:
    if "successes" in values:
        return ProportionStatistic(**values)
    return SampleMeanStatistic(**values)


def _check_result(result: Any, expected: dict[str, Any], decimals: int) -> None:
    _close(result.estimate, expected["estimate"], decimals)
    if "ci" in expected:
        _close(result.ci.lower, expected["ci"][0], decimals)
        _close(result.ci.upper, expected["ci"][1], decimals)
    if "se" in expected:
        _close(result.se, expected["se"], decimals)
    if "p_value" in expected:
        _close(result.p_value, expected["p_value"], decimals)
    if "df" in expected:
        _close(result.df, expected["df"], 2)


def _ids(section: str) -> list[str]:
    return [case.get("name", str(i)) for i, case in enumerate(CASES[section])]


@pytest.mark.parametrize(
    "case",
    CASES["welch_mean"] + CASES["welch_proportion"],
    ids=_ids("welch_mean") + _ids("welch_proportion"),
)
def test_welch(case: dict[str, Any]) -> None:
    result = welch_test(
        _statistic(case["control"]),
        _statistic(case["treatment"]),
        difference=case["difference"],
        alpha=case["alpha"],
    )
    _check_result(result, case["expected"], case["decimals"])


@pytest.mark.parametrize(
    "case", CASES["ratio_metric_delta_method"], ids=_ids("ratio_metric_delta_method")
)
def test_ratio_metric(case: dict[str, Any]) -> None:
    control, treatment = RatioStatistic(**case["control"]), RatioStatistic(**case["treatment"])
    expected, decimals = case["expected"], case["decimals"]
    _close(control.mean, expected["control_ratio"], decimals)
    _close(treatment.mean, expected["treatment_ratio"], decimals)
    _check_result(welch_test(control, treatment, difference=case["difference"]), expected, decimals)


@pytest.mark.parametrize(
    "case", CASES["cuped_regression_adjustment"], ids=_ids("cuped_regression_adjustment")
)
def test_cuped(case: dict[str, Any]) -> None:
    control = RegressionAdjustedStatistic(**case["control"])
    treatment = RegressionAdjustedStatistic(**case["treatment"])
    expected, decimals = case["expected"], case["decimals"]
    _close(control.mean, expected["control_mean_unadjusted"], decimals)
    _close(treatment.mean, expected["treatment_mean_unadjusted"], decimals)
    _close(pooled_theta(control, treatment), expected["theta"], decimals)
    _check_result(cuped_test(control, treatment, difference=case["difference"]), expected, decimals)


@pytest.mark.parametrize(
    "case", CASES["sequential_confidence_sequence"], ids=_ids("sequential_confidence_sequence")
)
def test_confidence_sequence(case: dict[str, Any]) -> None:
    result = confidence_sequence(
        _statistic(case["control"]),
        _statistic(case["treatment"]),
        difference=case["difference"],
        alpha=case["alpha"],
        tuning=case["tuning_nstar"],
    )
    _check_result(result, case["expected"], case["decimals"])


@pytest.mark.parametrize("case", CASES["srm_chi_square"])
def test_srm(case: dict[str, Any]) -> None:
    result = srm_test(case["observed"], case["weights"])
    _close(result.chi2, case["expected"]["chi2"], 4)
    assert result.p_value == pytest.approx(case["expected"]["p_value"], rel=1e-4)
    assert result.mismatch == (case["expected"]["p_value"] < 0.001)


@pytest.mark.parametrize("case", CASES["multiple_testing"], ids=lambda c: c["method"])
def test_multiple_testing(case: dict[str, Any]) -> None:
    adjusted = adjust_p_values(case["p_values"], method=case["method"])
    assert adjusted == pytest.approx(case["expected_adjusted_in_input_order"], abs=1e-4)


def _logrank_tables(case: dict[str, Any]) -> tuple[RiskTable, RiskTable]:
    if "groups" in case:
        tables = []
        for group in (1, 0):
            rows = [
                (d, e)
                for d, e, g in zip(case["durations"], case["events"], case["groups"], strict=True)
                if g == group
            ]
            tables.append(
                RiskTable.from_durations([d for d, _ in rows], [bool(e) for _, e in rows])
            )
        return tables[0], tables[1]
    control_events = case["control_events"]
    if control_events == "all 1":
        control_events = [1] * len(case["control_durations"])
    return (
        RiskTable.from_durations(
            case["treatment_durations"], [bool(e) for e in case["treatment_events"]]
        ),
        RiskTable.from_durations(case["control_durations"], [bool(e) for e in control_events]),
    )


@pytest.mark.parametrize("case", CASES["logrank"], ids=_ids("logrank"))
def test_logrank(case: dict[str, Any]) -> None:
    a, b = _logrank_tables(case)
    result = logrank_test(a, b)
    _close(result.chi2, case["expected"]["chi2"], 4)
    assert result.p_value == pytest.approx(case["expected"]["p_value"], rel=1e-2)
    # Symmetric in its arguments.
    assert logrank_test(b, a).chi2 == pytest.approx(result.chi2)


def _waltons() -> dict[str, RiskTable]:
    with (DATA / "waltons.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    tables = {}
    for group in ("control", "miR-137"):
        selected = [row for row in rows if row["group"] == group]
        tables[group] = RiskTable.from_durations(
            [float(row["T"]) for row in selected], [float(row["E"]) == 1 for row in selected]
        )
    return tables


def test_kaplan_meier_waltons() -> None:
    case = CASES["kaplan_meier_waltons"]
    decimals = case["decimals"]
    tables = _waltons()
    for group in ("control", "miR-137"):
        expected = case[group]
        table = tables[group]
        km = kaplan_meier(table)
        assert table.n == expected["n"]
        assert sum(table.events) == expected["events"]
        assert km.median == expected["median"]
        assert (km.median_ci.lower, km.median_ci.upper) == tuple(expected["median_ci"])
        for t in (30, 50, 60):
            if f"S({t})" in expected:
                _close(km.survival_at(t), expected[f"S({t})"], decimals)
            if f"S({t})_ci" in expected:
                index = max(i for i, time in enumerate(km.times) if time <= t)
                _close(km.ci_lower[index], expected[f"S({t})_ci"][0], decimals)
                _close(km.ci_upper[index], expected[f"S({t})_ci"][1], decimals)
        rmst_50, variance_50 = restricted_mean(table, 50)
        _close(rmst_50, expected["rmst_50"], decimals)
        _close(variance_50**0.5, expected["rmst_50_se_greenwood"], decimals)
        _close(restricted_mean(table, 60)[0], expected["rmst_60"], decimals)
    logrank = logrank_test(tables["miR-137"], tables["control"])
    _close(logrank.chi2, case["logrank"]["chi2"], decimals)
    assert logrank.p_value == pytest.approx(case["logrank"]["p_value"], rel=1e-2)
    difference = rmst_difference(tables["miR-137"], tables["control"], 50)
    _check_result(difference, case["rmst_difference_50"], decimals)


@pytest.mark.parametrize("case", CASES["rmst_edge_cases"])
def test_rmst_edge_cases(case: dict[str, Any]) -> None:
    table = RiskTable.from_durations(case["durations"], [bool(e) for e in case["events"]])
    for key, value in case["expected"].items():
        tau = float(key.removeprefix("rmst_"))
        _close(restricted_mean(table, tau)[0], value, 9)


def test_nps() -> None:
    example = CASES["nps"]["example"]
    result = nps_from_scores(example["scores"])
    expected = example["expected"]
    assert result.score == pytest.approx(expected["nps"])
    assert (result.promoters, result.passives, result.detractors) == (
        expected["promoters"],
        expected["passives"],
        expected["detractors"],
    )
