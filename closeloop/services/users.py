"""Dashboard users and their sessions: add, list, remove, log in, look a session up, log out.

Passwords are hashed with argon2id (argon2-cffi's defaults); the session cookie is 256 random
bits of which the store keeps only the SHA-256, beside the CSRF token every unsafe request from
the session must echo. Sessions end after :data:`IDLE` without a request or :data:`LIFETIME`
after the login, whichever comes first; logging out or removing the user revokes them.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from closeloop.engine import audit
from closeloop.engine import users as user_store
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import ConfigurationError
from closeloop.schemas.users import RemovedUser, UserInfo, UserList, UserRole

IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)
MAX_NAME_LENGTH = 200  # the width of users.name
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a bound keeps a request from costing much

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs as long as a wrong password.
    Made on the first log-in, not at import: hashing is slow by design, and every command that
    imports this module (``closeloop users list``) would pay for it."""
    return _HASHER.hash("closeloop: no such user")


@dataclass(frozen=True)
class NewSession:
    """A session just opened: ``cookie`` goes to the browser once; the store has its hash."""

    cookie: str
    csrf_token: str
    user: UserInfo
    expires_at: datetime


@dataclass(frozen=True)
class SessionUser:
    """Who a live session belongs to, with the CSRF token its unsafe requests must carry."""

    name: str
    role: UserRole
    csrf_token: str
    expires_at: datetime


def session_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def _info(record: user_store.UserRecord) -> UserInfo:
    return UserInfo(
        name=record.name,
        role=UserRole(record.role),
        created_at=record.created_at,
        created_by=record.created_by,
        last_login_at=record.last_login_at,
    )


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ConfigurationError("a user needs a name")
    if any(unicodedata.category(character) in {"Cc", "Zs"} for character in name):
        raise ConfigurationError(
            f"a user's name may not hold spaces or control characters: {name!r}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"a user's name has at most {MAX_NAME_LENGTH} characters; this one has {len(name)}"
        )
    return name


def add_user(
    store: StateStore, *, name: str, role: UserRole | str, password: str, actor: str
) -> UserInfo:
    """Add a user who logs in with ``password`` (at least 8 characters); audited."""
    try:
        role = UserRole(role)
    except ValueError as error:
        raise ConfigurationError(
            f"unknown role {role!r}; use one of {', '.join(r.value for r in UserRole)}"
        ) from error
    name = _checked_name(name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigurationError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters; "
            f"this one has {len(password)}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigurationError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    record = user_store.insert_user(
        store, name=name, role=role.value, password_hash=_HASHER.hash(password), actor=actor
    )
    return _info(record)


def list_users(store: StateStore) -> UserList:
    users = [_info(record) for record in user_store.list_users(store)]
    return UserList(count=len(users), users=users)


def remove_user(store: StateStore, name: str, *, actor: str) -> RemovedUser:
    """Remove a user and revoke their sessions at once; audited."""
    record, revoked = user_store.delete_user(store, name.strip(), actor)
    return RemovedUser(user=_info(record), sessions_revoked=revoked)


def log_in(
    store: StateStore, name: str, password: str, *, client: str = "", now: datetime | None = None
) -> NewSession | None:
    """A new session when ``password`` is the user's, else None (the failure is audited, with
    the name tried, never the password)."""
    dummy = _dummy_hash()  # before the look-up: a first log-in costs the same either way
    record = user_store.find_user(store, name) if 0 < len(name) <= MAX_NAME_LENGTH else None
    valid = False
    if len(password) <= MAX_PASSWORD_LENGTH:
        try:
            valid = _HASHER.verify(record.password_hash if record else dummy, password)
        except (VerificationError, InvalidHashError):
            valid = False
    if record is None or not valid:
        audit.record(
            store,
            actor=name[:MAX_NAME_LENGTH] or "(empty)",
            action="user.login_failed",
            subject=f"user:{name[:MAX_NAME_LENGTH]}",
            detail={"client": client, "known_user": record is not None},
        )
        return None
    cookie = secrets.token_urlsafe(32)  # 256 bits
    csrf_token = secrets.token_urlsafe(32)
    now = now or utc_now()
    expires_at = now + LIFETIME
    user_store.insert_session(
        store,
        session_hash=session_hash(cookie),
        user_name=record.name,
        csrf_token=csrf_token,
        expires_at=expires_at,
        detail={"client": client},
        now=now,
    )
    return NewSession(
        cookie=cookie, csrf_token=csrf_token, user=_info(record), expires_at=expires_at
    )


def session_user(
    store: StateStore, cookie: str, *, now: datetime | None = None
) -> SessionUser | None:
    """Whose live session ``cookie`` is, or None (unknown, revoked, idle too long, expired)."""
    if not cookie or len(cookie) > 100:
        return None
    now = now or utc_now()
    key = session_hash(cookie)
    record = user_store.find_session(store, key, now=now, idle_after=now - IDLE)
    if record is None:
        return None
    if record.last_seen_at < now - TOUCH_EVERY:
        user_store.touch_session(store, key, now)
    return SessionUser(
        name=record.user_name,
        role=UserRole(record.role),
        csrf_token=record.csrf_token,
        expires_at=record.expires_at,
    )


def log_out(store: StateStore, cookie: str, *, actor: str) -> bool:
    """Revoke the session ``cookie`` (audited as the user's logout)."""
    return user_store.revoke_session(store, session_hash(cookie), actor)
