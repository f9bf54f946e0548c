"""A hand-built company for the stage view and the signals (docs/stages.md), as of T = 2024-06-01.

Stage "Onboarding": entry ``signup_date within last 60 days`` (entered at signup), exit after 30
days or when both objectives are complete. Objectives: "Connected" (first
``integration_connected``) and "Invited" (first ``teammate_invited``). Class thresholds of the
stage: ahead 0.25, behind 0.5, stuck 0.75, stuck_days 10.

Stage accounts a01-a14 (e = days since signup; objective days after entry; all at midnight):

    acct  e   Connected  Invited   at T
    a01  40       2          5     completed on day 5 (left)
    a02  35      10          -     left incomplete on day 30
    a03  25       6          4     completed on day 6 (left)
    a04  20       3          8     completed on day 8 (left)
    a05  20      12          -     in stage
    a06  18      14          -     in stage
    a07  15       1          -     in stage
    a08  12       -          2     in stage
    a09   5       -          -     in stage
    a10   3       1          -     in stage
    a11  22       4          7     completed on day 7 (left)
    a12  45      20          -     left incomplete on day 30
    a13  28       -          -     in stage
    a14  22       -         17     in stage

Older accounts b1-b5 (created 200 days before T, never in the stage) carry the usage signals:
logins in (T-120d, T-60d] ("earlier") and (T-60d, T] ("recent"), the last one at "last seen":

    acct  earlier  recent  change  last seen  renewal   ARR
    b1      10       2     -0.8     3 days    T+30d    10,000
    b2      10       8     -0.2    20 days    T+90d    20,000
    b3      10       5     -0.5     1 day     T+45d    30,000
    b4      10      10      0.0    20 days    T+10d    40,000
    b5      10      12     +0.2     1 day     T+20d    50,000
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from closeloop.data.warehouse import Warehouse
from closeloop.services.project import init_project

T = datetime(2024, 6, 1)

STAGES = """\
stages:
  - name: Onboarding
    entry: signup_date within last 60 days
    entered_at: signup_date
    exit:
      after_days: 30
      when_objectives_complete: true
    objectives:
      - name: Connected
        completion: count(event "integration_connected") >= 1
      - name: Invited
        completion: count(event "teammate_invited") >= 1
    classes:
      ahead: 0.25
      behind: 0.5
      stuck: 0.75
      stuck_days: 10
"""

# account -> (days since signup, day Connected, day Invited)
STAGE_ACCOUNTS: dict[str, tuple[int, int | None, int | None]] = {
    "a01": (40, 2, 5),
    "a02": (35, 10, None),
    "a03": (25, 6, 4),
    "a04": (20, 3, 8),
    "a05": (20, 12, None),
    "a06": (18, 14, None),
    "a07": (15, 1, None),
    "a08": (12, None, 2),
    "a09": (5, None, None),
    "a10": (3, 1, None),
    "a11": (22, 4, 7),
    "a12": (45, 20, None),
    "a13": (28, None, None),
    "a14": (22, None, 17),
}
# account -> (earlier logins, recent logins, days since the last, days to renewal, ARR)
USAGE_ACCOUNTS: dict[str, tuple[int, int, int, int, float]] = {
    "b1": (10, 2, 3, 30, 10_000.0),
    "b2": (10, 8, 20, 90, 20_000.0),
    "b3": (10, 5, 1, 45, 30_000.0),
    "b4": (10, 10, 20, 10, 40_000.0),
    "b5": (10, 12, 1, 20, 50_000.0),
}
OWNERS = {"a05": "ada", "a06": "ada", "a07": "grace", "a08": "grace", "a13": "ada", "a14": "lin"}


def journey_project(folder: Path) -> Path:
    """A new project with the Onboarding stage (and the template's job)."""
    init_project(folder, "journey")
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "stages: [stages.yaml]\n")
    (folder / "stages.yaml").write_text(STAGES)
    return folder


def load_journey_dataset(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    ids: list[str] = []
    created: list[datetime] = []
    names: list[str] = []
    owners: list[str | None] = []
    arrs: list[float] = []
    renewals: list[date | None] = []
    events: list[tuple[str, str, datetime]] = []
    for index, (account, (entered, connected, invited)) in enumerate(STAGE_ACCOUNTS.items()):
        signup = T - timedelta(days=entered)
        ids.append(account)
        created.append(signup)
        names.append(f"Stage {account}")
        owners.append(OWNERS.get(account))
        arrs.append(1000.0 * (index + 1))
        renewals.append(None)
        for event, day in (("integration_connected", connected), ("teammate_invited", invited)):
            if day is not None:
                events.append((account, event, signup + timedelta(days=day)))
    for account, (earlier, recent, last_seen, renewal, arr) in USAGE_ACCOUNTS.items():
        ids.append(account)
        created.append(T - timedelta(days=200))
        names.append(f"Usage {account}")
        owners.append("ada")
        arrs.append(arr)
        renewals.append(date(2024, 6, 1) + timedelta(days=renewal))
        events.extend((account, "login", T - timedelta(days=70 + i)) for i in range(earlier))
        # The latest recent login is `last_seen` days before T; the others a day apart before it.
        events.extend((account, "login", T - timedelta(days=last_seen + i)) for i in range(recent))
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "created_at": created,
                "name": names,
                "owner": owners,
                "arr": arrs,
                "renewal_date": renewals,
            },
        ),
    )
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{i}" for i in range(len(events))],
                "account_id": [e[0] for e in events],
                "person_id": [None] * len(events),
                "name": [e[1] for e in events],
                "timestamp": [e[2] for e in events],
            },
        ),
    )
