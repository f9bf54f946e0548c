"""API tokens in the state store: create, look up by hash, list, revoke (the only SQL on them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import NotFoundError

_MAX_ID = 2**31 - 1  # api_tokens.id is an INTEGER


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


def _record(row: Any) -> TokenRecord:
    mapping = row._mapping
    return TokenRecord(
        id=mapping["id"],
        name=mapping["name"],
        role=mapping["role"],
        prefix=mapping["prefix"],
        created_at=mapping["created_at"],
        created_by=mapping["created_by"],
        last_used_at=mapping["last_used_at"],
        revoked_at=mapping["revoked_at"],
    )


_COLUMNS = (
    schema.api_tokens.c.id,
    schema.api_tokens.c.name,
    schema.api_tokens.c.role,
    schema.api_tokens.c.prefix,
    schema.api_tokens.c.created_at,
    schema.api_tokens.c.created_by,
    schema.api_tokens.c.last_used_at,
    schema.api_tokens.c.revoked_at,
)


def insert_token(
    store: StateStore, *, name: str, role: str, token_hash: str, prefix: str, actor: str
) -> TokenRecord:
    """Store a new token's hash; the creation is audited in the same transaction."""
    now = utc_now()
    with store.engine.begin() as connection:
        token_id = connection.execute(
            schema.api_tokens.insert().values(
                name=name,
                role=role,
                token_hash=token_hash,
                prefix=prefix,
                created_at=now,
                created_by=actor,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        store.audit(
            connection, actor, "token.create", f"token:{token_id}", {"name": name, "role": role}
        )
        row = connection.execute(
            sa.select(*_COLUMNS).where(schema.api_tokens.c.id == token_id)
        ).one()
    return _record(row)


def find_active(store: StateStore, token_hash: str) -> TokenRecord | None:
    """The unrevoked token with this hash, if any."""
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(*_COLUMNS).where(
                schema.api_tokens.c.token_hash == token_hash,
                schema.api_tokens.c.revoked_at.is_(None),
            )
        ).one_or_none()
    return None if row is None else _record(row)


def touch(store: StateStore, token_id: int, at: datetime) -> None:
    """Record when a token was last used (at most once a minute per token, to spare writes)."""
    with store.engine.begin() as connection:
        connection.execute(
            schema.api_tokens.update()
            .where(
                schema.api_tokens.c.id == token_id,
                sa.or_(
                    schema.api_tokens.c.last_used_at.is_(None),
                    schema.api_tokens.c.last_used_at < at.replace(second=0, microsecond=0),
                ),
            )
            .values(last_used_at=at)
        )


def list_tokens(store: StateStore, *, include_revoked: bool = False) -> list[TokenRecord]:
    query = sa.select(*_COLUMNS).order_by(schema.api_tokens.c.id)
    if not include_revoked:
        query = query.where(schema.api_tokens.c.revoked_at.is_(None))
    with store.engine.connect() as connection:
        return [_record(row) for row in connection.execute(query)]


def revoke(store: StateStore, name_or_id: str, actor: str) -> list[TokenRecord]:
    """Revoke the active tokens named ``name_or_id`` (or with that id); NotFoundError if none."""
    now = utc_now()
    table = schema.api_tokens
    match = table.c.name == name_or_id
    # An id is ASCII digits within the column's range ("²" is a digit to str.isdigit, and a
    # 20-digit number overflows SQLite's and PostgreSQL's integers): anything else is a name.
    if name_or_id.isascii() and name_or_id.isdigit() and int(name_or_id) <= _MAX_ID:
        match = sa.or_(match, table.c.id == int(name_or_id))
    with store.engine.begin() as connection:
        rows = connection.execute(
            sa.select(*_COLUMNS).where(match, table.c.revoked_at.is_(None))
        ).all()
        if not rows:
            raise NotFoundError(f"no active API token named or numbered {name_or_id!r}")
        ids = [row._mapping["id"] for row in rows]
        connection.execute(table.update().where(table.c.id.in_(ids)).values(revoked_at=now))
        for token_id in ids:
            store.audit(connection, actor, "token.revoke", f"token:{token_id}", {})
        revoked = connection.execute(sa.select(*_COLUMNS).where(table.c.id.in_(ids))).all()
    return [_record(row) for row in revoked]
