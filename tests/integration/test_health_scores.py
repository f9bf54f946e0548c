"""Health scores on a small hand-built company, on DuckDB and PostgreSQL alike.

One score, "Health", bands poor < 40 <= concerning < 70 <= healthy, as of T = 2024-06-01 00:00
(the 30-day windows hold events in (2024-05-02, 2024-06-01]):

- Logins: count(event "login" in last 30 days), weight 3, higher is better, range [0, 10]
- Tickets: count(event "ticket" in last 30 days), weight 1, lower is better, range [0, 4]
- Big: employees >= 100, weight 2, higher is better (true 100, false 0; no employees: missing)
- enterprise accounts weigh Logins 1, Tickets 1 (kept), Big 3.

| account | segment | logins | tickets | employees | scaled L, T, B | weights | score | band |
|---|---|---|---|---|---|---|---|---|
| a1 | smb | 5 | 1 | 200 | 50, 75, 100 | 3, 1, 2 | (150 + 75 + 200) / 6 = 70.833 | healthy |
| a2 | smb | 12 | 4 | none | 100, 0, missing | 3, 1 | (300 + 0) / 4 = 75 | healthy |
| a3 | enterprise | 2 | 0 | 50 | 20, 100, 0 | 1, 1, 3 | (20 + 100 + 0) / 5 = 24 | poor |
| a4 | smb | 0 | 6 | 10 | 0, 0, 0 | 3, 1, 2 | 0 | poor |
| a5 | smb | 4 | 2 | 150 | 40, 50, 100 | 3, 1, 2 | (120 + 50 + 200) / 6 = 61.667 | concerning |

a4's 3 logins of 2024-04-01 are outside the window; a3's login of 2024-06-03 is after T; a6 is
created after T and has no score. As of 2024-05-01 a1 had 2 logins (04-20, 04-25) and no ticket:
(3 * 20 + 1 * 100 + 2 * 100) / 6 = 60; the change to 70.833 is Logins +15 (25 - 10 points),
Tickets -4.167 (12.5 - 16.667), Big 0.

Backtest at T, 90 days: a1 keeps 100 MRR; a2's 200 ends 07-15 (churn); a3 keeps 300 but a churn
reason is recorded on 07-01 (churn); a4's 50 ends 06-20 (churn); a5 goes from 100 to 60 on
07-01 (contraction). Churn: bad {75, 24, 0} vs good {70.833, 61.667}: 4 of 6 pairs have the bad
account lower, AUC 0.667; the lowest decile (1 account: a4) churned, lift 1 / (3/5) = 1.667.
Contraction, among a1 and a5 (not churned): a5 (61.667) below a1: AUC 1 (degenerate interval).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.data.tables import HEALTH_SCORES
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.project import load_project
from closeloop.errors import DefinitionErrors
from closeloop.services import health
from closeloop.services.engine_runs import run_cycle
from closeloop.services.project import init_project, open_workspace
from support import Backends

T = datetime(2024, 6, 1)
SINCE = datetime(2024, 5, 1)

HEALTH = """\
health_scores:
  - name: Health
    bands: {poor: 40, concerning: 70}
    measures:
      - name: Logins
        expression: count(event "login" in last 30 days)
        weight: 3
        polarity: higher_is_better
        range: [0, 10]
      - name: Tickets
        expression: count(event "ticket" in last 30 days)
        weight: 1
        polarity: lower_is_better
        range: [0, 4]
      - name: Big
        expression: employees >= 100
        weight: 2
        polarity: higher_is_better
    segments:
      - when: segment = "enterprise"
        weights: {Logins: 1, Big: 3}
"""

ACCOUNTS = [  # id, segment, employees, created_at
    ("a1", "smb", 200, datetime(2024, 1, 1)),
    ("a2", "smb", None, datetime(2024, 1, 1)),
    ("a3", "enterprise", 50, datetime(2024, 1, 1)),
    ("a4", "smb", 10, datetime(2024, 1, 1)),
    ("a5", "smb", 150, datetime(2024, 1, 1)),
    ("a6", "smb", 500, datetime(2024, 6, 5)),
]


def _events() -> list[tuple[str, str, str, datetime]]:
    rows: list[tuple[str, str, datetime]] = []
    rows += [("a1", "login", datetime(2024, 5, day)) for day in (10, 12, 15, 20, 25)]
    rows += [("a1", "login", datetime(2024, 4, day)) for day in (20, 25)]
    rows += [("a1", "ticket", datetime(2024, 5, 20))]
    rows += [("a2", "login", datetime(2024, 5, 3 + day)) for day in range(12)]
    rows += [("a2", "ticket", datetime(2024, 5, 10 + day)) for day in range(4)]
    rows += [("a3", "login", datetime(2024, 5, day)) for day in (5, 6)]
    rows += [("a3", "login", datetime(2024, 6, 3))]  # after T
    rows += [("a4", "login", datetime(2024, 4, 1, hour)) for hour in (9, 10, 11)]  # too early
    rows += [("a4", "ticket", datetime(2024, 5, 20 + day)) for day in range(6)]
    rows += [("a5", "login", datetime(2024, 5, 20 + day)) for day in range(4)]
    rows += [("a5", "ticket", datetime(2024, 5, 28 + day)) for day in range(2)]
    return [(f"e{i}", account, name, at) for i, (account, name, at) in enumerate(rows)]


SUBSCRIPTIONS = [  # id, account, start, end, mrr
    ("s1", "a1", date(2024, 1, 1), None, 100.0),
    ("s2", "a2", date(2024, 1, 1), date(2024, 7, 15), 200.0),
    ("s3", "a3", date(2024, 1, 1), None, 300.0),
    ("s4", "a4", date(2024, 1, 1), date(2024, 6, 20), 50.0),
    ("s5", "a5", date(2024, 1, 1), date(2024, 7, 1), 100.0),
    ("s6", "a5", date(2024, 7, 1), None, 60.0),
    ("s7", "a6", date(2024, 6, 5), None, 80.0),
]
CHURNS = [("c1", "a3", datetime(2024, 7, 1), "budget")]

SCORES = {"a1": 425 / 6, "a2": 75.0, "a3": 24.0, "a4": 0.0, "a5": 370 / 6}
BANDS = {"a1": "healthy", "a2": "healthy", "a3": "poor", "a4": "poor", "a5": "concerning"}


def _put(warehouse: Warehouse, table: str, columns: tuple[str, ...], rows: list[Any]) -> None:
    data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
    warehouse.append(table, warehouse.arrow_for(table, data))


def load(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    _put(warehouse, "accounts", ("account_id", "segment", "employees", "created_at"), ACCOUNTS)
    _put(warehouse, "events", ("event_id", "account_id", "name", "timestamp"), _events())
    columns = ("subscription_id", "account_id", "start_date", "end_date", "mrr")
    _put(warehouse, "subscriptions", columns, SUBSCRIPTIONS)
    _put(warehouse, "churn_reasons", ("churn_id", "account_id", "churned_at", "reason"), CHURNS)


@pytest.fixture
def project(tmp_path: Path, backends: Backends) -> Path:
    folder = tmp_path / "project"
    init_project(folder, "health")
    (folder / "health.yaml").write_text(HEALTH, encoding="utf-8")
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load(warehouse)
    return folder


def test_scores_weights_and_bands_match_the_hand_computation(
    project: Path, backends: Backends
) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        found = {
            account: health.account_health(workspace, account, T).scores[0].now
            for account in SCORES
        }
    for account, expected in SCORES.items():
        assert found[account].score == pytest.approx(expected, abs=1e-9), account
        assert found[account].band == BANDS[account], account
    a2 = found["a2"]
    assert a2.missing == ["Big"]
    assert [
        (m.name, m.value, m.weight, m.effective_weight, m.contribution) for m in a2.measures
    ] == [
        ("Logins", 12.0, 3.0, 0.75, 75.0),
        ("Tickets", 4.0, 1.0, 0.25, 0.0),
        ("Big", None, 2.0, 0.0, 0.0),
    ]
    a3 = found["a3"]
    assert a3.variant == 'segment = "enterprise"'
    assert [m.weight for m in a3.measures] == [1.0, 1.0, 3.0]
    assert [m.scaled for m in a3.measures] == [20.0, 100.0, 0.0]
    # Contributions add up to the score.
    for account in SCORES:
        total = sum(m.contribution for m in found[account].measures)
        assert total == pytest.approx(SCORES[account], abs=1e-9)


def test_why_the_score_moved_since_a_date(project: Path, backends: Backends) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        (explained,) = health.account_health(workspace, "a1", T, since=SINCE).scores
    assert explained.before is not None
    assert explained.before.score == pytest.approx(60.0)
    assert explained.change == pytest.approx(425 / 6 - 60.0)
    assert [(c.name, round(c.change, 6)) for c in explained.changes] == [
        ("Logins", 15.0),
        ("Tickets", round(12.5 - 100 / 6, 6)),
        ("Big", 0.0),
    ]


def test_an_account_that_does_not_exist_yet_is_not_found(project: Path, backends: Backends) -> None:
    with (
        open_workspace(project, environ=backends.environ()) as workspace,
        pytest.raises(LookupError, match="no account 'a6'"),
    ):
        health.account_health(workspace, "a6", T)


def _snapshot_rows(warehouse: Warehouse, day: date) -> dict[str, tuple[Any, ...]]:
    """The snapshot of ``day`` by account: score, band and measures (not when it was taken)."""
    rows = warehouse.table(HEALTH_SCORES.name).to_pyarrow().to_pylist()
    found = [r for r in rows if str(r["day"])[:10] == day.isoformat()]
    assert len(found) == len({r["account_id"] for r in found})  # one row per account
    return {r["account_id"]: (r["score"], r["band"], json.loads(r["measures"])) for r in found}


def test_snapshots_are_point_in_time_and_idempotent_per_day(
    project: Path, backends: Backends
) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        first = health.snapshot(workspace, datetime(2024, 6, 1, 15, 30))
        assert (
            first.at.replace(tzinfo=None) == T
        )  # the day's snapshot is the score as of the day's start
        assert [(s.accounts, s.scored, s.bands) for s in first.scores] == [
            (5, 5, {"poor": 2, "concerning": 1, "healthy": 2})
        ]
        taken_on_the_day = _snapshot_rows(workspace.warehouse, date(2024, 6, 1))
        # Data arriving later, some of it stamped on the day itself, after its start.
        late = [
            ("late1", "a4", "login", datetime(2024, 6, 1, 9)),
            ("late2", "a4", "login", datetime(2024, 6, 2, 9)),
            ("late3", "a5", "ticket", datetime(2024, 6, 1, 12)),
        ]
        _put(workspace.warehouse, "events", ("event_id", "account_id", "name", "timestamp"), late)
        again = health.snapshot(workspace, datetime(2024, 6, 9))
        assert again.day == date(2024, 6, 9)
        retaken = health.snapshot(workspace, datetime(2024, 6, 1, 23))
        rows = _snapshot_rows(workspace.warehouse, date(2024, 6, 1))
        assert rows == taken_on_the_day  # same scores, same measures, no duplicate rows
        assert health.account_health(workspace, "a4", T).scores[0].now.score == 0.0
        assert retaken.scores[0].accounts == 5
        later = health.account_health(workspace, "a4", datetime(2024, 6, 9)).scores[0].now
        assert later.measures[0].value == 2.0  # the late logins count from then on
        points = health.trajectory(workspace, "a4", date(2024, 5, 1), date(2024, 6, 30))
        assert [(p.day, p.score_name) for p in points] == [
            (date(2024, 6, 1), "Health"),
            (date(2024, 6, 9), "Health"),
        ]
        assert points[0].score == 0.0 and points[0].band == "poor"
        assert health.daily_snapshot(workspace, datetime(2024, 6, 9, 8)) is None  # already taken
        taken = health.daily_snapshot(workspace, datetime(2024, 6, 10, 8))
        assert taken is not None and taken.day == date(2024, 6, 10)


def test_backtest_known_answer(project: Path, backends: Backends) -> None:
    with open_workspace(project, environ=backends.environ()) as workspace:
        result = health.backtest(workspace, T, horizon_days=90)
    assert result.accounts == 5  # a6 was not paying at T
    (score,) = result.scores
    overall = score.groups[0]
    assert (overall.segment, overall.n) == ("all", 5)
    assert (overall.churn.events, overall.churn.rate) == (3, 0.6)
    assert score.auc == pytest.approx(4 / 6)
    assert overall.churn.top_decile_lift == pytest.approx(1 / 0.6)
    assert score.auc_low is not None and score.auc_high is not None
    assert score.auc_low < 4 / 6 < score.auc_high
    assert (overall.contraction.n, overall.contraction.events) == (2, 1)
    assert (overall.contraction.auc, overall.contraction.status) == (1.0, "degenerate")
    assert [(g.segment, g.n, g.churn.status) for g in score.groups[1:]] == [
        ("enterprise", 1, "no_non_events"),
        ("smb", 4, "ok"),
    ]
    assert [(r.group, r.n, r.churn.events, r.contraction.events) for r in score.by_band] == [
        ("poor", 2, 2, 0),
        ("concerning", 1, 0, 1),
        ("healthy", 2, 1, 0),
    ]
    assert any("does not predict churn" in warning for warning in score.warnings)


BAD = """\
health_scores:
  - name: Bad
    bands: {poor: 70, concerning: 40}
    measures:
      - name: A
        expression: count(event "login")
        weight: 1
        polarity: higher_is_better
  - name: Sideways
    bands: {poor: 10, concerning: 40}
    measures:
      - name: Plan
        expression: plan = "pro"
        weight: 1
        polarity: sideways
  - name: Worse
    bands: {poor: 10, concerning: 40}
    measures:
      - name: Logins
        expression: count(event "login")
        weight: 1
        polarity: higher_is_better
      - name: Flag
        expression: arr > 100
        weight: 1
        polarity: lower_is_better
        range: [0, 1]
      - name: Signup
        expression: signup_date
        weight: 1
        polarity: lower_is_better
        range: [0, 1]
  - name: Worst
    bands: {poor: 10, concerning: 40}
    measures:
      - name: A
        expression: count(event "login")
        weight: 1
        polarity: higher_is_better
        range: [0, 5]
    segments:
      - when: segment = "x"
        weights: {Nope: 2}
"""


def line_of(text: str, after: str = "") -> int:
    """The 1-based line of ``BAD`` holding ``text`` (the first after the line holding
    ``after``)."""
    lines = BAD.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and text in line) + 1


JOBS = """\
jobs:
  - name: Login push
    audience: count(event "login" in last 30 days) = 0
    goal: count(event "login" in last 30 days) >= 5
    duration_days: 30
    hypothesis:
      expected_effect: more logins
"""


def test_bad_scores_are_reported_where_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, "bad")
    (folder / "health.yaml").write_text(BAD, encoding="utf-8")
    with pytest.raises(DefinitionErrors) as raised:
        load_project(folder, account_attributes(), person_attributes())
    found = {(e.location.line if e.location else 0, e.message) for e in raised.value.errors}
    messages = "\n".join(f"{line}: {message}" for line, message in sorted(found))
    assert (3, "health_scores.0.bands: bands go up: poor (70) must be below concerning (40)") in (
        found
    )
    assert any(
        line == line_of("polarity: sideways") and "Input should be 'higher_is_better'" in m
        for line, m in found
    )
    number = line_of('count(event "login")', after="name: Logins")
    assert any(line == number and "is a number and needs `range" in m for line, m in found)
    flag = line_of("range: [0, 1]", after="name: Flag")
    assert any(line == flag and "`range` applies to numbers only" in m for line, m in found)
    signup = line_of("expression: signup_date")
    assert any(line == signup and "'signup_date' is a timestamp" in m for line, m in found)
    nope = line_of("Nope")
    assert any(line == nope and "'Nope' is not a measure of 'Worst'" in m for line, m in found)
    assert len(found) == 6, messages


def test_a_goal_on_a_score_input_is_warned(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, "warned")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    project = load_project(folder, account_attributes(), person_attributes())
    (warning,) = [w for w in project.warnings if "health score" in w.message]
    assert warning.message.startswith(
        "improving an input of health score 'Adoption health' is not an outcome"
    )
    assert warning.location is not None and warning.location.line == 4  # the goal
    assert "Adoption health" in project.health_scores  # init's example score loads


def test_the_daemon_takes_the_day_s_snapshot_after_a_cycle(
    project: Path, backends: Backends
) -> None:
    def taken_at() -> Any:
        with Warehouse.connect(backends.warehouse_url) as warehouse:
            table = warehouse.table(HEALTH_SCORES.name)
            return table.computed_at.max().to_pyarrow().as_py()

    cycle = run_cycle(project, datetime(2024, 6, 2, 10), backends.environ())
    assert cycle.error is None
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        rows = _snapshot_rows(warehouse, date(2024, 6, 2))
    assert sorted(rows) == ["a1", "a2", "a3", "a4", "a5"]
    assert rows["a3"][:2] == (24.0, "poor")  # no new data since T: the same scores
    first = taken_at()
    run_cycle(project, datetime(2024, 6, 2, 11), backends.environ())
    assert taken_at() == first  # the day is there: not taken again
