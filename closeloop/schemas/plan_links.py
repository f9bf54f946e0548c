"""The customer's read-only links to a success plan: what ``closeloop plans share|links|unshare
--format json`` prints and ``/api/plans/{id}/links`` answers (docs/success-plans.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.plans import Milestone, ObjectiveStatus

LinkState = Literal["active", "expired", "revoked"]


class PlanLinkInfo(Schema):
    """A link as the state store holds it (never the token: only its SHA-256 is stored)."""

    id: int
    plan_id: int = Field(description="the plan the link opens")
    account_id: str = Field(description="the account the link is bound to")
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    last_opened_at: datetime | None = Field(description="when the customer last opened it")
    state: LinkState = Field(description="active, expired or revoked, as of now")


class CreatedPlanLink(PlanLinkInfo):
    """A new link: its path is shown once (the token in it is stored only hashed)."""

    path: str = Field(description="/shared/plans/TOKEN: prefix the dashboard's address")
    url: str | None = Field(
        default=None, description="the full address, when the surface knows its own"
    )


class PlanLinkList(Schema):
    """The links of one plan (or of every plan), newest first."""

    links: list[PlanLinkInfo]


class PlanLinkRequest(Schema):
    """The body of ``POST /api/plans/{id}/links``."""

    expires_days: float = Field(
        default=30.0, gt=0, le=366, description="days until the link stops working"
    )


class SharedRenegotiation(Schema):
    """A target agreed anew, as the customer sees it (who recorded it internally is left out)."""

    old_target: float
    old_target_date: date
    new_target: float
    new_target_date: date
    reason: str
    agreed_by: str
    agreed_at: datetime


class SharedObjective(Schema):
    """An objective as the customer sees it: no measure expression, owner or internal actors."""

    title: str
    baseline: float
    target: float
    target_date: date
    original_target: float
    original_target_date: date
    status: ObjectiveStatus
    met_at: datetime | None
    latest_value: Number
    latest_observed_at: datetime | None
    progress: Number
    milestones: list[Milestone]
    renegotiations: list[SharedRenegotiation]


class SharedPlanView(Schema):
    """The plan the link opens, read-only, with statuses as of ``as_of``."""

    title: str
    account_id: str
    updated_at: datetime
    as_of: datetime
    objectives: list[SharedObjective]


class SharedPlan(Schema):
    """What the customer's page shows: the plan, or why it cannot be shown.

    ``expired`` and ``revoked`` answer 410; ``not_found`` (a forged, altered or unknown link,
    one signed by another project, or a plan since deleted) answers 404."""

    status: Literal["ok", "expired", "revoked", "not_found"]
    plan: SharedPlanView | None = None
    expires_at: datetime | None = None
