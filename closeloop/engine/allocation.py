"""Adaptive allocation among variants at a tick (``allocation: thompson``); the holdout stays fixed.

The hash bucket of (job salt, unit id) still decides holdout versus treated, so the holdout is
never adaptive and stays a valid control. Among treated units, each variant's share is its
posterior probability of having the best completion rate (``closeloop.stats.bandit``), computed
from the job's matured enrollments: those that entered at least the horizon (the hypothesis's
``horizon_days``, else ``duration_days``) before the tick, a success being a completion within
the horizon. The Monte Carlo seed comes from the salt and the tick time, so a tick is
reproducible; the shares are recorded in ``tick_allocations`` in the tick's transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from closeloop.definitions.project import LoadedJob
from closeloop.engine import schema
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.state import StateStore
from closeloop.stats.bandit import thompson_allocation
from closeloop.stats.statistics import ProportionStatistic


@dataclass(frozen=True)
class ArmShare:
    """One arm's share of the units entering at a tick, and the data it came from."""

    arm: str
    share: float  # of every unit entering at the tick, holdout included
    probability_best: float | None  # None for the holdout
    matured: int
    completed: int


@dataclass(frozen=True)
class TickAllocation:
    """The split one tick uses: the holdout first, then the variants in the job's order."""

    holdout: ArmShare
    variants: tuple[ArmShare, ...]

    def treated_weights(self) -> list[tuple[str, float]]:
        """(variant, weight) pairs for ``assign_variant``: the shares within the treated range."""
        return [(variant.arm, variant.share) for variant in self.variants]

    def rows(self, job_name: str, at: datetime) -> list[dict[str, Any]]:
        return [
            {
                "job_name": job_name,
                "at": at,
                "arm": arm.arm,
                "share": arm.share,
                "probability_best": arm.probability_best,
                "matured": arm.matured,
                "completed": arm.completed,
            }
            for arm in (self.holdout, *self.variants)
        ]


def horizon(job: LoadedJob) -> timedelta:
    """How long after entry an enrollment's outcome is known (``JobDefinition.horizon_days``)."""
    return timedelta(days=job.definition.horizon_days)


def allocation_seed(salt: str, at: datetime) -> int:
    """The Monte Carlo seed of a tick: fixed by the job's salt and the tick time."""
    digest = hashlib.sha256(f"{salt}|allocation|{at.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def thompson_tick_allocation(
    store: StateStore,
    job: LoadedJob,
    salt: str,
    holdout: float,
    at: datetime,
    pending_completions: Iterable[tuple[str, datetime, datetime]] = (),
) -> TickAllocation:
    """The split for the tick at ``at``.

    ``pending_completions`` are (arm, entered_at, completed_at) of completions this tick found
    but has not written yet, so the posterior sees everything known at ``at``.
    """
    window = horizon(job)
    cutoff = at - window
    matured, completed = _matured_outcomes(store, job.name, cutoff, window)
    for arm, entered_at, completed_at in pending_completions:
        if entered_at <= cutoff and completed_at <= entered_at + window:
            completed[arm] += 1
    names = [variant.name for variant in job.definition.variants]
    result = thompson_allocation(
        [ProportionStatistic(n=matured[name], successes=completed[name]) for name in names],
        seed=allocation_seed(salt, at),
    )
    treated = 1 - holdout
    return TickAllocation(
        holdout=ArmShare(HOLDOUT, holdout, None, matured[HOLDOUT], completed[HOLDOUT]),
        variants=tuple(
            ArmShare(name, treated * share, best, matured[name], completed[name])
            for name, share, best in zip(names, result.shares, result.probability_best, strict=True)
        ),
    )


def _matured_outcomes(
    store: StateStore, job_name: str, cutoff: datetime, window: timedelta
) -> tuple[Counter[str], Counter[str]]:
    """Per arm: enrollments that entered by ``cutoff``, and those of them completed in ``window``.

    Counting happens in SQL; only completed rows come back, because adding an interval to a
    timestamp is not portable between SQLite and PostgreSQL.
    """
    e = schema.enrollments
    matured_filter = (e.c.job_name == job_name, e.c.entered_at <= cutoff)
    with store.engine.connect() as connection:
        matured = Counter(
            {
                arm: count
                for arm, count in connection.execute(
                    sa.select(e.c.arm, sa.func.count()).where(*matured_filter).group_by(e.c.arm)
                )
            }
        )
        completed_rows = connection.execute(
            sa.select(e.c.arm, e.c.entered_at, e.c.completed_at).where(
                *matured_filter, e.c.completed_at.is_not(None)
            )
        )
        completed = Counter(
            arm
            for arm, entered_at, completed_at in completed_rows
            if completed_at <= entered_at + window
        )
    return matured, completed
