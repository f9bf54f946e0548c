"""A job's units with every extra column at once: attributes, value, churn and prior activity.

Each per-unit sum is left-joined onto units that already carry account attributes; a unit with
nothing to sum must keep its ``unit_id`` (an Ibis join-key resolution once made it null). The
accounts, events and churns are chosen so each column can be counted by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from closeloop.analysis.job_report import ValueOutcome, job_units
from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import Warehouse
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from support import Backends

DAY0 = datetime(2025, 3, 3)
AS_OF = DAY0 + timedelta(days=30)
JOB = "Nudge"
FILLERS = 20  # accounts with attributes, half with events, to widen the joins


def _day(days: float) -> datetime:
    return DAY0 + timedelta(days=days)


# unit, account, arm, entered (days after DAY0), job
ENROLLED = [
    ("u1", "A1", TREATMENT, 0.0, JOB),
    ("u2", "A2", HOLDOUT, 2.0, JOB),
    ("u3", "A1", TREATMENT, 10.0, JOB),  # A1 again, later: its own windows
    ("u4", "A3", TREATMENT, 4.0, JOB),  # A3 is not in accounts: no segment
    ("u5", "A2", TREATMENT, 31.0, JOB),  # after as_of: not a unit yet
    ("other", "A1", TREATMENT, 0.0, "Other job"),
    *[(f"f{i:02d}", f"F{i:02d}", (HOLDOUT, TREATMENT)[i % 2], 1.0 + i / 10, JOB)
      for i in range(FILLERS)],
]  # fmt: skip
UNITS = sorted(row[0] for row in ENROLLED if row[4] == JOB and row[3] <= 30)

# account, name, days after DAY0, value
EVENTS = [
    ("A1", "login", -31.0, None),  # before u1's 30-day window
    ("A1", "login", -30.0, None),  # its first instant: counted
    ("A1", "invoice_paid", -2.0, 30.0),  # an event of any name counts as activity
    ("A1", "login", -1.0, None),
    ("A1", "login", 0.0, None),  # at u1's entry: not before it
    ("A1", "invoice_paid", 1.0, 100.0),
    ("A1", "invoice_paid", 14.0, 50.0),  # the last instant of u1's horizon: in its value
    ("A1", "invoice_paid", 15.0, 70.0),
    ("A1", "invoice_paid", 31.0, 1_000.0),  # after as_of: nowhere
    ("A3", "login", 3.0, None),
    *[(f"F{i:02d}", "invoice_paid", -1.0, float(i)) for i in range(0, FILLERS, 2)],
]
# account, churned (days after DAY0)
CHURNS = [
    ("A1", -10.0),  # before both of A1's entries: ignored
    ("A1", 20.0),
    ("A1", 5.0),
    ("A3", 4.0),  # at the entry itself: counted
    ("A2", 31.0),  # after as_of: not yet known
]


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        enrollments: dict[str, list[object]] = {name: [] for name in ENROLLMENTS.column_names}
        for unit, account, arm, entered, job in ENROLLED:
            enrollments["enrollment_id"].append(unit)
            enrollments["job_name"].append(job)
            enrollments["job_version"].append(1)
            enrollments["account_id"].append(account)
            enrollments["person_id"].append(None)
            enrollments["arm"].append(arm)
            enrollments["entered_at"].append(_day(entered))
            enrollments["completed_at"].append(None)
            enrollments["exited_at"].append(None)
            enrollments["exit_reason"].append(None)
        connected.replace(
            ENROLLMENTS.name,
            pa.Table.from_pydict(enrollments, schema=ENROLLMENTS.ibis_schema().to_pyarrow()),
        )
        accounts = ["A1", "A2", *(f"F{i:02d}" for i in range(FILLERS))]
        connected.append(
            "accounts",
            connected.arrow_for(
                "accounts",
                {
                    "account_id": accounts,
                    "created_at": [_day(-60)] * len(accounts),
                    "segment": ["smb", "enterprise", *("smb" for _ in range(FILLERS))],
                },
            ),
        )
        connected.append(
            "events",
            connected.arrow_for(
                "events",
                {
                    "event_id": [f"e{i}" for i in range(len(EVENTS))],
                    "account_id": [e[0] for e in EVENTS],
                    "name": [e[1] for e in EVENTS],
                    "timestamp": [_day(e[2]) for e in EVENTS],
                    "value": [e[3] for e in EVENTS],
                },
            ),
        )
        connected.append(
            "churn_reasons",
            connected.arrow_for(
                "churn_reasons",
                {
                    "churn_id": [f"c{i}" for i in range(len(CHURNS))],
                    "account_id": [c[0] for c in CHURNS],
                    "churned_at": [_day(c[1]) for c in CHURNS],
                    "reason": ["price"] * len(CHURNS),
                },
            ),
        )
        yield connected


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_every_column_on_units_with_attributes(warehouse: Warehouse) -> None:
    units = job_units(
        warehouse,
        JOB,
        as_of=AS_OF,
        attributes=("segment",),
        value_outcome=ValueOutcome("invoice_paid", covariate_days=7),
        horizon_days=14,
        churn=True,
        prior_days=30,
    )
    counts = units.aggregate(
        rows=units.count(), distinct=units.unit_id.nunique(), missing=units.unit_id.isnull().sum()
    ).to_pyarrow()
    assert counts.to_pylist() == [{"rows": len(UNITS), "distinct": len(UNITS), "missing": 0}]

    rows = {row["unit_id"]: row for row in units.to_pyarrow().to_pylist()}
    assert sorted(rows) == UNITS
    u1, u2, u3, u4 = rows["u1"], rows["u2"], rows["u3"], rows["u4"]

    assert (u1["account_id"], u1["arm"], u1["segment"]) == ("A1", TREATMENT, "smb")
    assert (u2["segment"], u4["segment"]) == ("enterprise", None)

    # The first churn at or after entry: A1's churn 10 days before is ignored, its day-5 churn
    # comes before its day-20 one (whatever their order in the table); A2's is after as_of.
    assert u1["churned_at"] == _day(5)
    assert u3["churned_at"] == _day(20)
    assert u4["churned_at"] == _day(4)
    assert u2["churned_at"] is None

    # Events in [entered - 30 days, entered): u1 sees days -30, -2 and -1; u3 (day 10) sees
    # -2, -1, 0 and 1; A2 has no events; A3's login is before u4's entry.
    assert (u1["prior_events"], u3["prior_events"]) == (3.0, 4.0)
    assert (u2["prior_events"], u4["prior_events"]) == (0.0, 1.0)

    # invoice_paid in [entered, entered + 14 days]; the covariate over the 7 days before entry.
    assert (u1["value"], u1["covariate"]) == (150.0, 30.0)
    assert (u3["value"], u3["covariate"]) == (120.0, 0.0)
    assert (u2["value"], u2["covariate"], u4["value"]) == (0.0, 0.0, 0.0)

    # Fillers: the even ones paid i a day before entry (covariate, and one prior event).
    for i in range(FILLERS):
        row = rows[f"f{i:02d}"]
        paid = i % 2 == 0
        assert row["segment"] == "smb"
        assert row["covariate"] == (float(i) if paid else 0.0), i
        assert row["prior_events"] == (1.0 if paid else 0.0), i
        assert (row["value"], row["churned_at"]) == (0.0, None), i
