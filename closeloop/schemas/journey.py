"""The journey: where accounts stand in a stage, and the signals that say who needs attention.

``closeloop stage NAME --format json`` and ``GET /api/stages/{name}`` return :class:`StageView`;
``closeloop signals --format json`` and ``GET /api/signals`` return :class:`Signals`. Days are
fractional days; a quantile the Kaplan–Meier curve never reaches is null. docs/stages.md says what
each number means and how it is computed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.definitions import StageCount
from closeloop.schemas.options import SignalKind as SignalKind

__all__ = [
    "AccountClass",
    "ClassThresholds",
    "CompletionSequence",
    "ObjectiveChange",
    "ObjectiveView",
    "Signal",
    "SignalAccount",
    "SignalJobRequest",
    "SignalKind",
    "Signals",
    "StageAccount",
    "StageChange",
    "StageView",
    "WindowCounts",
]


class AccountClass(StrEnum):
    AHEAD = "ahead"
    ON_TRACK = "on_track"
    BEHIND = "behind"
    STUCK = "stuck"


class WindowCounts(Schema):
    """What happened in the window (as_of - days, as_of]."""

    days: float = Field(gt=0)
    entered: int = Field(ge=0)
    completed: int = Field(ge=0, description="completed every objective in the window")
    exited: int = Field(ge=0, description="left without completing in the window")


class ObjectiveView(Schema):
    """One objective: who completed it and how long it takes, censoring-aware."""

    name: str
    count: int = Field(
        ge=0,
        description="entrants that completed it while in the stage, by as_of (undated "
        "objectives: completed by as_of); count + censored = entered",
    )
    completed_after_exit: int = Field(
        ge=0, description="entrants that completed it only after leaving the stage, by as_of"
    )
    entered: int = Field(ge=0, description="accounts that entered the stage by as_of")
    completion_rate: Number = Field(description="count / entered; null with no entrants")
    median_days: Number = Field(
        description="Kaplan–Meier median days from entry to completion; null when fewer than "
        "half are known to have completed (too many still in progress)"
    )
    p75_days: Number = Field(description="Kaplan–Meier 75th percentile; null likewise")
    censored: int = Field(
        ge=0, description="entrants not (yet) completed in the stage: censored at exit or as_of"
    )
    completer_median_days: Number = Field(
        description="median days to complete among those who completed (orders the objectives)"
    )
    dated: bool = Field(
        description="whether completion can be dated; if not, no times and never due (warning)"
    )
    ahead_days: Number = Field(description="q(ahead): done before this day is ahead")
    behind_days: Number = Field(description="q(behind): missing after this day is due")
    stuck_days: Number = Field(description="q(stuck): missing after this day is overdue")


class CompletionSequence(Schema):
    objectives: list[str] = Field(description="objectives in the order they were completed")
    accounts: int = Field(ge=0)


class ClassThresholds(Schema):
    """The quantiles that cut the classes, and the days without progress of ``stuck``."""

    ahead: float
    behind: float
    stuck: float
    stuck_days: float


class StageAccount(Schema):
    """An account in the stage now."""

    account_id: str
    name: str | None
    owner: str | None
    arr: Number
    days_in_stage: float
    objectives_done: list[str]
    objectives_missing: list[str]
    days_since_progress: float = Field(
        description="days since the last objective completion, else since entry"
    )
    account_class: AccountClass = Field(alias="class")
    reason: str


class ObjectiveChange(Schema):
    name: str
    completion_rate_before: Number
    completion_rate_now: Number
    completion_rate_change: Number
    median_days_before: Number
    median_days_now: Number
    median_days_change: Number


class StageChange(Schema):
    """The same stage as of ``since`` and as of ``as_of``: did it move after a job?"""

    since: datetime
    in_stage_before: int = Field(ge=0)
    in_stage_now: int = Field(ge=0)
    in_stage_change: int
    objectives: list[ObjectiveChange]


class StageView(Schema):
    """Where accounts stand in a stage as of a time."""

    name: str
    as_of: datetime
    in_stage: int = Field(ge=0, description="accounts in the stage now")
    entered: int = Field(ge=0, description="accounts that entered it (ever, by as_of)")
    completed: int = Field(ge=0)
    exited: int = Field(ge=0, description="accounts that left it without completing")
    window: WindowCounts
    objectives: list[ObjectiveView] = Field(default_factory=list)
    typical_order: list[str] = Field(
        default_factory=list,
        description="objectives by median completion time among completers (never completed last)",
    )
    sequences: list[CompletionSequence] = Field(
        default_factory=list, description="the most common completion orders"
    )
    markers: list[StageCount] = Field(
        default_factory=list, description="per marker, the accounts in the stage that meet it"
    )
    thresholds: ClassThresholds
    accounts: list[StageAccount] | None = Field(
        default=None, description="every account in the stage (with --accounts)"
    )
    since: StageChange | None = Field(default=None, description="with --since")
    warnings: list[str] = Field(default_factory=list, description="stale data")


class SignalAccount(Schema):
    account_id: str
    name: str | None
    owner: str | None
    arr: Number
    detail: str


class Signal(Schema):
    """The accounts one rule flags; ``rule`` is an expression, usable as a job's audience."""

    id: str = Field(description="stable: kind, or slow_completer:STAGE:OBJECTIVE")
    kind: SignalKind
    rule: str
    description: str
    count: int = Field(ge=0)
    arr_at_risk: float = Field(ge=0, description="sum of the flagged accounts' ARR")
    accounts: list[SignalAccount]


class Signals(Schema):
    as_of: datetime
    count: int = Field(ge=0, description="signals with at least one account")
    signals: list[Signal]
    warnings: list[str] = Field(default_factory=list)


class SignalJobRequest(Schema):
    """The body of ``POST /api/signals/{id}/job`` (both optional)."""

    name: str | None = Field(
        default=None, min_length=1, max_length=120, description="default: from the signal"
    )
    at: datetime | None = Field(default=None, description="the signal as of this time; now")
