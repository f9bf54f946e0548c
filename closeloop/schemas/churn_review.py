"""The churn post-mortem: every churned account in a window with its reason, where it stalled,
its health on the way out, the jobs it was in (with their measured effects) and its success plans,
grouped by reason (``closeloop churn review``, ``GET /api/churn/review``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.health import HealthPoint
from closeloop.schemas.library import ArmEffect
from closeloop.schemas.plans import Plan


class StagePosition(Schema):
    """Where the account stood in one stage when it churned (times after the churn ignored)."""

    stage: str
    entered_at: datetime
    state: Literal["completed", "in_stage", "exited_incomplete"]
    days_in_stage: Number = Field(description="from entry to the exit, else to the churn")
    objectives_done: list[str]
    objectives_missing: list[str]


class JobExposure(Schema):
    """An enrollment the account had before it churned, with its job's measured effect."""

    job: str
    job_version: int
    arm: str = Field(description="holdout, or the variant the account was assigned")
    entered_at: datetime
    reached_goal_at: datetime | None = Field(description="null: it never reached the job's goal")
    exited_at: datetime | None
    exit_reason: str | None
    job_status: str = Field(description="the job's measured status (library), or not_measured")
    effect: ArmEffect | None = Field(description="the job's pooled lift against its holdout")


class ChurnedAccount(Schema):
    """One churn with everything known about the account on its way out."""

    churn_id: str
    account_id: str
    name: str | None
    owner: str | None
    segment: str | None
    churned_at: datetime
    reason: str
    controllable: bool | None = Field(description="null: the flag was not given")
    notes: str | None
    mrr_lost: float = Field(description="MRR of the subscriptions running the day before")
    stalled_stage: StagePosition | None = Field(
        description="the latest stage it entered and had not completed when it churned"
    )
    stages: list[StagePosition] = Field(description="every stage it had entered, oldest first")
    health: list[HealthPoint] = Field(
        description="its health snapshots over the look-back before the churn, by score then day"
    )
    health_change: Number = Field(
        description="the first health score's last snapshot minus its first in the look-back; "
        "null: fewer than two snapshots"
    )
    jobs: list[JobExposure]
    plans: list[Plan] = Field(
        description="its success plans as they stood when it churned (statuses as of the churn)"
    )

    def first_score_health(self) -> list[HealthPoint]:
        """The snapshots of the first health score shown (the one ``health_change`` is of)."""
        if not self.health:
            return []
        return [point for point in self.health if point.score_name == self.health[0].score_name]


class StageStall(Schema):
    stage: str
    accounts: int = Field(ge=0)


class ReasonGroup(Schema):
    """The churns with one reason (and controllable flag)."""

    reason: str
    controllable: bool | None
    churns: int = Field(ge=0)
    mrr_lost: float
    stalled: list[StageStall] = Field(description="accounts per stage they stalled in")
    never_in_a_job: int = Field(ge=0, description="accounts enrolled in no job before churning")
    treated: int = Field(ge=0, description="accounts that received a job's treatment (not holdout)")
    with_plan: int = Field(ge=0, description="accounts with a success plan")
    plan_objectives_met: int = Field(ge=0)
    plan_objectives_due: int = Field(ge=0, description="met, missed, or due by the churn")
    accounts: list[ChurnedAccount]


class ChurnReview(Schema):
    """Every churn with ``churned_at`` in ``[start, end)``, grouped by reason, most churns first."""

    start: datetime
    end: datetime
    lookback_days: int = Field(ge=1, description="how far before each churn health is shown")
    churns: int = Field(ge=0)
    mrr_lost: float
    controllable_churns: int = Field(ge=0)
    groups: list[ReasonGroup]
    warnings: list[str] = Field(default_factory=list)
