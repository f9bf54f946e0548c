"""The compiler beyond the documented examples: goal times, point in time, literals as data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

from closeloop.data.compiler import (
    account_attributes,
    compile_sql,
    goal_reached_at,
    matching_accounts,
    person_attributes,
    stage_status,
)
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.project import Catalog, load_project
from closeloop.errors import ExpressionError
from support import EXAMPLE_AS_OF, Backends, load_example_dataset


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        load_example_dataset(connected)
        yield connected


def _matching(warehouse: Warehouse, text: str, as_of: datetime = EXAMPLE_AS_OF) -> list[str]:
    table = matching_accounts(parse_expression(text), warehouse, as_of).to_pyarrow()
    return sorted(table.column("account_id").to_pylist())


def _reached(
    warehouse: Warehouse, text: str, entered: dict[str, datetime], as_of: datetime = EXAMPLE_AS_OF
) -> dict[str, datetime]:
    candidates = ibis.memtable(
        pa.table(
            {
                "account_id": pa.array(list(entered), pa.string()),
                "entered_at": pa.array(list(entered.values()), pa.timestamp("us")),
            }
        )
    )
    rows = goal_reached_at(parse_expression(text), warehouse, as_of, candidates).to_pyarrow()
    return {row["account_id"]: row["reached_at"] for row in rows.to_pylist()}


def test_point_in_time_ignores_later_events_and_accounts(warehouse: Warehouse) -> None:
    goal = 'count(event "integration_connected") >= 1'
    assert _matching(warehouse, goal) == ["a1"]
    assert _matching(warehouse, goal, datetime(2024, 6, 10)) == ["a1", "a3"]
    assert _matching(warehouse, goal, datetime(2024, 7, 1)) == ["a1", "a3", "a5"]
    assert _matching(warehouse, goal, datetime(2024, 5, 28, 14, 59)) == []


def test_goal_time_is_the_kth_event_and_never_before_entry(warehouse: Warehouse) -> None:
    entered = {"a1": datetime(2024, 5, 26), "a2": datetime(2024, 5, 1), "a4": datetime(2024, 5, 1)}
    assert _reached(warehouse, 'count(event "integration_connected") >= 1', entered) == {
        "a1": datetime(2024, 5, 28, 15)
    }
    # The 3rd login of a1 is on 5/31; the 11th of a2 is on 5/28 (ten in April first).
    assert _reached(warehouse, 'count(event "login") >= 3', entered) == {
        "a1": datetime(2024, 5, 31, 9),
        "a2": datetime(2024, 5, 1),  # reached in April, before entry: clamped to entry
    }
    assert _reached(warehouse, 'count(event "login") > 10', entered)["a2"] == datetime(
        2024, 5, 28, 12
    )


def test_and_takes_the_latest_or_the_earliest_time(warehouse: Warehouse) -> None:
    entered = {"a1": datetime(2024, 5, 25, 12)}
    both = 'count(event "login") >= 1 and count(event "integration_connected") >= 1'
    either = 'count(event "login") >= 1 or count(event "integration_connected") >= 1'
    assert _reached(warehouse, both, entered) == {"a1": datetime(2024, 5, 28, 15)}
    assert _reached(warehouse, either, entered) == {"a1": datetime(2024, 5, 26, 9)}
    # A condition without an event time is reached when the tick sees it.
    assert _reached(warehouse, 'plan = "starter"', entered) == {"a1": EXAMPLE_AS_OF}


@pytest.mark.parametrize(
    "literal",
    [
        "x'; DROP TABLE accounts; --",
        'Initech \\"Labs\\"',
        "Zürich 東京 🚀",
        "a\\\\b",
        "%",
        "_",
    ],
)
def test_literals_are_data_never_sql(warehouse: Warehouse, literal: str) -> None:
    assert _matching(warehouse, f'name = "{literal}"') == (
        ["a3"] if literal == 'Initech \\"Labs\\"' else []
    )
    assert _matching(warehouse, f'name contains "{literal}"') == (
        ["a3"] if literal == 'Initech \\"Labs\\"' else []
    )
    assert warehouse.table("accounts").count().to_pyarrow().as_py() == 5


def test_compiled_sql_is_readable_for_the_backend(warehouse: Warehouse) -> None:
    sql = compile_sql(
        parse_expression('signup_date within last 14 days and plan = "pro"'),
        warehouse,
        EXAMPLE_AS_OF,
    )
    assert "SELECT" in sql.upper()
    assert "'pro'" in sql
    assert '"created_at"' in sql
    since = EXAMPLE_AS_OF - timedelta(days=14)
    # DuckDB spells the bound MAKE_TIMESTAMP(2024, 5, 18, ...), PostgreSQL as a literal.
    assert f"{since:%Y-%m-%d}" in sql or f"{since.year}, {since.month}, {since.day}" in sql


def _catalog_matching(warehouse: Warehouse, text: str, as_of: datetime) -> list[str]:
    catalog = Catalog(
        account_attributes(),
        person_attributes(),
        job_targets={"Integration nudge": Entity.ACCOUNT},
    )
    expression = parse_expression(text)
    check_expression(expression, catalog.vocabulary, text=text)
    table = matching_accounts(expression, warehouse, as_of, catalog).to_pyarrow()
    return sorted(table.column("account_id").to_pylist())


@pytest.mark.parametrize(
    ("text", "as_of", "expected"),
    [
        # a1's logins: 5/26, 5/27, 5/31; as of 5/28 the latest is 5/27.
        ('last(event "login") > 2024-05-27T08:00', datetime(2024, 5, 28), ["a1"]),
        ('last(event "login") > 2024-05-28', datetime(2024, 5, 28), []),
        # p2 of a1 joined on 5/26: not yet a person of a1 at noon on 5/25.
        ("count(people) >= 2", datetime(2024, 5, 25, 12), ["a2"]),
        ("count(people) >= 2", datetime(2024, 5, 26), ["a1", "a2"]),
        # a1 entered the job on 5/26 and completed on 5/28 15:00.
        ('entered job "Integration nudge"', datetime(2024, 5, 25), ["a3", "a4"]),
        ('in job "Integration nudge"', datetime(2024, 5, 27), ["a1", "a3"]),
        ('completed job "Integration nudge"', datetime(2024, 5, 28, 14), []),
        ('exited job "Integration nudge"', datetime(2024, 3, 1), []),
        # a3's invoice (5/25) does not count before it was paid.
        ('count(event "invoice_paid" where method = "card") >= 1', datetime(2024, 5, 24), ["a2"]),
    ],
)
def test_point_in_time_holds_for_people_times_jobs_and_filters(
    warehouse: Warehouse, text: str, as_of: datetime, expected: list[str]
) -> None:
    assert _catalog_matching(warehouse, text, as_of) == expected


@pytest.mark.parametrize(
    "literal",
    ["x'; DROP TABLE events; --", 'q\\"uote', "Zürich 東京 🚀", "%", "_", "\\\\"],
)
def test_event_filter_values_are_data_never_sql(warehouse: Warehouse, literal: str) -> None:
    text = f'count(event "report_viewed" where source = "{literal}") >= 1'
    assert _catalog_matching(warehouse, text, EXAMPLE_AS_OF) == []
    assert _catalog_matching(warehouse, f'count(event "{literal}") >= 1', EXAMPLE_AS_OF) == []
    assert warehouse.table("events").count().to_pyarrow().as_py() == 23


def test_property_names_that_read_as_json_paths_are_refused() -> None:
    for key in ('"a.b"', '"x:y"', '"$"', '"q\\"k"', '"[0]"'):
        text = f'count(event "x" where {key} = 1) >= 1'
        with pytest.raises(ExpressionError, match="cannot be looked up on every warehouse"):
            check_expression(parse_expression(text), account_attributes(), text=text)
    text = 'count(event "x" where "Plan Name" = "pro" and plan-tier = 1) >= 1'
    with pytest.raises(ExpressionError):  # `-` outside quotes is not part of a name
        parse_expression(text)
    text = 'count(event "x" where "Plan Name" = "pro" and "plan-tier" = 1) >= 1'
    check_expression(parse_expression(text), account_attributes(), text=text)


def test_goal_times_for_people_and_job_memberships(warehouse: Warehouse) -> None:
    catalog = Catalog(
        account_attributes(),
        person_attributes(),
        job_targets={"Integration nudge": Entity.ACCOUNT},
    )
    people = ibis.memtable(
        pa.table(
            {
                "person_id": pa.array(["p1", "p2", "p4"], pa.string()),
                "entered_at": pa.array([datetime(2024, 5, 26)] * 3, pa.timestamp("us")),
            }
        )
    )
    # A person's own events: p1's second login is on 5/27; p2 and p4 logged in once.
    rows = goal_reached_at(
        parse_expression('count(event "login") >= 2'),
        warehouse,
        EXAMPLE_AS_OF,
        people,
        catalog,
        Entity.PERSON,
    ).to_pyarrow()
    assert rows.to_pylist() == [{"person_id": "p1", "reached_at": datetime(2024, 5, 27, 9)}]
    # A goal on another job is reached when that job's enrollment completed.
    reached = _reached_with(
        warehouse, 'completed job "Integration nudge"', {"a1": datetime(2024, 5, 20)}, catalog
    )
    assert reached == {"a1": datetime(2024, 5, 28, 15)}


def _reached_with(
    warehouse: Warehouse, text: str, entered: dict[str, datetime], catalog: Catalog
) -> dict[str, datetime]:
    candidates = ibis.memtable(
        pa.table(
            {
                "account_id": pa.array(list(entered), pa.string()),
                "entered_at": pa.array(list(entered.values()), pa.timestamp("us")),
            }
        )
    )
    rows = goal_reached_at(
        parse_expression(text), warehouse, EXAMPLE_AS_OF, candidates, catalog
    ).to_pyarrow()
    return {row["account_id"]: row["reached_at"] for row in rows.to_pylist()}


def _stage_counts(warehouse: Warehouse, folder: Path, after_days: int) -> dict[str, list[str]]:
    (folder / "closeloop.yaml").write_text("name: t\njobs: []\n")
    (folder / "stages.yaml").write_text(
        f"""stages:
  - name: Quick start
    entry: signup_date has any value
    entered_at: signup_date
    exit: {{after_days: {after_days}}}
    objectives:
      - name: Three logins
        completion: count(event "login") >= 3
"""
    )
    project = load_project(folder, account_attributes(), person_attributes())
    status = stage_status(project.stage("Quick start"), warehouse, EXAMPLE_AS_OF, project.catalog)
    rows = status.to_pyarrow().to_pylist()
    return {
        flag: sorted(row["account_id"] for row in rows if row[flag])
        for flag in ("entered_at", "in_stage", "completed_at", "exited_incomplete")
    }


def test_a_stage_completes_only_within_its_time_and_exits_have_happened(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # Three logins: a1 on 5/31, a2 in April; a3 and a4 never. Signups: a1 5/25, a2 3/1,
    # a3 5/20, a4 1/10.
    two_days = _stage_counts(warehouse, tmp_path, 2)
    assert two_days == {
        "entered_at": ["a1", "a2", "a3", "a4"],
        "in_stage": [],
        "completed_at": [],  # a1 and a2 finished after their two days: too late
        "exited_incomplete": ["a1", "a2", "a3", "a4"],
    }
    ten_days = _stage_counts(warehouse, tmp_path, 10)
    assert ten_days == {
        "entered_at": ["a1", "a2", "a3", "a4"],
        "in_stage": ["a1"],  # exits on 6/4, after T: not yet
        "completed_at": ["a1"],
        "exited_incomplete": ["a2", "a3", "a4"],
    }
