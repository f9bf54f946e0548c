"""The accounts list and the account page over HTTP: a real ``closeloop serve`` app on loopback,
a simulated company with a success plan, a viewer's session and an API token."""

from __future__ import annotations

import csv
import io
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
from closeloop.services.server import Server
from closeloop.services.tokens import create_token

pytestmark = pytest.mark.slow  # a simulated company (~20 s) behind a real server

PASSWORD = "correct horse battery"
OBJECTIVES = """\
- title: Weekly reports
  measure: count(event "report_viewed")
  target: 40
  target_date: 2030-06-30
"""


@dataclass
class Served:
    base: str
    project: Path
    server: Server
    token: str
    surveyed: str  # an account with survey answers
    planned: str  # an account with a success plan
    quiet: str  # an account nobody surveyed


def _closeloop(project: Path, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "closeloop"), *args],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = tmp_path_factory.mktemp("accounts")
    _closeloop(project, "init", ".")
    _closeloop(project, "simulate", "--accounts", "120", "--days", "45", "--run-jobs")
    (project / "objectives.yaml").write_text(OBJECTIVES, encoding="utf-8")
    _closeloop(project, "plans", "create", "acc_000007", "--title", "Q3 plan", "--file",
               "objectives.yaml")  # fmt: skip
    server = Server.open(project)
    users.add_user(server.store, name="vi", role="viewer", password=PASSWORD, actor="test")
    token = create_token(server.store, name="reader", role="viewer", actor="test").token
    with server.workspace() as workspace:
        answers = workspace.warehouse.table("survey_responses")
        answered = set(answers.account_id.execute())
    surveyed = min(answered)
    quiet = min({f"acc_{n:06d}" for n in range(120)} - answered)
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
        yield Served(
            f"http://127.0.0.1:{port}", project, server, token, surveyed, "acc_000007", quiet
        )
    finally:
        http.should_exit = True
        thread.join(timeout=10)
        server.close()


@pytest.fixture(scope="module")
def viewer(served: Served) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=served.base, timeout=120)
    login = client.post("/login", data={"name": "vi", "password": PASSWORD, "next": "/accounts"})
    assert login.status_code == 303, login.text
    try:
        yield client
    finally:
        client.close()


def _api(served: Served, path: str) -> httpx.Response:
    return httpx.get(
        served.base + path, headers={"Authorization": f"Bearer {served.token}"}, timeout=120
    )


def test_the_accounts_list_searches_and_pages(served: Served, viewer: httpx.Client) -> None:
    first = viewer.get("/accounts.json").json()
    assert first["total"] == 120 and len(first["items"]) == 50
    second = viewer.get("/accounts.json?offset=100").json()
    assert [a["account_id"] for a in second["items"]] == [f"acc_{n:06d}" for n in range(100, 120)]
    name = first["items"][3]["name"]
    found = viewer.get("/accounts.json", params={"q": name.upper()}).json()
    assert first["items"][3]["account_id"] in [a["account_id"] for a in found["items"]]
    html = viewer.get("/accounts", params={"q": "acc_00011"})
    assert html.status_code == 200
    assert html.text.count('href="/accounts/acc_00011') == 10  # acc_000110 … acc_000119
    assert "Accounts 1–10 of 10" in html.text
    # The JSON twin is the API's page of accounts.
    assert _api(served, "/api/accounts?limit=50").json() == first
    rows = list(csv.reader(io.StringIO(viewer.get("/accounts.csv?table=accounts").text)))
    assert rows[0][:2] == ["account", "name"] and len(rows) == 51
    bad = viewer.get("/accounts?offset=-3")
    assert bad.status_code == 422 and "offset" in bad.text


def test_the_account_page_has_every_section_and_its_json_twin(
    served: Served, viewer: httpx.Client
) -> None:
    account_id = served.surveyed
    twin = viewer.get(f"/accounts/{account_id}.json").json()
    assert set(twin) == {
        "account",
        "as_of",
        "timeline",
        "enrollments",
        "deliveries",
        "surveys",
        "health",
        "plans",
    }
    # Each section is what the API answers for the same account.
    assert twin["account"] == _api(served, f"/api/accounts/{account_id}").json()
    timeline = _api(served, f"/api/accounts/{account_id}/timeline?limit=50").json()
    assert twin["timeline"]["total"] == timeline["total"]
    enrollments = _api(served, f"/api/enrollments?account_id={account_id}&limit=50").json()
    assert twin["enrollments"] == enrollments
    outbox = _api(served, f"/api/outbox?account_id={account_id}&limit=50").json()
    assert twin["deliveries"]["messages"] == outbox["messages"]
    assert (
        twin["deliveries"]["total"] == outbox["total"] == sum(twin["deliveries"]["counts"].values())
    )
    assert twin["surveys"]["total"] >= 1
    assert {r["kind"] for r in twin["surveys"]["responses"]} <= {"nps", "csat", "ces"}
    health = twin["health"]["report"]
    assert health is not None and health["account_id"] == account_id
    [score] = health["scores"]
    measures = score["now"]["measures"]
    if score["now"]["score"] is not None:
        total = sum(m["contribution"] for m in measures)
        assert total == pytest.approx(score["now"]["score"], abs=1e-6)

    html = viewer.get(f"/accounts/{account_id}")
    assert html.status_code == 200
    for heading in ("Revenue", "Health", "Success plans", "Surveys", "Timeline", "Attributes"):
        assert heading in html.text
    assert "No success plan for this account." in html.text
    assert f'href="/accounts/{account_id}.csv?table=surveys"' in html.text
    surveys = list(
        csv.reader(io.StringIO(viewer.get(f"/accounts/{account_id}.csv?table=surveys").text))
    )
    assert len(surveys) == 1 + len(twin["surveys"]["responses"])


def test_a_success_plan_and_an_empty_section_say_what_they_have(
    served: Served, viewer: httpx.Client
) -> None:
    twin = viewer.get(f"/accounts/{served.planned}.json").json()
    [plan] = twin["plans"]
    assert plan["title"] == "Q3 plan" and plan["objectives"][0]["title"] == "Weekly reports"
    html = viewer.get(f"/accounts/{served.planned}").text
    assert "Q3 plan" in html and "Weekly reports" in html
    assert viewer.get(f"/accounts/{served.quiet}.json").json()["surveys"]["total"] == 0
    page = viewer.get(f"/accounts/{served.quiet}").text
    assert "No NPS, CSAT or CES answer from this account." in page


def test_an_unknown_account_is_a_404_in_every_format(viewer: httpx.Client) -> None:
    html = viewer.get("/accounts/acc_nobody")
    assert html.status_code == 404 and "no account &#39;acc_nobody&#39;" in html.text
    twin = viewer.get("/accounts/acc_nobody.json")
    assert twin.status_code == 404
    assert twin.json()["error"] == {
        "code": "not_found",
        "message": "no account 'acc_nobody'",
        "location": None,
        "hint": "",
        "problems": [],
    }
    assert viewer.get("/accounts/acc_nobody.csv?table=timeline").status_code == 404
    assert httpx.get(viewer.base_url.join("/accounts/acc_000001")).status_code == 303
    assert re.search(r"/login\?next=", httpx.get(
        viewer.base_url.join("/accounts/acc_000001")).headers["location"])  # fmt: skip
