"""Attribute history: re-imports update accounts and people, and "as of T" reads the value of T.

Every test runs on a DuckDB file and, when available, a fresh PostgreSQL database. The acceptance
test changes a plan from ``starter`` to ``business`` on 2024-03-01, once by re-importing the CRM
export and once by a job's write-back, and asks audiences, cohorts, ``explain`` and the segments of
a job report about February and April.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closeloop.analysis.job_report import job_units
from closeloop.data import history
from closeloop.data.compiler import matching_accounts, matching_units
from closeloop.data.importer import ImportOptions, ImportResult, import_file
from closeloop.data.tables import ACCOUNTS, ATTRIBUTE_HISTORY
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, parse_expression
from closeloop.services import definitions as definitions_service
from closeloop.services import engine_runs, reports
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends

FEBRUARY = datetime(2024, 2, 15)
CHANGED = datetime(2024, 3, 1)
APRIL = datetime(2024, 4, 15)

ACCOUNTS_CSV = """\
account_id,name,created_at,segment,plan,owner,arr,tier
a1,Acme,2024-01-05,smb,starter,ada,1200,gold
a2,Beta,2024-01-06,smb,pro,grace,9000,
a3,Gamma,2024-01-07,smb,starter,,600,silver
"""
# a1 moves to business on 2024-03-01 08:00 UTC; a2 and a3 are exported again unchanged; a4 is new.
CHANGED_CSV = """\
account_id,name,created_at,segment,plan,owner,arr,tier,updated_at
a1,Acme,2024-01-05,smb,business,ada,5000,gold,2024-03-01T09:00:00+01:00
a2,Beta,2024-01-06,smb,pro,grace,9000,,2024-03-02
a3,Gamma,2024-01-07,smb,starter,,600,silver,2024-01-07
a4,Delta,2024-02-20,smb,pro,ada,2000,,2024-02-20
"""


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        yield connected


def _import(warehouse: Warehouse, tmp_path: Path, name: str, text: str) -> ImportResult:
    path = tmp_path / name
    path.write_text(text)
    return import_file(warehouse, path.stem.split("_")[0], path)


def _counts(result: ImportResult) -> tuple[int, int, int, int]:
    return result.imported, result.updated, result.unchanged, result.quarantined


def _history(warehouse: Warehouse) -> list[tuple[object, ...]]:
    table = warehouse.table(ATTRIBUTE_HISTORY.name)
    rows = table.order_by(["entity_id", "name", "valid_from"]).to_pyarrow().to_pylist()
    return [
        (row["entity_id"], row["name"], row["value"], row["valid_from"], row["source"])
        for row in rows
    ]


def _accounts(warehouse: Warehouse, *columns: str) -> dict[str, tuple[object, ...]]:
    rows = warehouse.table("accounts").to_pyarrow().to_pylist()
    return {row["account_id"]: tuple(row[c] for c in columns) for row in rows}


def _matching(warehouse: Warehouse, text: str, at: datetime) -> list[str]:
    table = matching_accounts(parse_expression(text), warehouse, at).to_pyarrow()
    return sorted(table.column("account_id").to_pylist())


def test_a_reimport_updates_changed_rows_and_records_each_change(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    assert _counts(_import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)) == (3, 0, 0, 0)
    changed = _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)

    assert _counts(changed) == (1, 1, 2, 0)
    assert changed.duplicates == changed.unchanged  # the field callers used keeps its meaning
    assert _accounts(warehouse, "plan", "arr")["a1"] == ("business", 5000.0)
    # Each change from its updated_at (in UTC), and the value before it from the account's
    # creation, so "as of" any earlier time still answers.
    change = datetime(2024, 3, 1, 8)
    created = datetime(2024, 1, 5)
    assert _history(warehouse) == [
        ("a1", "arr", "1200.0", created, history.BASELINE_SOURCE),
        ("a1", "arr", "5000.0", change, "import:accounts_v2.csv"),
        ("a1", "plan", '"starter"', created, history.BASELINE_SOURCE),
        ("a1", "plan", '"business"', change, "import:accounts_v2.csv"),
    ]
    # The valid-from column says when values hold; it is not kept as a property.
    properties = _accounts(warehouse, "properties")
    assert json.loads(str(properties["a1"][0])) == {"tier": "gold"}
    assert properties["a2"] == (None,)

    again = _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)
    assert _counts(again) == (0, 0, 4, 0)
    assert len(_history(warehouse)) == 4


def test_an_import_stopped_before_the_update_is_repaired_by_importing_again(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)

    def die(*_: object) -> None:
        raise RuntimeError("the process died between the history and the update")

    monkeypatch.setattr(history, "_update", die)
    with pytest.raises(RuntimeError, match="process died"):
        _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)
    assert _accounts(warehouse, "plan")["a1"] == ("starter",)
    recorded = _history(warehouse)
    assert len(recorded) == 4

    monkeypatch.undo()
    repaired = _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)
    assert _counts(repaired) == (0, 1, 3, 0)  # a4 was inserted before the crash
    assert _accounts(warehouse, "plan")["a1"] == ("business",)
    assert _history(warehouse) == recorded


def test_a_point_in_time_read_sees_the_value_of_that_time(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)

    assert _matching(warehouse, 'plan = "starter"', FEBRUARY) == ["a1", "a3"]
    assert _matching(warehouse, 'plan = "starter"', APRIL) == ["a3"]
    assert _matching(warehouse, 'plan = "business"', FEBRUARY) == []
    assert _matching(warehouse, 'plan = "business"', APRIL) == ["a1"]
    # The change holds from its exact time: at 07:59 UTC it has not happened yet.
    assert _matching(warehouse, "arr > 2000", datetime(2024, 3, 1, 7, 59)) == ["a2"]
    assert _matching(warehouse, "arr > 2000", datetime(2024, 3, 1, 8)) == ["a1", "a2"]


def test_changes_without_a_valid_from_hold_from_the_import(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    before = datetime.now(UTC).replace(tzinfo=None)
    result = _import(warehouse, tmp_path, "accounts_v3.csv", ACCOUNTS_CSV.replace("ada", "lin"))
    after = datetime.now(UTC).replace(tzinfo=None)

    assert _counts(result) == (0, 1, 2, 0)
    (baseline, change) = [row for row in _history(warehouse) if row[1] == "owner"]
    assert baseline[2:] == ('"ada"', datetime(2024, 1, 5), history.BASELINE_SOURCE)
    assert change[2] == '"lin"'
    assert isinstance(change[3], datetime) and before <= change[3] <= after
    assert _matching(warehouse, 'owner = "ada"', after - timedelta(days=1)) == ["a1"]
    assert _matching(warehouse, 'owner = "lin"', after + timedelta(seconds=1)) == ["a1"]


def test_the_import_time_is_the_one_the_import_was_given(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    path = tmp_path / "accounts_v4.csv"
    path.write_text(ACCOUNTS_CSV.replace("ada", "lin"))
    at = datetime(2024, 6, 1, 9, 30)
    result = import_file(warehouse, "accounts", path, options=ImportOptions(now=at))

    assert _counts(result) == (0, 1, 2, 0)
    (_, change) = [row for row in _history(warehouse) if row[1] == "owner"]
    assert change[2:4] == ('"lin"', at)


def test_a_file_without_a_column_leaves_it_as_stored(warehouse: Warehouse, tmp_path: Path) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    plans_only = "account_id,created_at,plan\na1,2024-01-05,business\na2,2024-01-06,pro\n"
    result = _import(warehouse, tmp_path, "accounts_plans.csv", plans_only)

    assert _counts(result) == (0, 1, 1, 0)
    stored = _accounts(warehouse, "name", "plan", "owner", "arr", "properties")
    assert stored["a1"][:4] == ("Acme", "business", "ada", 1200.0)
    assert json.loads(str(stored["a1"][4])) == {"tier": "gold"}
    assert {row[1] for row in _history(warehouse)} == {"plan"}


def test_an_older_change_is_history_and_not_the_current_value(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)
    # An export from February imported after the one from March: a1 was on pro for a while.
    late = "account_id,created_at,plan,updated_at\na1,2024-01-05,pro,2024-02-01\n"
    result = _import(warehouse, tmp_path, "accounts_late.csv", late)

    assert _counts(result) == (0, 1, 0, 0)
    assert _accounts(warehouse, "plan")["a1"] == ("business",)
    assert _matching(warehouse, 'plan = "pro"', datetime(2024, 1, 20)) == ["a2"]
    assert _matching(warehouse, 'plan = "pro"', FEBRUARY) == ["a1", "a2"]
    assert _matching(warehouse, 'plan = "business"', APRIL) == ["a1"]
    again = _import(warehouse, tmp_path, "accounts_late.csv", late)
    assert _counts(again) == (0, 0, 1, 0)


@pytest.mark.parametrize(
    "text", ["soon", "epoch", "infinity", "-2024-03-01", "0001-03-01", "2024-03-01T00:00:00+25:00"]
)
def test_a_valid_from_that_is_not_a_time_is_quarantined(
    warehouse: Warehouse, tmp_path: Path, text: str
) -> None:
    """The same timestamps the import rejects in any column (keywords, negative years, year 1,
    impossible offsets) are rejected as a valid-from too, never taken as a time."""
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    bad = f"account_id,created_at,plan,valid_from\na1,2024-01-05,business,{text}\n"
    result = _import(warehouse, tmp_path, "accounts_bad.csv", bad)

    assert _counts(result) == (0, 0, 0, 1)
    quarantined = warehouse.table("quarantine").to_pyarrow().to_pylist()
    assert [(q["row_number"], q["column_name"]) for q in quarantined] == [(1, "valid_from")]
    assert quarantined[0]["reason"] == (
        "not a timestamp like 2024-03-31T14:05:00Z with a UTC offset within ±14:00 and a year "
        f"from 1900 to 2199: {text}"
    )
    assert _accounts(warehouse, "plan")["a1"] == ("starter",)
    assert _history(warehouse) == []


def test_people_reimports_update_roles_as_of_their_time(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    people = (
        "person_id,account_id,email,role\np1,a1,ada@acme.test,member\np2,a1,bo@acme.test,admin\n"
    )
    assert _counts(_import(warehouse, tmp_path, "people_v1.csv", people)) == (2, 0, 0, 0)
    promoted = (
        "person_id,account_id,email,role,updated_at\n"
        "p1,a1,ada@acme.test,admin,2024-03-01\n"
        "p2,a1,bo@acme.test,admin,2024-01-01\n"
    )
    assert _counts(_import(warehouse, tmp_path, "people_v2.csv", promoted)) == (0, 1, 1, 0)

    def admins(at: datetime) -> list[str]:
        units = matching_units(
            parse_expression('role = "admin"'), warehouse, at, None, Entity.PERSON
        )
        return sorted(units.to_pyarrow().column("person_id").to_pylist())

    # p1 has no creation time: the role it had is recorded as held from the beginning.
    assert admins(FEBRUARY) == ["p2"]
    assert admins(APRIL) == ["p1", "p2"]
    # An account's people as of T count the roles of T.
    assert _matching(warehouse, 'count(people where role = "admin") >= 2', FEBRUARY) == []
    assert _matching(warehouse, 'count(people where role = "admin") >= 2', APRIL) == ["a1"]


def test_history_values_read_with_the_column_type(warehouse: Warehouse, tmp_path: Path) -> None:
    """Write-backs are JSON text: numbers, dates and text read as the column's type, and a value
    that cannot be one reads as missing instead of failing every query."""
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    writes = [
        ("a1", "employees", "42.0"),
        ("a1", "renewal_date", '"2025-03-01"'),
        ("a1", "segment", "7"),
        ("a2", "renewal_date", '"soon"'),
        ("a2", "owner", "null"),
        ("a3", "arr", '"a lot"'),
    ]
    warehouse.append(
        ATTRIBUTE_HISTORY.name,
        warehouse.arrow_for(
            ATTRIBUTE_HISTORY.name,
            {
                "write_id": [f"w{i}" for i in range(len(writes))],
                "entity": ["account"] * len(writes),
                "entity_id": [w[0] for w in writes],
                "name": [w[1] for w in writes],
                "value": [w[2] for w in writes],
                "valid_from": [CHANGED] * len(writes),
                "source": ["job:test"] * len(writes),
            },
        ),
    )
    accounts = history.as_of(
        warehouse, "account", warehouse.table("accounts"), APRIL, key="account_id"
    )
    rows = {
        row["account_id"]: row
        for row in accounts.select("account_id", *ACCOUNTS.column_names[1:])
        .to_pyarrow()
        .to_pylist()
    }
    assert (rows["a1"]["employees"], rows["a1"]["segment"]) == (42, "7")
    assert rows["a1"]["renewal_date"].isoformat() == "2025-03-01"
    assert (rows["a2"]["renewal_date"], rows["a2"]["owner"]) == (None, None)
    assert (rows["a3"]["arr"], rows["a3"]["plan"]) == (None, "starter")
    assert _matching(warehouse, "renewal_date within next 365 days", APRIL) == ["a1"]
    assert _matching(warehouse, 'owner = "grace"', FEBRUARY) == ["a2"]
    assert _matching(warehouse, 'owner = "grace"', APRIL) == []


# -- acceptance: a plan changed on 2024-03-01, by re-import or by write-back --------------------

EARLY = [f"e{i:02d}" for i in range(20)]  # created in January on starter; business from March 1
LATE = [f"l{i:02d}" for i in range(20)]  # created in April on pro

JOBS = """\
jobs:
  - name: Starter offer
    audience: plan = "starter"
    goal: count(event "upgraded") >= 1
    duration_days: 60
    observational: true
    holdout: 0
  - name: Business offer
    audience: plan = "business"
    goal: count(event "upgraded") >= 1
    duration_days: 60
    observational: true
    holdout: 0
  - name: Upgrade
    audience: region = "na"
    goal: count(event "upgraded") >= 1
    duration_days: 60
    observational: true
    holdout: 0
    steps:
      - send: set_attribute
        attribute: plan
        value: business
  - name: Welcome
    audience: segment = "smb"
    goal: count(event "upgraded") >= 1
    duration_days: 30
    holdout: 0.5
"""
COHORTS = """\
cohorts:
  - name: Starters
    criteria: plan = "starter"
"""


def _export(plan_of_early: str, *, updated_at: str | None = None) -> str:
    header = "account_id,name,created_at,segment,plan,region"
    lines = [header + (",updated_at" if updated_at else "")]
    for account in EARLY:
        stamp = f",{updated_at}" if updated_at else ""
        lines.append(f"{account},Early {account},2024-01-10,smb,{plan_of_early},na{stamp}")
    for account in LATE:
        stamp = f",{updated_at}" if updated_at else ""
        lines.append(f"{account},Late {account},2024-04-01,smb,pro,emea{stamp}")
    return "\n".join(lines) + "\n"


def _project(folder: Path) -> Path:
    init_project(folder, "history")
    for example in ("attributes.yaml", "stages.yaml"):
        (folder / example).unlink()
    (folder / "jobs.yaml").write_text(JOBS)
    (folder / "cohorts.yaml").write_text(COHORTS)
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "cohorts:\n  - cohorts.yaml\n")
    return folder


def _entered(workspace: Workspace, job: str, at: datetime) -> int:
    (result,) = engine_runs.tick(workspace, at, job, launch=True)
    return result.entered


@pytest.mark.parametrize("change", ["reimport", "write_back"])
def test_a_plan_changed_on_march_1_is_starter_in_february_and_business_in_april(
    backends: Backends, tmp_path: Path, change: str
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        warehouse = workspace.warehouse
        first = tmp_path / "accounts.csv"
        first.write_text(_export("starter"))
        assert import_file(warehouse, "accounts", first).imported == 40

        # Audiences: in February the early accounts are on starter.
        assert _entered(workspace, "Starter offer", FEBRUARY) == 20
        assert _entered(workspace, "Business offer", FEBRUARY) == 0
        assert _entered(workspace, "Welcome", FEBRUARY) == 20

        if change == "reimport":
            second = tmp_path / "accounts_march.csv"
            second.write_text(_export("business", updated_at="2024-03-01T00:00:00Z"))
            result = import_file(warehouse, "accounts", second)
            assert _counts(result) == (0, 20, 20, 0)
        else:
            assert _entered(workspace, "Upgrade", CHANGED) == 20
            sent = engine_runs.dispatch(workspace, CHANGED)
            assert len(sent.sent) == 20
            # The CRM's table still says starter: the write-back lives in the history only.
            assert set(_accounts(warehouse, "plan").values()) == {("starter",), ("pro",)}

        # Audiences in April: the early accounts now qualify for the business offer.
        assert _entered(workspace, "Business offer", APRIL) == 20
        assert _entered(workspace, "Starter offer", APRIL) == 0
        assert _entered(workspace, "Welcome", APRIL) == 20

        # Cohorts and explain, as of February and as of April.
        def cohort(at: datetime) -> int:
            return definitions_service.cohort(workspace, "Starters", at, sample=0).count

        assert (cohort(FEBRUARY), cohort(APRIL)) == (20, 0)
        explained = definitions_service.explain(workspace, 'plan = "starter"', FEBRUARY, sample=3)
        assert explained.count == 20
        assert [row["plan"] for row in explained.sample] == ["starter"] * 3
        later = definitions_service.explain(workspace, 'plan = "business"', APRIL, sample=3)
        assert later.count == 20
        assert [row["plan"] for row in later.sample] == ["business"] * 3
        assert definitions_service.explain(workspace, 'plan = "business"', FEBRUARY).count == 0

        # The job report's segments: a unit is in the segment of the plan it had on entry.
        report = reports.job_report(
            workspace, "Welcome", as_of=datetime(2024, 5, 30), segment_by=("plan",)
        )
        sizes: dict[str, int] = {}
        for segment in report.segments:
            if segment.column == "plan":
                total = segment.control_stat.n + segment.arm_stat.n
                assert sizes.setdefault(segment.segment, total) == total
        assert sizes == {"starter": 20, "pro": 20}
        # The units behind it (published by the report), each with its plan at entry.
        units = job_units(warehouse, "Welcome", as_of=datetime(2024, 5, 30), attributes=("plan",))
        by_unit = units.select("account_id", "plan").to_pyarrow().to_pylist()
        assert {row["account_id"]: row["plan"] for row in by_unit} == {
            **dict.fromkeys(EARLY, "starter"),
            **dict.fromkeys(LATE, "pro"),
        }


def test_a_write_back_is_one_history_row_read_like_an_imported_change(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        warehouse = workspace.warehouse
        first = tmp_path / "accounts.csv"
        first.write_text(_export("starter"))
        import_file(warehouse, "accounts", first)
        _entered(workspace, "Upgrade", CHANGED)
        engine_runs.dispatch(workspace, CHANGED)
        engine_runs.dispatch(workspace, CHANGED + timedelta(hours=1))  # nothing is sent twice
        rows = _history(warehouse)
        assert len(rows) == 20
        assert {row[1:] for row in rows} == {("plan", '"business"', CHANGED, "job:Upgrade")}
        # The CRM export catches up in April: the table changes, and the history gains the value
        # before the write-back and the export's own change; March still reads the write-back.
        second = tmp_path / "accounts_april.csv"
        second.write_text(_export("business", updated_at="2024-04-02"))
        assert _counts(import_file(warehouse, "accounts", second)) == (0, 20, 20, 0)
        assert _matching(warehouse, 'plan = "starter"', FEBRUARY) == EARLY
        assert _matching(warehouse, 'plan = "business"', datetime(2024, 3, 15)) == EARLY


def test_job_units_read_each_unit_at_its_entry(warehouse: Warehouse, tmp_path: Path) -> None:
    _import(warehouse, tmp_path, "accounts_v1.csv", ACCOUNTS_CSV)
    _import(warehouse, tmp_path, "accounts_v2.csv", CHANGED_CSV)
    entries = [("u1", "a1", FEBRUARY), ("u2", "a1", APRIL), ("u3", "a2", FEBRUARY)]
    warehouse.append(
        "closeloop_enrollments",
        warehouse.arrow_for(
            "closeloop_enrollments",
            {
                "enrollment_id": [e[0] for e in entries],
                "job_name": ["Nudge"] * len(entries),
                "job_version": [1] * len(entries),
                "account_id": [e[1] for e in entries],
                "arm": ["treatment"] * len(entries),
                "entered_at": [e[2] for e in entries],
            },
        ),
    )
    units = job_units(warehouse, "Nudge", as_of=APRIL, attributes=("plan", "arr", "segment"))
    rows = units.select("unit_id", "plan", "arr", "segment").order_by("unit_id").to_pyarrow()
    assert rows.to_pylist() == [
        {"unit_id": "u1", "plan": "starter", "arr": 1200.0, "segment": "smb"},
        {"unit_id": "u2", "plan": "business", "arr": 5000.0, "segment": "smb"},
        {"unit_id": "u3", "plan": "pro", "arr": 9000.0, "segment": "smb"},
    ]
    assert units.count().execute() == 3
