"""Revenue value of a job: hand-counted subscriptions, then a simulated company.

The hand-built case puts term boundaries exactly on the horizons (a term ending on day ``d`` is not
running on ``d``), a mid-term add-on, an account that pays nothing at entry and a unit that has
not had 180 days yet; every number is counted by hand. The simulated case runs the init project's
job through the engine and checks an arm's NRR against an independent computation on the rows.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pytest
from scipy import stats as sps

from closeloop.analysis.job_report import job_units
from closeloop.analysis.revenue_value import PART, RevenueValue, revenue_value, revenue_values
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine.publish import publish_enrollments
from closeloop.services.project import init_project, open_workspace
from closeloop.services.results import revenue_model
from closeloop.services.simulation import simulate_into, simulation_config
from closeloop.stats import Status
from support import Backends

JOB = "Renewal rescue"
AS_OF = datetime(2024, 12, 31)
ENTERED = datetime(2024, 1, 1, 9, 30)  # +90 days: 2024-03-31, +180 days: 2024-06-29
LATE = datetime(2024, 8, 1)  # +90 days: 2024-10-30 (matured), +180 days: 2025-01-28 (not yet)

# unit/account, arm, entered_at
UNITS = [
    ("h1", "holdout", ENTERED),
    ("h2", "holdout", ENTERED),
    ("h3", "holdout", ENTERED),
    ("t1", "plain", ENTERED),
    ("t2", "plain", ENTERED),
    ("t3", "video", ENTERED),
    ("t4", "video", LATE),
]
# account, start, end (None: open-ended), mrr
SUBSCRIPTIONS = [
    ("h1", date(2023, 7, 1), date(2024, 3, 31), 100.0),  # ends on day 90: churned at 90
    ("h2", date(2023, 10, 1), date(2024, 10, 1), 200.0),
    ("h3", date(2024, 2, 1), None, 50.0),  # no MRR at entry, then converts
    ("t1", date(2023, 7, 1), date(2024, 3, 31), 100.0),
    ("t1", date(2024, 3, 31), None, 120.0),  # renewal starting on day 90, expanded
    ("t2", date(2023, 10, 1), date(2024, 10, 1), 200.0),
    ("t2", date(2024, 2, 15), date(2024, 10, 1), 30.0),  # mid-term add-on
    ("t3", date(2023, 12, 1), date(2024, 6, 29), 80.0),  # ends on day 180: churned at 180
    ("t4", date(2024, 8, 1), None, 60.0),  # starts on the entry day: counts at entry
    ("t4", date(2023, 1, 1), date(2024, 1, 1), 999.0),  # long over before entry
    ("x9", date(2023, 1, 1), None, 500.0),  # never enrolled
]
# By hand: (MRR at entry, at 90 days, at 180 days) per unit; None: not matured.
HAND = {
    "h1": (100.0, 0.0, 0.0),
    "h2": (200.0, 200.0, 200.0),
    "h3": (0.0, 50.0, 50.0),
    "t1": (100.0, 120.0, 120.0),
    "t2": (200.0, 230.0, 230.0),
    "t3": (80.0, 80.0, 0.0),
    "t4": (60.0, 60.0, None),
}


def _load(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    warehouse.append(
        "subscriptions",
        warehouse.arrow_for(
            "subscriptions",
            {
                "subscription_id": [f"s{i}" for i in range(len(SUBSCRIPTIONS))],
                "account_id": [row[0] for row in SUBSCRIPTIONS],
                "start_date": [row[1] for row in SUBSCRIPTIONS],
                "end_date": [row[2] for row in SUBSCRIPTIONS],
                "mrr": [row[3] for row in SUBSCRIPTIONS],
            },
        ),
    )
    rows = [*UNITS, ("h2", "holdout", ENTERED)]  # the last one belongs to another job
    jobs = [JOB] * len(UNITS) + ["Another job"]
    warehouse.replace(
        ENROLLMENTS_TABLE,
        warehouse.arrow_for(
            ENROLLMENTS_TABLE,
            {
                "enrollment_id": [f"e{i}" for i in range(len(rows))],
                "job_name": jobs,
                "job_version": [1] * len(rows),
                "account_id": [row[0] for row in rows],
                "arm": [row[1] for row in rows],
                "entered_at": [row[2] for row in rows],
            },
        ),
    )


def _hand(arm_units: list[str], horizon: int) -> dict[str, Any]:
    index = 1 if horizon == 90 else 2
    pairs = [(HAND[u][0], HAND[u][index]) for u in arm_units if HAND[u][index] is not None]
    start = np.array([p[0] for p in pairs])
    end = np.array([p[1] for p in pairs], dtype=float)
    paying = start > 0
    return {"start": start, "end": end, "paying": paying}


def _welch(control: np.ndarray, treatment: np.ndarray) -> tuple[float, float, float]:
    """Independent Welch difference of means: estimate, lower, upper (95%)."""
    vc, vt = control.var(ddof=1) / len(control), treatment.var(ddof=1) / len(treatment)
    df = (vc + vt) ** 2 / (vc**2 / (len(control) - 1) + vt**2 / (len(treatment) - 1))
    half = sps.t.ppf(0.975, df) * math.sqrt(vc + vt)
    estimate = treatment.mean() - control.mean()
    return estimate, estimate - half, estimate + half


def _measure(warehouse: Warehouse) -> RevenueValue:
    units = job_units(warehouse, JOB, as_of=AS_OF, attributes=())
    return revenue_value(warehouse, units, as_of=AS_OF, minimum_units=2)


def test_hand_counted_mrr_retention_nrr_and_added_mrr(backends: Backends) -> None:
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        _load(warehouse)
        value = _measure(warehouse)
    assert [h.days for h in value.horizons] == [90, 180]
    holdout_units, treated_units = ["h1", "h2", "h3"], ["t1", "t2", "t3", "t4"]
    for horizon in value.horizons:
        control = _hand(holdout_units, horizon.days)
        treated = _hand(treated_units, horizon.days)
        holdout, treatment = horizon.arms["holdout"], horizon.arms["treatment"]
        assert (holdout.enrolled, treatment.enrolled) == (3, 4)
        assert holdout.matured == len(control["start"])
        assert treatment.matured == len(treated["start"])
        assert horizon.matured == holdout.matured + treatment.matured
        for arm, hand in ((holdout, control), (treatment, treated)):
            paying = hand["paying"]
            assert arm.mrr_start_total == pytest.approx(hand["start"].sum())
            assert arm.mrr_end_total == pytest.approx(hand["end"].sum())
            assert arm.retention == pytest.approx((hand["end"][paying] > 0).mean())
            assert arm.nrr == pytest.approx(hand["end"][paying].sum() / hand["start"].sum())
            assert arm.mean_change == pytest.approx((hand["end"] - hand["start"]).mean())
            gain = np.maximum(hand["end"] - hand["start"], 0)
            assert arm.mean_expansion == pytest.approx(gain.mean())
        change = _welch(control["end"] - control["start"], treated["end"] - treated["start"])
        result = horizon.mrr_change_difference
        assert result.estimate == pytest.approx(change[0])
        assert (result.ci.lower, result.ci.upper) == pytest.approx(change[1:])
        treated_n = treatment.matured
        assert horizon.added_mrr == pytest.approx(change[0] * treated_n)
        assert (horizon.added_mrr_ci.lower, horizon.added_mrr_ci.upper) == pytest.approx(
            (change[1] * treated_n, change[2] * treated_n)
        )
        assert horizon.comparison.added_arr == pytest.approx(12 * change[0] * treated_n)
        assert horizon.retention_difference.estimate == pytest.approx(
            treatment.retention - holdout.retention
        )
        assert horizon.nrr_difference.estimate == pytest.approx(treatment.nrr - holdout.nrr)
    # The numbers by hand, once more as plain fractions.
    at_90, at_180 = value.horizon(90), value.horizon(180)
    assert at_90.arms["holdout"].retention == pytest.approx(1 / 2)
    assert at_90.arms["holdout"].nrr == pytest.approx(200 / 300)
    assert at_90.arms["treatment"].retention == 1.0
    assert at_90.arms["treatment"].nrr == pytest.approx(490 / 440)
    assert at_90.mrr_change_difference.estimate == pytest.approx(50 / 4 + 50 / 3)
    assert at_180.arms["treatment"].matured == 3  # t4 has not had 180 days
    assert at_180.arms["treatment"].retention == pytest.approx(2 / 3)
    assert at_180.arms["treatment"].nrr == pytest.approx(350 / 380)
    assert at_180.mrr_change_difference.estimate == pytest.approx(-10 + 50 / 3)
    assert any("1 of 7 units have not had 180 days" in w for w in at_180.warnings)
    assert any("had no MRR at entry" in w for w in at_90.warnings)
    # Variants: plain (t1, t2) and video (t3, t4), each against the holdout.
    assert set(at_90.variants) == {"plain", "video"}
    assert at_90.variants["plain"].nrr == pytest.approx(350 / 300)
    video_180 = {c.arm: c for c in at_180.variant_comparisons}["video"]
    assert video_180.mrr_change.status is Status.INSUFFICIENT_DATA  # one matured unit
    # JSON: NaN becomes null, everything serialisable.
    encoded = revenue_model(value).model_dump(mode="json")
    assert (
        encoded["horizons"][1]["variant_comparisons"][1]["mrr_change_difference"]["estimate"]
        is None
    )
    assert encoded["horizons"][0]["comparison"]["added_mrr"] == pytest.approx(at_90.added_mrr)


def test_sets_valued_together_equal_each_valued_alone(backends: Backends) -> None:
    """revenue_values (the refresh values every job in one query) gives each set, with its own
    analysis time, exactly what revenue_value gives it alone; an unknown set gets the empty
    value."""
    times = {"late": AS_OF, "early": datetime(2024, 9, 1), "none": datetime(2023, 6, 1)}
    with Warehouse.connect(backends.warehouse_url) as warehouse:
        _load(warehouse)
        alone = {
            name: revenue_value(
                warehouse,
                job_units(warehouse, JOB, as_of=moment, attributes=()),
                as_of=moment,
                minimum_units=2,
            )
            for name, moment in times.items()
        }
        sets = [
            job_units(warehouse, JOB, as_of=moment, attributes=()).mutate(
                **{PART: ibis.literal(name)}
            )
            for name, moment in times.items()
        ]
        together = revenue_values(warehouse, ibis.union(*sets), times, minimum_units=2)
    assert together == alone
    assert alone["early"].horizon(90).matured < alone["late"].horizon(90).matured


def test_no_unit_matured_at_a_horizon_is_a_warning_not_an_error(tmp_path: Path) -> None:
    with Warehouse.connect(f"duckdb:///{tmp_path / 'w.duckdb'}") as warehouse:
        _load(warehouse)
        early = datetime(2024, 3, 1)
        units = job_units(warehouse, JOB, as_of=early, attributes=())
        value = revenue_value(warehouse, units, as_of=early)
    for horizon in value.horizons:
        assert horizon.matured == 0
        assert horizon.mrr_change_difference.status is Status.INSUFFICIENT_DATA
        assert any(f"no unit has had {horizon.days} days" in w for w in horizon.warnings)
    encoded = revenue_model(value).model_dump(mode="json")
    assert encoded["horizons"][0]["comparison"]["added_mrr"] is None


def test_simulated_job_revenue_value_is_finite_and_nrr_matches_the_rows(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, name="revenue")
    config = simulation_config("default", accounts=3000, days=300, arrival_days=100, seed=7)
    backends = Backends(
        "embedded",
        f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        f"sqlite:///{tmp_path / 'state.sqlite'}",
    )
    with open_workspace(folder, environ=backends.environ()) as workspace:
        simulate_into(workspace, config, run_jobs=True)
        publish_enrollments(workspace.store, workspace.warehouse)
        warehouse = workspace.warehouse
        as_of = datetime.combine(config.dates()[-1] + timedelta(days=1), datetime.min.time())
        units = job_units(warehouse, "Integration nudge", as_of=as_of, attributes=())
        value = revenue_value(warehouse, units, as_of=as_of)
        enrollments = units.select("account_id", "arm", "entered_at").to_pyarrow().to_pylist()
        subscriptions = (
            warehouse.table("subscriptions")
            .select("account_id", "start_date", "end_date", "mrr")
            .to_pyarrow()
            .to_pylist()
        )
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in subscriptions:
        by_account.setdefault(row["account_id"], []).append(row)

    def mrr(account_id: str, day: date) -> float:
        return sum(
            row["mrr"]
            for row in by_account.get(account_id, [])
            if row["start_date"] <= day and (row["end_date"] is None or day < row["end_date"])
        )

    for horizon in value.horizons:
        holdout, treatment = horizon.arms["holdout"], horizon.arms["treatment"]
        assert holdout.matured > 100 and treatment.matured > 400
        for result in (
            horizon.retention_difference,
            horizon.nrr_difference,
            horizon.mrr_change_difference,
        ):
            assert result.status is not Status.INSUFFICIENT_DATA, result.message
            assert math.isfinite(result.estimate) and math.isfinite(result.ci.width)
            assert result.ci.contains(result.estimate)
        assert 0 < horizon.retention_difference.ci.width < 0.3
        assert 0 < horizon.nrr_difference.ci.width < 0.5
        assert 0.5 < holdout.nrr < 1.5 and 0.5 < treatment.nrr < 1.5
        assert 0.5 < holdout.retention <= 1 and 0.5 < treatment.retention <= 1
        assert math.isfinite(horizon.added_mrr) and horizon.added_mrr_ci.contains(horizon.added_mrr)
        # The holdout's NRR, recomputed from the rows in Python.
        matured = [
            row
            for row in enrollments
            if row["arm"] == "holdout" and row["entered_at"] + timedelta(days=horizon.days) <= as_of
        ]
        start = [mrr(row["account_id"], row["entered_at"].date()) for row in matured]
        end_day = [(row["entered_at"] + timedelta(days=horizon.days)).date() for row in matured]
        end = [mrr(row["account_id"], day) for row, day in zip(matured, end_day, strict=True)]
        paying = [(s, e) for s, e in zip(start, end, strict=True) if s > 0]
        assert holdout.matured == len(matured)
        assert holdout.nrr == pytest.approx(sum(e for _, e in paying) / sum(s for s, _ in paying))
        assert holdout.retention == pytest.approx(sum(e > 0 for _, e in paying) / len(paying))
