"""The customer's links to a success plan in the state store: create, find by token hash,
record an opening, list, revoke (the only SQL on ``plan_links``).

A row is bound to a plan and its account (both are also in the link's signed token). Creating
and revoking are audited with the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.errors import NotFoundError

CREATE_ACTION = "plan_link.create"
REVOKE_ACTION = "plan_link.revoke"


@dataclass(frozen=True)
class PlanLinkRow:
    id: int
    account_id: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    last_opened_at: datetime | None
    plan_id: int


_COLUMNS = (
    schema.plan_links.c.id,
    schema.plan_links.c.plan_id,
    schema.plan_links.c.account_id,
    schema.plan_links.c.created_at,
    schema.plan_links.c.created_by,
    schema.plan_links.c.expires_at,
    schema.plan_links.c.revoked_at,
    schema.plan_links.c.last_opened_at,
)


def _subject(link_id: int) -> str:
    return f"plan_link:{link_id}"


def _rows(connection: Connection, query: sa.Select[Any]) -> list[PlanLinkRow]:
    return [
        PlanLinkRow(**{column.name: row._mapping[column.name] for column in _COLUMNS})
        for row in connection.execute(query).all()
    ]


def create_link(
    store: StateStore,
    *,
    plan_id: int,
    account_id: str,
    token_hash: str,
    expires_at: datetime,
    actor: str,
    now: datetime,
) -> PlanLinkRow:
    """Store a new link's token hash; the creation is audited in the same transaction."""
    table = schema.plan_links
    with store.engine.begin() as connection:
        link_id = connection.execute(
            table.insert().values(
                plan_id=plan_id,
                account_id=account_id,
                token_hash=token_hash,
                created_at=now,
                created_by=actor,
                expires_at=expires_at,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        store.audit(
            connection,
            actor,
            CREATE_ACTION,
            _subject(link_id),
            {"plan_id": plan_id, "account_id": account_id, "expires_at": expires_at.isoformat()},
        )
        return _rows(connection, sa.select(*_COLUMNS).where(table.c.id == link_id))[0]


def find_by_hash(store: StateStore, token_hash: str) -> PlanLinkRow | None:
    """The link with this token hash (revoked or expired too), if any."""
    table = schema.plan_links
    with store.engine.connect() as connection:
        found = _rows(connection, sa.select(*_COLUMNS).where(table.c.token_hash == token_hash))
    return found[0] if found else None


def record_opened(store: StateStore, link_id: int, at: datetime) -> None:
    """Remember when the customer last opened the link."""
    table = schema.plan_links
    with store.engine.begin() as connection:
        connection.execute(table.update().where(table.c.id == link_id).values(last_opened_at=at))


def list_links(store: StateStore, *, plan_id: int | None = None) -> list[PlanLinkRow]:
    """Links (to one plan, or all), newest first."""
    table = schema.plan_links
    query = sa.select(*_COLUMNS).order_by(table.c.id.desc())
    if plan_id is not None:
        query = query.where(table.c.plan_id == plan_id)
    with store.engine.connect() as connection:
        return _rows(connection, query)


def revoke(store: StateStore, link_id: int, *, actor: str, now: datetime) -> PlanLinkRow:
    """Revoke a link (audited); revoking a revoked link keeps its first revocation time.
    NotFoundError if there is no such link."""
    table = schema.plan_links
    with store.engine.begin() as connection:
        updated = connection.execute(
            table.update()
            .where(table.c.id == link_id, table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        found = _rows(connection, sa.select(*_COLUMNS).where(table.c.id == link_id))
        if not found:
            raise NotFoundError(f"no plan link {link_id}; `closeloop plans links` lists them")
        if updated:
            store.audit(
                connection,
                actor,
                REVOKE_ACTION,
                _subject(link_id),
                {"plan_id": found[0].plan_id, "account_id": found[0].account_id},
            )
    return found[0]
