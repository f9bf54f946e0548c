"""Helpers shared by tests (importable because pytest puts ``tests/`` on the path)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from closeloop.data.warehouse import Warehouse


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
    events = [
        ("a1", "login", datetime(2024, 5, 26, 9)),
        ("a1", "login", datetime(2024, 5, 27, 9)),
        ("a1", "login", datetime(2024, 5, 31, 9)),
        ("a1", "integration_connected", datetime(2024, 5, 28, 15)),
        *[("a2", "login", datetime(2024, 4, day, 12)) for day in range(1, 11)],
        ("a2", "login", datetime(2024, 5, 28, 12)),
        ("a2", "login", datetime(2024, 5, 30, 12)),
        ("a3", "login", datetime(2024, 5, 21, 12)),
        ("a3", "integration_connected", datetime(2024, 6, 3, 12)),
        ("a5", "integration_connected", datetime(2024, 6, 16, 12)),
    ]
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{i}" for i in range(len(events))],
                "account_id": [e[0] for e in events],
                "name": [e[1] for e in events],
                "timestamp": [e[2] for e in events],
            },
        ),
    )
