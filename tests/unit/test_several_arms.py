"""Several treated arms: the pooled headline, and Holm's adjustment across the variants.

A control and three variants of 1,000 matured units each, with completions chosen by hand: only
``video`` has a real lift (+10 pp); ``email`` is 3.8 pp up by chance, enough for p < 0.05 alone
but not once the three variant-vs-control comparisons are adjusted together; ``call``, the first
variant alphabetically, is flat. The pooled arm (all variants against the control) is the
headline, a single pre-planned test, and is not adjusted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import ibis
import pyarrow as pa
import pytest
from statsmodels.stats.multitest import multipletests

from closeloop.analysis.measurement import (
    COMPLETION_RATE,
    POOLED,
    Comparison,
    Measurement,
    MeasureOptions,
    measure_units,
)
from closeloop.present.format import pp
from closeloop.present.measurement import headline
from closeloop.services.results import measurement_model
from closeloop.stats import ProportionStatistic, Status, proportion_test

DAY0 = datetime(2025, 1, 6)
CONTROL = "control"
PER_ARM = 1_000
COMPLETED = {CONTROL: 200, "call": 198, "email": 238, "video": 300}
VARIANTS = ("call", "email", "video")


def _units() -> ibis.Table:
    """Units entering over ten days; an arm's first COMPLETED[arm] reach the goal in 1-9 days."""
    rows: dict[str, list[object]] = {"unit_id": [], "arm": [], "entered_at": [], "goal_at": []}
    for arm, completed in COMPLETED.items():
        for i in range(PER_ARM):
            entered = DAY0 + timedelta(hours=i % 240)
            rows["unit_id"].append(f"{arm}-{i:04d}")
            rows["arm"].append(arm)
            rows["entered_at"].append(entered)
            rows["goal_at"].append(entered + timedelta(days=1 + i % 9) if i < completed else None)
    return ibis.memtable(pa.table(rows))


def _measure(*, pooled_headline: bool = True) -> Measurement:
    options = MeasureOptions(horizon_days=14, control=CONTROL, pooled_headline=pooled_headline)
    return measure_units(_units(), options)


@pytest.fixture(scope="module")
def measurement() -> Measurement:
    return _measure()


def _completion(measurement: Measurement, arm: str, control: str = CONTROL) -> Comparison:
    comparison = measurement.comparison(arm, COMPLETION_RATE, control)
    assert comparison is not None, (arm, control)
    return comparison


def test_the_pooled_arm_is_every_variant_against_the_control(measurement: Measurement) -> None:
    pooled = measurement.pooled
    assert pooled is not None and pooled.arm == POOLED
    assert (pooled.n, pooled.matured, pooled.completed) == (3_000, 3_000, 198 + 238 + 300)
    comparison = _completion(measurement, POOLED)
    expected = proportion_test(ProportionStatistic(1_000, 200), ProportionStatistic(3_000, 736))
    assert comparison.absolute.estimate == pytest.approx(736 / 3_000 - 0.2, abs=1e-12)
    assert comparison.absolute.p_value == pytest.approx(expected.p_value, rel=1e-12)
    assert comparison.absolute.ci.lower == pytest.approx(expected.ci.lower, abs=1e-12)
    # The headline is one pre-planned test: not in any Holm family.
    assert (comparison.adjusted, comparison.family) == (None, 1)
    assert comparison.decisive.status is Status.POSITIVE


def test_the_status_is_the_pooled_lift_not_the_first_variant(measurement: Measurement) -> None:
    assert measurement.status is _completion(measurement, POOLED).decisive.status
    assert measurement.status is Status.POSITIVE
    assert _completion(measurement, "call").decisive.status is Status.INCONCLUSIVE


def test_variants_against_the_control_are_holm_adjusted_as_one_family(
    measurement: Measurement,
) -> None:
    comparisons = [_completion(measurement, arm) for arm in VARIANTS]
    unadjusted = [comparison.unadjusted.p_value for comparison in comparisons]
    _, holm, _, _ = multipletests(unadjusted, method="holm")
    for comparison, expected in zip(comparisons, holm, strict=True):
        assert comparison.family == 3
        assert comparison.adjusted is not None
        assert comparison.adjusted.p_value == pytest.approx(float(expected), rel=1e-12)
        assert comparison.adjusted.message == "Holm-adjusted over 3 comparisons"
        # Only the p-value and the status are adjusted; the lift and its interval stay.
        assert comparison.adjusted.estimate == comparison.unadjusted.estimate
    # Each unadjusted p-value is the plain two-proportion test of its arm.
    for arm, p_value in zip(VARIANTS, unadjusted, strict=True):
        plain = proportion_test(
            ProportionStatistic(PER_ARM, COMPLETED[CONTROL]),
            ProportionStatistic(PER_ARM, COMPLETED[arm]),
        )
        assert p_value == pytest.approx(plain.p_value, rel=1e-12)


def test_a_lift_called_alone_but_not_after_holm_is_inconclusive(measurement: Measurement) -> None:
    email = _completion(measurement, "email")
    assert email.adjusted is not None
    assert email.unadjusted.p_value < 0.05 < email.adjusted.p_value
    assert email.unadjusted.status is Status.POSITIVE
    assert email.decisive.status is Status.INCONCLUSIVE
    # The real lift survives the adjustment.
    video = _completion(measurement, "video")
    assert video.decisive.status is Status.POSITIVE
    assert video.decisive.p_value < 1e-5


def test_pairs_of_variants_are_a_family_of_their_own(measurement: Measurement) -> None:
    pairs = [("email", "call"), ("video", "call"), ("video", "email")]
    comparisons = [_completion(measurement, arm, control) for arm, control in pairs]
    _, holm, _, _ = multipletests([c.unadjusted.p_value for c in comparisons], method="holm")
    for comparison, expected in zip(comparisons, holm, strict=True):
        assert comparison.family == 3
        assert comparison.adjusted is not None
        assert comparison.adjusted.p_value == pytest.approx(float(expected), rel=1e-12)


def test_the_headline_sentence_reads_the_pooled_arm(measurement: Measurement) -> None:
    pooled = _completion(measurement, POOLED).decisive
    text = headline(measurement_model(measurement))
    assert text.startswith("All treated completed more often than control: ")
    assert pp(pooled.estimate) in text and pp(pooled.estimate) == "+4.5 pp"
    assert "call" not in text


def test_without_the_pooled_headline_the_first_variant_leads() -> None:
    measurement = _measure(pooled_headline=False)
    assert measurement.pooled is None
    assert measurement.comparison(POOLED, COMPLETION_RATE) is None
    assert measurement.status is Status.INCONCLUSIVE  # call's, Holm-adjusted
    assert headline(measurement_model(measurement)).startswith(
        "Inconclusive: the interval for call vs control"
    )
    # The variants are still adjusted together.
    assert _completion(measurement, "email").family == 3
