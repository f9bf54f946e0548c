"""``closeloop outcomes team`` and ``GET /api/outcomes/team`` on a simulated company whose job ran
in lockstep: the CLI's ``--format json``, the API's response and the service's model are the same
JSON; csv is the scorecards; bad input is a clear error (404 for an unknown ``--by``, 422 for bad
dates) with no traceback. docs/metrics.md documents every field of the result.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from pydantic import BaseModel
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.schemas.team import (
    ActivityKind,
    ChurnReason,
    ChurnSummary,
    Scorecard,
    Share,
    TeamOutcomes,
)
from closeloop.services.outcomes_team import team_outcomes
from closeloop.services.project import open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import VARIANT_JOB, embedded_backends, project_with_jobs

METRICS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    start: datetime
    end: datetime
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["outcomes", "team", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args else result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("team")
    folder = project_with_jobs(root / "project", VARIANT_JOB)
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=300, days=90, arrival_days=60, seed=11)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
        events = workspace.warehouse.table("events")
        first = events.timestamp.min().to_pyarrow().as_py()
        last = events.timestamp.max().to_pyarrow().as_py()
    start = datetime(first.year, first.month, first.day) + timedelta(days=30)
    end = datetime(last.year, last.month, last.day) + timedelta(days=1)
    with api_for(folder, environ) as api:
        yield Project(folder, environ, start, end, api)


def model_json(model: BaseModel) -> Any:
    return json.loads(dump_json(model))


def test_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ, write=False) as workspace:
        model = team_outcomes(workspace, project.start, project.end)
    start, end = project.start.isoformat(), project.end.isoformat()
    cli = project.cli("--start", start, "--end", end, "--format", "json")
    response = project.api.get("/api/outcomes/team", params={"start": start, "end": end})
    assert response.status_code == 200, response.text
    assert cli == model_json(model)
    assert response.json() == model_json(model)
    # The simulated company has something in every part of the result.
    assert len(model.scorecards) >= 2 and model.activities and model.churn.churns > 0
    assert sum(card.accounts for card in model.scorecards) > 0
    assert sum(card.goals_achieved for card in model.scorecards) > 0  # the job ran
    assert sum(card.treated_completion.n + card.holdout_completion.n for card in model.scorecards)
    assert cli["start"].endswith("Z") and cli["by"] == "owner"


def test_csv_is_the_scorecards_and_the_table_leads_with_what_cs_influences(
    project: Project,
) -> None:
    start, end = project.start.isoformat(), project.end.isoformat()
    model = TeamOutcomes.model_validate(
        project.cli("--start", start, "--end", end, "--format", "json")
    )
    rows = list(
        csv.DictReader(io.StringIO(project.cli("--start", start, "--end", end, "--format", "csv")))
    )
    assert [row["csm"] for row in rows] == [card.csm for card in model.scorecards]
    assert {"csat_rate", "csat_lower", "csat_n", "nrr", "controllable_churns"} <= set(rows[0])
    assert [int(row["accounts"]) for row in rows] == [card.accounts for card in model.scorecards]
    # A window before any account: no scorecard, the same header.
    empty = project.cli("--start", "2000-01-01", "--end", "2000-02-01", "--format", "csv")
    assert empty.splitlines()[0].split(",") == list(rows[0])
    table = project.cli("--start", start, "--end", end)
    assert "CSM scorecards" in table and "Churn reasons" in table
    # The scorecard never shows revenue alone: goals and satisfaction come before MRR.
    assert table.index("goals") < table.index("NRR")
    assert "of the flagged churns" in table


def test_unknown_attribute_is_404_and_bad_dates_are_422(project: Project) -> None:
    start, end = project.start.isoformat(), project.end.isoformat()
    response = project.api.get(
        "/api/outcomes/team", params={"start": start, "end": end, "by": "csm"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "no attribute 'csm'" in response.json()["error"]["message"]
    output = project.cli("--start", start, "--end", end, "--by", "csm", code=1)
    assert "no attribute 'csm'" in output and "not_found" in output

    backwards = project.api.get("/api/outcomes/team", params={"start": end, "end": start})
    assert backwards.status_code == 422
    assert "is not before end" in backwards.json()["error"]["message"]
    output = project.cli("--start", end, "--end", start, code=1)
    assert "is not before end" in output and "Traceback" not in output

    garbled = project.api.get("/api/outcomes/team", params={"start": "2024-13-01", "end": end})
    assert garbled.status_code == 422
    assert garbled.json()["error"]["code"] == "invalid_request"
    missing = project.api.get("/api/outcomes/team", params={"start": start})
    assert missing.status_code == 422
    output = project.cli("--start", "2024-13-01", "--end", end, code=2)
    assert "not an ISO date" in output


def _documented_names(model: type[BaseModel], seen: set[str]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        annotation = field.annotation
        for inner in (ActivityKind, ChurnReason, ChurnSummary, Scorecard, Share):
            if inner.__name__ not in seen and inner.__name__ in str(annotation):
                seen.add(inner.__name__)
                names |= _documented_names(inner, seen)
    return names


def test_every_team_metric_and_switch_is_documented() -> None:
    text = METRICS.read_text(encoding="utf-8")
    match = re.search(r"^## Team\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "docs/metrics.md has no ## Team section"
    section = match.group(1)
    names = _documented_names(TeamOutcomes, set())
    assert {"treated_completion", "controllable_share", "successes", "owner"} <= names
    switches = {"--by", "--sponsor-attribute", "--reference-attribute", "--start", "--end"}
    missing = sorted(name for name in names | switches if f"`{name}`" not in section)
    assert not missing, f"not documented in docs/metrics.md ## Team: {missing}"
