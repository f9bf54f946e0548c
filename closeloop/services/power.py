"""Power use cases: what a job can detect for a volume and baseline, and how long it must run.

``closeloop power --weekly N --baseline P`` plans from numbers a person gives. ``--job NAME``
estimates both from data:

- **weekly volume**: if the job has enrolled anyone after its launch tick and has ticked for at
  least a day, those enrollments per week (divided by the days from the launch to the latest tick,
  times 7; the launch's backlog is not counted). Otherwise the audience's *new entrants* per week
  over the last four weeks: the units that match the audience (and no exclusion) at each of the
  weekly points T−21d, T−14d, T−7d and T that did not match one week earlier, averaged over the four
  weeks. A unit that enters and leaves the audience within one week is missed, and units the engine
  would block (re-entry, contact policy) are counted. T is ``as_of``, else the latest event in the
  warehouse.
- **baseline completion rate**: if the job has holdout enrollments whose horizon has passed by its
  latest tick, the share of them that completed within the horizon. Otherwise the share of units
  in the audience at T−horizon whose goal held, as the engine would see it, by T (every member of
  the audience then, not only fresh entrants, so it leans towards accounts further along).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow.compute as pc

from closeloop.data.compiler import eligible_units, goal_reached_at
from closeloop.data.frame import unit_key
from closeloop.definitions.expressions import Entity
from closeloop.definitions.project import LoadedJob
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.state import LaunchPlan
from closeloop.errors import CloseloopError, ConfigurationError, NotFoundError
from closeloop.services.project import Workspace
from closeloop.services.reports import horizon_of
from closeloop.stats.anytime import SEQUENTIAL_SHARE
from closeloop.stats.power import (
    DurationPlan,
    EnrollmentPlan,
    SequentialCost,
    plan_duration,
    plan_enrollment,
    sequential_cost,
)

DEFAULT_WEEKS = (2, 4, 8, 12)
DEFAULT_PLANNED_WEEKS = 8.0
LOOKBACK_WEEKS = 4


@dataclass(frozen=True)
class PowerRequest:
    """The inputs of a plan: volume, baseline, holdout, horizon and what to compute."""

    weekly_volume: float
    baseline_rate: float
    holdout_fraction: float = 0.2
    horizon_days: float = 30.0
    weeks: tuple[float, ...] = DEFAULT_WEEKS
    effect: float | None = None  # a target absolute lift: how long to detect it
    alpha: float = 0.05
    power: float = 0.8


@dataclass(frozen=True)
class Estimate:
    """A number estimated from data, with where it came from (``source``) and how (``detail``)."""

    value: float
    source: str
    detail: str


@dataclass(frozen=True)
class JobEstimates:
    """What ``closeloop power --job`` read from the job and its data."""

    job_name: str
    as_of: datetime
    weekly_volume: Estimate
    baseline_rate: Estimate
    planned_weeks: Estimate
    effect_source: str | None  # "given", "hypothesis.minimum_effect" or None


@dataclass(frozen=True)
class PowerPlan:
    """MDE per week count, the duration for the target effect, and warnings."""

    request: PowerRequest
    plans: list[EnrollmentPlan]
    duration: DurationPlan | None
    job: JobEstimates | None = None
    planned: EnrollmentPlan | None = None  # at the job's planned duration
    underpowered: bool | None = None  # planned MDE above the target effect
    warnings: list[str] = field(default_factory=list)
    sequential: SequentialCost | None = None  # a job's: what looking at it while it runs costs


def plan_power(request: PowerRequest) -> PowerPlan:
    """Plan from given numbers: the MDE for each week count, and the duration for ``effect``."""
    _check(request)
    plans = [_plan(request, weeks) for weeks in request.weeks]
    duration = None
    warnings: list[str] = []
    if request.effect is not None:
        duration = plan_duration(
            request.weekly_volume,
            request.baseline_rate,
            request.effect,
            holdout_fraction=request.holdout_fraction,
            horizon_days=request.horizon_days,
            alpha=request.alpha,
            power=request.power,
        )
        if duration.code == "no_volume":
            warnings.append("no units enter per week: the job can never detect the effect")
    if request.weekly_volume <= 0:
        warnings.append("the weekly volume is 0: nothing can be detected")
    return PowerPlan(request, plans, duration, warnings=warnings)


def plan_job_power(
    workspace: Workspace,
    job_name: str,
    *,
    baseline_rate: float | None = None,
    weekly_volume: float | None = None,
    effect: float | None = None,
    weeks: Sequence[float] = DEFAULT_WEEKS,
    as_of: datetime | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> PowerPlan:
    """Plan for a job of the project, estimating what is not given from its data (module doc).

    The job's planned duration is ``ends_at - starts_at`` when both are set, else 8 weeks; the
    plan is ``underpowered`` when the MDE at that duration exceeds the target effect (``effect``,
    else the hypothesis' ``minimum_effect``).
    """
    job = workspace.project.job(job_name)
    definition = job.definition
    if definition.holdout <= 0:
        raise ConfigurationError(
            f"job {job_name!r} has no holdout (observational): power for a randomized comparison "
            "does not apply; it is measured by matching"
        )
    horizon = horizon_of(definition)
    moment = as_of or _latest_time(workspace)
    volume = (
        Estimate(weekly_volume, "given", "--weekly")
        if weekly_volume is not None
        else _weekly_volume(workspace, job, moment)
    )
    baseline = (
        Estimate(baseline_rate, "given", "--baseline")
        if baseline_rate is not None
        else _baseline(workspace, job, moment, horizon)
    )
    if not 0 < baseline.value < 1:
        raise NotFoundError(
            f"the estimated baseline of {job_name!r} is {baseline.value:.0%} ({baseline.detail}), "
            "which leaves nothing to detect; pass --baseline"
        )
    if definition.starts_at is not None and definition.ends_at is not None:
        span = (definition.ends_at - definition.starts_at).total_seconds() / 86_400
        planned_weeks = Estimate(span / 7, "schedule", "ends_at - starts_at")
    else:
        planned_weeks = Estimate(DEFAULT_PLANNED_WEEKS, "default", "no starts_at/ends_at: 8 weeks")
    hypothesis_effect = definition.hypothesis.minimum_effect if definition.hypothesis else None
    target = effect if effect is not None else hypothesis_effect
    effect_source = (
        "given"
        if effect is not None
        else "hypothesis.minimum_effect"
        if hypothesis_effect is not None
        else None
    )
    request = PowerRequest(
        weekly_volume=volume.value,
        baseline_rate=baseline.value,
        holdout_fraction=definition.holdout,
        horizon_days=horizon,
        weeks=tuple(weeks),
        effect=target,
        alpha=alpha,
        power=power,
    )
    plan = plan_power(request)
    planned = _plan(request, planned_weeks.value)
    warnings = list(plan.warnings)
    underpowered = None
    if target is not None and not math.isnan(planned.mde_absolute):
        underpowered = planned.mde_absolute > target
        if underpowered:
            warnings.append(
                f"underpowered: at its planned {planned_weeks.value:g} weeks the job can detect "
                f"{planned.mde_absolute * 100:.1f} pp, more than the {target * 100:.1f} pp "
                "expected; enroll longer, widen the audience or raise the holdout towards 0.5"
            )
    if baseline.source == "audience":
        warnings.append(
            "baseline estimated from the whole audience at T−horizon, not from a holdout; "
            "pass --baseline if you know better"
        )
    estimates = JobEstimates(job_name, moment, volume, baseline, planned_weeks, effect_source)
    cost = None
    if not math.isnan(planned.mde_absolute):
        cost = sequential_cost(
            planned.units,
            baseline.value,
            holdout_fraction=definition.holdout,
            alpha=alpha,
            running_share=SEQUENTIAL_SHARE,
            power=power,
        )
    return PowerPlan(
        request,
        plan.plans,
        plan.duration,
        job=estimates,
        planned=planned,
        underpowered=underpowered,
        warnings=warnings,
        sequential=cost,
    )


def launch_plan(workspace: Workspace, job_name: str, at: datetime) -> LaunchPlan | None:
    """The plan stored with a job's launch (N*, baseline, effect), or None when none can be made.

    N* is the units the job should enroll over its planned duration at the volume seen as of
    ``at``; the effect is the hypothesis' ``minimum_effect`` relative to the baseline, else the
    lift the plan can detect.
    """
    definition = workspace.project.job(job_name).definition
    if definition.holdout <= 0:
        return None
    try:
        plan = plan_job_power(workspace, job_name, as_of=at)
    except CloseloopError:
        return None
    planned, job = plan.planned, plan.job
    if planned is None or job is None or math.isnan(planned.mde_absolute) or planned.units < 1:
        return None
    baseline = job.baseline_rate.value
    target = definition.hypothesis.minimum_effect if definition.hypothesis else None
    effect = target / baseline if target is not None else planned.mde_relative
    return LaunchPlan(planned.units, baseline, effect)


def _check(request: PowerRequest) -> None:
    if not 0 < request.baseline_rate < 1:
        raise ConfigurationError(
            f"the baseline completion rate must be between 0 and 1 (got {request.baseline_rate})"
        )
    if not 0 < request.holdout_fraction < 1:
        raise ConfigurationError(
            f"the holdout fraction must be between 0 and 1 (got {request.holdout_fraction})"
        )
    if request.effect is not None and not 0 < request.baseline_rate + request.effect < 1:
        raise ConfigurationError(
            f"an effect of {request.effect:g} on a baseline of {request.baseline_rate:g} leaves "
            "the completion rate outside 0..1"
        )
    if request.effect == 0:
        raise ConfigurationError("the target effect must not be 0")


def _plan(request: PowerRequest, weeks: float) -> EnrollmentPlan:
    return plan_enrollment(
        request.weekly_volume,
        request.baseline_rate,
        weeks,
        holdout_fraction=request.holdout_fraction,
        horizon_days=request.horizon_days,
        alpha=request.alpha,
        power=request.power,
    )


def _latest_time(workspace: Workspace) -> datetime:
    events = workspace.warehouse.table("events")
    latest = events.timestamp.max().to_pyarrow().as_py()
    if latest is None:
        raise NotFoundError(
            "the warehouse has no events to estimate from; pass --as-of, or --weekly and --baseline"
        )
    return latest if isinstance(latest, datetime) else datetime.fromisoformat(str(latest))


def _weekly_volume(workspace: Workspace, job: LoadedJob, moment: datetime) -> Estimate:
    enrollments = workspace.store.enrollments_table(job.name)
    last_tick = workspace.store.last_tick(job.name)
    if enrollments.num_rows and last_tick is not None:
        # The launch tick enrolls the audience's backlog at once: the volume is what entered after.
        first = pc.min(enrollments["entered_at"]).as_py()
        later = int(pc.sum(pc.greater(enrollments["entered_at"], first)).as_py() or 0)
        days = (last_tick - first).total_seconds() / 86_400
        if later and days >= 1:
            return Estimate(
                later / days * 7,
                "enrollments",
                f"{later} enrollments after the launch's over {days:g} days "
                f"({first:%Y-%m-%d} to {last_tick:%Y-%m-%d}; the launch's backlog of "
                f"{enrollments.num_rows - later} not counted)",
            )
    points = [moment - timedelta(weeks=k) for k in range(LOOKBACK_WEEKS, -1, -1)]
    entrants = []
    previous = _eligible(workspace, job, points[0])
    for point in points[1:]:
        current = _eligible(workspace, job, point)
        key = unit_key(Entity(job.definition.target))
        entrants.append(int(current.anti_join(previous, key).count().execute()))
        previous = current
    return Estimate(
        sum(entrants) / len(entrants),
        "audience",
        "new audience members per week at "
        + ", ".join(f"{point:%Y-%m-%d}" for point in points[1:])
        + ": "
        + ", ".join(str(count) for count in entrants),
    )


def _eligible(workspace: Workspace, job: LoadedJob, at: datetime) -> ir.Table:
    """Units in the audience and in no exclusion as of ``at`` (one column, the unit key)."""
    target = Entity(job.definition.target)
    key = unit_key(target)
    catalog = workspace.project.catalog
    units = eligible_units(
        job.audience, job.exclusions, workspace.warehouse, at, catalog, target
    ).select(key)
    return units.distinct()


def _baseline(
    workspace: Workspace, job: LoadedJob, moment: datetime, horizon_days: float
) -> Estimate:
    horizon = timedelta(days=horizon_days)
    last_tick = workspace.store.last_tick(job.name)
    if last_tick is not None:
        rows = workspace.store.enrollments_table(job.name)
        holdout = [
            row
            for row in rows.select(["arm", "entered_at", "completed_at"]).to_pylist()
            if row["arm"] == HOLDOUT and row["entered_at"] + horizon <= last_tick
        ]
        if holdout:
            completed = sum(
                row["completed_at"] is not None
                and row["completed_at"] <= row["entered_at"] + horizon
                for row in holdout
            )
            return Estimate(
                completed / len(holdout),
                "holdout",
                f"{completed} of {len(holdout)} matured holdout enrollments completed within "
                f"{horizon_days:g} days",
            )
    start = moment - horizon
    target = Entity(job.definition.target)
    key = unit_key(target)
    candidates = _eligible(workspace, job, start).mutate(entered_at=ibis.timestamp(start))
    members = int(candidates.count().execute())
    if members == 0:
        raise NotFoundError(
            f"nobody was in the audience of {job.name!r} at {start:%Y-%m-%d}, so the baseline "
            "cannot be estimated; pass --baseline"
        )
    reached = goal_reached_at(
        job.goal, workspace.warehouse, moment, candidates, workspace.project.catalog, target
    )
    completed = int(reached.filter(reached.reached_at <= moment)[key].nunique().execute())
    return Estimate(
        completed / members,
        "audience",
        f"{completed} of {members} units in the audience at {start:%Y-%m-%d} reached the goal "
        f"by {moment:%Y-%m-%d}",
    )


def plan_to_dict(plan: PowerPlan) -> dict[str, Any]:
    """A JSON-ready dict of the plan (``nan`` and ``inf`` as ``null``)."""

    def enrollment(item: EnrollmentPlan) -> dict[str, Any]:
        return asdict(item)

    payload: dict[str, Any] = {
        "inputs": asdict(plan.request),
        "plans": [enrollment(item) for item in plan.plans],
        "duration": (
            {**asdict(plan.duration), "weeks": plan.duration.weeks}
            if plan.duration is not None
            else None
        ),
        "job": None,
        "planned": enrollment(plan.planned) if plan.planned is not None else None,
        "underpowered": plan.underpowered,
        "warnings": plan.warnings,
        "sequential": asdict(plan.sequential) if plan.sequential is not None else None,
    }
    if plan.job is not None:
        payload["job"] = {**asdict(plan.job), "as_of": plan.job.as_of.isoformat()}
    return _finite(payload)  # type: ignore[no-any-return]


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def launch_check(workspace: Workspace, job_name: str, at: datetime) -> list[str]:
    """What a person launching a job should hear about its power (empty: nothing to say).

    Run when a job ticks for the first time: the minimum detectable effect at its planned
    duration, from the data as of ``at``, and a warning when that exceeds the hypothesis'
    ``minimum_effect``. Jobs without a holdout, and estimates the data cannot support, give a
    message saying why instead of failing the tick.
    """
    definition = workspace.project.job(job_name).definition
    if definition.holdout <= 0:
        return []
    try:
        plan = plan_job_power(workspace, job_name, as_of=at)
    except CloseloopError as problem:
        return [f"{job_name}: power not estimated at launch ({problem})"]
    if plan.planned is None or math.isnan(plan.planned.mde_absolute):
        return [f"{job_name}: power not estimated at launch (no volume or baseline)"]
    assert plan.job is not None
    summary = (
        f"{job_name}: at about {plan.job.weekly_volume.value:,.0f} entries a week and a "
        f"{plan.job.baseline_rate.value:.0%} baseline, its planned "
        f"{plan.job.planned_weeks.value:.3g} weeks can detect a lift of "
        f"{plan.planned.mde_absolute * 100:.1f} pp (80% power)"
    )
    return [summary, *(f"{job_name}: {w}" for w in plan.warnings if w.startswith("underpowered"))]
