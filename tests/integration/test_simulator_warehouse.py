"""Simulated days load into a real warehouse as they are, and the audience language reads them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pyarrow.compute as pc
import pytest

from closeloop.data.compiler import matching_accounts
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression
from closeloop.simulate import GOAL_EVENT, CompanySimulator, DayBatch, scenario
from support import Backends

TABLES = ("accounts", "people", "subscriptions", "events")
CONFIG = scenario("default", n_accounts=150, days=25, arrival_days=20, seed=9)


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        yield connected


@pytest.fixture(scope="module")
def batches() -> list[DayBatch]:
    simulator = CompanySimulator(CONFIG)
    return [simulator.step(day) for day in CONFIG.dates()]


def test_every_batch_appends_to_the_canonical_tables(
    warehouse: Warehouse, batches: list[DayBatch]
) -> None:
    expected = dict.fromkeys(TABLES, 0)
    for batch in batches:
        for name in TABLES:
            table = getattr(batch, name)
            warehouse.append(name, table)  # empty days included: the schema must still match
            expected[name] += table.num_rows
    counts = {name: int(warehouse.table(name).count().execute()) for name in TABLES}
    assert counts == expected
    assert counts["accounts"] == CONFIG.n_accounts
    events = warehouse.table("events")
    goals = events.filter(events.name == GOAL_EVENT)
    per_account = goals.group_by("account_id").aggregate(n=goals.count())
    assert int(per_account.n.max().execute()) == 1
    stored = warehouse.table("accounts").order_by("account_id").limit(1).to_pyarrow()
    assert stored.to_pylist() == batches_first_account(batches)


def batches_first_account(batches: list[DayBatch]) -> list[dict[str, object]]:
    first = next(batch for batch in batches if batch.accounts.num_rows)
    rows: list[dict[str, object]] = first.accounts.slice(0, 1).to_pylist()
    return rows


def test_the_demo_audience_finds_new_accounts_without_the_goal(
    warehouse: Warehouse, batches: list[DayBatch]
) -> None:
    """The demo job's audience, compiled to SQL, agrees with a count made from the batches."""
    for batch in batches:
        for name in TABLES:
            warehouse.append(name, getattr(batch, name))
    as_of = datetime.combine(CONFIG.start + timedelta(days=15), datetime.min.time())
    audience = parse_expression(
        'signup_date within last 14 days and count(event "integration_connected") = 0'
    )
    matched = set(
        matching_accounts(audience, warehouse, as_of).to_pyarrow()["account_id"].to_pylist()
    )
    reached: set[str] = set()
    recent: set[str] = set()
    for batch in batches:
        goals = batch.events.filter(pc.equal(batch.events["name"], GOAL_EVENT))
        for row in goals.to_pylist():
            if row["timestamp"] <= as_of:
                reached.add(row["account_id"])
        for row in batch.accounts.to_pylist():
            if as_of - timedelta(days=14) <= row["created_at"] <= as_of:
                recent.add(row["account_id"])
    assert matched == recent - reached
    assert matched
