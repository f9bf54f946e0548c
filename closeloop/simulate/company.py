"""A simulated B2B SaaS company that lives day by day and responds to the engine's deliveries.

Build it from a :class:`~closeloop.simulate.config.SimulationConfig`, call :meth:`step` once per
day from ``config.start`` and load each :class:`DayBatch` into the warehouse; tell it about every
message the engine sends with :meth:`deliver`. Deliveries move the goal milestone; through it
they move what adoption drives (churn, expansion, satisfaction), and everything else is fixed by
the seed. ``docs/simulator.md`` describes the model.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from closeloop.data.tables import CANONICAL_TABLES
from closeloop.errors import NotFoundError
from closeloop.simulate import names
from closeloop.simulate.activity import UsageEvents, property_palette, usage_events
from closeloop.simulate.config import GOAL_EVENT, SimulationConfig
from closeloop.simulate.milestone import (
    MICROSECONDS_PER_DAY,
    NEVER,
    FloatArray,
    IntArray,
    Touches,
    milestone_microseconds,
)
from closeloop.simulate.population import (
    PERSON_NAME_COMBINATIONS,
    Population,
    Stream,
    company_domain,
    company_name,
    draw_population,
    keyed_uniform,
)
from closeloop.simulate.response import response_effects
from closeloop.simulate.revenue import (
    RevenueBook,
    add_months,
    adoption_count,
    as_table,
    day_number,
    first_churn_before_goal_us,
)
from closeloop.simulate.success import CsmTeam
from closeloop.simulate.truth import TREATMENT, Policy, Touch, TrueEffect, summarise
from closeloop.simulate.voice import (
    SUPPORT_TICKET_EVENT,
    Tickets,
    VoiceOfCustomer,
    ticket_properties,
)

ONE_EMAIL: Policy = (Touch(),)
"""The default policy: one email at entry."""

FIRST_PROJECT_EVENT = "first_project_created"
TEAMMATE_INVITED_EVENT = "teammate_invited"

SCHEMAS: dict[str, pa.Schema] = {
    name: spec.ibis_schema().to_pyarrow() for name, spec in CANONICAL_TABLES.items()
}
"""The canonical Arrow schema of every table a :class:`DayBatch` holds."""

_INTEGRATION_PROPERTIES = pa.array(
    [json.dumps({"integration": name}) for name in names.INTEGRATIONS], pa.string()
)
_EPOCH = datetime(1970, 1, 1)
_ONE_MICROSECOND = timedelta(microseconds=1)


class UnknownAccountError(NotFoundError, KeyError):
    """An account id the simulation never created."""

    code = "unknown_account"


@dataclass(frozen=True)
class DayBatch:
    """What happened on one day, each table in exactly its canonical Arrow schema.

    ``accounts`` and ``people`` hold the rows created that day; ``subscriptions`` the contract terms
    that start that day; ``opportunities`` and ``churn_reasons`` those closed or churned that day;
    ``events``, ``survey_responses`` and ``activities`` every row timed within the day, in time
    order. Tables are empty, not missing, on days with nothing in them.
    """

    day: date
    accounts: pa.Table
    people: pa.Table
    events: pa.Table
    subscriptions: pa.Table
    survey_responses: pa.Table
    activities: pa.Table
    opportunities: pa.Table
    churn_reasons: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        """Every canonical table of the day by name, parents first (the order to load them in)."""
        return {name: getattr(self, name) for name in CANONICAL_TABLES}

    @property
    def rows(self) -> int:
        """Rows across every table of the day."""
        return sum(table.num_rows for table in self.tables().values())


class CompanySimulator:
    """A company of ``config.n_accounts`` accounts, stepped one day at a time.

    >>> from closeloop.simulate import scenario
    >>> simulator = CompanySimulator(scenario("default", n_accounts=50, days=10, arrival_days=5))
    >>> batch = simulator.step(simulator.config.start)
    >>> batch.accounts.num_rows == batch.subscriptions.num_rows
    True
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.population: Population = draw_population(config)
        population = self.population
        n = population.size
        self._account_width = max(6, len(str(max(n - 1, 0))))
        self._account_ids = _ids("acc_", n, self._account_width)
        people = population.people.size
        self._person_ids = _ids("per_", people, max(7, len(str(max(people - 1, 0)))))
        self._rate = (
            np.array([s.base_daily_hazard for s in config.segments])[population.segment]
            * population.frailty
        )
        self._goal_us = milestone_microseconds(
            population.created_us, population.threshold, self._rate, config.tenure_scale_days
        )
        self._goal_emitted = np.zeros(n, dtype=np.bool_)
        self._goal_blocked = np.zeros(n, dtype=np.bool_)  # churned before reaching it
        self._touches: dict[int, list[tuple[int, float, float]]] = {}
        self._stale: set[int] = set()
        self._first_delivery_us = np.full(n, NEVER, dtype=np.int64)
        self._joined = np.zeros(n, dtype=np.int64)
        has_teammate = population.seats > 1
        self._teammate_us = np.where(
            has_teammate,
            population.people.created_us[np.minimum(population.first_person + 1, people - 1)]
            if people
            else NEVER,
            NEVER,
        ).astype(np.int64)
        self._people_created_sorted = population.people.created_us[population.people.by_creation]
        self._start_us = _microseconds(datetime.combine(config.start, datetime.min.time()))
        self._next_day = 0
        palette, _ = property_palette(config)
        self._palette = pa.array(palette, pa.string())
        self._kinds = pa.array([e.name for e in config.product_events], pa.string())
        self.revenue = RevenueBook(
            config, population, self._account_ids.to_pylist(), self._teammate_us
        )
        self.voice = VoiceOfCustomer(config, population)
        self.team = CsmTeam(config, population)
        self.deliveries: Counter[str] = Counter()
        """Every delivery by channel, repeats included."""
        self.deliveries_by_variant: Counter[tuple[str, str]] = Counter()
        """Every delivery by (channel, variant); ``-`` for deliveries without a variant."""

    # -- the day loop ---------------------------------------------------------------------------

    def step(self, day: date) -> DayBatch:
        """Everything that happened on ``day``: call once per day, in order, from config.start."""
        index = (day - self.config.start).days
        if index != self._next_day:
            expected = self.config.start + timedelta(days=self._next_day)
            raise ValueError(f"step({day}) is out of order: the next day to simulate is {expected}")
        if index >= self.config.days:
            raise ValueError(
                f"step({day}) is past the simulation's {self.config.days} days; "
                "raise SimulationConfig.days to simulate longer"
            )
        self._refresh_goals()
        population = self.population
        day_start = self._start_us + index * MICROSECONDS_PER_DAY
        day_end = day_start + MICROSECONDS_PER_DAY
        created = population.created_us
        first, last = (int(i) for i in np.searchsorted(created, [day_start, day_end], side="left"))
        joining = population.people.by_creation[
            slice(*np.searchsorted(self._people_created_sorted, [day_start, day_end], side="left"))
        ]
        revenue = self.revenue.step(
            index, np.arange(first, last, dtype=np.int64), self._goal_us, self.team.last_us
        )
        self._block_goals_of_churned()
        active = self.revenue.active
        usage = usage_events(self.config, population, index, last, self._joined)
        usage = usage.only(active[usage.account])
        tickets = self.voice.tickets(index, last, self._joined, active)
        self.voice.nps(index, self._joined, active, self._adoption)
        events = self._events(day, day_start, day_end, joining, usage, tickets)
        activities = self.team.day(
            index,
            last,
            self._joined,
            active,
            self._account_ids,
            self._person_ids,
            SCHEMAS["activities"],
        )
        # People who joined today are active in the product from tomorrow on.
        np.add.at(self._joined, population.people.account[joining], 1)
        self._next_day += 1
        return DayBatch(
            day=day,
            accounts=self._accounts(first, last),
            people=self._people(joining),
            events=events,
            subscriptions=as_table(revenue.subscriptions, SCHEMAS["subscriptions"]),
            survey_responses=self.voice.responses(
                index, self._person_ids, self._account_ids, SCHEMAS["survey_responses"], active
            ),
            activities=activities,
            opportunities=as_table(revenue.opportunities, SCHEMAS["opportunities"]),
            churn_reasons=as_table(revenue.churn_reasons, SCHEMAS["churn_reasons"]),
        )

    def _adoption(self, rows: IntArray, at_us: int) -> FloatArray:
        moments = np.full(len(rows), at_us, dtype=np.int64)
        return adoption_count(self.population, self._goal_us, self._teammate_us, rows, moments)

    def _block_goals_of_churned(self) -> None:
        """An account that churns before reaching the goal never reaches it."""
        revenue = self.revenue
        blocked = (
            revenue.signed_up
            & ~revenue.active
            & ~self._goal_emitted
            & ~self._goal_blocked
            & (self._goal_us > revenue.churned_us)
        )
        self._goal_blocked |= blocked
        self._goal_us[blocked] = NEVER

    def _accounts(self, first: int, last: int) -> pa.Table:
        population, config = self.population, self.config
        rows = slice(first, last)
        company = [company_name(int(k)) for k in population.company_name[rows]]
        created = population.created_us[rows].astype("datetime64[us]")
        segments = np.array([s.name for s in config.segments], dtype=object)
        annual = population.annual[rows]
        renewal = add_months(day_number(population.created_us[rows]), np.where(annual, 12, 1))
        return pa.table(
            {
                "account_id": self._account_ids[first:last],
                "name": company,
                "domain": [company_domain(int(k)) for k in population.company_name[rows]],
                "created_at": created,
                "segment": segments[population.segment[rows]].tolist(),
                "plan": self.revenue.plan_names[first:last],
                "industry": [names.INDUSTRIES[k] for k in population.industry[rows]],
                "employees": population.employees[rows],
                "region": [names.REGIONS[k] for k in population.region[rows]],
                "owner": [config.owners[k] for k in population.owner[rows]],
                "arr": population.arr[rows],
                "renewal_date": renewal.astype("datetime64[D]"),
                "properties": [
                    json.dumps(
                        {
                            "lead_source": names.LEAD_SOURCES[k],
                            "billing": "annual" if is_annual else "monthly",
                        }
                    )
                    for k, is_annual in zip(population.lead_source[rows], annual, strict=True)
                ],
            },
            schema=SCHEMAS["accounts"],
        )

    def _people(self, joining: IntArray) -> pa.Table:
        people = self.population.people
        account = people.account[joining]
        domains = {
            int(a): company_domain(int(self.population.company_name[a])) for a in np.unique(account)
        }
        first_names = [names.FIRST_NAMES[k] for k in people.first_name[joining]]
        last_names = [names.LAST_NAMES[k] for k in people.last_name[joining]]
        emails = [
            f"{first.lower()}.{last.lower()}{_repeat_suffix(int(local))}@{domains[int(a)]}"
            for first, last, local, a in zip(
                first_names, last_names, people.local[joining], account, strict=True
            )
        ]
        return pa.table(
            {
                "person_id": self._person_ids.take(pa.array(joining, pa.int64())),
                "account_id": self._account_ids.take(pa.array(account, pa.int64())),
                "email": emails,
                "name": [f"{f} {g}" for f, g in zip(first_names, last_names, strict=True)],
                "role": [names.PERSON_ROLES[k] for k in people.role[joining]],
                "created_at": people.created_us[joining].astype("datetime64[us]"),
                "properties": pa.nulls(len(joining), pa.string()),
            },
            schema=SCHEMAS["people"],
        )

    def _events(
        self,
        day: date,
        day_start: int,
        day_end: int,
        joining: IntArray,
        usage: UsageEvents,
        tickets: Tickets,
    ) -> pa.Table:
        population = self.population
        admins = population.first_person
        active = self.revenue.active
        goal = np.flatnonzero(
            (self._goal_us >= day_start)
            & (self._goal_us < day_end)
            & ~self._goal_emitted
            & ~self._goal_blocked
        )
        self._goal_emitted[goal] = True
        parts = [
            _Part(
                account=goal,
                person=admins[goal],
                name=GOAL_EVENT,
                timestamp_us=self._goal_us[goal],
                properties=_INTEGRATION_PROPERTIES.take(
                    pa.array(population.integration[goal], pa.int64())
                ),
            )
        ]
        for column, milestone in enumerate(self.config.milestones):
            moments = population.milestone_us[:, column]
            reached = np.flatnonzero((moments >= day_start) & (moments < day_end))
            reached = reached[active[reached]]
            parts.append(
                _Part(
                    account=reached,
                    person=admins[reached],
                    name=milestone.name,
                    timestamp_us=moments[reached],
                    properties=None,
                )
            )
        invited = joining[population.people.local[joining] > 0]
        invited = invited[active[population.people.account[invited]]]
        inviter_account = population.people.account[invited]
        parts.append(
            _Part(
                account=inviter_account,
                person=admins[inviter_account],
                name=TEAMMATE_INVITED_EVENT,
                timestamp_us=population.people.created_us[invited],
                properties=pc.binary_join_element_wise(
                    '{"invitee_person_id": "',
                    self._person_ids.take(pa.array(invited, pa.int64())),
                    '"}',
                    "",
                ),
            )
        )
        parts.append(
            _Part(
                account=tickets.account,
                person=tickets.person,
                name=SUPPORT_TICKET_EVENT,
                timestamp_us=tickets.timestamp_us,
                properties=ticket_properties(tickets, day),
            )
        )
        account = np.concatenate([*(p.account for p in parts), usage.account])
        timestamp = np.concatenate([*(p.timestamp_us for p in parts), usage.timestamp_us])
        person = np.concatenate([*(p.person for p in parts), usage.person])
        name = pa.concat_arrays(
            [
                *(pa.array([p.name] * p.size, pa.string()) for p in parts),
                self._kinds.take(pa.array(usage.kind, pa.int64())),
            ]
        )
        properties = pa.concat_arrays(
            [
                *(p.properties_array() for p in parts),
                self._palette.take(
                    pa.array(usage.properties, pa.int64(), mask=usage.properties < 0)
                ),
            ]
        )
        order = np.argsort(timestamp, kind="stable")
        total = len(order)
        return pa.table(
            {
                "event_id": _event_ids(day, total),
                "account_id": self._account_ids.take(pa.array(account[order], pa.int64())),
                "person_id": self._person_ids.take(pa.array(person[order], pa.int64())),
                "name": name.take(pa.array(order, pa.int64())),
                "timestamp": timestamp[order].astype("datetime64[us]"),
                "value": pa.nulls(total, pa.float64()),
                "properties": properties.take(pa.array(order, pa.int64())),
            },
            schema=SCHEMAS["events"],
        )

    # -- the engine's side ----------------------------------------------------------------------

    def deliver(
        self,
        account_id: str,
        at: datetime,
        *,
        channel: str = "email",
        variant: str | None = None,
    ) -> None:
        """The engine sent ``account_id`` a message at ``at`` (naive UTC).

        From ``at`` on (for ``slack``: from the CSM's call, if the alert makes them call), the
        account's goal hazard gains the term of the response that matches the channel, the
        variant and the account's segment (:class:`~closeloop.simulate.config.Response`). A
        delivery must not reach into days already simulated (deliver at the midnight before the
        next :meth:`step`).
        """
        row = self._row(account_id)
        at_us = _microseconds(at)
        if at_us < self.population.created_us[row]:
            raise ValueError(f"cannot deliver to {account_id} at {at}: it signs up later")
        simulated_until = self._start_us + self._next_day * MICROSECONDS_PER_DAY
        if at_us < simulated_until:
            raise ValueError(
                f"cannot deliver to {account_id} at {at}: the simulation has already reached "
                f"{_datetime(simulated_until)}; deliver before stepping the day it falls in"
            )
        self.deliveries[channel] += 1
        self.deliveries_by_variant[(channel, variant or "-")] += 1
        self._first_delivery_us[row] = min(int(self._first_delivery_us[row]), at_us)
        touch_us = self._touch_time(np.array([row]), np.array([at_us]), channel)[0]
        if touch_us == NEVER:
            return
        if channel == "slack":
            self.team.reach_out(row, int(touch_us))
        effects, decay = response_effects(self.config, channel, variant or TREATMENT)
        effect = float(effects[self.population.segment[row]])
        if effect == 0.0:
            return
        self._touches.setdefault(row, []).append((int(touch_us), effect, decay))
        if not self._goal_emitted[row] and not self._goal_blocked[row]:
            self._stale.add(row)

    def _touch_time(self, rows: IntArray, at_us: IntArray, channel: str) -> IntArray:
        """When a delivery starts to act: at once, or at the CSM's call after a Slack alert."""
        if channel != "slack":
            return at_us
        config = self.config
        calls = keyed_uniform(config.seed, Stream.REACH_OUT, rows, at_us) < (
            config.reach_out_probability
        )
        delay_days = -config.reach_out_mean_days * np.log(
            keyed_uniform(config.seed, Stream.REACH_OUT_DELAY, rows, at_us)
        )
        delay = np.floor(delay_days * MICROSECONDS_PER_DAY).astype(np.int64)
        return np.where(calls, at_us + delay, NEVER).astype(np.int64)

    def _refresh_goals(self) -> None:
        """Recompute the goal time of every account whose deliveries changed since the last day."""
        if not self._stale:
            return
        rows = np.array(sorted(self._stale), dtype=np.int64)
        self._stale.clear()
        width = max(len(self._touches[int(row)]) for row in rows)
        touches = Touches(
            np.full((len(rows), width), NEVER, dtype=np.int64),
            np.zeros((len(rows), width)),
            np.full((len(rows), width), np.inf),
        )
        for index, row in enumerate(rows):
            for column, (at_us, effect, decay) in enumerate(sorted(self._touches[int(row)])):
                touches.at_us[index, column] = at_us
                touches.effect[index, column] = effect
                touches.decay_days[index, column] = decay
        population = self.population
        self._goal_us[rows] = milestone_microseconds(
            population.created_us[rows],
            population.threshold[rows],
            self._rate[rows],
            self.config.tenure_scale_days,
            touches,
        )

    def true_effects(
        self,
        units: Sequence[tuple[str, datetime]],
        horizon_days: float,
        policies: Mapping[str, Policy] | None = None,
    ) -> list[TrueEffect]:
        """The exact effect of each policy on reaching the goal within the horizon, per segment.

        ``units`` are the ``(account_id, entered_at)`` of every enrolled unit of a job, both arms.
        ``policies`` maps each variant to what the job does to a unit of that variant: deliveries
        at offsets from entry, each sent only while the goal is not reached (as the engine cancels
        reminders); by default one email at entry (variant ``treatment``). For every unit the
        simulator decides, from the account's own threshold and frailty, whether the goal falls in
        ``(entered_at, entered_at + horizon_days]`` under the policy and under no delivery at all,
        with churn before the goal (which prevents it) decided by the same draws as the live run.
        Returns, per variant, one :class:`TrueEffect` per segment present and one for ``"all"``.
        Deliveries made to this simulator do not change the answer.
        """
        chosen = dict(policies) if policies is not None else {TREATMENT: ONE_EMAIL}
        segment_names = [s.name for s in self.config.segments]
        effects: list[TrueEffect] = []
        for variant, policy in chosen.items():
            outcomes = self.potential_outcomes(units, horizon_days, tuple(policy), variant)
            effects.extend(
                summarise(
                    variant, segment_names, outcomes.segment, outcomes.treated, outcomes.control
                )
            )
        return effects

    def potential_outcomes(
        self,
        units: Sequence[tuple[str, datetime]],
        horizon_days: float,
        policy: Policy = ONE_EMAIL,
        variant: str = TREATMENT,
    ) -> PotentialOutcomes:
        """Per unit: does it reach the goal within the horizon under the policy, and without it?

        The unit-level potential outcomes behind :meth:`true_effects`, for checking estimators by
        simulation (sample units, randomize, observe one of the two outcomes per unit).
        """
        if horizon_days <= 0:
            raise ValueError(f"horizon_days must be above 0, got {horizon_days}")
        rows = np.array([self._row(account) for account, _ in units], dtype=np.int64)
        entered = np.array([_microseconds(at) for _, at in units], dtype=np.int64)
        population = self.population
        created = population.created_us[rows]
        if bool((entered < created).any()):
            first = int(np.flatnonzero(entered < created)[0])
            raise ValueError(f"unit {units[first]!r} entered before its account signed up")
        window_end = entered + round(horizon_days * MICROSECONDS_PER_DAY)
        churn = first_churn_before_goal_us(
            self.config, population, self._teammate_us, rows, window_end
        )

        def completed(goal: IntArray) -> npt.NDArray[np.bool_]:
            return (goal > entered) & (goal <= window_end) & (goal <= churn)

        return PotentialOutcomes(
            segment=population.segment[rows],
            treated=completed(self._goal_under(rows, entered, policy, variant)),
            control=completed(self._goal_under(rows, entered, (), variant)),
        )

    def _goal_under(
        self, rows: IntArray, entered: IntArray, policy: Policy, variant: str
    ) -> IntArray:
        """Goal times of ``rows`` if the policy is applied from ``entered`` (and nothing else)."""
        population = self.population
        created = population.created_us[rows]
        threshold = population.threshold[rows]
        rate = self._rate[rows]
        tau = self.config.tenure_scale_days
        width = len(policy)
        at = np.full((len(rows), width), NEVER, dtype=np.int64)
        effect = np.zeros((len(rows), width))
        decay = np.full((len(rows), width), np.inf)
        for column, touch in enumerate(policy):
            sent_at = entered + round(touch.offset_days * MICROSECONDS_PER_DAY)
            goal = milestone_microseconds(
                created, threshold, rate, tau, _in_time_order(at, effect, decay)
            )
            touch_at = self._touch_time(rows, sent_at, touch.channel)
            effects, fade = response_effects(self.config, touch.channel, variant)
            acts = effects[population.segment[rows]]
            live = (goal > sent_at) & (touch_at != NEVER) & (acts != 0.0)
            at[:, column] = np.where(live, touch_at, NEVER)
            effect[:, column] = np.where(live, acts, 0.0)
            decay[:, column] = np.where(live, fade, np.inf)
        return milestone_microseconds(
            created, threshold, rate, tau, _in_time_order(at, effect, decay)
        )

    def ground_truth(self) -> dict[str, Any]:
        """The configured truth, JSON-serialisable: scenario, seed, every response and segment."""
        config = self.config
        return {
            "scenario": config.name,
            "seed": config.seed,
            "start": config.start.isoformat(),
            "days": config.days,
            "n_accounts": config.n_accounts,
            "arrival_days": config.arrival_days,
            "goal_event": GOAL_EVENT,
            "hazard": "base_daily_hazard * frailty * exp(-tenure_days / tenure_scale_days)"
            " * (1 + sum over deliveries of effect * exp(-days_since_delivery / decay_days))",
            "tenure_scale_days": config.tenure_scale_days,
            "frailty_shape": config.frailty_shape,
            "segments": {
                s.name: {"share": s.share, "base_daily_hazard": s.base_daily_hazard}
                for s in config.segments
            },
            "responses": [
                {
                    "channel": r.channel,
                    "variant": r.variant,
                    "decay_days": None if math.isinf(r.decay_days) else r.decay_days,
                    "effects": dict(r.effects),
                    "hazard_ratio_at_delivery": {s: 1.0 + e for s, e in r.effects},
                }
                for r in config.responses
            ],
            "deliveries": dict(self.deliveries),
            "deliveries_by_variant": {
                f"{channel}/{variant}": count
                for (channel, variant), count in sorted(self.deliveries_by_variant.items())
            },
            "treated_accounts": int((self._first_delivery_us != NEVER).sum()),
        }

    def _row(self, account_id: str) -> int:
        digits = account_id.removeprefix("acc_")
        row = int(digits) if digits.isascii() and digits.isdigit() else -1
        if 0 <= row < self.population.size and len(digits) == self._account_width:
            return row
        known = (
            f"its ids run from {self._account_ids[0]} to {self._account_ids[-1]}"
            if self.population.size
            else "it has no accounts"
        )
        raise UnknownAccountError(f"the simulation has no account {account_id!r}; {known}")


def _in_time_order(at: IntArray, effect: FloatArray, decay: FloatArray) -> Touches:
    """Each row's deliveries sorted by (time, effect, decay), as the live simulation sorts them."""
    if at.shape[1] == 0:
        return Touches(at, effect, decay)
    order = np.lexsort((decay, effect, at), axis=1)
    return Touches(
        np.take_along_axis(at, order, axis=1),
        np.take_along_axis(effect, order, axis=1),
        np.take_along_axis(decay, order, axis=1),
    )


@dataclass(frozen=True)
class PotentialOutcomes:
    """Both outcomes of each unit: reached the goal within the horizon if treated, if not."""

    segment: IntArray  # index into config.segments
    treated: npt.NDArray[np.bool_]
    control: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Part:
    """Events of one milestone kind on one day, before they are merged and sorted."""

    account: IntArray
    person: IntArray
    name: str
    timestamp_us: IntArray
    properties: pa.Array | None  # JSON text per event

    @property
    def size(self) -> int:
        return len(self.account)

    def properties_array(self) -> pa.Array:
        if self.properties is None:
            return pa.nulls(self.size, pa.string())
        return self.properties


def _microseconds(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly; aware times are converted to naive UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // _ONE_MICROSECOND


def _event_ids(day: date, count: int) -> pa.Array:
    """``ev_20250106_0000000``, ``ev_20250106_0000001``, ... in the day's time order."""
    return _ids(f"ev_{day:%Y%m%d}_", count, 7)


def _ids(prefix: str, count: int, width: int) -> pa.Array:
    """``prefix`` followed by 0, 1, ... ``count - 1`` zero-padded to ``width`` digits."""
    numbers = pc.cast(pa.array(np.arange(count, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _datetime(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def _repeat_suffix(local: int) -> str:
    """Person names repeat only past every combination; a number keeps their emails distinct."""
    repeat = local // PERSON_NAME_COMBINATIONS
    return str(repeat + 1) if repeat else ""
