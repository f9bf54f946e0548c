"""The REST resources on a real project: accounts and their timeline, people, jobs and their
lifecycle, job creation and editing, enrollments and the outbox.

The project has six accounts a0…a5 with one contact each, events, an attribute change recorded by
a second import, and three jobs: ``Nudge`` (launched at T0, emails), ``Hook`` (a webhook whose URL
carries a token) and ``Later`` (a draft). Mail goes to an SMTP server on loopback that refuses
a2's address for good, so after one dispatch a2's message is dead and the other treated accounts'
are sent (a0 and a3 are in the holdout).
For job lists and details, dry runs and the outbox, the CLI's ``--format json`` is compared with
the API's answer and with the schema model: one contract on both surfaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from typer.testing import CliRunner, Result

from closeloop.cli.main import app
from closeloop.schemas.jobs import DryRun, JobDetail, JobList, OutboxList
from closeloop.schemas.tokens import Role
from closeloop.services.project import init_project
from closeloop.services.smtp_sink import SmtpSink
from support import Backends, embedded_backends

T0 = datetime(2024, 5, 1)
SECRET = "3f9a1c7e5b2d4680ace13579bdf02468ace13579"
HOOK_TOKEN = "hooktoken-5e1f"
ACCOUNTS = [f"a{i}" for i in range(6)]
JOBS = f"""\
# yaml-language-server: $schema=./schema/jobs.schema.json
# The jobs of the API tests.
jobs:
  # Nudge: emails everyone who has not connected an integration.
  - name: Nudge
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    holdout: 0.5
    steps:
      - send: email
        subject: "Hello {{{{ account.name }}}}"
        template: integration_nudge
  # Hook: calls a webhook whose URL carries a token.
  - name: Hook
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    observational: true
    holdout: 0
    steps:
      - send: webhook
        url: "https://hooks.example.com/closeloop?token={HOOK_TOKEN}"
  # Later: a draft nobody launched.
  - name: Later
    audience: 'count(event "login") >= 1'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 14
"""
REFUSALS = {"admin@a2.test": "550 5.1.1 no such user"}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(refuse=REFUSALS) as server:
        yield server


@pytest.fixture
def environ(backends: Backends, sink: SmtpSink) -> dict[str, str]:
    return {
        **backends.environ(),
        "CLOSELOOP_SMTP_HOST": sink.host,
        "CLOSELOOP_SMTP_PORT": str(sink.port),
        "CLOSELOOP_SECRET": SECRET,
        "CLOSELOOP_AUTHOR": "ada",
    }


@pytest.fixture
def runner(environ: dict[str, str]) -> CliRunner:
    return CliRunner(env={**environ, "CLOSELOOP_PROJECT": None, "COLUMNS": "200"})


def _ok(runner: CliRunner, *args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def _cli_json(runner: CliRunner, *args: str) -> Any:
    return json.loads(_ok(runner, *args, "--format", "json").stdout)


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project, its data imported, ``Nudge`` launched at T0 and dispatched once."""
    folder = tmp_path / "api"
    _ok(runner, "init", str(folder), "--name", "api")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    created = (T0 - timedelta(days=2)).isoformat()
    (folder / "accounts.csv").write_text(
        "account_id,name,created_at,segment,plan\n"
        + "".join(
            f"{a},Company {a},{created},{'enterprise' if a in ('a0', 'a1') else 'smb'},starter\n"
            for a in ACCOUNTS
        )
    )
    (folder / "people.csv").write_text(
        "person_id,account_id,email,name,role\n"
        + "".join(f"{a}-p,{a},admin@{a}.test,Admin {a},admin\n" for a in ACCOUNTS)
    )
    (folder / "events.csv").write_text(
        "event_id,account_id,person_id,name,timestamp\n"
        + "".join(
            f"e{i},a1,a1-p,login,{(T0 - timedelta(days=1, hours=i)).isoformat()}\n"
            for i in range(3)
        )
        + f"e9,a2,a2-p,login,{(T0 - timedelta(hours=5)).isoformat()}\n"
    )
    # a1 moves to the pro plan a day after launch (a re-import with a valid-from).
    upgraded = (T0 + timedelta(days=1)).isoformat()
    (folder / "upgrade.csv").write_text(
        f"account_id,created_at,plan,valid_from\na1,{created},pro,{upgraded}\n"
    )
    monkeypatch.chdir(folder)
    _ok(runner, "import", "accounts", "accounts.csv")
    _ok(runner, "import", "people", "people.csv")
    _ok(runner, "import", "events", "events.csv")
    _ok(runner, "import", "accounts", "upgrade.csv")
    _ok(runner, "jobs", "launch", "Nudge", "--at", T0.isoformat())
    _ok(runner, "dispatch", "--at", (T0 + timedelta(hours=1)).isoformat())
    return folder


@pytest.fixture
def api(project: Path, environ: dict[str, str]) -> Iterator[Api]:
    with api_for(project, environ) as client:
        yield client


def _get(api: Api, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


# -- accounts and people --------------------------------------------------------------------------


def test_accounts_are_paged_filtered_and_read_as_of_a_time(api: Api) -> None:
    everyone = _get(api, "/api/accounts")
    assert (everyone["total"], everyone["offset"], everyone["limit"]) == (6, 0, 100)
    assert [account["account_id"] for account in everyone["items"]] == ACCOUNTS

    page = _get(api, "/api/accounts", offset=2, limit=2)
    assert ([a["account_id"] for a in page["items"]], page["total"]) == (["a2", "a3"], 6)
    enterprise = _get(api, "/api/accounts", segment="enterprise")
    assert [a["account_id"] for a in enterprise["items"]] == ["a0", "a1"]
    assert _get(api, "/api/accounts", q="COMPANY A4")["items"][0]["name"] == "Company a4"
    assert _get(api, "/api/accounts", q="nobody")["total"] == 0

    # a1's plan changed a day after T0: now it is pro, as of T0 it was starter.
    assert _get(api, "/api/accounts/a1")["plan"] == "pro"
    assert _get(api, "/api/accounts/a1", as_of=T0.isoformat())["plan"] == "starter"
    assert [a["account_id"] for a in _get(api, "/api/accounts", plan="pro")["items"]] == ["a1"]
    before = _get(api, "/api/accounts", as_of=(T0 - timedelta(days=3)).isoformat())
    assert before["total"] == 0  # none was created yet
    shown = _get(api, "/api/accounts/a0")
    assert shown["created_at"] == (T0 - timedelta(days=2)).isoformat() + "Z"

    missing = _error(api.get("/api/accounts/zz"), 404, "not_found")
    assert "no account 'zz'" in missing["message"]
    too_many = _error(api.get("/api/accounts", params={"limit": 501}), 422, "invalid_request")
    assert "limit" in too_many["message"]
    year_one = {"as_of": "0001-01-01T00:00:00+01:00"}
    out_of_range = _error(api.get("/api/accounts", params=year_one), 422, "configuration_error")
    assert "out of range in UTC" in out_of_range["message"]


def test_people_are_paged_filtered_and_found_by_id(api: Api) -> None:
    people = _get(api, "/api/people", limit=4)
    assert (len(people["items"]), people["total"]) == (4, 6)
    of_a2 = _get(api, "/api/people", account_id="a2")["items"]
    assert [(p["person_id"], p["email"], p["role"]) for p in of_a2] == [
        ("a2-p", "admin@a2.test", "admin")
    ]
    assert _get(api, "/api/people", q="ADMIN@A5")["items"][0]["person_id"] == "a5-p"
    assert _get(api, "/api/people/a4-p")["account_id"] == "a4"
    _error(api.get("/api/people/nobody"), 404, "not_found")


def test_an_accounts_timeline_merges_events_enrollments_messages_and_changes(api: Api) -> None:
    timeline = _get(api, "/api/accounts/a1/timeline")
    kinds = [item["kind"] for item in timeline["items"]]
    assert timeline["total"] == len(kinds)
    assert sorted(set(kinds)) == ["attribute", "entered", "event", "message"]
    moments = [item["at"] for item in timeline["items"]]
    assert moments == sorted(moments, reverse=True)  # newest first
    (entered,) = [item for item in timeline["items"] if item["kind"] == "entered"]
    assert (entered["name"], entered["at"]) == ("Nudge", T0.isoformat() + "Z")
    assert entered["detail"]["arm"] in ("holdout", "treatment")
    assert entered["detail"]["status"] == "active"
    (change,) = [item for item in timeline["items"] if item["kind"] == "attribute"]
    assert (change["name"], change["detail"]["value"]) == ("plan", "pro")
    events = [item for item in timeline["items"] if item["kind"] == "event"]
    assert [e["name"] for e in events] == ["login"] * 3
    assert events[0]["person_id"] == "a1-p"

    # Pages of one item each add up to the whole timeline.
    pages = [
        _get(api, "/api/accounts/a1/timeline", offset=index, limit=1)["items"]
        for index in range(timeline["total"])
    ]
    assert [page[0] for page in pages] == timeline["items"]

    only_events = _get(api, "/api/accounts/a1/timeline", kind="event", limit=2)
    assert (only_events["total"], len(only_events["items"])) == (3, 2)
    both = api.get("/api/accounts/a1/timeline", params=[("kind", "event"), ("kind", "entered")])
    assert sorted({item["kind"] for item in both.json()["items"]}) == ["entered", "event"]
    window = _get(
        api,
        "/api/accounts/a1/timeline",
        since=(T0 - timedelta(days=1, hours=1)).isoformat(),
        until=T0.isoformat(),
    )
    assert [item["kind"] for item in window["items"]] == ["entered", "event", "event"]
    _error(api.get("/api/accounts/zz/timeline"), 404, "not_found")
    _error(api.get("/api/accounts/a1/timeline", params={"kind": "bogus"}), 422, "invalid_request")


# -- jobs: the CLI and the API say the same ------------------------------------------------------


def test_jobs_list_cli_json_equals_the_api_and_the_model(runner: CliRunner, api: Api) -> None:
    from_cli = _cli_json(runner, "jobs", "list")
    from_api = _get(api, "/api/jobs")
    assert from_cli == from_api
    assert JobList.model_validate(from_api).model_dump(mode="json") == from_api
    statuses = {job["name"]: job["status"] for job in from_api["jobs"]}
    assert statuses == {"Hook": "draft", "Later": "draft", "Nudge": "live"}
    assert from_api["count"] == 3


def test_jobs_show_cli_json_equals_the_api_and_the_model(runner: CliRunner, api: Api) -> None:
    from_cli = _cli_json(runner, "jobs", "show", "Nudge")
    from_api = _get(api, "/api/jobs/Nudge")
    assert from_cli == from_api
    assert JobDetail.model_validate(from_api).model_dump(mode="json") == from_api
    assert from_api["summary"]["enrolled"] == 6
    assert from_api["file"] == "jobs.yaml"
    assert from_api["definition"]["goal"] == 'count(event "integration_connected") >= 1'
    assert [entry["action"] for entry in from_api["audit"]] == ["job.launched"]
    missing = _error(api.get("/api/jobs/Nobody"), 404, "not_found")
    assert "no job 'Nobody'" in missing["message"]


def test_dry_run_cli_json_equals_the_api_and_the_model(runner: CliRunner, api: Api) -> None:
    at = T0.isoformat()
    from_cli = _cli_json(runner, "dry-run", "Hook", "--at", at)
    response = api.post("/api/jobs/Hook/dry-run", role=Role.viewer, json={"at": at})
    assert response.status_code == 200, response.text
    from_api = response.json()
    assert from_cli == from_api
    assert DryRun.model_validate(from_api).model_dump(mode="json") == from_api
    assert from_api["entering_by_arm"] == {"treatment": 6}
    # The webhook URL's token is masked; the outbox would keep the real one for sending.
    urls = {message["payload"]["url"] for message in from_api["messages"]}
    assert urls == {"https://hooks.example.com/closeloop?token=***"}
    assert HOOK_TOKEN not in response.text
    # Nothing was recorded: the job is still a draft.
    assert _get(api, "/api/jobs/Hook")["summary"]["status"] == "draft"
    _error(api.post("/api/jobs/Nobody/dry-run", role=Role.viewer), 404, "not_found")


def test_outbox_list_cli_json_equals_the_api_and_the_model(runner: CliRunner, api: Api) -> None:
    from_cli = _cli_json(runner, "outbox", "list", "--job", "Nudge", "--limit", "2")
    from_api = _get(api, "/api/outbox", job="Nudge", limit=2)
    assert from_cli == from_api
    assert OutboxList.model_validate(from_api).model_dump(mode="json") == from_api
    assert from_api["count"] == len(from_api["messages"]) == 2
    assert from_api["total"] == sum(from_api["counts"].values()) == 6


# -- the outbox and enrollments ----------------------------------------------------------------


def test_enrollments_and_outbox_pages_filter_and_retry(api: Api) -> None:
    enrollments = _get(api, "/api/enrollments", job="Nudge")
    assert enrollments["total"] == 6
    arms = {e["arm"] for e in enrollments["items"]}
    assert arms <= {"holdout", "treatment"}
    treated = _get(api, "/api/enrollments", job="Nudge", arm="treatment")
    holdout = _get(api, "/api/enrollments", job="Nudge", arm="holdout")
    assert treated["total"] + holdout["total"] == 6
    assert _get(api, "/api/enrollments", account_id="a2")["items"][0]["job"] == "Nudge"
    assert _get(api, "/api/enrollments", status="completed")["total"] == 0
    assert _get(api, "/api/enrollments", status="active", limit=1)["total"] == 6
    bogus = _error(
        api.get("/api/enrollments", params={"status": "bogus"}), 422, "configuration_error"
    )
    assert "unknown enrollment status 'bogus'" in bogus["message"]
    _error(api.get("/api/enrollments", params={"job": "Nobody"}), 404, "not_found")

    # Launch assigned a0 and a3 to the holdout (the salt is fixed by the name and launch time):
    # their messages are ghosts. a2's address is refused for good: its message is dead.
    assert {e["account_id"] for e in holdout["items"]} == {"a0", "a3"}
    outbox = _get(api, "/api/outbox")
    assert outbox["counts"] == {"ghost": 2, "sent": 3, "dead": 1}
    statuses = {m["account_id"]: (m["arm"], m["status"]) for m in outbox["messages"]}
    assert statuses == {
        "a0": ("holdout", "ghost"),
        "a1": ("treatment", "sent"),
        "a2": ("treatment", "dead"),
        "a3": ("holdout", "ghost"),
        "a4": ("treatment", "sent"),
        "a5": ("treatment", "sent"),
    }
    (dead,) = _get(api, "/api/outbox", status="dead")["messages"]
    assert dead["account_id"] == "a2" and "550 5.1.1 no such user" in dead["last_error"]
    retried = api.post("/api/outbox/retry", json={"job": "Nudge"})
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"requeued": 1}
    assert _get(api, "/api/outbox", status="dead")["total"] == 0
    assert _get(api, "/api/outbox", status="pending", account_id="a2")["total"] == 1
    assert api.post("/api/outbox/retry").json() == {"requeued": 0}
    paged = [
        _get(api, "/api/outbox", offset=index, limit=4)["messages"] for index in range(0, 6, 4)
    ]
    assert [m["id"] for page in paged for m in page] == [m["id"] for m in outbox["messages"]]
    _error(api.get("/api/outbox", params={"status": "bogus"}), 422, "configuration_error")
    _error(api.post("/api/outbox/retry", role=Role.viewer), 403, "forbidden")


# -- the lifecycle ------------------------------------------------------------------------------


def test_launch_pause_resume_stop_and_remove_an_account(api: Api) -> None:
    at = (T0 + timedelta(days=1)).isoformat()
    launched = api.post("/api/jobs/Hook/launch", json={"at": at})
    assert launched.status_code == 200, launched.text
    result = launched.json()
    assert (result["launched"], result["tick"]["entered"]) == (True, 6)
    assert result["tick"]["outbox"] == {"pending": 6}
    again = api.post("/api/jobs/Hook/launch").json()
    assert (again["launched"], again["tick"]) == (False, None)

    assert api.post("/api/jobs/Hook/pause", json={"at": at}).json() == {
        "job": "Hook",
        "previous": "live",
        "status": "paused",
        "changed": True,
    }
    assert api.post("/api/jobs/Hook/pause").json()["changed"] is False
    assert api.post("/api/jobs/Hook/resume").json()["status"] == "live"
    removed = api.client.delete("/api/jobs/Hook/accounts/a2", headers=api.headers(Role.editor))
    assert removed.json() == {"job": "Hook", "account_id": "a2", "removed": 1}
    again_removed = api.client.delete(
        "/api/jobs/Hook/accounts/a2", headers=api.headers(Role.editor)
    )
    assert again_removed.json()["removed"] == 0
    stopped = api.post("/api/jobs/Hook/stop", json={"at": at}).json()
    assert (stopped["previous"], stopped["status"]) == ("live", "stopped")
    refused = _error(api.post("/api/jobs/Hook/resume"), 409, "state_error")
    assert "is stopped; it cannot resume" in refused["message"]
    _error(api.post("/api/jobs/Later/pause"), 404, "not_found")  # a draft: never launched
    _error(api.post("/api/jobs/Nobody/launch"), 404, "not_found")
    _error(api.post("/api/jobs/Hook/launch", role=Role.viewer), 403, "forbidden")
    _error(api.post("/api/jobs/Hook/pause", json={"at": "soon"}), 422, "invalid_request")

    detail = _get(api, "/api/jobs/Hook")
    assert detail["summary"]["status"] == "stopped"
    actions = [(entry["action"], entry["actor"]) for entry in detail["audit"]]
    assert actions == [
        ("job.launched", "api:test-editor"),
        ("job.pause", "api:test-editor"),
        ("job.resume", "api:test-editor"),
        ("job.account_removed", "api:test-editor"),
        ("job.stop", "api:test-editor"),
    ]
    # The webhook URL's token is masked in the definition the API shows.
    assert (
        detail["definition"]["steps"][0]["url"] == "https://hooks.example.com/closeloop?token=***"
    )
    everything = " ".join(
        api.get(path).text
        for path in ("/api/jobs/Hook", "/api/outbox", "/api/accounts/a1/timeline", "/api/jobs")
    )
    assert HOOK_TOKEN not in everything and SECRET not in everything


# -- creating and editing jobs ------------------------------------------------------------------

NEW_JOB = {
    "name": "Welcome",
    "description": "Welcome new accounts.\nTwo lines, as a block scalar.",
    "audience": 'count(event "login") >= 1',
    "goal": 'count(event "integration_connected") >= 1',
    "duration_days": 21,
    "holdout": 0.2,
    "steps": [
        {"send": "email", "subject": "Welcome {{ account.name }}", "template": "integration_nudge"}
    ],
    "hypothesis": {"expected_effect": "welcomed accounts connect sooner"},
}


def test_a_bad_expression_is_refused_with_its_place_and_nothing_is_written(
    api: Api, project: Path
) -> None:
    before = (project / "jobs.yaml").read_bytes()
    bad = {**NEW_JOB, "goal": 'count(event "integration_connected") >= "many"'}
    response = api.post("/api/jobs", json=bad)
    body = _error(response, 422, "definition_errors")
    location = body["location"]
    assert location["file"] == "jobs.yaml"
    assert location["line"] > 1 and location["column"] >= 1
    # Line 34 of jobs.yaml as it would have been written: the new item's goal, "many" at column 51.
    assert (location["line"], location["column"]) == (34, 51)
    assert location["source_line"].strip() == bad["goal"]
    assert location["caret"].splitlines()[-1].index("^") == location["caret"].index('"many"')
    assert body["problems"][0]["code"] == "expression_error"
    assert (project / "jobs.yaml").read_bytes() == before

    syntax = api.post("/api/jobs", json={**NEW_JOB, "audience": "count(event "})
    assert _error(syntax, 422, "definition_errors")["location"]["file"] == "jobs.yaml"
    unknown_field = api.post("/api/jobs", json={**NEW_JOB, "colour": "blue"})
    problem = _error(unknown_field, 422, "definition_errors")
    assert "colour" in problem["message"]
    _error(api.post("/api/jobs", json={"audience": "true"}), 422, "definition_error")
    _error(api.post("/api/jobs", json=[1, 2]), 422, "invalid_request")
    nested: dict[str, Any] = {}
    deepest = nested
    for _ in range(200):
        deepest["x"] = {}
        deepest = deepest["x"]
    too_deep = _error(
        api.post("/api/jobs", json={**NEW_JOB, "steps": nested}), 422, "definition_error"
    )
    assert "nested more than 64 levels" in too_deep["message"]
    edit = api.client.put(
        "/api/jobs/Later",
        headers=api.headers(Role.editor),
        json={"name": "Later", "audience": "bogus(", "goal": "true", "duration_days": 3},
    )
    assert _error(edit, 422, "definition_errors")["location"]["file"] == "jobs.yaml"
    assert (project / "jobs.yaml").read_bytes() == before
    _error(api.post("/api/jobs", role=Role.viewer, json=NEW_JOB), 403, "forbidden")


def test_a_created_job_validates_and_appears_in_the_list(
    api: Api, runner: CliRunner, project: Path
) -> None:
    response = api.post("/api/jobs", json=NEW_JOB)
    assert response.status_code == 201, response.text
    written = response.json()
    assert (written["job"], written["file"], written["created"], written["version"]) == (
        "Welcome",
        "jobs.yaml",
        True,
        1,
    )
    assert written["detail"]["summary"]["status"] == "draft"
    assert written["detail"]["definition"]["description"] == NEW_JOB["description"]
    text = (project / "jobs.yaml").read_text(encoding="utf-8")
    # Only the new item was added: every comment of the file is still there.
    assert text.startswith(JOBS)
    assert "# Hook: calls a webhook whose URL carries a token." in text
    assert "  - name: Welcome\n" in text

    validated = runner.invoke(app, ["validate"])
    assert validated.exit_code == 0, validated.output
    names = [job["name"] for job in _cli_json(runner, "jobs", "list")["jobs"]]
    assert names == ["Hook", "Later", "Nudge", "Welcome"]
    assert [job["name"] for job in _get(api, "/api/jobs")["jobs"]] == names

    taken = _error(api.post("/api/jobs", json=NEW_JOB), 409, "state_error")
    assert "already exists" in taken["message"]


def test_editing_a_launched_job_makes_a_new_version_and_audits_the_goal(
    api: Api, project: Path
) -> None:
    shown = _get(api, "/api/jobs/Nudge")
    changed = {**shown["definition"], "goal": 'count(event "integration_connected") >= 2'}
    response = api.client.put("/api/jobs/Nudge", headers=api.headers(Role.editor), json=changed)
    assert response.status_code == 200, response.text
    written = response.json()
    assert (written["created"], written["version"]) == (False, 2)
    assert written["detail"]["summary"]["version"] == 2
    actions = [(entry["action"], entry["actor"]) for entry in written["detail"]["audit"]]
    assert ("job.changed", "api:test-editor") in actions
    assert ("job.goal_changed", "api:test-editor") in actions
    text = (project / "jobs.yaml").read_text(encoding="utf-8")
    assert "# Nudge: emails everyone who has not connected an integration." in text
    assert "# Later: a draft nobody launched." in text
    assert 'count(event "integration_connected") >= 2' in text
    assert _get(api, "/api/jobs/Nudge")["definition"]["goal"] == changed["goal"]

    # The same definition again changes nothing.
    same = api.client.put("/api/jobs/Nudge", headers=api.headers(Role.editor), json=changed)
    assert same.json()["version"] == 2

    renamed = api.client.put(
        "/api/jobs/Nudge", headers=api.headers(Role.editor), json={**changed, "name": "Other"}
    )
    assert "cannot be renamed" in _error(renamed, 422, "definition_error")["message"]
    missing = api.client.put("/api/jobs/Nobody", headers=api.headers(Role.editor), json=changed)
    _error(missing, 404, "not_found")


def test_a_jobs_file_not_in_block_style_is_rewritten_with_its_header(tmp_path: Path) -> None:
    folder = tmp_path / "flow"
    init_project(folder, "flow")
    (folder / "jobs.yaml").write_text("# Our jobs.\n# (none yet)\njobs: []\n", encoding="utf-8")
    environ = embedded_backends(folder).environ() | {"CLOSELOOP_SECRET": SECRET}
    with api_for(folder, environ) as api:
        created = api.post("/api/jobs", json=NEW_JOB)
        assert created.status_code == 201, created.text
        text = (folder / "jobs.yaml").read_text(encoding="utf-8")
        assert text.startswith("# Our jobs.\n# (none yet)\njobs:\n- name: Welcome\n")
        second = api.post("/api/jobs", json={**NEW_JOB, "name": "Second"})
        assert second.status_code == 201, second.text
        assert [job["name"] for job in _get(api, "/api/jobs")["jobs"]] == ["Second", "Welcome"]
        # A job whose name is taken by none: 404 on replace; the project's jobs are named.
        missing = api.client.put("/api/jobs/Third", headers=api.headers(Role.editor), json=NEW_JOB)
        assert "Second" in _error(missing, 404, "not_found")["message"]
