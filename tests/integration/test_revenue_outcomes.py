"""Revenue outcomes on hand-computed tables (DuckDB and PostgreSQL), the shared reference cases,
each policy switch on a table where it changes a number, and a simulated company against an
independent pandas computation of the same definitions.

Windows are [start, end); a row is active on day d when start_date <= d < end_date. The MRR
"before" a period is the MRR on its eve, "at the end" the MRR on its last day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.schemas.revenue_outcomes import (
    RevenuePolicy,
    RevenueRow,
)
from closeloop.services.outcomes_revenue import revenue
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "revenue_cases.json"
MARCH = (date(2020, 3, 1), date(2020, 4, 1))
Sub = tuple[str, str, str | None, float] | tuple[str, str, str | None, float, dict[str, Any]]


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


def _reference_subs() -> list[Sub]:
    return [
        (row["account_id"], row["start_date"], row["end_date"], float(row["mrr"]))
        for row in _reference()["subscriptions"]
    ]


@pytest.fixture
def workspace(backends: Backends, tmp_path: Path) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="revenue")
    with open_workspace(folder, environ=backends.environ()) as opened:
        yield opened


def load(
    workspace: Workspace,
    subs: list[Sub],
    *,
    accounts: dict[str, str] | None = None,
    opportunities: list[tuple[str, str, str, str, str, str | None]] = (),  # type: ignore[assignment]
) -> None:
    """Subscriptions (account, start, end, mrr[, properties]); accounts: id -> segment;
    opportunities: (id, account, kind, status, closed_at, source)."""
    warehouse = workspace.warehouse
    warehouse.replace(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [f"s{i}" for i in range(len(subs))],
                "account_id": [row[0] for row in subs],
                "start_date": [date.fromisoformat(row[1]) for row in subs],
                "end_date": [date.fromisoformat(row[2]) if row[2] else None for row in subs],
                "mrr": [row[3] for row in subs],
                "properties": [json.dumps(row[4]) if len(row) > 4 else None for row in subs],
            },
        ),
    )
    if accounts is not None:
        warehouse.replace(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {
                    "account_id": list(accounts),
                    "created_at": [datetime(2019, 12, 1)] * len(accounts),
                    "segment": list(accounts.values()),
                },
            ),
        )
    if opportunities:
        warehouse.replace(
            "opportunities",
            warehouse.arrow_for(
                "opportunities",
                {
                    "opportunity_id": [row[0] for row in opportunities],
                    "account_id": [row[1] for row in opportunities],
                    "kind": [row[2] for row in opportunities],
                    "status": [row[3] for row in opportunities],
                    "created_at": [datetime(2019, 12, 1)] * len(opportunities),
                    "closed_at": [datetime.fromisoformat(row[4]) for row in opportunities],
                    "source": [row[5] for row in opportunities],
                },
            ),
        )


def march(workspace: Workspace, **switches: Any) -> RevenueRow:
    return revenue(workspace, *MARCH, policy=RevenuePolicy(**switches)).total


def close(got: float | None, expected: float, tolerance: float = 1e-6) -> bool:
    return got is not None and abs(got - expected) <= tolerance


# -- the shared reference cases ------------------------------------------------------------------


def test_reference_cases_pass_under_both_methods(workspace: Workspace) -> None:
    case = _reference()
    load(workspace, _reference_subs())
    window = (
        date.fromisoformat(case["window"]["start"]),
        date.fromisoformat(case["window"]["end"]),
    )
    assert window == MARCH
    endpoint = revenue(workspace, *window, policy=RevenuePolicy(method="endpoint")).total
    expected = case["expected_endpoint_method"]
    assert endpoint.starting_accounts == expected["starting_accounts"]
    assert endpoint.starting_mrr == expected["starting_mrr"]
    # The start cohort's MRR at the end: starting - churn - contraction + expansion.
    cohort_end = (
        endpoint.starting_mrr
        - endpoint.churned_mrr
        - endpoint.contraction_mrr
        + endpoint.expansion_mrr
    )
    assert cohort_end == expected["ending_mrr_of_start_cohort"]
    for name in (
        "customer_churn_rate",
        "nrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "gross_mrr_churn_rate",
        "grr",
    ):
        assert close(getattr(endpoint, name), expected[name]), name
    event = revenue(workspace, *window, policy=RevenuePolicy(method="event")).total
    for name, value in case["expected_event_method"].items():
        if name != "note":
            assert close(getattr(event, name), value), name
    # Both methods: every account's movements add up to the MRR at the end (E new 70 is in it).
    for row in (endpoint, event):
        assert row.ending_mrr == 310.0
        assert row.ending_mrr == (
            row.starting_mrr
            + row.new_mrr
            + row.expansion_mrr
            + row.reactivation_mrr
            - row.contraction_mrr
            - row.churned_mrr
        )


@pytest.mark.parametrize("method", ["endpoint", "event"])
def test_published_mrr_churn_example(workspace: Workspace, method: str) -> None:
    """ChartMogul's example: starting 100, churn 10, contraction 10, expansion 10.
    X 10 -> 0 (churn), Y 50 -> 40 (contraction), Z 40 -> 50 (expansion); changes on 03-15."""
    example = _reference()["published_example"]
    load(
        workspace,
        [
            ("X", "2020-01-01", "2020-03-15", 10.0),
            ("Y", "2020-01-01", "2020-03-15", 50.0),
            ("Y", "2020-03-15", None, 40.0),
            ("Z", "2020-01-01", "2020-03-15", 40.0),
            ("Z", "2020-03-15", None, 50.0),
        ],
    )
    row = march(workspace, method=method)
    for name, value in example["inputs"].items():
        assert getattr(row, name) == value, name
    for name, value in example["expected"].items():
        assert close(getattr(row, name), value), name


@pytest.mark.parametrize("method", ["endpoint", "event"])
def test_published_customer_churn_example(workspace: Workspace, method: str) -> None:
    """100 customers at the start, 10 of them cancel; one account joins and cancels in March:
    10 / 100 = 0.10 (the joined-and-churned one is excluded by default)."""
    example = _reference()["published_customer_churn_example"]
    subs: list[Sub] = [
        (f"c{i}", "2020-01-01", "2020-03-20" if i < 10 else None, 10.0) for i in range(100)
    ]
    subs.append(("late", "2020-03-05", "2020-03-25", 10.0))
    load(workspace, subs)
    row = march(workspace, method=method)
    assert row.starting_accounts == example["inputs"]["customers_at_start"]
    assert close(row.customer_churn_rate, example["expected"]["customer_churn_rate"])
    assert row.churned_accounts == 10
