"""The simulator: deterministic, canonical tables, configured rates, exact counterfactual truth."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from closeloop.data.tables import CANONICAL_TABLES
from closeloop.errors import CloseloopError, ConfigurationError, NotFoundError
from closeloop.simulate import (
    ALL_SEGMENTS,
    GOAL_EVENT,
    SCENARIOS,
    TREATMENT,
    CompanySimulator,
    DayBatch,
    MilestoneConfig,
    PlanTier,
    ProductEventConfig,
    Response,
    SegmentConfig,
    SimulationConfig,
    Touch,
    TrueEffect,
    UnknownAccountError,
    milestone_days,
    scenario,
)
from closeloop.simulate.response import matching_response

TABLES = tuple(CANONICAL_TABLES)
HORIZON = 30

SMALL = scenario("default", n_accounts=400, days=45, arrival_days=30, seed=11)


def run(
    config: SimulationConfig, deliveries: dict[date, list[tuple[str, datetime]]] | None = None
) -> Iterator[DayBatch]:
    """Step every day; before each day, deliver what is due at its midnight."""
    simulator = CompanySimulator(config)
    for day in config.dates():
        for account, at in (deliveries or {}).get(day, []):
            simulator.deliver(account, at)
        yield simulator.step(day)


def checksum(batches: Iterator[DayBatch]) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for name in TABLES:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, getattr(batch, name).schema) as writer:
                writer.write_table(getattr(batch, name))
            digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def concat(batches: Iterator[DayBatch]) -> dict[str, pa.Table]:
    collected = list(batches)
    return {name: pa.concat_tables([getattr(b, name) for b in collected]) for name in TABLES}


def midnight_after(moment: datetime) -> datetime:
    return datetime.combine(moment.date() + timedelta(days=1), datetime.min.time())


def goal_times(events: pa.Table) -> dict[str, datetime]:
    goals = events.filter(pc.equal(events["name"], GOAL_EVENT))
    return dict(zip(goals["account_id"].to_pylist(), goals["timestamp"].to_pylist(), strict=True))


# -- configuration ----------------------------------------------------------------------------


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigurationError,
        match="known scenarios: default, divergence, heterogeneous, no_effect, seasonal",
    ):
        scenario("big_bang")


def test_unknown_override_names_the_settings() -> None:
    with pytest.raises(ConfigurationError, match=r"n_acounts.*settings are: .*n_accounts"):
        scenario("default", n_acounts=10)


def test_an_invalid_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        scenario("default", days=0, tenure_scale_days=-1.0, seed=-3)
    message = str(raised.value)
    assert "days must be at least 1" in message
    assert "tenure_scale_days" in message
    assert "seed must not be negative" in message
    assert isinstance(raised.value, ValueError)


def test_segment_shares_must_add_up() -> None:
    segments = tuple(dataclasses.replace(s, share=0.5) for s in SMALL.segments)
    with pytest.raises(ConfigurationError, match="shares must sum to 1"):
        dataclasses.replace(SMALL, segments=segments)


def test_no_effect_drops_every_response_and_nothing_else() -> None:
    default, aa = scenario("default"), scenario("no_effect")
    assert aa.responses == ()
    assert dataclasses.replace(default, responses=(), name="no_effect") == aa


def test_responses_are_validated() -> None:
    with pytest.raises(ConfigurationError) as raised:
        scenario(
            "default",
            responses=(
                Response(effects=(("enterprize", 0.5),)),
                Response(effects=(("self_serve", -1.0),), channel="sms", decay_days=0.0),
            ),
        )
    message = str(raised.value)
    assert "unknown segment 'enterprize'" in message
    assert "channel must be one of email, slack, webhook, *" in message
    assert "decay_days must be above 0" in message
    assert "must be above -1" in message


def test_the_most_specific_response_applies() -> None:
    email = Response(effects=(("self_serve", 0.1),))
    video = Response(effects=(("self_serve", 0.9),), variant="video")
    anything = Response(effects=(("self_serve", 0.5),), channel="*")
    responses = (anything, email, video)
    assert matching_response(responses, "email", "video") is video
    assert matching_response(responses, "email", "plain") is email
    assert matching_response(responses, "webhook", "plain") is anything
    assert matching_response((email,), "slack", "plain") is None


@pytest.mark.parametrize(
    "config_class",
    [SimulationConfig, SegmentConfig, ProductEventConfig, PlanTier, Response, MilestoneConfig],
)
def test_every_knob_and_scenario_is_documented(config_class: type) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    missing = [f.name for f in dataclasses.fields(config_class) if f"`{f.name}`" not in docs]
    missing += [name for name in SCENARIOS if f"`{name}`" not in docs]
    assert not missing, f"document these in docs/simulator.md: {missing}"


# -- determinism and the canonical tables -----------------------------------------------------


def test_the_same_seed_gives_identical_batches_and_another_seed_does_not() -> None:
    first = checksum(run(SMALL))
    assert checksum(run(SMALL)) == first
    assert checksum(run(dataclasses.replace(SMALL, seed=12))) != first


def test_batches_have_exactly_the_canonical_schemas_even_when_empty() -> None:
    config = scenario("default", n_accounts=30, days=12, arrival_days=4, seed=2)
    batches = list(run(config))
    for batch in batches:
        for name in TABLES:
            expected = CANONICAL_TABLES[name].ibis_schema().to_pyarrow()
            assert getattr(batch, name).schema == expected, (batch.day, name)
    assert batches[-1].accounts.num_rows == 0
    assert batches[-1].subscriptions.num_rows == 0
    assert sum(b.accounts.num_rows for b in batches) == 30


def test_tables_hang_together() -> None:
    tables = concat(run(SMALL))
    accounts, people, events = tables["accounts"], tables["people"], tables["events"]
    account_ids = set(accounts["account_id"].to_pylist())
    assert len(account_ids) == SMALL.n_accounts == accounts.num_rows
    assert set(tables["subscriptions"]["account_id"].to_pylist()) == account_ids
    assert len(set(accounts["domain"].to_pylist())) == accounts.num_rows
    assert len(set(people["email"].to_pylist())) == people.num_rows
    assert set(people["account_id"].to_pylist()) == account_ids
    assert set(events["account_id"].to_pylist()) <= account_ids
    assert set(events["person_id"].to_pylist()) <= set(people["person_id"].to_pylist())
    assert len(set(events["event_id"].to_pylist())) == events.num_rows
    goals = events.filter(pc.equal(events["name"], GOAL_EVENT))["account_id"].to_pylist()
    assert len(goals) == len(set(goals)) > 0
    assert {"login", "first_project_created", "teammate_invited"} <= set(events["name"].to_pylist())


def test_each_batch_holds_only_its_own_day_in_time_order() -> None:
    for batch in run(SMALL):
        start = datetime.combine(batch.day, datetime.min.time())
        for name, column in (("events", "timestamp"), ("accounts", "created_at")):
            times = getattr(batch, name)[column].to_pylist()
            assert all(start <= t < start + timedelta(days=1) for t in times), (batch.day, name)
        stamps = batch.events["timestamp"].to_pylist()
        assert stamps == sorted(stamps)


def test_every_account_has_an_admin_with_an_email_on_its_signup_day() -> None:
    for batch in run(SMALL):
        admins = batch.people.filter(pc.equal(batch.people["role"], "admin"))
        with_email = set(admins.filter(pc.is_valid(admins["email"]))["account_id"].to_pylist())
        assert set(batch.accounts["account_id"].to_pylist()) <= with_email


def test_default_volume_stays_modest() -> None:
    """The demo's company: 3000 accounts over 151 days stays well under 1.5M events."""
    events = sum(batch.events.num_rows for batch in run(scenario("default")))
    assert 200_000 < events < 1_500_000


# -- the goal milestone -----------------------------------------------------------------------


def test_milestone_days_inverts_the_closed_form_cumulative_hazard() -> None:
    rng = np.random.default_rng(0)
    threshold = rng.exponential(1.0, 2000)
    rate = rng.uniform(0.01, 0.2, 2000)
    tau = 30.0
    treated_at = rng.uniform(0, 20, 2000)
    effect = rng.uniform(-0.5, 2.0, 2000)

    def cumulative(t: np.ndarray, rows: np.ndarray, treated: bool) -> np.ndarray:
        """H(t) in closed form for the accounts in ``rows``."""
        b = rate[rows]
        untreated = b * tau * -np.expm1(-t / tau)
        if not treated:
            return np.asarray(untreated, dtype=np.float64)
        s = treated_at[rows]
        boost = effect[rows] * b * tau * np.clip(np.exp(-s / tau) - np.exp(-t / tau), 0, None)
        return np.asarray(untreated + np.where(t > s, boost, 0.0), dtype=np.float64)

    for treated in (False, True):
        days = (
            milestone_days(threshold, rate, tau, treated_at[:, None], effect[:, None])
            if treated
            else milestone_days(threshold, rate, tau)
        )
        reached = np.isfinite(days)
        assert 0.2 < reached.mean() < 1.0
        hit = np.flatnonzero(reached)
        np.testing.assert_allclose(cumulative(days[hit], hit, treated), threshold[hit], rtol=1e-9)
        # Where it never happens, the bound of H stays below the threshold.
        never = np.flatnonzero(~reached)
        bound = cumulative(np.full(len(never), 1e9), never, treated)
        assert (bound <= threshold[never] * (1 + 1e-9)).all()
    untreated = milestone_days(threshold, rate, tau)
    unchanged = milestone_days(threshold, rate, tau, treated_at[:, None], np.zeros((2000, 1)))
    assert np.array_equal(untreated, unchanged)


def test_several_fading_deliveries_cross_where_the_integrated_hazard_reaches_the_threshold() -> (
    None
):
    """Check the closed form of H with fading terms against numerical integration of h."""
    rng = np.random.default_rng(1)
    n, tau = 300, 30.0
    threshold = rng.exponential(1.0, n)
    rate = rng.uniform(0.01, 0.2, n)
    touches = np.sort(rng.uniform(0, 25, (n, 3)), axis=1)
    touches[rng.random((n, 3)) < 0.2] = np.nan  # some accounts get fewer deliveries
    effect = rng.uniform(-0.3, 2.0, (n, 3))
    decay = rng.choice([5.0, 20.0, np.inf], (n, 3))
    days = milestone_days(threshold, rate, tau, touches, effect, decay)
    for row in np.flatnonzero(np.isfinite(days))[:60]:
        # The grid holds each delivery time twice, so the jumps of h fall between two points.
        at = touches[row][~np.isnan(touches[row])]
        grid = np.sort(np.concatenate([np.linspace(0.0, 400.0, 400_001), at, at]))
        boost = np.ones_like(grid)
        for k in range(3):
            if not np.isnan(touches[row, k]):
                lag = grid - touches[row, k]
                boost += np.where(lag > 0, effect[row, k] * np.exp(-lag / decay[row, k]), 0.0)
                # The second copy of the delivery time carries the value just after it.
                boost[np.searchsorted(grid, touches[row, k], side="right") - 1] += effect[row, k]
        hazard = rate[row] * np.exp(-grid / tau) * boost
        steps = np.diff(grid)
        cumulative = np.concatenate(([0.0], np.cumsum((hazard[1:] + hazard[:-1]) / 2 * steps)))
        integrated = float(np.interp(days[row], grid, cumulative))
        assert integrated == pytest.approx(threshold[row], rel=1e-6), row
    # Padding with deliveries that never happen changes nothing, to the last bit.
    padded = np.concatenate([touches, np.full((n, 2), np.nan)], axis=1)
    wide = milestone_days(
        threshold,
        rate,
        tau,
        padded,
        np.concatenate([effect, np.ones((n, 2))], axis=1),
        np.concatenate([decay, np.ones((n, 2))], axis=1),
    )
    assert np.array_equal(days, wide)


def _completed_within(config: SimulationConfig, days: int) -> dict[str, tuple[int, int]]:
    """Per segment: accounts followed for ``days`` after signup, and how many reached the goal."""
    tables = concat(run(config))
    accounts, reached = tables["accounts"], goal_times(tables["events"])
    end = datetime.combine(config.start + timedelta(days=config.days), datetime.min.time())
    counts: dict[str, tuple[int, int]] = {}
    for row in accounts.to_pylist():
        if row["created_at"] + timedelta(days=days) > end:
            continue
        at = reached.get(row["account_id"])
        done = at is not None and at <= row["created_at"] + timedelta(days=days)
        n, k = counts.get(row["segment"], (0, 0))
        counts[row["segment"]] = (n + 1, k + int(done))
    return counts


def test_segment_milestone_rates_follow_the_configured_hazards() -> None:
    """Untreated, P(goal within t) = 1 - (1 + b*tau*(1 - exp(-t/tau))/k)^-k (gamma frailty)."""
    config = scenario("default", n_accounts=3000, days=45, arrival_days=15, seed=5)
    counts = _completed_within(config, HORIZON)
    observed = {segment: k / n for segment, (n, k) in counts.items()}
    assert observed["self_serve"] > observed["mid_market"] > observed["enterprise"]
    tau, shape = config.tenure_scale_days, config.frailty_shape
    for segment in config.segments:
        n, _ = counts[segment.name]
        capacity = segment.base_daily_hazard * tau * -math.expm1(-HORIZON / tau)
        expected = 1 - (1 + capacity / shape) ** -shape
        standard_error = math.sqrt(expected * (1 - expected) / n)
        assert abs(observed[segment.name] - expected) < 4 * standard_error, segment.name


# -- deliveries and the counterfactual truth --------------------------------------------------


def _units(config: SimulationConfig) -> list[tuple[str, datetime]]:
    """Like the demo's job: enter at the midnight after signup if not yet done, mature horizon."""
    tables = concat(run(config))
    reached = goal_times(tables["events"])
    end = datetime.combine(config.start + timedelta(days=config.days), datetime.min.time())
    units = []
    for row in tables["accounts"].to_pylist():
        entered = midnight_after(row["created_at"])
        done = reached.get(row["account_id"])
        if (done is None or done > entered) and entered + timedelta(days=HORIZON) <= end:
            units.append((row["account_id"], entered))
    return units


def _share_completed(
    config: SimulationConfig, units: list[tuple[str, datetime]], treat: bool
) -> dict[str, tuple[int, int]]:
    deliveries: dict[date, list[tuple[str, datetime]]] = {}
    if treat:
        for account, entered in units:
            deliveries.setdefault(entered.date(), []).append((account, entered))
    tables = concat(run(config, deliveries))
    reached = goal_times(tables["events"])
    segments = dict(
        zip(
            tables["accounts"]["account_id"].to_pylist(),
            tables["accounts"]["segment"].to_pylist(),
            strict=True,
        )
    )
    counts: dict[str, tuple[int, int]] = {}
    for account, entered in units:
        at = reached.get(account)
        done = at is not None and entered < at <= entered + timedelta(days=HORIZON)
        for group in (segments[account], ALL_SEGMENTS):
            n, k = counts.get(group, (0, 0))
            counts[group] = (n + 1, k + int(done))
    return counts


@pytest.fixture(scope="module")
def truth_run() -> tuple[SimulationConfig, list[tuple[str, datetime]], list[TrueEffect]]:
    config = scenario("default", n_accounts=1200, days=50, arrival_days=20, seed=3)
    units = _units(config)
    return config, units, CompanySimulator(config).true_effects(units, HORIZON)


def test_true_effects_cover_every_segment_present_and_all(
    truth_run: tuple[SimulationConfig, list[tuple[str, datetime]], list[TrueEffect]],
) -> None:
    config, units, truths = truth_run
    assert [t.segment for t in truths] == [*(s.name for s in config.segments), ALL_SEGMENTS]
    by_segment = {t.segment: t for t in truths}
    assert by_segment[ALL_SEGMENTS].n == len(units)
    assert sum(t.n for t in truths if t.segment != ALL_SEGMENTS) == len(units)
    for truth in truths:
        assert truth.effect == truth.completion_if_treated - truth.completion_if_control
        assert truth.effect > 0
    # The configured ordering of effects on the hazard shows in the effects on completion.
    assert by_segment["enterprise"].effect > by_segment["self_serve"].effect


def test_treating_every_unit_at_entry_reproduces_the_treated_truth_exactly(
    truth_run: tuple[SimulationConfig, list[tuple[str, datetime]], list[TrueEffect]],
) -> None:
    config, units, truths = truth_run
    treated = _share_completed(config, units, treat=True)
    control = _share_completed(config, units, treat=False)
    for truth in truths:
        n, k = treated[truth.segment]
        assert (n, k / n) == (truth.n, truth.completion_if_treated), truth.segment
        n, k = control[truth.segment]
        assert (n, k / n) == (truth.n, truth.completion_if_control), truth.segment


def test_deliveries_change_only_what_adoption_drives() -> None:
    """Common random numbers: a delivery moves the goal, and through it only churn-driven rows.

    Accounts and people never change. Events other than the goal change only for accounts whose
    churn history differs between the runs (churned accounts fall silent), and subscriptions only
    for accounts that reached the goal at a different time.
    """
    config = dataclasses.replace(SMALL, days=100, arrival_days=60)
    units = _units(config)
    deliveries: dict[date, list[tuple[str, datetime]]] = {}
    for account, entered in units:
        deliveries.setdefault(entered.date(), []).append((account, entered))
    untreated, treated = concat(run(config)), concat(run(config, deliveries))
    for name in ("accounts", "people"):
        assert untreated[name].equals(treated[name])
    before, after = goal_times(untreated["events"]), goal_times(treated["events"])
    moved = {a for a in set(before) | set(after) if before.get(a) != after.get(a)}
    assert moved

    def churns(tables: dict[str, pa.Table]) -> set[tuple[object, ...]]:
        rows = tables["churn_reasons"]
        return set(zip(rows["account_id"].to_pylist(), rows["churned_at"].to_pylist(), strict=True))

    churn_changed = {account for account, _ in churns(untreated) ^ churns(treated)}
    assert churn_changed <= moved

    def rows_of(table: pa.Table, columns: tuple[str, ...], skip: set[str]) -> list[object]:
        kept = [i for i, a in enumerate(table["account_id"].to_pylist()) if a not in skip]
        subset = table.take(kept)
        return sorted(zip(*(subset[c].to_pylist() for c in columns), strict=True), key=repr)

    columns = ("account_id", "person_id", "name", "timestamp", "properties")
    untreated_events = untreated["events"].filter(
        pc.not_equal(untreated["events"]["name"], GOAL_EVENT)
    )
    treated_events = treated["events"].filter(pc.not_equal(treated["events"]["name"], GOAL_EVENT))
    assert rows_of(untreated_events, columns, churn_changed) == rows_of(
        treated_events, columns, churn_changed
    )
    subscription_columns = ("subscription_id", "start_date", "end_date", "mrr")
    assert rows_of(untreated["subscriptions"], subscription_columns, moved) == rows_of(
        treated["subscriptions"], subscription_columns, moved
    )


def _deliver_policy(
    config: SimulationConfig, policy: tuple[Touch, ...], variant: str | None
) -> tuple[CompanySimulator, dict[str, tuple[str, datetime]], dict[str, datetime]]:
    """Run the company; every account enters at the midnight after signup and, if ``variant`` is
    given, gets the policy's deliveries while its goal is not reached (as the engine sends them).
    Returns the simulator, each account's segment and entry time, and its goal time."""
    simulator = CompanySimulator(config)
    entered: dict[str, tuple[str, datetime]] = {}
    reached: dict[str, datetime] = {}
    for day in config.dates():
        midnight = datetime.combine(day, datetime.min.time())
        if variant is not None:
            for account, (_, at) in entered.items():
                for touch in policy:
                    due = at + timedelta(days=touch.offset_days)
                    if due == midnight and account not in reached:
                        simulator.deliver(account, due, channel=touch.channel, variant=variant)
        batch = simulator.step(day)
        for row in batch.accounts.to_pylist():
            entered[row["account_id"]] = (row["segment"], midnight_after(row["created_at"]))
        for account, at in goal_times(batch.events).items():
            reached.setdefault(account, at)
    return simulator, entered, reached


def test_the_truth_of_a_policy_equals_a_second_run_that_applies_it() -> None:
    """Variant, reminder and Slack alert: the counterfactual truth is exact, per segment."""
    config = scenario("heterogeneous", n_accounts=900, days=80, arrival_days=45, seed=3)
    policy = (Touch(0.0), Touch(5.0), Touch(9.0, "slack"))
    treated_run, entered, treated_goals = _deliver_policy(config, policy, "video")
    _, _, control_goals = _deliver_policy(config, policy, None)
    end = datetime.combine(config.dates()[-1], datetime.min.time())
    units = [(a, at) for a, (_, at) in entered.items() if at + timedelta(days=HORIZON) <= end]
    truths = treated_run.true_effects(units, HORIZON, {"video": policy})
    segments = {account: segment for account, (segment, _) in entered.items()}

    def shares(goals: dict[str, datetime]) -> dict[str, float]:
        counts: dict[str, list[int]] = {}
        for account, at in units:
            done = account in goals and at < goals[account] <= at + timedelta(days=HORIZON)
            for group in (segments[account], ALL_SEGMENTS):
                counts.setdefault(group, []).append(int(done))
        return {group: sum(values) / len(values) for group, values in counts.items()}

    treated, control = shares(treated_goals), shares(control_goals)
    assert {t.variant for t in truths} == {"video"}
    for truth in truths:
        assert truth.completion_if_treated == treated[truth.segment], truth.segment
        assert truth.completion_if_control == control[truth.segment], truth.segment
    assert treated_run.deliveries["slack"] > 0
    assert treated_run.deliveries_by_variant[("email", "video")] > 0


def test_a_slack_alert_acts_through_the_csm_call_it_sets_off() -> None:
    config = dataclasses.replace(SMALL, reach_out_probability=1.0, reach_out_mean_days=2.0)
    simulator = CompanySimulator(config)
    first = simulator.step(config.start)
    account = first.accounts["account_id"][0].as_py()
    alert = midnight_after(first.accounts["created_at"][0].as_py())
    simulator.deliver(account, alert, channel="slack")
    calls = []
    for day in config.dates()[1:]:
        batch = simulator.step(day)
        activities = batch.activities.filter(pc.equal(batch.activities["account_id"], account))
        calls += [row for row in activities.to_pylist() if "Slack" in (row["notes"] or "")]
    (call,) = calls
    assert call["kind"] == "call"
    assert call["occurred_at"] > alert
    silent = dataclasses.replace(config, reach_out_probability=0.0)
    quiet = CompanySimulator(silent)
    quiet.step(config.start)
    quiet.deliver(account, alert, channel="slack")
    assert quiet.deliveries["slack"] == 1
    assert quiet.team.reach_outs.account == []


def test_no_effect_has_exactly_zero_true_effects_and_unchanged_events() -> None:
    config = scenario("no_effect", n_accounts=400, days=45, arrival_days=15, seed=4)
    units = _units(config)
    truths = CompanySimulator(config).true_effects(units, HORIZON)
    assert len(truths) == 4
    assert all(t.effect == 0.0 and t.n > 0 for t in truths)
    deliveries: dict[date, list[tuple[str, datetime]]] = {}
    for account, entered in units:
        deliveries.setdefault(entered.date(), []).append((account, entered))
    assert checksum(run(config, deliveries)) == checksum(run(config))


def test_every_delivery_adds_its_own_effect() -> None:
    units = _units(SMALL)
    once: dict[date, list[tuple[str, datetime]]] = {}
    twice: dict[date, list[tuple[str, datetime]]] = {}
    for account, entered in units:
        once.setdefault(entered.date(), []).append((account, entered))
        twice.setdefault(entered.date(), []).append((account, entered))
        later = entered + timedelta(days=3)
        twice.setdefault(later.date(), []).append((account, later))
    after_one = goal_times(concat(run(SMALL, once))["events"])
    after_two = goal_times(concat(run(SMALL, twice))["events"])
    assert set(after_one) <= set(after_two)
    assert all(after_two[account] <= at for account, at in after_one.items())
    assert sum(after_two[a] < at for a, at in after_one.items()) > 0


def test_true_effects_of_no_units() -> None:
    truths = CompanySimulator(SMALL).true_effects([], HORIZON)
    assert truths == [TrueEffect(TREATMENT, ALL_SEGMENTS, 0, 0.0, 0.0, 0.0)]


# -- misuse -----------------------------------------------------------------------------------


def test_unknown_accounts_are_a_key_error_and_a_closeloop_error() -> None:
    simulator = CompanySimulator(SMALL)
    at = datetime.combine(SMALL.start, datetime.min.time())
    for account in ("acc_999999", "acc_12", "nobody"):
        with pytest.raises(UnknownAccountError, match="acc_000000 to acc_000399") as raised:
            simulator.deliver(account, at)
        assert isinstance(raised.value, KeyError)
        assert isinstance(raised.value, NotFoundError)
        assert isinstance(raised.value, CloseloopError)
    with pytest.raises(KeyError):
        simulator.true_effects([("acc_000400", at)], HORIZON)


def test_steps_go_in_order_and_deliveries_never_rewrite_the_past() -> None:
    simulator = CompanySimulator(SMALL)
    with pytest.raises(ValueError, match="out of order"):
        simulator.step(SMALL.start + timedelta(days=1))
    batch = simulator.step(SMALL.start)
    account = batch.accounts["account_id"][0].as_py()
    created = batch.accounts["created_at"][0].as_py()
    with pytest.raises(ValueError, match="already reached"):
        simulator.deliver(account, created + timedelta(seconds=1))
    with pytest.raises(ValueError, match="signs up later"):
        simulator.deliver("acc_000399", midnight_after(created))
    simulator.deliver(account, midnight_after(created))
    assert simulator.ground_truth()["treated_accounts"] == 1


def test_steps_stop_after_the_configured_days() -> None:
    config = scenario("default", n_accounts=5, days=2, arrival_days=1)
    simulator = CompanySimulator(config)
    for day in config.dates():
        simulator.step(day)
    with pytest.raises(ValueError, match="past the simulation's 2 days"):
        simulator.step(config.start + timedelta(days=2))


def test_ground_truth_is_json_and_names_the_configured_effects() -> None:
    truth = json.loads(json.dumps(CompanySimulator(SMALL).ground_truth()))
    assert truth["scenario"] == "default"
    assert truth["seed"] == 11
    assert truth["goal_event"] == GOAL_EVENT
    assert truth["responses"][0]["effects"]["enterprise"] == 1.0
    assert truth["responses"][0]["decay_days"] is None
    assert truth["responses"][1]["channel"] == "slack"
    assert truth["segments"]["self_serve"]["base_daily_hazard"] == 0.05
