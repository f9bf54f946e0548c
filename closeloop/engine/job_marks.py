"""What the dashboard's job page reads from the state store besides the report: the counts of its
health strip (each with the statement that produced it, so the page can show its SQL), how many
units were messaged per arm, and the high-water marks that tell whether a cached report is
still current.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore

GHOST = "ghost"
"""The holdout's would-be messages (timing only): never sent, so never 'messaged'."""


@dataclass(frozen=True)
class Counted:
    """Counts by a key (arm or status) and the SQL text of the statement that counted them."""

    counts: dict[str, int]
    sql: str


def statement_sql(store: StateStore, statement: sa.Select[Any]) -> str:
    """``statement`` as the store's dialect runs it, its parameters inlined (for reading)."""
    compiled = statement.compile(
        dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def _counted(store: StateStore, statement: sa.Select[Any]) -> Counted:
    with store.engine.connect() as connection:
        counts = {str(row[0]): int(row[1]) for row in connection.execute(statement)}
    return Counted(counts=counts, sql=statement_sql(store, statement))


def enrollments_by_arm(store: StateStore, job_name: str) -> Counted:
    """The job's enrollments per arm (what the sample-ratio check compares with the split)."""
    e = schema.enrollments
    statement = (
        sa.select(e.c.arm, sa.func.count())
        .where(e.c.job_name == job_name)
        .group_by(e.c.arm)
        .order_by(e.c.arm)
    )
    return _counted(store, statement)


def messages_by_status(store: StateStore, job_name: str) -> Counted:
    """The job's outbox messages per status."""
    o = schema.outbox
    statement = (
        sa.select(o.c.status, sa.func.count())
        .where(o.c.job_name == job_name)
        .group_by(o.c.status)
        .order_by(o.c.status)
    )
    return _counted(store, statement)


def messaged_by_arm(store: StateStore, job_name: str) -> Counted:
    """Units per arm with at least one message planned for sending (any status but ghost)."""
    o, e = schema.outbox, schema.enrollments
    statement = (
        sa.select(e.c.arm, sa.func.count(sa.distinct(o.c.enrollment_id)))
        .select_from(o.join(e, e.c.enrollment_id == o.c.enrollment_id))
        .where(o.c.job_name == job_name, o.c.status != GHOST)
        .group_by(e.c.arm)
        .order_by(e.c.arm)
    )
    return _counted(store, statement)


def last_tick_statement(job_name: str) -> sa.Select[tuple[datetime | None]]:
    t = schema.ticks
    return sa.select(sa.func.max(t.c.at)).where(t.c.job_name == job_name)


def last_tick(store: StateStore, job_name: str) -> tuple[datetime | None, str]:
    """The job's latest tick and the SQL text of the statement that read it."""
    statement = last_tick_statement(job_name)
    with store.engine.connect() as connection:
        value = connection.execute(statement).scalar()
    compiled = statement.compile(
        dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    return (value if isinstance(value, datetime) else None), str(compiled)


def state_marks(store: StateStore, job_name: str) -> tuple[object, ...]:
    """Everything in the store a job's report depends on, as one comparable value.

    The job's record (version, content hash, holdout, status, revision), its last tick, its
    enrollments (count and the latest entry, completion and exit), its outbox (count, newest id,
    latest send, count per status), the opt-outs and the job's audit entries (definition changes).
    Any write that can change the report changes one of these.
    """
    j, t, e, o = schema.jobs, schema.ticks, schema.enrollments, schema.outbox
    a, opt = schema.audit_log, schema.optouts
    with store.engine.connect() as connection:
        job = connection.execute(
            sa.select(
                j.c.current_version,
                j.c.content_hash,
                j.c.holdout,
                j.c.status,
                j.c.status_changed_at,
            ).where(j.c.name == job_name)
        ).first()
        tick = connection.execute(
            sa.select(sa.func.max(t.c.at), sa.func.count()).where(t.c.job_name == job_name)
        ).first()
        enrollments = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.max(e.c.entered_at),
                sa.func.max(e.c.completed_at),
                sa.func.max(e.c.exited_at),
                sa.func.count(e.c.completed_at),
                sa.func.count(e.c.exited_at),
            ).where(e.c.job_name == job_name)
        ).first()
        outbox = connection.execute(
            sa.select(o.c.status, sa.func.count(), sa.func.max(o.c.id), sa.func.max(o.c.sent_at))
            .where(o.c.job_name == job_name)
            .group_by(o.c.status)
            .order_by(o.c.status)
        ).all()
        optouts = connection.execute(
            sa.select(sa.func.count(), sa.func.max(opt.c.opted_out_at))
        ).first()
        audit = connection.execute(
            sa.select(sa.func.count(), sa.func.max(a.c.id)).where(a.c.subject == job_name)
        ).first()
    return (
        tuple(job) if job is not None else None,
        tuple(tick) if tick is not None else None,
        tuple(enrollments) if enrollments is not None else None,
        tuple(tuple(row) for row in outbox),
        tuple(optouts) if optouts is not None else None,
        tuple(audit) if audit is not None else None,
    )
