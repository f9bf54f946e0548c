"""The command line and the data: warnings about names the data lacks and about stale data,
`explain` as of now, `report` without a job, and `import --help`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app

ACCOUNTS = """\
account_id,name,created_at,segment
a1,Acme,2024-05-01T00:00:00Z,Enterprise
a2,Globex,2024-05-02T00:00:00Z,mid_market
"""
EVENTS = """\
event_id,account_id,name,timestamp
e1,a1,Integration Connected,2024-05-03T00:00:00Z
e2,a2,login,2024-05-04T00:00:00Z
"""
NO_EVENT = (
    'no event named "integration_connected" in the warehouse (did you mean "Integration '
    'Connected"?)'
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(
        env={
            "CLOSELOOP_WAREHOUSE_URL": None,
            "CLOSELOOP_STATE_URL": None,
            "CLOSELOOP_PROJECT": None,
            "COLUMNS": "400",
        }
    )


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "acme"
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    monkeypatch.chdir(folder)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "events.csv").write_text(EVENTS)
    for table in ("accounts", "events"):
        assert runner.invoke(app, ["import", table, f"{table}.csv"]).exit_code == 0
    return folder


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_validate_warns_at_the_misnamed_event_and_value(runner: CliRunner, project: Path) -> None:
    output = _ok(runner, "validate")
    jobs = (project / "jobs.yaml").read_text().splitlines()
    goal = next(n for n, line in enumerate(jobs, 1) if line.lstrip().startswith("goal:"))
    column = jobs[goal - 1].index('"integration_connected"') + 1
    assert f"{project / 'jobs.yaml'}:{goal}:{column}: warning: {NO_EVENT}" in output
    cohorts = (project / "cohorts.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(cohorts, 1) if 'segment = "enterprise"' in text)
    column = cohorts[line - 1].index('"enterprise"') + 1
    assert (
        f"{project / 'cohorts.yaml'}:{line}:{column}: warning: no account has segment "
        '"enterprise" (did you mean "Enterprise"?)'
    ) in output
    assert 'hint: values are compared exactly: write "Enterprise", or ignore case with ' in output
    assert "warning: cohort 'Enterprise' matches nobody now" in output
    assert output.splitlines()[-1].startswith("ok: ")


def test_explain_defaults_to_now_and_warns(runner: CliRunner, project: Path) -> None:
    today = datetime.now(UTC)
    output = _ok(runner, "explain", 'count(event "integration_connected") >= 1')
    assert f"0 account(s) match the expression as of {today:%Y-%m-%d}" in output
    assert f"warning: {NO_EVENT}" in output
    assert "warning: the newest event is from 2024-05-04 00:00 UTC, " in output
    assert "the data looks stale; import recent events" in output

    payload = json.loads(
        _ok(
            runner,
            *("explain", 'lower(segment) = "enterprise"', "--at", "2024-05-05"),
            *("--format", "json"),
        )
    )
    assert payload["count"] == 1 and payload["sample"][0]["account_id"] == "a1"
    assert len(payload["warnings"]) == 1 and "data looks stale" in payload["warnings"][0]
    wrong_case = runner.invoke(app, ["explain", 'lower(segment) = "Enterprise"'])
    assert wrong_case.exit_code == 1
    assert "1:18: error: lower(segment) has no capitals, so it never matches 'Enterprise'" in (
        wrong_case.output
    )


def test_commands_with_a_time_warn_when_the_data_does_not_reach_it(
    runner: CliRunner, project: Path
) -> None:
    ahead = _ok(runner, "stage", "Onboarding", "--at", "2024-06-01")
    assert (
        "warning: --at 2024-06-01 00:00 is 28 days after the newest event (2024-05-04 00:00): "
        "the data may not reach that time; import newer events or pick an earlier --at"
    ) in ahead
    within = _ok(runner, "cohort", "Enterprise", "--at", "2024-05-04T12:00")
    assert "after the newest event" not in within
    future = _ok(runner, "tick", "--at", "2031-01-01", "--no-send")
    assert "warning: --at 2031-01-01 00:00 is in the future (now: " in future
    assert "warning: the newest event is from 2024-05-04 00:00 UTC" in future


def test_report_without_a_job_lists_the_jobs(runner: CliRunner, project: Path) -> None:
    drafts = _ok(runner, "report")
    assert "Integration nudge" in drafts and "draft" in drafts
    assert "report on one: closeloop report JOB" in drafts
    _ok(runner, "tick", "--launch", "--at", "2024-05-04T12:00", "--no-send")
    listed = json.loads(_ok(runner, "report", "--format", "json"))
    assert listed["count"] == 1
    job = listed["jobs"][0]
    assert (job["name"], job["status"], job["enrolled"]) == ("Integration nudge", "live", 2)
    assert job["launched_at"].startswith("2024-05-04T12:00")
    table = _ok(runner, "report")
    assert "2024-05-04 12:00" in table and "live" in table

    measured = json.loads(
        _ok(runner, "report", "Integration nudge", "--as-of", "2024-06-01", "--format", "json")
    )
    assert (
        "--as-of 2024-06-01 00:00 is 28 days after the newest event (2024-05-04 00:00): the data "
        "may not reach that time; import newer events or pick an earlier --as-of"
    ) in measured["warnings"]


def test_import_help_lists_all_eight_tables(runner: CliRunner) -> None:
    output = _ok(runner, "import", "--help")
    for table in (
        "accounts",
        "people",
        "events",
        "subscriptions",
        "survey_responses",
        "activities",
        "opportunities",
        "churn_reasons",
    ):
        assert table in output, table


def test_measure_says_the_goal_event_never_occurs(runner: CliRunner, tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    units.write_text(
        "unit_id,arm,entered_at\n"
        + "".join(f"u{i},{'holdout' if i % 2 else 'email'},2024-05-01\n" for i in range(10))
    )
    events = tmp_path / "events.csv"
    events.write_text("unit_id,name,timestamp\nu0,Integration Connected,2024-05-02\n")
    output = _ok(
        runner,
        *("measure", "--units", str(units), "--events", str(events)),
        *("--goal", "integration_connected", "--control", "holdout", "--horizon", "14d"),
    )
    # Long lines wrap at the console's width; compare the words.
    assert (
        f'⚠ no event named "integration_connected" in {events} (did you mean "Integration '
        'Connected"?)'
    ) in " ".join(output.split())
