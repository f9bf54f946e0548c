"""The CS team: routine CSM activities, QBRs, and the calls a Slack alert sets off.

- **Routine activities** (emails, calls, meetings, trainings) arrive as a Poisson count per active
  account and day with mean ``csm_touches_per_month / 30`` (a twentieth of that at weekends), so
  larger segments get most of the attention. Each is logged by the account's owner, with one of
  the people who have joined, during working hours.
- **QBRs**: accounts of segments with ``qbr_every_days`` get one every that many days after signup.
- **Reach-outs**: a Slack alert about an account makes its CSM call it (with probability
  ``reach_out_probability``, after an exponential delay of mean ``reach_out_mean_days``); the call
  is an activity, and it is the call, not the alert, that changes the customer's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from closeloop.simulate.config import SimulationConfig
from closeloop.simulate.milestone import MICROSECONDS_PER_DAY, NEVER, IntArray
from closeloop.simulate.population import BoolArray, Population, Stream, generator

ACTIVITY_KINDS = ("email", "call", "meeting", "training")
_KIND_WEIGHTS = np.array([0.45, 0.3, 0.2, 0.05])
_NOTES = {
    "email": "Shared best practices for the team's next steps.",
    "call": "Check-in call: reviewed usage and open questions.",
    "meeting": "Working session on the rollout plan.",
    "training": "Trained new users on dashboards and alerts.",
    "qbr": "Quarterly business review: goals, usage and the road ahead.",
    "reach_out": "Reached out after a Slack alert from closeloop.",
}
_WEEKEND_SHARE = 0.05
_SATURDAY = 5


@dataclass
class _Queued:
    timestamp_us: list[int] = field(default_factory=list)
    account: list[int] = field(default_factory=list)
    note: list[str] = field(default_factory=list)


class CsmTeam:
    """The owners' activities, advanced one day at a time; ``last_us`` is each account's latest."""

    def __init__(self, config: SimulationConfig, population: Population) -> None:
        self.config = config
        self.population = population
        self.rate = (
            np.array([s.csm_touches_per_month for s in config.segments])[population.segment] / 30.0
        )
        qbr = np.array([s.qbr_every_days for s in config.segments], dtype=np.int64)
        self.qbr_every = qbr[population.segment]
        created_day = np.floor_divide(population.created_us, MICROSECONDS_PER_DAY)
        self.next_qbr = np.where(self.qbr_every > 0, created_day + self.qbr_every, NEVER)
        self.last_us = np.full(population.size, NEVER, dtype=np.int64)
        self.reach_outs = _Queued()
        self.start_day = config.start.toordinal() - date(1970, 1, 1).toordinal()

    def reach_out(self, row: int, at_us: int) -> None:
        """The owner of account ``row`` calls it at ``at_us`` (in the future)."""
        self.reach_outs.timestamp_us.append(at_us)
        self.reach_outs.account.append(row)
        self.reach_outs.note.append(_NOTES["reach_out"])

    def day(
        self,
        day_index: int,
        signed_up: int,
        joined: IntArray,
        active: BoolArray,
        account_ids: pa.Array,
        person_ids: pa.Array,
        schema: pa.Schema,
    ) -> pa.Table:
        """Every activity of day ``day_index``, in time order."""
        config, population = self.config, self.population
        today = self.start_day + day_index
        day_start = today * MICROSECONDS_PER_DAY
        rng = generator(config.seed, Stream.CSM, day_index)
        weekday = date.fromordinal(config.start.toordinal() + day_index).weekday()
        factor = _WEEKEND_SHARE if weekday >= _SATURDAY else 1.0
        counts = rng.poisson(self.rate[:signed_up] * factor)
        routine = np.repeat(np.arange(signed_up, dtype=np.int64), counts)
        kind = rng.choice(len(ACTIVITY_KINDS), size=len(routine), p=_KIND_WEIGHTS)
        hour = rng.random(len(routine))
        people = np.maximum(joined[routine], 1)
        person = population.first_person[routine] + np.floor(
            rng.random(len(routine)) * people
        ).astype(np.int64)
        keep = active[routine]
        routine, kind, hour, person = routine[keep], kind[keep], hour[keep], person[keep]

        qbr = np.flatnonzero(self.next_qbr == today)
        self.next_qbr[qbr] += self.qbr_every[qbr]
        qbr = qbr[active[qbr]]

        queued = self.reach_outs
        due = [i for i, t in enumerate(queued.timestamp_us) if t < day_start + MICROSECONDS_PER_DAY]
        called = np.array([queued.account[i] for i in due], dtype=np.int64)
        called_at = np.array([queued.timestamp_us[i] for i in due], dtype=np.int64)
        done = set(due)
        for name in ("timestamp_us", "account", "note"):
            values = getattr(queued, name)
            setattr(queued, name, [v for i, v in enumerate(values) if i not in done])
        keep_called = active[called] if len(called) else np.zeros(0, dtype=np.bool_)
        called, called_at = called[keep_called], called_at[keep_called]

        working = day_start + np.floor((8.0 + 10.0 * hour) / 24.0 * MICROSECONDS_PER_DAY)
        # On the signup day the work happens after the signup, within what is left of the day.
        created = population.created_us[routine]
        late = created > day_start
        working = np.where(
            late, created + np.floor(hour * (day_start + MICROSECONDS_PER_DAY - created)), working
        )
        account = np.concatenate([routine, qbr, called])
        timestamp = np.concatenate(
            [
                working.astype(np.int64),
                np.full(len(qbr), day_start + 10 * 3_600_000_000, dtype=np.int64),
                called_at,
            ]
        )
        kinds = [ACTIVITY_KINDS[k] for k in kind] + ["qbr"] * len(qbr) + ["call"] * len(called)
        notes = (
            [_NOTES[ACTIVITY_KINDS[k]] for k in kind]
            + [_NOTES["qbr"]] * len(qbr)
            + [_NOTES["reach_out"]] * len(called)
        )
        person_index = np.concatenate(
            [person, population.first_person[qbr], population.first_person[called]]
        )
        order = np.argsort(timestamp, kind="stable")
        latest = np.where(self.last_us == NEVER, -1, self.last_us)
        np.maximum.at(latest, account, timestamp)
        self.last_us = np.where(latest < 0, NEVER, latest)
        count = len(order)
        numbers = pc.cast(pa.array(np.arange(count, dtype=np.int64)), pa.string())
        day = date.fromordinal(config.start.toordinal() + day_index)
        owners = [config.owners[int(population.owner[a])] for a in account[order]]
        return pa.table(
            {
                "activity_id": pc.binary_join_element_wise(
                    f"act_{day:%Y%m%d}_", pc.utf8_lpad(numbers, 6, "0"), ""
                ),
                "account_id": account_ids.take(pa.array(account[order], pa.int64())),
                "person_id": person_ids.take(pa.array(person_index[order], pa.int64())),
                "owner": pa.array(owners, pa.string()),
                "kind": pa.array([kinds[i] for i in order], pa.string()),
                "occurred_at": pa.array(timestamp[order], pa.int64()).cast(pa.timestamp("us")),
                "notes": pa.array([notes[i] for i in order], pa.string()),
                "properties": pa.nulls(count, pa.string()),
            },
            schema=schema,
        )
