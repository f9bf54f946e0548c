"""One contract per planning and definition result: the CLI's ``--format json``, the API's response
and the schema model the service returns are the same JSON, on a real project (a simulated company,
a job run in lockstep, the example cohorts and stages, DuckDB and SQLite files).

Also: unknown jobs, cohorts, stages and definitions answer 404 (``not_found``) on the API and exit
1 with the same code on the CLI, and a bad expression answers 422 with line, column and caret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from api_support import Api, api_for
from pydantic import BaseModel
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.schemas.definitions import (
    DefinitionHistory,
    DefinitionKind,
    DefinitionList,
    Matches,
    Validation,
)
from closeloop.schemas.journey import StageView
from closeloop.schemas.library import Library, SortKey
from closeloop.schemas.planning import PowerInputs, PowerPlan
from closeloop.services import definitions as definitions_service
from closeloop.services import journey as journey_service
from closeloop.services import library as library_service
from closeloop.services import power as power_service
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from closeloop.settings import load_settings
from support import VARIANT_JOB, embedded_backends, project_with_jobs

JOB = "Integration nudge"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    as_of: datetime  # the latest event: every "as of" below, so nothing depends on the clock
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(app, [*args, "--project", str(self.folder)], env=self.environ)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if "json" in args else result.output


def model_json(model: BaseModel) -> Any:
    """What every surface must say: the model as ``dump_json`` prints it, parsed."""
    return json.loads(dump_json(model))


def same(cli: Any, api: Any, model: BaseModel) -> None:
    assert cli == model_json(model)
    assert api == model_json(model)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("contracts")
    folder = project_with_jobs(root / "project", VARIANT_JOB)
    environ = embedded_backends(root).environ()
    config = simulation_config("heterogeneous", accounts=400, days=45, arrival_days=35, seed=5)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
        events = workspace.warehouse.table("events")
        latest = events.timestamp.max().to_pyarrow().as_py()
    with api_for(folder, environ) as api:
        yield Project(folder, environ, latest.replace(microsecond=0), api)


def test_power_plan_from_numbers(project: Project) -> None:
    inputs = PowerInputs(
        weekly_volume=400, baseline_rate=0.3, holdout_fraction=0.25, effect=0.04, weeks=[3, 6]
    )
    model = power_service.plan_power(inputs)
    cli = project.cli(
        "power", "--weekly", "400", "--baseline", "0.3", "--holdout", "0.25", "--effect", "0.04",
        "--weeks", "3", "--weeks", "6", "--format", "json",
    )  # fmt: skip
    response = project.api.post("/api/power", "viewer", json=inputs.model_dump(mode="json"))
    assert response.status_code == 200, response.text
    same(cli, response.json(), model)
    assert [plan["weeks"] for plan in cli["plans"]] == [3, 6]
    assert cli["duration"]["units"] > 0 and cli["job"] is None
    # A number out of its range is a 422 in the one error shape, not a server error.
    bad = project.api.post("/api/power", "viewer", json={"weekly_volume": 10, "baseline_rate": 2})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "configuration_error"
    assert "baseline completion rate" in bad.json()["error"]["message"]
    unknown_field = project.api.post(
        "/api/power", "viewer", json={"weekly_volume": 10, "baseline_rate": 0.2, "volume": 1}
    )
    assert unknown_field.status_code == 422
    assert unknown_field.json()["error"]["code"] == "invalid_request"


def test_power_plan_of_a_job(project: Project) -> None:
    as_of = project.as_of.isoformat()
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = power_service.plan_job_power(workspace, JOB, as_of=project.as_of, effect=0.05)
    cli = project.cli(
        "power", "--job", JOB, "--as-of", as_of, "--effect", "0.05", "--format", "json"
    )
    response = project.api.get(
        f"/api/jobs/{quote(JOB)}/power", params={"as_of": as_of, "effect": 0.05}
    )
    assert response.status_code == 200, response.text
    same(cli, response.json(), model)
    assert isinstance(model, PowerPlan) and model.job is not None
    assert cli["job"]["weekly_volume"]["source"] == "enrollments"  # the job ran
    assert cli["sequential"]["units"] == cli["planned"]["units"]
    assert cli["job"]["as_of"].endswith("Z")  # UTC, with its offset


def test_library_list_and_pages(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = library_service.library(workspace, sort=SortKey.NAME)
        segment = library_service.library(workspace, segment="self_serve")
    cli = project.cli("library", "--sort", "name", "--format", "json")
    response = project.api.get("/api/library", params={"sort": "name"})
    assert response.status_code == 200, response.text
    same(cli, response.json(), model)
    assert isinstance(model, Library) and model.count == len(model.jobs) == 1
    (entry,) = cli["jobs"]
    assert entry["name"] == JOB and entry["enrolled"] > 100
    assert [variant["name"] for variant in entry["variants"]] == ["plain", "video"]
    filtered = project.api.get("/api/library", params={"segment": "self_serve"})
    same(project.cli("library", "--segment", "self_serve", "--format", "json"),
         filtered.json(), segment)  # fmt: skip
    assert {row["segment"] for row in filtered.json()["jobs"][0]["segments"]} == {"self_serve"}
    # Pages: count is every match, jobs the page.
    beyond = project.api.get("/api/library", params={"offset": 1, "limit": 5}).json()
    assert beyond == {"count": 1, "jobs": []}
    assert project.api.get("/api/library", params={"limit": 0}).status_code == 422
    assert project.api.get("/api/library", params={"sort": "size"}).status_code == 422


def test_stage_view(project: Project) -> None:
    as_of = project.as_of.isoformat()
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = journey_service.stage_view(workspace, "Onboarding", project.as_of)
    cli = project.cli("stage", "Onboarding", "--at", as_of, "--format", "json")
    response = project.api.get("/api/stages/Onboarding", params={"as_of": as_of})
    assert response.status_code == 200, response.text
    same(cli, response.json(), model)
    assert isinstance(model, StageView) and model.entered > 0
    assert [row["name"] for row in cli["objectives"]] == [
        "Connected an integration",
        "Invited a teammate",
    ]
    # The same instant written with another zone is the same stage view.
    shifted = project.api.get("/api/stages/Onboarding", params={"as_of": f"{as_of}+00:00"}).json()
    assert shifted == response.json()
    names = project.api.get("/api/stages").json()
    assert [stage["name"] for stage in names["stages"]] == ["Onboarding", "Adoption"]


def test_cohort_and_explain_matches(project: Project) -> None:
    as_of = project.as_of.isoformat()
    with open_workspace(project.folder, environ=project.environ) as workspace:
        cohort = definitions_service.cohort(workspace, "Enterprise", project.as_of, 3)
        explained = definitions_service.explain(
            workspace, 'segment = "self_serve"', project.as_of, sample=4
        )
    cli = project.cli("cohort", "Enterprise", "--at", as_of, "--sample", "3", "--format", "json")
    response = project.api.get("/api/cohorts/Enterprise", params={"as_of": as_of, "sample": 3})
    assert response.status_code == 200, response.text
    same(cli, response.json(), cohort)
    assert isinstance(cohort, Matches) and cohort.count > 0 and len(cohort.sample) == 3
    assert list(cli["sample"][0]) == ["account_id", "name", "segment", "plan"]
    assert all(row["segment"] == "enterprise" for row in cli["sample"])
    cli = project.cli("explain", 'segment = "self_serve"', "--at", as_of, "--sample", "4",
                      "--format", "json")  # fmt: skip
    response = project.api.post(
        "/api/explain",
        "viewer",
        json={"expression": 'segment = "self_serve"', "as_of": as_of, "sample": 4},
    )
    assert response.status_code == 200, response.text
    same(cli, response.json(), explained)
    assert "SELECT" in cli["sql"] and cli["count"] > 0
    cohorts = project.api.get("/api/cohorts").json()
    assert {cohort["name"] for cohort in cohorts["cohorts"]} >= {"Enterprise", "New accounts"}


def test_a_bad_expression_is_a_located_422(project: Project) -> None:
    response = project.api.post(
        "/api/explain", "viewer", json={"expression": 'plna = "pro"', "as_of": "2024-06-01"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "expression_error"
    assert "unknown attribute 'plna'" in error["message"]
    assert error["location"]["line"] == 1 and error["location"]["column"] == 1
    assert error["location"]["caret"] == '    plna = "pro"\n    ^'
    assert error["hint"] == "did you mean 'plan'?"


def test_definition_list_and_history(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ) as workspace:
        listed = definitions_service.list_definitions(workspace)
        history = definitions_service.definition_history(workspace, "Enterprise", "cohort")
    cli = project.cli("definitions", "list", "--format", "json")
    response = project.api.get("/api/definitions")
    assert response.status_code == 200, response.text
    same(cli, response.json(), listed)
    assert isinstance(listed, DefinitionList)
    assert {(item["kind"], item["name"]) for item in cli["definitions"]} >= {
        ("cohort", "Enterprise"),
        ("stage", "Onboarding"),
        ("job", JOB),
    }
    cli = project.cli("definitions", "history", "Enterprise", "--kind", "cohort",
                      "--format", "json")  # fmt: skip
    response = project.api.get("/api/definitions/Enterprise/history", params={"kind": "cohort"})
    assert response.status_code == 200, response.text
    same(cli, response.json(), history)
    assert isinstance(history, DefinitionHistory) and history.kind == DefinitionKind.COHORT
    (first,) = cli["versions"]
    assert first["version"] == 1 and first["diff"].startswith("--- /dev/null")
    bad_kind = project.api.get("/api/definitions/Enterprise/history", params={"kind": "colour"})
    assert bad_kind.status_code == 422


@pytest.mark.parametrize(
    ("path", "command"),
    [
        (
            "/api/jobs/No%20such%20job/power",
            ("power", "--job", "No such job", "--as-of", "2024-06-01"),
        ),
        ("/api/cohorts/Nobody", ("cohort", "Nobody", "--at", "2024-06-01")),
        ("/api/stages/Nowhere", ("stage", "Nowhere", "--at", "2024-06-01")),
        ("/api/definitions/Nothing/history", ("definitions", "history", "Nothing")),
    ],
)
def test_unknown_names_are_404_and_not_found(
    project: Project, path: str, command: tuple[str, ...]
) -> None:
    response = project.api.get(path)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "not_found"
    output = project.cli(*command, code=1)
    assert "[not_found]" in output


def test_validation_of_the_project_on_disk(project: Project, tmp_path: Path) -> None:
    valid = definitions_service.validate_project(load_settings(project.folder, project.environ))
    cli = project.cli("validate", "--format", "json")
    response = project.api.post("/api/validate", "viewer")
    assert response.status_code == 200, response.text
    same(cli, response.json(), valid)
    assert isinstance(valid, Validation) and valid.valid and valid.jobs == 1

    # A project with a mistake: the CLI exits 1, the API answers 200 with valid false, and the
    # problem is in the one error shape with its place.
    folder = tmp_path / "broken"
    init_project(folder, name="broken")
    cohorts = folder / "cohorts.yaml"
    cohorts.write_text(
        cohorts.read_text().replace('segment = "enterprise"', 'segmnt = "enterprise"')
    )
    environ = embedded_backends(tmp_path).environ()
    broken = definitions_service.validate_project(load_settings(folder, environ))
    result = CliRunner().invoke(
        app, ["validate", "--format", "json", "--project", str(folder)], env=environ
    )
    assert result.exit_code == 1, result.output
    with api_for(folder, environ) as api:
        answer = api.post("/api/validate", "viewer")
    assert answer.status_code == 200, answer.text
    same(json.loads(result.stdout), answer.json(), broken)
    assert not broken.valid and broken.errors == 1
    problem = next(p for p in answer.json()["problems"] if p["severity"] == "error")
    assert problem["code"] == "expression_error"
    assert problem["location"]["file"] == str(cohorts)
    line = next(n for n, text in enumerate(cohorts.read_text().splitlines(), 1) if "segmnt" in text)
    assert problem["location"]["line"] == line
    assert problem["location"]["caret"].endswith("^")
    assert problem["hint"] == "did you mean 'segment'?"
