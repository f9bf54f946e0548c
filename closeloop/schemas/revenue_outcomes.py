"""Revenue outcomes: MRR movements, NRR, GRR, churn rates, ARPA, CLV and expansion by source.

Every policy choice is a switch (an enum below) with a default; docs/metrics.md ``## Revenue``
defines each metric and switch and a test checks that every one is named there.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from closeloop.schemas.base import Number, Schema


class RevenueMethod(StrEnum):
    """``endpoint``: compare each account's MRR just before the period with its MRR on the
    period's last day. ``event``: every change of an account's MRR inside the period counts."""

    endpoint = "endpoint"
    event = "event"


class ChurnAt(StrEnum):
    """When lost MRR is recognised: at the end of the paid period (``end_date``) or on the
    cancellation date found in a row's ``properties`` (``cancelled_at``/``canceled_at``)."""

    period_end = "period_end"
    cancellation = "cancellation"


class ReactivationGap(StrEnum):
    """A return after ``any`` gap is a reactivation; with ``month`` only after at least one
    full calendar month at zero (a shorter gap is bridged: no churn, no reactivation)."""

    any = "any"
    month = "month"


class NewAndChurned(StrEnum):
    """Accounts that join and churn within the same period: ``exclude``d from every movement
    and count of that period, or ``include``d (counted as new and as churned)."""

    exclude = "exclude"
    include = "include"


class FreeDowngrade(StrEnum):
    """A paying account left with only free (mrr 0) rows: ``churn`` or ``contraction``."""

    churn = "churn"
    contraction = "contraction"


class PausedPolicy(StrEnum):
    """Paused rows (``properties`` status ``paused``): ``zero`` MRR, or their accounts
    ``exclude``d from every figure."""

    zero = "zero"
    exclude = "exclude"


class ChurnDenominator(StrEnum):
    """Customer churn rate divided by customers at the ``start``, or ``start_plus_new``."""

    start = "start"
    start_plus_new = "start_plus_new"


class RevenuePeriod(StrEnum):
    month = "month"
    quarter = "quarter"


DEFAULT_GROSS_MARGIN = 0.8
DEFAULT_MATCH_DAYS = 30


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
