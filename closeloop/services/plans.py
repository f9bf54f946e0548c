"""Success plans: objectives agreed with a customer, their progress, renegotiations, versions,
and the goals-achieved rate (docs/success-plans.md).

Statuses, progress and milestones are derived, never stored (``services.plan_progress``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
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
from closeloop.errors import LocatedError, NotFoundError, redact
from closeloop.schemas.plans import (
    CheckedValue,
    CheckFailure,
    GoalsAchieved,
    ObjectiveInput,
    ObjectiveStatus,
    ObjectiveUpdate,
    Plan,
    PlanCheck,
    PlanCreate,
    PlanList,
    PlanSummary,
    RenegotiationRequest,
)
from closeloop.services.plan_objectives import check_objectives, load_objectives, measure_of
from closeloop.services.plan_progress import (
    CONFIDENCE,
    achieved_group,
    objective_model,
    objectives_of,
    plan_model,
)
from closeloop.services.project import Workspace

log = logging.getLogger("closeloop.plans")

NO_OWNER = "(no owner)"
NO_SEGMENT = "(no segment)"


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
    """Every success plan of an account (the churn review reads these). With ``at``: each plan
    as its latest version at or before ``at`` left it, statuses as of ``at``; plans created
    after ``at`` are left out."""
    found = []
    for plan_id in store_plans.plan_ids(workspace.store, account_id=account_id):
        if at is None:
            found.append(show_plan(workspace, plan_id))
            continue
        versions = store_plans.versions(workspace.store, plan_id)
        then = [v.version for v in versions if v.at <= at]
        if not then:
            continue
        state = store_plans.state_at_version(workspace.store, plan_id, max(then))
        found.append(
            plan_model(state, _observations(workspace, state), versions, at, versions[-1].version)
        )
    return found


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
        objectives = objectives_of(state, _observations(workspace, state), as_of)
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
        except Exception as error:  # a definition changed under it, a warehouse error: this
            # measure fails for its objectives alone, and the others are still recorded.
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
        for objective in objectives_of(state, observations, moment):
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
