"""Stage views, job outcomes (goal reached times, a job's units) and the sufficient statistics of a
measurement: the same numbers on every backend, checked against DuckDB and by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa
import pytest
from backend_dataset import CONFORMANCE_JOB, conformance_enrollments
from backend_support import rows, same

from closeloop.analysis.job_report import job_units
from closeloop.analysis.journey import stage_data
from closeloop.analysis.measurement import MeasureOptions, measure_units
from closeloop.data.compiler import MAX_BOUNDED_K, goal_reached_at, stage_status
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression
from closeloop.definitions.project import Catalog, Project
from support import EXAMPLE_AS_OF

T = EXAMPLE_AS_OF
MEASURED_AT = datetime(2024, 5, 20)  # the conformance job's units entered 2024-04-01 .. 05-30
HORIZON_DAYS = 7.0


def _stage(project: Project, warehouse: Warehouse, catalog: Catalog, as_of: datetime) -> Any:
    return stage_status(project.stage("Onboarding"), warehouse, as_of, catalog)


@pytest.mark.parametrize("as_of", [datetime(2024, 5, 27), T], ids=["may27", "june1"])
def test_stage_status_per_account(
    warehouse: Warehouse,
    reference: Warehouse,
    project: Project,
    catalog: Catalog,
    as_of: datetime,
) -> None:
    got = rows(_stage(project, warehouse, catalog, as_of), "account_id")
    assert got == rows(_stage(project, reference, catalog, as_of), "account_id")
    by_account = {row["account_id"]: row for row in got}
    if as_of == T:
        # a1 entered at signup (5/25 10:00), connected 5/28 15:00, third login 5/31 09:00:
        # completed then, which ends the stage; a2 and a3 ran out of their ten days.
        assert by_account["a1"]["completed_at"] == datetime(2024, 5, 31, 9)
        assert by_account["a1"]["exited_at"] == datetime(2024, 5, 31, 9)
        assert [a for a, row in sorted(by_account.items()) if row["exited_incomplete"]] == [
            "a2",
            "a3",
        ]
        assert by_account["a2"]["objective_1"] == datetime(2024, 4, 3, 12)  # its 3rd login
        assert [a for a, row in sorted(by_account.items()) if row["marker_0"]] == ["a1", "a2"]
    else:
        assert [a for a, row in sorted(by_account.items()) if row["in_stage"]] == ["a1", "a3"]
        assert by_account["a4"]["entered_at"] is None  # signed up 138 days before


def test_stage_view_counts(
    warehouse: Warehouse, reference: Warehouse, project: Project, catalog: Catalog
) -> None:
    def counts(on: Warehouse) -> Any:
        data = stage_data(_stage(project, on, catalog, T), 2, 1, on, T, window_days=30)
        return data.counts, sorted(data.entrants, key=lambda entrant: str(entrant))

    got = counts(warehouse)
    assert got == counts(reference)
    assert (got[0].entered, got[0].completed, got[0].exited, got[0].in_stage) == (3, 1, 2, 0)
    assert got[0].objectives_completed == (1, 2)  # a1 connected; a1 and a2 logged in 3 times


GOALS = [
    # goal, {account: reached_at} for the Integration nudge enrollments (a1 5/26, a3 5/21, a4 2/1)
    ('count(event "login") >= 3', {"a1": datetime(2024, 5, 31, 9)}),
    (
        'count(event "login") >= 1',
        {"a1": datetime(2024, 5, 26, 9), "a3": datetime(2024, 5, 21, 12)},
    ),
    (
        'count(event "integration_connected") >= 1 or count(event "login") >= 2',
        {"a1": datetime(2024, 5, 27, 9)},
    ),
    # `and` is reached at its latest part; a stored attribute cannot be dated, so at T
    ('plan = "pro" and count(event "invoice_paid") >= 1', {"a3": T}),
    # only counts without filters or windows are dated at their k-th event
    ('count(event "invoice_paid" where method = "card") >= 1', {"a3": T}),
    ('completed stage "Onboarding"', {"a1": datetime(2024, 5, 31, 9)}),
    ('segment = "self_serve"', {"a1": T, "a4": T}),  # undatable: reached when seen, at T
]


@pytest.mark.parametrize(("goal", "expected"), GOALS, ids=[str(i) for i in range(len(GOALS))])
def test_goal_reached_times(
    warehouse: Warehouse,
    catalog: Catalog,
    goal: str,
    expected: dict[str, datetime],
) -> None:
    enrollments = warehouse.table("closeloop_enrollments")
    candidates = enrollments.filter(enrollments.job_name == "Integration nudge").select(
        "account_id", "entered_at"
    )
    reached = goal_reached_at(parse_expression(goal), warehouse, T, candidates, catalog)
    assert {row["account_id"]: row["reached_at"] for row in rows(reached, "account_id")} == (
        expected
    )


# Entries after some of the unit's logins (a1: 5/26, 5/27, 5/31; a2: 4/1..4/10, 5/28, 5/30).
ENTRIES = [
    {"a1": datetime(2024, 5, 26), "a2": datetime(2024, 4, 2), "a3": datetime(2024, 5, 21)},
    {"a1": datetime(2024, 5, 26, 12), "a2": datetime(2024, 4, 5)},
    {"a2": datetime(2024, 4, 9, 6), "a1": datetime(2024, 5, 27, 10), "a4": datetime(2024, 5, 1)},
]
KTH_GOALS = [
    *[f'count(event "login") >= {k}' for k in (1, 2, 3, 5, 12, MAX_BOUNDED_K + 1)],
    'count(event "integration_connected") >= 1 or count(event "login") >= 2',
    'count(event "login") >= 4 and count(event "login" in last 30 days) >= 1',
]


@pytest.mark.parametrize("goal", KTH_GOALS)
@pytest.mark.parametrize("entries", ENTRIES, ids=["a2-1-before", "a1-1-a2-4-before", "a2-8"])
def test_goal_times_ranking_only_the_events_after_the_earliest_entry(
    warehouse: Warehouse, catalog: Catalog, goal: str, entries: dict[str, datetime]
) -> None:
    """Ticks and launch estimates pass the earliest entry of their candidates: a k-th event
    goal then ranks only the events after it, counting the unit's events before it from its
    totals. The times are the ones ranking all history gives, whether the k-th event came
    before the entry, between the earliest entry and the unit's own, or after."""
    candidates = ibis.memtable(
        pa.table(
            {
                "account_id": pa.array(list(entries), pa.string()),
                "entered_at": pa.array(list(entries.values()), pa.timestamp("us")),
            }
        )
    )

    def reached(since: datetime | None) -> dict[str, datetime]:
        table = goal_reached_at(
            parse_expression(goal), warehouse, T, candidates, catalog, entered_since=since
        )
        return {row["account_id"]: row["reached_at"] for row in rows(table, "account_id")}

    everything = reached(None)
    assert reached(min(entries.values())) == everything
    assert everything or goal.endswith((">= 12", f">= {MAX_BOUNDED_K + 1}"))  # not vacuous


def test_a_jobs_units(warehouse: Warehouse, reference: Warehouse) -> None:
    """The outcome facts of a job: one row per enrollment, its goal time as of the report."""

    def units(on: Warehouse) -> list[dict[str, Any]]:
        return rows(job_units(on, CONFORMANCE_JOB, as_of=MEASURED_AT), "unit_id")

    got = units(warehouse)
    assert got == units(reference)
    expected = {
        str(row["enrollment_id"]): row
        for row in conformance_enrollments()
        if isinstance(row["entered_at"], datetime) and row["entered_at"] <= MEASURED_AT
    }
    assert [row["unit_id"] for row in got] == sorted(expected)
    for row in got:
        completed = expected[row["unit_id"]]["completed_at"]
        reached = completed if completed is not None and completed <= MEASURED_AT else None  # type: ignore[operator]
        assert row["goal_at"] == reached, row["unit_id"]
        assert (
            row["segment"]
            == {
                "a1": "self_serve",
                "a2": "enterprise",
                "a3": "mid_market",
                "a4": "self_serve",
                "a5": "mid_market",
            }[row["account_id"]]
        )


def _measure(on: Warehouse) -> Any:
    options = MeasureOptions(
        horizon_days=HORIZON_DAYS,
        control="holdout",
        as_of=MEASURED_AT,
        weights={"holdout": 0.3, "treatment": 0.7},
        segment_by=("segment",),
    )
    return measure_units(job_units(on, CONFORMANCE_JOB, as_of=MEASURED_AT), options)


def test_sufficient_statistics_of_a_measurement(warehouse: Warehouse, reference: Warehouse) -> None:
    measured = _measure(warehouse)
    same(measured, _measure(reference))
    # By hand from the enrollments: matured units (entered 7 days before 5/20 at the latest) and
    # those that reached the goal within 7 days of entry.
    for arm, result in measured.arms.items():
        units = [
            row
            for row in conformance_enrollments()
            if row["arm"] == arm and row["entered_at"] <= MEASURED_AT  # type: ignore[operator]
        ]
        matured = [
            row
            for row in units
            if row["entered_at"] + timedelta(days=HORIZON_DAYS) <= MEASURED_AT  # type: ignore[operator]
        ]
        completed = [
            row
            for row in matured
            if row["completed_at"] is not None
            and row["completed_at"] <= row["entered_at"] + timedelta(days=HORIZON_DAYS)  # type: ignore[operator]
        ]
        assert (result.n, result.matured, result.completed) == (
            len(units),
            len(matured),
            len(completed),
        ), arm
