"""``closeloop outcomes adoption``: the CLI's ``--format json``, ``GET /api/outcomes/adoption``
and the service's model are the same JSON on a simulated company (DuckDB and SQLite files); csv
prints the per-account table; bad options exit 1 / answer 422 with the reason and no traceback."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, api_for
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.services import outcomes_adoption as service
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import embedded_backends

FEATURES = ("integration_connected", "teammate_invited", "support_ticket_created")
VALUE_EVENT = "first_project_created"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    start: datetime
    end: datetime
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["outcomes", "adoption", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("adoption")
    folder = root / "project"
    init_project(folder, "adoption")
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=120, days=150, seed=3)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config)
        events = workspace.warehouse.table("events")
        latest = events.timestamp.max().to_pyarrow().as_py()
    end = datetime(latest.year, latest.month, latest.day) + timedelta(days=1)
    with api_for(folder, environ) as api:
        yield Project(folder, environ, end - timedelta(days=45), end, api)


def test_cli_json_equals_api_equals_the_model(project: Project) -> None:
    start, end = project.start.isoformat(), project.end.isoformat()
    with open_workspace(project.folder, write=False, environ=project.environ) as workspace:
        model = service.adoption(
            workspace,
            project.start,
            project.end,
            by="segment",
            period="month",
            features=FEATURES,
            value_event=VALUE_EVENT,
        )
    expected = json.loads(dump_json(model))
    features = [arg for feature in FEATURES for arg in ("--feature", feature)]
    cli = project.cli(
        "--start", start, "--end", end, "--by", "segment", "--period", "month",
        *features, "--value-event", VALUE_EVENT, "--format", "json",
    )  # fmt: skip
    response = project.api.get(
        "/api/outcomes/adoption",
        params={
            "start": start,
            "end": end,
            "by": "segment",
            "period": "month",
            "feature": list(FEATURES),
            "value_event": VALUE_EVENT,
        },
    )
    assert response.status_code == 200, response.text
    assert json.loads(cli.stdout) == expected
    assert response.json() == expected
    # The simulated company is used: accounts are active, some adopt, first value is reached.
    assert model.overall.active_accounts > 0 and model.segments and len(model.periods) >= 2
    assert any(f.adopted_accounts > 0 for f in model.feature_adoption)
    assert model.time_to_value is not None
    assert model.time_to_value.cohorts[-1].reached_value > 0

    rows = list(csv.DictReader(io.StringIO(project.cli("--start", start, "--end", end,
                                                       "--format", "csv").stdout)))  # fmt: skip
    assert [row["account_id"] for row in rows] == [a.account_id for a in model.accounts]
    table = project.cli("--start", start, "--end", end, "--value-event", VALUE_EVENT).stdout
    assert "active accounts" in table and "feature adoption" in table
    assert "time to first value" in table


def test_bad_options_are_clear_errors(project: Project) -> None:
    unknown = project.cli("--at", "2024-06-01", "--by", "sgement", code=1)
    assert (
        "cannot group by 'sgement'" in unknown.output and "[configuration_error]" in unknown.output
    )
    assert "Traceback" not in unknown.output
    reversed_dates = project.cli("--start", "2024-06-01", "--end", "2024-05-01", code=1)
    assert "must be before --end" in reversed_dates.output
    bad_date = project.cli("--at", "June 1st", code=2)
    assert "not an ISO date" in bad_date.output

    response = project.api.get("/api/outcomes/adoption", params={"by": "sgement"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "configuration_error"
    assert "cannot group by 'sgement'" in response.json()["error"]["message"]
    bad_threshold = project.api.get("/api/outcomes/adoption", params={"drop_threshold": 2})
    assert bad_threshold.status_code == 422
    assert "must be in (0, 1]" in bad_threshold.json()["error"]["message"]
    bad_time = project.api.get("/api/outcomes/adoption", params={"start": "yesterday"})
    assert bad_time.status_code == 422
    assert bad_time.json()["error"]["code"] == "invalid_request"
    assert project.api.client.get("/api/outcomes/adoption").status_code == 401
