"""A job's report (``closeloop report JOB --format json``, ``GET /api/jobs/{name}/report``).

The job's counts per arm and variant, its deliveries and versions, the verdict it leads with,
then its measurements in the format of docs/measure-format.md: the job as a whole (variants
pooled into ``treatment``) and, with variants, each variant on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Schema
from closeloop.schemas.measurement import (
    MatchedComparison,
    Measurement,
    SampleRatio,
    StatusName,
)
from closeloop.schemas.revenue import RevenueValue


class ArmCounts(Schema):
    """What the engine did with an arm's enrollments so far (matured or not)."""

    entered: int = Field(ge=0)
    completed: int = Field(ge=0)
    exited: int = Field(ge=0, description="left without completing")
    exited_by_reason: dict[str, int]
    active: int = Field(ge=0, description="still in the job")


class Guardrail(Schema):
    name: str
    state: Literal["ok", "harmed", "unknown"]
    detail: str


class Verdict(Schema):
    """The decision the report leads with (docs/methods.md, "The verdict")."""

    decision: Literal["ship", "keep_running", "stop", "review"]
    words: str = Field(description="the decision in words ('Ship it')")
    summary: str
    reasons: list[str]
    guardrails: list[Guardrail]
    impact: str | None = Field(description="the added ARR with its interval, when measured")


class LaunchPlan(Schema):
    """What the job was planned to detect at launch (tunes the always-valid results)."""

    units: float = Field(description="N*: the units planned over the job's duration")
    baseline: float | None = Field(description="the completion rate assumed")
    relative_effect: float | None = Field(description="the relative lift to detect")


class Deliveries(Schema):
    units: int = Field(ge=0, description="enrollments in the arm")
    units_reached: int = Field(ge=0, description="units with at least one sent message")
    messages: dict[str, int] = Field(description="messages by outbox status")


class VersionCount(Schema):
    version: int = Field(ge=1)
    enrollments: int = Field(ge=0)


class ValueOutcome(Schema):
    """The value measured besides completion: an event's value summed over the horizon."""

    event: str
    covariate_days: int = Field(ge=0, description="CUPED window before entry (0: none)")


class JobReport(Schema):
    job_name: str
    as_of: str = Field(description="ISO 8601 analysis time")
    horizon_days: float
    holdout_fraction: float
    status: StatusName = Field(description="the job's completion lift (matched without holdout)")
    verdict: Verdict | None
    plan: LaunchPlan | None
    warnings: list[str]
    arms: dict[str, ArmCounts] = Field(description="holdout and treatment (variants pooled)")
    deliveries: dict[str, Deliveries]
    versions: list[VersionCount]
    variants: dict[str, ArmCounts] = Field(description="each variant (empty without variants)")
    srm: SampleRatio | None = Field(description="the job's sample-ratio check")
    measurement: Measurement = Field(description="treatment (pooled) against the holdout")
    matched: MatchedComparison | None = Field(
        description="jobs without a holdout: against matched eligible accounts"
    )
    revenue_value: RevenueValue | None = Field(description="with subscriptions data")
    variant_measurement: Measurement | None = Field(
        description="each variant against the holdout, and pairwise"
    )
    value_outcome: ValueOutcome | None = Field(
        default=None, description="the value outcome measured, if any (added)"
    )
