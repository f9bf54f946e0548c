"""The conformance dataset: one small deterministic company loaded into every backend.

It is the example dataset of docs/expressions.md (tests/support.py: accounts a1-a5, people p1-p6,
23 events, four enrollments) plus what the other cases need:

- one more event: a1's invoice of 2024-05-30 whose JSON ``amount`` property is the number 1;

- a job "Conformance" with 120 enrollments spread over a1-a5, entered every 12 hours from
  2024-04-01, in arm ``holdout`` when ``i % 10 < 3``; a treated unit reaches the goal when
  ``i % 3 != 0`` (after ``i % 7 + 1`` days), a holdout unit when ``i % 2 == 0`` (after
  ``i % 9 + 2`` days), so every arm has completions, non-completions and censoring;
- subscriptions and opportunities for revenue (March 2024, hand-computed in the revenue test);
- ``crm_accounts``, a source table in another shape (integer ids, text times, other names) for
  sources read in place.

No randomness: the same rows on every backend, so results must be identical.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from closeloop.data.warehouse import Warehouse
from support import load_example_dataset

CONFORMANCE_JOB = "Conformance"
CONFORMANCE_UNITS = 120
FIRST_ENTRY = datetime(2024, 4, 1)


def conformance_enrollments() -> list[dict[str, object]]:
    rows = []
    for i in range(CONFORMANCE_UNITS):
        entered = FIRST_ENTRY + timedelta(hours=12 * i)
        holdout = i % 10 < 3
        if holdout:
            completed = entered + timedelta(days=i % 9 + 2) if i % 2 == 0 else None
        else:
            completed = entered + timedelta(days=i % 7 + 1) if i % 3 != 0 else None
        rows.append(
            {
                "enrollment_id": f"c{i:03d}",
                "job_name": CONFORMANCE_JOB,
                "job_version": 1,
                "account_id": f"a{i % 5 + 1}",
                "person_id": None,
                "arm": "holdout" if holdout else "treatment",
                "entered_at": entered,
                "completed_at": completed,
                "exited_at": None,
                "exit_reason": None,
            }
        )
    return rows


# account, start, end, mrr, properties (revenue in March 2024; see test_backend_revenue.py)
SUBSCRIPTIONS: list[tuple[str, date, date | None, float, dict[str, str] | None]] = [
    ("a2", date(2024, 1, 1), date(2024, 3, 15), 1000.0, None),
    ("a2", date(2024, 3, 15), None, 1500.0, None),
    ("a3", date(2024, 2, 1), date(2024, 3, 10), 400.0, None),
    ("a3", date(2024, 3, 10), None, 300.0, None),
    ("a4", date(2024, 1, 1), date(2024, 3, 20), 200.0, None),
    ("a1", date(2024, 3, 5), None, 100.0, None),
    ("a5", date(2023, 11, 1), date(2024, 1, 31), 250.0, None),
    ("a5", date(2024, 3, 25), None, 250.0, {"note": "won back"}),
]
# id, account, kind, status, closed_at, source
OPPORTUNITIES = [
    ("o1", "a2", "expansion", "won", datetime(2024, 3, 10), "cs_sourced"),
    ("o2", "a3", "expansion", "lost", datetime(2024, 3, 1), "sales"),
]


def load_conformance_dataset(warehouse: Warehouse) -> None:
    load_example_dataset(warehouse)
    # A JSON property holding a number (``amount``), for the typed comparison of properties.
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": ["x1"],
                "account_id": ["a1"],
                "person_id": ["p1"],
                "name": ["invoice_paid"],
                "timestamp": [datetime(2024, 5, 30, 8)],
                "properties": ['{"method": "check", "amount": 1}'],
            },
        ),
    )
    enrollments = conformance_enrollments()
    warehouse.append(
        "closeloop_enrollments",
        warehouse.arrow_for(
            "closeloop_enrollments",
            {name: [row[name] for row in enrollments] for name in enrollments[0]},
        ),
    )
    warehouse.append(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [f"s{i}" for i in range(len(SUBSCRIPTIONS))],
                "account_id": [row[0] for row in SUBSCRIPTIONS],
                "start_date": [row[1] for row in SUBSCRIPTIONS],
                "end_date": [row[2] for row in SUBSCRIPTIONS],
                "mrr": [row[3] for row in SUBSCRIPTIONS],
                "properties": [json.dumps(row[4]) if row[4] else None for row in SUBSCRIPTIONS],
            },
        ),
    )
    warehouse.append(
        "opportunities",
        warehouse.arrow_for(
            "opportunities",
            {
                "opportunity_id": [row[0] for row in OPPORTUNITIES],
                "account_id": [row[1] for row in OPPORTUNITIES],
                "kind": [row[2] for row in OPPORTUNITIES],
                "status": [row[3] for row in OPPORTUNITIES],
                "created_at": [datetime(2024, 2, 1)] * len(OPPORTUNITIES),
                "closed_at": [row[4] for row in OPPORTUNITIES],
                "source": [row[5] for row in OPPORTUNITIES],
                "amount": [500.0, 900.0],
            },
        ),
    )
    # A CRM export in its own shape: integer ids, times as ISO text with offsets, other names.
    warehouse.replace(
        "crm_accounts",
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "company": ["Acme", "Globex", "Initech"],
                "signed_up": [
                    "2024-05-25T10:00:00Z",
                    "2024-03-01T02:00:00+02:00",
                    "2024-05-20 08:00:00",
                ],
                "tier": ["starter", "enterprise", None],
                "seats": pa.array([10, 5000, None], pa.int64()),
                "health": pa.array([0.9, None, 0.4], pa.float64()),
            }
        ),
    )


CONFORMANCE_PROJECT = {
    "closeloop.yaml": "name: conformance\njobs: []\n",
    "attributes.yaml": """\
attributes:
  - name: logins_7d
    event: login
    function: count
    window_days: 7
  - name: ever_connected
    event: integration_connected
    function: exists
  - name: first_login
    event: login
    function: first
  - name: last_login
    event: login
    function: last
  - name: card_revenue
    event: invoice_paid
    function: sum
    where: {method: card}
  - name: admins
    rollup: count
    people: role = "admin"
  - name: person_logins
    entity: person
    event: login
    function: count
  - name: most_person_logins
    rollup: max
    of: person_logins
  - name: days_since_signup
    days_since: created_at
  - name: arr_per_employee
    ratio: {numerator: arr, denominator: employees}
""",
    "cohorts.yaml": """\
cohorts:
  - name: Active
    criteria: count(event "login" in last 7 days) >= 1
  - name: Admins
    target: person
    criteria: role = "admin"
""",
    "stages.yaml": """\
stages:
  - name: Onboarding
    entry: signup_date within last 120 days
    entered_at: signup_date
    exit: {after_days: 10, when_objectives_complete: true}
    objectives:
      - name: Connected
        completion: count(event "integration_connected") >= 1
      - name: Three logins
        completion: count(event "login") >= 3
    markers:
      - name: Active
        criteria: count(event "login" in last 7 days) >= 1
""",
}


def write_conformance_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CONFORMANCE_PROJECT.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
