"""Everyday product usage: Poisson counts per account, event kind and day, fully vectorised.

A day's usage comes from that day's own random stream and from state that no delivery can change
(who has signed up, who has joined, engagement, tenure, weekday). So a treated and an untreated
run draw exactly the same product events: they share their random numbers, and only the goal
milestone differs between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from closeloop.simulate.config import SimulationConfig
from closeloop.simulate.milestone import MICROSECONDS_PER_DAY, IntArray
from closeloop.simulate.population import Population, Stream, generator, seasonal_factor

_SATURDAY = 5


@dataclass(frozen=True)
class UsageEvents:
    """One day's product events, unsorted: parallel arrays of indexes and timestamps."""

    account: IntArray
    person: IntArray  # global person index
    kind: IntArray  # index into config.product_events
    timestamp_us: IntArray
    properties: IntArray  # index into property_palette(config); -1 for no properties

    @property
    def size(self) -> int:
        return len(self.account)

    def only(self, keep: npt.NDArray[np.bool_]) -> UsageEvents:
        """The events where ``keep`` is true (drawn first, filtered after, so draws stay put)."""
        return UsageEvents(
            self.account[keep],
            self.person[keep],
            self.kind[keep],
            self.timestamp_us[keep],
            self.properties[keep],
        )


def property_palette(config: SimulationConfig) -> tuple[list[str], list[int]]:
    """Every product event property JSON text, and where each event kind's values start."""
    palette: list[str] = []
    starts: list[int] = []
    for event in config.product_events:
        starts.append(len(palette))
        palette.extend(json.dumps({event.property_name: value}) for value in event.property_values)
    return palette, starts


def usage_events(
    config: SimulationConfig,
    population: Population,
    day_index: int,
    active: int,
    joined: IntArray,
) -> UsageEvents:
    """The product events of accounts ``0..active-1`` on day ``day_index`` of the simulation.

    ``joined`` holds, per account, how many of its people had joined before this day started; on
    its signup day only the admin is active.
    """
    day = date.fromordinal(config.start.toordinal() + day_index)
    day_start = int(np.datetime64(day, "us").astype(np.int64))
    day_end = day_start + MICROSECONDS_PER_DAY
    rng = generator(config.seed, Stream.ACTIVITY, day_index)
    rates = np.array([e.daily_rate_per_person for e in config.product_events], dtype=np.float64)
    if active == 0 or len(rates) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return UsageEvents(empty, empty, empty, empty, empty)

    created = population.created_us[:active]
    segment_activity = np.array([s.activity for s in config.segments])[population.segment[:active]]
    people = np.maximum(joined[:active], 1)
    tenure_days = np.maximum(day_start - created, 0) / MICROSECONDS_PER_DAY
    decay = config.activity_floor + (1.0 - config.activity_floor) * np.exp(
        -tenure_days / config.activity_decay_days
    )
    weekday = config.weekend_activity if day.weekday() >= _SATURDAY else 1.0
    weekday *= float(seasonal_factor(config, day.timetuple().tm_yday))
    first_moment = np.maximum(created, day_start)
    alive = (day_end - first_moment) / MICROSECONDS_PER_DAY  # below 1 on the signup day only
    intensity = segment_activity * population.engagement[:active] * people * decay * weekday * alive
    counts = rng.poisson(intensity[:, None] * rates[None, :])

    flat = counts.ravel()
    cells = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    account = cells // len(rates)
    kind = cells % len(rates)
    total = len(cells)
    lower = first_moment[account]
    timestamp = lower + np.floor(rng.random(total) * (day_end - lower)).astype(np.int64)
    person = population.first_person[account] + np.floor(
        rng.random(total) * people[account]
    ).astype(np.int64)
    _, starts = property_palette(config)
    value_counts = np.array([len(e.property_values) for e in config.product_events])
    choice = np.floor(rng.random(total) * value_counts[kind]).astype(np.int64)
    properties = np.where(value_counts[kind] > 0, np.array(starts)[kind] + choice, -1)
    return UsageEvents(
        account=account,
        person=person,
        kind=kind,
        timestamp_us=timestamp,
        properties=properties.astype(np.int64),
    )
