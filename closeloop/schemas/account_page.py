"""The account page: everything known about one account, one section per source.

Each section is the model its own surface returns (the API's account, timeline, enrollments and
outbox; ``closeloop health show``; ``closeloop plans``), so the page's JSON twin holds the same
numbers. A section that cannot be computed says why in ``unavailable`` instead of failing the page.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Page, Schema
from closeloop.schemas.health import AccountHealthReport
from closeloop.schemas.jobs import Enrollment, OutboxMessage
from closeloop.schemas.plans import Plan
from closeloop.schemas.resources import Account, TimelineItem


class SurveyResponse(Schema):
    """One NPS, CSAT or CES answer of the account's people."""

    response_id: str
    person_id: str | None
    kind: str = Field(description="nps, csat or ces")
    score: float
    scale_min: float
    scale_max: float
    comment: str | None
    responded_at: datetime


class AccountSurveys(Schema):
    total: int = Field(ge=0, description="every answer of the account")
    responses: list[SurveyResponse] = Field(description="the newest answers")


class AccountDeliveries(Schema):
    total: int = Field(ge=0, description="every message to the account in the outbox")
    counts: dict[str, int] = Field(description="the account's messages by status")
    messages: list[OutboxMessage] = Field(description="the newest messages")


class AccountHealthSection(Schema):
    report: AccountHealthReport | None = None
    unavailable: str | None = Field(
        default=None, description="why no score is shown (no score defined, no data)"
    )


class AccountPage(Schema):
    """``/accounts/{account_id}``: attributes and revenue, timeline, jobs, deliveries, surveys,
    health with its explanation, success plans."""

    account: Account
    as_of: datetime
    timeline: Page[TimelineItem]
    enrollments: Page[Enrollment]
    deliveries: AccountDeliveries
    surveys: AccountSurveys
    health: AccountHealthSection
    plans: list[Plan]
