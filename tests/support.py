"""Helpers shared by tests (importable because pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from closeloop.data.warehouse import Warehouse
from closeloop.engine import tick as engine_tick
from closeloop.engine.tick import TickResult
from closeloop.services.project import init_project


@dataclass(frozen=True)
class Backends:
    """Where a test's warehouse and state store live."""

    name: str
    warehouse_url: str
    state_url: str

    def environ(self) -> dict[str, str]:
        return {
            "CLOSELOOP_WAREHOUSE_URL": self.warehouse_url,
            "CLOSELOOP_STATE_URL": self.state_url,
        }


def embedded_backends(folder: Path) -> Backends:
    return Backends(
        "embedded",
        f"duckdb:///{folder / 'warehouse.duckdb'}",
        f"sqlite:///{folder / 'state.sqlite'}",
    )


EXAMPLE_AS_OF = datetime(2024, 6, 1)


def load_example_dataset(warehouse: Warehouse) -> None:
    """The small dataset of docs/expressions.md ("The example dataset")."""
    warehouse.ensure_tables()
    accounts = [
        # id, created_at, segment, plan, arr, employees, region, owner, renewal, name
        (
            "a1",
            datetime(2024, 5, 25, 10),
            "self_serve",
            "starter",
            1200.0,
            10,
            "na",
            None,
            None,
            "Acme Robotics",
        ),
        (
            "a2",
            datetime(2024, 3, 1),
            "enterprise",
            "enterprise",
            90000.0,
            5000,
            "emea",
            "ada",
            date(2025, 3, 1),
            "Globex",
        ),
        (
            "a3",
            datetime(2024, 5, 20, 8),
            "mid_market",
            "pro",
            15000.0,
            200,
            "na",
            "grace",
            date(2025, 5, 20),
            'Initech "Labs"',
        ),
        ("a4", datetime(2024, 1, 10), "self_serve", None, None, 3, "apac", None, None, "Umbrella"),
        ("a5", datetime(2024, 6, 15), "mid_market", "pro", 20000.0, 50, "na", "ada", None, "Hooli"),
    ]
    names = (
        "account_id",
        "created_at",
        "segment",
        "plan",
        "arr",
        "employees",
        "region",
        "owner",
        "renewal_date",
        "name",
    )
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts", {name: [row[i] for row in accounts] for i, name in enumerate(names)}
        ),
    )
    # person, account, email, role, created_at
    people = [
        ("p1", "a1", "ada@acme.test", "admin", datetime(2024, 5, 25, 10)),
        ("p2", "a1", "bob@acme.test", "member", datetime(2024, 5, 26)),
        ("p3", "a2", "cy@globex.test", "admin", datetime(2024, 3, 1)),
        ("p4", "a2", "di@globex.test", "admin", datetime(2024, 3, 2)),
        ("p5", "a3", "ed@initech.test", "member", datetime(2024, 5, 20, 8)),
        ("p6", "a5", "fy@hooli.test", "admin", datetime(2024, 6, 15)),
    ]
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                name: [row[i] for row in people]
                for i, name in enumerate(("person_id", "account_id", "email", "role", "created_at"))
            },
        ),
    )
    # account, person, event, timestamp, value, properties
    events: list[tuple[str, str, str, datetime, float | None, str | None]] = [
        ("a1", "p1", "login", datetime(2024, 5, 26, 9), None, None),
        ("a1", "p1", "login", datetime(2024, 5, 27, 9), None, None),
        ("a1", "p2", "login", datetime(2024, 5, 31, 9), None, None),
        ("a1", "p1", "integration_connected", datetime(2024, 5, 28, 15), None, None),
        ("a1", "p2", "report_viewed", datetime(2024, 5, 29, 10), None, '{"source": "email"}'),
        *[("a2", "p3", "login", datetime(2024, 4, day, 12), None, None) for day in range(1, 11)],
        ("a2", "p4", "login", datetime(2024, 5, 28, 12), None, None),
        ("a2", "p3", "login", datetime(2024, 5, 30, 12), None, None),
        ("a2", "p3", "invoice_paid", datetime(2024, 5, 10), 500.0, '{"method": "card"}'),
        ("a2", "p3", "invoice_paid", datetime(2024, 5, 20), 700.0, '{"method": "wire"}'),
        ("a3", "p5", "login", datetime(2024, 5, 21, 12), None, None),
        ("a3", "p5", "invoice_paid", datetime(2024, 5, 25), 100.0, '{"method": "card"}'),
        ("a3", "p5", "integration_connected", datetime(2024, 6, 3, 12), None, None),
        ("a5", "p6", "integration_connected", datetime(2024, 6, 16, 12), None, None),
    ]
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{i}" for i in range(len(events))],
                "account_id": [e[0] for e in events],
                "person_id": [e[1] for e in events],
                "name": [e[2] for e in events],
                "timestamp": [e[3] for e in events],
                "value": [e[4] for e in events],
                "properties": [e[5] for e in events],
            },
        ),
    )
    # job, account, person, entered, completed, exited, reason
    enrollments = [
        ("Integration nudge", "a1", None, datetime(2024, 5, 26), datetime(2024, 5, 28, 15), None),
        ("Integration nudge", "a3", None, datetime(2024, 5, 21), None, None),
        ("Integration nudge", "a4", None, datetime(2024, 2, 1), None, datetime(2024, 3, 2)),
        ("Admin onboarding", "a1", "p1", datetime(2024, 5, 26), None, None),
    ]
    warehouse.append(
        "closeloop_enrollments",
        warehouse.arrow_for(
            "closeloop_enrollments",
            {
                "enrollment_id": [f"n{i}" for i in range(len(enrollments))],
                "job_name": [e[0] for e in enrollments],
                "job_version": [1] * len(enrollments),
                "account_id": [e[1] for e in enrollments],
                "person_id": [e[2] for e in enrollments],
                "arm": ["treatment"] * len(enrollments),
                "entered_at": [e[3] for e in enrollments],
                "completed_at": [e[4] for e in enrollments],
                "exited_at": [e[5] for e in enrollments],
                "exit_reason": ["timeout" if e[5] else None for e in enrollments],
            },
        ),
    )


# -- simulated projects ----------------------------------------------------------------------------

VARIANT_JOB = """\
  - name: Integration nudge
    audience: |
      signup_date within last 14 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 20
    holdout: 0.25
    variants:
      - name: plain
        steps:
          - send: email
            subject: "Connect {{ account.name }}"
            template: integration_nudge
          - wait_days: 4
          - send: email
            subject: "Still time"
            template: integration_nudge
      - name: video
        steps:
          - send: email
            subject: "Watch: connect in two minutes"
            template: integration_nudge
    hypothesis:
      expected_effect: Nudged accounts connect an integration sooner.
      primary_metric: completion_rate
      horizon_days: 14
"""
"""A job with two variants (an email and a reminder; one email), a 25% holdout, horizon 14 days."""


def project_with_jobs(folder: Path, *jobs: str) -> Path:
    """A `closeloop init` project in ``folder`` whose jobs.yaml holds exactly ``jobs``."""
    init_project(folder, name=folder.name)
    (folder / "jobs.yaml").write_text("jobs:\n" + "".join(jobs), encoding="utf-8")
    return folder


def assert_same_json(got: Any, expected: Any, *, tolerance: float = 1e-12, path: str = "") -> None:
    """Equal JSON structures; floats equal to a relative ``tolerance``."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            assert_same_json(got[key], expected[key], tolerance=tolerance, path=f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_json(a, b, tolerance=tolerance, path=f"{path}[{index}]")
    elif isinstance(expected, float) and isinstance(got, float):
        assert math.isclose(got, expected, rel_tol=tolerance, abs_tol=1e-12), (path, got, expected)
    else:
        assert got == expected, (path, got, expected)


def run_tick(*args: Any, **kwargs: Any) -> TickResult:
    """The engine's tick, launching the job on its first tick (engine tests start from drafts)."""
    kwargs.setdefault("launch", True)
    kwargs.setdefault("unsubscribe_url", test_unsubscribe_url)
    return engine_tick.run_tick(*args, **kwargs)


def test_unsubscribe_url(account_id: str) -> str:
    return f"https://example.com/unsubscribe?token=test-{account_id}"
