"""The job report on hand-made enrollments: counts, variants, value with CUPED, segments, maturity.

Enrollments are written to the warehouse as the engine publishes them, so every number here can be
counted by hand; each test runs on DuckDB and, when available, PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest

from closeloop.analysis.job_report import ValueOutcome, build_job_report
from closeloop.analysis.measurement import COMPLETION_RATE, TIME_TO_GOAL, VALUE
from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import Warehouse
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.services.results import job_report_model
from closeloop.stats import (
    ProportionStatistic,
    SampleMeanStatistic,
    Status,
    proportion_test,
    welch_test,
)
from support import Backends

DAY0 = datetime(2025, 3, 3)
HORIZON = 14
ARMS = (HOLDOUT, "short", "long")
PER_ARM = 40


def _enrollment_rows() -> tuple[dict[str, list[object]], list[dict[str, str]]]:
    """40 accounts per arm entering on day 0. In arm k, the first 10 + 5k complete on day 3; of
    the rest, every other one exits as ineligible on day 5, the others time out on day 14."""
    rows: dict[str, list[object]] = {name: [] for name in ENROLLMENTS.column_names}
    accounts = []
    for k, arm in enumerate(ARMS):
        for i in range(PER_ARM):
            account = f"a_{arm}_{i:02d}"
            completes = i < 10 + 5 * k
            exits = None if completes else DAY0 + timedelta(days=5 if i % 2 else HORIZON)
            rows["enrollment_id"].append(f"e_{account}")
            rows["job_name"].append("Nudge")
            rows["job_version"].append(1)
            rows["account_id"].append(account)
            rows["person_id"].append(None)
            rows["arm"].append(arm)
            rows["entered_at"].append(DAY0)
            rows["completed_at"].append(DAY0 + timedelta(days=3) if completes else None)
            rows["exited_at"].append(exits)
            rows["exit_reason"].append(
                None if completes else ("no_longer_eligible" if i % 2 else "timeout")
            )
            accounts.append(
                {"account_id": account, "segment": "big" if i < 20 else "small", "plan": arm}
            )
    return rows, accounts


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        rows, accounts = _enrollment_rows()
        connected.replace(
            ENROLLMENTS.name,
            pa.Table.from_pydict(rows, schema=ENROLLMENTS.ibis_schema().to_pyarrow()),
        )
        connected.append(
            "accounts",
            connected.arrow_for(
                "accounts",
                {
                    "account_id": [a["account_id"] for a in accounts],
                    "created_at": [DAY0 - timedelta(days=30)] * len(accounts),
                    "segment": [a["segment"] for a in accounts],
                    "plan": [a["plan"] for a in accounts],
                },
            ),
        )
        yield connected


def _report(warehouse: Warehouse, **options: object):  # type: ignore[no-untyped-def]
    return build_job_report(
        warehouse,
        "Nudge",
        as_of=options.pop("as_of", DAY0 + timedelta(days=30)),  # type: ignore[arg-type]
        horizon_days=HORIZON,
        holdout_fraction=1 / 3,
        variants=(("short", 1.0), ("long", 1.0)),
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_arms_variants_and_exits_are_counted_by_hand(warehouse: Warehouse) -> None:
    report = _report(warehouse)

    holdout, treatment = report.arms[HOLDOUT], report.arms[TREATMENT]
    assert (holdout.entered, holdout.completed, holdout.active) == (40, 10, 0)
    assert holdout.exited_by_reason == {"no_longer_eligible": 15, "timeout": 15}
    assert (treatment.entered, treatment.completed) == (80, 15 + 20)
    assert report.variants["long"].exited_by_reason == {"no_longer_eligible": 10, "timeout": 10}
    # The pooled lift is the job as a whole: 35/80 against 10/40, at the report's final alpha
    # (half of 0.05: the other half is for the always-valid results a running job shows).
    assert report.measurement.options.final_alpha == 0.025
    expected = proportion_test(
        ProportionStatistic(40, 10), ProportionStatistic(80, 35), alpha=0.025
    )
    assert report.lift.estimate == pytest.approx(expected.estimate, abs=1e-12)
    assert report.lift.ci.lower == pytest.approx(expected.ci.lower, abs=1e-12)
    assert not report.srm.mismatch
    # Each variant against the holdout, and the two against each other.
    assert report.variant_measurement is not None
    # Pairs are named in arm order: "short" against "long".
    short_vs_long = report.variant_measurement.comparison("short", COMPLETION_RATE, "long")
    assert short_vs_long is not None
    assert short_vs_long.absolute.estimate == pytest.approx(15 / 40 - 20 / 40, abs=1e-12)
    long_arm = report.variant_measurement.arms["long"]
    assert long_arm.completion_at[7.0] == pytest.approx(0.5)  # everyone completed on day 3
    assert long_arm.conditional_median_days == pytest.approx(3.0)
    assert report.variant_measurement.comparison("long", TIME_TO_GOAL) is not None
    # Segments: by the attributes asked for, adjusted across the column's segments and arms.
    by = {(s.segment, s.arm) for s in report.variant_measurement.segments}
    assert by == {(seg, arm) for seg in ("big", "small") for arm in ("short", "long")}
    payload = job_report_model(report).model_dump(mode="json")
    assert payload["variants"]["short"]["exited_by_reason"] == {  # type: ignore[index]
        "no_longer_eligible": 13,  # odd i from 15 to 39
        "timeout": 12,
    }


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_a_running_job_reads_its_always_valid_interval(warehouse: Warehouse) -> None:
    running = _report(warehouse, as_of=DAY0 + timedelta(days=10))

    # Nobody has had the full 14 days: no completion lift yet, but the curves have everyone.
    assert running.arms[HOLDOUT].entered == 40
    assert running.measurement.running
    assert running.lift.status is Status.INSUFFICIENT_DATA
    assert running.measurement.arms[TREATMENT].completion_at[7.0] == pytest.approx(35 / 80)
    assert any("have not had their full 14 days" in warning for warning in running.warnings)


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_value_outcome_with_cuped_on_the_pre_entry_value(warehouse: Warehouse) -> None:
    rng = np.random.default_rng(3)
    rows, _ = _enrollment_rows()
    accounts = list(rows["account_id"])
    arms = list(rows["arm"])
    before = rng.normal(100, 30, len(accounts))
    after = (
        0.8 * before + rng.normal(0, 5, len(accounts)) + [0 if a == HOLDOUT else 6 for a in arms]
    )
    events: dict[str, list[Any]] = {
        "event_id": [f"v{i}" for i in range(2 * len(accounts))],
        "account_id": accounts + accounts,
        "name": ["expansion"] * (2 * len(accounts)),
        "timestamp": [DAY0 - timedelta(days=10)] * len(accounts)
        + [DAY0 + timedelta(days=4)] * len(accounts),
        "value": [*before, *after],
    }
    warehouse.append("events", warehouse.arrow_for("events", events))

    plain = _report(warehouse, value_outcome=ValueOutcome("expansion", 0))
    adjusted = _report(warehouse, value_outcome=ValueOutcome("expansion", 30))

    value = plain.value
    assert value is not None and not value.cuped
    # A job's value is winsorized at the 99th percentile of all matured units' values.
    cap = float(np.quantile(after, 0.99))
    assert plain.measurement.value_cap is not None
    assert plain.measurement.value_cap.cap == pytest.approx(cap, rel=1e-9)
    assert plain.measurement.value_cap.capped == int((after > cap).sum())
    capped = np.minimum(after, cap)
    treated = [v for v, a in zip(capped, arms, strict=True) if a != HOLDOUT]
    control = [v for v, a in zip(capped, arms, strict=True) if a == HOLDOUT]
    expected = welch_test(_sample(control), _sample(treated), alpha=0.025)
    assert value.absolute.estimate == pytest.approx(expected.estimate, rel=1e-9)
    assert value.absolute.ci.lower == pytest.approx(expected.ci.lower, rel=1e-9)
    assert value.two_part is not None and value.bayesian is not None
    cuped = adjusted.measurement.comparison(TREATMENT, VALUE)
    assert cuped is not None and cuped.cuped
    assert cuped.absolute.estimate == pytest.approx(6, abs=3)
    # The pre-entry covariate explains most of the variance: a much narrower interval.
    assert cuped.absolute.ci.width < value.absolute.ci.width / 3


def _sample(values: list[float]) -> SampleMeanStatistic:
    array = np.asarray(values)
    return SampleMeanStatistic(len(array), float(array.sum()), float((array**2).sum()))


@pytest.mark.parametrize("backends", ["embedded"], indirect=True)
def test_segment_by_any_account_attribute(warehouse: Warehouse) -> None:
    report = _report(warehouse, segment_by=("segment", "plan"))
    assert {s.column for s in report.segments} == {"segment", "plan"}
    with pytest.raises(LookupError, match="no column colour"):
        _report(warehouse, segment_by=("colour",))


@pytest.mark.parametrize("backends", ["embedded", "postgres"], indirect=True)
def test_segment_by_cohort_membership_at_entry(warehouse: Warehouse) -> None:
    asked: list[datetime] = []

    def big_accounts(moment: datetime) -> ibis.Table:
        asked.append(moment)
        accounts = warehouse.table("accounts")
        return accounts.filter(accounts.segment == "big").select("account_id")

    report = _report(warehouse, segment_by=(), cohorts={"Big": big_accounts})

    assert asked == [DAY0]  # every unit entered at DAY0: membership is evaluated then, once
    rows = {(s.segment, s.arm): s for s in report.segments}
    assert {s.column for s in report.segments} == {"cohort:Big"}
    # Accounts 0-19 are big: in the holdout 10 of them completed; in treatment 15 + 20.
    assert rows[("in", TREATMENT)].control_stat == ProportionStatistic(20, 10)
    assert rows[("in", TREATMENT)].arm_stat == ProportionStatistic(40, 35)
    assert rows[("not in", TREATMENT)].control_stat == ProportionStatistic(20, 0)
