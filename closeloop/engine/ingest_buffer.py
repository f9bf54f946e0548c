"""The ingestion buffer in the state store: append, claim, release (the only SQL on it).

A request's messages are appended in one transaction, so a message is either buffered (and the
request acknowledged) or not at all. A flusher claims the oldest rows for ``lease`` seconds, writes
them to the warehouse and deletes them. A flusher that dies leaves its claim to expire; the next
one takes the same rows again and the warehouse's keys make the second write a no-op
(at-least-once flushing made exactly-once by ``events.event_id``). On PostgreSQL claims skip rows
another flusher holds (``FOR UPDATE SKIP LOCKED``); SQLite serialises writers anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore, utc_now

_BUFFER = schema.ingest_buffer


@dataclass(frozen=True)
class BufferedMessage:
    """One message as buffered: ``id`` orders messages by arrival."""

    id: int
    kind: str
    message_id: str
    received_at: datetime
    timestamp: datetime
    token_id: int | None
    body: str


@dataclass(frozen=True)
class NewMessage:
    kind: str
    message_id: str
    timestamp: datetime
    body: str


def append(
    store: StateStore, messages: Sequence[NewMessage], *, token_id: int | None, at: datetime
) -> None:
    """Buffer ``messages`` in one transaction (all or none)."""
    if not messages:
        return
    rows = [
        {
            "kind": message.kind,
            "message_id": message.message_id,
            "received_at": at,
            "timestamp": message.timestamp,
            "token_id": token_id,
            "body": message.body,
        }
        for message in messages
    ]
    with store.engine.begin() as connection:
        connection.execute(_BUFFER.insert(), rows)


def claim(
    store: StateStore, claimer: str, *, limit: int, lease: timedelta
) -> list[BufferedMessage]:
    """Claim up to ``limit`` of the oldest unclaimed (or expired) messages for ``lease``."""
    now = utc_now()
    free = sa.or_(_BUFFER.c.claimed_until.is_(None), _BUFFER.c.claimed_until < now)
    with store.engine.begin() as connection:
        wanted = sa.select(_BUFFER.c.id).where(free).order_by(_BUFFER.c.id).limit(limit)
        if connection.dialect.name == "postgresql":
            wanted = wanted.with_for_update(skip_locked=True)
        ids = list(connection.execute(wanted).scalars())
        if not ids:
            return []
        connection.execute(
            _BUFFER.update()
            .where(_BUFFER.c.id.in_(ids))
            .values(claimed_by=claimer, claimed_until=now + lease)
        )
        rows = connection.execute(
            sa.select(_BUFFER).where(_BUFFER.c.id.in_(ids)).order_by(_BUFFER.c.id)
        ).mappings()
        return [
            BufferedMessage(
                id=row["id"],
                kind=row["kind"],
                message_id=row["message_id"],
                received_at=row["received_at"],
                timestamp=row["timestamp"],
                token_id=row["token_id"],
                body=row["body"],
            )
            for row in rows
        ]


def release(store: StateStore, claimer: str, ids: Sequence[int]) -> int:
    """Delete the written messages ``ids`` that ``claimer`` still holds; how many were deleted."""
    deleted = 0
    with store.engine.begin() as connection:
        for start in range(0, len(ids), 5_000):  # SQLite caps a statement's parameters
            chunk = list(ids[start : start + 5_000])
            result = connection.execute(
                _BUFFER.delete().where(_BUFFER.c.id.in_(chunk), _BUFFER.c.claimed_by == claimer)
            )
            deleted += result.rowcount
    return deleted


def unclaim(store: StateStore, claimer: str, ids: Sequence[int]) -> None:
    """Give claimed messages back at once (the write failed; the next flush retries them)."""
    with store.engine.begin() as connection:
        for start in range(0, len(ids), 5_000):
            chunk = list(ids[start : start + 5_000])
            connection.execute(
                _BUFFER.update()
                .where(_BUFFER.c.id.in_(chunk), _BUFFER.c.claimed_by == claimer)
                .values(claimed_by=None, claimed_until=None)
            )


def pending(store: StateStore) -> int:
    """Messages buffered and not yet written (claimed or not)."""
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(_BUFFER)).scalar_one())
