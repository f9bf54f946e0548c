"""Matched comparison on a simulated observational campaign whose true effect is known.

Accounts are emailed at entry with a probability that depends on two pre-entry covariates which
also drive reaching the goal: the segment (enterprise accounts reach it least) and product usage
on the signup day (engaged accounts reach it sooner). So the naive treated-versus-untreated
difference is biased, while matching on exactly those covariates removes the bias: the matched
ATT's interval must contain the true effect on the treated, which the simulator knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest

from closeloop.analysis.matching import ESTIMAND, MatchedComparison, match_units
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
