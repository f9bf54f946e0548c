"""The outbox as people operate it: list, retry and purge messages, and count deliveries.

The dispatcher (engine.dispatcher) sends; this module is what ``closeloop outbox`` and the job
report read and change. Every change is a single statement with the status in its ``WHERE``, so
it cannot race a dispatcher into sending a row twice: a row being sent is never touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.engine.statuses import OutboxStatus
from closeloop.errors import ConfigurationError

RETRYABLE = (OutboxStatus.DEAD,)
PURGEABLE = (OutboxStatus.SENT, OutboxStatus.DEAD, OutboxStatus.CANCELLED, OutboxStatus.SKIPPED)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    idempotency_key: str
    job_name: str
    account_id: str
    arm: str | None
    step_index: int
    channel: str
    status: str
    attempts: int
    due_at: datetime | None
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    detail: str | None


def check_status(status: str | None) -> None:
    """Refuse an outbox status that does not exist (a typo in a filter)."""
    if status is not None and status not in OutboxStatus.ALL:
        raise ConfigurationError(
            f"unknown outbox status {status!r}; one of {', '.join(OutboxStatus.ALL)}"
        )


def message_columns() -> tuple[sa.ColumnElement[object], ...]:
    """The columns of an :class:`OutboxMessage` (its arm from the enrollment): select them
    from :func:`messages_with_arms`."""
    o, e = schema.outbox, schema.enrollments
    return (
        o.c.id,
        o.c.idempotency_key,
        o.c.job_name,
        o.c.account_id,
        e.c.arm,
        o.c.step_index,
        o.c.channel,
        o.c.status,
        o.c.attempts,
        o.c.due_at,
        o.c.next_attempt_at,
        o.c.sent_at,
        o.c.last_error,
        o.c.detail,
    )


def messages_with_arms() -> sa.Join:
    """The outbox joined to the enrollments its messages belong to."""
    o, e = schema.outbox, schema.enrollments
    return o.outerjoin(e, e.c.enrollment_id == o.c.enrollment_id)


def status_counts(store: StateStore, job_name: str | None = None) -> dict[str, int]:
    o = schema.outbox
    query = sa.select(o.c.status, sa.func.count()).group_by(o.c.status)
    if job_name is not None:
        query = query.where(o.c.job_name == job_name)
    with store.engine.connect() as connection:
        return {status: int(count) for status, count in connection.execute(query)}


def status_counts_due(store: StateStore, start: datetime, end: datetime) -> dict[str, int]:
    """Messages by status that fell due in ``[start, end)`` (rows written before ``due_at``
    existed count from when they were created)."""
    o = schema.outbox
    due = sa.func.coalesce(o.c.due_at, o.c.created_at)
    query = (
        sa.select(o.c.status, sa.func.count()).where(due >= start, due < end).group_by(o.c.status)
    )
    with store.engine.connect() as connection:
        return {status: int(count) for status, count in connection.execute(query)}


def retry(
    store: StateStore, now: datetime, *, ids: list[int] | None = None, job_name: str | None = None
) -> int:
    """Put dead messages back in the queue (attempts reset), due at ``now``."""
    o = schema.outbox
    condition: sa.ColumnElement[bool] = o.c.status.in_(RETRYABLE)
    if ids:
        condition &= o.c.id.in_(ids)
    if job_name is not None:
        condition &= o.c.job_name == job_name
    with store.engine.begin() as connection:
        return int(
            connection.execute(
                o.update()
                .where(condition)
                .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now)
            ).rowcount
        )


def purge(
    store: StateStore, status: str, *, before: datetime | None = None, job_name: str | None = None
) -> int:
    """Delete finished messages of one status (never pending, sending, ghost or not_sent rows:
    the ghosts and replays time the holdout and the past, and the rest are still to be sent)."""
    check_status(status)
    if status not in PURGEABLE:
        raise ConfigurationError(
            f"only {', '.join(PURGEABLE)} messages can be purged, not {status}"
        )
    o = schema.outbox
    condition: sa.ColumnElement[bool] = o.c.status == status
    if before is not None:
        condition &= o.c.created_at < before
    if job_name is not None:
        condition &= o.c.job_name == job_name
    with store.engine.begin() as connection:
        return int(connection.execute(o.delete().where(condition)).rowcount)


@dataclass(frozen=True)
class ArmDeliveries:
    """What reached the units of one arm: messages by status, and how many units got any."""

    arm: str
    units: int
    units_reached: int  # units with at least one sent message
    by_status: dict[str, int]


def deliveries_by_arm(store: StateStore, job_name: str) -> dict[str, ArmDeliveries]:
    o, e = schema.outbox, schema.enrollments
    with store.engine.connect() as connection:
        units: dict[str, int] = dict(
            connection.execute(
                sa.select(e.c.arm, sa.func.count())
                .where(e.c.job_name == job_name)
                .group_by(e.c.arm)
            ).all()
        )
        statuses = connection.execute(
            sa.select(e.c.arm, o.c.status, sa.func.count())
            .select_from(o.join(e, e.c.enrollment_id == o.c.enrollment_id))
            .where(o.c.job_name == job_name)
            .group_by(e.c.arm, o.c.status)
        ).all()
        reached: dict[str, int] = dict(
            connection.execute(
                sa.select(e.c.arm, sa.func.count(sa.distinct(o.c.enrollment_id)))
                .select_from(o.join(e, e.c.enrollment_id == o.c.enrollment_id))
                .where(o.c.job_name == job_name, o.c.status == OutboxStatus.SENT)
                .group_by(e.c.arm)
            ).all()
        )
    by_arm: dict[str, Counter[str]] = {}
    for arm, status, count in statuses:
        by_arm.setdefault(arm, Counter())[status] += int(count)
    return {
        arm: ArmDeliveries(
            arm, int(units[arm]), int(reached.get(arm, 0)), dict(by_arm.get(arm, Counter()))
        )
        for arm in sorted(units)
    }
