"""Segment-compatible ingestion end to end: the API on a real project (DuckDB file + SQLite, and
PostgreSQL for both), messages buffered in the state store and flushed into the warehouse."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import Api, api_for
from typer.testing import CliRunner

from closeloop.cli.main import app as cli
from closeloop.data.ingest_writer import write_messages
from closeloop.data.warehouse import Warehouse
from closeloop.engine import ingest_buffer, schema
from closeloop.errors import ConfigurationError
from closeloop.schemas.ingest import FlushResult
from closeloop.schemas.tokens import Role
from closeloop.services import ingest as ingest_service
from closeloop.services.ingest import IngestError, RateLimiter, flush
from closeloop.services.project import init_project
from closeloop.settings import load_settings
from support import Backends

AT = "2024-05-01T10:00:00Z"
ROUTES = ("/v1/track", "/v1/identify", "/v1/group", "/v1/page", "/v1/screen", "/v1/batch")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "acme"
    init_project(folder, name="acme")
    return folder


@pytest.fixture
def api(project: Path, backends: Backends) -> Iterator[Api]:
    # No background flusher: each test flushes when it wants to look.
    with api_for(project, {**backends.environ(), "CLOSELOOP_INGEST_FLUSH_INTERVAL": "0"}) as api:
        yield api


def _basic(token: str) -> dict[str, str]:
    """Segment's convention: the write key as the HTTP Basic user, no password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


def _post(api: Api, path: str, body: Any, role: Role = Role.ingest) -> Any:
    response = api.client.post(path, headers=api.headers(role), json=body)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    return response.json()


def _flush(api: Api) -> FlushResult:
    return flush(api.server.settings, api.server.store)


def _rows(api: Api, table: str) -> list[dict[str, Any]]:
    with Warehouse.connect(api.server.settings.warehouse_url) as warehouse:
        warehouse.ensure_tables()
        return sorted(
            warehouse.table(table).to_pyarrow().to_pylist(),
            key=lambda row: json.dumps(row, default=str),
        )


def _group(user: str, account: str, message_id: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "userId": user,
        "groupId": account,
        "traits": traits,
        "messageId": message_id,
        "timestamp": AT,
    }


def _track(message_id: str, user: str | None = "u1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "track", "event": "Report Built", "messageId": message_id}
    if user is not None:
        body["userId"] = user
    return {**body, **fields}


def test_each_message_type_lands_in_its_table(api: Api) -> None:
    _post(
        api,
        "/v1/group",
        _group("u1", "acme", "g1", name="Acme", plan="pro", employees=50, color="red"),
    )
    _post(
        api,
        "/v1/identify",
        {
            "userId": "u1",
            "traits": {"email": "ada@acme.test", "name": "Ada", "tz": "UTC"},
            "messageId": "i1",
        },
    )
    _post(
        api,
        "/v1/track",
        _track("t1", timestamp="2024-05-02T09:30:00+02:00", properties={"revenue": 12.5}),
    )
    _post(
        api, "/v1/page", {"userId": "u1", "name": "Pricing", "category": "Docs", "messageId": "p1"}
    )
    _post(
        api,
        "/v1/screen",
        {"anonymousId": "x", "name": "Home", "messageId": "s1", "context": {"groupId": "acme"}},
    )
    result = _flush(api)
    assert result.model_dump() == {
        "messages": 5,
        "events_stored": 3,
        "duplicates": 0,
        "quarantined": 0,
        "profiles_applied": 2,
        "accounts_inserted": 1,
        "accounts_updated": 0,
        "people_inserted": 1,
        "people_updated": 0,
        "remaining": 0,
    }
    [account] = _rows(api, "accounts")
    assert (account["account_id"], account["name"], account["plan"], account["employees"]) == (
        "acme",
        "Acme",
        "pro",
        50,
    )
    assert json.loads(account["properties"]) == {"color": "red"}
    assert account["created_at"].isoformat() == "2024-05-01T10:00:00"
    [person] = _rows(api, "people")
    assert (person["person_id"], person["account_id"], person["email"], person["name"]) == (
        "u1",
        "acme",
        "ada@acme.test",
        "Ada",
    )
    events = {row["event_id"]: row for row in _rows(api, "events")}
    assert events["t1"]["name"] == "Report Built"
    assert events["t1"]["timestamp"].isoformat() == "2024-05-02T07:30:00"  # UTC
    assert (events["t1"]["account_id"], events["t1"]["person_id"], events["t1"]["value"]) == (
        "acme",
        "u1",
        12.5,
    )
    assert events["p1"]["name"] == "page_viewed"
    assert json.loads(events["p1"]["properties"]) == {"name": "Pricing", "category": "Docs"}
    assert (events["s1"]["name"], events["s1"]["person_id"]) == ("screen_viewed", None)

    # A later group call changes a trait: the account is updated, the change kept in history.
    _post(
        api,
        "/v1/group",
        {**_group("u1", "acme", "g2", plan="enterprise"), "timestamp": "2024-06-01T00:00:00Z"},
    )
    assert _flush(api).accounts_updated == 1
    [account] = _rows(api, "accounts")
    assert account["plan"] == "enterprise"
    assert account["name"] == "Acme"  # traits not sent are kept
    changes = [
        (r["name"], r["value"], r["valid_from"].isoformat())
        for r in _rows(api, "attribute_history")
    ]
    assert ("plan", '"enterprise"', "2024-06-01T00:00:00") in changes
    assert ("plan", '"pro"', "2024-05-01T10:00:00") in changes


def test_basic_and_bearer_tokens_and_roles(api: Api) -> None:
    _post(api, "/v1/group", _group("u1", "acme", "g1"))
    body = _track("t1")
    bearer = api.client.post("/v1/track", headers=api.headers(Role.ingest), json=body)
    basic = api.client.post("/v1/track", headers=_basic(api.tokens[Role.ingest]), json=_track("t2"))
    admin = api.client.post("/v1/track", headers=_basic(api.tokens[Role.admin]), json=_track("t3"))
    assert [r.status_code for r in (bearer, basic, admin)] == [200, 200, 200]
    assert basic.json() == {"success": True, "received": 1}
    for path in ROUTES:
        for role in (Role.viewer, Role.editor):
            refused = api.client.post(path, headers=_basic(api.tokens[role]), json=body)
            assert refused.status_code == 403, (path, role)
            assert refused.json()["error"]["code"] == "forbidden"
        anonymous = api.client.post(path, json=body)
        assert anonymous.status_code == 401
        assert "error" in anonymous.json()
    assert _flush(api).events_stored == 3


def test_the_same_batch_twice_stores_each_event_once(api: Api) -> None:
    _post(api, "/v1/group", _group("u1", "acme", "g1"))
    batch = {"batch": [_track(f"m-{i}") for i in range(20)] + [_track("m-3")]}
    _post(api, "/v1/batch", batch)
    first = _flush(api)
    assert (first.events_stored, first.duplicates) == (20, 1)
    _post(api, "/v1/batch", batch)
    second = _flush(api)
    assert (second.messages, second.events_stored, second.duplicates) == (21, 0, 21)
    assert len(_rows(api, "events")) == 20


def test_an_800_kb_batch_gets_a_400_json_error_and_nothing_is_kept(api: Api) -> None:
    padding = "x" * 30_000
    batch = {"batch": [_track(f"m-{i}", properties={"pad": padding}) for i in range(27)]}
    body = json.dumps(batch).encode()
    size = len(body)
    assert size > 800_000
    response = api.client.post("/v1/batch", headers=api.headers(Role.ingest), content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "500 KB" in error["message"]
    assert f"{size:,} bytes" in error["message"]
    # A body sent without Content-Length (chunked) is refused as soon as it passes the limit.
    chunks = iter([b'{"batch": [', b" " * 600_000, b"]}"])
    chunked = api.client.post("/v1/batch", headers=api.headers(Role.ingest), content=chunks)
    assert chunked.status_code == 400
    assert chunked.json()["error"]["code"] == "too_large"
    assert "bytes were read before it was refused" in chunked.json()["error"]["message"]
    assert _flush(api).messages == 0


def test_a_33_kb_message_gets_a_400(api: Api) -> None:
    big = _track("big", properties={"pad": "x" * 33_000})
    alone = api.client.post("/v1/track", headers=api.headers(Role.ingest), json=big)
    assert alone.status_code == 400
    assert "track message" in alone.json()["error"]["message"]
    assert "32 KB" in alone.json()["error"]["message"]
    in_batch = api.client.post(
        "/v1/batch", headers=api.headers(Role.ingest), json={"batch": [_track("ok"), big]}
    )
    assert in_batch.status_code == 400
    assert in_batch.json()["error"]["location"]["file"] == "batch[1]"
    assert _flush(api).messages == 0


@pytest.mark.parametrize(
    ("body", "location", "words"),
    [
        (b"{not json", None, "not JSON"),
        (b"[1, 2]", None, "JSON object, not an array"),
        (b'{"batch": 3}', "batch", "valid list"),
        (
            json.dumps(
                {"batch": [_track("a"), _track("b"), _track("c"), {"type": "track", "userId": "u"}]}
            ),
            "batch[3].event",
            "needs an event",
        ),
        (
            json.dumps({"batch": [{**_track("a"), "properties": "x"}]}),
            "batch[0].properties",
            "dictionary",
        ),
        (json.dumps({"batch": [{"userId": "u", "event": "e"}]}), "batch[0].type", "needs a type"),
        (json.dumps({"batch": [{"type": "alias", "userId": "u"}]}), "batch[0].type", "track"),
        (
            json.dumps({"batch": [{"type": "track", "event": "e"}]}),
            "batch[0].userId",
            "anonymousId",
        ),
        (json.dumps({"batch": [{"type": "group", "userId": "u"}]}), "batch[0].groupId", "groupId"),
        (
            json.dumps({"batch": [{**_track("a"), "timestamp": "yesterday"}]}),
            "batch[0].timestamp",
            "datetime",
        ),
    ],
)
def test_malformed_bodies_get_a_located_400(
    api: Api, body: bytes | str, location: str | None, words: str
) -> None:
    response = api.client.post(
        "/v1/batch",
        headers={**api.headers(Role.ingest), "Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert (error["location"] or {}).get("file") == location
    assert _flush(api).messages == 0


def test_a_track_without_event_on_its_own_route(api: Api) -> None:
    response = api.client.post("/v1/track", headers=api.headers(Role.ingest), json={"userId": "u"})
    assert response.status_code == 400
    assert response.json()["error"]["location"]["file"] == "event"


def test_events_of_unknown_accounts_are_quarantined_with_a_located_reason(
    api: Api, project: Path, backends: Backends
) -> None:
    _post(api, "/v1/group", _group("u1", "acme", "g1"))
    batch = [
        _track("m-1"),
        _track("m-12", user="u-9"),
        _track("m-13", user="u1", context={"groupId": "nowhere"}),
        _track("m-14", user=None, anonymousId="anon"),
        {"type": "identify", "userId": "u-7", "traits": {"email": "x@y.z"}, "messageId": "i-7"},
        _group("u2", "beta", "g-bad", employees="many"),
    ]
    _post(api, "/v1/batch", {"batch": batch})
    result = _flush(api)
    assert (result.events_stored, result.quarantined, result.profiles_applied) == (1, 5, 1)
    reasons = {row["reason"] for row in _rows(api, "quarantine")}
    assert (
        "messageId m-12: no account: context.groupId is missing and user u-9 was never grouped; "
        "send a group call for the user (or set context.groupId)"
    ) in reasons
    assert any(
        r.startswith("messageId m-13: unknown account 'nowhere' (context.groupId)") for r in reasons
    )
    assert any("m-14" in r and "has no userId" in r for r in reasons)
    assert any(r.startswith("messageId i-7: no account for user u-7") for r in reasons)
    assert any(
        r.startswith("messageId g-bad: traits.employees: expected an integer") for r in reasons
    )
    # Posted again: each message is a duplicate (of the event stored or the message quarantined).
    _post(api, "/v1/batch", {"batch": batch})
    again = _flush(api)
    assert (again.duplicates, again.quarantined, again.events_stored) == (6, 0, 0)
    assert len(_rows(api, "quarantine")) == 5

    # `closeloop quarantine list` shows them, run as another process while the server runs: the
    # server holds no warehouse connection.
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "closeloop"), "quarantine", "list", "--table", "events"],
        cwd=project,
        env={**os.environ, **backends.environ(), "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "segment:track" in listed.stdout
    assert "m-12" in listed.stdout and "never grouped" in listed.stdout


def test_the_rate_limit_answers_429_with_retry_after(project: Path, backends: Backends) -> None:
    environ = {
        **backends.environ(),
        "CLOSELOOP_INGEST_FLUSH_INTERVAL": "0",
        "CLOSELOOP_INGEST_RATE": "5",
    }
    with api_for(project, environ) as api:
        batch = {"batch": [_track(f"m-{i}") for i in range(10)]}
        assert (
            api.client.post("/v1/batch", headers=api.headers(Role.ingest), json=batch).status_code
            == 200
        )
        limited = api.client.post("/v1/batch", headers=api.headers(Role.ingest), json=batch)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # The limit is per token: another token is not slowed by this one.
        other = api.client.post("/v1/batch", headers=api.headers(Role.admin), json=batch)
        assert other.status_code == 200
        assert _flush(api).messages == 20


def test_bulk_upload_imports_a_file_with_its_bad_rows_quarantined(api: Api) -> None:
    accounts = (
        "account_id,name,created_at,plan\n"
        "a1,Acme,2024-05-01T00:00:00Z,pro\n"
        "a2,Beta,not a date,pro\n"
        "a3,Gamma,2024-05-03T00:00:00Z,starter\n"
    )
    response = api.client.post(
        "/v1/import/accounts",
        headers=api.headers(Role.ingest),
        files={"file": ("accounts.csv", accounts.encode(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "table": "accounts",
        "file": "accounts.csv",
        "rows_read": 3,
        "imported": 2,
        "updated": 0,
        "unchanged": 0,
        "quarantined": 1,
        "future_dated": 0,
        "warnings": [],
    }
    [bad] = _rows(api, "quarantine")
    assert (bad["row_number"], bad["column_name"]) == (2, "created_at")
    assert bad["file"].endswith("/accounts.csv")
    # The same file uploaded again adds nothing, and quarantines nothing twice.
    again = api.client.post(
        "/v1/import/accounts",
        headers=api.headers(Role.ingest),
        files={"file": ("accounts.csv", accounts.encode(), "text/csv")},
    )
    assert (again.json()["imported"], again.json()["unchanged"]) == (0, 2)
    assert len(_rows(api, "quarantine")) == 1
    event = {"event_id": "e1", "account_id": "a1", "name": "login", "timestamp": "2024-05-02"}
    jsonl = (json.dumps(event) + "\n").encode()
    events = api.client.post(
        "/v1/import/events",
        headers=_basic(api.tokens[Role.ingest]),
        files={"file": ("export.txt", jsonl)},
        data={"format": "jsonl"},
    )
    assert events.status_code == 200, events.text
    assert events.json()["imported"] == 1
    unknown = api.client.post(
        "/v1/import/invoices",
        headers=api.headers(Role.ingest),
        files={"file": ("x.csv", b"a\n1\n")},
    )
    assert unknown.status_code == 404
    assert "canonical tables are" in unknown.json()["error"]["message"]
    viewer = api.client.post(
        "/v1/import/accounts", headers=api.headers(Role.viewer), files={"file": ("a.csv", b"a\n")}
    )
    assert viewer.status_code == 403


def test_the_server_flushes_in_the_background(project: Path, backends: Backends) -> None:
    environ = {**backends.environ(), "CLOSELOOP_INGEST_FLUSH_INTERVAL": "0.1"}
    with api_for(project, environ) as api:
        _post(api, "/v1/batch", {"batch": [_group("u1", "acme", "g1"), _track("m-1")]})
        deadline = time.monotonic() + 30
        while not _rows(api, "events") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [row["event_id"] for row in _rows(api, "events")] == ["m-1"]


def test_closeloop_ingest_flush_prints_the_flush_result(
    api: Api, project: Path, backends: Backends
) -> None:
    _post(api, "/v1/batch", {"batch": [_group("u1", "acme", "g1"), _track("m-1"), _track("m-1")]})
    runner = CliRunner(env={**backends.environ(), "CLOSELOOP_PROJECT": None})
    result = runner.invoke(cli, ["ingest", "flush", "--project", str(project), "--format", "json"])
    assert result.exit_code == 0, result.output
    flushed = FlushResult.model_validate_json(result.output)
    assert (flushed.messages, flushed.events_stored, flushed.duplicates) == (3, 1, 1)
    table = runner.invoke(cli, ["ingest", "flush", "--project", str(project)])
    assert table.exit_code == 0, table.output
    assert "flushed 0 message(s)" in table.output


def test_sent_at_corrects_the_clock_skew_of_the_sender(api: Api) -> None:
    _post(api, "/v1/group", _group("u1", "acme", "g1"))
    # The client's clock is one hour ahead: its timestamp and sentAt both are.
    skewed = {
        "batch": [_track("m-1", timestamp="2030-01-01T11:00:00Z")],
        "sentAt": "2030-01-01T12:00:00Z",
    }
    _post(api, "/v1/batch", skewed)
    _flush(api)
    [event] = _rows(api, "events")
    # Stored an hour before it was received (timestamp + receivedAt - sentAt).
    expected = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    assert abs(event["timestamp"] - expected) < timedelta(minutes=2)


def test_a_flush_that_died_before_releasing_is_repeated_without_adding_anything(api: Api) -> None:
    _post(api, "/v1/batch", {"batch": [_group("u1", "acme", "g1"), _track("m-1"), _track("m-2")]})
    store, settings = api.server.store, api.server.settings
    # A flusher claims the messages, writes them, and dies before deleting them from the buffer.
    claimed = ingest_buffer.claim(store, "dead", limit=100, lease=timedelta(seconds=-1))
    with Warehouse.connect(settings.warehouse_url) as warehouse:
        first = write_messages(warehouse, [ingest_service.read_buffered(m) for m in claimed])
    assert (first.events_stored, first.accounts_inserted) == (2, 1)
    # Its claim has expired: the next flush takes the same messages and adds nothing.
    again = _flush(api)
    assert (again.messages, again.events_stored, again.duplicates) == (3, 0, 2)
    assert (again.accounts_inserted, again.accounts_updated, again.profiles_applied) == (0, 0, 1)
    assert len(_rows(api, "events")) == 2
    assert ingest_buffer.pending(store) == 0


def test_a_claim_held_by_a_live_flusher_is_left_alone(api: Api) -> None:
    _post(api, "/v1/batch", {"batch": [_track("m-1")]})
    store = api.server.store
    held = ingest_buffer.claim(store, "busy", limit=100, lease=timedelta(minutes=5))
    assert len(held) == 1
    assert _flush(api).messages == 0
    assert ingest_buffer.release(store, "someone-else", [m.id for m in held]) == 0
    assert ingest_buffer.release(store, "busy", [m.id for m in held]) == 1


def test_a_gzip_body_is_read_and_its_inflated_size_checked(api: Api) -> None:
    _post(api, "/v1/group", _group("u1", "acme", "g1"))
    body = gzip.compress(json.dumps({"batch": [_track("m-1")]}).encode())
    headers = {**api.headers(Role.ingest), "Content-Encoding": "gzip"}
    headers["Content-Type"] = "application/json"
    assert api.client.post("/v1/batch", headers=headers, content=body).status_code == 200
    bomb = gzip.compress(json.dumps({"batch": [], "pad": "x" * 900_000}).encode())
    assert len(bomb) < 10_000
    refused = api.client.post("/v1/batch", headers=headers, content=bomb)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "too_large"
    assert _flush(api).events_stored == 1


def test_migration_0007_creates_the_buffer_table_the_schema_declares(api: Api) -> None:
    inspector = sa.inspect(api.server.store.engine)
    columns = {column["name"]: column for column in inspector.get_columns("ingest_buffer")}
    declared = schema.ingest_buffer.columns
    assert set(columns) == {column.name for column in declared}
    for column in declared:
        assert columns[column.name]["nullable"] == column.nullable, column.name
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("ingest_buffer")}
    assert indexes["ix_ingest_buffer_claimed_until"] == ["claimed_until"]


def test_an_identify_with_context_group_id_maps_its_user(api: Api) -> None:
    _post(api, "/v1/group", {"anonymousId": "x", "groupId": "acme", "messageId": "g1"})
    identify = {
        "userId": "u5",
        "traits": {"email": "u5@acme.test", "createdAt": "2024-04-01T00:00:00Z"},
        "context": {"groupId": "acme"},
        "messageId": "i5",
    }
    _post(api, "/v1/batch", {"batch": [{**identify, "type": "identify"}, _track("m-1", user="u5")]})
    result = _flush(api)
    assert (result.people_inserted, result.events_stored, result.quarantined) == (1, 1, 0)
    [person] = _rows(api, "people")
    assert person["account_id"] == "acme"
    assert person["created_at"].isoformat() == "2024-04-01T00:00:00"
    [event] = _rows(api, "events")
    assert (event["account_id"], event["person_id"]) == ("acme", "u5")


@pytest.mark.parametrize(
    ("name", "value"),
    [("CLOSELOOP_INGEST_RATE", "fast"), ("CLOSELOOP_INGEST_FLUSH_INTERVAL", "-1")],
)
def test_ingestion_settings_are_checked(project: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(project, {name: value})
    assert load_settings(project, {}).ingest_rate == 10_000
    assert load_settings(project, {"CLOSELOOP_INGEST_RATE": "0"}).ingest_rate == 0


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    limiter.admit(1)
    limiter.charge(1, 25)  # a batch larger than the bucket is admitted whole: 10 - 25 = -15
    with pytest.raises(IngestError) as refused:
        limiter.admit(1)
    assert (refused.value.status, refused.value.headers) == (429, {"Retry-After": "2"})
    limiter.admit(2)  # another token has its own bucket
    now[0] += 1.0  # -15 + 10 = -5: still empty
    with pytest.raises(IngestError):
        limiter.admit(1)
    now[0] += 0.6  # +6: 1 message's worth
    limiter.admit(1)
    unlimited = RateLimiter(0.0, clock=lambda: now[0])
    for _ in range(3):
        unlimited.admit(1)
        unlimited.charge(1, 1_000_000)
