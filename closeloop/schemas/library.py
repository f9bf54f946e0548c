"""The intervention library: every job ever run, what it did and what it caused.

``closeloop library --format json`` and ``GET /api/library`` return a :class:`Library`.
Lifts are absolute differences of completion rates against the holdout; a lift that could not
be measured is ``null``.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema

POOLED_ARM = "treatment"  # the variants pooled, as the job report names them


class SortKey(StrEnum):
    """How the library is ordered."""

    EFFECT = "effect"  # largest lift first (the segment's with a segment filter), unknown last
    N = "n"  # most enrollments first
    STARTED = "started"  # most recently launched first
    NAME = "name"


class VariantSend(Schema):
    """An action a variant takes, ``day`` days after entry (later ones only if not completed):
    an email's subject and template, or another kind's gist (a Slack text, a webhook URL, …)."""

    day: float
    subject: str
    template: str
    channel: str = "email"


class VariantSummary(Schema):
    name: str
    weight: float
    sends: list[VariantSend]


class ArmEffect(Schema):
    """An absolute completion lift against the holdout."""

    arm: str = Field(description="treatment (the variants pooled) or a variant's name")
    estimate: Number
    lower: Number
    upper: Number
    relative: Number = Field(description="the lift relative to the holdout's rate")
    p_value: Number
    status: str


class SegmentEffect(Schema):
    """A segment's lift, with the multiplicity-adjusted p-value and interval; ``small`` segments
    are flagged, not ranked."""

    column: str
    segment: str
    arm: str
    n_treated: int
    n_holdout: int
    estimate: Number
    lower: Number
    upper: Number
    adjusted_lower: Number = Field(description="false-coverage-rate adjusted interval")
    adjusted_upper: Number
    p_value: Number
    p_value_bh: Number = Field(description="Benjamini–Hochberg adjusted p-value")
    small: bool
    status: str


class LibraryEntry(Schema):
    """One job ever run: its definition's gist, timing, counts and effects."""

    name: str
    definition_source: Literal["project", "history"] = Field(
        description="history: the job is no longer in the project; its recorded definition is used"
    )
    version: int = Field(description="the version the job runs at")
    versions: int = Field(description="versions recorded; more than one: the definition changed")
    target: str
    goal: str
    audience: str
    exclusions: list[str]
    horizon_days: Number
    holdout: float
    variants: list[VariantSummary]
    launched_at: datetime
    last_tick: datetime | None
    enrolled: int
    matured: int
    status: str = Field(
        description="the report's status, not_measured (no enrollments yet) or error"
    )
    effect: ArmEffect | None = Field(description="the variants pooled against the holdout")
    variant_effects: list[ArmEffect]
    segments: list[SegmentEffect]
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None

    def segment_effect(self, segment: str) -> SegmentEffect | None:
        """The pooled (all variants) lift in ``segment``, if the job has that segment."""
        for row in self.segments:
            if row.segment == segment and row.arm == POOLED_ARM:
                return row
        return None

    def headline_effect(self, segment: str | None = None) -> float:
        """The lift that ranks the entry: the segment's pooled lift with a segment, else the
        job's (``nan`` when unknown)."""
        if segment is not None:
            row = self.segment_effect(segment)
            value = row.estimate if row is not None else None
        else:
            value = self.effect.estimate if self.effect is not None else None
        return value if value is not None else math.nan

    def headline_status(self, segment: str | None = None) -> str:
        if segment is not None:
            row = self.segment_effect(segment)
            return row.status if row is not None else "not_measured"
        return self.status


class Library(Schema):
    """The jobs that match the filters, in the requested order."""

    count: int = Field(ge=0, description="how many jobs match the filters, over all pages")
    jobs: list[LibraryEntry] = Field(
        description="the matching jobs from the requested offset (all of them by default)"
    )
