"""A job's life in the store: draft → live → paused → stopped, removals, and the audit trail.

A job defined in YAML is a *draft* until it is launched (``closeloop jobs launch``, or a tick or
backfill with ``--launch``): launching records it with its salt, locks its goal and hypothesis
and makes it *live*. A *paused* job enrolls nobody and sends nothing (its messages wait in the
outbox; completions are still detected so measurement stays right); *resume* makes it live
again. *Stopping* ends it for good: every active enrollment exits with reason ``job_stopped`` and
its unsent messages are cancelled. Every change is written to the audit log with who and when,
and bumps the job's revision so a tick that decided before it records nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.engine.statuses import ExitReason, JobStatus, OutboxStatus, bump_revision
from closeloop.errors import NotFoundError, StateError

# Which status each command may move a job from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    JobStatus.PAUSED: (JobStatus.LIVE,),
    JobStatus.LIVE: (JobStatus.PAUSED,),  # resume
    JobStatus.STOPPED: (JobStatus.LIVE, JobStatus.PAUSED),
}
VERBS = {JobStatus.PAUSED: "pause", JobStatus.LIVE: "resume", JobStatus.STOPPED: "stop"}


@dataclass(frozen=True)
class JobOverview:
    """One launched job as the store knows it (definition texts come from its versions)."""

    name: str
    status: str
    version: int
    versions: int
    holdout: float
    launched_at: datetime
    status_changed_at: datetime | None
    last_tick: datetime | None
    enrolled: int
    active: int
    latest_definition: str  # canonical YAML of the latest recorded version
    enrolled_by_arm: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str
    detail: Any


def jobs_overview(store: StateStore) -> list[JobOverview]:
    """Every launched job: status, versions, last tick and enrollment counts (a few queries)."""
    j, v, t, e = schema.jobs, schema.definition_versions, schema.ticks, schema.enrollments
    with store.engine.connect() as connection:
        jobs = connection.execute(sa.select(j).order_by(j.c.name)).mappings().all()
        history: dict[str, tuple[int, str, int]] = {}
        for row in connection.execute(
            sa.select(v.c.name, v.c.version, v.c.definition).where(v.c.kind == "job")
        ).mappings():
            latest, text, count = history.get(row["name"], (0, "", 0))
            if row["version"] > latest:
                latest, text = row["version"], row["definition"]
            history[row["name"]] = (latest, text, count + 1)
        last_ticks = {
            name: at
            for name, at in connection.execute(
                sa.select(t.c.job_name, sa.func.max(t.c.at)).group_by(t.c.job_name)
            )
        }
        active = e.c.completed_at.is_(None) & e.c.exited_at.is_(None)
        counts = {
            name: (int(total), int(running or 0))
            for name, total, running in connection.execute(
                sa.select(
                    e.c.job_name,
                    sa.func.count(),
                    sa.func.sum(sa.case((active, 1), else_=0)),
                ).group_by(e.c.job_name)
            )
        }
        by_arm: dict[str, dict[str, int]] = {}
        for name, arm, total in connection.execute(
            sa.select(e.c.job_name, e.c.arm, sa.func.count()).group_by(e.c.job_name, e.c.arm)
        ):
            by_arm.setdefault(name, {})[arm] = int(total)
    return [
        JobOverview(
            name=row["name"],
            status=row["status"],
            version=int(row["current_version"]),
            versions=history.get(row["name"], (0, "", 0))[2],
            holdout=float(row["holdout"]),
            launched_at=row["launched_at"],
            status_changed_at=row["status_changed_at"],
            last_tick=last_ticks.get(row["name"]),
            enrolled=counts.get(row["name"], (0, 0))[0],
            active=counts.get(row["name"], (0, 0))[1],
            latest_definition=history.get(row["name"], (0, "", 0))[1],
            enrolled_by_arm=dict(sorted(by_arm.get(row["name"], {}).items())),
        )
        for row in jobs
    ]


def job_status(store: StateStore, name: str) -> str:
    """``draft`` for a job the store has never launched, else its recorded status."""
    with store.engine.connect() as connection:
        status = connection.execute(
            sa.select(schema.jobs.c.status).where(schema.jobs.c.name == name)
        ).scalar()
    return str(status) if status is not None else JobStatus.DRAFT


def set_status(store: StateStore, name: str, status: str, actor: str, at: datetime) -> str:
    """Pause, resume or stop a job; return the status it had. Stopping exits every active
    enrollment (reason ``job_stopped``, at ``at``) and cancels the job's unsent messages."""
    j, e, o = schema.jobs, schema.enrollments, schema.outbox
    with store.engine.begin() as connection:
        current = connection.execute(sa.select(j.c.status).where(j.c.name == name)).scalar()
        if current is None:
            raise NotFoundError(
                f"job {name!r} has not been launched; `closeloop jobs launch {name}` first"
            )
        if current == status:
            return str(current)
        if current not in TRANSITIONS[status]:
            raise StateError(f"job {name!r} is {current}; it cannot {VERBS[status]}")
        connection.execute(
            j.update().where(j.c.name == name).values(status=status, status_changed_at=at)
        )
        bump_revision(connection, name)
        detail: dict[str, Any] = {"from": current, "to": status, "at": at.isoformat()}
        if status == JobStatus.STOPPED:
            active = (e.c.job_name == name) & e.c.completed_at.is_(None) & e.c.exited_at.is_(None)
            detail["exited"] = connection.execute(
                e.update().where(active).values(exited_at=at, exit_reason=ExitReason.JOB_STOPPED)
            ).rowcount
            detail["cancelled"] = connection.execute(
                o.update()
                .where(o.c.job_name == name, _unsent(at))
                .values(status=OutboxStatus.CANCELLED, last_error="the job was stopped")
            ).rowcount
        store.audit(connection, actor, f"job.{VERBS[status]}", name, _jsonable(detail))
    return str(current)


def remove_account(
    store: StateStore, job_name: str, account_id: str, actor: str, at: datetime
) -> int:
    """Exit the account's active enrollments in the job (reason ``removed``) and cancel their
    unsent messages; return how many enrollments ended."""
    e, o = schema.enrollments, schema.outbox
    with store.engine.begin() as connection:
        ids = (
            connection.execute(
                sa.select(e.c.enrollment_id).where(
                    e.c.job_name == job_name,
                    e.c.account_id == account_id,
                    e.c.completed_at.is_(None),
                    e.c.exited_at.is_(None),
                )
            )
            .scalars()
            .all()
        )
        if not ids:
            return 0
        connection.execute(
            e.update()
            .where(e.c.enrollment_id.in_(ids))
            .values(exited_at=at, exit_reason=ExitReason.REMOVED)
        )
        connection.execute(
            o.update()
            .where(o.c.enrollment_id.in_(ids), _unsent(at))
            .values(status=OutboxStatus.CANCELLED, last_error="the account was removed")
        )
        bump_revision(connection, job_name)
        store.audit(
            connection,
            actor,
            "job.account_removed",
            job_name,
            {"account_id": account_id, "enrollments": list(ids), "at": at.isoformat()},
        )
    return len(ids)


def _unsent(at: datetime) -> sa.ColumnElement[bool]:
    """Messages an ended enrollment will never get: every pending one, and the holdout's ghosts
    that fall due after ``at`` (earlier ghosts stay: they are the holdout's timing record)."""
    o = schema.outbox
    return sa.or_(
        o.c.status == OutboxStatus.PENDING,
        sa.and_(o.c.status == OutboxStatus.GHOST, o.c.due_at > at),
    )


def audit_entries(store: StateStore, subject: str | None = None) -> list[AuditEntry]:
    """The audit log (of one job or other subject), oldest first."""
    a = schema.audit_log
    query = sa.select(a).order_by(a.c.id)
    if subject is not None:
        query = query.where(a.c.subject == subject)
    with store.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        AuditEntry(
            row["at"],
            row["actor"],
            row["action"],
            row["subject"],
            json.loads(row["detail"]) if row["detail"] else None,
        )
        for row in rows
    ]


def versions_in_use(store: StateStore, job_name: str) -> list[tuple[int, int]]:
    """(version, enrollments) of the job: more than one means it was edited while running."""
    e = schema.enrollments
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.job_version, sa.func.count())
            .where(e.c.job_name == job_name)
            .group_by(e.c.job_version)
            .order_by(e.c.job_version)
        ).all()
    return [(int(version), int(count)) for version, count in rows]


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (value.isoformat() if isinstance(value, datetime) else value)
        for key, value in detail.items()
    }
