"""A simulated B2B SaaS company that steps day by day and responds to the engine's deliveries.

Model (docs/simulator.md): accounts arrive at random over ``arrival_days``; each gets a segment,
a gamma frailty f (mean 1) and a threshold E ~ Exp(1). Its hazard of reaching the goal milestone t
days after signup is ``base * f * exp(-t / tau)``; after the account's first delivery at s days the
hazard is multiplied by ``1 + effect``. The milestone happens when the cumulative hazard reaches E,
which has a closed form, so the time is exact. Product noise (logins, feature use) is drawn from a
per-day random stream that deliveries do not touch: the treated and the untreated world share
their random numbers, which makes the ground truth an exact counterfactual.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from closeloop.data.tables import ACCOUNTS, EVENTS, PEOPLE, SUBSCRIPTIONS, TableSpec
from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.simulate.config import SimulationConfig

_ADJECTIVES = (
    "Bright",
    "Blue",
    "North",
    "Silver",
    "Rapid",
    "Clear",
    "Bold",
    "Quiet",
    "Prime",
    "True",
    "Open",
    "Swift",
    "Green",
    "Iron",
    "Lucid",
    "Noble",
    "Solid",
    "Vivid",
    "Amber",
    "Polar",
)
_NOUNS = (
    "Harbor",
    "Forge",
    "Labs",
    "Works",
    "Systems",
    "Analytics",
    "Logistics",
    "Health",
    "Media",
    "Robotics",
    "Foods",
    "Energy",
    "Capital",
    "Studio",
    "Cloud",
    "Bio",
    "Retail",
    "Motors",
    "Networks",
    "Supply",
)
_INDUSTRIES = ("software", "retail", "healthcare", "finance", "manufacturing", "education", "media")
_REGIONS = ("na", "emea", "apac", "latam")
_CSMS = ("ada", "grace", "alan", "edsger", "barbara", "ken")
_ROLES = ("admin", "member", "member", "member", "viewer")
_NOISE_EVENTS = ("login", "feature_used", "report_viewed")
_NOISE_WEIGHTS = (0.55, 0.3, 0.15)
_OTHER_MILESTONES = (("first_project_created", 0.15), ("teammate_invited", 0.05))

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class DayBatch:
    """What happened on one day, in the canonical tables' Arrow schemas."""

    day: date
    accounts: pa.Table
    people: pa.Table
    events: pa.Table
    subscriptions: pa.Table


@dataclass(frozen=True)
class TrueEffect:
    """The exact effect of treating the given units at entry on reaching the goal in the horizon."""

    segment: str
    n: int
    completion_if_treated: float
    completion_if_control: float
    effect: float


def _schema(spec: TableSpec) -> pa.Schema:
    return spec.ibis_schema().to_pyarrow()


_SCHEMAS = {spec.name: _schema(spec) for spec in (ACCOUNTS, PEOPLE, EVENTS, SUBSCRIPTIONS)}


def milestone_days(
    threshold: np.ndarray,
    rate: np.ndarray,
    tau: float,
    treated_at: np.ndarray,
    effect: np.ndarray,
) -> np.ndarray:
    """Days after signup at which cumulative hazard reaches ``threshold`` (inf: never).

    Hazard ``rate * exp(-t / tau)``, multiplied by ``1 + effect`` from ``treated_at`` on
    (``nan`` = never treated). Vectorised, exact.
    """
    capacity = rate * tau  # cumulative hazard as t -> inf, untreated

    def inverse(level: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(capacity > 0, level / capacity, np.inf)
            return np.where(fraction < 1, -tau * np.log1p(-np.minimum(fraction, 1)), np.inf)

    untreated = inverse(threshold)
    treated = ~np.isnan(treated_at)
    s = np.where(treated, np.maximum(treated_at, 0.0), 0.0)
    reached_before = untreated <= s
    h_at_s = capacity * -np.expm1(-s / tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = h_at_s + (threshold - h_at_s) / (1 + effect)
    after = inverse(np.where(treated & ~reached_before, needed, threshold))
    return np.where(treated & ~reached_before, after, untreated)


class CompanySimulator:
    """Step it once per day from ``config.start``; tell it about every delivery."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        n = config.n_accounts
        segments = config.segments
        self._segment_names = [s.name for s in segments]
        shares = np.array([s.share for s in segments])
        arrival = np.sort(rng.uniform(0, config.arrival_days, n))
        self.created = arrival  # days since start (float)
        self.segment = rng.choice(len(segments), size=n, p=shares)
        self.frailty = rng.gamma(config.frailty_shape, 1 / config.frailty_shape, n)
        self.threshold = rng.exponential(1.0, n)
        self.base = np.array([segments[i].milestone_hazard for i in self.segment])
        self.effect = np.array([segments[i].email_effect for i in self.segment])
        low = np.array([segments[i].seats[0] for i in self.segment])
        high = np.array([segments[i].seats[1] for i in self.segment])
        self.seats = rng.integers(low, high + 1)
        self.delivered = np.full(n, np.nan)
        self.ids = [f"acc_{i:06d}" for i in range(n)]
        self._index = {account: i for i, account in enumerate(self.ids)}
        self._attributes = self._draw_attributes(rng)
        self.other_milestones = {
            name: rng.exponential(1.0, n) / (rate * self.frailty)
            for name, rate in _OTHER_MILESTONES
        }
        self.goal_at = self.created + self._goal_days()
        self._next_day = 0
        self._epoch = datetime.combine(config.start, datetime.min.time())

    # -- accounts -------------------------------------------------------------------------------

    def _draw_attributes(self, rng: np.random.Generator) -> dict[str, list[Any]]:
        segments = self.config.segments
        n = self.config.n_accounts
        adjectives = rng.integers(0, len(_ADJECTIVES), n)
        nouns = rng.integers(0, len(_NOUNS), n)
        names = [f"{_ADJECTIVES[a]} {_NOUNS[b]}" for a, b in zip(adjectives, nouns, strict=True)]
        plans, employees, arr = [], [], []
        plan_draws = rng.random(n)
        employee_draws = rng.random(n)
        arr_draws = rng.standard_normal(n)
        for i, k in enumerate(self.segment):
            segment = segments[k]
            plans.append(segment.plans[int(plan_draws[i] * len(segment.plans))])
            lo, hi = segment.employees
            employees.append(round(lo * (hi / lo) ** float(employee_draws[i])))
            arr.append(round(segment.arr_median * math.exp(segment.arr_sigma * arr_draws[i]), 2))
        return {
            "name": names,
            "domain": [
                f"{name.lower().replace(' ', '')}{i}.example" for i, name in enumerate(names)
            ],
            "plan": plans,
            "industry": [_INDUSTRIES[i] for i in rng.integers(0, len(_INDUSTRIES), n)],
            "employees": employees,
            "region": [_REGIONS[i] for i in rng.integers(0, len(_REGIONS), n)],
            "owner": [_CSMS[i] for i in rng.integers(0, len(_CSMS), n)],
            "arr": arr,
        }

    def _goal_days(self, treated_at: np.ndarray | None = None) -> np.ndarray:
        rate = self.base * self.frailty
        treated = self.delivered - self.created if treated_at is None else treated_at
        return milestone_days(
            self.threshold, rate, self.config.tenure_scale_days, treated, self.effect
        )

    def _time(self, days: float) -> datetime:
        # Whole microseconds, as the warehouse stores them.
        return self._epoch + timedelta(microseconds=round(days * SECONDS_PER_DAY * 1e6))

    def _days(self, moment: datetime) -> float:
        return (moment - self._epoch).total_seconds() / SECONDS_PER_DAY

    # -- the day loop ---------------------------------------------------------------------------

    def step(self, day: date) -> DayBatch:
        """Everything that happens on ``day``; days must be stepped in order from the start."""
        index = (day - self.config.start).days
        if index != self._next_day:
            expected = self.config.start + timedelta(days=self._next_day)
            raise ConfigurationError(f"step({day}) out of order: the next day is {expected}")
        self._next_day += 1
        arrived = np.flatnonzero((self.created >= index) & (self.created < index + 1))
        return DayBatch(
            day=day,
            accounts=self._accounts(arrived),
            people=self._people(arrived),
            events=self._events(index),
            subscriptions=self._subscriptions(arrived),
        )

    def _accounts(self, rows: np.ndarray) -> pa.Table:
        attributes = self._attributes
        return pa.table(
            {
                "account_id": [self.ids[i] for i in rows],
                "name": [attributes["name"][i] for i in rows],
                "domain": [attributes["domain"][i] for i in rows],
                "created_at": [self._time(self.created[i]) for i in rows],
                "segment": [self._segment_names[self.segment[i]] for i in rows],
                "plan": [attributes["plan"][i] for i in rows],
                "industry": [attributes["industry"][i] for i in rows],
                "employees": [attributes["employees"][i] for i in rows],
                "region": [attributes["region"][i] for i in rows],
                "owner": [attributes["owner"][i] for i in rows],
                "arr": [attributes["arr"][i] for i in rows],
                "renewal_date": [
                    (self._time(self.created[i]) + timedelta(days=365)).date() for i in rows
                ],
                "properties": [None] * len(rows),
            },
            schema=_SCHEMAS["accounts"],
        )

    def _people(self, rows: np.ndarray) -> pa.Table:
        person_ids, accounts, emails, names, roles, created = [], [], [], [], [], []
        for i in rows:
            domain = self._attributes["domain"][i]
            for seat in range(int(self.seats[i])):
                person_ids.append(f"{self.ids[i]}_p{seat:03d}")
                accounts.append(self.ids[i])
                emails.append(f"user{seat}@{domain}")
                names.append(f"User {seat} of {self._attributes['name'][i]}")
                roles.append("admin" if seat == 0 else _ROLES[seat % len(_ROLES)])
                created.append(self._time(self.created[i]))
        return pa.table(
            {
                "person_id": person_ids,
                "account_id": accounts,
                "email": emails,
                "name": names,
                "role": roles,
                "created_at": created,
                "properties": [None] * len(person_ids),
            },
            schema=_SCHEMAS["people"],
        )

    def _subscriptions(self, rows: np.ndarray) -> pa.Table:
        segments = self.config.segments
        return pa.table(
            {
                "subscription_id": [f"sub_{self.ids[i]}" for i in rows],
                "account_id": [self.ids[i] for i in rows],
                "plan": [self._attributes["plan"][i] for i in rows],
                "start_date": [self._time(self.created[i]).date() for i in rows],
                "end_date": [None] * len(rows),
                "mrr": [round(self._attributes["arr"][i] / 12, 2) for i in rows],
                "billing_period_months": [segments[self.segment[i]].billing_months for i in rows],
                "quantity": [int(self.seats[i]) for i in rows],
                "properties": [None] * len(rows),
            },
            schema=_SCHEMAS["subscriptions"],
        )

    def _events(self, index: int) -> pa.Table:
        """Milestones falling on this day, then product noise from the day's own random stream."""
        columns: dict[str, list[Any]] = {"account": [], "seat": [], "name": [], "at": []}

        def add(accounts: np.ndarray, seats: np.ndarray, name: str, at: np.ndarray) -> None:
            columns["account"].extend(accounts.tolist())
            columns["seat"].extend(seats.tolist())
            columns["name"].extend([name] * len(accounts))
            columns["at"].extend(at.tolist())

        day_start, day_end = float(index), float(index + 1)
        goal = np.flatnonzero((self.goal_at >= day_start) & (self.goal_at < day_end))
        add(goal, np.zeros(len(goal), dtype=int), self.config.goal_event, self.goal_at[goal])
        for name, days in self.other_milestones.items():
            when = self.created + days
            hit = np.flatnonzero((when >= day_start) & (when < day_end))
            add(hit, np.zeros(len(hit), dtype=int), name, when[hit])

        rng = np.random.default_rng([self.config.seed, 1, index])
        active = np.flatnonzero(self.created < day_end)
        if len(active):
            tenure = np.maximum(day_start - self.created[active], 0.0)
            activity = (
                np.array([self.config.segments[k].activity for k in self.segment[active]])
                * self.frailty[active]
                * np.sqrt(self.seats[active] / 10)
                * (0.5 + 0.5 * np.exp(-tenure / (4 * self.config.tenure_scale_days)))
            )
            counts = rng.poisson(activity)
            owners = np.repeat(active, counts)
            total = len(owners)
            starts = np.maximum(self.created[owners], day_start)
            at = starts + rng.random(total) * (day_end - starts)
            seats = (rng.random(total) * self.seats[owners]).astype(int)
            kinds = rng.choice(len(_NOISE_EVENTS), size=total, p=_NOISE_WEIGHTS)
            for k, name in enumerate(_NOISE_EVENTS):
                chosen = kinds == k
                add(owners[chosen], seats[chosen], name, at[chosen])

        order = np.argsort(np.asarray(columns["at"], dtype=float), kind="stable")
        accounts = [columns["account"][i] for i in order]
        seats_list = [columns["seat"][i] for i in order]
        return pa.table(
            {
                "event_id": [f"ev_{index:05d}_{n:07d}" for n in range(len(order))],
                "account_id": [self.ids[a] for a in accounts],
                "person_id": [
                    f"{self.ids[a]}_p{s:03d}" for a, s in zip(accounts, seats_list, strict=True)
                ],
                "name": [columns["name"][i] for i in order],
                "timestamp": [self._time(columns["at"][i]) for i in order],
                "value": pa.nulls(len(order), pa.float64()),
                "properties": pa.nulls(len(order), pa.string()),
            },
            schema=_SCHEMAS["events"],
        )

    # -- the engine's side ----------------------------------------------------------------------

    def _account_index(self, account_id: str) -> int:
        try:
            return self._index[account_id]
        except KeyError:
            raise NotFoundError(f"the simulation has no account {account_id!r}") from None

    def deliver(
        self, account_id: str, at: datetime, *, channel: str = "email", variant: str | None = None
    ) -> None:
        """The engine sent ``account_id`` a message at ``at``; only the first one changes it."""
        i = self._account_index(account_id)
        if not np.isnan(self.delivered[i]):
            return
        moment = self._days(at)
        self.delivered[i] = moment
        if self.goal_at[i] > moment:  # a milestone already reached stays where it was
            self.goal_at[i] = self.created[i] + self._goal_days()[i]

    def true_effects(
        self, units: Sequence[tuple[str, datetime]], horizon_days: int
    ) -> list[TrueEffect]:
        """Per segment and overall ("all"): P(goal within horizon | treated at entry) minus
        P(goal within horizon | never treated), for exactly these units, from their own draws."""
        if not units:
            return []
        rows = np.array([self._account_index(account) for account, _ in units])
        entered = np.array([self._days(at) for _, at in units]) - self.created[rows]
        rate = (self.base * self.frailty)[rows]
        tau = self.config.tenure_scale_days
        never = np.full(len(rows), np.nan)
        control = milestone_days(self.threshold[rows], rate, tau, never, self.effect[rows])
        treated = milestone_days(self.threshold[rows], rate, tau, entered, self.effect[rows])

        def completes(days: np.ndarray) -> np.ndarray:
            return np.asarray((days >= entered) & (days <= entered + horizon_days))

        done_treated, done_control = completes(treated), completes(control)
        results = []
        groups = [("all", np.ones(len(rows), dtype=bool))] + [
            (name, self.segment[rows] == k) for k, name in enumerate(self._segment_names)
        ]
        for name, mask in groups:
            n = int(mask.sum())
            if n == 0:
                continue
            if_treated = float(done_treated[mask].mean())
            if_control = float(done_control[mask].mean())
            results.append(TrueEffect(name, n, if_treated, if_control, if_treated - if_control))
        return results

    def ground_truth(self) -> dict[str, Any]:
        config = self.config
        return {
            "scenario": config.name,
            "seed": config.seed,
            "accounts": config.n_accounts,
            "goal_event": config.goal_event,
            "tenure_scale_days": config.tenure_scale_days,
            "frailty_shape": config.frailty_shape,
            "segments": {
                s.name: {
                    "share": s.share,
                    "milestone_hazard_per_day": s.milestone_hazard,
                    "email_effect_on_hazard": s.email_effect,
                }
                for s in config.segments
            },
        }
