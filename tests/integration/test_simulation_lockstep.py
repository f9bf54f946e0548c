"""simulate --run-jobs: the engine and the simulated company in lockstep, checked against truth.

The live run is the treated world of every treated unit and the untreated world of every holdout
unit, so the share of each arm's matured enrollments that really completed within the horizon must
equal, exactly, the simulator's counterfactual answer for the same units.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from closeloop.services.project import open_workspace
from closeloop.services.simulation import policy_of, simulate_into, simulation_config
from closeloop.simulate import CompanySimulator
from support import VARIANT_JOB, Backends, project_with_jobs

HORIZON = 14


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_each_arm_completes_exactly_as_its_counterfactual_truth_says(
    backends: Backends, tmp_path: Path
) -> None:
    folder = project_with_jobs(tmp_path / "project", VARIANT_JOB)
    config = simulation_config("heterogeneous", accounts=500, days=60, arrival_days=35, seed=4)
    with open_workspace(folder, environ=backends.environ()) as workspace:
        result = simulate_into(workspace, config, run_jobs=True)
        as_of = datetime.combine(config.dates()[-1] + timedelta(days=1), datetime.min.time())
        enrollments = workspace.store.enrollments_table("Integration nudge").to_pylist()
        goals = workspace.warehouse.table("events")
        goals = goals.filter(goals.name == "integration_connected")
        reached = {
            row["account_id"]: row["timestamp"]
            for row in goals.select("account_id", "timestamp").to_pyarrow().to_pylist()
        }
        stored = workspace.warehouse.table("closeloop_ground_truth").to_pyarrow().to_pylist()
    (truth,) = result.job_truths
    assert truth.horizon_days == HORIZON
    matured = [row for row in enrollments if row["entered_at"] + timedelta(days=HORIZON) <= as_of]
    assert truth.units == len(matured) > 200
    arms = {row["arm"] for row in matured}
    assert arms == {"holdout", "plain", "video"}

    def completed(row: dict[str, object]) -> bool:
        at = reached.get(row["account_id"])
        entered = row["entered_at"]
        assert isinstance(entered, datetime)
        return at is not None and entered < at <= entered + timedelta(days=HORIZON)

    with open_workspace(folder, environ=backends.environ()) as workspace:
        definition = workspace.project.job("Integration nudge").definition
    simulator_truth = result.job_truths[0]
    assert {(e.variant, e.segment) for e in simulator_truth.effects} >= {
        ("plain", "all"),
        ("video", "all"),
    }
    # Per arm: recompute the truth on that arm's units only and compare with what really happened.
    replay = CompanySimulator(config)
    for arm in ("plain", "video", "holdout"):
        units = [(row["account_id"], row["entered_at"]) for row in matured if row["arm"] == arm]
        live = sum(completed(row) for row in matured if row["arm"] == arm) / len(units)
        variant = "plain" if arm == "holdout" else arm
        (overall,) = [
            e
            for e in replay.true_effects(units, HORIZON, {variant: policy_of(definition, variant)})
            if e.segment == "all"
        ]
        expected = (
            overall.completion_if_control if arm == "holdout" else overall.completion_if_treated
        )
        assert live == expected, arm
    # The table in the warehouse holds the same truths, one row per job, variant and segment.
    assert len(stored) == len(simulator_truth.effects)
    by_key = {(row["variant"], row["segment"]): row for row in stored}
    for effect in simulator_truth.effects:
        row = by_key[(effect.variant, effect.segment)]
        assert row["job_name"] == "Integration nudge"
        assert row["effect"] == effect.effect
        assert row["n"] == effect.n
    written = json.loads(result.truth_path.read_text())
    assert written["jobs"][0]["job_name"] == "Integration nudge"
    assert (
        written["deliveries_by_variant"]["email/plain"]
        > written["deliveries_by_variant"]["email/video"]
        > 0
    )
