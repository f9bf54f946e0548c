"""explain, cohort and stage on the example dataset (docs/expressions.md), DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.definitions.expressions import Entity
from closeloop.errors import ExpressionError
from closeloop.services import definitions, journey
from closeloop.services.project import init_project, open_workspace
from support import EXAMPLE_AS_OF, Backends, load_example_dataset

COHORTS = """\
cohorts:
  - name: Paying
    criteria: plan in ("pro", "enterprise")
"""

STAGES = """\
stages:
  - name: Onboarding
    entry: signup_date within last 30 days
    entered_at: signup_date
    exit:
      after_days: 30
    objectives:
      - name: First integration
        completion: count(event "integration_connected") >= 1
    markers:
      - name: Logged in
        criteria: count(event "login") >= 1
"""


def _project(folder: Path) -> Path:
    init_project(folder, "views")
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "cohorts: [cohorts.yaml]\nstages: [stages.yaml]\n")
    (folder / "cohorts.yaml").write_text(COHORTS)
    (folder / "stages.yaml").write_text(STAGES)
    return folder


def test_explain_cohort_and_stage_count_in_the_warehouse(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_example_dataset(workspace.warehouse)
        matches = definitions.explain(
            workspace, 'segment = "self_serve" or plan = "pro"', EXAMPLE_AS_OF, sample=2
        )
        paying = definitions.cohort(workspace, "Paying", EXAMPLE_AS_OF)
        onboarding = journey.stage_view(workspace, "Onboarding", EXAMPLE_AS_OF)
        with pytest.raises(ExpressionError) as error:
            definitions.explain(workspace, "plna = 1", EXAMPLE_AS_OF, Entity.ACCOUNT)
    # a5 signs up after the as-of time, so only a1, a3 (and a4, self_serve) match.
    assert matches.count == 3
    assert matches.sample == [
        {"account_id": "a1", "name": "Acme Robotics", "segment": "self_serve", "plan": "starter"},
        {"account_id": "a3", "name": 'Initech "Labs"', "segment": "mid_market", "plan": "pro"},
    ]
    assert "SELECT" in matches.sql and "'pro'" in matches.sql
    assert paying.count == 2
    assert [row["account_id"] for row in paying.sample] == ["a2", "a3"]
    assert error.value.location is not None and error.value.location.column == 1
    # a1 and a3 signed up within 30 days of June 1; a1 connected an integration, a3 only later.
    assert (onboarding.entered, onboarding.in_stage) == (2, 2)
    assert [(o.name, o.count) for o in onboarding.objectives] == [("First integration", 1)]
    assert [(m.name, m.count) for m in onboarding.markers] == [("Logged in", 2)]


def test_explain_command_prints_count_sample_and_sql(tmp_path: Path) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ={}) as workspace:
        load_example_dataset(workspace.warehouse)
    runner = CliRunner(env={"CLOSELOOP_WAREHOUSE_URL": None, "CLOSELOOP_STATE_URL": None})
    result = runner.invoke(
        app, ["explain", 'plan = "pro"', "--at", "2024-06-01", "--project", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert "1 account(s) match" in result.output
    assert "Initech" in result.output
    assert "SELECT" in result.output
    bad = runner.invoke(app, ["explain", "plna = 1", "--at", "2024-06-01", "-p", str(folder)])
    assert bad.exit_code == 1
    assert "1:1: error: unknown attribute 'plna'" in bad.output
    assert "\n    ^" in bad.output
