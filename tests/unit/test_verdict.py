"""The verdict's rule, branch by branch, and the opt-out guardrail on counts chosen by hand.

Each primary result is built by hand, so the branch a case takes is known before ``decide`` reads
it; the reasons are checked word for word where they carry numbers.
"""

from __future__ import annotations

import math

import pytest

from closeloop.analysis.verdict import (
    Decision,
    Guardrail,
    GuardrailState,
    PlannedSample,
    decide,
    optout_guardrail,
)
from closeloop.engine.assignment import HOLDOUT
from closeloop.stats import ComparisonResult, Interval, ProportionStatistic, Status, proportion_test

OK_GUARDS = [
    Guardrail("logo retention", GuardrailState.OK, "+0.5 pp at 90 days [-1.0, +2.0]"),
    Guardrail("deliveries", GuardrailState.UNKNOWN, "nothing dispatched yet"),
]
IN = PlannedSample(planned_units=1_000, matured_units=1_000, running=True)
NOT_IN = PlannedSample(planned_units=1_000, matured_units=999, running=True)


def _lift(estimate: float, lower: float, upper: float, status: Status) -> ComparisonResult:
    return ComparisonResult("absolute", estimate, Interval(lower, upper), 0.01, 0.01, math.nan,
                            0.05, status)  # fmt: skip


POSITIVE = _lift(0.03, 0.01, 0.05, Status.POSITIVE)
NEGATIVE = _lift(-0.04, -0.07, -0.01, Status.NEGATIVE)
INCONCLUSIVE = _lift(0.012, -0.004, 0.028, Status.INCONCLUSIVE)
INSUFFICIENT = ComparisonResult.insufficient("absolute", 0.05, "an arm has fewer than 20 units")


def test_a_sample_ratio_mismatch_sends_even_a_positive_lift_to_review() -> None:
    verdict = decide(POSITIVE, sample=IN, guardrails=OK_GUARDS, sample_ratio_mismatch=True)
    assert verdict.decision is Decision.REVIEW
    assert verdict.words == "Review before deciding"
    assert verdict.reasons == ["the arms are not split as configured (sample ratio mismatch)"]
    assert verdict.guardrails == OK_GUARDS and verdict.sample == IN


def test_an_observational_job_is_reviewed() -> None:
    verdict = decide(NEGATIVE, sample=IN, guardrails=OK_GUARDS, randomized=False)
    assert verdict.decision is Decision.REVIEW
    assert verdict.reasons == ["no randomized holdout: the estimate is observational"]


def test_a_harmed_guardrail_is_reviewed_with_its_detail() -> None:
    harmed = Guardrail("opt-outs", GuardrailState.HARMED, "31 of 1,000 treated units (3.1%)")
    verdict = decide(POSITIVE, sample=IN, guardrails=[*OK_GUARDS, harmed])
    assert verdict.decision is Decision.REVIEW
    assert verdict.reasons == ["opt-outs: 31 of 1,000 treated units (3.1%)"]


def test_every_reason_for_review_is_listed_in_order() -> None:
    harmed = Guardrail("deliveries", GuardrailState.HARMED, "12 of 100 failed (12.0%)")
    verdict = decide(
        POSITIVE, sample=IN, guardrails=[harmed], sample_ratio_mismatch=True, randomized=False
    )
    assert verdict.reasons == [
        "the arms are not split as configured (sample ratio mismatch)",
        "no randomized holdout: the estimate is observational",
        "deliveries: 12 of 100 failed (12.0%)",
    ]


def test_a_positive_lift_ships_even_before_the_planned_sample_is_in() -> None:
    verdict = decide(POSITIVE, sample=NOT_IN, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.SHIP
    assert verdict.reasons == ["completion lift +3.0 pp [+1.0, +5.0], positive"]


def test_a_negative_lift_stops_before_the_planned_sample_is_in() -> None:
    verdict = decide(NEGATIVE, sample=NOT_IN, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.STOP
    assert verdict.reasons == ["completion lift -4.0 pp [-7.0, -1.0], negative"]


def test_inconclusive_with_the_planned_sample_in_stops() -> None:
    verdict = decide(INCONCLUSIVE, sample=IN, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.STOP
    assert verdict.reasons == [
        "completion lift +1.2 pp [-0.4, +2.8], inconclusive",
        "1,000 of the 1,000 planned units matured",
    ]


def test_inconclusive_without_a_plan_stops_once_nothing_is_maturing() -> None:
    done = PlannedSample(planned_units=None, matured_units=340, running=False)
    verdict = decide(INCONCLUSIVE, sample=done, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.STOP
    assert verdict.reasons[1] == "340 units matured, all matured (no plan stored at launch)"


def test_inconclusive_short_of_the_plan_keeps_running() -> None:
    verdict = decide(INCONCLUSIVE, sample=NOT_IN, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.KEEP_RUNNING
    assert verdict.words == "Keep running"
    assert verdict.reasons == [
        "completion lift +1.2 pp [-0.4, +2.8], inconclusive",
        "999 of the 1,000 planned units matured",
    ]


def test_inconclusive_without_a_plan_keeps_running_while_units_mature() -> None:
    maturing = PlannedSample(planned_units=None, matured_units=5_000, running=True)
    verdict = decide(INCONCLUSIVE, sample=maturing, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.KEEP_RUNNING
    assert verdict.reasons[1] == "5,000 units matured, still maturing (no plan stored at launch)"


def test_insufficient_data_short_of_the_plan_keeps_running_and_says_why() -> None:
    verdict = decide(INSUFFICIENT, sample=NOT_IN, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.KEEP_RUNNING
    assert verdict.reasons == [
        "an arm has fewer than 20 units",
        "999 of the 1,000 planned units matured",
    ]


@pytest.mark.parametrize(
    ("sample", "reached"),
    [
        (PlannedSample(1_200.0, 1_200, running=True), True),
        (PlannedSample(1_200.0, 1_199, running=False), False),  # the plan, not maturity, decides
        (PlannedSample(1_199.5, 1_200, running=True), True),
        (PlannedSample(None, 10, running=False), True),
        (PlannedSample(None, 10_000, running=True), False),
        # A job that can no longer enroll, all matured: nothing more is coming.
        (PlannedSample(1_200.0, 1_199, running=False, enrolling=False), True),
        (PlannedSample(1_200.0, 1_199, running=True, enrolling=False), False),
    ],
)
def test_planned_sample_reached(sample: PlannedSample, reached: bool) -> None:
    assert sample.reached is reached


def test_treated_opt_outs_above_the_limit_harm_even_at_the_holdout_rate() -> None:
    guard = optout_guardrail({HOLDOUT: (1_000, 30), "treatment": (1_000, 31)}, alpha=0.05)
    assert guard.state is GuardrailState.HARMED
    assert guard.detail == (
        "31 of 1,000 treated units (3.1%), holdout 30 of 1,000 (3.0%): above 2%"
    )


def test_treated_opt_outs_clearly_above_the_holdout_harm_under_the_limit() -> None:
    counts = {HOLDOUT: (1_000, 2), "treatment": (1_000, 19)}
    # The rate is under 2%; the two-sample test is what calls it.
    test = proportion_test(ProportionStatistic(1_000, 2), ProportionStatistic(1_000, 19))
    assert test.status is Status.POSITIVE
    guard = optout_guardrail(counts, alpha=0.05)
    assert guard.state is GuardrailState.HARMED
    assert guard.detail == (
        "19 of 1,000 treated units (1.9%), holdout 2 of 1,000 (0.2%): more than the holdout"
    )


def test_variants_are_pooled_and_equal_small_rates_are_ok() -> None:
    counts = {HOLDOUT: (1_000, 10), "short": (600, 6), "long": (400, 4)}
    guard = optout_guardrail(counts, alpha=0.05)
    assert guard.state is GuardrailState.OK
    assert guard.name == "opt-outs"
    assert guard.detail == "10 of 1,000 treated units (1.0%), holdout 10 of 1,000 (1.0%)"


def test_opt_outs_without_treated_units_are_unknown() -> None:
    for counts in ({HOLDOUT: (50, 3)}, {}, {HOLDOUT: (50, 3), "treatment": (0, 0)}):
        guard = optout_guardrail(counts, alpha=0.05)
        assert guard.state is GuardrailState.UNKNOWN
        assert guard.detail == "no treated unit yet"


def test_an_ended_job_short_of_its_plan_stops_instead_of_running_on() -> None:
    ended = PlannedSample(planned_units=1_000, matured_units=600, running=False, enrolling=False)
    verdict = decide(INCONCLUSIVE, sample=ended, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.STOP
    assert verdict.reasons[-1] == "600 of the 1,000 planned units matured"


def test_too_little_data_when_no_more_is_coming_is_for_review() -> None:
    ended = PlannedSample(planned_units=1_000, matured_units=30, running=False, enrolling=False)
    verdict = decide(INSUFFICIENT, sample=ended, guardrails=OK_GUARDS)
    assert verdict.decision is Decision.REVIEW
    assert verdict.reasons[0] == "an arm has fewer than 20 units"
