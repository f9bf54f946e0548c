"""The job editor over HTTP: a real ``closeloop serve`` app (API + dashboard) on loopback, a
simulated project, users logged in with a session cookie and its CSRF token."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from closeloop.asgi import create_app
from closeloop.services import users
from closeloop.services.job_drafts import NEW_JOB
from closeloop.services.server import Server

pytestmark = pytest.mark.slow  # a simulated company (~20 s) behind a real server

PASSWORD = "correct horse battery"
LATEST = "2025-02-19T23:59"  # the simulated company's last day (simulate --days 45)


@dataclass
class Served:
    base: str
    project: Path
    server: Server


def _closeloop(project: Path, *args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "closeloop"), *args],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = tmp_path_factory.mktemp("editor")
    _closeloop(project, "init", ".")
    _closeloop(project, "simulate", "--accounts", "120", "--days", "45", "--run-jobs")
    server = Server.open(project)
    users.add_user(server.store, name="ed", role="editor", password=PASSWORD, actor="test")
    users.add_user(server.store, name="vi", role="viewer", password=PASSWORD, actor="test")
    port = _free_port()
    config = uvicorn.Config(
        create_app(server=server), host="127.0.0.1", port=port, log_level="warning"
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not http.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", project, server)
    finally:
        http.should_exit = True
        thread.join(timeout=10)
        server.close()


def _logged_in(served: Served, name: str) -> tuple[httpx.Client, str]:
    """A client with a session, and the CSRF token its pages carry."""
    client = httpx.Client(base_url=served.base, timeout=120)
    answer = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/accounts"})
    assert answer.status_code in (200, 303), answer.text
    page = client.get("/accounts", follow_redirects=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found, page.text[:500]
    return client, found.group(1)


@pytest.fixture(scope="module")
def editor(served: Served) -> Iterator[tuple[httpx.Client, str]]:
    client, token = _logged_in(served, "ed")
    try:
        yield client, token
    finally:
        client.close()


def _post(client: httpx.Client, token: str, path: str, data: dict[str, str]) -> httpx.Response:
    return client.post(
        path, data=data, headers={"X-CSRF-Token": token, "Accept": "application/json"}
    )


def _draft(name: str, audience: str = "signup_date within last 14 days") -> str:
    return NEW_JOB.replace("name: New job", f"name: {name}").replace(
        "signup_date within last 14 days", audience
    )


def test_the_editor_page_shows_the_draft_yaml_and_its_form(
    served: Served, editor: tuple[httpx.Client, str]
) -> None:
    client, _ = editor
    page = client.get("/jobs/new")
    assert page.status_code == 200
    assert 'id="yaml"' in page.text and 'hx-post="/editor/validate"' in page.text
    assert 'name="goal"' in page.text
    twin = client.get("/jobs/new.json").json()
    assert twin["yaml"] == NEW_JOB and twin["fields"]["name"] == "New job"
    existing = client.get("/jobs/Integration%20nudge/edit.json").json()
    assert existing["editing"] == "Integration nudge" and existing["status"] == "live"
    assert existing["yaml"].startswith("name: Integration nudge\n")
    assert client.get("/jobs/No%20such%20job/edit").status_code == 404


def test_a_bad_expression_is_located_with_a_caret_and_fixing_it_validates(
    editor: tuple[httpx.Client, str],
) -> None:
    client, token = editor
    bad = _draft("Caret job", "plan == ")
    answer = _post(client, token, "/editor/validate", {"yaml": bad, "editing": ""})
    assert answer.status_code == 200
    result = answer.json()
    assert result["valid"] is False
    [problem] = result["problems"]
    lines = bad.splitlines()
    assert problem["in_draft"] is True and problem["file"] is None
    assert lines[problem["line"] - 1] == "  plan == "
    assert problem["source_line"] == "  plan == "
    caret_line = problem["caret"].splitlines()[1]
    # The caret sits under the column the parser names, in the draft's own text.
    assert caret_line.index("^") - 4 == problem["column"] - 1
    assert problem["line"] == 4 and problem["column"] == 9

    unknown = _post(
        client, token, "/editor/validate", {"yaml": _draft("Caret job", 'plann = "pro"')}
    ).json()
    assert not unknown["valid"]
    assert "unknown attribute 'plann'" in unknown["problems"][0]["message"]
    assert unknown["problems"][0]["column"] == 3

    fixed = _post(client, token, "/editor/validate", {"yaml": _draft("Caret job", 'plan = "pro"')})
    assert fixed.json()["valid"] is True and fixed.json()["problems"] == []

    html = client.post(
        "/editor/validate",
        data={"yaml": bad},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert html.status_code == 200
    assert "line 4, column 9" in html.text and "            ^" in html.text


def test_a_yaml_syntax_error_and_a_taken_name_are_located_in_the_draft(
    editor: tuple[httpx.Client, str],
) -> None:
    client, token = editor
    broken = _post(client, token, "/editor/validate", {"yaml": "name: [Open\ngoal: x\n"}).json()
    assert not broken["valid"] and "YAML syntax error" in broken["problems"][0]["message"]
    taken = _post(client, token, "/editor/validate", {"yaml": _draft("Integration nudge")}).json()
    assert not taken["valid"]
    assert "already exists" in taken["problems"][0]["message"]
    assert taken["problems"][0]["line"] == 1


def test_writes_need_the_csrf_token_and_the_editor_role(
    served: Served, editor: tuple[httpx.Client, str]
) -> None:
    client, _ = editor
    refused = client.post("/editor/save", data={"yaml": _draft("No token")})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    viewer, token = _logged_in(served, "vi")
    try:
        assert viewer.get("/jobs/new").status_code == 403
        answer = _post(viewer, token, "/editor/save", {"yaml": _draft("Viewer job")})
        assert answer.status_code == 403
        assert answer.json()["error"]["message"].startswith("this page needs the editor role")
    finally:
        viewer.close()
    assert "No token" not in (served.project / "jobs.yaml").read_text()
    assert "Viewer job" not in (served.project / "jobs.yaml").read_text()


def test_power_and_dry_run_of_a_draft_before_it_is_saved(
    editor: tuple[httpx.Client, str],
) -> None:
    client, token = editor
    draft = _draft("Preview job")
    power = _post(client, token, "/editor/power", {"yaml": draft}).json()
    assert power["problem"] is None
    planned = power["plan"]["planned"]
    assert planned["weeks"] == 8 and planned["n_treated"] > planned["n_holdout"] > 0
    assert 0 < planned["mde_absolute"] < 1
    run = _post(client, token, "/editor/dry-run", {"yaml": draft, "at": LATEST}).json()
    assert run["problem"] is None
    entering = run["dry_run"]["entering"]
    assert entering and run["audience_sample"] == [u["account_id"] for u in entering][:20]
    assert sum(run["dry_run"]["entering_by_arm"].values()) == len(entering)
    assert len(run["dry_run"]["messages"]) == len(entering)
    bad = _post(client, token, "/editor/power", {"yaml": _draft("Preview job", "plan == ")})
    assert bad.json()["plan"] is None and bad.json()["validation"]["valid"] is False
    wrong_at = _post(client, token, "/editor/dry-run", {"yaml": draft, "at": "yesterday"})
    assert wrong_at.status_code == 422 and "'at'" in wrong_at.json()["error"]["message"]
    assert "Preview job" not in client.get("/api/jobs").text  # nothing was written


def test_save_keeps_the_files_comments_and_launch_makes_the_job_live(
    served: Served, editor: tuple[httpx.Client, str]
) -> None:
    client, token = editor
    jobs_file = served.project / "jobs.yaml"
    before = jobs_file.read_text()
    invalid = _post(client, token, "/editor/save", {"yaml": _draft("Saved job", "plan == ")})
    assert invalid.status_code == 422 and invalid.json()["written"] is None
    assert jobs_file.read_text() == before

    draft = "# why: the nudge, for the pro plan\n" + _draft("Saved job", 'plan = "pro"')
    saved = _post(client, token, "/editor/save", {"yaml": draft})
    assert saved.status_code == 200, saved.text
    written = saved.json()["written"]
    assert written["created"] is True and written["file"] == "jobs.yaml"
    after = jobs_file.read_text()
    assert after.startswith(before.rstrip("\n"))  # the header comments and the other job kept
    # The draft as typed: its comment above its item, its quoting, its block scalar.
    assert "\n  # why: the nudge, for the pro plan\n  - name: Saved job\n" in after
    assert '      subject: "{{ account.name }}: a subject"\n' in after

    launched = _post(client, token, "/editor/launch", {"job": "Saved job"})
    assert launched.status_code == 200, launched.text
    assert launched.json()["launched"] is True
    jobs = {job["name"]: job for job in client.get("/jobs.json").json()["jobs"]}
    assert jobs["Saved job"]["status"] == "live"
    again = _post(client, token, "/editor/launch", {"job": "Saved job"}).json()
    assert again["launched"] is False

    audit = served.server.audit_log(action="web.*")
    actions = {(entry.action, entry.subject, entry.actor) for entry in audit.items}
    assert ("web.POST /editor/save", "Saved job", "ed") in actions
    assert ("web.POST /editor/launch", "Saved job", "ed") in actions
    unknown = _post(client, token, "/editor/launch", {"job": "Never saved"})
    assert unknown.status_code == 404 and "Never saved" in unknown.json()["error"]["message"]


def test_the_form_fills_the_yaml(editor: tuple[httpx.Client, str]) -> None:
    client, token = editor
    answer = _post(
        client,
        token,
        "/editor/fields",
        {"yaml": NEW_JOB, "name": "Form job", "holdout": "0.3", "email_subject": "Hello"},
    ).json()
    assert answer["fields"]["name"] == "Form job" and answer["fields"]["holdout"] == 0.3
    assert "name: Form job" in answer["yaml"] and "subject: Hello" in answer["yaml"]
    assert "goal: count(event" in answer["yaml"]  # what the form left empty is kept


def test_editing_a_job_keeps_its_place_and_a_rename_is_located(
    served: Served, editor: tuple[httpx.Client, str]
) -> None:
    client, token = editor
    jobs_file = served.project / "jobs.yaml"
    draft = _draft("Edited job")
    assert _post(client, token, "/editor/save", {"yaml": draft}).status_code == 200
    page = client.get("/jobs/Edited%20job/edit.json").json()
    assert page["status"] == "draft" and page["yaml"] == draft  # its own lines, as saved
    renamed = _post(
        client,
        token,
        "/editor/validate",
        {"yaml": draft.replace("name: Edited job", "name: Other name"), "editing": "Edited job"},
    ).json()
    assert not renamed["valid"]
    [problem] = renamed["problems"]
    assert "cannot be renamed" in problem["message"]
    assert (problem["in_draft"], problem["file"], problem["line"]) == (True, None, 1)
    before = jobs_file.read_text()
    changed = draft.replace("duration_days: 30", "duration_days: 21  # three weeks")
    saved = _post(client, token, "/editor/save", {"yaml": changed, "editing": "Edited job"})
    assert saved.status_code == 200 and saved.json()["written"]["created"] is False
    after = jobs_file.read_text()
    assert after.count("- name: Edited job") == 1
    assert "    duration_days: 21  # three weeks\n" in after  # the draft as typed
    assert after.replace("duration_days: 21  # three weeks", "duration_days: 30") == before
    # A new job named like it: the name's line in the draft.
    taken = _post(client, token, "/editor/validate", {"yaml": draft}).json()
    [problem] = taken["problems"]
    assert (problem["in_draft"], problem["file"], problem["line"]) == (True, None, 1)
    assert problem["caret"] == "    name: Edited job\n          ^"


def test_a_jobs_file_not_in_block_style_locates_problems_in_the_draft(tmp_path: Path) -> None:
    from closeloop.services.job_drafts import validate_draft
    from closeloop.settings import load_settings

    _closeloop(tmp_path, "init", ".")
    (tmp_path / "jobs.yaml").write_text("# no jobs yet\njobs: []\n", encoding="utf-8")
    settings = load_settings(tmp_path)
    good = validate_draft(settings, _draft("Flow job"))
    assert good.valid and good.file == "jobs.yaml"
    bad = validate_draft(settings, _draft("Flow job", "plan == "))
    [problem] = bad.problems
    assert (problem.in_draft, problem.line, problem.column) == (True, 4, 9)
    assert (tmp_path / "jobs.yaml").read_text() == "# no jobs yet\njobs: []\n"
    marker = validate_draft(settings, "---\n" + _draft("Flow job"))
    assert marker.valid or marker.problems[0].in_draft
    not_a_job = validate_draft(settings, "- just\n- a list\n")
    assert not not_a_job.valid and "YAML mapping" in not_a_job.problems[0].message
