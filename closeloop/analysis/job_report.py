"""The job report: what happened in each arm and variant, and whether the job caused it.

A job's enrollments become measurement units (:func:`job_units`) and go through the same
:func:`~closeloop.analysis.measurement.measure_units` as ``closeloop measure``, twice when the job
has variants: once with the variants pooled into ``treatment`` (did the job work?) and once with
each variant on its own (each against the holdout, and pairwise). Counts, rates and Kaplan–Meier
risk tables are aggregated inside the warehouse; only sufficient statistics reach Python.

Estimands: intention to treat on completion within the horizon (the hypothesis' horizon, else the
job's duration) over matured enrollments; time to goal over every enrollment, censored at the
horizon or the analysis time; while enrollments are still maturing the lifts carry always-valid
confidence sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from closeloop.analysis.matching import MatchedComparison, match_units
from closeloop.analysis.measurement import (
    COMPLETION_RATE,
    TIME_TO_GOAL,
    VALUE,
    Comparison,
    Measurement,
    MeasureOptions,
    SegmentLift,
    measure_parts,
    measure_units,
)
from closeloop.analysis.revenue_value import HORIZONS as REVENUE_HORIZONS
from closeloop.analysis.revenue_value import PART as REVENUE_PART
from closeloop.analysis.revenue_value import RevenueValue, revenue_value, revenue_values
from closeloop.data import history
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.outbox import ArmDeliveries
from closeloop.engine.state import LaunchPlan

if TYPE_CHECKING:
    from closeloop.analysis.verdict import Verdict
from closeloop.errors import NotFoundError
from closeloop.stats import ComparisonResult, SrmResult, Status

SECONDS_PER_DAY = 86_400.0
MAX_COHORT_TIMES = 400
FALLBACK_TUNING = 1_000  # N* for jobs launched without a power plan
CHURN_TABLE = "churn_reasons"
PRIOR_DAYS = 30  # the pre-entry window of the activity the completion lift is adjusted for
ADJUST_FOR = ("segment", "plan")  # account attributes the completion lift is adjusted for
CAP_PERCENTILE = 0.99  # a job's value outcome is winsorized here
MATCH_ON = ("segment", "plan", "tenure_days")
"""Pre-entry attributes an observational job's enrollments are matched on by default."""
COMPARISON = "comparison"

CohortAsOf = Callable[[datetime], ir.Table]
"""A cohort's members (``account_id``) as of a time."""


@dataclass(frozen=True)
class ArmSummary:
    """What the engine did with an arm's enrollments so far (every enrollment, matured or not)."""

    arm: str
    entered: int
    completed: int
    exited_by_reason: dict[str, int]
    active: int

    @property
    def exited(self) -> int:
        return sum(self.exited_by_reason.values())


@dataclass(frozen=True)
class ValueOutcome:
    """The numeric outcome measured besides completion: an event's value summed over the horizon."""

    event: str
    covariate_days: int  # the same event's value over this many days before entry (CUPED); 0: none


@dataclass(frozen=True)
class JobReport:
    job_name: str
    as_of: datetime
    horizon_days: float
    holdout_fraction: float
    arms: dict[str, ArmSummary]  # holdout and treatment (the variants pooled)
    variants: dict[str, ArmSummary]  # each variant; empty for a job without variants
    measurement: Measurement  # treatment (pooled) against the holdout
    variant_measurement: Measurement | None  # each variant against the holdout, and pairwise
    value_outcome: ValueOutcome | None
    status: Status
    warnings: list[str] = field(default_factory=list)
    revenue: RevenueValue | None = None  # retention, NRR and MRR change at 90/180 days
    matched: MatchedComparison | None = None  # jobs without a holdout: the observational estimate
    deliveries: dict[str, ArmDeliveries] = field(default_factory=dict)  # messages per arm
    versions: list[tuple[int, int]] = field(default_factory=list)  # (version, enrollments)
    verdict: Verdict | None = None  # ship / keep running / stop / review (analysis.verdict)
    plan: LaunchPlan | None = None  # stored at launch: what the always-valid results are tuned for

    @property
    def lift(self) -> ComparisonResult:
        """The completion lift of the job as a whole (absolute, fixed horizon)."""
        return self._comparison(COMPLETION_RATE).absolute

    @property
    def relative_lift(self) -> ComparisonResult:
        relative = self._comparison(COMPLETION_RATE).relative
        assert relative is not None
        return relative

    @property
    def completion(self) -> Comparison:
        """The job as a whole (variants pooled) against the holdout on completion."""
        return self._comparison(COMPLETION_RATE)

    @property
    def decisive_lift(self) -> ComparisonResult:
        """The completion lift the status is read from (see ``Comparison.decisive``)."""
        return self._comparison(COMPLETION_RATE).decisive

    @property
    def sequential_lift(self) -> ComparisonResult | None:
        """The always-valid result (computed while the job runs and, once shown, after)."""
        return self._comparison(COMPLETION_RATE).sequential

    @property
    def time_to_goal(self) -> Comparison:
        return self._comparison(TIME_TO_GOAL)

    @property
    def value(self) -> Comparison | None:
        return self.measurement.comparison(TREATMENT, VALUE, HOLDOUT)

    @property
    def srm(self) -> SrmResult:
        srm = self.measurement.srm
        assert srm is not None
        return srm

    @property
    def segments(self) -> list[SegmentLift]:
        return self.measurement.segments

    def _comparison(self, metric: str) -> Comparison:
        comparison = self.measurement.comparison(TREATMENT, metric, HOLDOUT)
        assert comparison is not None, metric
        return comparison


def job_units(
    warehouse: Warehouse,
    job_name: str,
    *,
    as_of: datetime,
    attributes: Sequence[str] = ("segment",),
    value_outcome: ValueOutcome | None = None,
    horizon_days: float | None = None,
    cohorts: Mapping[str, CohortAsOf] | None = None,
    churn: bool = False,
    prior_days: int = 0,
) -> ir.Table:
    """The job's enrollments up to ``as_of`` as measurement units, computed in the warehouse.

    Columns: ``unit_id`` (the enrollment id), ``arm`` (the assigned arm or variant),
    ``entered_at``, ``goal_at`` (the engine's completion time, if it happened by ``as_of``),
    ``exited_at``, ``exit_reason``, the account's ``attributes`` (as they were when the unit
    entered: the value of the attribute history valid at ``entered_at``, else the stored one)
    and, with a value outcome, ``value`` (the event's value summed over
    ``[entered_at, entered_at + horizon]``) and ``covariate`` (its value summed over the days
    before entry). ``churn`` adds ``churned_at`` (the first
    churn at or after entry, by ``as_of``), ``prior_days`` adds ``prior_events`` (the account's
    events in that many days before entry). Each of ``cohorts`` adds a column
    ``cohort:NAME`` saying whether the account was ``in`` or ``not in`` the cohort when it entered
    (membership evaluated as of every distinct entry time, or the start of every entry day when
    there are more than MAX_COHORT_TIMES of them).
    """
    e = warehouse.table(ENROLLMENTS_TABLE)
    e = e.filter((e.job_name == job_name) & (e.entered_at <= as_of))
    as_of_literal = ibis.timestamp(as_of)
    units = e.select(
        unit_id=e.enrollment_id,
        account_id=e.account_id,
        arm=e.arm,
        entered_at=e.entered_at,
        goal_at=ibis.ifelse(e.completed_at <= as_of_literal, e.completed_at, ibis.null()),
        exited_at=ibis.ifelse(e.exited_at <= as_of_literal, e.exited_at, ibis.null()),
        exit_reason=ibis.ifelse(e.exited_at <= as_of_literal, e.exit_reason, ibis.null()),
    )
    if attributes:
        units = _with_attributes(warehouse, units, attributes)
    for name, members_as_of in (cohorts or {}).items():
        units = _with_cohort(units, name, members_as_of)
    if value_outcome is not None:
        if horizon_days is None:
            raise ValueError("a value outcome needs the horizon it is summed over")
        units = _with_value(warehouse, units, value_outcome, horizon_days, as_of)
    if churn:
        units = _with_churn(warehouse, units, as_of)
    if prior_days:
        units = _with_prior_events(warehouse, units, prior_days, as_of)
    return units


def units_for_jobs(
    warehouse: Warehouse,
    as_of_by_job: Mapping[str, datetime],
    *,
    attributes: Sequence[str] = ("segment",),
    prior_days: int = PRIOR_DAYS,
) -> ir.Table:
    """Every named job's units at once, each job as of its own time: what :func:`job_units`
    gives per job (with ``churn`` and ``prior_days``), plus ``job_name``, in one expression.

    The measurement refresh (``analysis.refresh``) materializes this once, so the joins with the
    attribute history, churns and events run once for all jobs instead of once per query per job.
    """
    params = ibis.memtable(
        {"_job": list(as_of_by_job), "_as_of": list(as_of_by_job.values())},
        schema={"_job": "string", "_as_of": "timestamp"},
    )
    e = warehouse.table(ENROLLMENTS_TABLE)
    e = e.inner_join(params, e.job_name == params._job)
    e = e.filter(e.entered_at <= e._as_of)
    units = e.select(
        job_name=e.job_name,
        _as_of=e._as_of,
        unit_id=e.enrollment_id,
        account_id=e.account_id,
        arm=e.arm,
        entered_at=e.entered_at,
        goal_at=ibis.ifelse(e.completed_at <= e._as_of, e.completed_at, ibis.null()),
        exited_at=ibis.ifelse(e.exited_at <= e._as_of, e.exited_at, ibis.null()),
        exit_reason=ibis.ifelse(e.exited_at <= e._as_of, e.exit_reason, ibis.null()),
    )
    if attributes:
        units = _with_attributes(warehouse, units, attributes)
    if warehouse.has_table(CHURN_TABLE):
        churns = warehouse.table(CHURN_TABLE).select("account_id", "churned_at")
        joined = units.select("unit_id", "account_id", "entered_at", "_as_of").inner_join(
            churns, "account_id"
        )
        first = (
            joined.filter(
                (joined.churned_at <= joined._as_of) & (joined.churned_at >= joined.entered_at)
            )
            .group_by("unit_id")
            .aggregate(first_churn=lambda t: t.churned_at.min())
        )
        units = _left_join_on_unit(units, first, churned_at="first_churn")
    else:
        units = units.mutate(churned_at=ibis.null("timestamp"))
    if prior_days:
        # The window ends at entry, never after the job's as-of time: no as-of filter needed.
        units = _with_prior_events(warehouse, units, prior_days, None)
    return units.drop("_as_of")


def _with_attributes(warehouse: Warehouse, units: ir.Table, attributes: Sequence[str]) -> ir.Table:
    accounts = warehouse.table("accounts")
    missing = [name for name in attributes if name not in accounts.columns]
    if missing:
        known = ", ".join(c for c in accounts.columns if c != "account_id")
        raise NotFoundError(
            f"accounts have no column {', '.join(missing)} to segment by; they have: {known}"
        )
    chosen = accounts.select("account_id", *attributes)
    units = units.left_join(chosen, "account_id").select(
        units, *(chosen[name] for name in attributes)
    )
    # Segments are pre-entry: each unit reads the values its account had when it entered.
    return history.as_of_each(
        warehouse,
        "account",
        units,
        row_key="unit_id",
        entity_key="account_id",
        at="entered_at",
        names=attributes,
    )


def _with_churn(warehouse: Warehouse, units: ir.Table, as_of: datetime) -> ir.Table:
    """Add ``churned_at``: the account's first churn (``churn_reasons``) at or after entry."""
    if not warehouse.has_table(CHURN_TABLE):
        return units.mutate(churned_at=ibis.null("timestamp"))
    churns = warehouse.table(CHURN_TABLE)
    churns = churns.filter(churns.churned_at <= as_of).select("account_id", "churned_at")
    joined = units.select("unit_id", "account_id", "entered_at").inner_join(churns, "account_id")
    first = (
        joined.filter(joined.churned_at >= joined.entered_at)
        .group_by("unit_id")
        .aggregate(first_churn=lambda t: t.churned_at.min())
    )
    return _left_join_on_unit(units, first, churned_at="first_churn")


def _with_prior_events(
    warehouse: Warehouse, units: ir.Table, days: int, as_of: datetime | None
) -> ir.Table:
    """Add ``prior_events``: the account's events in the ``days`` days before entry."""
    events = warehouse.table("events")
    if as_of is not None:
        events = events.filter(events.timestamp <= as_of)
    events = events.select("account_id", "timestamp")
    joined = units.select("unit_id", "account_id", "entered_at").inner_join(events, "account_id")
    start = joined.entered_at - ibis.interval(days=days)
    counted = (
        joined.filter((joined.timestamp >= start) & (joined.timestamp < joined.entered_at))
        .group_by("unit_id")
        .aggregate(events_before=lambda t: t.count())
    )
    joined = _left_join_on_unit(units, counted, prior_events="events_before")
    return joined.mutate(prior_events=joined.prior_events.fill_null(0).cast("float64"))


def _left_join_on_unit(units: ir.Table, per_unit: ir.Table, **columns: str) -> ir.Table:
    """``units`` with ``columns`` (new name: name in ``per_unit``) joined on ``unit_id``.

    The per-unit table's key is renamed first: Ibis resolves a shared key name of a join whose
    left side is itself a join to the right side's column, which is null where nothing matched.
    """
    keyed = per_unit.rename(_unit_key="unit_id")
    left = units.mutate(_left_key=units.unit_id)
    joined = left.left_join(keyed, left._left_key == keyed._unit_key)
    return joined.select(
        *(joined[name] for name in units.columns),
        **{new: joined[old] for new, old in columns.items()},
    )


def _with_cohort(units: ir.Table, name: str, members_as_of: CohortAsOf) -> ir.Table:
    """Add ``cohort:NAME``: was the unit's account in the cohort when the unit entered?"""
    times = sorted(units.select("entered_at").distinct().to_pyarrow().column(0).to_pylist())
    by_day = len(times) > MAX_COHORT_TIMES
    if by_day:
        times = sorted({datetime.combine(moment.date(), datetime.min.time()) for moment in times})
    memberships = [
        members_as_of(moment).select("account_id").distinct().mutate(at=ibis.timestamp(moment))
        for moment in times
    ]
    column = f"cohort:{name}"
    if not memberships:
        return units.mutate(**{column: ibis.literal("not in")})
    members = ibis.union(*memberships) if len(memberships) > 1 else memberships[0]
    key = units.entered_at.truncate("D") if by_day else units.entered_at
    keyed = units.mutate(_at=key)
    joined = keyed.left_join(
        members.rename(_member="account_id"),
        [keyed.account_id == members.account_id, keyed._at == members.at],
    )
    return joined.select(units, **{column: ibis.ifelse(joined._member.notnull(), "in", "not in")})


def _with_value(
    warehouse: Warehouse,
    units: ir.Table,
    outcome: ValueOutcome,
    horizon_days: float,
    as_of: datetime,
) -> ir.Table:
    events = warehouse.table("events")
    events = events.filter((events.name == outcome.event) & (events.timestamp <= as_of))
    joined = units.select("unit_id", "account_id", "entered_at").inner_join(
        events.select("account_id", "timestamp", "value"), "account_id"
    )
    entered_s = joined.entered_at.epoch_seconds()
    at_s = joined.timestamp.epoch_seconds()
    amount = joined.value.fill_null(0.0)
    in_window = (at_s >= entered_s) & (at_s <= entered_s + horizon_days * SECONDS_PER_DAY)
    before = (at_s < entered_s) & (at_s >= entered_s - outcome.covariate_days * SECONDS_PER_DAY)
    sums = joined.group_by("unit_id").aggregate(
        value=ibis.ifelse(in_window, amount, 0.0).sum(),
        covariate=ibis.ifelse(before, amount, 0.0).sum(),
    )
    joined = _left_join_on_unit(units, sums, value="value", covariate="covariate")
    return joined.mutate(
        value=joined.value.fill_null(0.0), covariate=joined.covariate.fill_null(0.0)
    )


def _pooled(arm: str, summaries: Sequence[ArmSummary]) -> ArmSummary:
    """Several arms' counts as one (the variants as the job's treatment)."""
    exits: dict[str, int] = {}
    for summary in summaries:
        for reason, count in summary.exited_by_reason.items():
            exits[reason] = exits.get(reason, 0) + count
    return ArmSummary(
        arm,
        sum(s.entered for s in summaries),
        sum(s.completed for s in summaries),
        exits,
        sum(s.active for s in summaries),
    )


def _arm_summaries(units: ir.Table) -> dict[str, dict[str, ArmSummary]]:
    """Entered, completed, exited by reason and active per assigned arm (or variant), by job
    (``job_name``; one job: the key is ``""``)."""
    part = units.job_name if "job_name" in units.columns else ibis.literal("")
    grouped = units.mutate(group=units.arm, _job=part)
    rows = (
        grouped.group_by(["_job", "group", "exit_reason"])
        .aggregate(
            entered=grouped.count(),
            completed=grouped.goal_at.notnull().sum(),
            exited=(grouped.exited_at.notnull() & grouped.goal_at.isnull()).sum(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    by_job: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_job.setdefault(str(row["_job"]), []).append(row)
    return {job: _summaries(job_rows) for job, job_rows in by_job.items()}


def _summaries(rows: Sequence[Mapping[str, object]]) -> dict[str, ArmSummary]:
    entered: dict[str, int] = {}
    completed: dict[str, int] = {}
    exits: dict[str, dict[str, int]] = {}
    for row in rows:
        group = str(row["group"])
        entered[group] = entered.get(group, 0) + _count(row["entered"])
        completed[group] = completed.get(group, 0) + _count(row["completed"])
        by_reason = exits.setdefault(group, {})
        if row["exited"]:
            reason = str(row["exit_reason"] or "unknown")
            by_reason[reason] = by_reason.get(reason, 0) + _count(row["exited"])
    return {
        group: ArmSummary(
            group,
            entered[group],
            completed[group],
            exits[group],
            entered[group] - completed[group] - sum(exits[group].values()),
        )
        for group in sorted(entered)
    }


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


@dataclass(frozen=True)
class JobToMeasure:
    """What a job's report needs besides its units (see :func:`build_job_report`)."""

    name: str
    as_of: datetime
    horizon_days: float
    holdout_fraction: float
    variants: tuple[tuple[str, float], ...] = ()
    adaptive: bool = False
    plan: LaunchPlan | None = None


VARIANTS_PART = "\x1fvariants"
"""Suffix of the measurement part of a job's variants (each against the holdout)."""


def _job_options(
    job: JobToMeasure,
    segment_by: Sequence[str],
    adjust_for: Sequence[str],
    value_outcome: ValueOutcome | None,
) -> tuple[MeasureOptions, MeasureOptions | None]:
    """The job's measurement options: pooled treatment, and its variants' (several variants)."""
    plan = job.plan
    options = MeasureOptions(
        horizon_days=job.horizon_days,
        control=HOLDOUT,
        as_of=job.as_of,
        weights={HOLDOUT: job.holdout_fraction, TREATMENT: 1.0 - job.holdout_fraction},
        segment_by=tuple(segment_by),
        value=value_outcome is not None,
        covariate="covariate" if value_outcome and value_outcome.covariate_days else None,
        looks_while_running=True,
        adjust_for=(*adjust_for, "prior_events"),
        competing=True,
        cap_percentile=CAP_PERCENTILE,
        sequential_tuning=plan.units if plan is not None else FALLBACK_TUNING,
        planned_baseline=plan.baseline if plan is not None else None,
        planned_effect=plan.relative_effect if plan is not None else None,
    )
    if len(job.variants) <= 1:
        return options, None
    total = sum(weight for _, weight in job.variants)
    weights = {HOLDOUT: job.holdout_fraction}
    weights.update(
        {name: (1.0 - job.holdout_fraction) * weight / total for name, weight in job.variants}
    )
    variant_options = replace(
        options,
        weights=None if job.adaptive else weights,
        pooled_headline=False,  # the job as a whole is the measurement above
    )
    return options, variant_options


def measure_job_units(
    warehouse: Warehouse,
    units: ir.Table,
    jobs: Sequence[JobToMeasure],
    *,
    segment_by: Sequence[str] = ("segment",),
    revenue_horizons: Sequence[int] | None = REVENUE_HORIZONS,
) -> dict[str, JobReport]:
    """Every job's report from ``units`` of all of them (a ``job_name`` column; the columns of
    :func:`job_units` with churn and prior events): one measurement of every job together
    (:func:`~closeloop.analysis.measurement.measure_parts`), the pooled treatment and, for jobs
    with variants, each variant, so the warehouse answers the same queries for 20 jobs as for 1.
    """
    account_columns = warehouse.table("accounts").columns
    adjust_for = [name for name in ADJUST_FOR if name in account_columns]
    by_arm = _arm_summaries(units)
    options_by_part: dict[str, MeasureOptions] = {}
    for job in jobs:
        pooled, variants = _job_options(job, segment_by, adjust_for, None)
        options_by_part[job.name] = pooled
        if variants is not None:
            options_by_part[job.name + VARIANTS_PART] = variants
    pooled_units = units.mutate(
        arm=ibis.ifelse(units.arm == HOLDOUT, HOLDOUT, TREATMENT), _part=units.job_name
    )
    with_variants = [job.name for job in jobs if len(job.variants) > 1]
    parts = pooled_units
    if with_variants:
        chosen = units.filter(units.job_name.isin(with_variants))
        parts = pooled_units.union(chosen.mutate(_part=chosen.job_name + VARIANTS_PART))
    measurements = measure_parts(parts, options_by_part)
    revenues: dict[str, RevenueValue] = {}
    if revenue_horizons and warehouse.has_table("subscriptions"):
        revenues = revenue_values(
            warehouse,
            units.mutate(**{REVENUE_PART: units.job_name}),
            {job.name: job.as_of for job in jobs},
            control=HOLDOUT,
            horizons=revenue_horizons,
        )
    return {
        job.name: _report(
            job,
            by_arm.get(job.name, {}),
            measurements[job.name],
            measurements.get(job.name + VARIANTS_PART),
            revenue=revenues.get(job.name),
        )
        for job in jobs
    }


def build_job_report(
    warehouse: Warehouse,
    job_name: str,
    *,
    as_of: datetime,
    horizon_days: float,
    holdout_fraction: float,
    variants: Sequence[tuple[str, float]] = (),
    segment_by: Sequence[str] = ("segment",),
    value_outcome: ValueOutcome | None = None,
    adaptive: bool = False,
    cohorts: Mapping[str, CohortAsOf] | None = None,
    revenue_horizons: Sequence[int] | None = REVENUE_HORIZONS,
    comparison_units: ir.Table | None = None,
    match_on: Sequence[str] = MATCH_ON,
    plan: LaunchPlan | None = None,
) -> JobReport:
    """Measure a job from the enrollments published to the warehouse (``publish_enrollments``).

    ``variants`` are the job's ``(name, weight)`` pairs (none: one ``treatment`` arm);
    ``adaptive`` says their shares moved over time (Thompson allocation), so the variants' split
    is not checked against the weights and their comparisons carry a warning. A job's report may
    be read while it runs, so alpha is split between the always-valid results (tuned for ``plan``,
    stored at launch; without one, for FALLBACK_TUNING units) and the fixed-horizon result.
    """
    account_columns = warehouse.table("accounts").columns
    adjust_for = [name for name in ADJUST_FOR if name in account_columns]
    units = job_units(
        warehouse,
        job_name,
        as_of=as_of,
        attributes=tuple(dict.fromkeys([*segment_by, *adjust_for])),
        value_outcome=value_outcome,
        horizon_days=horizon_days,
        cohorts=cohorts,
        churn=True,
        prior_days=PRIOR_DAYS,
    )
    # Kept in the warehouse while the report is measured: the arm summaries, the measurements
    # and the revenue value read it instead of repeating its joins with history and events.
    kept = units.cache()
    try:
        return _build(
            warehouse,
            kept,
            JobToMeasure(
                job_name, as_of, horizon_days, holdout_fraction, tuple(variants), adaptive, plan
            ),
            segment_by=(*segment_by, *(f"cohort:{name}" for name in cohorts or {})),
            adjust_for=adjust_for,
            value_outcome=value_outcome,
            revenue_horizons=revenue_horizons,
            comparison_units=comparison_units,
            match_on=match_on,
        )
    finally:
        kept.release()


def _build(
    warehouse: Warehouse,
    units: ir.Table,
    job: JobToMeasure,
    *,
    segment_by: Sequence[str],
    adjust_for: Sequence[str],
    value_outcome: ValueOutcome | None,
    revenue_horizons: Sequence[int] | None,
    comparison_units: ir.Table | None,
    match_on: Sequence[str],
) -> JobReport:
    options, variant_options = _job_options(job, segment_by, adjust_for, value_outcome)
    pooled_units = units.mutate(arm=ibis.ifelse(units.arm == HOLDOUT, HOLDOUT, TREATMENT))
    measurement = measure_units(pooled_units, options)
    variant_measurement = (
        measure_units(units, variant_options) if variant_options is not None else None
    )
    revenue = None
    if revenue_horizons and warehouse.has_table("subscriptions"):
        revenue = revenue_value(
            warehouse, units, as_of=job.as_of, control=HOLDOUT, horizons=revenue_horizons
        )
    matched = None
    if comparison_units is not None:
        pooled_units = units.mutate(arm=ibis.ifelse(units.arm == HOLDOUT, HOLDOUT, TREATMENT))
        matched = observational_comparison(
            warehouse,
            pooled_units,
            comparison_units,
            as_of=job.as_of,
            horizon_days=job.horizon_days,
            match_on=match_on,
        )
    return _report(
        job,
        _arm_summaries(units).get("", {}),
        measurement,
        variant_measurement,
        value_outcome=value_outcome,
        revenue=revenue,
        matched=matched,
    )


def _report(
    job: JobToMeasure,
    by_arm: dict[str, ArmSummary],
    measurement: Measurement,
    variant_measurement: Measurement | None,
    *,
    value_outcome: ValueOutcome | None = None,
    revenue: RevenueValue | None = None,
    matched: MatchedComparison | None = None,
) -> JobReport:
    """A job's report from its measurements (pooled, and per variant), arm summaries, revenue
    value and, for a job without a holdout, its matched comparison."""
    as_of, horizon_days, plan = job.as_of, job.horizon_days, job.plan
    variant_summaries: dict[str, ArmSummary] = {}
    warnings = list(measurement.warnings)
    if plan is None and matched is None:
        warnings.append(
            "no power plan was stored when this job launched: its always-valid results are "
            f"tuned for {FALLBACK_TUNING:,} units (valid, but widest far from that size)"
        )
    if variant_measurement is not None:
        variant_summaries = {name: summary for name, summary in by_arm.items() if name != HOLDOUT}
        warnings.extend(
            f"variants: {warning}"
            for warning in variant_measurement.warnings
            if warning.startswith("sample ratio")
        )
        if job.adaptive:
            warnings.append(
                "variants were allocated adaptively (Thompson sampling): their shares changed "
                "over time, so each variant's units entered at different times than the "
                "holdout's and the other variants'; variant comparisons can be confounded by "
                "trends over time (the job-as-a-whole lift against the holdout is not)"
            )
    status = measurement.status
    if matched is not None:
        status = matched.status
        warnings = [
            "no randomized holdout (observational job): the effect below comes from a matched "
            "comparison with accounts that were eligible but not enrolled; it is the effect on "
            "the treated under the assumption that the matched attributes explain who was "
            "enrolled",
            *matched.warnings,
            *(w for w in warnings if not w.startswith(f"no unit is in the {HOLDOUT!r}")),
        ]
    arms = {
        HOLDOUT: _pooled(HOLDOUT, [s for name, s in by_arm.items() if name == HOLDOUT]),
        TREATMENT: _pooled(TREATMENT, [s for name, s in by_arm.items() if name != HOLDOUT]),
    }
    return JobReport(
        job_name=job.name,
        as_of=as_of,
        horizon_days=horizon_days,
        holdout_fraction=job.holdout_fraction,
        arms=arms,
        variants=variant_summaries,
        measurement=measurement,
        variant_measurement=variant_measurement,
        value_outcome=value_outcome,
        status=status,
        warnings=warnings,
        revenue=revenue,
        matched=matched,
        plan=plan,
    )


def observational_comparison(
    warehouse: Warehouse,
    units: ir.Table,
    comparison_units: ir.Table,
    *,
    as_of: datetime,
    horizon_days: float,
    match_on: Sequence[str] = MATCH_ON,
) -> MatchedComparison:
    """Match a job's enrollments (arm ``treatment``) to eligible accounts that were not enrolled.

    ``comparison_units`` has ``unit_id, account_id, entered_at, goal_at`` (time zero aligned to
    when each account first became eligible, see
    :func:`~closeloop.analysis.matching.eligible_comparison_units`). Both sides get the accounts'
    attributes and ``tenure_days`` (days from signup to entry); ``match_on`` names those to match
    on (attributes the accounts table lacks are skipped). Estimand: the effect on the treated.
    """

    def shaped(table: ir.Table, arm: str) -> ir.Table:
        return table.select(
            unit_id=table.unit_id.cast("string"),
            account_id=table.account_id.cast("string"),
            entered_at=table.entered_at.cast("timestamp"),
            goal_at=table.goal_at.cast("timestamp"),
            arm=ibis.literal(arm, "string"),
        )

    treated = shaped(units, TREATMENT)
    comparison = shaped(comparison_units, COMPARISON)
    both = treated.union(comparison)
    accounts = warehouse.table("accounts")
    attributes = [name for name in match_on if name in accounts.columns and name != "account_id"]
    chosen = accounts.select("account_id", "created_at", *attributes)
    joined = both.left_join(chosen, "account_id")
    columns: dict[str, ir.Value] = {name: joined[name] for name in attributes}
    if "tenure_days" in match_on:
        columns["tenure_days"] = (
            joined.entered_at.epoch_seconds() - joined.created_at.epoch_seconds()
        ) / SECONDS_PER_DAY
    matched_units = joined.select(
        "unit_id", "account_id", "arm", "entered_at", "goal_at", **columns
    )
    return match_units(
        matched_units,
        treated=TREATMENT,
        comparison=COMPARISON,
        covariates=list(columns),
        horizon_days=horizon_days,
        as_of=as_of,
    )


def delivery_warnings(deliveries: Mapping[str, ArmDeliveries]) -> list[str]:
    """What the report must say about deliveries: treated units that received nothing.

    An intention-to-treat lift is honest either way, but a treated arm nobody was treated in
    measures nothing about the intervention, so it is said first and plainly.
    """
    warnings: list[str] = []
    treated = [arm for name, arm in deliveries.items() if name != HOLDOUT]
    units = sum(arm.units for arm in treated)
    reached = sum(arm.units_reached for arm in treated)
    planned = sum(sum(arm.by_status.values()) for arm in treated)
    if not units or not planned:
        return warnings
    statuses: dict[str, int] = {}
    for arm in treated:
        for status, count in arm.by_status.items():
            statuses[status] = statuses.get(status, 0) + count
    failed = ", ".join(
        f"{statuses[status]:,} {status}"
        for status in ("not_sent", "dead", "skipped", "pending", "cancelled")
        if statuses.get(status)
    )
    if reached == 0:
        hint = (
            " (a backfill without --send records messages as not_sent)"
            if statuses.get("not_sent")
            else ""
        )
        warnings.append(
            f"the treated units received nothing: {units:,} treated enrollments, 0 messages "
            f"sent ({failed}){hint}; the lift below compares arms that were treated alike"
        )
    elif reached < units:
        warnings.append(
            f"{units - reached:,} of {units:,} treated units received no message so far "
            f"({failed}); the lift is intention to treat and includes them"
        )
    return warnings


def version_warnings(versions: Sequence[tuple[int, int]], changes: Sequence[str]) -> list[str]:
    """A job edited after launch: which versions its enrollments ran under, what changed."""
    if len(versions) < 2 and not changes:
        return []
    used = ", ".join(f"v{version} ({count:,} enrollments)" for version, count in versions)
    what = f"; {'; '.join(changes)}" if changes else ""
    return [
        f"the job was edited after launch: enrollments ran under {used}{what} "
        "(see `closeloop definitions history` and the audit log)"
    ]
