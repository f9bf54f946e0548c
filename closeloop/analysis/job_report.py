"""The job report: what happened in each arm, and whether the job caused it.

Counts, completion rates, conditional times and Kaplan–Meier risk tables are aggregated inside the
warehouse (Ibis); only those sufficient statistics reach Python, where ``closeloop.stats`` turns
them into lifts, intervals and tests.

Estimands: the lift is intention-to-treat (every enrolled account, by assigned arm) on completion
within the job's duration, over enrollments that have *matured* (their full duration has passed by
the analysis time) so every unit had the same chance to complete. Time to goal uses every
enrollment, with unfinished ones censored at the analysis time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.stats import (
    ComparisonResult,
    KaplanMeierResult,
    LogRankResult,
    ProportionStatistic,
    RiskTable,
    SrmResult,
    Status,
    adjust_p_values,
    kaplan_meier,
    logrank_test,
    rmst_difference,
    srm_test,
    welch_test,
)

SMALL_SEGMENT = 50  # per arm; below this a segment is shown but flagged, not ranked
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    entered: int
    completed: int
    exited: int
    active: int
    matured: int
    completed_matured: int
    mean_days_to_complete: float | None
    median_days_to_complete: float | None

    @property
    def completion_rate(self) -> float | None:
        """Completion within the duration among matured enrollments."""
        return self.completed_matured / self.matured if self.matured else None


@dataclass(frozen=True)
class SegmentLift:
    segment: str
    holdout: ProportionStatistic
    treatment: ProportionStatistic
    lift: ComparisonResult
    adjusted_p_value: float
    small: bool


@dataclass(frozen=True)
class TimeToGoal:
    curves: dict[str, KaplanMeierResult]
    logrank: LogRankResult
    rmst_difference: ComparisonResult
    horizon_days: float


@dataclass(frozen=True)
class JobReport:
    job_name: str
    as_of: datetime
    horizon_days: int
    holdout_fraction: float
    arms: dict[str, ArmSummary]
    lift: ComparisonResult
    relative_lift: ComparisonResult
    srm: SrmResult
    segments: list[SegmentLift]
    time_to_goal: TimeToGoal | None
    status: Status
    warnings: list[str] = field(default_factory=list)


def _enrollments(
    warehouse: Warehouse, job_name: str, as_of: datetime, horizon_days: int
) -> ir.Table:
    e = warehouse.table(ENROLLMENTS_TABLE)
    e = e.filter((e.job_name == job_name) & (e.entered_at <= as_of))
    accounts = warehouse.table("accounts").select("account_id", "segment")
    e = e.left_join(accounts, "account_id").select(e, accounts.segment)
    as_of_lit = ibis.timestamp(as_of)
    completed = e.completed_at.notnull() & (e.completed_at <= as_of_lit)
    exited = e.exited_at.notnull() & (e.exited_at <= as_of_lit)
    entered_s = e.entered_at.epoch_seconds()
    end_s = ibis.cases(
        (completed, e.completed_at.epoch_seconds()),
        (exited, e.exited_at.epoch_seconds()),
        else_=as_of_lit.epoch_seconds(),
    )
    matured = (as_of_lit.epoch_seconds() - entered_s) >= horizon_days * SECONDS_PER_DAY
    return e.mutate(
        # Variants are treated arms: pooled, they answer "did the job work?" against the holdout.
        arm=ibis.ifelse(e.arm == HOLDOUT, HOLDOUT, TREATMENT),
        segment=e.segment.fill_null("(none)"),
        is_completed=completed,
        is_exited=exited & ~completed,
        is_matured=matured,
        # Whole hours: a risk table with a bounded number of rows, fine enough for days-scale goals.
        hours=((end_s - entered_s) / 3600.0).ceil().cast("int64"),
        days_to_complete=ibis.ifelse(completed, (end_s - entered_s) / SECONDS_PER_DAY, ibis.null()),
    )


def _arm_summaries(e: ir.Table) -> dict[str, ArmSummary]:
    rows = (
        e.group_by("arm")
        .aggregate(
            entered=e.count(),
            completed=e.is_completed.sum(),
            exited=e.is_exited.sum(),
            matured=e.is_matured.sum(),
            completed_matured=(e.is_matured & e.is_completed).sum(),
            mean_days=e.days_to_complete.mean(),
            median_days=e.days_to_complete.median(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    summaries = {}
    for row in rows:
        entered = int(row["entered"])
        completed = int(row["completed"] or 0)
        exited = int(row["exited"] or 0)
        summaries[row["arm"]] = ArmSummary(
            arm=row["arm"],
            entered=entered,
            completed=completed,
            exited=exited,
            active=entered - completed - exited,
            matured=int(row["matured"] or 0),
            completed_matured=int(row["completed_matured"] or 0),
            mean_days_to_complete=_finite(row["mean_days"]),
            median_days_to_complete=_finite(row["median_days"]),
        )
    for arm in (HOLDOUT, TREATMENT):
        summaries.setdefault(arm, ArmSummary(arm, 0, 0, 0, 0, 0, 0, None, None))
    return summaries


def _segment_lifts(e: ir.Table) -> list[SegmentLift]:
    matured = e.filter(e.is_matured)
    rows = (
        matured.group_by(["segment", "arm"])
        .aggregate(n=matured.count(), successes=matured.is_completed.sum())
        .to_pyarrow()
        .to_pylist()
    )
    cells: dict[str, dict[str, ProportionStatistic]] = {}
    for row in rows:
        cells.setdefault(row["segment"], {})[row["arm"]] = ProportionStatistic(
            n=int(row["n"]), successes=int(row["successes"] or 0)
        )
    empty = ProportionStatistic(n=0, successes=0)
    raw = []
    for segment in sorted(cells):
        holdout = cells[segment].get(HOLDOUT, empty)
        treatment = cells[segment].get(TREATMENT, empty)
        raw.append((segment, holdout, treatment, welch_test(holdout, treatment)))
    p_values = [lift.p_value if math.isfinite(lift.p_value) else 1.0 for *_, lift in raw]
    adjusted = adjust_p_values(p_values, method="benjamini_hochberg") if p_values else ()
    return [
        SegmentLift(
            segment=segment,
            holdout=holdout,
            treatment=treatment,
            lift=lift,
            adjusted_p_value=adjusted[index],
            small=min(holdout.n, treatment.n) < SMALL_SEGMENT,
        )
        for index, (segment, holdout, treatment, lift) in enumerate(raw)
    ]


def _time_to_goal(e: ir.Table, horizon_days: int) -> TimeToGoal | None:
    rows = (
        e.group_by(["arm", "hours", "is_completed"])
        .aggregate(count=e.count())
        .to_pyarrow()
        .to_pylist()
    )
    tables: dict[str, list[tuple[float, bool, int]]] = {}
    for row in rows:
        tables.setdefault(row["arm"], []).append(
            (row["hours"] / 24.0, bool(row["is_completed"]), int(row["count"]))
        )
    if not tables.get(HOLDOUT) or not tables.get(TREATMENT):
        return None
    risk = {arm: RiskTable.from_counts(counts) for arm, counts in tables.items()}
    return TimeToGoal(
        curves={arm: kaplan_meier(table) for arm, table in risk.items()},
        logrank=logrank_test(risk[TREATMENT], risk[HOLDOUT]),
        rmst_difference=rmst_difference(risk[TREATMENT], risk[HOLDOUT], float(horizon_days)),
        horizon_days=float(horizon_days),
    )


def build_job_report(
    warehouse: Warehouse,
    job_name: str,
    *,
    as_of: datetime,
    horizon_days: int,
    holdout_fraction: float,
    variants: Sequence[str] = (),
) -> JobReport:
    """Measure a job from the enrollments published to the warehouse (``publish_enrollments``).

    A job with ``variants`` is measured as the job as a whole: every treated arm pooled against
    the holdout (the estimand of "did the job work?").
    """
    e = _enrollments(warehouse, job_name, as_of, horizon_days)
    arms = _arm_summaries(e)
    holdout_stat = ProportionStatistic(
        n=arms[HOLDOUT].matured, successes=arms[HOLDOUT].completed_matured
    )
    treatment_stat = ProportionStatistic(
        n=arms[TREATMENT].matured, successes=arms[TREATMENT].completed_matured
    )
    lift = welch_test(holdout_stat, treatment_stat, difference="absolute")
    relative = welch_test(holdout_stat, treatment_stat, difference="relative")
    srm = srm_test(
        [arms[HOLDOUT].entered, arms[TREATMENT].entered], [holdout_fraction, 1 - holdout_fraction]
    )
    warnings = []
    if variants:
        warnings.append(
            f"this job has variants ({', '.join(variants)}): the treatment arm pools them, so the "
            "lift is the job's as a whole; comparisons of each variant are not reported yet"
        )
    if srm.mismatch:
        warnings.append(
            f"sample ratio mismatch (chi2={srm.chi2:.1f}, p={srm.p_value:.2g}): the arms are not "
            f"split {holdout_fraction:.0%}/{1 - holdout_fraction:.0%} as configured; check for "
            "enrollments lost or added outside the engine before trusting the lift"
        )
    immature = sum(a.entered - a.matured for a in arms.values())
    if immature:
        warnings.append(
            f"{immature} enrollment(s) entered less than {horizon_days} days before "
            f"{as_of:%Y-%m-%d} "
            "and are not yet in the completion-rate lift (they are in the time-to-goal curves)"
        )
    status = Status.INSUFFICIENT_DATA if srm.mismatch else lift.status
    return JobReport(
        job_name=job_name,
        as_of=as_of,
        horizon_days=horizon_days,
        holdout_fraction=holdout_fraction,
        arms=arms,
        lift=lift,
        relative_lift=relative,
        srm=srm,
        segments=_segment_lifts(e),
        time_to_goal=_time_to_goal(e, horizon_days),
        status=status,
        warnings=warnings,
    )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
