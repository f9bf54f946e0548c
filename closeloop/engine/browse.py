"""Pages of enrollments and outbox messages, filtered in the store (for the API and dashboard).

Every read here is one bounded query plus one count with the same filters, so a page costs the
same however large the store grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.outbox import (
    OutboxMessage,
    check_status,
    message_columns,
    messages_with_arms,
)
from closeloop.engine.state import StateStore
from closeloop.errors import ConfigurationError

ENROLLMENT_STATUSES = ("active", "completed", "exited")


@dataclass(frozen=True)
class EnrollmentRow:
    enrollment_id: str
    job_name: str
    job_version: int
    account_id: str
    person_id: str | None
    arm: str
    entered_at: datetime
    completed_at: datetime | None
    exited_at: datetime | None
    exit_reason: str | None

    @property
    def status(self) -> str:
        if self.completed_at is not None:
            return "completed"
        return "exited" if self.exited_at is not None else "active"


def enrollments_page(
    store: StateStore,
    *,
    job_name: str | None = None,
    arm: str | None = None,
    status: str | None = None,
    account_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[EnrollmentRow], int]:
    """Enrollments matching the filters, newest entry first: one page and the total."""
    e = schema.enrollments
    conditions: list[sa.ColumnElement[bool]] = []
    if job_name is not None:
        conditions.append(e.c.job_name == job_name)
    if arm is not None:
        conditions.append(e.c.arm == arm)
    if account_id is not None:
        conditions.append(e.c.account_id == account_id)
    if status is not None:
        if status not in ENROLLMENT_STATUSES:
            raise ConfigurationError(
                f"unknown enrollment status {status!r}; one of {', '.join(ENROLLMENT_STATUSES)}"
            )
        conditions.append(
            e.c.completed_at.is_not(None)
            if status == "completed"
            else sa.and_(e.c.completed_at.is_(None), e.c.exited_at.is_not(None))
            if status == "exited"
            else sa.and_(e.c.completed_at.is_(None), e.c.exited_at.is_(None))
        )
    query = (
        sa.select(
            e.c.enrollment_id,
            e.c.job_name,
            e.c.job_version,
            e.c.account_id,
            e.c.person_id,
            e.c.arm,
            e.c.entered_at,
            e.c.completed_at,
            e.c.exited_at,
            e.c.exit_reason,
        )
        .where(*conditions)
        .order_by(e.c.entered_at.desc(), e.c.enrollment_id)
        .offset(offset)
        .limit(limit)
    )
    count = sa.select(sa.func.count()).select_from(e).where(*conditions)
    with store.engine.connect() as connection:
        rows = [EnrollmentRow(**row) for row in connection.execute(query).mappings()]
        total = int(connection.execute(count).scalar() or 0)
    return rows, total


def outbox_page(
    store: StateStore,
    *,
    status: str | None = None,
    job_name: str | None = None,
    account_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[OutboxMessage], int]:
    """Outbox messages matching the filters, newest first: one page and the total."""
    check_status(status)
    o = schema.outbox
    conditions: list[sa.ColumnElement[bool]] = []
    if status is not None:
        conditions.append(o.c.status == status)
    if job_name is not None:
        conditions.append(o.c.job_name == job_name)
    if account_id is not None:
        conditions.append(o.c.account_id == account_id)
    query = (
        sa.select(*message_columns())
        .select_from(messages_with_arms())
        .where(*conditions)
        .order_by(o.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    count = sa.select(sa.func.count()).select_from(o).where(*conditions)
    with store.engine.connect() as connection:
        rows = [OutboxMessage(**row) for row in connection.execute(query).mappings()]
        total = int(connection.execute(count).scalar() or 0)
    return rows, total


@dataclass(frozen=True)
class TimedMessage:
    """An account's message at the time it happened: sent, else due, else created."""

    at: datetime
    message: OutboxMessage
    person_id: str | None


def account_messages(
    store: StateStore,
    account_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> tuple[list[TimedMessage], int]:
    """The account's messages in ``[since, until]``, newest first (at most ``limit``), and how
    many there are in that range."""
    o, e = schema.outbox, schema.enrollments
    at = sa.func.coalesce(o.c.sent_at, o.c.due_at, o.c.created_at)
    conditions: list[sa.ColumnElement[bool]] = [o.c.account_id == account_id]
    if since is not None:
        conditions.append(at >= since)
    if until is not None:
        conditions.append(at <= until)
    query = (
        sa.select(
            at.label("at"),
            e.c.person_id,
            *message_columns(),
        )
        .select_from(messages_with_arms())
        .where(*conditions)
        .order_by(at.desc(), o.c.id.desc())
        .limit(limit)
    )
    count = sa.select(sa.func.count()).select_from(o).where(*conditions)
    with store.engine.connect() as connection:
        found = []
        for row in connection.execute(query).mappings():
            fields = dict(row)
            moment, person = fields.pop("at"), fields.pop("person_id")
            found.append(TimedMessage(moment, OutboxMessage(**fields), person))
        total = int(connection.execute(count).scalar() or 0)
    return found, total
