"""API tokens and the audit log: the CLI (create once, list, revoke), the admin routes, and one
audit entry per authenticated API write, on SQLite and PostgreSQL state stores."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import Api, api_for
from typer.testing import CliRunner, Result

from closeloop.api.admin import audited
from closeloop.cli.main import app
from closeloop.engine.state import StateStore
from closeloop.schemas.tokens import Role
from closeloop.services.project import init_project
from support import Backends


@pytest.fixture
def project(tmp_path: Path, backends: Backends) -> Path:
    folder = tmp_path / "tok"
    init_project(folder, "tok")
    return folder


@pytest.fixture
def runner(backends: Backends) -> CliRunner:
    return CliRunner(
        env={**backends.environ(), "CLOSELOOP_PROJECT": None, "CLOSELOOP_AUTHOR": "ada"}
    )


@pytest.fixture
def api(project: Path, backends: Backends) -> Iterator[Api]:
    with api_for(project, backends.environ()) as client:
        yield client


def _ok(runner: CliRunner, project: Path, *args: str) -> Result:
    result = runner.invoke(app, [*args, "--project", str(project)])
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def _stored_rows(backends: Backends) -> list[dict[str, Any]]:
    engine = sa.create_engine(backends.state_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [
                dict(row)
                for row in connection.execute(sa.text("SELECT * FROM api_tokens")).mappings()
            ]
    finally:
        engine.dispose()


# -- the command line ----------------------------------------------------------------------------


def test_tokens_create_prints_the_token_once_and_stores_only_its_hash(
    runner: CliRunner, project: Path, backends: Backends
) -> None:
    table = _ok(runner, project, "tokens", "create", "--role", "editor", "--name", "ci").output
    assert "created token 1 'ci' with role editor; it is shown this once" in table
    shown = table.strip().splitlines()[-1]
    assert shown.startswith("cl_") and len(shown) > 40

    created = json.loads(
        _ok(
            runner,
            project,
            "tokens",
            "create",
            "--role",
            "ingest",
            "--name",
            "segment",
            "--format",
            "json",
        ).stdout
    )
    assert (created["name"], created["role"], created["created_by"]) == ("segment", "ingest", "ada")
    assert created["token"].startswith(created["prefix"])

    rows = _stored_rows(backends)
    assert [row["name"] for row in rows] == ["ci", "segment"]
    for row, token in zip(rows, (shown, created["token"]), strict=True):
        assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
        assert token not in json.dumps(row, default=str)  # no column holds the token itself

    listed = json.loads(_ok(runner, project, "tokens", "list", "--format", "json").stdout)
    assert [(t["name"], t["role"]) for t in listed] == [("ci", "editor"), ("segment", "ingest")]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    listing = _ok(runner, project, "tokens", "list").output
    assert "segment" in listing and shown not in listing and created["token"] not in listing


def test_tokens_revoke_by_name_or_id_and_list_all(runner: CliRunner, project: Path) -> None:
    for name in ("ci", "ci", "dash"):
        _ok(runner, project, "tokens", "create", "--role", "viewer", "--name", name)
    revoked = _ok(runner, project, "tokens", "revoke", "ci").output
    assert "revoked token 1 'ci' (viewer)" in revoked and "revoked token 2 'ci'" in revoked
    by_id = json.loads(_ok(runner, project, "tokens", "revoke", "3", "--format", "json").stdout)
    assert [(t["id"], t["name"]) for t in by_id] == [(3, "dash")] and by_id[0]["revoked_at"]

    assert "no API tokens" in _ok(runner, project, "tokens", "list").output
    every = json.loads(_ok(runner, project, "tokens", "list", "--all", "--format", "json").stdout)
    assert [t["id"] for t in every] == [1, 2, 3] and all(t["revoked_at"] for t in every)

    again = runner.invoke(app, ["tokens", "revoke", "ci", "--project", str(project)])
    assert again.exit_code == 1
    assert "error: no active API token named or numbered 'ci'" in again.output
    assert "Traceback" not in again.output


def test_tokens_create_refuses_a_bad_role_or_an_empty_name(
    runner: CliRunner, project: Path
) -> None:
    role = runner.invoke(
        app, ["tokens", "create", "--role", "boss", "--name", "x", "--project", str(project)]
    )
    assert role.exit_code == 2 and "'boss' is not one of" in role.output
    empty = runner.invoke(
        app, ["tokens", "create", "--role", "viewer", "--name", " ", "--project", str(project)]
    )
    assert empty.exit_code == 1 and "a token needs a name" in empty.output
    control = runner.invoke(
        app, ["tokens", "create", "--role", "viewer", "--name", "a\tb", "--project", str(project)]
    )
    assert control.exit_code == 1 and "may not hold control characters" in control.output
    long = runner.invoke(
        app,
        ["tokens", "create", "--role", "viewer", "--name", "n" * 201, "--project", str(project)],
    )
    assert long.exit_code == 1 and "at most 200 characters; this one has 201" in long.output
    outside = runner.invoke(app, ["tokens", "list", "--project", str(project.parent / "nowhere")])
    assert outside.exit_code == 1 and "is not a closeloop project" in outside.output


# -- the admin routes ----------------------------------------------------------------------------


def test_admin_routes_create_list_and_revoke_tokens(api: Api) -> None:
    created = api.client.post(
        "/api/tokens", headers=api.headers(Role.admin), json={"name": "segment", "role": "ingest"}
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert created.json()["created_by"] == "test-admin"
    listed = api.client.get("/api/tokens", headers=api.headers(Role.admin)).json()
    assert [t["name"] for t in listed][-1] == "segment"
    assert token not in json.dumps(listed)
    used = {t["name"]: t["last_used_at"] for t in listed}
    assert used["test-admin"] is not None and used["test-viewer"] is None  # recorded on use

    probe = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/tokens", headers=probe).status_code == 403  # ingest, not admin

    revoked = api.client.delete("/api/tokens/segment", headers=api.headers(Role.admin))
    assert revoked.status_code == 200 and revoked.json()[0]["revoked_at"]
    after = api.client.get("/api/tokens", headers=probe)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "unauthorized"
    listed_all = api.client.get(
        "/api/tokens", params={"include_revoked": "true"}, headers=api.headers(Role.admin)
    ).json()
    assert listed_all[-1]["name"] == "segment" and listed_all[-1]["revoked_at"]

    missing = api.client.delete("/api/tokens/segment", headers=api.headers(Role.admin))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad_role = api.client.post(
        "/api/tokens", headers=api.headers(Role.admin), json={"name": "x", "role": "boss"}
    )
    assert bad_role.status_code == 422 and bad_role.json()["error"]["location"]["file"] == (
        "body.role"
    )


def test_health_is_public_and_names_the_version_and_project(api: Api) -> None:
    health = api.client.get("/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["store_reachable"] is True
    assert body["project"] == "tok" and body["version"]


# -- the audit log -------------------------------------------------------------------------------


def _audit(api: Api, **params: object) -> dict[str, Any]:
    response = api.client.get("/api/audit", params=params, headers=api.headers(Role.admin))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_every_authenticated_write_is_audited_with_its_route_and_status(api: Api) -> None:
    before = datetime.now(UTC)
    api.client.post(
        "/api/tokens", headers=api.headers(Role.admin), json={"name": "secretive", "role": "viewer"}
    )
    api.client.delete("/api/tokens/nobody", headers=api.headers(Role.admin))  # 404, audited
    api.client.delete("/api/tokens/nobody", headers=api.headers(Role.viewer))  # 403, not audited
    api.client.delete("/api/tokens/nobody")  # 401, not audited
    api.client.get("/api/tokens", headers=api.headers(Role.admin))  # a read, not audited
    # A POST that only computes (a power plan) changes nothing: not audited.
    planned = api.client.post(
        "/api/power",
        headers=api.headers(Role.admin),
        json={"baseline_rate": 0.2, "weekly_volume": 100},
    )
    assert planned.status_code == 200, planned.json()

    page = _audit(api, action="api.*")
    entries = [(e["actor"], e["action"], e["subject"], e["detail"]) for e in page["items"]]
    assert entries == [
        (
            "test-admin",
            "api.DELETE /api/tokens/{name_or_id}",
            "/api/tokens/nobody",
            {"status": 404},
        ),
        ("test-admin", "api.POST /api/tokens", "/api/tokens", {"status": 201}),
    ]
    # The engine's own entry for the creation sits next to the request's, without the token.
    created = _audit(api, action="token.create", actor="test-admin")["items"]
    assert [e["detail"] for e in created] == [{"name": "secretive", "role": "viewer"}]

    since = _audit(api, since=before.isoformat())
    assert since["total"] == 3  # two requests and the creation; the fixture's tokens came before
    for bad in ("0.5", "yesterday", "2024-13-01T00:00:00"):
        refused = api.client.get(
            "/api/audit", params={"since": bad}, headers=api.headers(Role.admin)
        )
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["location"]["file"] == "query.since"
    later = _audit(api, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert later["total"] == 0 and later["items"] == []


def test_the_audit_log_pages_newest_first(api: Api) -> None:
    everything = _audit(api)
    assert everything["total"] == 4  # the fixture created a token per role
    first = _audit(api, limit=3)
    second = _audit(api, limit=3, offset=3)
    assert (first["total"], first["offset"], first["limit"]) == (4, 0, 3)
    ids = [e["id"] for e in first["items"]] + [e["id"] for e in second["items"]]
    assert ids == sorted(ids, reverse=True) == [e["id"] for e in everything["items"]]
    too_many = api.client.get("/api/audit", params={"limit": 5000}, headers=api.headers(Role.admin))
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "invalid_request"
    assert _audit(api, action="api.*_")["total"] == 0  # % and _ are literal in a prefix
    assert api.get("/api/audit", Role.editor).status_code == 403


def test_segment_ingestion_is_not_audited_per_event_but_file_uploads_are() -> None:
    assert not audited("POST", "/v1/track")
    assert not audited("POST", "/v1/batch")
    assert audited("POST", "/v1/import/events")
    assert audited("POST", "/api/jobs/Nudge/launch")
    assert audited("DELETE", "/api/tokens/ci")
    assert not audited("GET", "/api/audit")


def test_file_uploads_are_audited_and_segment_messages_are_not(api: Api) -> None:
    uploaded = api.client.post(
        "/v1/import/events",
        headers=api.headers(Role.ingest),
        files={
            "file": ("events.csv", b"event_id,account_id,name,timestamp\ne1,a1,login,2024-05-01\n")
        },
    )
    assert uploaded.status_code == 200, uploaded.text
    tracked = api.client.post(
        "/v1/track",
        headers=api.headers(Role.ingest),
        json={"userId": "p1", "event": "login", "messageId": "m1", "context": {"groupId": "a1"}},
    )
    assert tracked.status_code == 200, tracked.text
    entries = [
        (e["actor"], e["action"], e["subject"]) for e in _audit(api, action="api.*")["items"]
    ]
    assert entries == [("test-ingest", "api.POST /v1/import/{table}", "/v1/import/events")]


def test_odd_names_are_answered_not_crashed_on(api: Api) -> None:
    """Unicode digits, numbers beyond the id column and NUL (which PostgreSQL refuses in text)
    get 404, 422 or an empty page, and a NUL in a path is audited escaped."""
    admin = api.headers(Role.admin)
    for name in ("²", "99999999999999999999", "a%00b"):
        response = api.client.delete(f"/api/tokens/{name}", headers=admin)
        assert response.status_code == 404, (name, response.text)
    refused = api.client.post(
        "/api/tokens", headers=admin, json={"name": "a\u0000b", "role": "viewer"}
    )
    assert refused.status_code == 422 and refused.json()["error"]["location"]["file"] == "body.name"
    assert _audit(api, action="a\x00b", actor="x\x00") == {
        "items": [],
        "total": 0,
        "offset": 0,
        "limit": 100,
    }
    subjects = [e["subject"] for e in _audit(api, action="api.DELETE*")["items"]]
    assert "/api/tokens/a\\x00b" in subjects


def test_the_cli_prints_the_json_the_api_returns(
    runner: CliRunner, project: Path, api: Api
) -> None:
    from_api = api.client.get(
        "/api/tokens", params={"include_revoked": "true"}, headers=api.headers(Role.admin)
    ).json()
    from_cli = json.loads(
        _ok(runner, project, "tokens", "list", "--all", "--format", "json").stdout
    )
    assert from_cli == from_api and len(from_cli) == len(Role)
    revoked_by_api = api.client.delete("/api/tokens/test-viewer", headers=api.headers(Role.admin))
    revoked_by_cli = json.loads(
        _ok(runner, project, "tokens", "revoke", "test-ingest", "--format", "json").stdout
    )
    assert set(revoked_by_api.json()[0]) == set(revoked_by_cli[0]) == set(from_api[0])


def test_health_says_503_when_the_state_store_does_not_answer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = StateStore.connect("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    monkeypatch.setattr(api.server, "store", unreachable)
    try:
        health = api.client.get("/api/health")
    finally:
        unreachable.close()
    assert health.status_code == 503
    assert health.json() == {
        "status": "unavailable",
        "version": health.json()["version"],
        "project": "tok",
        "store_reachable": False,
    }
