"""``closeloop churn review`` and ``GET /api/churn/review`` on a simulated company whose job ran in
lockstep and whose health was snapshotted: the CLI's ``--format json``, the API's response and the
service's model are the same JSON; csv is one row per churn; the table is grouped by reason; bad
input is a clear error with no traceback. docs/churn-review.md documents every field.
"""

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

from closeloop.cli.churn import CSV_FIELDS
from closeloop.cli.main import app
from closeloop.schemas import dump_json
from closeloop.schemas.churn_review import ChurnedAccount, ChurnReview, ReasonGroup
from closeloop.services import health
from closeloop.services.churn_review import churn_review
from closeloop.services.project import open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import VARIANT_JOB, embedded_backends, project_with_jobs

DOC = Path(__file__).resolve().parents[2] / "docs" / "churn-review.md"


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]
    start: datetime
    end: datetime
    api: Api

    def cli(self, *args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(
            app, ["churn", "review", *args, "--project", str(self.folder)], env=self.environ
        )
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return json.loads(result.stdout) if "json" in args else result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("churn")
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
        for week in range(0, (end - start).days, 7):  # weekly health snapshots
            health.snapshot(workspace, start + timedelta(days=week))
    with api_for(folder, environ) as api:
        yield Project(folder, environ, start, end, api)


def test_cli_json_is_the_api_response_and_the_model(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ) as workspace:
        model = churn_review(workspace, project.start, project.end)
    start, end = project.start.isoformat(), project.end.isoformat()
    cli = project.cli("--start", start, "--end", end, "--format", "json")
    response = project.api.get("/api/churn/review", params={"start": start, "end": end})
    assert response.status_code == 200, response.text
    expected = json.loads(dump_json(model))
    assert cli == expected
    assert response.json() == expected
    # The simulated company has something in every part of the review.
    accounts = [account for group in model.groups for account in group.accounts]
    assert model.churns == len(accounts) > 0 and len(model.groups) >= 2
    assert any(account.stalled_stage is not None for account in accounts)
    assert any(account.health for account in accounts)
    measured = [job for account in accounts for job in account.jobs if job.effect is not None]
    assert measured, "no churned account was in the measured job"
    assert model.mrr_lost == pytest.approx(sum(group.mrr_lost for group in model.groups))
    assert [group.churns for group in model.groups] == sorted(
        (group.churns for group in model.groups), reverse=True
    )


def test_csv_is_one_row_per_churn_and_the_table_is_grouped_by_reason(project: Project) -> None:
    start, end = project.start.isoformat(), project.end.isoformat()
    model = ChurnReview.model_validate(
        project.cli("--start", start, "--end", end, "--format", "json")
    )
    text = project.cli("--start", start, "--end", end, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",") == list(CSV_FIELDS)
    churned = [account for group in model.groups for account in group.accounts]
    assert [row["churn_id"] for row in rows] == [account.churn_id for account in churned]
    table = project.cli("--start", start, "--end", end)
    assert f"Churn review {project.start:%Y-%m-%d}" in table
    for group in model.groups:
        assert group.reason in table
    assert "Traceback" not in table
    empty = project.cli("--start", "2000-01-01", "--end", "2000-02-01", "--format", "json")
    assert (empty["churns"], empty["groups"]) == (0, [])


def test_bad_windows_are_clear_errors(project: Project) -> None:
    start, end = project.start.isoformat(), project.end.isoformat()
    backwards = project.api.get("/api/churn/review", params={"start": end, "end": start})
    assert backwards.status_code == 422
    assert "is not before end" in backwards.json()["error"]["message"]
    output = project.cli("--start", end, "--end", start, code=1)
    assert "is not before end" in output and "Traceback" not in output
    zero = project.api.get("/api/churn/review", params={"start": start, "end": end, "lookback": 0})
    assert zero.status_code == 422
    output = project.cli("--start", "2024-13-01", "--end", end, code=2)
    assert "not an ISO date" in output


def test_every_field_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = {*ChurnedAccount.model_fields, *ReasonGroup.model_fields}
    identity = {"churn_id", "account_id", "name", "owner", "segment", "churned_at", "accounts"}
    missing = sorted(name for name in names - identity if f"`{name}`" not in text)
    assert not missing, f"not documented in docs/churn-review.md: {missing}"
