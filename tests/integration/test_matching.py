"""Matched comparison on a simulated observational campaign whose true effect is known.

Accounts are emailed at entry with a probability that depends on two pre-entry covariates which
also drive reaching the goal: the segment (enterprise accounts reach it least) and product usage
on the signup day (engaged accounts reach it sooner). So the naive treated-versus-untreated
difference is biased, while matching on exactly those covariates removes the bias: the matched
ATT's interval must contain the true effect on the treated, which the simulator knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest

from closeloop.analysis.matching import (
    ESTIMAND,
    MatchedComparison,
    eligible_comparison_units,
    match_units,
)
from closeloop.data.compiler import goal_reached_at, matching_accounts
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.definitions.expressions import parse_expression
from closeloop.simulate import GOAL_EVENT, CompanySimulator, scenario
from closeloop.stats import Status

HORIZON_DAYS = 21
SEED = 4
# P(emailed) = segment base x usage factor; usage bins: no event, 1-2 events, 3 or more.
SEGMENT_PROPENSITY = {"enterprise": 0.5, "mid_market": 0.3, "self_serve": 0.08}
USAGE_CUTPOINTS = (1.0, 3.0)
USAGE_FACTOR = (0.6, 1.0, 1.5)


@dataclass(frozen=True)
class Campaign:
    units: list[dict[str, Any]]
    true_att: float


def _run_campaign() -> Campaign:
    config = scenario("default", n_accounts=4000, days=50, arrival_days=20, seed=SEED)
    simulator = CompanySimulator(config)
    rng = np.random.default_rng(SEED)
    accounts: dict[str, dict[str, Any]] = {}
    first_goal: dict[str, datetime] = {}
    for day in config.dates():
        midnight = datetime.combine(day, time())
        for account_id, account in accounts.items():
            if account["entered_at"] == midnight and account["arm"] == "emailed":
                simulator.deliver(account_id, midnight)
        batch = simulator.step(day)
        entered_at = midnight + timedelta(days=1)
        new = batch.accounts.select(["account_id", "segment", "employees"]).to_pylist()
        for row in new:
            accounts[row["account_id"]] = {**row, "entered_at": entered_at, "events": 0}
        for event in batch.events.select(["account_id", "name", "timestamp"]).to_pylist():
            account = accounts[event["account_id"]]
            if event["name"] == GOAL_EVENT:
                first_goal.setdefault(event["account_id"], event["timestamp"])
            elif event["timestamp"] < account["entered_at"]:
                account["events"] += 1
        for row in new:
            account = accounts[row["account_id"]]
            usage = int(np.searchsorted(USAGE_CUTPOINTS, account["events"], side="right"))
            propensity = SEGMENT_PROPENSITY[account["segment"]] * USAGE_FACTOR[usage]
            account["arm"] = "emailed" if rng.random() < propensity else "not_emailed"
    end = datetime.combine(config.dates()[-1] + timedelta(days=1), time())
    units = [
        {
            "unit_id": account_id,
            "arm": account["arm"],
            "entered_at": account["entered_at"],
            "goal_at": first_goal.get(account_id),
            "segment": account["segment"],
            "employees": account["employees"],
            "signup_day_events": account["events"],
        }
        for account_id, account in accounts.items()
        # eligible: matured by the end, and not already at the goal when entering
        if account["entered_at"] + timedelta(days=HORIZON_DAYS) <= end
        and not (account_id in first_goal and first_goal[account_id] < account["entered_at"])
    ]
    treated = [(u["unit_id"], u["entered_at"]) for u in units if u["arm"] == "emailed"]
    truth = simulator.true_effects(treated, HORIZON_DAYS)[-1]
    assert truth.segment == "all" and truth.n == len(treated)
    return Campaign(units, truth.effect)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return _run_campaign()


@pytest.fixture
def units(campaign: Campaign) -> ibis.Table:
    connection = ibis.duckdb.connect()
    return connection.create_table("units", pa.Table.from_pylist(campaign.units))


def _match(units: ibis.Table, **options: Any) -> MatchedComparison:
    return match_units(
        units,
        treated="emailed",
        comparison="not_emailed",
        covariates=["segment", "signup_day_events"],
        horizon_days=HORIZON_DAYS,
        **options,
    )


def test_matching_on_the_selection_covariates_recovers_the_effect_on_the_treated(
    campaign: Campaign, units: ibis.Table
) -> None:
    result = _match(units, cutpoints={"signup_day_events": USAGE_CUTPOINTS})
    assert result.estimand == ESTIMAND
    assert result.completion.ci.contains(campaign.true_att)
    assert result.status == Status.POSITIVE
    # Emailed accounts are mostly enterprise (slow to connect): the naive difference is biased
    # far below the truth, outside its own interval, and further from the truth than the ATT.
    naive = result.naive_completion
    assert not naive.ci.contains(campaign.true_att)
    assert campaign.true_att - naive.estimate > 0.04
    assert abs(result.completion.estimate - campaign.true_att) < abs(
        naive.estimate - campaign.true_att
    )
    # Every stratum of the selection rule has both arms; the covariates balance exactly.
    counts = result.counts
    assert counts.treated_pruned == 0 and counts.matched_strata == 9
    assert counts.treated_matched + counts.control_matched == len(campaign.units)
    for row in result.balance:
        if row.covariate == "segment":
            assert abs(row.smd_before) > 0.1
            assert row.smd_after == pytest.approx(0.0, abs=1e-9)
    events = next(row for row in result.balance if row.covariate == "signup_day_events")
    assert abs(events.smd_after) < abs(events.smd_before)
    assert result.treated_completion_rate - result.comparison_completion_rate == pytest.approx(
        result.completion.estimate
    )
    assert any("observational" in warning for warning in result.warnings)


def test_default_sturges_bins_and_pruning_are_reported(units: ibis.Table) -> None:
    result = match_units(
        units,
        treated="emailed",
        comparison="not_emailed",
        covariates=["segment", "signup_day_events", "employees"],
        horizon_days=HORIZON_DAYS,
    )
    numeric = {c.name: c for c in result.covariates if not c.categorical}
    assert len(numeric["employees"].cutpoints or ()) >= 5
    assert result.counts.strata > result.counts.matched_strata
    assert result.counts.treated_pruned > 0
    assert any("pruned" in warning for warning in result.warnings)
    rows = {(row.covariate, row.level) for row in result.balance}
    assert ("employees", None) in rows and ("segment", "enterprise") in rows


def test_value_outcome(units: ibis.Table) -> None:
    with_value = units.mutate(value=units.signup_day_events.cast("float64") + 1.0)
    result = _match(with_value, cutpoints={"signup_day_events": USAGE_CUTPOINTS}, value=True)
    assert result.value is not None and result.naive_value is not None
    # The value is a pre-entry covariate plus one: matching on its bins shrinks the difference.
    assert abs(result.value.estimate) < abs(result.naive_value.estimate)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"covariates": ["tier"]}, "not in the units"),
        ({"covariates": ["segment"], "cutpoints": {"segment": (1.0,)}}, "not numeric"),
        ({"covariates": ["segment"], "cutpoints": {"employees": (1.0,)}}, "not covariates"),
        ({"covariates": ["segment"], "comparison": "emailed"}, "must differ"),
        ({"covariates": []}, "at least one"),
    ],
)
def test_input_errors(units: ibis.Table, options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "treated": "emailed",
        "comparison": "not_emailed",
        "horizon_days": HORIZON_DAYS,
    }
    with pytest.raises(ValueError, match=message):
        match_units(units, **{**arguments, **options})


# -- the comparison cohort of an observational job -------------------------------------------------

AUDIENCE = "signup_date within last 2 days"
GOAL = 'count(event "integration_connected") >= 1'


@pytest.fixture(scope="module")
def small_company() -> Iterator[Warehouse]:
    config = scenario("default", n_accounts=300, days=20, arrival_days=10, seed=3)
    simulator = CompanySimulator(config)
    with Warehouse.connect("duckdb://") as warehouse:
        warehouse.ensure_tables()
        for day in config.dates():
            for name, table in simulator.step(day).tables().items():
                if table.num_rows:
                    warehouse.append(name, table)
        yield warehouse


def test_eligible_but_not_enrolled_accounts_enter_when_first_eligible(
    small_company: Warehouse,
) -> None:
    warehouse = small_company
    start = datetime(*scenario("default").start.timetuple()[:3])
    times = [start + timedelta(days=day) for day in range(1, 13)]
    audience, goal = parse_expression(AUDIENCE), parse_expression(GOAL)
    as_of = times[-1] + timedelta(days=8)

    def eligible_at(moment: datetime) -> ibis.Table:
        return matching_accounts(audience, warehouse, moment)

    def reached(candidates: ibis.Table) -> ibis.Table:
        return goal_reached_at(goal, warehouse, as_of, candidates)

    first_eligible: dict[str, datetime] = {}
    for moment in times:
        for account_id in eligible_at(moment).to_pyarrow().column("account_id").to_pylist():
            first_eligible.setdefault(account_id, moment)
    enrolled = sorted(first_eligible)[::3]
    warehouse.append(
        ENROLLMENTS_TABLE,
        pa.Table.from_pylist(
            [
                {
                    "enrollment_id": f"enr_{account_id}",
                    "job_name": "welcome",
                    "job_version": 1,
                    "account_id": account_id,
                    "person_id": None,
                    "arm": "treatment",
                    "entered_at": first_eligible[account_id],
                    "completed_at": None,
                    "exited_at": None,
                    "exit_reason": None,
                }
                for account_id in enrolled
            ],
            schema=warehouse.table(ENROLLMENTS_TABLE).schema().to_pyarrow(),
        ),
    )
    units = eligible_comparison_units(
        warehouse, job_name="welcome", eligible_at=eligible_at, times=times, goal_reached_at=reached
    )
    rows = {row["unit_id"]: row for row in units.to_pyarrow().to_pylist()}
    assert len(rows) > 100 and len(enrolled) > 50
    assert set(rows) == set(first_eligible) - set(enrolled)
    assert sum(row["goal_at"] is not None for row in rows.values()) > 20
    assert all(row["arm"] == "comparison" for row in rows.values())
    assert all(row["entered_at"] == first_eligible[key] for key, row in rows.items())
    events = warehouse.table("events")
    goals = (
        events.filter(events.name == GOAL_EVENT)
        .group_by("account_id")
        .aggregate(at=events.timestamp.min())
        .to_pyarrow()
        .to_pylist()
    )
    goal_at = {row["account_id"]: row["at"] for row in goals if row["at"] <= as_of}
    for key, row in rows.items():
        expected = goal_at.get(key)
        if expected is None:
            assert row["goal_at"] is None
        else:
            assert row["goal_at"] == max(expected, row["entered_at"])
    assert units.columns == ("unit_id", "account_id", "arm", "entered_at", "goal_at")


def test_eligible_comparison_units_needs_times(small_company: Warehouse) -> None:
    with pytest.raises(ValueError, match="at least one evaluation time"):
        eligible_comparison_units(
            small_company,
            job_name="welcome",
            eligible_at=lambda moment: small_company.table("accounts"),
            times=[],
            goal_reached_at=lambda candidates: candidates,
        )


def test_the_cohort_feeds_the_matching(small_company: Warehouse) -> None:
    warehouse = small_company
    start = datetime(*scenario("default").start.timetuple()[:3])
    times = [start + timedelta(days=day) for day in range(1, 13)]
    audience, goal = parse_expression(AUDIENCE), parse_expression(GOAL)
    as_of = times[-1] + timedelta(days=8)

    def reached(candidates: ibis.Table) -> ibis.Table:
        return goal_reached_at(goal, warehouse, as_of, candidates)

    comparison = eligible_comparison_units(
        warehouse,
        job_name="someone_else",  # nothing enrolled: every eligible account is a comparison unit
        eligible_at=lambda moment: matching_accounts(audience, warehouse, moment),
        times=times,
        goal_reached_at=reached,
    )
    # Pretend the accounts above 200 employees were the enrolled ones, to exercise the path.
    accounts = warehouse.table("accounts").select("account_id", "segment", "employees")
    units = comparison.inner_join(accounts, "account_id")
    units = units.mutate(arm=ibis.ifelse(units.employees > 200, "enrolled", "comparison"))
    result = match_units(
        units,
        treated="enrolled",
        comparison="comparison",
        covariates=["segment"],
        horizon_days=7,
        as_of=as_of,
    )
    assert result.counts.treated_matched + result.counts.control_matched > 100
    assert result.estimand == ESTIMAND
