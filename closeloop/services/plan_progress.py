"""Statuses, progress and milestones of success-plan objectives, derived from an objective, its
renegotiations and its observations as of a time (pure: no store, no warehouse).

An objective is **met** when an observation on or before the end of its latest agreed target
date is at or beyond the latest agreed target (so a renegotiated objective is met when the
renegotiated target is met by its date), **missed** when that day has ended without, **dropped**
when a person dropped it, and **open** otherwise. Progress is ``(value - baseline) / (target -
baseline)``, so a decreasing target (fewer tickets) progresses as the value falls; milestones are
progress 0.5, 0.8 and 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from closeloop.engine.plans import (
    MANUAL,
    ObjectiveRow,
    ObservationRow,
    PlanState,
    RenegotiationRow,
    VersionRow,
)
from closeloop.schemas.plans import (
    AchievedGroup,
    Milestone,
    Objective,
    ObjectiveStatus,
    Observation,
    Plan,
    PlanVersion,
    Renegotiation,
)
from closeloop.stats.proportions import wilson_bounds

MILESTONES = (0.5, 0.8, 1.0)
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the two-sided 95% normal quantile
_TOLERANCE = 1e-9  # progress computed in floating point: 0.8 of the way must count as 0.8


def deadline(target_date: date) -> datetime:
    """The end of the agreed day: an observation before it counts as on time."""
    return datetime(target_date.year, target_date.month, target_date.day) + timedelta(days=1)


def progress(value: float, baseline: float, target: float) -> float | None:
    """The share of the way from baseline to target (None when they are equal)."""
    if target == baseline:
        return None
    return (value - baseline) / (target - baseline)


def _reached(value: float, baseline: float, target: float, threshold: float) -> bool:
    share = progress(value, baseline, target)
    return share is not None and share >= threshold - _TOLERANCE


def objective_model(
    row: ObjectiveRow,
    renegotiations: Sequence[RenegotiationRow],
    observations: Sequence[ObservationRow],
    as_of: datetime,
) -> Objective:
    """An objective with its status, milestones and progress from the observations up to
    ``as_of`` (``observations`` sorted by time)."""
    seen = [o for o in observations if o.observed_at <= as_of]
    due = deadline(row.target_date)
    met_at = next(
        (
            o.observed_at
            for o in seen
            if o.observed_at < due and _reached(o.value, row.baseline, row.target, 1.0)
        ),
        None,
    )
    status: ObjectiveStatus
    if row.dropped_at is not None and row.dropped_at <= as_of:
        status = "dropped"
    elif met_at is not None:
        status = "met"
    elif as_of >= due:
        status = "missed"
    else:
        status = "open"
    latest = seen[-1] if seen else None
    first = renegotiations[0] if renegotiations else None
    return Objective(
        id=row.id,
        title=row.title,
        measure=row.measure,
        baseline=row.baseline,
        target=row.target,
        target_date=row.target_date,
        original_target=first.old_target if first else row.target,
        original_target_date=first.old_target_date if first else row.target_date,
        owner=row.owner,
        status=status,
        met_at=met_at,
        latest_value=latest.value if latest else None,
        latest_observed_at=latest.observed_at if latest else None,
        progress=progress(latest.value, row.baseline, row.target) if latest else None,
        milestones=[
            Milestone(
                threshold=threshold,
                value=row.baseline + threshold * (row.target - row.baseline),
                reached_at=next(
                    (
                        o.observed_at
                        for o in seen
                        if _reached(o.value, row.baseline, row.target, threshold)
                    ),
                    None,
                ),
            )
            for threshold in MILESTONES
        ],
        renegotiations=[
            Renegotiation(
                old_target=r.old_target,
                old_target_date=r.old_target_date,
                new_target=r.new_target,
                new_target_date=r.new_target_date,
                reason=r.reason,
                agreed_by=r.agreed_by,
                recorded_by=r.recorded_by,
                recorded_at=r.recorded_at,
            )
            for r in renegotiations
        ],
        observations=[
            Observation(
                observed_at=o.observed_at,
                value=o.value,
                source="manual" if o.source == MANUAL else "expression",
                recorded_by=o.recorded_by,
                recorded_at=o.recorded_at,
            )
            for o in seen
        ],
    )


def objectives_of(
    state: PlanState, observations: Sequence[ObservationRow], as_of: datetime
) -> list[Objective]:
    by_objective: dict[int, list[ObservationRow]] = defaultdict(list)
    for observation in observations:
        by_objective[observation.objective_id].append(observation)
    renegotiations: dict[int, list[RenegotiationRow]] = defaultdict(list)
    for renegotiation in state.renegotiations:
        renegotiations[renegotiation.objective_id].append(renegotiation)
    return [
        objective_model(row, renegotiations[row.id], by_objective[row.id], as_of)
        for row in state.objectives
    ]


def plan_model(
    state: PlanState,
    observations: Sequence[ObservationRow],
    versions: Sequence[VersionRow],
    as_of: datetime,
    latest_version: int,
) -> Plan:
    plan = state.plan
    return Plan(
        id=plan.id,
        account_id=plan.account_id,
        title=plan.title,
        owner=plan.owner,
        version=plan.version,
        latest_version=latest_version,
        created_at=plan.created_at,
        created_by=plan.created_by,
        updated_at=plan.updated_at,
        updated_by=plan.updated_by,
        as_of=as_of,
        objectives=objectives_of(state, observations, as_of),
        versions=[
            PlanVersion(version=v.version, at=v.at, actor=v.actor, change=v.change)
            for v in versions
            if v.version <= plan.version
        ],
    )


def achieved_group(group: str, statuses: Sequence[ObjectiveStatus]) -> AchievedGroup:
    """The share met among decided objectives (met or missed) with its Wilson interval."""
    met = sum(status == "met" for status in statuses)
    decided = sum(status in ("met", "missed") for status in statuses)
    if decided == 0:
        return AchievedGroup(
            group=group, decided=0, met=0, missed=0, rate=None, lower=None, upper=None
        )
    lower, upper = wilson_bounds(float(met), float(decided), _Z)
    return AchievedGroup(
        group=group,
        decided=decided,
        met=met,
        missed=decided - met,
        rate=met / decided,
        lower=float(lower),
        upper=float(upper),
    )
