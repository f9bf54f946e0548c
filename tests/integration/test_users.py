"""Dashboard users and sessions on a SQLite and a PostgreSQL state store: argon2 hashes, add /
list / remove, login and failed login, idle and absolute expiry, logout and removal revoke, audit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from closeloop.engine import audit, schema
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import ConfigurationError, NotFoundError, StateError
from closeloop.schemas.users import UserRole
from closeloop.services import users
from support import Backends

PASSWORD = "correct horse battery"


@pytest.fixture
def store(backends: Backends) -> Iterator[StateStore]:
    state = StateStore.connect(backends.state_url)
    state.migrate()
    try:
        yield state
    finally:
        state.close()


def _stored(store: StateStore, table: sa.Table) -> list[dict[str, object]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table))]


def _actions(store: StateStore) -> list[str]:
    entries, _ = audit.list_entries(store, action="user.*", limit=100)
    return [entry.action for entry in reversed(entries)]


def test_passwords_are_stored_as_argon2_hashes_only(store: StateStore) -> None:
    ann = users.add_user(store, name="ann", role="editor", password=PASSWORD, actor="ops")
    assert (ann.name, ann.role, ann.created_by, ann.last_login_at) == (
        "ann",
        UserRole.editor,
        "ops",
        None,
    )
    [row] = _stored(store, schema.users)
    stored_hash = str(row["password_hash"])
    assert stored_hash.startswith("$argon2id$")
    assert PASSWORD not in stored_hash
    # Salted: the same password twice gives two different hashes.
    users.add_user(store, name="bob", role="viewer", password=PASSWORD, actor="ops")
    hashes = {str(r["password_hash"]) for r in _stored(store, schema.users)}
    assert len(hashes) == 2
    # Nothing a list shows carries a hash.
    listing = users.list_users(store)
    assert listing.count == 2
    assert [u.name for u in listing.users] == ["ann", "bob"]
    assert "argon2" not in listing.model_dump_json()


def test_bad_users_are_refused_with_a_clear_message(store: StateStore) -> None:
    users.add_user(store, name="ann", role="admin", password=PASSWORD, actor="ops")
    with pytest.raises(StateError, match="a user named 'ann' exists"):
        users.add_user(store, name="ann", role="viewer", password=PASSWORD, actor="ops")
    with pytest.raises(ConfigurationError, match="unknown role 'ingest'"):
        users.add_user(store, name="cy", role="ingest", password=PASSWORD, actor="ops")
    with pytest.raises(ConfigurationError, match="at least 8 characters; this one has 5"):
        users.add_user(store, name="cy", role="viewer", password="short", actor="ops")
    with pytest.raises(ConfigurationError, match="spaces or control characters"):
        users.add_user(store, name="c y", role="viewer", password=PASSWORD, actor="ops")
    with pytest.raises(ConfigurationError, match="needs a name"):
        users.add_user(store, name="  ", role="viewer", password=PASSWORD, actor="ops")
    with pytest.raises(NotFoundError, match="no user named 'nobody'; users: ann"):
        users.remove_user(store, "nobody", actor="ops")
    assert users.list_users(store).count == 1


def test_login_opens_a_session_and_failures_are_audited(store: StateStore) -> None:
    users.add_user(store, name="ann", role="viewer", password=PASSWORD, actor="ops")
    assert users.log_in(store, "ann", "wrong password", client="10.0.0.1") is None
    assert users.log_in(store, "nobody", PASSWORD) is None
    session = users.log_in(store, "ann", PASSWORD, client="10.0.0.1")
    assert session is not None
    assert len(session.cookie) >= 43  # 32 random bytes, base64url
    # Only the cookie's SHA-256 is stored.
    [row] = _stored(store, schema.web_sessions)
    assert row["session_hash"] == users.session_hash(session.cookie)
    assert session.cookie not in {str(v) for v in row.values()}
    user = users.session_user(store, session.cookie)
    assert user is not None
    assert (user.name, user.role, user.csrf_token) == ("ann", UserRole.viewer, session.csrf_token)
    assert users.session_user(store, "not-a-session") is None
    assert users.list_users(store).users[0].last_login_at is not None
    assert _actions(store) == ["user.add", "user.login_failed", "user.login_failed", "user.login"]
    failed, _ = audit.list_entries(store, action="user.login_failed", limit=10)
    assert {entry.detail["known_user"] for entry in failed} == {True, False}
    assert all(PASSWORD not in str(entry.detail) for entry in failed)


def test_sessions_expire_when_idle_and_after_seven_days(store: StateStore) -> None:
    users.add_user(store, name="ann", role="viewer", password=PASSWORD, actor="ops")
    start = utc_now()
    session = users.log_in(store, "ann", PASSWORD, now=start)
    assert session is not None
    cookie = session.cookie
    # Used every 11 hours, it stays alive (each use moves the idle clock)...
    moment = start
    for _ in range(14):
        moment += timedelta(hours=11)
        assert users.session_user(store, cookie, now=moment) is not None, moment - start
    # ... until 7 days after the login, whatever the use.
    assert moment - start == timedelta(days=6, hours=10)
    assert users.session_user(store, cookie, now=start + timedelta(days=7, seconds=-1)) is None
    # Idle for more than 12 hours: gone.
    other = users.log_in(store, "ann", PASSWORD, now=start)
    assert other is not None
    assert users.session_user(store, other.cookie, now=start + timedelta(hours=11, minutes=59))
    later = start + timedelta(hours=11, minutes=59) + timedelta(hours=12, seconds=1)
    assert users.session_user(store, other.cookie, now=later) is None


def test_logout_and_removal_revoke_sessions(store: StateStore) -> None:
    users.add_user(store, name="ann", role="editor", password=PASSWORD, actor="ops")
    first = users.log_in(store, "ann", PASSWORD)
    second = users.log_in(store, "ann", PASSWORD)
    assert first is not None and second is not None
    assert users.log_out(store, first.cookie, actor="ann")
    assert not users.log_out(store, first.cookie, actor="ann")  # already out
    assert users.session_user(store, first.cookie) is None
    assert users.session_user(store, second.cookie) is not None
    removed = users.remove_user(store, "ann", actor="ops")
    assert (removed.user.name, removed.sessions_revoked) == ("ann", 1)
    assert users.session_user(store, second.cookie) is None
    assert users.log_in(store, "ann", PASSWORD) is None
    assert users.list_users(store).count == 0
    # The name can be taken again, and the old sessions stay dead.
    users.add_user(store, name="ann", role="viewer", password=PASSWORD, actor="ops")
    assert users.session_user(store, second.cookie) is None
    assert _actions(store) == [
        "user.add",
        "user.login",
        "user.login",
        "user.logout",
        "user.remove",
        "user.login_failed",
        "user.add",
    ]
