"""``closeloop stage``, ``closeloop signals`` and ``closeloop jobs create-from-signal`` with their
routes, on the hand-built company of tests/journey_support.py: the CLI's ``--format json``, the
API's response and the service's model are the same JSON; csv parses; the tables say what they
show; a drafted job validates and its dry run enrolls exactly the signal's accounts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from api_support import Api, api_for
from journey_support import T, journey_project, load_journey_dataset
from pydantic import BaseModel
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.services import journey
from closeloop.services.project import open_workspace
from support import embedded_backends

AT = T.isoformat()
SLOW = "slow_completer:Onboarding:Connected"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    api: Api

    def cli(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, [*args, "--project", str(self.folder)], env=self.environ)
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.output


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    folder = journey_project(tmp_path / "project")
    environ = embedded_backends(tmp_path).environ()
    with open_workspace(folder, environ=environ) as workspace:
        load_journey_dataset(workspace.warehouse)
    with api_for(folder, environ) as api:
        yield Project(folder, environ, api)


def model_json(model: BaseModel) -> Any:
    return json.loads(dump_json(model))


def test_stage_json_is_the_api_response_and_the_model(project: Project) -> None:
    since = (T - timedelta(days=17)).isoformat()
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = journey.stage_view(
            workspace,
            "Onboarding",
            T,
            window_days=14,
            since=T - timedelta(days=17),
            accounts=True,
        )
    args = ("--at", AT, "--window", "14d", "--since", since, "--accounts")
    cli = json.loads(project.cli("stage", "Onboarding", *args, "--format", "json"))
    response = project.api.get(
        "/api/stages/Onboarding",
        params={"at": AT, "window": 14, "since": since, "accounts": True},
    )
    assert response.status_code == 200, response.text
    assert cli == model_json(model) == response.json()
    assert cli["window"] == {"days": 14.0, "entered": 3, "completed": 1, "exited": 1}
    assert [row["class"] for row in cli["accounts"]][-2:] == ["stuck", "behind"]
    # The older parameter name still answers, without accounts or a comparison by default.
    plain = project.api.get("/api/stages/Onboarding", params={"as_of": AT}).json()
    assert plain["accounts"] is None and plain["since"] is None
    assert project.api.get("/api/stages/Nope", params={"at": AT}).status_code == 404
    assert project.api.get("/api/stages/Onboarding", params={"window": 0}).status_code == 422


def test_stage_csv_and_table(project: Project) -> None:
    objectives = list(
        csv.DictReader(
            io.StringIO(project.cli("stage", "Onboarding", "--at", AT, "--format", "csv"))
        )
    )
    assert [row["name"] for row in objectives] == ["Connected", "Invited"]
    assert (objectives[0]["median_days"], objectives[0]["p75_days"]) == ("10.0", "20.0")
    assert objectives[1]["median_days"] == ""  # the curve never reaches one half
    accounts = list(
        csv.DictReader(
            io.StringIO(
                project.cli("stage", "Onboarding", "--at", AT, "--accounts", "--format", "csv")
            )
        )
    )
    assert [row["account_id"] for row in accounts] == [
        "a05",
        "a06",
        "a07",
        "a08",
        "a09",
        "a10",
        "a13",
        "a14",
    ]
    assert accounts[-1]["class"] == "behind" and accounts[-1]["objectives_missing"] == "Connected"
    table = project.cli("stage", "Onboarding", "--at", AT, "--accounts", "--since", "2024-05-15")
    print(table)
    for text in ("8 in the stage", "Kaplan–Meier", "Typical order: Connected → Invited", "stuck"):
        assert text in table
    assert "never" in table and "Since 2024-05-15" in table
    output = project.cli("stage", "Nope", "--at", AT, code=1)
    assert "Onboarding" in output and "Traceback" not in output


def test_signals_json_csv_and_table(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = journey.signals(workspace, T)
    cli = json.loads(project.cli("signals", "--at", AT, "--format", "json"))
    response = project.api.get("/api/signals", params={"at": AT})
    assert response.status_code == 200, response.text
    assert cli == model_json(model) == response.json()
    assert [signal["id"] for signal in cli["signals"]] == [SLOW, "usage_drop", "renewal_risk"]
    rows = list(csv.DictReader(io.StringIO(project.cli("signals", "--at", AT, "--format", "csv"))))
    assert [(row["signal"], row["account_id"]) for row in rows] == [
        (SLOW, "a13"),
        (SLOW, "a14"),
        ("usage_drop", "b1"),
        ("usage_drop", "b3"),
        ("renewal_risk", "b1"),
        ("renewal_risk", "b3"),
        ("renewal_risk", "b4"),
    ]
    only = project.api.get("/api/signals", params={"at": AT, "kind": "usage_drop"}).json()
    assert [signal["id"] for signal in only["signals"]] == ["usage_drop"]
    table = project.cli("signals", "--at", AT, "--kind", "renewal_risk")
    print(table)
    assert "renewal_risk" in table and "80,000" in table and "create-from-signal" in table


def _dry_run(project: Project, job: str) -> set[str]:
    dry = json.loads(project.cli("dry-run", job, "--at", AT, "--format", "json"))
    return {unit["account_id"] for unit in dry["entering"]}


def test_create_from_signal_writes_a_draft_whose_audience_is_the_signal(project: Project) -> None:
    output = project.cli("jobs", "create-from-signal", SLOW, "--at", AT)
    print(output)
    name = "Slow completers - Onboarding - Connected"
    assert f"wrote draft job {name}" in output and "closeloop jobs launch" in output
    jobs = (project.folder / "jobs.yaml").read_text()
    assert "# Jobs: one goal" in jobs  # the file's comments are kept
    assert 'goal: count(event "integration_connected") >= 1' in jobs
    validate = json.loads(project.cli("validate", "--format", "json"))
    assert validate["valid"], validate
    assert _dry_run(project, name) == {"a13", "a14"}
    listed = json.loads(project.cli("jobs", "list", "--format", "json"))
    assert {job["name"]: job["status"] for job in listed["jobs"]}[name] == "draft"

    # The API drafts the renewal-risk job as an Editor; a viewer may not.
    path = f"/api/signals/{quote('renewal_risk')}/job"
    assert project.api.post(path, role="viewer", json={"at": AT}).status_code == 403
    response = project.api.post(path, json={"at": AT, "name": "Renewal save"})
    assert response.status_code == 201, response.text
    written = response.json()
    assert written["job"] == "Renewal save" and written["file"] == "jobs.yaml"
    assert written["detail"]["definition"]["goal"] == "last_seen_days < 7"
    assert _dry_run(project, "Renewal save") == {"b1", "b3", "b4"}
    again = project.api.post(path, json={"at": AT, "name": "Renewal save"})
    assert again.status_code == 409
    unknown = project.api.post(f"/api/signals/{quote(SLOW + 'x')}/job", json={"at": AT})
    assert unknown.status_code == 404 and SLOW in unknown.json()["error"]["message"]
    output = project.cli("jobs", "create-from-signal", "usage_drop", "--at", AT)
    assert "wrote draft job Usage drop" in output
    assert _dry_run(project, "Usage drop") == {"b1", "b3"}
    assert json.loads(project.cli("validate", "--format", "json"))["valid"]
