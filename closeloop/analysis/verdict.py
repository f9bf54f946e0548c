"""The verdict a job report leads with: ship, keep running, stop or review.

One rule, applied in this order (docs/methods.md, "The verdict"):

1. **review** when the numbers cannot be trusted or something was harmed: the arms are not split
   as configured (sample ratio mismatch), the job has no randomized holdout, or a guardrail is
   harmed: more churn or less logo retention than the holdout, more opt-outs than the holdout or
   more than UNSUBSCRIBE_LIMIT of the treated units, or more than DELIVERY_FAILURE_LIMIT of the
   job's messages failed.
2. **ship** when the primary metric (completion within the horizon, the job's arms pooled) is
   positive: the treatment helped.
3. **stop** when it is negative, or when the planned sample is in (the matured units reached the
   N* planned at launch, or, without a plan, every enrolled unit has matured; or the job can no
   longer enroll and every unit has matured) and the lift is still not called: no lift of the size
   planned for. With too little data to call anything by then: **review** instead.
4. **keep running** otherwise: not called yet, and the planned sample is not in.

Every status is read from the goal's side and, while the job runs, from its always-valid result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from closeloop.analysis.measurement import COMPLETION_RATE
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.state import LaunchPlan
from closeloop.engine.statuses import OutboxStatus
from closeloop.stats import ComparisonResult, ProportionStatistic, Status, proportion_test

if TYPE_CHECKING:
    from closeloop.analysis.job_report import JobReport

UNSUBSCRIBE_LIMIT = 0.02  # share of treated units that opted out after entering
DELIVERY_FAILURE_LIMIT = 0.10  # share of the job's messages that failed for good


class Decision(StrEnum):
    SHIP = "ship"
    KEEP_RUNNING = "keep_running"
    STOP = "stop"
    REVIEW = "review"


DECISION_WORDS = {
    Decision.SHIP: "Ship it",
    Decision.KEEP_RUNNING: "Keep running",
    Decision.STOP: "Stop",
    Decision.REVIEW: "Review before deciding",
}


class GuardrailState(StrEnum):
    OK = "ok"
    HARMED = "harmed"
    UNKNOWN = "unknown"  # no data to check it


@dataclass(frozen=True)
class Guardrail:
    """A metric the job must not make worse, and what the data says about it."""

    name: str
    state: GuardrailState
    detail: str


@dataclass(frozen=True)
class PlannedSample:
    """Whether the sample the job was planned for is in."""

    planned_units: float | None  # N* stored at launch; None without a plan
    matured_units: int
    running: bool  # some enrolled units are still maturing
    enrolling: bool = True  # the job can still enroll (live, before its end)

    @property
    def reached(self) -> bool:
        """The planned units have matured, or no more units can come (ended and all matured)."""
        if not self.enrolling and not self.running:
            return True
        if self.planned_units is not None:
            return self.matured_units >= self.planned_units
        return not self.running


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    summary: str  # one sentence in plain words
    reasons: list[str]
    guardrails: list[Guardrail]
    sample: PlannedSample

    @property
    def words(self) -> str:
        return DECISION_WORDS[self.decision]


def decide(
    primary: ComparisonResult,
    *,
    sample: PlannedSample,
    guardrails: list[Guardrail],
    sample_ratio_mismatch: bool = False,
    randomized: bool = True,
) -> Verdict:
    """The verdict for a job whose primary lift is ``primary`` (see the module docstring)."""
    harmed = [g for g in guardrails if g.state is GuardrailState.HARMED]
    reasons: list[str] = []
    if sample_ratio_mismatch:
        reasons.append("the arms are not split as configured (sample ratio mismatch)")
    if not randomized:
        reasons.append("no randomized holdout: the estimate is observational")
    reasons.extend(f"{g.name}: {g.detail}" for g in harmed)
    if reasons:
        summary = "Something needs a person's judgement before this job is shipped or stopped."
        return Verdict(Decision.REVIEW, summary, reasons, guardrails, sample)
    status = primary.status
    if status is Status.POSITIVE:
        summary = "The job helped: more accounts reached the goal than in the holdout."
        return Verdict(Decision.SHIP, summary, [_lift_reason(primary)], guardrails, sample)
    if status is Status.NEGATIVE:
        summary = "The job hurt: fewer accounts reached the goal than in the holdout."
        return Verdict(Decision.STOP, summary, [_lift_reason(primary)], guardrails, sample)
    why = primary.message if status is Status.INSUFFICIENT_DATA else _lift_reason(primary)
    if sample.reached and status is Status.INSUFFICIENT_DATA:
        summary = (
            "Too little data to measure, and no more is coming: widen the audience or rethink."
        )
        return Verdict(Decision.REVIEW, summary, [why, _sample_reason(sample)], guardrails, sample)
    if sample.reached:
        summary = "No lift of the size planned for: the planned sample is in and it is not called."
        return Verdict(Decision.STOP, summary, [why, _sample_reason(sample)], guardrails, sample)
    summary = "Not called yet: keep the job running until its planned sample is in."
    return Verdict(
        Decision.KEEP_RUNNING, summary, [why, _sample_reason(sample)], guardrails, sample
    )


def _lift_reason(result: ComparisonResult) -> str:
    return (
        f"completion lift {result.estimate * 100:+.1f} pp "
        f"[{result.ci.lower * 100:+.1f}, {result.ci.upper * 100:+.1f}], {result.status.value}"
    )


def _sample_reason(sample: PlannedSample) -> str:
    if sample.planned_units is None:
        state = "still maturing" if sample.running else "all matured"
        return f"{sample.matured_units:,} units matured, {state} (no plan stored at launch)"
    return f"{sample.matured_units:,} of the {sample.planned_units:,.0f} planned units matured"


# -- a job's guardrails ----------------------------------------------------------------------------


def retention_guardrail(report: JobReport) -> Guardrail:
    """Logo retention at the longest revenue horizon with matured units: not lower than holdout."""
    name = "logo retention"
    if report.revenue is None:
        return Guardrail(name, GuardrailState.UNKNOWN, "no subscriptions to measure it")
    for horizon in sorted(report.revenue.horizons, key=lambda h: -h.days):
        difference = horizon.retention_difference
        if difference.status is Status.INSUFFICIENT_DATA:
            continue
        detail = (
            f"{difference.estimate * 100:+.1f} pp at {horizon.days} days "
            f"[{difference.ci.lower * 100:+.1f}, {difference.ci.upper * 100:+.1f}]"
        )
        state = GuardrailState.HARMED if difference.status is Status.NEGATIVE else GuardrailState.OK
        return Guardrail(name, state, detail)
    return Guardrail(name, GuardrailState.UNKNOWN, "no revenue horizon has matured yet")


def optout_guardrail(optouts: Mapping[str, tuple[int, int]], alpha: float) -> Guardrail:
    """Opt-outs after entry: treated no more than the holdout, and under UNSUBSCRIBE_LIMIT."""
    name = "opt-outs"
    holdout_n, holdout_out = optouts.get(HOLDOUT, (0, 0))
    treated_n = sum(n for arm, (n, _) in optouts.items() if arm != HOLDOUT)
    treated_out = sum(out for arm, (_, out) in optouts.items() if arm != HOLDOUT)
    if not treated_n:
        return Guardrail(name, GuardrailState.UNKNOWN, "no treated unit yet")
    rate = treated_out / treated_n
    detail = f"{treated_out:,} of {treated_n:,} treated units ({rate:.1%})"
    if holdout_n:
        detail += f", holdout {holdout_out:,} of {holdout_n:,} ({holdout_out / holdout_n:.1%})"
    if rate > UNSUBSCRIBE_LIMIT:
        return Guardrail(name, GuardrailState.HARMED, f"{detail}: above {UNSUBSCRIBE_LIMIT:.0%}")
    if holdout_n:
        test = proportion_test(
            ProportionStatistic(holdout_n, holdout_out),
            ProportionStatistic(treated_n, treated_out),
            alpha=alpha,
        )
        if test.status is Status.POSITIVE:  # more opt-outs among the treated
            return Guardrail(name, GuardrailState.HARMED, f"{detail}: more than the holdout")
    return Guardrail(name, GuardrailState.OK, detail)


def delivery_guardrail(report: JobReport) -> Guardrail:
    """Messages that failed for good: at most DELIVERY_FAILURE_LIMIT of those dispatched."""
    name = "deliveries"
    dead = sum(arm.by_status.get(OutboxStatus.DEAD, 0) for arm in report.deliveries.values())
    sent = sum(arm.by_status.get(OutboxStatus.SENT, 0) for arm in report.deliveries.values())
    if not dead + sent:
        return Guardrail(name, GuardrailState.UNKNOWN, "nothing dispatched yet")
    share = dead / (dead + sent)
    detail = f"{dead:,} of {dead + sent:,} dispatched messages failed ({share:.1%})"
    if share > DELIVERY_FAILURE_LIMIT:
        return Guardrail(name, GuardrailState.HARMED, detail)
    return Guardrail(name, GuardrailState.OK, detail)


def job_verdict(
    report: JobReport,
    plan: LaunchPlan | None,
    optouts: Mapping[str, tuple[int, int]],
    *,
    enrolling: bool = True,
) -> Verdict:
    """The verdict of a job report (module docstring), its guardrails and planned sample."""
    measurement = report.measurement
    if report.matched is not None:
        primary = report.matched.completion
    else:
        comparison = measurement.comparison(TREATMENT, COMPLETION_RATE, HOLDOUT)
        assert comparison is not None
        primary = comparison.decisive
    sample = PlannedSample(
        plan.units if plan is not None else None,
        sum(arm.matured for arm in measurement.arms.values()),
        measurement.running,
        enrolling,
    )
    guardrails = [
        retention_guardrail(report),
        optout_guardrail(optouts, measurement.options.final_alpha),
        delivery_guardrail(report),
    ]
    return decide(
        primary,
        sample=sample,
        guardrails=guardrails,
        sample_ratio_mismatch=measurement.srm is not None and measurement.srm.mismatch,
        randomized=report.matched is None,
    )
