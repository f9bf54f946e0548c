"""`closeloop validate` on a project with five seeded mistakes: every one, at its exact place.

The files are written by the test so each mistake's line and column are known; the command runs
through Typer's runner (the installed script's code path).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app

CONFIG = """\
name: five mistakes
jobs:
  - jobs.yaml
cohorts:
  - cohorts.yaml
"""

# Line numbers below are 1-based lines of these texts.
JOBS = """\
jobs:
  - name: Typo in audience
    audience: |
      signup_date within last 14 days
        and count(event "integration_connected") = 0
        and plna = "pro"
    goal: count(event "integration_connected") >= 1
    duration_days: 30
    hypothesis:
      expected_effect: more integrations
  - name: Holdout too big
    audience: signup_date within last 14 days
    goal: count(event "integration_connected") >= 1
    duration_days: 30
    holdout: 0.7
  - name: Missing template
    audience: signup_date within last 14 days
    goal: count(event "integration_connected") >= 1
    duration_days: 30
    steps:
      - send: email
        subject: Hello
        template: no_such_template
    hypothesis:
      expected_effect: more integrations
  - name: No hypothesis
    audience: signup_date within last 14 days
    goal: count(event "integration_connected") >= 1
    duration_days: 30
"""

COHORTS = """\
cohorts:
  - name: Big accounts
    criteria: arr >= 10000 and in cohort "Strategic"
  - name: Pro accounts
    criteria: plan = "pro"
    colour: blue
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(
        env={
            "CLOSELOOP_WAREHOUSE_URL": None,
            "CLOSELOOP_STATE_URL": None,
            "CLOSELOOP_PROJECT": None,
            "COLUMNS": "200",
        }
    )


def _write(folder: Path, jobs: str = JOBS, cohorts: str = COHORTS) -> Path:
    folder.mkdir()
    (folder / "closeloop.yaml").write_text(CONFIG)
    (folder / "jobs.yaml").write_text(jobs)
    (folder / "cohorts.yaml").write_text(cohorts)
    (folder / "templates").mkdir()
    return folder


def test_validate_reports_all_five_mistakes_at_their_place(
    runner: CliRunner, tmp_path: Path
) -> None:
    project = _write(tmp_path / "broken")
    result = runner.invoke(app, ["validate", "--project", str(project)])
    output = result.output
    assert result.exit_code == 1, output
    jobs, cohorts = project / "jobs.yaml", project / "cohorts.yaml"
    expected = [
        # an unknown attribute on the third line of a block scalar: the line of the file
        f"{jobs}:6:13: error: unknown attribute 'plna'",
        f"{jobs}:15:14: error: jobs.1.holdout: holdout must be between 0.05 and 0.5 (got 0.7)",
        f"{jobs}:23:19: error: email template 'no_such_template' not found",
        f"{cohorts}:3:32: error: unknown cohort 'Strategic'",
        f"{cohorts}:6:5: error: cohorts.1.colour: unknown field 'colour'",
    ]
    lines = output.splitlines()
    for line in expected:
        assert any(printed.startswith(line) for printed in lines), f"{line!r} not in\n{output}"
    # Caret under the column and a hint that names the fix.
    at = lines.index(next(p for p in lines if p.startswith(expected[0])))
    assert lines[at + 1] == '            and plna = "pro"'
    assert lines[at + 2] == "    " + " " * 12 + "^"
    assert lines[at + 3] == "    hint: did you mean 'plan'?"
    assert "set `observational: true`" in output
    assert f"{jobs}:26:" in output and "warning: job 'No hypothesis' has no hypothesis" in output
    assert lines[-1] == "6 problem(s) found: 5 error(s), 1 warning(s)"


def test_warnings_alone_exit_zero(runner: CliRunner, tmp_path: Path) -> None:
    valid_jobs = JOBS.split("  - name: Typo in audience")[0] + JOBS.split("\n", 25)[-1]
    project = _write(tmp_path / "warned", jobs=valid_jobs, cohorts="cohorts: []\n")
    result = runner.invoke(app, ["validate", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "warning: job 'No hypothesis' has no hypothesis" in result.output
    assert "no hypothesis" in result.output
    assert result.output.splitlines()[-1].endswith("1 problem(s) found: 0 error(s), 1 warning(s)")
