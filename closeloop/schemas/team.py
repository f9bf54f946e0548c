"""Team and relationship outcomes: activities per CSM and kind, contacts engaged, executive
sponsors and references, churn reasons with the controllable share, and a scorecard per CSM.

A CSM's *book* is the accounts whose ``by`` attribute named them at the window's start. Money is
in the currency of the subscriptions' ``mrr`` column (per month). A rate that does not exist
(nothing to divide by) is null; intervals are Wilson score intervals at ``confidence``.
docs/metrics.md ("Team") defines every field.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Number, Schema


class Share(Schema):
    """``successes`` of ``n``, their ratio and its Wilson score interval (null when n is 0)."""

    successes: int = Field(ge=0)
    n: int = Field(ge=0)
    rate: Number
    lower: Number
    upper: Number


class ActivityKind(Schema):
    """Activities one CSM (``activities.owner``) logged of one kind in the window."""

    owner: str
    kind: str
    activities: int = Field(ge=0)
    accounts_touched: int = Field(ge=0, description="distinct accounts these activities were on")
    accounts_managed: int = Field(ge=0, description="accounts in the owner's book")
    activities_per_account: Number = Field(description="activities / accounts_managed")


class ChurnReason(Schema):
    """Churns in the window with one reason and one controllable flag."""

    reason: str
    controllable: bool | None = Field(description="null: the flag was not given")
    churns: int = Field(ge=0)
    mrr_lost: float = Field(description="MRR the churned accounts had the day before churning")


class ChurnSummary(Schema):
    """Every churn in the window (``churn_reasons.churned_at`` in ``[start, end)``)."""

    churns: int = Field(ge=0)
    mrr_lost: float
    controllable_churns: int = Field(ge=0)
    controllable_mrr_lost: float
    unflagged_churns: int = Field(ge=0, description="churns whose controllable flag is null")
    controllable_share: Share = Field(
        description="controllable churns among those with the flag given"
    )
    controllable_mrr_share: Number = Field(
        description="controllable MRR lost / MRR lost of churns with the flag given"
    )
    reasons: list[ChurnReason]


class Scorecard(Schema):
    """One CSM's book: what CS can influence first, revenue beside it (never alone)."""

    csm: str
    accounts: int = Field(ge=0, description="accounts in the book")
    # relationship
    activities: int = Field(ge=0, description="activities the CSM logged in the window")
    activities_per_account: Number
    people: int = Field(ge=0, description="people of the book's accounts")
    engaged_people: int = Field(ge=0)
    contacts_engaged_per_account: Number
    engaged_people_share: Number
    engaged_accounts: int = Field(ge=0, description="accounts with at least one engaged person")
    sponsor_accounts: int = Field(ge=0)
    sponsor_share: Number
    reference_accounts: int = Field(ge=0)
    reference_share: Number
    # what CS can influence
    goals_achieved: int = Field(ge=0, description="job goals reached in the window (any arm)")
    goal_accounts: int = Field(ge=0, description="distinct accounts that reached them")
    nps: Number = Field(description="% promoters − % detractors, in points (−100..100)")
    nps_responses: int = Field(ge=0)
    csat: Share = Field(description="answers in the top two of the scale")
    controllable_churns: int = Field(ge=0)
    controllable_mrr_lost: float
    churns: int = Field(ge=0)
    treated_completion: Share = Field(
        description="descriptive: enrollments (any non-holdout arm) entered in the window that "
        "reached the goal by its end"
    )
    holdout_completion: Share = Field(description="descriptive: the same for holdout enrollments")
    completion_difference: Number = Field(
        description="descriptive, not a measured effect: treated rate − holdout rate"
    )
    # revenue, beside the rest
    starting_mrr: float = Field(description="the book's MRR on the window's first day")
    retained_mrr: float = Field(
        description="MRR on the window's last day of the accounts paying on its first"
    )
    nrr: Number = Field(description="retained_mrr / starting_mrr")


class TeamOutcomes(Schema):
    """``closeloop outcomes team`` and ``GET /api/outcomes/team``."""

    start: datetime
    end: datetime
    first_day: str = Field(description="the day the starting MRR is read on (ISO date)")
    last_day: str = Field(description="the day the retained MRR is read on (ISO date)")
    by: str = Field(description="the account attribute naming each account's CSM")
    sponsor_attribute: str
    reference_attribute: str
    confidence: float = Field(gt=0, lt=1, description="level of every Wilson interval")
    scorecards: list[Scorecard]
    activities: list[ActivityKind]
    churn: ChurnSummary
