"""Definitions checked against the data, how current the data is, and the quarantine — on a real
warehouse (DuckDB file and PostgreSQL).

The project's YAML is written here, so the line and column of each warning are known: a warning
points at the event name inside ``count(event "…")`` or at the compared text.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from closeloop.data.warehouse import Warehouse
from closeloop.errors import ConfigurationError, DefinitionError, NotFoundError
from closeloop.services import data as data_service
from closeloop.services import definitions as definitions_service
from closeloop.services.data_checks import project_data_problems
from closeloop.services.measure import MeasureRequest, measure_files
from closeloop.services.project import load_definitions, open_workspace
from closeloop.settings import load_settings
from support import Backends

NOW = datetime(2024, 6, 10, 12)

CONFIG = "name: checks\njobs:\n  - jobs.yaml\n"
JOBS = """\
jobs:
  - name: Integration nudge
    audience: |
      signup_date within last 14 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 30
    hypothesis:
      expected_effect: more integrations
"""
COHORTS = """\
cohorts:
  - name: Enterprise
    criteria: segment = "enterprize"
  - name: Mid market
    criteria: lower(segment) = "mid market"
  - name: Churned
    criteria: count(event "account_churned") >= 1
  - name: Admins
    target: person
    criteria: role in ("admin", "ownr")
  - name: Shouting
    criteria: lower(segment) in ("enterprise", "smb")
"""
ATTRIBUTES = """\
attributes:
  - name: logins
    event: Login
    function: count
"""
ACCOUNTS = """\
account_id,name,created_at,segment
a1,Acme,2024-05-01T00:00:00Z,enterprise
a2,Globex,2024-05-02T00:00:00Z,Mid Market
a3,Initech,2024-05-03T00:00:00Z,ENTERPRISE
"""
PEOPLE = """\
person_id,account_id,email,role
p1,a1,ada@acme.test,admin
p2,a2,bob@globex.test,owner
"""
EVENTS = """\
event_id,account_id,name,timestamp
e1,a1,Integration Connected,2024-05-04T09:00:00Z
e2,a1,login,2024-05-05T09:00:00Z
e3,a2,login,2024-06-08T09:00:00Z
"""


def _project(folder: Path, backends: Backends, *, data: bool = True) -> Path:
    folder.mkdir()
    for name, text in (
        ("closeloop.yaml", CONFIG),
        ("jobs.yaml", JOBS),
        ("cohorts.yaml", COHORTS),
        ("attributes.yaml", ATTRIBUTES),
        ("accounts.csv", ACCOUNTS),
        ("people.csv", PEOPLE),
        ("events.csv", EVENTS),
    ):
        (folder / name).write_text(text, encoding="utf-8")
    if data:
        with open_workspace(folder, environ=backends.environ()) as workspace:
            for table in ("accounts", "people", "events"):
                result = data_service.import_table(workspace, table, folder / f"{table}.csv")
                assert result.quarantined == 0
    return folder


def _where(problem: DefinitionError) -> tuple[str, int, int]:
    assert problem.location is not None
    return (Path(problem.location.file or "").name, problem.location.line, problem.location.column)


def _column(text: str, line: int, needle: str) -> int:
    return text.splitlines()[line - 1].index(needle) + 1


def test_validate_warns_about_names_and_values_the_data_lacks(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project", backends)
    settings = load_settings(folder, backends.environ())
    problems = project_data_problems(settings, load_definitions(settings), now=NOW)
    found = {(_where(p), p.message): p for p in problems}
    assert all(problem.severity == "warning" for problem in problems)

    event = '"integration_connected"'
    meant = ' in the warehouse (did you mean "Integration Connected"?)'
    expected = {
        # The audience is a block scalar: its second line is line 5 of the file.
        (("jobs.yaml", 5, _column(JOBS, 5, event)), f"no event named {event}{meant}"),
        (("jobs.yaml", 6, _column(JOBS, 6, event)), f"no event named {event}{meant}"),
        (
            ("cohorts.yaml", 3, _column(COHORTS, 3, '"enterprize"')),
            'no account has segment "enterprize" (did you mean "enterprise"?)',
        ),
        (("cohorts.yaml", 3, 15), "cohort 'Enterprise' matches nobody now (2024-06-10 12:00 UTC)"),
        (
            ("cohorts.yaml", 7, _column(COHORTS, 7, '"account_churned"')),
            'no event named "account_churned" in the warehouse',
        ),
        (("cohorts.yaml", 7, 15), "cohort 'Churned' matches nobody now (2024-06-10 12:00 UTC)"),
        (
            ("cohorts.yaml", 10, _column(COHORTS, 10, '"ownr"')),
            'no person has role "ownr" (did you mean "owner"?)',
        ),
        (
            ("cohorts.yaml", 12, _column(COHORTS, 12, '"smb"')),
            'no account has segment "smb", in any case',
        ),
        (
            ("attributes.yaml", 3, 12),
            'attribute \'logins\': no event named "Login" in the warehouse (did you mean "login"?)',
        ),
    }
    assert set(found) == expected
    misspelt = found[
        (
            ("cohorts.yaml", 3, _column(COHORTS, 3, '"enterprize"')),
            'no account has segment "enterprize" (did you mean "enterprise"?)',
        )
    ]
    assert misspelt.hint == 'write "enterprise" if that is what is meant'
    assert misspelt.location is not None
    caret = " " * (_column(COHORTS, 3, '"enterprize"') - 1) + "^"
    assert misspelt.location.caret().endswith(caret)
    churned = found[
        (("cohorts.yaml", 7, 15), "cohort 'Churned' matches nobody now (2024-06-10 12:00 UTC)")
    ]
    assert churned.hint == "see what each condition matches with `closeloop explain`"
    # With the data a month old, the hint says when to look instead.
    month_on = project_data_problems(
        settings, load_definitions(settings), now=NOW + timedelta(days=30)
    )
    assert {p.hint for p in month_on if p.message.startswith("cohort 'Churned'")} == {
        "the newest event is from 2024-06-08; see who it matched then: closeloop cohort "
        '"Churned" --at 2024-06-08'
    }
    # The problems come in file order, as validate prints them.
    assert [_where(p) for p in problems] == sorted(_where(p) for p in problems)


def test_a_value_in_another_case_suggests_lower(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project", backends)
    (folder / "cohorts.yaml").write_text(
        'cohorts:\n  - name: Mid market\n    criteria: segment = "mid market"\n'
    )
    settings = load_settings(folder, backends.environ())
    (problem,) = [
        p
        for p in project_data_problems(settings, load_definitions(settings), now=NOW)
        if "has segment" in p.message
    ]
    assert problem.message == 'no account has segment "mid market" (did you mean "Mid Market"?)'
    assert problem.hint == (
        'values are compared exactly: write "Mid Market", or ignore case with lower(segment) '
        "and lower-case text"
    )
    assert _where(problem) == ("cohorts.yaml", 3, 25)


def test_validate_reports_the_data_warnings_after_the_definitions(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project", backends)
    validation = definitions_service.validate_project(load_settings(folder, backends.environ()))
    assert validation.errors == 0
    messages = [problem.message for problem in validation.problems]
    assert (
        messages.count(
            'no event named "integration_connected" in the warehouse (did you mean '
            '"Integration Connected"?)'
        )
        == 2
    )
    assert 'no account has segment "enterprize" (did you mean "enterprise"?)' in messages
    assert validation.warnings == len(messages) == 9


def test_no_data_no_data_warnings_and_no_warehouse_created(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "closeloop.yaml").write_text(CONFIG)
    (folder / "jobs.yaml").write_text(JOBS)
    (folder / "cohorts.yaml").write_text(COHORTS)
    settings = load_settings(folder, {})
    validation = definitions_service.validate_project(settings)
    assert validation.problems == []
    assert not (folder / "warehouse.duckdb").exists()


def test_an_unreachable_warehouse_skips_the_checks_with_one_warning(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "closeloop.yaml").write_text(CONFIG)
    (folder / "jobs.yaml").write_text(JOBS)
    down = {"CLOSELOOP_WAREHOUSE_URL": "postgres://closeloop:secret@127.0.0.1:9/nowhere"}
    validation = definitions_service.validate_project(load_settings(folder, down))
    assert (validation.errors, validation.warnings) == (0, 1)
    (problem,) = validation.problems
    assert problem.location is None
    assert problem.message.startswith(
        "the definitions were not checked against the data: cannot connect to the warehouse at "
        "'postgres://closeloop:***@127.0.0.1:9/nowhere'"
    )


def test_empty_tables_give_no_data_warnings(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project", backends, data=False)
    with open_workspace(folder, environ=backends.environ()):
        pass  # creates the (empty) tables
    settings = load_settings(folder, backends.environ())
    assert project_data_problems(settings, load_definitions(settings), now=NOW) == ()


def test_explain_says_which_event_and_value_the_data_lacks(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project", backends)
    with open_workspace(folder, environ=backends.environ()) as workspace:
        matches = definitions_service.explain(
            workspace,
            'count(event "integration_connected") >= 1 and segment in ("enterprise", "midmarket")',
            datetime(2024, 6, 2),
        )
        cased = definitions_service.explain(
            workspace, 'count(event "Integration Connected") >= 1', datetime(2024, 6, 2)
        )
    assert matches.count == 0
    assert matches.warnings[:2] == [
        'no event named "integration_connected" in the warehouse (did you mean '
        '"Integration Connected"?)',
        'no account has segment "midmarket" (did you mean "Mid Market"?)',
    ]
    assert cased.count == 1
    assert not any("no event named" in warning for warning in cased.warnings)


# -- how current the data is ----------------------------------------------------------------------


@pytest.fixture
def events_warehouse(backends: Backends) -> Warehouse:
    warehouse = Warehouse.connect(backends.warehouse_url)
    warehouse.ensure_tables()
    return warehouse


def _add_events(warehouse: Warehouse, *times: datetime) -> None:
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{index}" for index in range(len(times))],
                "account_id": ["a1"] * len(times),
                "name": ["login"] * len(times),
                "timestamp": list(times),
            },
        ),
    )


def test_freshness(events_warehouse: Warehouse) -> None:
    warehouse = events_warehouse
    try:
        empty = data_service.freshness(warehouse, NOW, now=NOW)
        assert empty.newest_event is None
        assert empty.warnings == (
            "the warehouse has no events: each event count is 0 and no event goal is reached "
            "(import them with `closeloop import events FILE`)",
        )
        _add_events(warehouse, datetime(2024, 6, 1), datetime(2024, 6, 9, 18))

        def warnings(at: datetime, option: str = "--at") -> tuple[str, ...]:
            return data_service.freshness(warehouse, at, now=NOW, option=option).warnings

        # Fresh data, asked about now or the past: nothing to say.
        assert warnings(NOW) == ()
        assert warnings(datetime(2024, 6, 5)) == ()
        assert warnings(datetime(2024, 6, 10, 12, 4)) == ()  # within the clock skew
        assert warnings(datetime(2031, 1, 1)) == (
            "--at 2031-01-01 00:00 is in the future (now: 2024-06-10 12:00 UTC): relative "
            "windows count back from then, and what happens until then is not in the data yet",
        )
        # Later than ever: from the viewpoint of a clock a month on, with no new events.
        later = NOW + timedelta(days=30)
        stale = data_service.freshness(warehouse, later, now=later)
        assert stale.newest_event == datetime(2024, 6, 9, 18)
        assert stale.warnings == (
            "the newest event is from 2024-06-09 18:00 UTC, 30 days ago: the data looks stale; "
            "import recent events",
        )
        past = data_service.freshness(warehouse, datetime(2024, 6, 20), now=later, option="--as-of")
        assert past.warnings == (
            "--as-of 2024-06-20 00:00 is 10 days after the newest event (2024-06-09 18:00): the "
            "data may not reach that time; import newer events or pick an earlier --as-of",
        )
        # Rows dated after now (a time-zone slip, a bad export).
        _add_events(warehouse, datetime(2031, 1, 1))
        assert warnings(NOW) == (
            "events are dated up to 2031-01-01 00:00, after now (2024-06-10 12:00 UTC): check "
            "the time zone of the export, or the rows dated in the future",
        )
    finally:
        warehouse.close()


def test_closest() -> None:
    closest = data_service.closest
    assert closest("integration_connected", ["Integration Connected", "login"]) == (
        "Integration Connected"
    )
    assert closest("Integration-Connected", ["integration_connected"]) == "integration_connected"
    assert closest("enterprize", ["enterprise", "Enterprise Plus"]) == "enterprise"
    assert closest("enterprise", ["enterprise"]) is None  # the same is no suggestion
    assert closest("churn", ["login", "signup"]) is None


# -- measure -------------------------------------------------------------------------------------


def test_measure_names_the_goal_event_the_file_lacks(tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    events = tmp_path / "events.csv"
    units.write_text(
        "unit_id,arm,entered_at\n"
        + "".join(
            f"u{i},{'holdout' if i % 2 else 'treatment'},2024-05-01T00:00:00Z\n" for i in range(20)
        )
    )
    events.write_text(
        "unit_id,name,timestamp\n"
        + "".join(f"u{i},Integration Connected,2024-05-03T00:00:00Z\n" for i in range(0, 20, 3))
    )
    request = MeasureRequest(
        units=units, events=events, goal="integration_connected", horizon_days=14, control="holdout"
    )
    result = measure_files(request)
    assert result.warnings[0] == (
        f'no event named "integration_connected" in {events} (did you mean '
        '"Integration Connected"?)'
    )
    right = measure_files(
        MeasureRequest(
            units=units,
            events=events,
            goal="Integration Connected",
            horizon_days=14,
            control="holdout",
        )
    )
    assert not any("no event named" in warning for warning in right.warnings)


# -- quarantine ----------------------------------------------------------------------------------


def test_quarantine_list_export_purge(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project", backends)
    bad_accounts = folder / "more_accounts.csv"
    bad_accounts.write_text(
        "account_id,name,created_at,segment\n"
        "b1,Bad One,not a date,smb\n"
        'b2,"Bad, Two",2024-13-45,smb\n'
        "b3,Good,2024-05-01T00:00:00Z,smb\n"
    )
    bad_events = folder / "more_events.csv"
    bad_events.write_text(
        'event_id,account_id,name,timestamp\nx1,zz,login,2024-05-01\nx2,a1,login,"2024-05-01\n'
    )
    with open_workspace(folder, environ=backends.environ()) as workspace:
        assert data_service.import_table(workspace, "accounts", bad_accounts).quarantined == 2
        assert data_service.import_table(workspace, "events", bad_events).quarantined == 2

        listing = data_service.quarantine_list(workspace)
        assert (listing.total, listing.by_table) == (4, {"accounts": 2, "events": 2})
        rows = {(row.table, row.row): row for row in listing.rows}
        assert set(rows) == {("accounts", 1), ("accounts", 2), ("events", 1), ("events", 2)}
        first = rows[("accounts", 1)]
        assert (Path(first.file).name, first.column) == ("more_accounts.csv", "created_at")
        assert "not a date" in first.reason
        assert first.values == {
            "account_id": "b1",
            "name": "Bad One",
            "created_at": "not a date",
            "segment": "smb",
        }
        assert rows[("events", 1)].column == "account_id"
        assert rows[("events", 2)].values is None  # the stray quote's line, as read
        assert rows[("events", 2)].raw == 'x2,a1,login,"2024-05-01'
        only_events = data_service.quarantine_list(workspace, "events", limit=1)
        assert (only_events.total, len(only_events.rows)) == (2, 1)
        with pytest.raises(NotFoundError, match="'acounts' is not a canonical table"):
            data_service.quarantine_list(workspace, "acounts")

        exported = data_service.quarantine_export(workspace, folder / "fix")
        written = {(f.table, Path(f.path).name, f.rows, f.readable) for f in exported.files}
        assert written == {
            ("accounts", "accounts.csv", 2, True),
            ("events", "events.csv", 1, True),
            ("events", "events.unreadable.txt", 1, False),
        }
        assert (folder / "fix" / "accounts.csv").read_text() == (
            "account_id,name,created_at,segment\n"
            "b1,Bad One,not a date,smb\n"
            'b2,"Bad, Two",2024-13-45,smb\n'
        )
        assert (folder / "fix" / "events.unreadable.txt").read_text() == (
            'x2,a1,login,"2024-05-01\n'
        )
        with pytest.raises(ConfigurationError, match="already exist"):
            data_service.quarantine_export(workspace, folder / "fix")

        # Fixed and imported again; the old rows are purged by time, the rest stays.
        fixed = (folder / "fix" / "accounts.csv").read_text()
        fixed = fixed.replace("not a date", "2024-05-01").replace("2024-13-45", "2024-05-02")
        (folder / "fix" / "accounts.csv").write_text(fixed)
        reimported = data_service.import_table(
            workspace, "accounts", folder / "fix" / "accounts.csv"
        )
        assert (reimported.imported, reimported.quarantined) == (2, 0)

        with pytest.raises(ConfigurationError, match="purge deletes all 2 quarantined row"):
            data_service.quarantine_purge(workspace, "accounts")
        cutoff = datetime(2000, 1, 1)
        assert data_service.quarantine_purge(workspace, before=cutoff).purged == 0
        purged = data_service.quarantine_purge(workspace, "accounts", confirmed=True)
        assert (purged.purged, purged.remaining) == (2, 0)
        assert data_service.quarantine_list(workspace).by_table == {"events": 2}
        later = datetime.now() + timedelta(days=1)
        rest = data_service.quarantine_purge(workspace, before=later)
        assert (rest.purged, rest.remaining) == (2, 0)
        assert data_service.quarantine_list(workspace).total == 0
