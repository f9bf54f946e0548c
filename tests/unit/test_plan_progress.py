"""Success-plan statuses and milestones from plain rows (no store), and the coverage of the
goals-achieved interval at the small counts a CSM's book holds, by seeded simulation."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from closeloop.engine.plans import ObjectiveRow, ObservationRow
from closeloop.schemas.plans import ObjectiveStatus
from closeloop.services.plan_progress import achieved_group, objective_model

CREATED = datetime(2024, 1, 1)


def row(baseline: float, target: float, due: date, dropped: datetime | None = None) -> ObjectiveRow:
    return ObjectiveRow(
        id=1,
        plan_id=1,
        title="t",
        measure="manual",
        baseline=baseline,
        target=target,
        target_date=due,
        owner=None,
        dropped_at=dropped,
        created_at=CREATED,
    )


def values(*pairs: tuple[datetime, float]) -> list[ObservationRow]:
    return [ObservationRow(1, moment, value, "manual", "test", moment) for moment, value in pairs]


def test_the_agreed_day_ends_at_midnight_and_the_target_counts_within_rounding() -> None:
    # From 0.1 to 0.3 by 2024-03-31: 0.1 + 0.2 is 0.30000000000000004 in floating point.
    objective = row(0.1, 0.3, date(2024, 3, 31))
    on_time = values((datetime(2024, 3, 31, 23, 59), 0.1 + 0.2))
    late = values((datetime(2024, 4, 1), 0.3))
    assert objective_model(objective, [], on_time, datetime(2024, 5, 1)).status == "met"
    assert objective_model(objective, [], late, datetime(2024, 5, 1)).status == "missed"
    # Before the day ends, a late value is still in the future: open.
    assert objective_model(objective, [], late, datetime(2024, 3, 31, 12)).status == "open"


def test_decreasing_target_and_dropped_wins() -> None:
    """40 → 20: 30 is progress (30 - 40) / (20 - 40) = 0.5; 16 overshoots to 1.2."""
    objective = row(40, 20, date(2024, 6, 30))
    seen = values((datetime(2024, 2, 1), 30), (datetime(2024, 3, 1), 16))
    model = objective_model(objective, [], seen, datetime(2024, 4, 1))
    assert model.progress == pytest.approx(1.2) and model.status == "met"
    reached = [m.reached_at and m.reached_at.replace(tzinfo=None) for m in model.milestones]
    # 50% (value 30) on 02-01; 80% (24) and 100% (20) first on 03-01, by the 16.
    assert reached == [datetime(2024, 2, 1), datetime(2024, 3, 1), datetime(2024, 3, 1)]
    dropped = row(40, 20, date(2024, 6, 30), dropped=datetime(2024, 3, 15))
    assert objective_model(dropped, [], seen, datetime(2024, 4, 1)).status == "dropped"
    # Dropped is a fact from its time on: before it, the objective was met.
    assert objective_model(dropped, [], seen, datetime(2024, 3, 10)).status == "met"


@pytest.mark.parametrize("n", [5, 10, 20, 40])
def test_goals_achieved_interval_covers_at_small_counts(n: int) -> None:
    """Estimand: a CSM's true probability of meeting an objective. 2,000 seeded books of n
    decided objectives per true rate; Wilson 95% is exact-coverage ≥ 0.918 at these n and rates
    (binomial sums), so each simulated coverage must be ≥ 0.90 (three Monte Carlo standard
    errors, sqrt(0.08 · 0.92 / 2000) = 0.006, below) and their mean ≥ 0.935."""
    rng = np.random.default_rng(20240 + n)
    coverages = []
    for truth in (0.3, 0.5, 0.7, 0.9):
        covered = 0
        for met in rng.binomial(n, truth, size=2000):
            hits: list[ObjectiveStatus] = ["met"] * int(met)
            missed: list[ObjectiveStatus] = ["missed"] * (n - int(met))
            statuses = hits + missed
            group = achieved_group("csm", [*statuses, "open", "dropped"])  # neither counts
            assert group.decided == n
            assert group.lower is not None and group.upper is not None
            covered += group.lower <= truth <= group.upper
        coverages.append(covered / 2000)
    assert min(coverages) >= 0.90, coverages
    assert float(np.mean(coverages)) >= 0.935, coverages


def test_no_decided_objective_is_a_row_without_a_rate() -> None:
    group = achieved_group("ana", ["open", "dropped"])
    assert (group.decided, group.rate, group.lower, group.upper) == (0, None, None, None)
