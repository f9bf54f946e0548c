"""API tokens: create (shown once), list, revoke, and authenticate a presented token."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from closeloop.engine import tokens as token_store
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.schemas.tokens import CreatedToken, Role, TokenInfo
from closeloop.settings import Settings, load_settings

TOKEN_PREFIX = "cl_"
_SHOWN_PREFIX = 10
MAX_NAME_LENGTH = 200  # the width of api_tokens.name


@contextmanager
def project_store(
    project_dir: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Iterator[tuple[Settings, StateStore]]:
    """The project's settings and its state store, migrated, closed afterwards (for the CLI:
    tokens need neither the warehouse nor valid definitions)."""
    settings = load_settings(project_dir, environ)
    store = StateStore.connect(settings.state_url)
    try:
        store.migrate()
        yield settings, store
    finally:
        store.close()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(record: token_store.TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=record.id,
        name=record.name,
        role=Role(record.role),
        prefix=record.prefix,
        created_at=record.created_at,
        created_by=record.created_by,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


def create_token(store: StateStore, *, name: str, role: Role | str, actor: str) -> CreatedToken:
    """A new random token (256 bits) with ``role``; only its SHA-256 is stored."""
    try:
        role = Role(role)
    except ValueError as error:
        raise ConfigurationError(
            f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}"
        ) from error
    if not name.strip():
        raise ConfigurationError("a token needs a name (who or what uses it)")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise ConfigurationError(f"a token's name may not hold control characters: {name!r}")
    if (length := len(name.strip())) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"a token's name has at most {MAX_NAME_LENGTH} characters; this one has {length}"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = token_store.insert_token(
        store,
        name=name.strip(),
        role=role.value,
        token_hash=token_hash(token),
        prefix=token[:_SHOWN_PREFIX],
        actor=actor,
    )
    return CreatedToken(**_info(record).model_dump(), token=token)


def list_tokens(store: StateStore, *, include_revoked: bool = False) -> list[TokenInfo]:
    return [_info(r) for r in token_store.list_tokens(store, include_revoked=include_revoked)]


def revoke_token(store: StateStore, name_or_id: str, *, actor: str) -> list[TokenInfo]:
    if "\x00" in name_or_id:  # no name has one (see create_token); PostgreSQL refuses it in text
        raise NotFoundError(f"no active API token named or numbered {name_or_id!r}")
    return [_info(r) for r in token_store.revoke(store, name_or_id, actor)]


def authenticate(store: StateStore, token: str) -> TokenInfo | None:
    """The active token ``token`` is, or None (unknown, revoked, or not a closeloop token)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    record = token_store.find_active(store, token_hash(token))
    if record is None:
        return None
    now = utc_now()
    # A write per request would serialise every request on SQLite's write lock: record the use
    # only when the stored minute is older than this one (touch checks it again in SQL).
    if record.last_used_at is None or record.last_used_at < now.replace(second=0, microsecond=0):
        token_store.touch(store, record.id, now)
    return _info(record)
