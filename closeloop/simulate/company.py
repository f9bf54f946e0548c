"""A simulated B2B SaaS company that lives day by day and responds to the engine's deliveries.

Build it from a :class:`~closeloop.simulate.config.SimulationConfig`, call :meth:`step` once per
day from ``config.start`` and load each :class:`DayBatch` into the warehouse; tell it about every
message the engine sends with :meth:`deliver`. Only the goal milestone responds to deliveries;
everything else is fixed by the seed. ``docs/simulator.md`` describes the model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
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
    IntArray,
    milestone_microseconds,
)
from closeloop.simulate.population import (
    PERSON_NAME_COMBINATIONS,
    Population,
    company_domain,
    company_name,
    draw_population,
)
from closeloop.simulate.truth import TrueEffect, summarise

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

    ``accounts``, ``people`` and ``subscriptions`` hold the rows created that day; ``events`` every
    event whose timestamp falls in the day, sorted by time. Tables are empty, not missing, on days
    with nothing in them.
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
        self._effect = np.array([s.email_effect for s in config.segments])[population.segment]
        self._goal_us = milestone_microseconds(
            population.created_us, population.threshold, self._rate, config.tenure_scale_days
        )
        self._goal_emitted = np.zeros(n, dtype=np.bool_)
        self._treated_at_us = np.full(n, NEVER, dtype=np.int64)
        self._joined = np.zeros(n, dtype=np.int64)
        self._people_created_sorted = population.people.created_us[population.people.by_creation]
        self._start_us = _microseconds(datetime.combine(config.start, datetime.min.time()))
        self._next_day = 0
        palette, _ = property_palette(config)
        self._palette = pa.array(palette, pa.string())
        self._kinds = pa.array([e.name for e in config.product_events], pa.string())
        self.deliveries: Counter[str] = Counter()
        """Every delivery by channel, repeats included (only the first per account matters)."""

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
        day_start = self._start_us + index * MICROSECONDS_PER_DAY
        day_end = day_start + MICROSECONDS_PER_DAY
        created = self.population.created_us
        first, last = np.searchsorted(created, [day_start, day_end], side="left")
        joining = self.population.people.by_creation[
            slice(*np.searchsorted(self._people_created_sorted, [day_start, day_end], side="left"))
        ]
        usage = usage_events(self.config, self.population, index, int(last), self._joined)
        events = self._events(day, day_start, day_end, joining, usage)
        # People who joined today are active in the product from tomorrow on.
        np.add.at(self._joined, self.population.people.account[joining], 1)
        self._next_day += 1
        return DayBatch(
            day=day,
            accounts=self._accounts(int(first), int(last)),
            people=self._people(joining),
            events=events,
            subscriptions=self._subscriptions(int(first), int(last)),
            survey_responses=SCHEMAS["survey_responses"].empty_table(),
            activities=SCHEMAS["activities"].empty_table(),
            opportunities=SCHEMAS["opportunities"].empty_table(),
            churn_reasons=SCHEMAS["churn_reasons"].empty_table(),
        )

    def _accounts(self, first: int, last: int) -> pa.Table:
        population, config = self.population, self.config
        rows = slice(first, last)
        company = [company_name(int(k)) for k in population.company_name[rows]]
        created = population.created_us[rows].astype("datetime64[us]")
        segments = np.array([s.name for s in config.segments], dtype=object)
        plans = np.array([s.plan for s in config.segments], dtype=object)
        return pa.table(
            {
                "account_id": self._account_ids[first:last],
                "name": company,
                "domain": [company_domain(int(k)) for k in population.company_name[rows]],
                "created_at": created,
                "segment": segments[population.segment[rows]].tolist(),
                "plan": plans[population.segment[rows]].tolist(),
                "industry": [names.INDUSTRIES[k] for k in population.industry[rows]],
                "employees": population.employees[rows],
                "region": [names.REGIONS[k] for k in population.region[rows]],
                "owner": [config.owners[k] for k in population.owner[rows]],
                "arr": population.arr[rows],
                "renewal_date": [_a_year_later(moment.item().date()) for moment in created],
                "properties": [
                    json.dumps({"lead_source": names.LEAD_SOURCES[k]})
                    for k in population.lead_source[rows]
                ],
            },
            schema=SCHEMAS["accounts"],
        )

    def _subscriptions(self, first: int, last: int) -> pa.Table:
        population, config = self.population, self.config
        rows = slice(first, last)
        segment = population.segment[rows]
        plans = np.array([s.plan for s in config.segments], dtype=object)
        months = np.array([s.billing_period_months for s in config.segments], dtype=np.int64)
        return pa.table(
            {
                "subscription_id": [f"sub_{i:06d}" for i in range(first, last)],
                "account_id": self._account_ids[first:last],
                "plan": plans[segment].tolist(),
                "start_date": population.created_us[rows]
                .astype("datetime64[us]")
                .astype("datetime64[D]"),
                "end_date": pa.nulls(last - first, pa.date32()),
                "mrr": np.round(population.arr[rows] / 12.0, 2),
                "billing_period_months": months[segment],
                "quantity": population.seats[rows],
                "properties": pa.nulls(last - first, pa.string()),
            },
            schema=SCHEMAS["subscriptions"],
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
        self, day: date, day_start: int, day_end: int, joining: IntArray, usage: UsageEvents
    ) -> pa.Table:
        population = self.population
        admins = population.first_person
        goal = np.flatnonzero(
            (self._goal_us >= day_start) & (self._goal_us < day_end) & ~self._goal_emitted
        )
        self._goal_emitted[goal] = True
        project = np.flatnonzero(
            (population.first_project_us >= day_start) & (population.first_project_us < day_end)
        )
        invited = joining[population.people.local[joining] > 0]
        inviter_account = population.people.account[invited]
        parts = [
            _Part(
                account=goal,
                person=admins[goal],
                name=GOAL_EVENT,
                timestamp_us=self._goal_us[goal],
                properties=_INTEGRATION_PROPERTIES.take(
                    pa.array(population.integration[goal], pa.int64())
                ),
            ),
            _Part(
                account=project,
                person=admins[project],
                name=FIRST_PROJECT_EVENT,
                timestamp_us=population.first_project_us[project],
                properties=None,
            ),
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
            ),
        ]
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
        self, account_id: str, at: datetime, *, channel: str = "email", variant: str | None = None
    ) -> None:
        """The engine sent ``account_id`` a message at ``at`` (naive UTC).

        Only the first delivery to an account changes its behaviour: from ``at`` on, its goal
        milestone hazard is multiplied by ``1 + email_effect`` of its segment. Every channel and
        variant has the same effect in this version. A delivery must not reach into days already
        simulated (deliver at the midnight before the next :meth:`step`).
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
        if self._treated_at_us[row] != NEVER:
            return
        self._treated_at_us[row] = at_us
        if not self._goal_emitted[row]:
            rows = np.array([row])
            self._goal_us[row] = milestone_microseconds(
                self.population.created_us[rows],
                self.population.threshold[rows],
                self._rate[rows],
                self.config.tenure_scale_days,
                self._treated_at_us[rows],
                self._effect[rows],
            )[0]

    def true_effects(
        self, units: Sequence[tuple[str, datetime]], horizon_days: int
    ) -> list[TrueEffect]:
        """The exact effect of an email at entry for exactly these units (both arms).

        For each ``(account_id, entered_at)`` it decides, from the account's own threshold and
        frailty, whether the goal milestone falls in ``(entered_at, entered_at + horizon_days]``
        if the account is emailed at ``entered_at`` and if it is never emailed. Returns one
        :class:`TrueEffect` per segment present, in configured order, then one for ``"all"``.
        Deliveries made to this simulator do not change the answer.
        """
        if horizon_days <= 0:
            raise ValueError(f"horizon_days must be above 0, got {horizon_days}")
        rows = np.array([self._row(account) for account, _ in units], dtype=np.int64)
        entered = np.array([_microseconds(at) for _, at in units], dtype=np.int64)
        created = self.population.created_us[rows]
        if bool((entered < created).any()):
            first = int(np.flatnonzero(entered < created)[0])
            raise ValueError(f"unit {units[first]!r} entered before its account signed up")
        threshold = self.population.threshold[rows]
        rate = self._rate[rows]
        tau = self.config.tenure_scale_days
        control = milestone_microseconds(created, threshold, rate, tau)
        treated = milestone_microseconds(created, threshold, rate, tau, entered, self._effect[rows])
        window_end = entered + int(horizon_days) * MICROSECONDS_PER_DAY
        return summarise(
            [s.name for s in self.config.segments],
            self.population.segment[rows],
            (treated > entered) & (treated <= window_end),
            (control > entered) & (control <= window_end),
        )

    def ground_truth(self) -> dict[str, Any]:
        """The configured truth, JSON-serialisable: scenario, seed, every segment's parameters."""
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
            " * (1 + email_effect after the first delivery)",
            "tenure_scale_days": config.tenure_scale_days,
            "frailty_shape": config.frailty_shape,
            "segments": {
                s.name: {
                    "share": s.share,
                    "base_daily_hazard": s.base_daily_hazard,
                    "email_effect": s.email_effect,
                    "hazard_ratio_after_email": 1.0 + s.email_effect,
                }
                for s in config.segments
            },
            "deliveries": dict(self.deliveries),
            "treated_accounts": int((self._treated_at_us != NEVER).sum()),
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


def _a_year_later(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def _repeat_suffix(local: int) -> str:
    """Person names repeat only past every combination; a number keeps their emails distinct."""
    repeat = local // PERSON_NAME_COMBINATIONS
    return str(repeat + 1) if repeat else ""
