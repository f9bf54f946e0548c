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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

import ibis
import ibis.expr.types as ir
import pyarrow.compute as pc

from closeloop.data import history
from closeloop.data.compiler import (
    audience_flags,
    eligible_units,
    goal_candidates,
    goal_reached_at,
    goals_reached_at,
)
from closeloop.data.frame import unit_key
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity
from closeloop.definitions.project import LoadedJob
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.state import LaunchPlan
from closeloop.errors import CloseloopError, ConfigurationError, NotFoundError
from closeloop.schemas.planning import (
    DEFAULT_WEEKS,
    DurationPlan,
    EnrollmentPlan,
    JobEstimates,
    PlanEstimate,
    PowerInputs,
    PowerPlan,
    SequentialCost,
)
from closeloop.services.definitions import naive_utc
from closeloop.services.project import Workspace
from closeloop.services.reports import horizon_of
from closeloop.stats import power as stats_power
from closeloop.stats.anytime import SEQUENTIAL_SHARE

DEFAULT_PLANNED_WEEKS = 8.0
LOOKBACK_WEEKS = 4

# Bounds that keep every computed size finite (a plan for a billion units a week is a typo).
MAX_WEEKLY_VOLUME = 1e9
MIN_WEEKLY_VOLUME = 1e-3
HOLDOUT_RANGE = (0.01, 0.99)
ALPHA_RANGE = (1e-6, 0.5)
POWER_RANGE = (0.05, 0.999999)
MAX_WEEKS = 520.0
MAX_PLANS = 52
MAX_HORIZON_DAYS = 3650.0
MIN_EFFECT = 1e-4
# Launching jobs estimated per warehouse query (per target). The jobs of one query share a frame
# per distinct time (their audiences are flags of one table; per-unit tables they have in common
# are computed once), so building and compiling no longer grow with the number of jobs × times.
LAUNCH_BATCH = 50


def plan_power(inputs: PowerInputs) -> PowerPlan:
    """Plan from given numbers: the MDE for each week count, and the duration for ``effect``.

    Inputs outside their ranges (a baseline not strictly between 0 and 1, …) raise
    :class:`~closeloop.errors.ConfigurationError` naming the input.
    """
    _check(inputs)
    plans = [_plan(inputs, weeks) for weeks in inputs.weeks]
    duration = None
    warnings: list[str] = []
    if inputs.effect is not None:
        computed = stats_power.plan_duration(
            inputs.weekly_volume,
            inputs.baseline_rate,
            inputs.effect,
            holdout_fraction=inputs.holdout_fraction,
            horizon_days=inputs.horizon_days,
            alpha=inputs.alpha,
            power=inputs.power,
        )
        duration = DurationPlan(
            effect=computed.effect,
            units=computed.units,
            enrollment_days=computed.enrollment_days,
            days_until_result=computed.days_until_result,
            code=computed.code,
            weeks=computed.weeks,
        )
        if computed.code == "no_volume":
            warnings.append("no units enter per week: the job can never detect the effect")
    if inputs.weekly_volume <= 0:
        warnings.append("the weekly volume is 0: nothing can be detected")
    return PowerPlan(inputs=inputs, plans=plans, duration=duration, warnings=warnings)


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
    else the hypothesis' ``minimum_effect``). An unknown job raises
    :class:`~closeloop.errors.NotFoundError`.
    """
    job = workspace.project.job(job_name)
    definition = job.definition
    if definition.holdout <= 0:
        raise ConfigurationError(
            f"job {job_name!r} has no holdout (observational): power for a randomized comparison "
            "does not apply; it is measured by matching"
        )
    horizon = horizon_of(definition)
    moment = naive_utc(as_of) if as_of is not None else _latest_time(workspace)
    estimated = _launch_estimate(workspace, job, moment)
    volume = (
        PlanEstimate(value=weekly_volume, source="given", detail="--weekly")
        if weekly_volume is not None
        else estimated.volume
        if estimated is not None
        else _weekly_volume(workspace, job, moment)
    )
    baseline = (
        PlanEstimate(value=baseline_rate, source="given", detail="--baseline")
        if baseline_rate is not None
        else estimated.baseline_estimate()
        if estimated is not None
        else _baseline(workspace, job, moment, horizon)
    )
    if baseline.source != "given" and not 0 < baseline.value < 1:
        raise NotFoundError(
            f"the estimated baseline of {job_name!r} is {baseline.value:.0%} ({baseline.detail}), "
            "which leaves nothing to detect; pass --baseline"
        )
    if definition.starts_at is not None and definition.ends_at is not None:
        span = (definition.ends_at - definition.starts_at).total_seconds() / 86_400
        planned_weeks = PlanEstimate(
            value=span / 7, source="schedule", detail="ends_at - starts_at"
        )
    else:
        planned_weeks = PlanEstimate(
            value=DEFAULT_PLANNED_WEEKS, source="default", detail="no starts_at/ends_at: 8 weeks"
        )
    hypothesis_effect = definition.hypothesis.minimum_effect if definition.hypothesis else None
    target = effect if effect is not None else hypothesis_effect
    effect_source = (
        "given"
        if effect is not None
        else "hypothesis.minimum_effect"
        if hypothesis_effect is not None
        else None
    )
    inputs = PowerInputs(
        weekly_volume=volume.value,
        baseline_rate=baseline.value,
        holdout_fraction=definition.holdout,
        horizon_days=horizon,
        weeks=list(weeks),
        effect=target,
        alpha=alpha,
        power=power,
    )
    plan = plan_power(inputs)
    planned = _plan(inputs, planned_weeks.value)
    warnings = list(plan.warnings)
    underpowered = None
    if target is not None and planned.mde_absolute is not None:
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
    estimates = JobEstimates(
        job_name=job_name,
        as_of=moment,
        weekly_volume=volume,
        baseline_rate=baseline,
        planned_weeks=planned_weeks,
        effect_source=effect_source,
    )
    cost = None
    if planned.mde_absolute is not None and planned.units is not None:
        computed = stats_power.sequential_cost(
            planned.units,
            baseline.value,
            holdout_fraction=definition.holdout,
            alpha=alpha,
            running_share=SEQUENTIAL_SHARE,
            power=power,
        )
        cost = SequentialCost(
            units=computed.units,
            running_alpha=computed.running_alpha,
            final_alpha=computed.final_alpha,
            width_ratio=computed.width_ratio,
            units_implied=computed.units_implied,
            final_ratio=computed.final_ratio,
            mde_final=computed.mde_final,
        )
    return PowerPlan(
        inputs=inputs,
        plans=plan.plans,
        duration=plan.duration,
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
    if (
        planned is None
        or job is None
        or planned.mde_absolute is None
        or planned.units is None
        or planned.units < 1
    ):
        return None
    baseline = job.baseline_rate.value
    target = definition.hypothesis.minimum_effect if definition.hypothesis else None
    relative = planned.mde_relative if planned.mde_relative is not None else math.nan
    effect = target / baseline if target is not None else relative
    return LaunchPlan(planned.units, baseline, effect)


def _check(inputs: PowerInputs) -> None:
    """Every input in its range, so every size computed from them is finite."""
    ranges = (
        ("weekly volume", inputs.weekly_volume, 0.0, MAX_WEEKLY_VOLUME, True),
        ("baseline completion rate", inputs.baseline_rate, 0.0, 1.0, False),
        ("holdout fraction", inputs.holdout_fraction, *HOLDOUT_RANGE, True),
        ("horizon in days", inputs.horizon_days, 0.0, MAX_HORIZON_DAYS, True),
        ("alpha", inputs.alpha, *ALPHA_RANGE, True),
        ("power", inputs.power, *POWER_RANGE, True),
        *(("number of weeks", weeks, 0.0, MAX_WEEKS, True) for weeks in inputs.weeks),
    )
    for name, value, lower, upper, closed in ranges:
        inside = lower <= value <= upper if closed else lower < value < upper
        if not math.isfinite(value) or not inside:
            between = (
                f"from {lower:g} to {upper:g}" if closed else f"between {lower:g} and {upper:g}"
            )
            raise ConfigurationError(f"the {name} must be {between} (got {value:g})")
    if 0 < inputs.weekly_volume < MIN_WEEKLY_VOLUME:
        raise ConfigurationError(
            f"a weekly volume of {inputs.weekly_volume:g} is too small to plan with "
            f"(give 0, or at least {MIN_WEEKLY_VOLUME:g})"
        )
    if len(inputs.weeks) > MAX_PLANS:
        raise ConfigurationError(
            f"plan for at most {MAX_PLANS} durations at once (got {len(inputs.weeks)})"
        )
    effect = inputs.effect
    if effect is None:
        return
    if not math.isfinite(effect) or abs(effect) < MIN_EFFECT:
        raise ConfigurationError(
            f"the target effect must be a lift of at least {MIN_EFFECT:g} either way "
            f"(got {effect:g}); 0.05 is 5 percentage points"
        )
    if not 0 < inputs.baseline_rate + effect < 1:
        raise ConfigurationError(
            f"an effect of {effect:g} on a baseline of {inputs.baseline_rate:g} leaves "
            "the completion rate outside 0..1"
        )


def _plan(inputs: PowerInputs, weeks: float) -> EnrollmentPlan:
    computed = stats_power.plan_enrollment(
        inputs.weekly_volume,
        inputs.baseline_rate,
        weeks,
        holdout_fraction=inputs.holdout_fraction,
        horizon_days=inputs.horizon_days,
        alpha=inputs.alpha,
        power=inputs.power,
    )
    return EnrollmentPlan(
        weeks=computed.weeks,
        units=computed.units,
        n_holdout=computed.n_holdout,
        n_treated=computed.n_treated,
        baseline_rate=computed.baseline_rate,
        mde_absolute=computed.mde_absolute,
        mde_relative=computed.mde_relative,
        days_until_result=computed.days_until_result,
        code=computed.code,
    )


def _latest_time(workspace: Workspace) -> datetime:
    events = workspace.warehouse.table("events")
    latest = events.timestamp.max().to_pyarrow().as_py()
    if latest is None:
        raise NotFoundError(
            "the warehouse has no events to estimate from; pass --as-of, or --weekly and --baseline"
        )
    return latest if isinstance(latest, datetime) else datetime.fromisoformat(str(latest))


def _weekly_volume(workspace: Workspace, job: LoadedJob, moment: datetime) -> PlanEstimate:
    enrollments = workspace.store.enrollments_table(job.name)
    last_tick = workspace.store.last_tick(job.name)
    if enrollments.num_rows and last_tick is not None:
        # The launch tick enrolls the audience's backlog at once: the volume is what entered after.
        first = pc.min(enrollments["entered_at"]).as_py()
        later = int(pc.sum(pc.greater(enrollments["entered_at"], first)).as_py() or 0)
        days = (last_tick - first).total_seconds() / 86_400
        if later and days >= 1:
            return PlanEstimate(
                value=later / days * 7,
                source="enrollments",
                detail=f"{later} enrollments after the launch's over {days:g} days "
                f"({first:%Y-%m-%d} to {last_tick:%Y-%m-%d}; the launch's backlog of "
                f"{enrollments.num_rows - later} not counted)",
            )
    points = _lookback_points(moment)
    entrants = []
    previous = _eligible(workspace, job, points[0])
    for point in points[1:]:
        current = _eligible(workspace, job, point)
        key = unit_key(Entity(job.definition.target))
        entrants.append(int(current.anti_join(previous, key).count().execute()))
        previous = current
    return _audience_volume(points, entrants)


def _lookback_points(moment: datetime) -> list[datetime]:
    """T−4w, T−3w, …, T: the weekly points new audience members are counted between."""
    return [moment - timedelta(weeks=k) for k in range(LOOKBACK_WEEKS, -1, -1)]


def _audience_volume(points: Sequence[datetime], entrants: Sequence[int]) -> PlanEstimate:
    return PlanEstimate(
        value=sum(entrants) / len(entrants),
        source="audience",
        detail="new audience members per week at "
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
) -> PlanEstimate:
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
            return PlanEstimate(
                value=completed / len(holdout),
                source="holdout",
                detail=f"{completed} of {len(holdout)} matured holdout enrollments completed "
                f"within {horizon_days:g} days",
            )
    start = moment - horizon
    target = Entity(job.definition.target)
    key = unit_key(target)
    candidates = _eligible(workspace, job, start).mutate(entered_at=ibis.timestamp(start))
    members = int(candidates.count().execute())
    if members == 0:
        raise _nobody_at_start(job, start)
    reached = goal_reached_at(
        job.goal, workspace.warehouse, moment, candidates, workspace.project.catalog, target
    )
    completed = int(reached.filter(reached.reached_at <= moment)[key].nunique().execute())
    return _audience_baseline(start, moment, members, completed)


def _nobody_at_start(job: LoadedJob, start: datetime) -> NotFoundError:
    return NotFoundError(
        f"nobody was in the audience of {job.name!r} at {start:%Y-%m-%d}, so the baseline "
        "cannot be estimated; pass --baseline"
    )


def _audience_baseline(
    start: datetime, moment: datetime, members: int, completed: int
) -> PlanEstimate:
    return PlanEstimate(
        value=completed / members,
        source="audience",
        detail=f"{completed} of {members} units in the audience at {start:%Y-%m-%d} reached the "
        f"goal by {moment:%Y-%m-%d}",
    )


# -- launch estimates: once per launching job, shared by its checks and its plan --------------


@dataclass(frozen=True)
class _LaunchEstimate:
    """A never-ticked job's weekly volume and baseline from its audience (or why there is no
    baseline: nobody was in the audience at T−horizon)."""

    volume: PlanEstimate
    baseline: PlanEstimate | NotFoundError

    def baseline_estimate(self) -> PlanEstimate:
        if isinstance(self.baseline, NotFoundError):
            raise self.baseline
        return self.baseline


# Per warehouse connection: (job, content hash, as of) -> estimate. `closeloop tick --launch`
# prints the launch checks and then stores each job's launch plan; both read the one estimate.
_LAUNCH_ESTIMATES: WeakKeyDictionary[Warehouse, dict[tuple[str, str, datetime], _LaunchEstimate]]
_LAUNCH_ESTIMATES = WeakKeyDictionary()


def _launch_estimate(
    workspace: Workspace, job: LoadedJob, moment: datetime
) -> _LaunchEstimate | None:
    found = _LAUNCH_ESTIMATES.get(workspace.warehouse, {})
    estimate = found.get((job.name, job.content_hash, moment))
    if estimate is None or workspace.store.last_tick(job.name) is not None:
        return None  # a job that has ticked estimates from its own enrollments
    return estimate


def estimate_launches(
    workspace: Workspace, names: Iterable[str], at: datetime, *, batch: int = LAUNCH_BATCH
) -> None:
    """Estimate the weekly volume and baseline of every job of ``names`` that has never ticked
    and has a holdout, as of ``at``, in one warehouse query per ``batch`` jobs;
    :func:`plan_job_power` (and so :func:`launch_check` and :func:`launch_plan`) then uses them
    for those jobs, so a launch estimates each job once, not once per caller.

    The numbers are the ones the per-job estimates give (module doc): new audience members at
    each weekly point, and the audience at T−horizon with how many reached the goal by T.
    """
    moment = naive_utc(at)
    cache = _LAUNCH_ESTIMATES.setdefault(workspace.warehouse, {})
    jobs = []
    for name in names:
        job = workspace.project.job(name)
        if job.definition.holdout <= 0 or (job.name, job.content_hash, moment) in cache:
            continue
        if workspace.store.last_tick(name) is None:
            jobs.append(job)
    points = _lookback_points(moment)
    counts: dict[tuple[int, str], int] = {}
    # Estimates write no attribute history: which attributes have some is asked once.
    with history.recorded_names_fixed():
        for first in range(0, len(jobs), batch):
            chunk = jobs[first : first + batch]
            for (index, measure), value in _launch_counts(workspace, chunk, points, moment).items():
                counts[(first + index, measure)] = value
    for index, job in enumerate(jobs):
        entrants = [counts.get((index, f"entrants_{k}"), 0) for k in range(1, len(points))]
        start = moment - timedelta(days=horizon_of(job.definition))
        members = counts.get((index, "members"), 0)
        baseline: PlanEstimate | NotFoundError = (
            _audience_baseline(start, moment, members, counts.get((index, "completed"), 0))
            if members
            else _nobody_at_start(job, start)
        )
        cache[(job.name, job.content_hash, moment)] = _LaunchEstimate(
            _audience_volume(points, entrants), baseline
        )


def _launch_counts(
    workspace: Workspace, jobs: Sequence[LoadedJob], points: Sequence[datetime], moment: datetime
) -> dict[tuple[int, str], int]:
    """Per (job index, measure): ``entrants_k`` (units in the audience at point k and not at
    point k−1), ``members`` (in the audience at T−horizon) and ``completed`` (of those, how many
    reached the goal by T).

    Per target, every job's audience at one time is a flag of one
    :func:`~closeloop.data.compiler.audience_flags` query on a frame the jobs share (one query
    per distinct time), and every job's goal one branch of one
    :func:`~closeloop.data.compiler.goals_reached_at` query.
    """
    counts: dict[tuple[int, str], int] = {}
    for target in Entity:
        group = [index for index, job in enumerate(jobs) if Entity(job.definition.target) == target]
        if group:
            found = _target_counts(workspace, [jobs[i] for i in group], points, moment, target)
            counts.update(
                {(group[position], measure): n for (position, measure), n in found.items()}
            )
    return counts


def _target_counts(
    workspace: Workspace,
    group: Sequence[LoadedJob],
    points: Sequence[datetime],
    moment: datetime,
    target: Entity,
) -> dict[tuple[int, str], int]:
    """:func:`_launch_counts` of jobs of one target, by position in ``group``."""
    warehouse, catalog = workspace.warehouse, workspace.project.catalog
    key = unit_key(target)
    starts = [moment - timedelta(days=horizon_of(job.definition)) for job in group]
    audiences = [(job.audience, job.exclusions) for job in group]
    members: dict[datetime, list[set[str]]] = {}
    for at in dict.fromkeys([*points, *starts]):
        # Fetched, not a CTE: an engine may evaluate a CTE once per reference (a frame per job).
        flags = audience_flags(audiences, warehouse, at, catalog, target).to_pyarrow()
        members[at] = [
            set(flags.filter(flags.column(f"_a{position}")).column(key).to_pylist())
            for position in range(len(group))
        ]
    counts: dict[tuple[int, str], int] = {}
    for position, start in enumerate(starts):
        for k in range(1, len(points)):
            entered = members[points[k]][position] - members[points[k - 1]][position]
            counts[(position, f"entrants_{k}")] = len(entered)
        counts[(position, "members")] = len(members[start][position])
    rows = [
        (position, unit, start)
        for position, start in enumerate(starts)
        for unit in sorted(members[start][position])
    ]
    if not rows:
        return counts
    candidates = goal_candidates(target, rows)
    reached = goals_reached_at(
        [job.goal for job in group],
        warehouse,
        moment,
        candidates,
        catalog,
        target,
        entered_since=min(starts),
    )
    reached = reached.filter(reached.reached_at <= moment)
    completed = reached.group_by("_goal").aggregate(value=reached[key].nunique())
    for row in completed.to_pyarrow().to_pylist():
        counts[(int(row["_goal"]), "completed")] = int(row["value"])
    return counts


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
    if plan.planned is None or plan.planned.mde_absolute is None:
        return [f"{job_name}: power not estimated at launch (no volume or baseline)"]
    assert plan.job is not None
    summary = (
        f"{job_name}: at about {plan.job.weekly_volume.value:,.0f} entries a week and a "
        f"{plan.job.baseline_rate.value:.0%} baseline, its planned "
        f"{plan.job.planned_weeks.value:.3g} weeks can detect a lift of "
        f"{plan.planned.mde_absolute * 100:.1f} pp (80% power)"
    )
    return [summary, *(f"{job_name}: {w}" for w in plan.warnings if w.startswith("underpowered"))]
