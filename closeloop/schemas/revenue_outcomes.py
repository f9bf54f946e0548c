"""Revenue outcomes: MRR movements, NRR, GRR, churn rates, ARPA, CLV and expansion by source.

Every policy choice is a switch (an enum, in :mod:`closeloop.schemas.options`) with a default;
docs/metrics.md ``## Revenue`` defines each metric and switch and a test checks that every one is
named there.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.options import DEFAULT_GROSS_MARGIN as DEFAULT_GROSS_MARGIN
from closeloop.schemas.options import DEFAULT_MATCH_DAYS as DEFAULT_MATCH_DAYS
from closeloop.schemas.options import ChurnAt as ChurnAt
from closeloop.schemas.options import ChurnDenominator as ChurnDenominator
from closeloop.schemas.options import FreeDowngrade as FreeDowngrade
from closeloop.schemas.options import NewAndChurned as NewAndChurned
from closeloop.schemas.options import PausedPolicy as PausedPolicy
from closeloop.schemas.options import ReactivationGap as ReactivationGap
from closeloop.schemas.options import RevenueMethod as RevenueMethod
from closeloop.schemas.options import RevenuePeriod as RevenuePeriod


class RevenuePolicy(Schema):
    """The switches a result was computed with (each with its default)."""

    method: RevenueMethod = RevenueMethod.endpoint
    churn_at: ChurnAt = ChurnAt.period_end
    reactivation_gap: ReactivationGap = ReactivationGap.any
    new_and_churned: NewAndChurned = NewAndChurned.exclude
    free_downgrade: FreeDowngrade = FreeDowngrade.churn
    paused: PausedPolicy = PausedPolicy.zero
    churn_denominator: ChurnDenominator = ChurnDenominator.start
    gross_margin: float = Field(
        DEFAULT_GROSS_MARGIN, ge=0, le=1, description="gross margin used by CLV (0..1)"
    )
    match_days: int = Field(
        DEFAULT_MATCH_DAYS,
        ge=0,
        le=3650,
        description="an expansion is explained by a won expansion opportunity closed at most "
        "this many days before it",
    )


class ExpansionBySource(Schema):
    source: str = Field(description="cs_sourced, cs_influenced, sales, marketing or unattributed")
    expansion_mrr: float
    movements: int = Field(ge=0, description="expansion movements attributed to this source")


class RevenueRow(Schema):
    """The revenue figures of one period (and one group of accounts, when grouped)."""

    period_start: date
    period_end: date = Field(description="exclusive")
    group: str | None = Field(
        description="the value of the --by attribute as of the window start; null: all accounts"
    )
    starting_accounts: int
    new_accounts: int
    reactivated_accounts: int
    churned_accounts: int
    ending_accounts: int
    starting_mrr: float
    new_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float
    reactivation_mrr: float
    ending_mrr: float
    nrr: Number
    grr: Number
    customer_churn_rate: Number
    gross_mrr_churn_rate: Number
    net_mrr_churn_rate: Number
    arpa: Number
    clv: Number
    expansion_by_source: list[ExpansionBySource]


class RevenueOutcomes(Schema):
    """``closeloop outcomes revenue``: the window's figures, and per period and/or group."""

    start: date
    end: date = Field(description="exclusive")
    by: str | None
    period: RevenuePeriod | None
    policy: RevenuePolicy
    total: RevenueRow
    rows: list[RevenueRow] = Field(
        description="per period (--period), per group (--by) or per period and group (both)"
    )
