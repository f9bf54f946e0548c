"""Built-in outcome attributes (mrr, subscription_arr, nps_latest, …) as of T, on a hand-made
warehouse, on DuckDB and PostgreSQL: values, expressions at two times, a tick, explain, validate.

The warehouse (every expected number below is counted by hand from it):

accounts: b1, b2, b3 created 2024-01-01; b4 created 2024-05-01 (younger than 120 days at T1);
b5 created 2024-06-15 (after T1). T1 = 2024-06-01T00:00, T2 = 2024-07-01T00:00.

subscriptions (start_date <= day < end_date is active):
  s1 b1 400 from 2024-01-01, open       s2 b1 200 from 2024-03-01 to 2024-06-15
  s3 b2 1000 from 2024-06-10, open      s4 b3 300 from 2024-01-01 to 2024-06-01 (ends on T1's day)
  s5 b4 800 from 2024-05-01, open       s6 b5 900 from 2024-06-15, open
  mrr at T1: b1 600, b2 0 (starts after T1), b3 0 (ended on T1's day), b4 800
  mrr at T2: b1 400, b2 1000, b3 0, b4 800, b5 900

survey answers: b1 nps 9 (5/20) and nps 5 (6/20, after T1); b2 nps 10 (5/1); b4 nps 9 at exactly
T1 (included); b3 csat 5 (5/10) and no nps; b2 ces 2 (r6) and ces 6 (r7) both at 4/1 00:00 (tie:
the larger response id, r7, is the latest).

events (T1 windows: 30 days (5/2, 6/1]; recent (4/2, 6/1]; earlier (2/2, 4/2]):
  b1: ten on 3/1..3/10 (earlier); 5/10 p1, 5/11 p1, 5/12 p2, 5/13 no person (recent, last 30 d);
      6/5 p3 (after T1)          -> usage (4 - 10) / 10 = -0.6; 4 events, 2 people in 30 days
  b2: five on 3/1..3/5 (earlier); 4/10, 4/11, 4/12 (recent, not last 30 d); 5/20 p1, 5/21 p1
                                 -> usage (5 - 5) / 5 = 0; 2 events, 1 person in 30 days
  b3: 5/25, 5/26, 5/27 without a person -> usage missing (no earlier events); 3 events, 0 people
  b4: 5/5 p1, 5/6 p1             -> usage missing (created after T1 - 120 days); 2 events, 1 person
  all at 12:00, so last seen at T1: b1 18.5 days, b2 10.5, b3 4.5, b4 25.5

opportunities: o1 b1 created 5/1 closed 6/10 (won, open at T1); o2 b1 created 4/1 closed 5/1
(lost); o3 b2 created 6/5, still open -> open at T1: b1 1; at T2: b2 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.data.compiler import matching_units
from closeloop.data.outcome_attributes import outcome_attribute
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.builtins import BUILTIN_ACCOUNT_ATTRIBUTES
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.errors import ExpressionError
from closeloop.services import definitions
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends, run_tick

T1 = datetime(2024, 6, 1)
T2 = datetime(2024, 7, 1)
JAN = datetime(2024, 1, 1)


def _day(month: int, day: int) -> datetime:
    return datetime(2024, month, day, 12)


def load_outcomes_dataset(warehouse: Warehouse) -> None:
    """The warehouse of this module's docstring."""
    warehouse.ensure_tables()
    accounts = {"b1": JAN, "b2": JAN, "b3": JAN, "b4": datetime(2024, 5, 1), "b5": _day(6, 15)}
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": list(accounts),
                "name": [f"Company {a}" for a in accounts],
                "created_at": list(accounts.values()),
            },
        ),
    )
    people = [("b1-p1", "b1"), ("b1-p2", "b1"), ("b2-p1", "b2"), ("b4-p1", "b4")]
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [p for p, _ in people],
                "account_id": [a for _, a in people],
                "email": [f"{p}@example.com" for p, _ in people],
                "created_at": [JAN] * len(people),
            },
        ),
    )
    d = datetime.date
    subscriptions = [
        ("s1", "b1", 400.0, d(JAN), None),
        ("s2", "b1", 200.0, d(_day(3, 1)), d(_day(6, 15))),
        ("s3", "b2", 1000.0, d(_day(6, 10)), None),
        ("s4", "b3", 300.0, d(JAN), d(_day(6, 1))),
        ("s5", "b4", 800.0, d(_day(5, 1)), None),
        ("s6", "b5", 900.0, d(_day(6, 15)), None),
    ]
    warehouse.append(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [s[0] for s in subscriptions],
                "account_id": [s[1] for s in subscriptions],
                "mrr": [s[2] for s in subscriptions],
                "start_date": [s[3] for s in subscriptions],
                "end_date": [s[4] for s in subscriptions],
            },
        ),
    )
    scales = {"nps": (0.0, 10.0), "csat": (1.0, 5.0), "ces": (1.0, 7.0)}
    answers = [
        ("r1", "b1", "nps", 9.0, _day(5, 20)),
        ("r2", "b1", "nps", 5.0, _day(6, 20)),
        ("r3", "b2", "nps", 10.0, _day(5, 1)),
        ("r4", "b4", "nps", 9.0, T1),
        ("r5", "b3", "csat", 5.0, _day(5, 10)),
        ("r6", "b2", "ces", 2.0, datetime(2024, 4, 1)),
        ("r7", "b2", "ces", 6.0, datetime(2024, 4, 1)),
    ]
    warehouse.append(
        "survey_responses",
        warehouse.arrow_for(
            "survey_responses",
            {
                "response_id": [r[0] for r in answers],
                "account_id": [r[1] for r in answers],
                "kind": [r[2] for r in answers],
                "score": [r[3] for r in answers],
                "scale_min": [scales[r[2]][0] for r in answers],
                "scale_max": [scales[r[2]][1] for r in answers],
                "responded_at": [r[4] for r in answers],
            },
        ),
    )
    events: list[tuple[str, str | None, datetime]] = [
        *[("b1", "b1-p1", _day(3, day)) for day in range(1, 11)],
        ("b1", "b1-p1", _day(5, 10)),
        ("b1", "b1-p1", _day(5, 11)),
        ("b1", "b1-p2", _day(5, 12)),
        ("b1", None, _day(5, 13)),
        ("b1", "b1-p3", _day(6, 5)),
        *[("b2", "b2-p1", _day(3, day)) for day in range(1, 6)],
        *[("b2", "b2-p1", _day(4, day)) for day in (10, 11, 12)],
        ("b2", "b2-p1", _day(5, 20)),
        ("b2", "b2-p1", _day(5, 21)),
        *[("b3", None, _day(5, day)) for day in (25, 26, 27)],
        ("b4", "b4-p1", _day(5, 5)),
        ("b4", "b4-p1", _day(5, 6)),
    ]
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"e{i}" for i in range(len(events))],
                "account_id": [e[0] for e in events],
                "person_id": [e[1] for e in events],
                "name": ["feature_used"] * len(events),
                "timestamp": [e[2] for e in events],
            },
        ),
    )
    opportunities = [
        ("o1", "b1", _day(5, 1), _day(6, 10), "won"),
        ("o2", "b1", _day(4, 1), _day(5, 1), "lost"),
        ("o3", "b2", _day(6, 5), None, "open"),
    ]
    warehouse.append(
        "opportunities",
        warehouse.arrow_for(
            "opportunities",
            {
                "opportunity_id": [o[0] for o in opportunities],
                "account_id": [o[1] for o in opportunities],
                "kind": ["expansion"] * len(opportunities),
                "created_at": [o[2] for o in opportunities],
                "closed_at": [o[3] for o in opportunities],
                "status": [o[4] for o in opportunities],
            },
        ),
    )


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        load_outcomes_dataset(connected)
        yield connected


def _matching(
    warehouse: Warehouse, text: str, as_of: datetime, target: Entity = Entity.ACCOUNT
) -> list[str]:
    expression = parse_expression(text)
    table = matching_units(expression, warehouse, as_of, target=target).to_pyarrow()
    key = "account_id" if target == Entity.ACCOUNT else "person_id"
    return sorted(table.column(key).to_pylist())


def _values(warehouse: Warehouse, name: str, as_of: datetime) -> dict[str, float | None]:
    rows = outcome_attribute(warehouse, name, as_of, "value").to_pyarrow().to_pylist()
    return {row["account_id"]: row["value"] for row in rows}


# Per built-in, the accounts with a row at T1 (the others have 0 or no value).
VALUES_AT_T1: dict[str, dict[str, float | None]] = {
    "mrr": {"b1": 600.0, "b4": 800.0},
    "subscription_arr": {"b1": 7200.0, "b4": 9600.0},
    "nps_latest": {"b1": 9.0, "b2": 10.0, "b4": 9.0},
    "csat_latest": {"b3": 5.0},
    "ces_latest": {"b2": 6.0},
    "active_users_30d": {"b1": 2.0, "b2": 1.0, "b4": 1.0},
    "events_30d": {"b1": 4.0, "b2": 2.0, "b3": 3.0, "b4": 2.0},
    "usage_change_60d": {"b1": -0.6, "b2": 0.0, "b3": None},  # b3: events, none earlier
    "last_seen_days": {"b1": 18.5, "b2": 10.5, "b3": 4.5, "b4": 25.5},
    "open_opportunities": {"b1": 1.0},
}


def test_every_built_in_has_its_hand_computed_values_as_of_t(warehouse: Warehouse) -> None:
    assert set(VALUES_AT_T1) == set(BUILTIN_ACCOUNT_ATTRIBUTES)
    for name, expected in VALUES_AT_T1.items():
        got = _values(warehouse, name, T1)
        assert got.keys() == expected.keys(), name
        for account, value in expected.items():
            if value is None:
                assert got[account] is None, (name, account)
            else:
                assert got[account] == pytest.approx(value, abs=1e-9), (name, account)
    assert _values(warehouse, "mrr", T2) == {"b1": 400.0, "b2": 1000.0, "b4": 800.0, "b5": 900.0}
    assert _values(warehouse, "nps_latest", T2) == {"b1": 5.0, "b2": 10.0, "b4": 9.0}
    assert _values(warehouse, "open_opportunities", T2) == {"b2": 1.0}


def test_expressions_use_them_as_of_two_times(warehouse: Warehouse) -> None:
    both = "mrr > 500 and nps_latest >= 9"
    # T1: b1 (600, 9) and b4 (800, 9); b2's subscription starts after T1; b5 does not exist yet.
    assert _matching(warehouse, both, T1) == ["b1", "b4"]
    # T2: b1 dropped to 400 and answered 5; b2 (1000, 10) counts now; b5 has no NPS answer.
    assert _matching(warehouse, both, T2) == ["b2", "b4"]
    # Counts and sums are 0 without rows; a missing score matches no comparison.
    assert _matching(warehouse, "mrr = 0", T1) == ["b2", "b3"]
    assert _matching(warehouse, "subscription_arr >= 9600", T2) == ["b2", "b4", "b5"]
    assert _matching(warehouse, "nps_latest has no value", T1) == ["b3"]
    assert _matching(warehouse, "not (nps_latest >= 9)", T2) == ["b1", "b3", "b5"]
    assert _matching(warehouse, "usage_change_60d < -0.4", T1) == ["b1"]
    assert _matching(warehouse, "usage_change_60d has no value", T1) == ["b3", "b4"]
    assert _matching(warehouse, "active_users_30d = 0", T1) == ["b3"]
    assert _matching(warehouse, "events_30d >= 3 and last_seen_days < 20", T1) == ["b1", "b3"]
    assert _matching(warehouse, "open_opportunities >= 1", T2) == ["b2"]
    # An account attribute about people: each person has their account's value.
    assert _matching(warehouse, "mrr > 500", T1, Entity.PERSON) == ["b1-p1", "b1-p2", "b4-p1"]


def test_the_vocabulary_types_them_and_suggests_on_typos() -> None:
    from closeloop.data.compiler import default_catalog

    vocabulary = default_catalog().vocabulary
    text = "mrr > 500 and nps_latest >= 9"
    check_expression(parse_expression(text), vocabulary, text=text)
    with pytest.raises(ExpressionError) as typo:
        check_expression(parse_expression("nps_lates >= 9"), vocabulary, text="nps_lates >= 9")
    assert "unknown attribute 'nps_lates'" in str(typo.value)
    assert "nps_latest" in (typo.value.hint or "")
    assert typo.value.location is not None and typo.value.location.column == 1
    with pytest.raises(ExpressionError) as misuse:
        check_expression(parse_expression('mrr = "x"'), vocabulary, text='mrr = "x"')
    assert "cannot compare mrr (number) with 'x' (string)" in str(misuse.value)


AUDIENCE_JOB = """\
jobs:
  - name: Usage drop
    audience: usage_change_60d < -0.4
    goal: events_30d >= 10
    duration_days: 30
    steps:
      - send: email
        subject: "{{ account.name }}: usage dropped"
        template: integration_nudge
"""


def _project(folder: Path, jobs: str = AUDIENCE_JOB) -> Path:
    init_project(folder, "outcomes")
    (folder / "jobs.yaml").write_text(jobs, encoding="utf-8")
    return folder


def test_a_tick_enrolls_the_audience_of_usage_change(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_outcomes_dataset(workspace.warehouse)
        _tick(workspace, T1)
        enrolled = workspace.store.enrollments_table("Usage drop").to_pylist()
    assert sorted(row["account_id"] for row in enrolled) == ["b1"]


def _tick(workspace: Workspace, at: datetime) -> None:
    project = workspace.project
    run_tick(project, project.job("Usage drop"), workspace.warehouse, workspace.store, at)


def test_explain_and_validate(backends: Backends, tmp_path: Path) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_outcomes_dataset(workspace.warehouse)
        matches = definitions.explain(workspace, "mrr > 500 and nps_latest >= 9", T1)
        later = definitions.explain(workspace, "mrr > 500 and nps_latest >= 9", T2)
    assert (matches.count, [row["account_id"] for row in matches.sample]) == (2, ["b1", "b4"])
    assert (later.count, [row["account_id"] for row in later.sample]) == (2, ["b2", "b4"])


def test_explain_command_on_duckdb(tmp_path: Path) -> None:
    folder = _project(tmp_path / "project")
    with open_workspace(folder, environ={}) as workspace:
        load_outcomes_dataset(workspace.warehouse)
    runner = CliRunner(env={"CLOSELOOP_WAREHOUSE_URL": None, "CLOSELOOP_STATE_URL": None})
    args = ["--at", "2024-06-01", "--format", "json", "--project", str(folder)]
    result = runner.invoke(app, ["explain", "mrr > 500 and nps_latest >= 9", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["count"] == 2
    bad = runner.invoke(app, ["explain", "nps_lates >= 9", *args])
    assert bad.exit_code == 1
    assert "1:1: error: unknown attribute 'nps_lates'" in bad.output
    assert "nps_latest" in bad.output


def test_validate_accepts_them_and_rejects_misuse(tmp_path: Path) -> None:
    runner = CliRunner(env={"CLOSELOOP_WAREHOUSE_URL": None, "CLOSELOOP_STATE_URL": None})
    good = _project(tmp_path / "good")
    result = runner.invoke(app, ["validate", "--project", str(good)])
    assert result.exit_code == 0, result.output
    misuse = AUDIENCE_JOB.replace("usage_change_60d < -0.4", 'mrr = "x"')
    bad = _project(tmp_path / "bad", misuse)
    result = runner.invoke(app, ["validate", "--project", str(bad)])
    assert result.exit_code == 1
    assert "jobs.yaml:3:" in result.output
    assert "cannot compare mrr (number) with 'x' (string)" in result.output


def test_a_project_attribute_of_the_same_name_takes_precedence(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    attributes = folder / "attributes.yaml"
    attributes.write_text(
        attributes.read_text() + "  - name: mrr\n    event: feature_used\n    function: count\n"
    )
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_outcomes_dataset(workspace.warehouse)
        warnings = [str(w) for w in workspace.project.warnings]
        # The project's mrr counts events up to T1: b1 14, b2 10, b3 3, b4 2.
        matches = definitions.explain(workspace, "mrr >= 10", T1)
    assert [row["account_id"] for row in matches.sample] == ["b1", "b2"]
    assert any("'mrr' is also a built-in account attribute" in w for w in warnings)


def test_nothing_after_t_leaks_in(warehouse: Warehouse) -> None:
    # A day before b2's subscription starts it has no MRR; on that day it has.
    assert "b2" not in _values(warehouse, "mrr", datetime(2024, 6, 9, 23, 59))
    assert _values(warehouse, "mrr", datetime(2024, 6, 10))["b2"] == 1000.0
    # b1's NPS answer of 6/20 12:00 counts from that moment on.
    moment = _day(6, 20)
    assert _values(warehouse, "nps_latest", moment - timedelta(seconds=1))["b1"] == 9.0
    assert _values(warehouse, "nps_latest", moment)["b1"] == 5.0


def test_computed_attributes_build_on_them_and_validate_warns_about_shadowing(
    backends: Backends, tmp_path: Path
) -> None:
    folder = _project(tmp_path / "project")
    attributes = folder / "attributes.yaml"
    ratio = "  - name: mrr_per_seat\n    ratio: {numerator: mrr, denominator: seats}\n"
    attributes.write_text(attributes.read_text() + ratio)
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_outcomes_dataset(workspace.warehouse)
        # At T1: b1 600 / 2 people = 300, b4 800 / 1 = 800, b2 0 / 1 = 0, b3 has no people.
        matches = definitions.explain(workspace, "mrr_per_seat >= 300", T1)
        none = definitions.explain(workspace, "mrr_per_seat has no value", T1)
    assert [row["account_id"] for row in matches.sample] == ["b1", "b4"]
    assert [row["account_id"] for row in none.sample] == ["b3"]
    shadow = "  - name: nps_latest\n    event: feature_used\n    function: count\n"
    attributes.write_text(attributes.read_text() + shadow)
    runner = CliRunner(env={"CLOSELOOP_WAREHOUSE_URL": None, "CLOSELOOP_STATE_URL": None})
    result = runner.invoke(app, ["validate", "--project", str(folder)])
    assert result.exit_code == 0, result.output
    assert "warning: 'nps_latest' is also a built-in account attribute" in result.output


def test_every_built_in_is_documented() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    metrics = (docs / "metrics.md").read_text(encoding="utf-8")
    section = metrics.split("\n## Outcome attributes\n", 1)[1].split("\n## ", 1)[0]
    expressions = (docs / "expressions.md").read_text(encoding="utf-8")
    page = expressions.split("\n## Outcome attributes\n", 1)[1].split("\n## ", 1)[0]
    for name in BUILTIN_ACCOUNT_ATTRIBUTES:
        assert f"| `{name}` |" in section, f"{name} is not in docs/metrics.md ## Outcome attributes"
        assert f"| `{name}` |" in page, (
            f"{name} is not in docs/expressions.md ## Outcome attributes"
        )
