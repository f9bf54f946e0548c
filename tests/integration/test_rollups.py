"""Per-unit event totals (closeloop.data.rollups) give exactly what a full evaluation gives.

A seeded random walk: rounds of new events appended (random events after the last tick, late
ones dated days before it, or none), each followed by a tick time later than the last and a
refresh. At every round the totals, combined with the events since them, must equal the raw
aggregates (count, first, last, sum of value; per account or per person) and an expression and a
goal time must match with and without the rollup. The walk must have taken both refresh paths
(incremental, and a rebuild after late events). Runs on DuckDB and, when available, PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa
import pytest

from closeloop.data.compiler import goal_reached_at, matching_units
from closeloop.data.rollups import Rollup, refresh
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, parse_expression
from support import Backends

START = datetime(2024, 3, 1)
ACCOUNTS = [f"a{index:02d}" for index in range(12)]
PEOPLE = {account: [f"{account}-p{k}" for k in range(2)] for account in ACCOUNTS}
NAMES = ("login", "export", "invite")
# What arrives before each tick: new events after the last tick, nothing, or late events.
ARRIVALS = ["fresh", "fresh", "none", "late", "fresh", "fresh", "late", "fresh", "none", "fresh"]
EXPRESSIONS = [
    ('count(event "login") >= 3', Entity.ACCOUNT),
    ('count(event "export") = 0 and count(event "login" in last 5 days) >= 1', Entity.ACCOUNT),
    ('first(event "invite") within last 10 days', Entity.ACCOUNT),
    ('last(event "login") more than 2 days ago or count(event "invite") >= 2', Entity.ACCOUNT),
    ('count(event "login") >= 2 and last(event "export") within last 4 days', Entity.PERSON),
]
GOALS = ['count(event "export") >= 2', 'count(event "invite") >= 1 and count(event "login") >= 4']


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    connected = Warehouse.connect(backends.warehouse_url)
    connected.ensure_tables()
    connected.append(
        "accounts",
        connected.arrow_for(
            "accounts",
            {"account_id": ACCOUNTS, "name": ACCOUNTS, "created_at": [START] * len(ACCOUNTS)},
        ),
    )
    people = [(account, person) for account, names in PEOPLE.items() for person in names]
    connected.append(
        "people",
        connected.arrow_for(
            "people",
            {
                "person_id": [person for _, person in people],
                "account_id": [account for account, _ in people],
                "created_at": [START] * len(people),
            },
        ),
    )
    try:
        yield connected
    finally:
        connected.close()


def _events(
    rng: random.Random, count: int, earliest: datetime, latest: datetime, serial: int
) -> dict[str, list[Any]]:
    span = (latest - earliest).total_seconds()
    rows: dict[str, list[Any]] = {
        name: [] for name in ("event_id", "account_id", "person_id", "name", "timestamp", "value")
    }
    for index in range(count):
        account = rng.choice(ACCOUNTS)
        rows["event_id"].append(f"e{serial}-{index}")
        rows["account_id"].append(account)
        rows["person_id"].append(rng.choice([*PEOPLE[account], None]))
        rows["name"].append(rng.choice(NAMES))
        # Whole seconds, and now and then exactly midnight: the edges of sealed days.
        moment = earliest + timedelta(seconds=int(rng.random() * span))
        rows["timestamp"].append(
            moment.replace(hour=0, minute=0, second=0) if index % 7 == 0 else moment
        )
        rows["value"].append(rng.choice([None, 1.5, 2.0, 10.0]))
    return rows


def _append(warehouse: Warehouse, rows: dict[str, list[Any]]) -> None:
    warehouse.append("events", warehouse.arrow_for("events", rows))


def _raw(warehouse: Warehouse, event: str, key: str, as_of: datetime) -> dict[str, tuple[Any, ...]]:
    events = warehouse.table("events")
    events = events.filter(events.name == event, events.timestamp <= ibis.literal(as_of))
    if key == "person_id":
        events = events.filter(events.person_id.notnull())
    rows = (
        events.group_by(key)
        .aggregate(
            count=events.count(),
            first=events.timestamp.min(),
            last=events.timestamp.max(),
            sum=events.value.sum(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    return {row[key]: (row["count"], row["first"], row["last"], row["sum"]) for row in rows}


def _rolled(
    warehouse: Warehouse, rollup: Rollup, event: str, key: str, as_of: datetime
) -> dict[str, tuple[Any, ...]]:
    found: dict[str, dict[str, Any]] = {}
    for measure in ("count", "first", "last", "sum"):
        table = rollup.per_unit(warehouse, event, key, as_of, measure).to_pyarrow().to_pylist()
        for row in table:
            found.setdefault(row[key], {})[measure] = row["value"]
    return {
        unit: (values["count"], values["first"], values["last"], values["sum"])
        for unit, values in found.items()
    }


def _units(table: Any, key: str) -> list[Any]:
    return sorted(table.to_pyarrow().to_pylist(), key=lambda row: str(row[key]))


def test_totals_with_the_events_since_equal_a_full_evaluation(warehouse: Warehouse) -> None:
    rng = random.Random(20261207)
    _append(warehouse, _events(rng, 150, START, START + timedelta(days=12), 0))
    at = START + timedelta(days=12, hours=5)
    paths: set[str] = set()
    previous: Rollup | None = None
    for round_, kind in enumerate(ARRIVALS, start=1):
        tick = at + timedelta(hours=rng.choice([1, 7, 24, 30, 48]))
        if kind == "fresh":  # what happened since the last tick
            _append(warehouse, _events(rng, rng.randint(1, 25), at, tick, round_))
        elif kind == "late":  # a feed that delivered days late
            _append(
                warehouse, _events(rng, 3, at - timedelta(days=6), at - timedelta(days=2), round_)
            )
        at = tick
        rollup = refresh(warehouse, min_events=0)
        assert rollup is not None and rollup.covers(at)
        if previous is not None and rollup.totals_table != previous.totals_table:
            paths.add("rebuilt" if rollup.rebuilt else "incremental")
        previous = rollup
        # One event and unit kind, one expression and one goal per round (compiling is slow).
        event, key = rng.choice(NAMES), rng.choice(["account_id", "person_id"])
        rolled_totals = _rolled(warehouse, rollup, event, key, at)
        assert rolled_totals == _raw(warehouse, event, key, at), (round_, event, key)
        text, target = EXPRESSIONS[round_ % len(EXPRESSIONS)]
        expression = parse_expression(text)
        key = "person_id" if target == Entity.PERSON else "account_id"
        full = _units(matching_units(expression, warehouse, at, target=target), key)
        rolled = matching_units(expression, warehouse, at, target=target, rollup=rollup)
        assert _units(rolled, key) == full, (round_, text)
        entered = at - timedelta(days=3)
        candidates = ibis.memtable(
            pa.table(
                {
                    "account_id": pa.array(ACCOUNTS, pa.string()),
                    "entered_at": pa.array([entered] * len(ACCOUNTS), pa.timestamp("us")),
                }
            )
        )
        goal = parse_expression(GOALS[round_ % len(GOALS)])
        full = _units(goal_reached_at(goal, warehouse, at, candidates), "account_id")
        rolled = goal_reached_at(goal, warehouse, at, candidates, rollup=rollup)
        assert _units(rolled, "account_id") == full, (round_, goal)
    assert {"incremental", "rebuilt"} <= paths, paths
