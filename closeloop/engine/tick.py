"""A tick at time T: detect completions and exits, then enroll newly eligible units.

Everything a tick decides for a job — enrollments, completions, exits, the outbox rows of their
actions, the cancellation of reminders that no longer apply and the ledger row that marks the tick
done — is written in one transaction, so a crash at any point either leaves the tick undone (run
it again) or done (running it again changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.data.compiler import goal_reached_at, matching_units
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, MembershipKind, memberships
from closeloop.definitions.models import Allocation, ContactPolicy
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine import schema
from closeloop.engine.allocation import TickAllocation, thompson_tick_allocation
from closeloop.engine.assignment import assign_variant, enrollment_id
from closeloop.engine.publish import publish_enrollments
from closeloop.engine.state import JobRecord, StateStore, utc_now
from closeloop.engine.steps import (
    COMPLETION_STEP,
    EXIT_STEP,
    OutboxStatus,
    Planned,
    Renderer,
    Unit,
    end_plan,
    entry_plan,
)

__all__ = ["ExitReason", "OutboxStatus", "TickResult", "run_tick"]


class ExitReason:
    TIMEOUT = "timeout"
    NO_LONGER_ELIGIBLE = "no_longer_eligible"


@dataclass(frozen=True)
class TickResult:
    job_name: str
    at: datetime
    version: int
    entered: int
    completed: int
    exited: int
    already_done: bool = False


@dataclass(frozen=True)
class _Decisions:
    completions: dict[str, datetime]
    exits: dict[str, tuple[datetime, str]]
    entering: list[Unit]
    active: dict[str, Unit]
    allocation: TickAllocation | None = None  # the split used, with adaptive allocation


def run_tick(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    store: StateStore,
    at: datetime,
    author: str = "closeloop",
) -> TickResult:
    """Run job ``job`` at time ``at``; running the same tick again is a no-op."""
    record = store.launch_or_update_job(job, at, author)
    with store.engine.connect() as connection:
        done = connection.execute(
            sa.select(schema.ticks.c.job_version).where(
                schema.ticks.c.job_name == job.name, schema.ticks.c.at == at
            )
        ).first()
    if done is not None:
        return TickResult(job.name, at, done[0], 0, 0, 0, already_done=True)

    # Reads happen before the transaction: they decide, the transaction records.
    if references_jobs(job):
        publish_enrollments(store, warehouse)
    decisions = _decide(project, job, warehouse, store, record, at)
    renderer = Renderer(project, job, warehouse)
    active = decisions.active
    plan: list[Planned] = entry_plan(job, decisions.entering, at)
    plan += end_plan(
        job.definition.on_completion,
        COMPLETION_STEP,
        [active[e] for e in decisions.completions],
        at,
    )
    plan += end_plan(job.definition.on_exit, EXIT_STEP, [active[e] for e in decisions.exits], at)
    outbox_rows = renderer.rows(record.version, plan, at)

    with store.engine.begin() as connection:
        for enrollment, completed_at in decisions.completions.items():
            connection.execute(
                schema.enrollments.update()
                .where(schema.enrollments.c.enrollment_id == enrollment)
                .values(completed_at=completed_at)
            )
            _cancel_reminders(connection, enrollment, completed_at)
        for enrollment, (exited_at, reason) in decisions.exits.items():
            connection.execute(
                schema.enrollments.update()
                .where(schema.enrollments.c.enrollment_id == enrollment)
                .values(exited_at=exited_at, exit_reason=reason)
            )
            _cancel_reminders(connection, enrollment, exited_at)
        if decisions.entering:
            connection.execute(
                schema.enrollments.insert(),
                [
                    {
                        "enrollment_id": unit.enrollment_id,
                        "job_name": job.name,
                        "job_version": record.version,
                        "account_id": unit.account_id,
                        "person_id": unit.person_id,
                        "arm": unit.arm,
                        "entered_at": at,
                    }
                    for unit in decisions.entering
                ],
            )
        if outbox_rows:
            connection.execute(schema.outbox.insert(), outbox_rows)
        if decisions.allocation is not None:
            connection.execute(
                schema.tick_allocations.insert(), decisions.allocation.rows(job.name, at)
            )
        connection.execute(
            schema.ticks.insert().values(
                job_name=job.name,
                at=at,
                job_version=record.version,
                entered=len(decisions.entering),
                completed=len(decisions.completions),
                exited=len(decisions.exits),
                processed_at=utc_now(),
            )
        )
    return TickResult(
        job.name,
        at,
        record.version,
        len(decisions.entering),
        len(decisions.completions),
        len(decisions.exits),
    )


def references_jobs(job: LoadedJob) -> bool:
    """Whether any of the job's expressions asks about job membership (``entered job "X"``)."""
    return any(
        kind == MembershipKind.JOB
        for expression in (job.audience, job.goal, *job.exclusions)
        for kind, _ in memberships(expression)
    )


def _decide(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    store: StateStore,
    record: JobRecord,
    at: datetime,
) -> _Decisions:
    definition = job.definition
    target = Entity(definition.target)
    active, entered = _active_units(store, job.name, at)
    by_id = {unit.enrollment_id: unit for unit in active}
    completions = _completions(project, job, warehouse, active, entered, at)
    duration = timedelta(days=definition.duration_days)
    exits: dict[str, tuple[datetime, str]] = {}
    for unit in active:
        deadline = entered[unit.enrollment_id] + duration
        if unit.enrollment_id not in completions and deadline <= at:
            exits[unit.enrollment_id] = (deadline, ExitReason.TIMEOUT)
    enrolling = definition.is_enrolling(at)
    if not enrolling and not definition.exit_when_ineligible:
        return _Decisions(completions, exits, [], by_id)
    eligible = _eligible(project, job, warehouse, at)
    if definition.exit_when_ineligible:
        for unit in active:
            ended = unit.enrollment_id in completions or unit.enrollment_id in exits
            if not ended and _unit_key(unit, target) not in eligible:
                exits[unit.enrollment_id] = (at, ExitReason.NO_LONGER_ELIGIBLE)
    if not enrolling:
        return _Decisions(completions, exits, [], by_id)
    blocked = _blocked_by_re_entry(store, job, target, at)
    capped = _capped_accounts(store, job.name, project.config.contact_policy, at)
    arms = [(variant.name, variant.weight) for variant in definition.variants] or [
        (definition.arms[0], 1.0)
    ]
    allocation = None
    if definition.allocation == Allocation.THOMPSON:
        pending = [
            (by_id[key].arm, entered[key], completed_at)
            for key, completed_at in completions.items()
        ]
        allocation = thompson_tick_allocation(store, job, record.salt, record.holdout, at, pending)
        arms = allocation.treated_weights()
    entering = [
        Unit(
            enrollment_id(job.name, key, at.isoformat()),
            account,
            key if target == Entity.PERSON else None,
            assign_variant(record.salt, key, record.holdout, arms),
        )
        for key, account in sorted(eligible.items())
        if key not in blocked and account not in capped
    ]
    return _Decisions(completions, exits, entering, by_id, allocation)


def _unit_key(unit: Unit, target: Entity) -> str:
    return unit.person_id if target == Entity.PERSON and unit.person_id else unit.account_id


def _active_units(
    store: StateStore, job_name: str, at: datetime
) -> tuple[list[Unit], dict[str, datetime]]:
    """Enrollments still running before ``at``, and when each entered."""
    e = schema.enrollments
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.enrollment_id, e.c.account_id, e.c.person_id, e.c.arm, e.c.entered_at)
            .where(
                e.c.job_name == job_name,
                e.c.completed_at.is_(None),
                e.c.exited_at.is_(None),
                e.c.entered_at < at,
            )
            .order_by(e.c.enrollment_id)
        ).all()
    return [Unit(*row[:4]) for row in rows], {row[0]: row[4] for row in rows}


def _completions(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    active: Sequence[Unit],
    entered: dict[str, datetime],
    at: datetime,
) -> dict[str, datetime]:
    """Enrollments whose goal first held (at event time) within their duration."""
    if not active:
        return {}
    target = Entity(job.definition.target)
    key = "person_id" if target == Entity.PERSON else "account_id"
    candidates = ibis.memtable(
        pa.table(
            {
                key: pa.array([_unit_key(unit, target) for unit in active], pa.string()),
                "entered_at": pa.array(
                    [entered[unit.enrollment_id] for unit in active], pa.timestamp("us")
                ),
            }
        )
    )
    reached = (
        goal_reached_at(job.goal, warehouse, at, candidates, project.catalog, target)
        .to_pyarrow()
        .to_pylist()
    )
    reached_at = {row[key]: row["reached_at"] for row in reached}
    duration = timedelta(days=job.definition.duration_days)
    completions: dict[str, datetime] = {}
    for unit in active:
        moment = reached_at.get(_unit_key(unit, target))
        if moment is not None and moment <= entered[unit.enrollment_id] + duration:
            completions[unit.enrollment_id] = _naive(moment)
    return completions


def _eligible(
    project: Project, job: LoadedJob, warehouse: Warehouse, at: datetime
) -> dict[str, str]:
    """Units in the audience and in no exclusion as of ``at``: unit key -> account id."""
    target = Entity(job.definition.target)
    key = "person_id" if target == Entity.PERSON else "account_id"
    audience = matching_units(job.audience, warehouse, at, project.catalog, target)
    for exclusion in job.exclusions:
        excluded = matching_units(exclusion, warehouse, at, project.catalog, target)
        audience = audience.anti_join(excluded.select(key), key)
    columns = [key] if key == "account_id" else [key, "account_id"]
    rows = audience.select(*columns).distinct().to_pyarrow().to_pylist()
    return {row[key]: row["account_id"] for row in rows}


def _blocked_by_re_entry(
    store: StateStore, job: LoadedJob, target: Entity, at: datetime
) -> set[str]:
    """Units that may not enter now: enrolled and active, or (by ``re_entry``) ended too recently.

    ``re_entry: never`` blocks anyone who ever entered; ``{after_days: N}`` blocks until N days
    after the previous enrollment ended (completed or exited).
    """
    e = schema.enrollments
    key = e.c.person_id if target == Entity.PERSON else e.c.account_id
    policy = job.definition.re_entry
    with store.engine.connect() as connection:
        if policy == "never":
            return set(connection.execute(sa.select(key).where(e.c.job_name == job.name)).scalars())
        cutoff = at - timedelta(days=policy.after_days)
        ended = sa.func.coalesce(e.c.completed_at, e.c.exited_at)
        rows = connection.execute(
            sa.select(key).where(
                e.c.job_name == job.name,
                sa.or_(ended.is_(None), ended > cutoff),
            )
        ).scalars()
        return set(rows)


def _capped_accounts(
    store: StateStore, job_name: str, policy: ContactPolicy | None, at: datetime
) -> set[str]:
    """Accounts that ``max_jobs`` other jobs enrolled within the last ``per_days`` days.

    Holdout enrollments count too: the cap limits assignment, so both arms stay comparable.
    """
    if policy is None:
        return set()
    e = schema.enrollments
    since = at - timedelta(days=policy.per_days)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.account_id)
            .where(e.c.job_name != job_name, e.c.entered_at > since, e.c.entered_at <= at)
            .group_by(e.c.account_id)
            .having(sa.func.count(sa.distinct(e.c.job_name)) >= policy.max_jobs)
        ).scalars()
        return set(rows)


def _cancel_reminders(connection: Connection, enrollment: str, ended_at: datetime) -> None:
    """Sequence messages (sent or ghost) that fall due after the enrollment ended never go out."""
    o = schema.outbox
    connection.execute(
        o.update()
        .where(
            o.c.enrollment_id == enrollment,
            o.c.step_index < COMPLETION_STEP,
            o.c.status.in_([OutboxStatus.PENDING, OutboxStatus.GHOST]),
            o.c.due_at > ended_at,
        )
        .values(status=OutboxStatus.CANCELLED, last_error="the enrollment ended before it fell due")
    )


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
