"""``closeloop plans`` and ``/api/plans`` on a small project: the CLI's ``--format json``, the
API's response and the service's model are the same JSON; a bad objectives file is reported
with file:line:column and a caret; a stale ``--expect-version`` / ``If-Match`` is refused (409)
with nothing written; tables print without a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.data.warehouse import Warehouse
from closeloop.schemas import dump_json
from closeloop.schemas.tokens import Role
from closeloop.services import plans as service
from closeloop.services.project import init_project, open_workspace
from support import embedded_backends

AT = "2027-07-01T00:00:00"
OBJECTIVES = """\
- title: Reports viewed
  measure: count(event "report_viewed")
  target: 10
  target_date: 2027-06-30
- title: Seats active
  measure: manual
  baseline: 5
  target: 50
  target_date: 2027-06-30
  owner: cara
"""
BAD_OBJECTIVES = """\
- title: Reports viewed
  measure: count(event "report_viewed") >
  target: 10
  target_date: 2027-06-30
- title: Seats
  baseline: 5
  target: 50
  target_date: 2027-06-30
  colour: blue
"""


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["plans", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args and code == 0 else result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("plans")
    folder = root / "project"
    init_project(folder, "plans")
    environ = embedded_backends(root).environ()
    with Warehouse.connect(environ["CLOSELOOP_WAREHOUSE_URL"]) as warehouse:
        warehouse.ensure_tables()
        warehouse.append(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {
                    "account_id": ["a1", "a2"],
                    "segment": ["enterprise", "smb"],
                    "created_at": [datetime(2024, 1, 1)] * 2,
                },
            ),
        )
        warehouse.append(
            "events",
            warehouse.arrow_for(
                "events",
                {
                    "event_id": ["e1", "e2", "e3"],
                    "account_id": ["a1"] * 3,
                    "name": ["report_viewed"] * 3,
                    "timestamp": [datetime(2024, 2, day) for day in (1, 2, 3)],
                },
            ),
        )
    (root / "objectives.yaml").write_text(OBJECTIVES, encoding="utf-8")
    (root / "bad.yaml").write_text(BAD_OBJECTIVES, encoding="utf-8")
    with api_for(folder, environ) as api:
        yield Project(folder, environ, api)


def test_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    objectives = str(project.folder.parent / "objectives.yaml")
    created = project.cli(
        "create", "a1", "--title", "Rollout", "--owner", "ana", "--file", objectives,
        "--format", "json",
    )  # fmt: skip
    plan_id = created["id"]
    reports, seats = created["objectives"]
    assert created["version"] == 1 and reports["baseline"] == 3.0  # three views so far
    assert (seats["baseline"], seats["owner"]) == (5.0, "cara")

    project.cli("update", str(plan_id), str(seats["id"]), "--value", "50", "--format", "json")
    renegotiated = project.cli(
        "renegotiate", str(plan_id), str(reports["id"]), "--target", "3.5", "--date",
        "2027-09-30", "--reason", "fewer analysts", "--agreed-by", "Kim", "--format", "json",
    )  # fmt: skip
    assert renegotiated["version"] == 3
    assert renegotiated["objectives"][0]["renegotiations"][0]["old_target"] == 10.0

    shown = project.cli("show", str(plan_id), "--at", AT, "--format", "json")
    response = project.api.get(f"/api/plans/{plan_id}", params={"at": AT + "Z"})
    assert response.status_code == 200 and response.headers["ETag"] == '"3"'
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = service.show_plan(workspace, plan_id, at=datetime.fromisoformat(AT))
        achieved_model = service.goals_achieved(workspace, datetime.fromisoformat(AT))
        listed_model = service.list_plans(workspace, at=datetime.fromisoformat(AT))
    assert shown == response.json() == json.loads(dump_json(model))
    # Seats met (50 on day one); reports open until 2027-09-30: one decided, met, for cara.
    assert [o["status"] for o in shown["objectives"]] == ["open", "met"]

    achieved = project.cli("achieved", "--at", AT, "--format", "json")
    api_achieved = project.api.get("/api/plans/achieved", params={"at": AT + "Z"}).json()
    assert achieved == api_achieved == json.loads(dump_json(achieved_model))
    assert [(g["group"], g["met"], g["decided"]) for g in achieved["groups"]] == [
        ("ana", 0, 0),
        ("cara", 1, 1),
    ]
    listed = project.cli("list", "--at", AT, "--format", "json")
    assert listed == project.api.get("/api/plans", params={"at": AT + "Z"}).json()
    assert listed == json.loads(dump_json(listed_model))

    old = project.cli("show", str(plan_id), "--version", "1", "--format", "json")
    assert old == project.api.get(f"/api/plans/{plan_id}", params={"version": 1}).json()
    assert old["objectives"][0]["target"] == 10.0 and old["latest_version"] == 3


def test_api_writes_and_version_conflicts(project: Project) -> None:
    api = project.api
    body = {"account_id": "a2", "title": "Adoption", "owner": "ben", "objectives": []}
    assert api.post("/api/plans", role=Role.viewer, json=body).status_code == 403
    created = api.post("/api/plans", json=body)
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    plan_id = created.json()["id"]
    objective = {
        "title": "Tickets",
        "measure": "manual",
        "baseline": 40,
        "target": 20,
        "target_date": "2027-04-30",
    }
    added = api.client.post(
        f"/api/plans/{plan_id}/objectives",
        json={"objectives": [objective]},
        headers={**api.headers(Role.editor), "If-Match": '"1"'},
    )
    assert added.status_code == 200, added.text
    objective_id = added.json()["objectives"][0]["id"]
    patch = {"value": 30}
    stale = api.client.patch(
        f"/api/plans/{plan_id}/objectives/{objective_id}",
        json=patch,
        headers={**api.headers(Role.editor), "If-Match": '"1"'},
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "concurrency_error"
    assert "at version 2, not 1" in stale.json()["error"]["message"]
    fresh = api.client.patch(
        f"/api/plans/{plan_id}/objectives/{objective_id}",
        json={**patch, "version": 2},
        headers=api.headers(Role.editor),
    )
    assert fresh.status_code == 200 and fresh.json()["objectives"][0]["progress"] == 0.5
    renegotiated = api.post(
        f"/api/plans/{plan_id}/objectives/{objective_id}/renegotiate",
        json={"target": 25, "reason": "a new ticketing system", "agreed_by": "Lee"},
    )
    assert renegotiated.status_code == 200, renegotiated.text
    assert renegotiated.json()["objectives"][0]["original_target"] == 20.0
    assert api.get(f"/api/plans/{plan_id}/objectives/999").status_code in (404, 405)
    missing = api.client.patch(
        f"/api/plans/{plan_id}/objectives/999999", json=patch, headers=api.headers(Role.editor)
    )
    assert missing.status_code == 404
    bad_measure = api.post(
        f"/api/plans/{plan_id}/objectives",
        json={"objectives": [{**objective, "measure": 'count(evnt "x")', "baseline": None}]},
    )
    assert bad_measure.status_code == 422
    # The CLI refuses a stale version the same way, naming the code the API answers with.
    output = project.cli(
        "update", str(plan_id), str(objective_id), "--owner", "eve", "--expect-version", "1",
        code=1,
    )  # fmt: skip
    assert "at version 4, not 1" in output and "concurrency_error" in output
    assert "Traceback" not in output


def test_a_bad_objectives_file_is_located(project: Project) -> None:
    bad = project.folder.parent / "bad.yaml"
    output = project.cli("create", "a1", "--title", "Broken", "--file", str(bad), code=1)
    assert f"{bad}:2:" in output and "^" in output  # the expression's error, with a caret
    assert f"{bad}:9:3:" in output and "1.colour: unknown field 'colour'" in output
    assert "Traceback" not in output
    listed = project.cli("list", "--account", "a1", "--format", "json")
    assert all(plan["title"] != "Broken" for plan in listed["plans"])  # nothing was stored


def test_tables_print(project: Project) -> None:
    created = project.cli(
        "create", "a2", "--title", "Tables", "--format", "json",
    )  # fmt: skip
    project.cli(
        "add-objective", str(created["id"]), "--title", "Logins", "--measure",
        'count(event "login")', "--target", "5", "--date", "2027-03-31",
    )  # fmt: skip
    for args in (
        ("list",),
        ("show", str(created["id"])),
        ("check", "--at", "2027-01-01"),
        ("achieved", "--by", "segment"),
    ):
        output = project.cli(*args)
        assert "Traceback" not in output
    assert "Logins" in project.cli("show", str(created["id"]))
    output = project.cli("show", "99999", code=1)
    assert "no success plan 99999" in output
