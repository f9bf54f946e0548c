"""The audit log in the state store: record one entry, list entries with filters (the only SQL on
``audit_log`` besides :meth:`StateStore.audit`, which writes inside a caller's transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore

# Column widths of ``audit_log`` (PostgreSQL enforces them; SQLite does not).
ACTOR_LENGTH, ACTION_LENGTH, SUBJECT_LENGTH = 200, 64, 200


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: Any


def record(store: StateStore, *, actor: str, action: str, subject: str, detail: Any) -> None:
    """Write one entry in its own transaction (texts cut to the columns' widths)."""
    with store.engine.begin() as connection:
        store.audit(
            connection,
            _text(actor, ACTOR_LENGTH),
            _text(action, ACTION_LENGTH),
            _text(subject, SUBJECT_LENGTH),
            detail,
        )


def _text(value: str, width: int) -> str:
    # PostgreSQL refuses NUL in text; a request path may carry one (%00).
    return value.replace("\x00", "\\x00")[:width]


def list_entries(
    store: StateStore,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[AuditRecord], int]:
    """One page of entries, newest first, and how many match in all.

    ``action`` matches a whole action or, ending in ``*``, a prefix (``api.*``, ``token.*``);
    ``since`` is inclusive (naive UTC, like every time in the store).
    """
    if any("\x00" in text for text in (action or "", actor or "")):
        return [], 0  # nothing recorded holds a NUL (record escapes it)
    table = schema.audit_log
    conditions: list[sa.ColumnElement[bool]] = []
    if action is not None:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(table.c.action.like(prefix + "%", escape="\\"))
        else:
            conditions.append(table.c.action == action)
    if actor is not None:
        conditions.append(table.c.actor == actor)
    if since is not None:
        conditions.append(table.c.at >= since)
    query = sa.select(table).where(*conditions).order_by(table.c.id.desc())
    with store.engine.connect() as connection:
        total = connection.execute(
            sa.select(sa.func.count()).select_from(table).where(*conditions)
        ).scalar_one()
        rows = connection.execute(query.offset(offset).limit(limit)).mappings().all()
    return [
        AuditRecord(
            id=row["id"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            subject=row["subject"],
            detail=json.loads(row["detail"]) if row["detail"] else None,
        )
        for row in rows
    ], int(total)
