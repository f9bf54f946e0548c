"""Voice of the customer: NPS surveys, support tickets and their CSAT and CES responses.

- **NPS**: every account is surveyed ``nps_first_days`` after signup and then every
  ``nps_interval_days`` while it is a customer. The first ``nps_invitees`` people to join are
  asked; each answers with probability ``nps_response_rate``. A score is the segment's
  ``nps_mean`` plus ``nps_adoption_slope`` per adoption milestone above typical, plus
  ``nps_support_slope`` times the account's support experience, plus the satisfaction trend, plus
  individual noise (``nps_sigma``), rounded and clipped to 0-10.
- **Support tickets** arrive as a Poisson count per account and day (``support_tickets_per_month``
  times the square root of the people who have joined) and are ``support_ticket_created`` events.
  After the ticket is resolved (a lognormal delay, shorter with better support) its opener answers
  CSAT (1-5) with probability ``csat_response_rate`` and CES (1-7, lower means less effort) with
  probability ``ces_response_rate``.

Scores that depend on adoption draw through keyed random numbers, so a treated and an untreated
run give each respondent the same noise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa

from closeloop.simulate.config import SimulationConfig
from closeloop.simulate.milestone import MICROSECONDS_PER_DAY, FloatArray, IntArray
from closeloop.simulate.population import (
    BoolArray,
    Population,
    Stream,
    generator,
    keyed_normal,
    keyed_uniform,
)
from closeloop.simulate.revenue import DAYS_PER_YEAR, adoption_reference

SUPPORT_TICKET_EVENT = "support_ticket_created"

NPS_COMMENTS: dict[str, tuple[str, ...]] = {
    "detractor": (
        "Setup was harder than we expected.",
        "Support took days to answer.",
        "We still have not connected our data.",
        "Too expensive for what we use.",
        "Missing the reporting we need.",
    ),
    "passive": (
        "Does the job, a few rough edges.",
        "Good, but onboarding the team took a while.",
        "Useful; would like more integrations.",
        "Fine for now.",
    ),
    "promoter": (
        "The integrations save us hours every week.",
        "Our CSM has been fantastic.",
        "The whole team uses it daily.",
        "Dashboards are exactly what we needed.",
        "Best tool we bought this year.",
    ),
}
TICKET_COMMENTS: dict[str, tuple[str, ...]] = {
    "low": ("Took too long to resolve.", "Had to explain the issue three times."),
    "high": ("Quick and helpful answer.", "Solved on the first reply, thanks!"),
}
_PRIORITIES = ("low", "normal", "high")
_PRIORITY_WEIGHTS = np.array([0.3, 0.55, 0.15])
_COMMENT_SHARE = 0.4


@dataclass(frozen=True)
class Tickets:
    """One day's support tickets: parallel arrays, unsorted."""

    account: IntArray
    person: IntArray
    timestamp_us: IntArray
    priority: IntArray

    @property
    def size(self) -> int:
        return len(self.account)


@dataclass
class Responses:
    """Survey responses not yet emitted (their time is in the future), as column lists."""

    timestamp_us: list[int] = field(default_factory=list)
    account: list[int] = field(default_factory=list)
    person: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    scale_min: list[float] = field(default_factory=list)
    scale_max: list[float] = field(default_factory=list)
    comment: list[str | None] = field(default_factory=list)

    def add(
        self,
        timestamp_us: IntArray,
        account: IntArray,
        person: IntArray,
        kind: str,
        score: FloatArray,
        scale: tuple[float, float],
        comment: list[str | None],
    ) -> None:
        self.timestamp_us.extend(int(t) for t in timestamp_us)
        self.account.extend(int(a) for a in account)
        self.person.extend(int(p) for p in person)
        self.kind.extend([kind] * len(account))
        self.score.extend(float(s) for s in score)
        self.scale_min.extend([scale[0]] * len(account))
        self.scale_max.extend([scale[1]] * len(account))
        self.comment.extend(comment)

    def keep(self, mask: list[bool]) -> None:
        """Drop the queued responses where ``mask`` is false."""
        for name in vars(self):
            values = getattr(self, name)
            setattr(self, name, [v for v, k in zip(values, mask, strict=True) if k])

    def pop_before(self, end_us: int) -> Responses:
        """The responses timed before ``end_us``, in time order, removed from this queue."""
        order = sorted(range(len(self.timestamp_us)), key=self.timestamp_us.__getitem__)
        due = [i for i in order if self.timestamp_us[i] < end_us]
        keep = [i for i in order if self.timestamp_us[i] >= end_us]
        popped = Responses()
        for name in vars(self):
            values = getattr(self, name)
            setattr(popped, name, [values[i] for i in due])
            setattr(self, name, [values[i] for i in keep])
        return popped


class VoiceOfCustomer:
    """NPS waves and support tickets, advanced one day at a time."""

    def __init__(self, config: SimulationConfig, population: Population) -> None:
        self.config = config
        self.population = population
        created_day = np.floor_divide(population.created_us, MICROSECONDS_PER_DAY)
        self.next_wave = created_day + config.nps_first_days
        self.waves = np.zeros(population.size, dtype=np.int64)
        self.pending = Responses()
        self.segment_nps = np.array([s.nps_mean for s in config.segments])[population.segment]
        self.ticket_rate = (
            np.array([s.support_tickets_per_month for s in config.segments])[population.segment]
            / 30.0
        )
        self.start_us = (
            int(config.start.toordinal() - date(1970, 1, 1).toordinal()) * MICROSECONDS_PER_DAY
        )

    def _trend(self, at_us: int) -> float:
        years = (at_us - self.start_us) / MICROSECONDS_PER_DAY / DAYS_PER_YEAR
        return self.config.satisfaction_trend_per_year * years

    def tickets(
        self, day_index: int, signed_up: int, joined: IntArray, active: BoolArray
    ) -> Tickets:
        """Today's support tickets of active accounts; their CSAT / CES answers are queued."""
        config = self.config
        rng = generator(config.seed, Stream.SUPPORT, day_index)
        day_start = self.start_us + day_index * MICROSECONDS_PER_DAY
        people = np.maximum(joined[:signed_up], 1)
        counts = rng.poisson(self.ticket_rate[:signed_up] * np.sqrt(people))
        account = np.repeat(np.arange(signed_up, dtype=np.int64), counts)
        total = len(account)
        created = self.population.created_us[account]
        lower = np.maximum(created, day_start)
        timestamp = lower + np.floor(rng.random(total) * (day_start + MICROSECONDS_PER_DAY - lower))
        person = self.population.first_person[account] + np.floor(
            rng.random(total) * people[account]
        ).astype(np.int64)
        priority = rng.choice(len(_PRIORITIES), size=total, p=_PRIORITY_WEIGHTS)
        support = self.population.support[account]
        resolution_days = rng.lognormal(-0.5 - 0.3 * support, 0.8)
        answers_csat = rng.random(total) < config.csat_response_rate
        answers_ces = rng.random(total) < config.ces_response_rate
        csat_noise = rng.standard_normal(total)
        ces_noise = rng.standard_normal(total)
        comment_draw = rng.random(total)
        keep = active[account]
        timestamp = timestamp.astype(np.int64)
        answered_at = timestamp + np.floor(resolution_days * MICROSECONDS_PER_DAY).astype(np.int64)
        trend = self._trend(day_start)
        csat = np.clip(np.round(4.0 + 0.6 * support + trend / 3.0 + 0.9 * csat_noise), 1, 5)
        ces = np.clip(np.round(3.2 - 0.8 * support + 1.1 * ces_noise), 1, 7)
        for kind, answers, score, scale, good in (
            ("csat", answers_csat, csat, (1.0, 5.0), csat >= 4),
            ("ces", answers_ces, ces, (1.0, 7.0), ces <= 3),
        ):
            chosen = keep & answers
            self.pending.add(
                answered_at[chosen],
                account[chosen],
                person[chosen],
                kind,
                score[chosen],
                scale,
                _ticket_comments(good[chosen], comment_draw[chosen]),
            )
        return Tickets(account[keep], person[keep], timestamp[keep], priority[keep])

    def nps(
        self,
        day_index: int,
        joined: IntArray,
        active: BoolArray,
        adoption: Callable[[IntArray, int], FloatArray],
    ) -> None:
        """Queue the answers to today's NPS surveys (accounts whose wave is due today).

        ``adoption(rows, at_us)`` counts the adoption milestones the accounts had reached.
        """
        config = self.config
        today = self.start_us // MICROSECONDS_PER_DAY + day_index
        due = np.flatnonzero(self.next_wave == today)
        if not len(due):
            return
        self.next_wave[due] += config.nps_interval_days
        due = due[active[due]]
        self.waves[due] += 1
        invited = np.minimum(np.maximum(joined[due], 1), config.nps_invitees)
        account = np.repeat(due, invited)
        offset = np.arange(len(account)) - np.repeat(np.cumsum(invited) - invited, invited)
        person = self.population.first_person[account] + offset
        wave = self.waves[account]
        answers = keyed_uniform(config.seed, Stream.NPS_RESPONSE, person, wave)
        chosen = answers < config.nps_response_rate
        account, person, wave = account[chosen], person[chosen], wave[chosen]
        reference = adoption_reference(config)
        day_start = today * MICROSECONDS_PER_DAY
        mean = (
            self.segment_nps[account]
            + config.nps_adoption_slope * (adoption(account, day_start) - reference)
            + config.nps_support_slope * self.population.support[account]
            + self._trend(day_start)
        )
        noise = keyed_normal(config.seed, Stream.NPS_SCORE, person, wave)
        score = np.clip(np.round(mean + config.nps_sigma * noise), 0, 10)
        hour = keyed_uniform(config.seed, Stream.COMMENT, person, wave, 1)
        timestamp = day_start + np.floor((8.0 + 10.0 * hour) / 24.0 * MICROSECONDS_PER_DAY)
        self.pending.add(
            timestamp.astype(np.int64),
            account,
            person,
            "nps",
            score,
            (0.0, 10.0),
            _nps_comments(score, keyed_uniform(config.seed, Stream.COMMENT, person, wave)),
        )

    def responses(
        self,
        day_index: int,
        person_ids: pa.Array,
        account_ids: pa.Array,
        schema: pa.Schema,
        active: BoolArray,
    ) -> pa.Table:
        """The survey responses timed within day ``day_index``, in time order.

        Answers of accounts that churned while the ticket was open are dropped.
        """
        day_end = self.start_us + (day_index + 1) * MICROSECONDS_PER_DAY
        due = self.pending.pop_before(day_end)
        due.keep([bool(active[account]) for account in due.account])
        day = date.fromordinal(self.config.start.toordinal() + day_index)
        count = len(due.account)
        numbers = pa.array(np.arange(count, dtype=np.int64)).cast(pa.string())
        return pa.table(
            {
                "response_id": pa.compute.binary_join_element_wise(
                    f"resp_{day:%Y%m%d}_", pa.compute.utf8_lpad(numbers, 6, "0"), ""
                ),
                "account_id": account_ids.take(pa.array(due.account, pa.int64())),
                "person_id": person_ids.take(pa.array(due.person, pa.int64())),
                "kind": pa.array(due.kind, pa.string()),
                "score": pa.array(due.score, pa.float64()),
                "scale_min": pa.array(due.scale_min, pa.float64()),
                "scale_max": pa.array(due.scale_max, pa.float64()),
                "comment": pa.array(due.comment, pa.string()),
                "responded_at": pa.array(due.timestamp_us, pa.int64()).cast(pa.timestamp("us")),
                "properties": pa.nulls(count, pa.string()),
            },
            schema=schema,
        )


def ticket_properties(tickets: Tickets, day: date) -> pa.Array:
    """``{"ticket_id": ..., "priority": ...}`` per ticket."""
    return pa.array(
        [
            json.dumps({"ticket_id": f"tkt_{day:%Y%m%d}_{index:05d}", "priority": _PRIORITIES[p]})
            for index, p in enumerate(tickets.priority)
        ],
        pa.string(),
    )


def _nps_comments(score: FloatArray, draw: FloatArray) -> list[str | None]:
    bands = ["promoter" if v >= 9 else "passive" if v >= 7 else "detractor" for v in score]
    return _comments([NPS_COMMENTS[band] for band in bands], draw)


def _ticket_comments(good: BoolArray, draw: FloatArray) -> list[str | None]:
    return _comments([TICKET_COMMENTS["high" if g else "low"] for g in good], draw)


def _comments(options: list[tuple[str, ...]], draw: FloatArray) -> list[str | None]:
    """A comment from each respondent's options for draws below the comment share, else none."""
    return [
        choices[int(u / _COMMENT_SHARE * len(choices)) % len(choices)]
        if u < _COMMENT_SHARE
        else None
        for choices, u in zip(options, draw, strict=True)
    ]
