"""`allocation: thompson` on real parts: the holdout stays fixed, the better variant gains share.

New accounts arrive every simulated day; each enrolled account connects an integration with a
known probability by arm (seeded), half a day after entry. The engine ticks daily.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.assignment import HOLDOUT, assign_variant, bucket
from closeloop.engine.state import StateStore
from closeloop.services.definitions import validate_project
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.settings import load_settings
from closeloop.stats import srm_test
from closeloop.stats.bandit import MIN_VARIANT_SHARE
from support import Backends, run_tick

DAY0 = datetime(2024, 3, 1)
DAYS = 12
ARRIVALS_PER_DAY = 150
COMPLETION_RATE = {HOLDOUT: 0.1, "weak": 0.1, "strong": 0.5}
STEPS = """
        steps:
          - send: email
            subject: "{{ account.name }}: connect your first integration"
            template: integration_nudge"""
JOBS = f"""\
jobs:
  - name: Adaptive
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 3
    holdout: 0.2
    allocation: thompson
    variants:
      - name: weak{STEPS}
      - name: strong{STEPS}
    hypothesis:
      expected_effect: the strong email gets more integrations connected
      horizon_days: 2
"""


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="test")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    with open_workspace(folder, environ=backends.environ()) as opened:
        yield opened


def _arrive(warehouse: Warehouse, day: int) -> None:
    ids = [f"acc-{day:02d}-{i:03d}" for i in range(ARRIVALS_PER_DAY)]
    created = [DAY0 + timedelta(days=day, hours=-6)] * len(ids)
    warehouse.append(
        "accounts",
        warehouse.arrow_for("accounts", {"account_id": ids, "name": ids, "created_at": created}),
    )
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"{a}-p0" for a in ids],
                "account_id": ids,
                "email": [f"{a}@example.com" for a in ids],
                "name": ids,
                "created_at": created,
            },
        ),
    )


def _connect(warehouse: Warehouse, accounts: list[str], at: datetime) -> None:
    if not accounts:
        return
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"{a}-connected" for a in accounts],
                "account_id": accounts,
                "person_id": [f"{a}-p0" for a in accounts],
                "name": ["integration_connected"] * len(accounts),
                "timestamp": [at] * len(accounts),
            },
        ),
    )


def _simulate(workspace: Workspace) -> list[dict[str, object]]:
    rng = np.random.default_rng(20240301)
    job = workspace.project.job("Adaptive")
    for day in range(DAYS):
        at = DAY0 + timedelta(days=day)
        _arrive(workspace.warehouse, day)
        run_tick(workspace.project, job, workspace.warehouse, workspace.store, at)
        entered = [
            row
            for row in workspace.store.enrollments_table("Adaptive").to_pylist()
            if row["entered_at"] == at
        ]
        converted = [
            str(row["account_id"])
            for row in entered
            if rng.random() < COMPLETION_RATE[str(row["arm"])]
        ]
        _connect(workspace.warehouse, converted, at + timedelta(hours=12))
    return list(workspace.store.enrollments_table("Adaptive").to_pylist())


def _allocations(workspace: Workspace) -> dict[datetime, dict[str, float]]:
    t = schema.tick_allocations
    shares: dict[datetime, dict[str, float]] = defaultdict(dict)
    with workspace.store.engine.connect() as connection:
        for at, arm, share in connection.execute(sa.select(t.c.at, t.c.arm, t.c.share)):
            shares[at][arm] = share
    return dict(shares)


def test_thompson_keeps_the_holdout_fixed_and_shifts_toward_the_better_variant(
    workspace: Workspace,
) -> None:
    enrollments = _simulate(workspace)
    salt = workspace.store.job_record("Adaptive").salt
    allocations = _allocations(workspace)
    assert len(allocations) == DAYS
    assert len(enrollments) == DAYS * ARRIVALS_PER_DAY

    # The holdout is decided by the hash bucket alone, exactly as with fixed allocation.
    for row in enrollments:
        in_holdout = bucket(salt, str(row["account_id"])) < 0.2
        assert (row["arm"] == HOLDOUT) == in_holdout, row
    arms = Counter(str(row["arm"]) for row in enrollments)
    holdout_vs_treated = srm_test([arms[HOLDOUT], len(enrollments) - arms[HOLDOUT]], [0.2, 0.8])
    assert not holdout_vs_treated.mismatch, arms

    # Each enrollment's variant is the recorded split of its tick applied to its bucket.
    for row in enrollments:
        split = allocations[row["entered_at"]]
        weights = [(name, split[name]) for name in ("weak", "strong")]
        assert assign_variant(salt, str(row["account_id"]), 0.2, weights) == row["arm"]

    # Recorded splits: holdout constant, sums to one, floors respected, strong rising.
    for split in allocations.values():
        assert split[HOLDOUT] == pytest.approx(0.2)
        assert sum(split.values()) == pytest.approx(1.0)
        assert min(split["weak"], split["strong"]) >= 0.8 * MIN_VARIANT_SHARE - 1e-9
    first, last = allocations[DAY0], allocations[DAY0 + timedelta(days=DAYS - 1)]
    assert first["weak"] == first["strong"] == pytest.approx(0.4)  # nothing matured yet
    assert last["strong"] > 0.7

    # The sample-ratio check of the variants, weighted by each tick's recorded split, holds.
    entered_per_tick = Counter(row["entered_at"] for row in enrollments)
    names = [HOLDOUT, "weak", "strong"]
    expected = [
        sum(entered_per_tick[at] * split[name] for at, split in allocations.items())
        for name in names
    ]
    assert not srm_test([arms[name] for name in names], expected).mismatch, (arms, expected)
    late = Counter(
        str(row["arm"]) for row in enrollments if row["entered_at"] >= DAY0 + timedelta(days=6)
    )
    assert late["strong"] > 5 * late["weak"], late


def test_a_tick_run_again_changes_nothing(workspace: Workspace) -> None:
    job = workspace.project.job("Adaptive")
    _arrive(workspace.warehouse, 0)
    first = run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    again = run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    assert first.entered == ARRIVALS_PER_DAY and again.already_done
    assert len(_allocations(workspace)[DAY0]) == 3


def test_thompson_with_one_variant_is_reported_at_its_place(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, name="test")
    jobs = JOBS.replace(f"      - name: strong{STEPS}\n", "")
    (folder / "jobs.yaml").write_text(jobs, encoding="utf-8")
    result = validate_project(load_settings(folder, environ={}))
    problems = [p for p in result.problems if p.severity == "error"]
    assert len(problems) == 1, problems
    # Line 7, column 17 of jobs.yaml: the value of `allocation:`.
    location = problems[0].location
    assert location is not None
    assert (location.file, location.line, location.column) == (str(folder / "jobs.yaml"), 7, 17)
    assert "allocation thompson chooses among variants, and this job has 1" in problems[0].message


def test_upgrading_from_0002_adds_an_empty_allocation_table(backends: Backends) -> None:
    store = StateStore.connect(backends.state_url)
    try:
        config = store._alembic_config()
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
        with store.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (name, salt, current_version, content_hash, holdout,"
                    " launched_at) VALUES ('Nudge', 's', 1, 'h', 0.2, :at)"
                ),
                {"at": DAY0},
            )
        store.migrate()
        store.check_migrated()
        with store.engine.begin() as connection:
            assert connection.execute(sa.select(schema.jobs.c.name)).scalars().all() == ["Nudge"]
            assert connection.execute(sa.select(schema.tick_allocations)).all() == []
            connection.execute(
                schema.tick_allocations.insert(),
                {
                    "job_name": "Nudge",
                    "at": DAY0,
                    "arm": HOLDOUT,
                    "share": 0.2,
                    "matured": 0,
                    "completed": 0,
                },
            )
    finally:
        store.close()
