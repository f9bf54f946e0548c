"""`closeloop quarantine list|export|purge` end to end: bad rows imported, listed in three
formats, exported to files that import again once fixed, and purged."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app

ACCOUNTS = """\
account_id,name,created_at,segment
a1,Acme,2024-05-01T00:00:00Z,smb
b1,Bad One,not a date,smb
b2,"Bad, Two",2024-13-45,smb
"""
EVENTS = """\
event_id,account_id,name,timestamp
e1,a1,login,2024-05-02T00:00:00Z
x1,zz,login,2024-05-02T00:00:00Z
x2,a1,login,"2024-05-02
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


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "acme"
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    monkeypatch.chdir(folder)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    (folder / "events.csv").write_text(EVENTS)
    for table in ("accounts", "events"):
        imported = runner.invoke(app, ["import", table, f"{table}.csv"])
        assert imported.exit_code == 0, imported.output
        assert "2 quarantined" in imported.output
    return folder


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list_in_three_formats(runner: CliRunner, project: Path) -> None:
    table = _ok(runner, "quarantine", "list")
    assert "4 quarantined row(s): accounts 2, events 2" in table
    for text in ("accounts.csv", "events.csv", "created_at", "not a date", "unknown account_id zz"):
        assert text in table, text
    assert "a stray" in table and "quote?" in table
    assert "closeloop quarantine export" in table

    rows = list(csv.DictReader(io.StringIO(_ok(runner, "quarantine", "list", "--format", "csv"))))
    assert [(r["table"], r["row"], r["column"]) for r in rows] == [
        ("accounts", "2", "created_at"),
        ("accounts", "3", "created_at"),
        ("events", "2", "account_id"),
        ("events", "3", ""),
    ]
    assert rows[0]["file"] == str(project / "accounts.csv")
    assert json.loads(rows[0]["raw"]) == {
        "account_id": "b1",
        "name": "Bad One",
        "created_at": "not a date",
        "segment": "smb",
    }
    assert rows[3]["raw"] == 'x2,a1,login,"2024-05-02'

    listed = json.loads(_ok(runner, "quarantine", "list", "--table", "events", "--format", "json"))
    assert (listed["table"], listed["total"], listed["shown"]) == ("events", 2, 2)
    assert listed["by_table"] == {"events": 2}
    assert listed["rows"][0]["values"]["account_id"] == "zz"
    assert listed["rows"][1]["values"] is None

    limited = _ok(runner, "quarantine", "list", "--table", "events", "--limit", "1")
    assert "showing 1 of 2; --limit 0 lists them all" in limited


def test_export_fix_reimport_purge(runner: CliRunner, project: Path) -> None:
    exported = _ok(runner, "quarantine", "export", "--to", "fix")
    assert (
        "wrote 2 row(s) of accounts to fix/accounts.csv; once fixed: closeloop import accounts "
        "fix/accounts.csv"
    ) in exported
    assert "wrote 1 row(s) of events to fix/events.csv" in exported
    assert "wrote 1 unreadable line(s) of events to fix/events.unreadable.txt" in exported
    before = re.search(r"closeloop quarantine purge --before (\S+)", exported)
    assert before is not None
    assert (project / "fix" / "events.csv").read_text() == (
        "event_id,account_id,name,timestamp\nx1,zz,login,2024-05-02T00:00:00Z\n"
    )
    assert (project / "fix" / "events.unreadable.txt").read_text() == 'x2,a1,login,"2024-05-02\n'

    again = runner.invoke(app, ["quarantine", "export", "--to", "fix"])
    assert again.exit_code == 1
    assert "already exist(s); pass --force to overwrite" in again.output
    assert "Traceback" not in again.output
    jsonl = json.loads(
        _ok(
            runner,
            *("quarantine", "export", "--to", "fix2", "--table", "accounts"),
            *("--file-format", "jsonl", "--format", "json"),
        )
    )
    assert jsonl["files"] == [
        {"table": "accounts", "path": "fix2/accounts.jsonl", "rows": 2, "readable": True}
    ]
    lines = (project / "fix2" / "accounts.jsonl").read_text().splitlines()
    assert [json.loads(line)["account_id"] for line in lines] == ["b1", "b2"]

    fixed = (project / "fix" / "accounts.csv").read_text()
    fixed = fixed.replace("not a date", "2024-05-03").replace("2024-13-45", "2024-05-04")
    (project / "fix" / "accounts.csv").write_text(fixed)
    reimported = _ok(runner, "import", "accounts", "fix/accounts.csv")
    assert "2 read" in reimported and "0 quarantined" in reimported

    refused = runner.invoke(app, ["quarantine", "purge"])
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "error: purge deletes all 4 quarantined row(s) for good; pass --yes to confirm, or "
        "--before DATE to delete only rows quarantined before DATE [configuration_error]"
    )
    purged = json.loads(
        _ok(runner, "quarantine", "purge", "--before", before.group(1), "--format", "json")
    )
    assert (purged["purged"], purged["remaining"]) == (4, 0)
    assert _ok(runner, "quarantine", "list") == "no quarantined rows\n"


def test_purge_one_table_with_yes(runner: CliRunner, project: Path) -> None:
    purged = _ok(runner, "quarantine", "purge", "--table", "events", "--yes")
    assert purged.strip() == "purged 2 quarantined row(s) of events; 0 remain"
    rows = list(csv.reader(io.StringIO(_ok(runner, "quarantine", "list", "--format", "csv"))))
    assert [row[0] for row in rows] == ["table", "accounts", "accounts"]
    summary = _ok(runner, "quarantine", "purge", "--yes", "--format", "csv")
    assert summary.splitlines() == ["table,before,purged,remaining", ",,2,0"]


def test_mistakes_are_one_line(runner: CliRunner, project: Path) -> None:
    unknown = runner.invoke(app, ["quarantine", "list", "--table", "acounts"])
    assert unknown.exit_code == 1
    assert unknown.output.startswith("error: --table 'acounts' is not a canonical table; tables: ")
    assert "churn_reasons" in unknown.output
    bad_time = runner.invoke(app, ["quarantine", "purge", "--before", "yesterday"])
    assert bad_time.exit_code == 2
    assert "'yesterday' is not an ISO date" in bad_time.output
    group = runner.invoke(app, ["quarantine"])
    for command in ("list", "export", "purge"):
        assert command in group.output


def test_the_api_lists_and_purges_the_same_quarantine(runner: CliRunner, project: Path) -> None:
    """CLI `quarantine list --format json` = GET /api/quarantine = the service's model; the API
    purges as the CLI does (every row needs confirm; a viewer may not purge)."""
    from api_support import api_for

    from closeloop.schemas.data import QuarantineListing
    from closeloop.services import data as data_service
    from closeloop.services.project import open_workspace

    cli = QuarantineListing.model_validate_json(
        _ok(runner, "quarantine", "list", "--format", "json", "--limit", "3")
    )
    with open_workspace(project, write=False) as workspace:
        model = data_service.quarantine_list(workspace, limit=3)
    with api_for(project) as api:
        served = api.get("/api/quarantine?limit=3")
        assert served.status_code == 200, served.json()
        assert QuarantineListing.model_validate(served.json()) == cli == model
        assert served.json() == json.loads(cli.model_dump_json())
        assert cli.total == 4 and cli.shown == 3
        assert cli.by_table == {"accounts": 2, "events": 2}
        second = api.get("/api/quarantine?limit=3&offset=3&table=events").json()
        assert second["total"] == 2 and second["shown"] == 0

        unknown = api.get("/api/quarantine?table=nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert (
            api.client.delete("/api/quarantine", headers=api.headers("viewer")).status_code == 403
        )
        refused = api.client.delete("/api/quarantine", headers=api.headers("editor"))
        assert refused.status_code == 422
        assert "pass --yes to confirm" in refused.json()["error"]["message"]
        purged = api.client.delete(
            "/api/quarantine?table=events&confirm=true", headers=api.headers("editor")
        )
        assert purged.json() == {"table": "events", "before": None, "purged": 2, "remaining": 0}
