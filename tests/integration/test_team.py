"""Team outcomes on a small hand-counted company, on DuckDB and PostgreSQL alike.

The window is [2024-01-01, 2024-04-01). Books by ``owner``: ana has a1 and a2, ben has a3
(a5 is ben's too but created after the window), a4 has no owner. Every expected number below
is counted by hand from the rows, with the reasoning next to it.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.analysis.team import UNASSIGNED
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.errors import LocatedError, NotFoundError
from closeloop.schemas.team import Share, TeamOutcomes
from closeloop.services.outcomes_team import team_outcomes
from closeloop.services.project import init_project, open_workspace
from support import Backends

START, END = datetime(2024, 1, 1), datetime(2024, 4, 1)
CREATED = datetime(2023, 6, 1)

ACCOUNTS = [  # account, owner, created_at, properties
    ("a1", "ana", CREATED, {"executive_sponsor": True, "reference": "yes"}),
    ("a2", "ana", CREATED, {"executive_sponsor": False}),
    ("a3", "ben", CREATED, {"reference": True}),
    ("a4", None, CREATED, None),
    ("a5", "ben", datetime(2024, 5, 1), {"executive_sponsor": True}),  # created after the end
]
PEOPLE = [("p1", "a1"), ("p2", "a1"), ("p3", "a2"), ("p4", "a3"), ("p5", "a3"), ("p6", "a4")]
ACTIVITIES = [  # id, account, person, owner, kind, occurred_at
    ("act1", "a1", "p1", "ana", "call", datetime(2024, 1, 10)),
    ("act2", "a1", "p1", "ana", "email", datetime(2024, 2, 10)),
    ("act3", "a2", None, "ana", "email", datetime(2024, 3, 31, 23)),
    ("act4", "a3", "p4", "ben", "qbr", datetime(2024, 2, 1)),
    ("act5", "a3", "p4", "ana", "call", datetime(2023, 12, 31)),  # before the window
    ("act6", "a4", None, None, "email", datetime(2024, 1, 5)),  # no owner
]
EVENTS = [  # id, account, person, timestamp
    ("e1", "a1", "p2", datetime(2024, 3, 1)),
    ("e2", "a2", "p3", datetime(2024, 4, 1)),  # at the end: outside
    ("e3", "a3", "p5", datetime(2024, 1, 1)),  # at the start: inside
    ("e4", "a3", "p1", datetime(2024, 2, 1)),  # p1 is a1's person, not a3's: not a3's contact
]
SUBSCRIPTIONS = [  # id, account, start, end, mrr
    ("s1", "a1", date(2023, 1, 1), None, 100.0),
    ("s2", "a1", date(2024, 2, 1), None, 50.0),
    ("s3", "a2", date(2023, 6, 1), date(2024, 3, 1), 200.0),
    ("s4", "a3", date(2023, 1, 1), None, 300.0),
    ("s5", "a3", date(2023, 1, 1), date(2024, 2, 15), 40.0),
    ("s6", "a4", date(2024, 2, 1), None, 80.0),
]
CHURNS = [  # id, account, churned_at, reason, controllable
    ("c1", "a2", datetime(2024, 3, 1, 10), "price", False),  # day before: s3 → 200 lost
    ("c2", "a3", datetime(2024, 2, 15), "onboarding", True),  # day before: s4 + s5 → 340
    ("c3", "a4", datetime(2024, 3, 15), "budget", None),  # day before: s6 → 80
    ("c4", "a1", datetime(2023, 12, 15), "price", True),  # before the window
    ("c5", "a1", datetime(2024, 4, 1), "price", True),  # at the end: outside
]
RESPONSES = [  # id, account, kind, score, scale_min, scale_max, responded_at
    ("r1", "a1", "nps", 10.0, 0.0, 10.0, datetime(2024, 1, 15)),  # promoter
    ("r2", "a2", "nps", 6.0, 0.0, 10.0, datetime(2024, 2, 15)),  # detractor
    ("r3", "a1", "nps", 4.0, 1.0, 5.0, datetime(2024, 3, 1)),  # (4-1)/4*10 = 7.5: passive
    ("r4", "a1", "csat", 4.0, 1.0, 5.0, datetime(2024, 1, 20)),  # top two
    ("r5", "a2", "csat", 3.0, 1.0, 5.0, datetime(2024, 1, 20)),  # not
    ("r6", "a3", "nps", 9.0, 0.0, 10.0, datetime(2023, 12, 31)),  # before the window
    ("r7", "a3", "csat", 5.0, 1.0, 5.0, datetime(2024, 3, 1)),  # top two
]
ENROLLMENTS = [  # id, job, account, arm, entered_at, completed_at
    ("en1", "J", "a1", "treatment", datetime(2024, 1, 5), datetime(2024, 2, 1)),
    ("en2", "J", "a2", "holdout", datetime(2024, 1, 5), datetime(2024, 4, 2)),  # done after end
    ("en3", "K", "a1", "video", datetime(2023, 12, 1), datetime(2024, 1, 10)),  # entered before
    ("en4", "J", "a3", "holdout", datetime(2024, 2, 1), datetime(2024, 3, 1)),
    ("en5", "J", "a4", "treatment", datetime(2024, 3, 1), None),
]


def load(warehouse: Warehouse) -> None:
    def put(table: str, rows: dict[str, list[Any]]) -> None:
        warehouse.append(table, warehouse.arrow_for(table, rows))

    warehouse.ensure_tables()
    put(
        "accounts",
        {
            "account_id": [a[0] for a in ACCOUNTS],
            "owner": [a[1] for a in ACCOUNTS],
            "created_at": [a[2] for a in ACCOUNTS],
            "properties": [json.dumps(a[3]) if a[3] is not None else None for a in ACCOUNTS],
        },
    )
    put("people", {"person_id": [p[0] for p in PEOPLE], "account_id": [p[1] for p in PEOPLE]})
    columns = ("activity_id", "account_id", "person_id", "owner", "kind", "occurred_at")
    put("activities", {c: [row[i] for row in ACTIVITIES] for i, c in enumerate(columns)})
    columns = ("event_id", "account_id", "person_id", "timestamp")
    put(
        "events",
        {c: [row[i] for row in EVENTS] for i, c in enumerate(columns)}
        | {"name": ["login"] * len(EVENTS)},
    )
    columns = ("subscription_id", "account_id", "start_date", "end_date", "mrr")
    put("subscriptions", {c: [row[i] for row in SUBSCRIPTIONS] for i, c in enumerate(columns)})
    columns = ("churn_id", "account_id", "churned_at", "reason", "controllable")
    put("churn_reasons", {c: [row[i] for row in CHURNS] for i, c in enumerate(columns)})
    columns = ("response_id", "account_id", "kind", "score", "scale_min", "scale_max")
    put(
        "survey_responses",
        {c: [row[i] for row in RESPONSES] for i, c in enumerate(columns)}
        | {"responded_at": [row[6] for row in RESPONSES]},
    )
    columns = ("enrollment_id", "job_name", "account_id", "arm", "entered_at", "completed_at")
    warehouse.replace(
        ENROLLMENTS_TABLE,
        warehouse.arrow_for(
            ENROLLMENTS_TABLE,
            {c: [row[i] for row in ENROLLMENTS] for i, c in enumerate(columns)}
            | {"job_version": [1] * len(ENROLLMENTS)},
        ),
    )


def hand_project(folder: Path, backends: Backends) -> Path:
    project = folder / "project"
    init_project(project, "team")
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load(warehouse)
    return project


def outcomes(project: Path, backends: Backends, **switches: Any) -> TeamOutcomes:
    with open_workspace(project, environ=backends.environ()) as workspace:
        return team_outcomes(workspace, START, END, publish=False, **switches)


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson's score interval at 95%, written out independently of closeloop.stats."""
    z = 1.959963984540054
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def assert_share(got: Share, successes: int, n: int) -> None:
    assert (got.successes, got.n) == (successes, n)
    lower, upper = wilson(successes, n)
    assert got.rate == pytest.approx(successes / n)
    assert (got.lower, got.upper) == (pytest.approx(lower), pytest.approx(upper))


def test_hand_counted_team(backends: Backends, tmp_path: Path) -> None:
    result = outcomes(hand_project(tmp_path, backends), backends)
    assert (result.first_day, result.last_day) == ("2024-01-01", "2024-03-31")
    cards = {card.csm: card for card in result.scorecards}
    assert list(cards) == [UNASSIGNED, "ana", "ben"]  # a5 (created after the end) is in no book
    ana, ben, nobody = cards["ana"], cards["ben"], cards[UNASSIGNED]

    # Activities in the window: ana act1-act3 (act5 is before), ben act4, nobody act6.
    assert (ana.activities, ben.activities, nobody.activities) == (3, 1, 1)
    assert ana.activities_per_account == pytest.approx(3 / 2)
    kinds = [
        (a.owner, a.kind, a.activities, a.accounts_touched, a.accounts_managed)
        for a in result.activities
    ]
    assert kinds == [
        (UNASSIGNED, "email", 1, 1, 1),
        ("ana", "call", 1, 1, 2),
        ("ana", "email", 2, 2, 2),  # act2 on a1, act3 on a2
        ("ben", "qbr", 1, 1, 1),
    ]
    assert result.activities[1].activities_per_account == pytest.approx(0.5)

    # Contacts: a1 p1 (activity) and p2 (event) of 2; a2 none of 1 (e2 is at the end);
    # a3 p4 (activity) and p5 (event at the start) of 2; e4 names a1's person on a3: not counted.
    assert (ana.people, ana.engaged_people, ana.engaged_accounts) == (3, 2, 1)
    assert ana.contacts_engaged_per_account == pytest.approx(1.0)
    assert ana.engaged_people_share == pytest.approx(2 / 3)
    assert (ben.people, ben.engaged_people, ben.engaged_accounts) == (2, 2, 1)
    assert (nobody.people, nobody.engaged_people, nobody.engaged_accounts) == (1, 0, 0)

    # Flags: a1 sponsor (true) and reference ("yes"); a2 sponsor false; a3 reference true.
    assert (ana.sponsor_accounts, ana.reference_accounts) == (1, 1)
    assert (ana.sponsor_share, ana.reference_share) == (0.5, 0.5)
    assert (ben.sponsor_accounts, ben.reference_accounts, ben.reference_share) == (0, 1, 1.0)
    assert (nobody.sponsor_accounts, nobody.reference_accounts) == (0, 0)

    # Goals reached in the window: en1 and en3 on a1 (ana), en4 on a3 (ben); en2 is after.
    assert (ana.goals_achieved, ana.goal_accounts) == (2, 1)
    assert (ben.goals_achieved, ben.goal_accounts) == (1, 1)
    assert (nobody.goals_achieved, nobody.goal_accounts) == (0, 0)

    # Arms entered in the window: ana en1 treated done, en2 holdout not done by the end;
    # ben en4 holdout done; nobody en5 treated not done. en3 entered before the window.
    assert_share(ana.treated_completion, 1, 1)
    assert_share(ana.holdout_completion, 0, 1)
    assert ana.completion_difference == pytest.approx(1.0)
    assert_share(ben.holdout_completion, 1, 1)
    assert ben.treated_completion.n == 0 and ben.treated_completion.rate is None
    assert ben.completion_difference is None
    assert_share(nobody.treated_completion, 0, 1)

    # Satisfaction: ana NPS r1 promoter, r2 detractor, r3 passive → (1 − 1) / 3 = 0;
    # CSAT r4 yes, r5 no → 1 of 2; ben r6 is before the window → no NPS, CSAT r7 → 1 of 1.
    assert (ana.nps, ana.nps_responses) == (0.0, 3)
    assert_share(ana.csat, 1, 2)
    assert (ben.nps, ben.nps_responses) == (None, 0)
    assert_share(ben.csat, 1, 1)

    # Churn: c1 (a2, not controllable, 200), c2 (a3, controllable, 300 + 40), c3 (a4, unflagged,
    # 80); c4 is before and c5 at the end.
    assert (ana.churns, ana.controllable_churns, ana.controllable_mrr_lost) == (1, 0, 0.0)
    assert (ben.churns, ben.controllable_churns, ben.controllable_mrr_lost) == (1, 1, 340.0)
    assert (nobody.churns, nobody.controllable_churns) == (1, 0)
    churn = result.churn
    assert (churn.churns, churn.mrr_lost) == (3, 620.0)
    assert (churn.controllable_churns, churn.controllable_mrr_lost) == (1, 340.0)
    assert churn.unflagged_churns == 1
    assert_share(churn.controllable_share, 1, 2)  # of c1 and c2, the flagged ones
    assert churn.controllable_mrr_share == pytest.approx(340 / 540)
    assert [(r.reason, r.controllable, r.churns, r.mrr_lost) for r in churn.reasons] == [
        ("budget", None, 1, 80.0),
        ("onboarding", True, 1, 340.0),
        ("price", False, 1, 200.0),
    ]

    # Revenue beside it: MRR on 2024-01-01 a1 100, a2 200, a3 340, a4 0; on 2024-03-31
    # a1 150, a2 0, a3 300 (a4 was not paying at the start, so is not in the NRR cohort).
    assert (ana.starting_mrr, ana.retained_mrr, ana.nrr) == (300.0, 150.0, 0.5)
    assert (ben.starting_mrr, ben.retained_mrr) == (340.0, 300.0)
    assert ben.nrr == pytest.approx(300 / 340)
    assert (nobody.starting_mrr, nobody.retained_mrr, nobody.nrr) == (0.0, 0.0, None)


def test_switches_change_the_books_and_flags(backends: Backends, tmp_path: Path) -> None:
    """``by`` regroups the books; the flag attributes read another property."""
    project = hand_project(tmp_path, backends)
    # Swapping the flags: a1's "reference" is "yes" and a3's true (2 "sponsors"); a1's
    # "executive_sponsor" true (1 "reference").
    swapped = outcomes(
        project, backends, sponsor_attribute="reference", reference_attribute="executive_sponsor"
    )
    cards = {card.csm: card for card in swapped.scorecards}
    assert (cards["ana"].sponsor_accounts, cards["ana"].reference_accounts) == (1, 1)
    assert (cards["ben"].sponsor_accounts, cards["ben"].reference_accounts) == (1, 0)
    # By segment (empty everywhere): one book of the 4 accounts created before the end.
    one = outcomes(project, backends, by="segment")
    assert [(card.csm, card.accounts) for card in one.scorecards] == [(UNASSIGNED, 4)]
    assert one.scorecards[0].starting_mrr == 640.0  # 100 + 200 + 340


def test_bad_input_is_a_clear_error(backends: Backends, tmp_path: Path) -> None:
    project = hand_project(tmp_path, backends)
    with open_workspace(project, environ=backends.environ()) as workspace:
        with pytest.raises(NotFoundError, match=r"no attribute 'csm'.*they have: .*owner"):
            team_outcomes(workspace, START, END, by="csm", publish=False)
        with pytest.raises(LocatedError, match="start 2024-04-01T00:00:00 is not before end"):
            team_outcomes(workspace, END, START, publish=False)


def test_books_are_read_as_of_the_window_start(backends: Backends, tmp_path: Path) -> None:
    """a3 belonged to ana until 2024-02-01 (the history says so), so at the start it is hers."""
    project = hand_project(tmp_path, backends)
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        warehouse.append(
            "attribute_history",
            warehouse.arrow_for(
                "attribute_history",
                {
                    "write_id": ["w1", "w2", "w3", "w4"],
                    "entity": ["account"] * 4,
                    "entity_id": ["a3", "a3", "a4", "a2"],
                    "name": ["owner", "owner", "properties", "properties"],
                    "value": [
                        '"ana"',
                        '"ben"',
                        json.dumps(json.dumps({"reference": "Yes"})),  # before the start: counts
                        json.dumps(json.dumps({"executive_sponsor": True})),  # after: does not
                    ],
                    "valid_from": [
                        datetime(2023, 1, 1),
                        datetime(2024, 2, 1),
                        datetime(2023, 12, 1),
                        datetime(2024, 2, 1),
                    ],
                },
            ),
        )
    result = outcomes(project, backends)
    cards = {card.csm: card for card in result.scorecards}
    assert list(cards) == [UNASSIGNED, "ana"]  # ben's book is empty at the start (a5 is later)
    ana = cards["ana"]
    assert ana.accounts == 3
    assert (ana.starting_mrr, ana.retained_mrr) == (640.0, 450.0)  # 100+200+340; 150+0+300
    assert (ana.churns, ana.controllable_churns, ana.controllable_mrr_lost) == (2, 1, 340.0)
    # Flags too are read as of the start: a4's reference (set in December) counts, a2's
    # sponsor flag (set in February) does not yet; a3 (now ana's) is a reference.
    assert (ana.sponsor_accounts, ana.reference_accounts) == (1, 2)
    assert (cards[UNASSIGNED].reference_accounts, cards[UNASSIGNED].sponsor_accounts) == (1, 0)
    # ben still logged act4; he manages no account at the start, so no rate per account.
    (ben,) = [row for row in result.activities if row.owner == "ben"]
    assert (ben.activities, ben.accounts_managed, ben.activities_per_account) == (1, 0, None)


def test_a_reason_with_both_flags_and_the_controllable_share(
    backends: Backends, tmp_path: Path
) -> None:
    """A second "price" churn flagged controllable (a1 on 2024-03-20: s1 + s2 = 150 the day
    before): "price" appears once per flag, the controllable one first."""
    project = hand_project(tmp_path, backends)
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        warehouse.append(
            "churn_reasons",
            warehouse.arrow_for(
                "churn_reasons",
                {
                    "churn_id": ["c6"],
                    "account_id": ["a1"],
                    "churned_at": [datetime(2024, 3, 20)],
                    "reason": ["price"],
                    "controllable": [True],
                },
            ),
        )
    churn = outcomes(project, backends).churn
    assert [(r.reason, r.controllable, r.mrr_lost) for r in churn.reasons] == [
        ("budget", None, 80.0),
        ("onboarding", True, 340.0),
        ("price", True, 150.0),
        ("price", False, 200.0),
    ]
    assert (churn.churns, churn.controllable_churns, churn.controllable_mrr_lost) == (4, 2, 490.0)
    assert_share(churn.controllable_share, 2, 3)  # c2 and c6 of c1, c2, c6 (c3 is unflagged)
    assert churn.controllable_mrr_share == pytest.approx(490 / 690)
