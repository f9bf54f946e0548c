"""Clocks: the engine asks a clock for "now", so the same code runs live and in simulated time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, naive UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


class SimulatedClock:
    """Time that moves only when told to (backfills, the simulator, tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError(f"a simulated clock cannot go back from {self._now} to {moment}")
        self._now = moment
