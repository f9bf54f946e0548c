"""The churn review on a small hand-built company, on DuckDB and PostgreSQL alike.

The window is [2024-02-01, 2024-04-01). One stage, Onboarding: entered at ``signup_date``
(``created_at``), left after 30 days or when both objectives (Connected, Reported) are done.

- a1 (ana, price, not controllable) churned 2024-03-01. Created 2024-01-01, connected 01-05,
  reported 01-10: Onboarding completed on 01-10, nothing stalled. MRR the day before: 100.
  Its only enrollment began 2024-03-05, after the churn: not shown.
- a2 (ben, onboarding, controllable) churned 2024-02-20. Created 2024-01-01, connected 01-03,
  never reported: Onboarding timed out on 01-31 (30 days): exited_incomplete, 30 days in it,
  missing Reported. In "Nudge" as holdout from 01-05. MRR lost: 200 + 40.
- a3 (ben, onboarding, controllable) churned 2024-02-25. Created 2024-02-10, reported on 03-01,
  after the churn: still in the stage at the churn (its 30 days end 03-11), 15 days in it, done
  nothing, missing both. In "Nudge" as treatment from 02-12, goal never reached. MRR lost: 300.
- a4 churned 2024-01-15 (before the window) and a5 on 2024-04-01 (at the end): not reviewed.

Health (one score, "Usage": logins in the last 30 days on [0, 10], so 4 logins score 40): a2
logged in 4 times on 2024-01-15; the snapshot of 2024-02-10 (as of its start: logins since 01-11)
counts 4, scores 40 (concerning: poor is below 40); that of 2024-02-19 (since 01-20) counts 0,
scores 0 (poor): a change of -40. a2 has a success plan agreed on 2024-01-10 with one manual
objective (0 -> 10 by 2024-02-15) never observed: missed at the churn, and a second one due
2024-03-31: still open at the churn. a3's plan was agreed after its churn: not shown.

Groups: onboarding/controllable first (2 churns, 540 MRR lost; stalled in Onboarding 2; 0 never in
a job; 1 treated: a3), then price/not controllable (1 churn, 100; stalled nowhere; 1 never in a
job, since a1's enrollment began after its churn).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.errors import LocatedError
from closeloop.schemas.churn_review import ChurnReview
from closeloop.schemas.plans import ObjectiveInput, PlanCreate
from closeloop.services import health, plans
from closeloop.services.churn_review import churn_review
from closeloop.services.project import init_project, open_workspace
from support import Backends

START, END = datetime(2024, 2, 1), datetime(2024, 4, 1)

STAGES = """\
stages:
  - name: Onboarding
    entry: signup_date has any value
    entered_at: signup_date
    exit:
      after_days: 30
      when_objectives_complete: true
    objectives:
      - name: Connected
        completion: count(event "integration_connected") >= 1
      - name: Reported
        completion: count(event "report_viewed") >= 1
"""

HEALTH = """\
health_scores:
  - name: Usage
    bands: {poor: 40, concerning: 70}
    measures:
      - name: Logins
        expression: count(event "login" in last 30 days)
        weight: 1
        polarity: higher_is_better
        range: [0, 10]
"""

ACCOUNTS = [  # id, name, owner, segment, created_at
    ("a1", "Acme", "ana", "smb", datetime(2024, 1, 1)),
    ("a2", "Globex", "ben", "smb", datetime(2024, 1, 1)),
    ("a3", "Initech", "ben", "enterprise", datetime(2024, 2, 10)),
    ("a4", "Umbrella", "ana", "smb", datetime(2023, 6, 1)),
    ("a5", "Hooli", "ana", "smb", datetime(2023, 6, 1)),
]
EVENTS = [  # id, account, name, timestamp
    *[(f"l{i}", "a2", "login", datetime(2024, 1, 15, 9 + i)) for i in range(4)],
    ("e1", "a1", "integration_connected", datetime(2024, 1, 5)),
    ("e2", "a1", "report_viewed", datetime(2024, 1, 10)),
    ("e3", "a2", "integration_connected", datetime(2024, 1, 3)),
    ("e4", "a3", "report_viewed", datetime(2024, 3, 1)),  # after a3's churn
]
SUBSCRIPTIONS = [  # id, account, start, end, mrr
    ("s1", "a1", date(2024, 1, 1), date(2024, 3, 1), 100.0),
    ("s2", "a2", date(2024, 1, 1), date(2024, 2, 20), 200.0),
    ("s3", "a2", date(2024, 1, 15), date(2024, 2, 20), 40.0),
    ("s4", "a3", date(2024, 2, 10), date(2024, 2, 25), 300.0),
    ("s5", "a4", date(2023, 6, 1), date(2024, 1, 15), 50.0),
    ("s6", "a5", date(2023, 6, 1), date(2024, 4, 1), 60.0),
]
CHURNS = [  # id, account, churned_at, reason, controllable, notes
    ("c1", "a1", datetime(2024, 3, 1), "price", False, "went cheaper"),
    ("c2", "a2", datetime(2024, 2, 20), "onboarding", True, None),
    ("c3", "a3", datetime(2024, 2, 25), "onboarding", True, "never got going"),
    ("c4", "a4", datetime(2024, 1, 15), "price", False, None),
    ("c5", "a5", datetime(2024, 4, 1), "budget", None, None),
]
ENROLLMENTS = [  # id, job, account, arm, entered_at, completed_at
    ("n1", "Nudge", "a2", "holdout", datetime(2024, 1, 5), None),
    ("n2", "Nudge", "a3", "treatment", datetime(2024, 2, 12), None),
    ("n3", "Save", "a1", "treatment", datetime(2024, 3, 5), None),  # after a1's churn
]


def load(warehouse: Warehouse) -> None:
    def put(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
        warehouse.append(table, warehouse.arrow_for(table, data))

    warehouse.ensure_tables()
    put("accounts", ("account_id", "name", "owner", "segment", "created_at"), ACCOUNTS)
    put("events", ("event_id", "account_id", "name", "timestamp"), EVENTS)
    put(
        "subscriptions",
        ("subscription_id", "account_id", "start_date", "end_date", "mrr"),
        SUBSCRIPTIONS,
    )
    put(
        "churn_reasons",
        ("churn_id", "account_id", "churned_at", "reason", "controllable", "notes"),
        CHURNS,
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


@pytest.fixture
def project(tmp_path: Path, backends: Backends) -> Path:
    folder = tmp_path / "project"
    init_project(folder, "churn")
    (folder / "stages.yaml").write_text(STAGES, encoding="utf-8")
    (folder / "health.yaml").write_text(HEALTH, encoding="utf-8")
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load(warehouse)
    return folder


def review(project: Path, backends: Backends, **options: Any) -> ChurnReview:
    with open_workspace(project, environ=backends.environ()) as workspace:
        return churn_review(workspace, START, END, publish=False, **options)


def test_every_churn_in_the_window_grouped_by_reason(project: Path, backends: Backends) -> None:
    result = review(project, backends)
    assert (result.churns, result.mrr_lost, result.controllable_churns) == (3, 640.0, 2)
    assert [(g.reason, g.controllable, g.churns, g.mrr_lost) for g in result.groups] == [
        ("onboarding", True, 2, 540.0),
        ("price", False, 1, 100.0),
    ]
    onboarding, price = result.groups
    assert [(s.stage, s.accounts) for s in onboarding.stalled] == [("Onboarding", 2)]
    assert (onboarding.never_in_a_job, onboarding.treated, onboarding.with_plan) == (0, 1, 0)
    assert (onboarding.plan_objectives_met, onboarding.plan_objectives_due) == (0, 0)
    assert (price.stalled, price.never_in_a_job, price.treated) == ([], 1, 0)
    assert [a.account_id for a in onboarding.accounts] == ["a2", "a3"]  # by churn time


def test_where_each_account_stalled_ignores_what_came_after_its_churn(
    project: Path, backends: Backends
) -> None:
    accounts = {a.account_id: a for g in review(project, backends).groups for a in g.accounts}
    a1, a2, a3 = accounts["a1"], accounts["a2"], accounts["a3"]

    assert a1.stalled_stage is None
    assert [(s.stage, s.state, s.objectives_missing) for s in a1.stages] == [
        ("Onboarding", "completed", [])
    ]
    assert a1.jobs == []  # its enrollment began after the churn

    stalled = a2.stalled_stage
    assert stalled is not None
    assert (stalled.state, stalled.days_in_stage) == ("exited_incomplete", 30.0)
    assert (stalled.objectives_done, stalled.objectives_missing) == (["Connected"], ["Reported"])
    assert [(j.job, j.arm, j.reached_goal_at) for j in a2.jobs] == [("Nudge", "holdout", None)]
    assert (a2.owner, a2.segment, a2.mrr_lost, a2.notes) == ("ben", "smb", 240.0, None)

    stalled = a3.stalled_stage
    assert stalled is not None
    assert (stalled.state, stalled.days_in_stage) == ("in_stage", 15.0)
    assert stalled.objectives_missing == ["Connected", "Reported"]  # reported after the churn
    assert [(j.job, j.arm, j.job_status, j.effect) for j in a3.jobs] == [
        ("Nudge", "treatment", "not_measured", None)  # the store never ran "Nudge"
    ]
    assert (a3.health, a3.health_change, a3.plans) == ([], None, [])


def test_an_empty_window_or_lookback_is_refused(project: Path, backends: Backends) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        with pytest.raises(LocatedError, match="window is empty"):
            churn_review(workspace, END, START, publish=False)
        with pytest.raises(LocatedError, match="at least 1 day"):
            churn_review(workspace, START, END, lookback_days=0, publish=False)


def test_health_on_the_way_out_and_the_success_plan(project: Path, backends: Backends) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        for day in (datetime(2024, 2, 10), datetime(2024, 2, 19), datetime(2024, 2, 21)):
            health.snapshot(workspace, day)
        objective = ObjectiveInput(
            title="Reports live",
            measure="manual",
            baseline=0,
            target=10,
            target_date=date(2024, 2, 15),
        )
        later = objective.model_copy(update={"title": "Renewal", "target_date": date(2024, 3, 31)})
        plans.create_plan(
            workspace,
            PlanCreate(
                account_id="a2", title="Rollout", owner="ben", objectives=[objective, later]
            ),
            actor="test",
            now=datetime(2024, 1, 10),
        )
        plans.create_plan(  # agreed after a3 churned (02-25): not part of its review
            workspace,
            PlanCreate(account_id="a3", title="Restart", objectives=[later]),
            actor="test",
            now=datetime(2024, 3, 1),
        )
    result = review(project, backends)
    onboarding = result.groups[0]
    a2 = onboarding.accounts[0]
    # The snapshot of 02-21 is after a2's churn (02-20): not shown.
    assert [(p.score_name, p.day, p.score, p.band) for p in a2.health] == [
        ("Usage", date(2024, 2, 10), 40.0, "concerning"),
        ("Usage", date(2024, 2, 19), 0.0, "poor"),
    ]
    assert a2.health_change == -40.0
    # As of the churn (02-20): the objective due 02-15 is missed, the one due 03-31 still open.
    assert [(plan.title, [o.status for o in plan.objectives]) for plan in a2.plans] == [
        ("Rollout", ["missed", "open"])
    ]
    assert onboarding.accounts[1].plans == []
    assert (onboarding.with_plan, onboarding.plan_objectives_met) == (1, 0)
    assert onboarding.plan_objectives_due == 1
    # A shorter look-back (from 02-15) leaves the earlier snapshot out.
    short = review(project, backends, lookback_days=5)
    assert [p.day for p in short.groups[0].accounts[0].health] == [date(2024, 2, 19)]
