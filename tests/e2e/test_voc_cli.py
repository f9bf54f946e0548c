"""``closeloop outcomes voc|divergence`` and ``GET /api/outcomes/voc|divergence`` on a simulated
company: the CLI's ``--format json``, the API's response and the service's model are the same
JSON; csv is the main table; bad input is a clear error (404 for an unknown ``--by``, 422 for bad
dates or switches) with no traceback. docs/metrics.md documents every field and switch.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from pydantic import BaseModel
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.cli.outcomes_voc import GROUP_COLUMNS, SERIES_COLUMNS
from closeloop.schemas import dump_json
from closeloop.schemas.voc import Divergence, Voc
from closeloop.services.outcomes_voc import divergence, voc
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import embedded_backends

METRICS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
START, END = datetime(2025, 2, 1), datetime(2025, 6, 1)


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    api: Api

    def cli(self, command: str, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["outcomes", command, *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args else result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("voc")
    folder = root / "project"
    init_project(folder, name="voc")
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=150, seed=5)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config)
    with api_for(folder, environ) as api:
        yield Project(folder, environ, api)


def model_json(model: BaseModel) -> Any:
    return json.loads(dump_json(model))


def test_voc_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ, write=False) as workspace:
        model = voc(workspace, START, END, by="segment", comments=5)
    start, end = START.isoformat(), END.isoformat()
    cli = project.cli(
        "voc",
        "--start",
        start,
        "--end",
        end,
        "--by",
        "segment",
        "--comments",
        "5",
        "--format",
        "json",
    )
    response = project.api.get(
        "/api/outcomes/voc", params={"start": start, "end": end, "by": "segment", "comments": 5}
    )
    assert response.status_code == 200, response.text
    assert cli == model_json(model)
    assert response.json() == model_json(model)
    # The simulated company answered every kind of survey.
    assert {"nps", "csat", "ces"} <= set(cli)
    assert model.nps.responses > 20 and model.csat.responses > 20 and model.ces.responses > 10
    assert model.ces.scale_min == 1.0 and model.ces.scale_max == 7.0
    assert [group.key for group in model.trend] == ["2025-02", "2025-03", "2025-04", "2025-05"]
    assert {group.key for group in model.segments} == {"enterprise", "mid_market", "self_serve"}
    assert len(model.comments) == 5 and model.comments_total > 5
    assert model.comments == sorted(model.comments, key=lambda c: c.responded_at, reverse=True)
    assert cli["start"].endswith("Z")


def test_voc_csv_and_table(project: Project) -> None:
    start, end = START.isoformat(), END.isoformat()
    text = project.cli("voc", "--start", start, "--end", end, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == GROUP_COLUMNS
    assert [(row["group"], row["key"]) for row in rows][:2] == [
        ("all", "all"),
        ("period", "2025-02"),
    ]
    table = project.cli("voc", "--start", start, "--end", end)
    assert "NPS" in table and "response rates" in table and "newest comments" in table


def test_divergence_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ, write=False) as workspace:
        model = divergence(workspace, END, periods=4)
    cli = project.cli("divergence", "--end", END.isoformat(), "--periods", "4", "--format", "json")
    response = project.api.get(
        "/api/outcomes/divergence", params={"end": END.isoformat(), "periods": 4}
    )
    assert response.status_code == 200, response.text
    assert cli == model_json(model) == response.json()
    assert [row["key"] for row in cli["series"]] == ["2025-02", "2025-03", "2025-04", "2025-05"]
    text = project.cli("divergence", "--end", END.isoformat(), "--periods", "4", "--format", "csv")
    assert tuple(next(csv.reader(io.StringIO(text)))) == SERIES_COLUMNS
    assert "divergence alert" in project.cli("divergence", "--end", END.isoformat())


def test_unknown_attribute_is_404_and_bad_input_is_422(project: Project) -> None:
    start, end = START.isoformat(), END.isoformat()
    response = project.api.get(
        "/api/outcomes/voc", params={"start": start, "end": end, "by": "tier"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "no attribute 'tier'" in response.json()["error"]["message"]
    output = project.cli("voc", "--start", start, "--end", end, "--by", "tier", code=1)
    assert "no attribute 'tier'" in output and "not_found" in output

    backwards = project.api.get("/api/outcomes/voc", params={"start": end, "end": start})
    assert backwards.status_code == 422
    assert "must be after --start" in backwards.json()["error"]["message"]
    output = project.cli("voc", "--start", end, "--end", start, code=1)
    assert "must be after --start" in output and "Traceback" not in output

    garbled = project.api.get("/api/outcomes/voc", params={"start": "2025-13-01"})
    assert garbled.status_code == 422
    assert garbled.json()["error"]["code"] == "invalid_request"
    output = project.cli("voc", "--start", "2025-13-01", code=2)
    assert "not an ISO date" in output
    too_few = project.api.get("/api/outcomes/divergence", params={"periods": 1})
    assert too_few.status_code == 422
    output = project.cli("divergence", "--periods", "1", code=1)
    assert "--periods 1" in output and "Traceback" not in output
    # An end so early that the periods would start before any data (year 0 does not exist).
    ancient = project.api.get("/api/outcomes/divergence", params={"end": "0001-02-01"})
    assert ancient.status_code == 422, ancient.text
    assert "would start before 1900" in ancient.json()["error"]["message"]
    output = project.cli("divergence", "--end", "1901-01-01", "--periods", "24", code=1)
    assert "would start before 1900" in output and "Traceback" not in output
    period = project.api.get("/api/outcomes/voc", params={"period": "week"})
    assert period.status_code == 422
    assert project.cli("voc", "--period", "week", code=2)


def _documented_names(model: type[BaseModel], seen: set[str]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for inner in _models(field.annotation):
            if inner.__name__ not in seen:
                seen.add(inner.__name__)
                names |= _documented_names(inner, seen)
    return names


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [inner for arg in getattr(annotation, "__args__", ()) for inner in _models(arg)]


def _section(title: str) -> str:
    text = METRICS.read_text(encoding="utf-8")
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"docs/metrics.md has no ## {title} section"
    return match.group(1)


@pytest.mark.parametrize(
    ("title", "model", "switches"),
    [
        (
            "Voice of the customer",
            Voc,
            {"--start", "--end", "--by", "--period", "--ces-direction", "--comments"},
        ),
        (
            "Divergence alert",
            Divergence,
            {
                "--end",
                "--periods",
                "--period",
                "--nps-min-rise",
                "--csat-min-rise",
                "--nrr-max-change",
                "--alpha",
            },
        ),
    ],
)
def test_every_metric_and_switch_is_documented(
    title: str, model: type[BaseModel], switches: set[str]
) -> None:
    section = _section(title)
    names = _documented_names(model, set())
    assert {
        "nps",
        "easy_share",
        "people_response_rate",
    } <= names or title != "Voice of the customer"
    missing = sorted(name for name in names | switches if f"`{name}`" not in section)
    assert not missing, f"not documented in docs/metrics.md ## {title}: {missing}"
