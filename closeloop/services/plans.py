"""Success plans: objectives agreed with a customer, their progress, renegotiations, versions,
and the goals-achieved rate (docs/success-plans.md).

Statuses and milestones are derived, never stored: an objective is **met** when an observation
on or before the end of its latest agreed target date is at or beyond the latest agreed target
(so a renegotiated objective is met when the renegotiated target is met by its date),
**missed** when that day has ended without, **dropped** when a person dropped it, and **open**
otherwise. Progress is ``(value - baseline) / (target - baseline)``, so a decreasing target
(fewer tickets) progresses as the value falls; milestones are progress 0.5, 0.8 and 1.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Connection

from closeloop.data.plan_measures import account_column, existing_accounts, measure_values
from closeloop.engine import plans as store_plans
from closeloop.engine.plans import (
    MANUAL,
    NewObjective,
    ObjectiveRow,
    ObservationRow,
    PlanState,
    RenegotiationRow,
)
from closeloop.engine.state import utc_now
from closeloop.errors import CloseloopError, LocatedError, NotFoundError, redact
from closeloop.schemas.plans import (
    AchievedGroup,
    CheckedValue,
    CheckFailure,
    GoalsAchieved,
    Milestone,
    Objective,
    ObjectiveInput,
    ObjectiveStatus,
    ObjectiveUpdate,
    Observation,
    Plan,
    PlanCheck,
    PlanCreate,
    PlanList,
    PlanSummary,
    PlanVersion,
    Renegotiation,
    RenegotiationRequest,
)
from closeloop.services.plan_objectives import check_objectives, load_objectives, measure_of
from closeloop.services.project import Workspace
from closeloop.stats.proportions import wilson_bounds

log = logging.getLogger("closeloop.plans")

MILESTONES = (0.5, 0.8, 1.0)
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the two-sided 95% normal quantile
_TOLERANCE = 1e-9  # progress computed in floating point: 0.8 of the way must count as 0.8
NO_OWNER = "(no owner)"
NO_SEGMENT = "(no segment)"


# -- derivation (pure) -------------------------------------------------------------------------


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


def _objectives(
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
    versions: Sequence[store_plans.VersionRow],
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
        objectives=_objectives(state, observations, as_of),
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


# -- reading -------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return utc_now() if now is None else now


def _observations(workspace: Workspace, state: PlanState) -> list[ObservationRow]:
    return store_plans.observations(workspace.store, [o.id for o in state.objectives])


def show_plan(
    workspace: Workspace,
    plan_id: int,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> Plan:
    """A plan now (or as of ``at``); with ``version``, as that version left it, with the
    statuses of the moment it was written."""
    current = store_plans.plan_state(workspace.store, plan_id)
    versions = store_plans.versions(workspace.store, plan_id)
    if version is None:
        state, as_of = current, _now(at)
    else:
        state = store_plans.state_at_version(workspace.store, plan_id, version)
        as_of = next(v.at for v in versions if v.version == version)
    return plan_model(state, _observations(workspace, state), versions, as_of, current.plan.version)


def plans_for_account(
    workspace: Workspace, account_id: str, at: datetime | None = None
) -> list[Plan]:
    """Every success plan of an account as it stands now, or as it stood at ``at`` (statuses
    from the observations up to then; plans created after ``at`` left out). The churn review
    reads these as of each churn."""
    plans = [
        show_plan(workspace, plan_id, at=at)
        for plan_id in store_plans.plan_ids(workspace.store, account_id=account_id)
    ]
    if at is None:
        return plans
    limit = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return [plan for plan in plans if plan.created_at <= limit]


def list_plans(
    workspace: Workspace,
    *,
    account_id: str | None = None,
    owner: str | None = None,
    status: ObjectiveStatus | None = None,
    at: datetime | None = None,
) -> PlanList:
    """Plans (of an account, of an owner: the plan's or an objective's), each counted by
    objective status; ``status`` keeps the plans with an objective in that status."""
    as_of = _now(at)
    for name, text in (("account", account_id), ("owner", owner)):
        if text is not None and ("\x00" in text or not text.strip()):
            raise LocatedError(f"the {name} filter is empty or holds a NUL character")
    summaries = []
    for plan_id in store_plans.plan_ids(workspace.store, account_id=account_id, owner=owner):
        state = store_plans.plan_state(workspace.store, plan_id)
        objectives = _objectives(state, _observations(workspace, state), as_of)
        statuses = [o.status for o in objectives]
        if status is not None and status not in statuses:
            continue
        open_dates = [o.target_date for o in objectives if o.status == "open"]
        summaries.append(
            PlanSummary(
                id=state.plan.id,
                account_id=state.plan.account_id,
                title=state.plan.title,
                owner=state.plan.owner,
                version=state.plan.version,
                updated_at=state.plan.updated_at,
                objectives=len(objectives),
                open=statuses.count("open"),
                met=statuses.count("met"),
                missed=statuses.count("missed"),
                dropped=statuses.count("dropped"),
                next_target_date=min(open_dates) if open_dates else None,
            )
        )
    return PlanList(as_of=as_of, plans=summaries)


# -- writing -------------------------------------------------------------------------------


def _new_objectives(
    workspace: Workspace, account_id: str, objectives: Sequence[ObjectiveInput], now: datetime
) -> list[NewObjective]:
    """Objectives checked against the project's vocabulary, each measured baseline evaluated
    in the warehouse as of ``now``."""
    vocabulary = workspace.project.catalog.vocabulary
    check_objectives(list(objectives), vocabulary)
    new = []
    for objective in objectives:
        baseline = objective.baseline
        measure = measure_of(objective.measure, vocabulary)
        if measure is not None:
            baseline = measure_values(
                workspace.warehouse,
                measure.node,
                [account_id],
                now,
                is_condition=measure.is_condition,
                catalog=workspace.project.catalog,
            )[account_id]
            if baseline is None:
                raise LocatedError(
                    f"objective {objective.title!r}: {objective.measure!r} has no value for "
                    f"account {account_id!r} as of {now:%Y-%m-%d %H:%M}",
                    hint="measure something the account has a value for, or make it manual",
                )
            if baseline == objective.target:
                raise LocatedError(
                    f"objective {objective.title!r}: the target equals today's value "
                    f"({baseline:g}): there is nothing to progress towards",
                    hint="agree a target above or below today's value",
                )
        assert baseline is not None  # check_objectives requires it of manual measures
        new.append(
            NewObjective(
                title=objective.title,
                measure=objective.measure,
                baseline=baseline,
                target=objective.target,
                target_date=objective.target_date,
                owner=objective.owner,
            )
        )
    return new


def _check_account(workspace: Workspace, account_id: str) -> None:
    if account_id not in existing_accounts(workspace.warehouse, [account_id]):
        raise NotFoundError(
            f"no account {account_id!r} in the warehouse; a plan belongs to an imported account "
            "(check the id with `closeloop accounts`)"
        )


def objectives_file(workspace: Workspace, path: Path) -> list[ObjectiveInput]:
    """The objectives of a YAML file, every problem located (DefinitionErrors)."""
    return load_objectives(path, workspace.project.catalog.vocabulary)


def create_plan(
    workspace: Workspace, request: PlanCreate, *, actor: str, now: datetime | None = None
) -> Plan:
    """A new plan (version 1) for an account, with its objectives' baselines recorded."""
    moment = _now(now)
    _check_account(workspace, request.account_id)
    new = _new_objectives(workspace, request.account_id, request.objectives, moment)
    state = store_plans.create_plan(
        workspace.store,
        account_id=request.account_id,
        title=request.title,
        owner=request.owner,
        objectives=new,
        actor=actor,
        now=moment,
    )
    return show_plan(workspace, state.plan.id, at=moment)


def add_objectives(
    workspace: Workspace,
    plan_id: int,
    objectives: Sequence[ObjectiveInput],
    *,
    expected_version: int | None,
    actor: str,
    now: datetime | None = None,
) -> Plan:
    moment = _now(now)
    current = store_plans.plan_state(workspace.store, plan_id)
    new = _new_objectives(workspace, current.plan.account_id, objectives, moment)

    def apply(connection: Connection, _state: PlanState) -> None:
        store_plans.add_objectives(connection, plan_id, new, actor=actor, now=moment)

    titles = ", ".join(repr(o.title) for o in new)
    store_plans.change_plan(
        workspace.store,
        plan_id,
        expected_version=expected_version,
        actor=actor,
        now=moment,
        change=f"added {titles}",
        apply=apply,
    )
    return show_plan(workspace, plan_id, at=moment)


def _objective(state: PlanState, objective_id: int) -> ObjectiveRow:
    for row in state.objectives:
        if row.id == objective_id:
            return row
    known = ", ".join(str(o.id) for o in state.objectives) or "none"
    raise NotFoundError(
        f"success plan {state.plan.id} has no objective {objective_id} (its objectives: {known})"
    )


def update_objective(
    workspace: Workspace,
    plan_id: int,
    objective_id: int,
    update: ObjectiveUpdate,
    *,
    actor: str,
    now: datetime | None = None,
) -> Plan:
    """Change an objective's title or owner, drop it, or record a manual value (now)."""
    moment = _now(now)
    row = _objective(store_plans.plan_state(workspace.store, plan_id), objective_id)
    if (update.title, update.owner, update.status, update.value) == (None, None, None, None):
        raise LocatedError(
            "nothing to change", hint="give a value, a status (dropped), an owner or a title"
        )
    if update.value is not None and row.measure != MANUAL:
        raise LocatedError(
            f"objective {objective_id} is measured by {row.measure!r}; its values come from "
            "`closeloop plans check`",
            hint="record values only for manual objectives",
        )
    if update.status == "dropped" and row.dropped_at is not None:
        raise LocatedError(f"objective {objective_id} is already dropped")
    values: dict[str, object] = {}
    changes = []
    if update.title is not None:
        values["title"] = update.title
        changes.append(f"title {update.title!r}")
    if update.owner is not None:
        values["owner"] = update.owner
        changes.append(f"owner {update.owner!r}")
    if update.status == "dropped":
        values["dropped_at"] = moment
        changes.append("dropped")
    if update.value is not None:
        changes.append(f"value {update.value:g}")

    def apply(connection: Connection, _state: PlanState) -> None:
        if values:
            store_plans.update_objective_row(connection, objective_id, values)
        if update.value is not None:
            store_plans.insert_observation(
                connection,
                ObservationRow(
                    objective_id=objective_id,
                    observed_at=moment,
                    value=update.value,
                    source=MANUAL,
                    recorded_by=actor,
                    recorded_at=moment,
                ),
            )

    store_plans.change_plan(
        workspace.store,
        plan_id,
        expected_version=update.version,
        actor=actor,
        now=moment,
        change=f"objective {objective_id}: " + ", ".join(changes),
        apply=apply,
    )
    return show_plan(workspace, plan_id, at=moment)


def renegotiate(
    workspace: Workspace,
    plan_id: int,
    objective_id: int,
    request: RenegotiationRequest,
    *,
    actor: str,
    now: datetime | None = None,
) -> Plan:
    """Agree a new target (and date) with the customer; the old one stays in the history."""
    moment = _now(now)
    row = _objective(store_plans.plan_state(workspace.store, plan_id), objective_id)
    if row.dropped_at is not None:
        raise LocatedError(f"objective {objective_id} is dropped; there is nothing to renegotiate")
    new_date = request.target_date or row.target_date
    if request.target == row.baseline:
        raise LocatedError(
            f"the new target equals the baseline ({row.baseline:g}): nothing to progress towards",
            hint="agree a target above or below the baseline",
        )
    if request.target == row.target and new_date == row.target_date:
        raise LocatedError(
            f"objective {objective_id} already has target {row.target:g} by {row.target_date}",
            hint="give a different --target or --date",
        )
    renegotiation = RenegotiationRow(
        id=0,
        objective_id=objective_id,
        old_target=row.target,
        old_target_date=row.target_date,
        new_target=request.target,
        new_target_date=new_date,
        reason=request.reason,
        agreed_by=request.agreed_by,
        recorded_by=actor,
        recorded_at=moment,
    )

    def apply(connection: Connection, _state: PlanState) -> None:
        store_plans.insert_renegotiation(connection, renegotiation)

    store_plans.change_plan(
        workspace.store,
        plan_id,
        expected_version=request.version,
        actor=actor,
        now=moment,
        change=(
            f"objective {objective_id}: target {row.target:g} by {row.target_date} -> "
            f"{request.target:g} by {new_date} (agreed by {request.agreed_by})"
        ),
        apply=apply,
    )
    return show_plan(workspace, plan_id, at=moment)


def update_plan(
    workspace: Workspace,
    plan_id: int,
    *,
    title: str | None,
    owner: str | None,
    expected_version: int | None,
    actor: str,
    now: datetime | None = None,
) -> Plan:
    """Change a plan's title or owner."""
    moment = _now(now)
    values = {k: v for k, v in (("title", title), ("owner", owner)) if v is not None}
    if not values:
        raise LocatedError("nothing to change", hint="give a title or an owner")

    def apply(connection: Connection, _state: PlanState) -> None:
        store_plans.update_plan_row(connection, plan_id, values)

    store_plans.change_plan(
        workspace.store,
        plan_id,
        expected_version=expected_version,
        actor=actor,
        now=moment,
        change="plan: " + ", ".join(f"{k} {v!r}" for k, v in values.items()),
        apply=apply,
    )
    return show_plan(workspace, plan_id, at=moment)


# -- values over time ----------------------------------------------------------------------


def check(
    workspace: Workspace,
    at: datetime | None = None,
    *,
    actor: str,
    once_a_day: bool = False,
) -> PlanCheck:
    """Evaluate every open expression objective as of ``at`` in the warehouse and record the
    values. A measure that fails (a definition changed under it, a warehouse error) fails for
    its objectives alone, with the reason. ``once_a_day`` (the daemon) skips objectives that
    already have a value from this UTC day."""
    moment = _now(at)
    found = store_plans.open_expression_objectives(workspace.store)
    observations = store_plans.observations(workspace.store, [o.id for _, o in found])
    by_objective: dict[int, list[ObservationRow]] = defaultdict(list)
    for observation in observations:
        by_objective[observation.objective_id].append(observation)
    pending = [
        (plan, row)
        for plan, row in found
        if row.created_at <= moment
        and objective_model(row, [], by_objective[row.id], moment).status == "open"
    ]
    if once_a_day:
        done = store_plans.observed_on(workspace.store, [o.id for _, o in pending], moment.date())
        pending = [(plan, row) for plan, row in pending if row.id not in done]
    groups: dict[str, list[tuple[store_plans.PlanRow, ObjectiveRow]]] = defaultdict(list)
    for plan, row in pending:
        groups[row.measure].append((plan, row))
    values: list[CheckedValue] = []
    failures: list[CheckFailure] = []
    rows: list[ObservationRow] = []
    vocabulary = workspace.project.catalog.vocabulary
    for text, members in groups.items():
        accounts = sorted({plan.account_id for plan, _ in members})
        try:
            measure = measure_of(text, vocabulary)
            assert measure is not None
            found_values = measure_values(
                workspace.warehouse,
                measure.node,
                accounts,
                moment,
                is_condition=measure.is_condition,
                catalog=workspace.project.catalog,
            )
        except (CloseloopError, ValueError, RuntimeError) as error:
            reason = redact(str(error).splitlines()[0] if str(error) else type(error).__name__)
            failures += [
                CheckFailure(
                    plan_id=plan.id, objective_id=row.id, account_id=plan.account_id, reason=reason
                )
                for plan, row in members
            ]
            continue
        for plan, row in members:
            value = found_values.get(plan.account_id)
            if value is None:
                failures.append(
                    CheckFailure(
                        plan_id=plan.id,
                        objective_id=row.id,
                        account_id=plan.account_id,
                        reason=f"no value for account {plan.account_id!r} as of {moment}",
                    )
                )
                continue
            values.append(
                CheckedValue(
                    plan_id=plan.id, objective_id=row.id, account_id=plan.account_id, value=value
                )
            )
            rows.append(
                ObservationRow(
                    objective_id=row.id,
                    observed_at=moment,
                    value=value,
                    source=store_plans.EXPRESSION,
                    recorded_by=actor,
                    recorded_at=utc_now(),
                )
            )
    recorded = store_plans.record_observations(workspace.store, rows, actor)
    return PlanCheck(
        at=moment,
        evaluated=len(pending),
        recorded=recorded,
        values=values,
        failures=sorted(failures, key=lambda f: f.objective_id),
    )


def daily_check(workspace: Workspace, at: datetime) -> PlanCheck | None:
    """The daemon's check: at most one value per objective and UTC day; a failure is logged
    and never stops the cycle's ticks (None then)."""
    try:
        result = check(workspace, at, actor="closeloop run", once_a_day=True)
    except Exception as error:  # any failure here must not stop the daemon's ticks
        log.warning("success-plan check at %s failed: %s", at, redact(str(error)))
        return None
    for failure in result.failures:
        log.warning(
            "success-plan %s objective %s: %s",
            failure.plan_id,
            failure.objective_id,
            failure.reason,
        )
    return result


# -- goals achieved ------------------------------------------------------------------------


def goals_achieved(
    workspace: Workspace, at: datetime | None = None, *, by: str = "csm"
) -> GoalsAchieved:
    """Among objectives decided by ``at`` (met by then, or whose agreed date has passed),
    the share met, overall and per CSM (the objective's owner, else the plan's) or per
    account segment (as of ``at``), each with a Wilson interval.

    Point in time: each plan as its latest version at or before ``at`` left it (the targets
    agreed by then), with the observations made by then; dropped objectives do not count.
    """
    if by not in ("csm", "segment"):
        raise LocatedError(f"cannot group by {by!r}", hint="use csm or segment")
    moment = _now(at)
    states = store_plans.states_as_of(workspace.store, moment)
    observations = store_plans.observations(
        workspace.store, [o.id for state in states for o in state.objectives]
    )
    segments: dict[str, str | None] = {}
    if by == "segment":
        segments = account_column(
            workspace.warehouse,
            "segment",
            sorted({state.plan.account_id for state in states}),
            moment,
            workspace.project.catalog,
        )
    grouped: dict[str, list[ObjectiveStatus]] = defaultdict(list)
    every: list[ObjectiveStatus] = []
    for state in states:
        for objective in _objectives(state, observations, moment):
            if objective.status == "dropped":
                continue
            if by == "csm":
                group = objective.owner or state.plan.owner or NO_OWNER
            else:
                group = segments.get(state.plan.account_id) or NO_SEGMENT
            grouped[group].append(objective.status)
            every.append(objective.status)
    return GoalsAchieved(
        at=moment,
        by="csm" if by == "csm" else "segment",
        confidence=CONFIDENCE,
        overall=achieved_group("overall", every),
        groups=[achieved_group(group, grouped[group]) for group in sorted(grouped)],
    )
