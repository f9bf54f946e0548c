"""The command line end to end: init, validate, import, tick, backfill, report — on real files.

Commands run in-process through Typer's runner (the same code path as the installed script);
mail goes to an SMTP server on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.services.smtp_sink import SmtpSink

DAY0 = datetime(2024, 5, 1)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def runner(sink: SmtpSink) -> CliRunner:
    return CliRunner(
        env={
            "CLOSELOOP_SMTP_HOST": sink.host,
            "CLOSELOOP_SMTP_PORT": str(sink.port),
            "CLOSELOOP_WAREHOUSE_URL": None,
            "CLOSELOOP_STATE_URL": None,
            "CLOSELOOP_PROJECT": None,
            "COLUMNS": "200",  # rich wraps at 80 columns otherwise
        }
    )


def _write_data(folder: Path, accounts: int) -> None:
    created = (DAY0 - timedelta(days=2)).isoformat()
    lines = ["account_id,name,created_at,segment"]
    lines += [f"a{i},Company {i},{created},smb" for i in range(accounts)]
    lines.append("a-bad,Broken Inc,not a date,smb")
    (folder / "accounts.csv").write_text("\n".join(lines) + "\n")
    people = ["person_id,account_id,email,name"]
    people += [f"p{i},a{i},owner{i}@example.com,Owner {i}" for i in range(accounts)]
    (folder / "people.csv").write_text("\n".join(people) + "\n")
    connected = (DAY0 + timedelta(days=3)).isoformat()
    events = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "account_id": f"a{i}",
                "name": "integration_connected",
                "timestamp": connected,
            }
        )
        for i in range(0, accounts, 3)
    ]
    (folder / "events.jsonl").write_text("\n".join(events) + "\n")


def test_a_project_from_init_to_report(
    runner: CliRunner, sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "acme"
    result = runner.invoke(app, ["init", str(project), "--name", "Acme"])
    assert result.exit_code == 0, result.output
    assert (project / "closeloop.yaml").is_file()

    monkeypatch.chdir(project)  # every command finds the project from the current folder
    assert runner.invoke(app, ["validate"]).exit_code == 0

    _write_data(project, accounts=30)
    imported = runner.invoke(app, ["import", "accounts", "accounts.csv"])
    assert imported.exit_code == 0, imported.output
    assert "31 read" in imported.output
    assert "30 inserted" in imported.output
    assert "1 quarantined" in imported.output
    again = runner.invoke(app, ["import", "accounts", "accounts.csv"])
    assert "0 inserted, 0 updated, 30 unchanged" in again.output
    assert runner.invoke(app, ["import", "people", "people.csv"]).exit_code == 0

    ticked = runner.invoke(app, ["tick", "--launch", "--at", DAY0.isoformat()])
    assert ticked.exit_code == 0, ticked.output
    assert "Integration nudge @ 2024-05-01 00:00: 30 entered" in ticked.output
    # The first tick launches the job: closeloop says whether it can detect anything.
    assert "launch check: Integration nudge" in ticked.output
    sent = len(sink.messages)
    assert sent > 0
    assert f"outbox: {sent} sent" in ticked.output

    assert runner.invoke(app, ["import", "events", "events.jsonl"]).exit_code == 0
    backfilled = runner.invoke(
        app,
        [
            "backfill",
            "--from",
            (DAY0 + timedelta(days=1)).isoformat(),
            "--to",
            (DAY0 + timedelta(days=31)).isoformat(),
        ],
    )
    assert backfilled.exit_code == 0, backfilled.output
    assert "31 tick(s): 0 entered, 10 completed, 20 exited" in backfilled.output
    assert len(sink.messages) == sent  # nothing was sent twice

    as_json = runner.invoke(app, ["report", "Integration nudge", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    arms = report["arms"]
    assert sum(arm["entered"] for arm in arms.values()) == 30
    assert sum(arm["completed"] for arm in arms.values()) == 10
    assert report["srm"]["p_value"] is not None
    assert [h["days"] for h in report["revenue_value"]["horizons"]] == [90, 180]
    verdict = report["verdict"]
    assert verdict["decision"] in {"ship", "keep_running", "stop", "review"}
    assert [g["name"] for g in verdict["guardrails"]] == [
        "logo retention",
        "opt-outs",
        "deliveries",
    ]
    assert report["measurement"]["final_alpha"] == 0.025
    by_cohort = runner.invoke(
        app,
        [
            *("report", "Integration nudge", "--format", "json"),
            *("--segment-by", "plan", "--segment-by", "cohort:Enterprise"),
        ],
    )
    assert by_cohort.exit_code == 0, by_cohort.output
    columns = {row["column"] for row in json.loads(by_cohort.output)["measurement"]["segments"]}
    assert columns == {"plan", "cohort:Enterprise"}
    people = runner.invoke(app, ["report", "Integration nudge", "--segment-by", "cohort:Admins"])
    assert people.exit_code == 1
    assert "cohort of people" in people.output

    html, pdf = tmp_path / "report.html", tmp_path / "pdf" / "report.pdf"
    table = runner.invoke(
        app, ["report", "Integration nudge", "--html", str(html), "--pdf", str(pdf)]
    )
    assert table.exit_code == 0, table.output
    assert pdf.read_bytes().startswith(b"%PDF") and f"PDF report: {pdf}" in table.output
    assert "Lift in completion" in table.output
    assert (
        table.output.lstrip()
        .splitlines()[1]
        .startswith(  # the verdict comes first
            ("Ship it", "Keep running", "Stop", "Review before deciding")
        )
    )
    page = html.read_text()
    assert 'id="verdict"' in page and page.index('id="verdict"') < page.index("<h2>Arms</h2>")
    assert "<svg" in page
    assert "Integration nudge" in page


def test_validate_points_at_every_mistake(runner: CliRunner, tmp_path: Path) -> None:
    project = tmp_path / "broken"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    jobs = (project / "jobs.yaml").read_text()
    jobs = jobs.replace("signup_date within last 14 days", "sigup_date within last 14 days")
    jobs = jobs.replace("holdout: 0.2", "holdout: 0.9")
    (project / "jobs.yaml").write_text(jobs)
    result = runner.invoke(app, ["validate", "--project", str(project)])
    assert result.exit_code == 1
    output = result.output
    assert "2 problem(s) found" in output
    assert "jobs.yaml:" in output
    assert "sigup_date" in output
    assert "signup_date" in output  # the suggestion
    assert "holdout" in output


def test_commands_outside_a_project_say_what_to_do(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["tick"])
    assert result.exit_code == 1
    assert "closeloop init" in result.output


def test_a_bad_file_is_a_located_error(runner: CliRunner, tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    result = runner.invoke(
        app, ["import", "accounts", str(tmp_path / "missing.csv"), "--project", str(project)]
    )
    assert result.exit_code == 1
    assert "missing.csv" in result.output


def test_an_unreachable_state_store_is_one_line_without_the_password(
    runner: CliRunner, tmp_path: Path
) -> None:
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    # Port 9 (discard) has no PostgreSQL server: connecting fails at once.
    url = "postgresql://ada:s3cret-pw@127.0.0.1:9/cs"
    for command in (["migrate"], ["tick", "--launch"], ["jobs", "list"]):
        result = runner.invoke(
            app, [*command, "--project", str(project)], env={"CLOSELOOP_STATE_URL": url}
        )
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "s3cret-pw" not in result.output
        assert "error:" in result.output
