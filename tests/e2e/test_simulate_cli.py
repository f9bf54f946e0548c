"""`closeloop simulate` end to end: a tiny company streamed into a fresh project's warehouse.

Commands run in-process through Typer's runner. Each test runs on the embedded DuckDB file and, when
``CLOSELOOP_TEST_POSTGRES_URL`` is set, on a fresh PostgreSQL database named by
``CLOSELOOP_WAREHOUSE_URL`` (the ``backends`` fixture).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from closeloop.cli.main import app
from closeloop.data.warehouse import Warehouse
from closeloop.simulate import SCENARIOS, CompanySimulator, scenario
from support import Backends

ARGUMENTS = ["--accounts", "60", "--days", "20", "--seed", "11"]
CONFIG = scenario("default", n_accounts=60, days=20, arrival_days=20, seed=11)


@pytest.fixture
def runner(backends: Backends) -> CliRunner:
    return CliRunner(
        env={**backends.environ(), "CLOSELOOP_PROJECT": None, "COLUMNS": "200"},
    )


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path) -> Path:
    folder = tmp_path / "simulated"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


@dataclass(frozen=True)
class Expected:
    """What a second simulator with the same config made: rows per table and its ground truth."""

    rows: dict[str, int]
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def expected() -> Expected:
    simulator = CompanySimulator(CONFIG)
    rows: Counter[str] = Counter()
    for day in CONFIG.dates():
        for name, table in simulator.step(day).tables().items():
            rows[name] += table.num_rows
    # The file holds the truth as JSON (dates as text), so compare it as it round-trips.
    truth = json.loads(json.dumps(simulator.ground_truth(), default=str))
    return Expected(dict(rows), truth)


def _simulate(runner: CliRunner, project: Path, *extra: str) -> Result:
    return runner.invoke(app, ["simulate", "--project", str(project), *ARGUMENTS, *extra])


def _warehouse_rows(backends: Backends, names: list[str]) -> dict[str, int]:
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        return {name: int(warehouse.table(name).count().execute()) for name in names}


def test_simulate_loads_every_row_the_simulator_made(
    runner: CliRunner, project: Path, backends: Backends, expected: Expected
) -> None:
    result = _simulate(runner, project)

    assert result.exit_code == 0, result.output
    expected_rows = expected.rows
    assert _warehouse_rows(backends, list(expected_rows)) == expected_rows
    assert expected_rows["accounts"] == 60
    events = expected_rows["events"]
    assert f"{events:,} events in " in result.output
    for name, rows in expected_rows.items():
        assert f"{name} " in result.output and f"{rows:,} rows" in result.output
    truth = json.loads((project / "simulation.json").read_text(encoding="utf-8"))
    assert truth == expected.truth


def test_a_second_run_is_refused_unless_forced(
    runner: CliRunner, project: Path, backends: Backends, expected: Expected
) -> None:
    expected_rows = expected.rows
    assert _simulate(runner, project).exit_code == 0

    refused = _simulate(runner, project)
    assert refused.exit_code == 1
    assert "already has 60 accounts" in refused.output
    assert "--force" in refused.output
    assert _warehouse_rows(backends, list(expected_rows)) == expected_rows

    forced = _simulate(runner, project, "--force")
    assert forced.exit_code == 0, forced.output
    doubled = {name: 2 * rows for name, rows in expected_rows.items()}
    assert _warehouse_rows(backends, list(expected_rows)) == doubled


def test_an_unknown_scenario_is_a_user_error(runner: CliRunner, project: Path) -> None:
    result = _simulate(runner, project, "--scenario", "utopia")

    assert result.exit_code == 1
    assert "unknown scenario 'utopia'; known scenarios:" in result.output
    assert not (project / "simulation.json").exists()


def test_the_help_lists_every_scenario(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "--help"])

    assert result.exit_code == 0
    for name in SCENARIOS:
        assert name in result.output


def test_run_jobs_ticks_the_projects_job_and_prints_its_true_effects(
    runner: CliRunner, project: Path, backends: Backends
) -> None:
    """`closeloop init`'s job (no variants) runs with the company; its truth is shown and stored."""
    result = runner.invoke(
        app,
        [
            *("simulate", "--project", str(project), "--accounts", "150", "--days", "45"),
            *("--arrival-days", "12", "--seed", "3", "--run-jobs"),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "Integration nudge:" in result.output
    assert "matured enrollments; true effect on completion within 30 days" in result.output
    for segment in ("enterprise", "mid_market", "self_serve", "all"):
        assert f"treatment    {segment}" in result.output
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        stored = warehouse.table("closeloop_ground_truth").to_pyarrow().to_pylist()
    assert {row["segment"] for row in stored} == {"enterprise", "mid_market", "self_serve", "all"}
    (overall,) = [row for row in stored if row["segment"] == "all"]
    assert 0 < overall["n"] <= 150
    assert f"Integration nudge: {overall['n']:,} matured enrollments" in result.output
    assert overall["effect"] == overall["completion_if_treated"] - overall["completion_if_control"]
    truth = json.loads((project / "simulation.json").read_text(encoding="utf-8"))
    assert truth["messages_sent"] == truth["deliveries"]["email"] > 0
