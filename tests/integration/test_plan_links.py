"""The customer's read-only links to a success plan, on a SQLite and a PostgreSQL state store:
create, open (recorded), expire, revoke, a token signed by another project or altered, audit.

Links need only the state store: plans here have manual objectives, so no warehouse is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from closeloop.engine import audit
from closeloop.engine import plans as plan_store
from closeloop.engine.plans import NewObjective
from closeloop.engine.state import StateStore
from closeloop.errors import LocatedError, NotFoundError
from closeloop.services import plan_links as links
from support import Backends

SECRET = "f3b0c1d2e4a5968778695a4b3c2d1e0f" * 2
OTHER_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9" * 2
NOW = datetime(2024, 3, 1, 12, 0)


def utc(moment: datetime) -> datetime:
    """A naive UTC time as the schema models give it (aware, UTC)."""
    return moment.replace(tzinfo=UTC)


@pytest.fixture
def store(backends: Backends) -> Iterator[StateStore]:
    state = StateStore.connect(backends.state_url)
    state.migrate()
    try:
        yield state
    finally:
        state.close()


def make_plan(store: StateStore, account: str, title: str) -> int:
    objective = NewObjective(
        title="Weekly active seats",
        measure="manual",
        baseline=10,
        target=30,
        target_date=date(2024, 6, 30),
        owner="csm@vendor.example",
    )
    state = plan_store.create_plan(
        store,
        account_id=account,
        title=title,
        owner="csm@vendor.example",
        objectives=[objective],
        actor="alice@vendor.example",
        now=NOW - timedelta(days=10),
    )
    return state.plan.id


def token_of(path: str) -> str:
    assert path.startswith(links.SHARED_PREFIX)
    return path.removeprefix(links.SHARED_PREFIX)


def test_a_link_opens_its_plan_only_and_records_the_opening(store: StateStore) -> None:
    plan_id = make_plan(store, "acme", "Acme onboarding")
    make_plan(store, "acme", "Acme expansion")  # the same account's other plan is not shown
    created = links.share_plan(
        store,
        SECRET,
        plan_id,
        expires_days=30,
        actor="alice",
        base_url="https://cs.example/",
        now=NOW,
    )
    assert created.plan_id == plan_id and created.account_id == "acme"
    assert created.expires_at == utc(NOW + timedelta(days=30))
    assert created.state == "active" and created.last_opened_at is None
    assert created.url == "https://cs.example" + created.path
    token = token_of(created.path)
    assert len(token) > 43  # the 256 random bits (43 characters) plus the signed claims

    opened = links.open_shared(store, SECRET, token, now=NOW + timedelta(days=1))
    assert opened.status == "ok" and opened.plan is not None
    assert opened.plan.title == "Acme onboarding" and opened.plan.account_id == "acme"
    [objective] = opened.plan.objectives
    assert (objective.title, objective.baseline, objective.target) == (
        "Weekly active seats",
        10,
        30,
    )
    # internal notes never reach the customer's model: owners and actors are not in it
    dumped = opened.model_dump_json()
    assert "csm@vendor.example" not in dumped and "alice" not in dumped

    [listed] = links.list_links(store, plan_id=plan_id, now=NOW + timedelta(days=2)).links
    assert listed.id == created.id and listed.plan_id == plan_id
    assert listed.last_opened_at == utc(NOW + timedelta(days=1))
    # only the token's hash is stored: the random part's SHA-256, not the token
    random_part = URLSafeSerializer(SECRET, salt="closeloop.plan-link").loads(token)[0]
    assert links.token_hash(random_part) == hashlib.sha256(random_part.encode()).hexdigest()
    assert plan_store.plan_ids(store, account_id="acme") == [plan_id, plan_id + 1]


def test_expired_and_revoked_links_are_gone_and_audited(store: StateStore) -> None:
    plan_id = make_plan(store, "acme", "Acme onboarding")
    short = links.share_plan(store, SECRET, plan_id, expires_days=1, actor="alice", now=NOW)
    long = links.share_plan(store, SECRET, plan_id, expires_days=30, actor="alice", now=NOW)

    just_before = links.open_shared(
        store, SECRET, token_of(short.path), now=NOW + timedelta(hours=23)
    )
    assert just_before.status == "ok"
    expired = links.open_shared(store, SECRET, token_of(short.path), now=NOW + timedelta(days=1))
    assert expired.status == "expired" and expired.plan is None

    revoked = links.revoke_link(store, long.id, actor="bob", now=NOW + timedelta(hours=2))
    assert revoked.state == "revoked" and revoked.revoked_at == utc(NOW + timedelta(hours=2))
    again = links.revoke_link(store, long.id, actor="bob", now=NOW + timedelta(hours=3))
    assert again.revoked_at == utc(NOW + timedelta(hours=2))  # the first revocation stands
    gone = links.open_shared(store, SECRET, token_of(long.path), now=NOW + timedelta(hours=4))
    assert gone.status == "revoked" and gone.plan is None

    states = {
        link.id: link.state for link in links.list_links(store, now=NOW + timedelta(days=2)).links
    }
    assert states == {short.id: "expired", long.id: "revoked"}
    entries, total = audit.list_entries(store, action="plan_link.*")
    assert total == 3  # two creations, one revocation (the repeated revoke wrote nothing)
    assert [(e.action, e.actor, e.subject) for e in entries] == [
        ("plan_link.revoke", "bob", f"plan_link:{long.id}"),
        ("plan_link.create", "alice", f"plan_link:{long.id}"),
        ("plan_link.create", "alice", f"plan_link:{short.id}"),
    ]
    assert entries[0].detail == {"plan_id": plan_id, "account_id": "acme"}


def test_a_token_from_another_project_or_altered_opens_nothing(store: StateStore) -> None:
    plan_id = make_plan(store, "acme", "Acme onboarding")
    other_plan = make_plan(store, "globex", "Globex onboarding")
    created = links.share_plan(store, SECRET, plan_id, actor="alice", now=NOW)
    token = token_of(created.path)

    # the same rows served by a project with another secret: the signature does not verify
    assert links.open_shared(store, OTHER_SECRET, token, now=NOW).status == "not_found"
    # the claims re-signed by someone with another secret: refused
    claims = URLSafeSerializer(SECRET, salt="closeloop.plan-link").loads(token)
    forged = URLSafeSerializer(OTHER_SECRET, salt="closeloop.plan-link").dumps(claims)
    assert links.open_shared(store, SECRET, forged, now=NOW).status == "not_found"
    # one character changed in the signed payload, or the signature cut off
    altered = ("B" if token[0] != "B" else "C") + token[1:]
    assert links.open_shared(store, SECRET, altered, now=NOW).status == "not_found"
    assert links.open_shared(store, SECRET, token.rsplit(".", 1)[0], now=NOW).status == "not_found"
    # validly signed claims for another plan, a later expiry or another account: no such row
    for changed in (
        [claims[0], claims[1], other_plan, claims[3]],
        [claims[0], "globex", other_plan, claims[3]],
        [claims[0], claims[1], claims[2], "2099-01-01T00:00:00"],
    ):
        signed = URLSafeSerializer(SECRET, salt="closeloop.plan-link").dumps(changed)
        assert links.open_shared(store, SECRET, signed, now=NOW).status == "not_found", changed
    for garbage in ("", "x", "a.b", "é" * 50, "A" * 5000):
        assert links.open_shared(store, SECRET, garbage, now=NOW).status == "not_found"
    assert links.open_shared(store, SECRET, token, now=NOW).status == "ok"


def test_bad_requests_fail_alone_with_a_clear_message(store: StateStore) -> None:
    with pytest.raises(NotFoundError, match="no success plan 999"):
        links.share_plan(store, SECRET, 999, actor="alice", now=NOW)
    with pytest.raises(NotFoundError, match="no plan link 42"):
        links.revoke_link(store, 42, actor="alice", now=NOW)
    plan_id = make_plan(store, "acme", "Acme onboarding")
    other = make_plan(store, "globex", "Globex plan")
    created = links.share_plan(store, SECRET, plan_id, actor="alice", now=NOW)
    with pytest.raises(NotFoundError, match=f"plan {other} has no link {created.id}"):
        links.revoke_link(store, created.id, actor="alice", plan_id=other, now=NOW)
    with pytest.raises(LocatedError, match="at most 366"):
        links.share_plan(store, SECRET, plan_id, expires_days=400, actor="alice", now=NOW)
    assert links.parse_expiry("30d") == 30
    assert links.parse_expiry(" 12h ") == 0.5
    assert links.parse_expiry("7") == 7
    for text in ("0d", "-1d", "soon", "nan", "inf", "400d", ""):
        with pytest.raises(LocatedError, match="--expires"):
            links.parse_expiry(text)
