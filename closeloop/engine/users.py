"""Dashboard users and their web sessions in the state store (the only SQL on ``users`` and
``web_sessions``).

Only hashes are stored: the password's (argon2, made by :mod:`closeloop.services.users`) and the
session cookie's SHA-256. Every change is audited in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import NotFoundError, StateError

_USERS = schema.users
_SESSIONS = schema.web_sessions


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: datetime
    created_by: str
    last_login_at: datetime | None


@dataclass(frozen=True)
class SessionRecord:
    """A live session joined with its user's current role (a role change applies at once)."""

    session_hash: str
    user_name: str
    role: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


def _user(row: Any) -> UserRecord:
    m = row._mapping
    return UserRecord(
        id=m["id"],
        name=m["name"],
        role=m["role"],
        password_hash=m["password_hash"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        last_login_at=m["last_login_at"],
    )


def insert_user(
    store: StateStore, *, name: str, role: str, password_hash: str, actor: str
) -> UserRecord:
    """Add a user; a taken name is a :class:`StateError` (nothing is written)."""
    now = utc_now()
    with store.engine.begin() as connection:
        taken = connection.execute(sa.select(_USERS.c.id).where(_USERS.c.name == name)).first()
        if taken is not None:
            raise StateError(
                f"a user named {name!r} exists; remove it first (closeloop users remove {name})"
            )
        user_id = connection.execute(
            _USERS.insert().values(
                name=name,
                role=role,
                password_hash=password_hash,
                created_at=now,
                created_by=actor,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        store.audit(connection, actor, "user.add", f"user:{name}", {"role": role})
        row = connection.execute(sa.select(_USERS).where(_USERS.c.id == user_id)).one()
    return _user(row)


def find_user(store: StateStore, name: str) -> UserRecord | None:
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(_USERS).where(_USERS.c.name == name)).first()
    return _user(row) if row is not None else None


def list_users(store: StateStore) -> list[UserRecord]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(_USERS).order_by(_USERS.c.name)).all()
    return [_user(row) for row in rows]


def delete_user(store: StateStore, name: str, actor: str) -> tuple[UserRecord, int]:
    """Remove a user and revoke their live sessions; returns the user and how many sessions."""
    now = utc_now()
    with store.engine.begin() as connection:
        row = connection.execute(sa.select(_USERS).where(_USERS.c.name == name)).first()
        if row is None:
            known = connection.execute(sa.select(_USERS.c.name).order_by(_USERS.c.name)).all()
            names = ", ".join(r.name for r in known) or "none"
            raise NotFoundError(f"no user named {name!r}; users: {names}")
        revoked = connection.execute(
            _SESSIONS.update()
            .where(_SESSIONS.c.user_name == name, _SESSIONS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        connection.execute(_USERS.delete().where(_USERS.c.name == name))
        store.audit(connection, actor, "user.remove", f"user:{name}", {"sessions_revoked": revoked})
    return _user(row), revoked


def insert_session(
    store: StateStore,
    *,
    session_hash: str,
    user_name: str,
    csrf_token: str,
    expires_at: datetime,
    detail: Any,
    now: datetime,
) -> None:
    """Record a login: the session, the user's ``last_login_at`` and the audit entry, at once."""
    with store.engine.begin() as connection:
        connection.execute(
            _SESSIONS.insert().values(
                session_hash=session_hash,
                user_name=user_name,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
                last_seen_at=now,
            )
        )
        connection.execute(
            _USERS.update().where(_USERS.c.name == user_name).values(last_login_at=now)
        )
        store.audit(connection, user_name, "user.login", f"user:{user_name}", detail)


def find_session(
    store: StateStore, session_hash: str, *, now: datetime, idle_after: datetime
) -> SessionRecord | None:
    """The session if at ``now`` it is neither revoked, expired, idle since before
    ``idle_after``, nor of a removed user."""
    query = (
        sa.select(
            _SESSIONS.c.session_hash,
            _SESSIONS.c.user_name,
            _USERS.c.role,
            _SESSIONS.c.csrf_token,
            _SESSIONS.c.created_at,
            _SESSIONS.c.expires_at,
            _SESSIONS.c.last_seen_at,
        )
        .join(_USERS, _USERS.c.name == _SESSIONS.c.user_name)
        .where(
            _SESSIONS.c.session_hash == session_hash,
            _SESSIONS.c.revoked_at.is_(None),
            _SESSIONS.c.expires_at > now,
            _SESSIONS.c.last_seen_at > idle_after,
        )
    )
    with store.engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    m = row._mapping
    return SessionRecord(
        session_hash=m["session_hash"],
        user_name=m["user_name"],
        role=m["role"],
        csrf_token=m["csrf_token"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        last_seen_at=m["last_seen_at"],
    )


def touch_session(store: StateStore, session_hash: str, at: datetime) -> None:
    """Move the idle clock; written only when the stored time is older (one write per minute)."""
    with store.engine.begin() as connection:
        connection.execute(
            _SESSIONS.update()
            .where(_SESSIONS.c.session_hash == session_hash, _SESSIONS.c.last_seen_at < at)
            .values(last_seen_at=at)
        )


def revoke_session(store: StateStore, session_hash: str, actor: str) -> bool:
    """Log out: revoke one session (audited); False when it was not live."""
    now = utc_now()
    with store.engine.begin() as connection:
        revoked = connection.execute(
            _SESSIONS.update()
            .where(_SESSIONS.c.session_hash == session_hash, _SESSIONS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        if revoked:
            store.audit(connection, actor, "user.logout", f"user:{actor}", None)
    return bool(revoked)
