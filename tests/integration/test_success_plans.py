"""Success plans on a small hand-built company, on DuckDB + SQLite and on PostgreSQL alike.

Accounts (created 2023-06-01): a1 enterprise, a2 and a3 smb. a1 viewed reports twice in
December 2023 and then on 2024-01-05, 01-10, 01-20, 02-02, 02-04, 02-06, 02-08 and 02-10, so
``count(event "report_viewed")`` is 2 on 2024-01-01, 4 on 01-15, 5 on 02-01, 6 on 02-03, 9 on
02-09 and 10 from 02-10. Every expected number is worked out by hand next to its assertion.
"""

from __future__ import annotations

import multiprocessing
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from statsmodels.stats.proportion import proportion_confint

from closeloop.data.warehouse import Warehouse
from closeloop.engine import plans as plan_store
from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.errors import ConcurrencyError, DefinitionErrors, LocatedError, NotFoundError
from closeloop.schemas.plans import (
    ObjectiveInput,
    ObjectiveUpdate,
    Plan,
    PlanCreate,
    RenegotiationRequest,
)
from closeloop.services import plans
from closeloop.services.engine_runs import run_cycle
from closeloop.services.project import Workspace, init_project, open_workspace
from support import Backends

CREATED = datetime(2023, 6, 1)
ACCOUNTS = [("a1", "enterprise"), ("a2", "smb"), ("a3", "smb")]
VIEWS = [
    datetime(2023, 12, 10),
    datetime(2023, 12, 20),
    datetime(2024, 1, 5),
    datetime(2024, 1, 10),
    datetime(2024, 1, 20),
    datetime(2024, 2, 2),
    datetime(2024, 2, 4),
    datetime(2024, 2, 6),
    datetime(2024, 2, 8),
    datetime(2024, 2, 10),
]
REPORTS = 'count(event "report_viewed")'


def load(warehouse: Warehouse) -> None:
    def put(table: str, rows: dict[str, list[Any]]) -> None:
        warehouse.append(table, warehouse.arrow_for(table, rows))

    warehouse.ensure_tables()
    put(
        "accounts",
        {
            "account_id": [a for a, _ in ACCOUNTS],
            "segment": [s for _, s in ACCOUNTS],
            "created_at": [CREATED] * len(ACCOUNTS),
        },
    )
    put(
        "events",
        {
            "event_id": [f"e{i}" for i in range(len(VIEWS))],
            "account_id": ["a1"] * len(VIEWS),
            "name": ["report_viewed"] * len(VIEWS),
            "timestamp": VIEWS,
        },
    )


@pytest.fixture
def project(backends: Backends, tmp_path: Path) -> tuple[Path, Backends]:
    folder = tmp_path / "project"
    init_project(folder, "plans")
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        load(warehouse)
    return folder, backends


def workspace(project: tuple[Path, Backends]) -> Any:
    folder, backends = project
    return open_workspace(folder, environ=backends.environ())


def manual(title: str, baseline: float, target: float, due: date, **more: Any) -> ObjectiveInput:
    return ObjectiveInput(
        title=title, measure="manual", baseline=baseline, target=target, target_date=due, **more
    )


def new_plan(
    ws: Workspace,
    account: str,
    objectives: list[ObjectiveInput],
    *,
    owner: str | None = None,
    now: datetime = datetime(2024, 1, 1),
) -> Plan:
    request = PlanCreate(account_id=account, title=f"{account} plan", owner=owner, objectives=[])
    request = request.model_copy(update={"objectives": objectives})
    return plans.create_plan(ws, request, actor="test", now=now)


def value(ws: Workspace, plan: Plan, index: int, number: float, now: datetime) -> Plan:
    objective = plan.objectives[index].id
    return plans.update_objective(
        ws, plan.id, objective, ObjectiveUpdate(value=number), actor="test", now=now
    )


def test_expression_measure_is_evaluated_point_in_time_with_milestones(
    project: tuple[Path, Backends],
) -> None:
    with workspace(project) as ws:
        plan = new_plan(
            ws,
            "a1",
            [
                ObjectiveInput(
                    title="Reports viewed",
                    measure=REPORTS,
                    target=10,
                    target_date=date(2024, 3, 31),
                ),
            ],
            owner="ana",
        )
        reports = plan.objectives[0]
        # Baseline as of 2024-01-01: the two December views (later views are invisible then).
        assert reports.baseline == 2.0 and reports.status == "open"
        assert [m.value for m in reports.milestones] == [6.0, pytest.approx(8.4), 10.0]

        checked = plans.check(ws, datetime(2024, 1, 15), actor="test")
        # As of 01-15 the views of 01-20 and February are invisible: 2 + 2 = 4.
        assert [(v.objective_id, v.value) for v in checked.values] == [(reports.id, 4.0)]
        assert (checked.evaluated, checked.recorded) == (1, 1)
        assert plans.check(ws, datetime(2024, 1, 15), actor="test").recorded == 0  # a re-run
        for moment in (datetime(2024, 2, 1), datetime(2024, 2, 3), datetime(2024, 2, 9)):
            plans.check(ws, moment, actor="test")
        shown = plans.show_plan(ws, plan.id, at=datetime(2024, 2, 9, 12))
        reports = shown.objectives[0]
        # Values 2 (baseline), 4, 5, 6, 9: progress (6-2)/8 = 0.5 on 02-03, (9-2)/8 = 0.875 on
        # 02-09 (past 0.8), not yet 1.
        assert [o.value for o in reports.observations] == [2.0, 4.0, 5.0, 6.0, 9.0]
        reached = [m.reached_at and m.reached_at.replace(tzinfo=None) for m in reports.milestones]
        assert reached == [datetime(2024, 2, 3), datetime(2024, 2, 9), None]
        assert reports.progress == pytest.approx(0.875) and reports.status == "open"
        plans.check(ws, datetime(2024, 2, 15), actor="test")
        reports = plans.show_plan(ws, plan.id, at=datetime(2024, 3, 1)).objectives[0]
        assert reports.status == "met" and reports.latest_value == 10.0
        assert reports.met_at is not None and reports.met_at.replace(tzinfo=None) == datetime(
            2024, 2, 15
        )
        # Met objectives are no longer evaluated.
        assert plans.check(ws, datetime(2024, 2, 20), actor="test").evaluated == 0


def test_condition_measure_and_refusals(project: tuple[Path, Backends]) -> None:
    with workspace(project) as ws:
        # a3 has no views: the condition is 0 at creation, 1 is the target.
        plan = new_plan(
            ws,
            "a3",
            [
                ObjectiveInput(
                    title="First report",
                    measure='count(event "report_viewed") >= 1',
                    target=1,
                    target_date=date(2024, 3, 31),
                )
            ],
        )
        assert plan.objectives[0].baseline == 0.0
        # a1 already viewed reports on 2024-01-01: target 1 equals the baseline 1.
        with pytest.raises(LocatedError, match="equals today's value"):
            new_plan(
                ws,
                "a1",
                [
                    ObjectiveInput(
                        title="First report",
                        measure='count(event "report_viewed") >= 1',
                        target=1,
                        target_date=date(2024, 3, 31),
                    )
                ],
            )
        with pytest.raises(NotFoundError, match="no account 'zz'"):
            new_plan(ws, "zz", [])
        with pytest.raises(DefinitionErrors) as problems:
            new_plan(
                ws,
                "a1",
                [
                    ObjectiveInput(
                        title="x", measure="segment", target=1, target_date=date(2024, 1, 2)
                    ),
                    ObjectiveInput(
                        title="y", measure='count(evnt "a")', target=1, target_date=date(2024, 1, 2)
                    ),
                    manual("z", 0, 1, date(2024, 1, 2)).model_copy(update={"baseline": None}),
                ],
            )
        rendered = [problem.render() for problem in problems.value.errors]
        assert "a measure must be a number or a condition; 'segment' is a string" in rendered[0]
        assert "count(evnt" in rendered[1] and "^" in rendered[1]
        assert "needs its baseline" in rendered[2]


def test_decreasing_target_milestones_from_manual_values(project: tuple[Path, Backends]) -> None:
    """Open tickets from 40 down to 20 by 2024-04-30: progress = (v - 40) / (20 - 40).

    32 → 0.4, 30 → 0.5 (milestone 50% on 03-01), 24 → 0.8 (80% on 04-01), 21 → 0.95.
    """
    with workspace(project) as ws:
        plan = new_plan(ws, "a2", [manual("Open tickets", 40, 20, date(2024, 4, 30))])
        for number, moment in (
            (32, datetime(2024, 2, 1)),
            (30, datetime(2024, 3, 1)),
            (24, datetime(2024, 4, 1)),
            (21, datetime(2024, 4, 15)),
        ):
            plan = value(ws, plan, 0, number, moment)
        tickets = plans.show_plan(ws, plan.id, at=datetime(2024, 4, 20)).objectives[0]
        reached = [m.reached_at and m.reached_at.replace(tzinfo=None) for m in tickets.milestones]
        assert reached == [datetime(2024, 3, 1), datetime(2024, 4, 1), None]
        assert [m.value for m in tickets.milestones] == [30.0, 24.0, 20.0]
        assert tickets.progress == pytest.approx(0.95) and tickets.status == "open"
        # The agreed day ends at 2024-05-01 00:00 without 20 reached: missed.
        assert plans.show_plan(ws, plan.id, at=datetime(2024, 5, 1)).objectives[0].status == (
            "missed"
        )
        assert plans.show_plan(ws, plan.id, at=datetime(2024, 4, 30, 23)).objectives[0].status == (
            "open"
        )


def test_renegotiated_target_met_by_its_new_date_counts_as_met(
    project: tuple[Path, Backends],
) -> None:
    """Target 100 by 2024-03-31 from 0; 60 on 03-15, so missed on 04-01. Renegotiated on
    04-02 to 80 by 2024-06-30; 85 on 05-10 ≥ 80 before the new date: met on 05-10."""
    with workspace(project) as ws:
        plan = new_plan(ws, "a1", [manual("Seats active", 0, 100, date(2024, 3, 31))])
        objective = plan.objectives[0].id
        plan = value(ws, plan, 0, 60, datetime(2024, 3, 15))
        assert plans.show_plan(ws, plan.id, at=datetime(2024, 4, 1)).objectives[0].status == (
            "missed"
        )
        plan = plans.renegotiate(
            ws,
            plan.id,
            objective,
            RenegotiationRequest(
                target=80,
                target_date=date(2024, 6, 30),
                reason="hiring freeze until May",
                agreed_by="Kim Lee (VP Ops)",
            ),
            actor="ana",
            now=datetime(2024, 4, 2),
        )
        seats = plan.objectives[0]
        assert seats.status == "open"  # 60 < 80, and 2024-06-30 is ahead
        assert (seats.target, seats.target_date) == (80.0, date(2024, 6, 30))
        assert (seats.original_target, seats.original_target_date) == (100.0, date(2024, 3, 31))
        (history,) = seats.renegotiations
        assert (history.old_target, history.old_target_date) == (100.0, date(2024, 3, 31))
        assert (history.new_target, history.new_target_date) == (80.0, date(2024, 6, 30))
        assert (history.agreed_by, history.recorded_by) == ("Kim Lee (VP Ops)", "ana")
        plan = value(ws, plan, 0, 85, datetime(2024, 5, 10))
        seats = plans.show_plan(ws, plan.id, at=datetime(2024, 7, 1)).objectives[0]
        assert seats.status == "met"
        assert seats.met_at is not None and seats.met_at.replace(tzinfo=None) == datetime(
            2024, 5, 10
        )
        # The churn review reads plans as they stood at a time: on 2024-04-01 (before the
        # renegotiation) version 2, target 100, missed; now the renegotiated, met objective.
        (then,) = plans.plans_for_account(ws, "a1", datetime(2024, 4, 1))
        assert (then.version, then.objectives[0].target, then.objectives[0].status) == (
            2,
            100.0,
            "missed",
        )
        assert plans.plans_for_account(ws, "a1", datetime(2023, 12, 31)) == []
        (now,) = plans.plans_for_account(ws, "a1")
        assert (now.version, now.objectives[0].status) == (4, "met")
        # Version 2 (the 60) is readable as it was: the original target, no renegotiation.
        before = plans.show_plan(ws, plan.id, version=2)
        assert (before.version, before.latest_version) == (2, 4)
        assert before.objectives[0].target == 100.0 and before.objectives[0].renegotiations == []
        assert [v.version for v in before.versions] == [1, 2]


def test_goals_achieved_per_csm_and_segment(project: tuple[Path, Backends]) -> None:
    """As of 2024-07-01, objectives due 2024-06-30 (or earlier), each met (value = target) or
    missed (value short of it), plus one met early, one open and one dropped:

    a1 (enterprise, plan owner ana): met, met, missed, open (due 2024-09-30), met early (due
    2024-12-31, met 2024-05-01). a2 (smb, ben): missed, met, dropped. a3 (smb, ben): met
    (objective owner cara), missed, missed.

    Decided: ana 3 met of 4; ben a2 missed, a2 met, a3 missed, a3 missed = 1 of 4; cara 1 of 1.
    enterprise 3 of 4; smb 2 of 5 (a2 met, a3 met of a2 1 + a3 2 missed). Overall 5 of 9.
    Wilson 95% (z = 1.959964): 3/4 → centre (0.75 + z²/8) / (1 + z²/4) = 0.627530, half
    z·sqrt(0.75·0.25/4 + z²/64) / (1 + z²/4) = 0.326883, so [0.300642, 0.954413]; 1/4 →
    [0.045587, 0.699358]; 1/1 → [0.206549, 1]; 2/5 → [0.117621, 0.769276]; 5/9 →
    [0.266651, 0.811221] (statsmodels proportion_confint(method="wilson") agrees below).
    """
    due = date(2024, 6, 30)
    with workspace(project) as ws:
        a1 = new_plan(
            ws,
            "a1",
            [
                manual("m1", 0, 10, due),
                manual("m2", 0, 10, due),
                manual("x1", 0, 10, due),
                manual("open", 0, 10, date(2024, 9, 30)),
                manual("early", 0, 10, date(2024, 12, 31)),
            ],
            owner="ana",
        )
        for index, number in ((0, 10), (1, 12), (2, 7), (3, 5), (4, 10)):
            value(ws, a1, index, number, datetime(2024, 5, 1))
        a2 = new_plan(
            ws,
            "a2",
            [manual("x", 0, 10, due), manual("m", 0, 10, due), manual("d", 0, 10, due)],
            owner="ben",
        )
        value(ws, a2, 1, 10, datetime(2024, 6, 30, 23))  # the last hour of the agreed day
        plans.update_objective(
            ws,
            a2.id,
            a2.objectives[2].id,
            ObjectiveUpdate(status="dropped"),
            actor="ben",
            now=datetime(2024, 5, 1),
        )
        a3 = new_plan(
            ws,
            "a3",
            [
                manual("m", 0, 10, due, owner="cara"),
                manual("x", 0, 10, due),
                manual("x", 0, 10, date(2024, 3, 31)),
            ],
            owner="ben",
        )
        value(ws, a3, 0, 10, datetime(2024, 6, 1))
        value(ws, a3, 2, 10, datetime(2024, 4, 1, 0, 0))  # a day late: still missed

        at = datetime(2024, 7, 1)
        by_csm = plans.goals_achieved(ws, at, by="csm")
        by_segment = plans.goals_achieved(ws, at, by="segment")

        def counts(rows: Any) -> dict[str, tuple[int, int]]:
            return {row.group: (row.met, row.decided) for row in rows}

        assert counts(by_csm.groups) == {"ana": (3, 4), "ben": (1, 4), "cara": (1, 1)}
        assert counts(by_segment.groups) == {"enterprise": (3, 4), "smb": (2, 5)}
        assert (by_csm.overall.met, by_csm.overall.decided) == (5, 9)
        assert by_segment.overall == by_csm.overall.model_copy(update={"group": "overall"})
        expected = {
            (3, 4): (0.300642, 0.954413),
            (1, 4): (0.045587, 0.699358),
            (1, 1): (0.206549, 1.0),
            (2, 5): (0.117621, 0.769276),
            (5, 9): (0.266651, 0.811221),
        }
        for row in [*by_csm.groups, *by_segment.groups, by_csm.overall]:
            lower, upper = expected[(row.met, row.decided)]
            assert (round(row.lower or -1, 6), round(row.upper or -1, 6)) == (lower, upper)
            reference = proportion_confint(row.met, row.decided, alpha=0.05, method="wilson")
            assert row.lower == pytest.approx(reference[0], abs=1e-9)
            assert row.upper == pytest.approx(reference[1], abs=1e-9)
            assert row.rate == pytest.approx(row.met / row.decided)

        # Point in time: on 2024-05-15 ana's m1, m2 and "early" were met (05-01) and a3's third
        # objective (due 03-31, its 10 came at 04-01 00:00, after the day ended) was missed;
        # nothing else was decided yet (cara's objective is open: listed, no rate).
        earlier = plans.goals_achieved(ws, datetime(2024, 5, 15), by="csm")
        assert counts(earlier.groups) == {"ana": (3, 3), "ben": (0, 1), "cara": (0, 0)}
        assert earlier.groups[-1].rate is None and earlier.groups[-1].lower is None


def test_versions_and_conflicting_writers(project: tuple[Path, Backends]) -> None:
    with workspace(project) as ws:
        plan = new_plan(ws, "a2", [manual("Tickets", 40, 20, date(2024, 4, 30))], owner="ben")
        objective = plan.objectives[0].id
        assert plan.version == 1
        renamed = plans.update_objective(
            ws,
            plan.id,
            objective,
            ObjectiveUpdate(title="Open tickets", version=1),
            actor="ben",
            now=datetime(2024, 1, 2),
        )
        assert (renamed.version, renamed.objectives[0].title) == (2, "Open tickets")
        with pytest.raises(ConcurrencyError, match="at version 2, not 1"):
            plans.update_objective(
                ws,
                plan.id,
                objective,
                ObjectiveUpdate(owner="cara", version=1),
                actor="ana",
                now=datetime(2024, 1, 3),
            )
        shown = plans.show_plan(ws, plan.id)
        assert (shown.version, shown.objectives[0].owner) == (2, None)  # nothing written
        assert plans.show_plan(ws, plan.id, version=1).objectives[0].title == "Tickets"
        with pytest.raises(NotFoundError, match="versions 1 to 2, not 7"):
            plans.show_plan(ws, plan.id, version=7)

        # Two writers read version 2 and write at the same moment: exactly one wins.
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def write(owner: str) -> None:
            barrier.wait()
            try:
                plans.update_objective(
                    ws,
                    plan.id,
                    objective,
                    ObjectiveUpdate(owner=owner, version=2),
                    actor=owner,
                    now=datetime(2024, 1, 4),
                )
                outcomes.append(f"won:{owner}")
            except ConcurrencyError:
                outcomes.append(f"lost:{owner}")

        threads = [threading.Thread(target=write, args=(name,)) for name in ("dana", "eve")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(o.split(":")[0] for o in outcomes) == ["lost", "won"]
        winner = next(o.split(":")[1] for o in outcomes if o.startswith("won"))
        final = plans.show_plan(ws, plan.id)
        assert (final.version, final.objectives[0].owner) == (3, winner)
        assert [v.version for v in final.versions] == [1, 2, 3]


def test_the_daemon_cycle_checks_plans_once_a_day(project: tuple[Path, Backends]) -> None:
    folder, backends = project
    with workspace(project) as ws:
        plan = new_plan(
            ws,
            "a1",
            [
                ObjectiveInput(
                    title="Reports", measure=REPORTS, target=10, target_date=date(2024, 3, 31)
                )
            ],
        )
    for moment in (datetime(2024, 1, 15, 9), datetime(2024, 1, 15, 18), datetime(2024, 2, 3)):
        cycle = run_cycle(folder, moment, backends.environ())
        assert cycle.error is None
    with workspace(project) as ws:
        values = [o.value for o in plans.show_plan(ws, plan.id).objectives[0].observations]
    # Baseline 2; 4 on 01-15 at 09:00 (the 18:00 cycle found that day's value); 6 on 02-03.
    assert values == [2.0, 4.0, 6.0]


def test_migration_0008_creates_the_tables_the_schema_declares(backends: Backends) -> None:
    store = StateStore.connect(backends.state_url)
    try:
        store.migrate()
        inspector = sa.inspect(store.engine)
        for table in (
            schema.success_plans,
            schema.success_plan_versions,
            schema.plan_objectives,
            schema.plan_renegotiations,
            schema.plan_observations,
        ):
            columns = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert set(columns) == {c.name for c in table.columns}, table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, column.name
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
            assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}
        config = store._alembic_config()
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        assert "success_plans" not in sa.inspect(store.engine).get_table_names()
    finally:
        store.close()


def _write_in_process(state_url: str, plan_id: int, owner: str, barrier: Any, results: Any) -> None:
    """One writer process: wait for the other, then move the plan from version 1."""
    store = StateStore.connect(state_url)
    try:

        def apply(connection: Any, _state: Any) -> None:
            plan_store.update_plan_row(connection, plan_id, {"owner": owner})

        barrier.wait()
        try:
            plan_store.change_plan(
                store,
                plan_id,
                expected_version=1,
                actor=owner,
                now=datetime(2024, 1, 2),
                change=f"owner {owner}",
                apply=apply,
            )
            results.put(f"won:{owner}")
        except ConcurrencyError:
            results.put(f"lost:{owner}")
    finally:
        store.close()


def test_two_processes_with_the_same_version_one_wins(project: tuple[Path, Backends]) -> None:
    with workspace(project) as ws:
        plan = new_plan(ws, "a2", [manual("Tickets", 40, 20, date(2024, 4, 30))])
    _, backends = project
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    writers = [
        context.Process(
            target=_write_in_process,
            args=(backends.state_url, plan.id, name, barrier, results),
        )
        for name in ("dana", "eve")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in writers)
    assert [o.split(":")[0] for o in outcomes] == ["lost", "won"]
    winner = next(o.split(":")[1] for o in outcomes if o.startswith("won"))
    with workspace(project) as ws:
        final = plans.show_plan(ws, plan.id)
    assert (final.version, final.owner, len(final.versions)) == (2, winner, 2)


def test_a_measure_that_no_longer_checks_fails_alone(project: tuple[Path, Backends]) -> None:
    """The project's vocabulary changes under a stored measure: ``check`` reports that
    objective with the reason and still records the others."""
    with workspace(project) as ws:
        plan = new_plan(
            ws,
            "a1",
            [
                ObjectiveInput(
                    title="Reports", measure=REPORTS, target=10, target_date=date(2024, 3, 31)
                ),
                ObjectiveInput(
                    title="Five reports",
                    measure='count(event "report_viewed") >= 5',
                    target=1,
                    target_date=date(2024, 3, 31),
                ),
            ],
        )
        broken = plan.objectives[1].id

        def rename(connection: Any, _state: Any) -> None:
            plan_store.update_objective_row(connection, broken, {"measure": "seats_in_use"})

        plan_store.change_plan(
            ws.store,
            plan.id,
            expected_version=None,
            actor="test",
            now=datetime(2024, 1, 2),
            change="the attribute was renamed",
            apply=rename,
        )
        result = plans.check(ws, datetime(2024, 1, 15), actor="test")
    assert [(v.objective_id, v.value) for v in result.values] == [(plan.objectives[0].id, 4.0)]
    (failure,) = result.failures
    assert failure.objective_id == broken and "seats_in_use" in failure.reason
