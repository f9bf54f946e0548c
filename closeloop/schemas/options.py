"""The choices and defaults of the public surfaces' options (CLI, API, pages), with no pydantic.

The result models that carry these values import them from here; the CLI builds its options
from this module alone, so that ``closeloop --help`` loads no model. Each enum's docstring is
the switch's definition (docs/metrics.md names every one).
"""

from __future__ import annotations

from enum import StrEnum

# -- revenue outcomes (closeloop.schemas.revenue_outcomes) ---------------------------------------


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


# -- adoption (closeloop.schemas.adoption) -------------------------------------------------------

DEFAULT_WINDOW_DAYS = 30
DEFAULT_DROP_THRESHOLD = 0.4
DEFAULT_DROP_WINDOW_DAYS = 60

# -- voice of the customer and the divergence alert (closeloop.schemas.voc) ----------------------

DEFAULT_COMMENTS = 20
DEFAULT_PERIODS = 12
DEFAULT_NPS_MIN_RISE = 5.0  # NPS points per year
DEFAULT_CSAT_MIN_RISE = 2.0  # CSAT percentage points per year
DEFAULT_NRR_MAX_CHANGE = 0.0  # NRR percentage points per year: at or below is flat or falling
DEFAULT_ALPHA = 0.05

# -- the churn review (closeloop.schemas.churn_review) -------------------------------------------

DEFAULT_LOOKBACK_DAYS = 180  # days of health history shown before each churn

# -- journey signals (closeloop.schemas.journey) -------------------------------------------------


class SignalKind(StrEnum):
    SLOW_COMPLETER = "slow_completer"
    USAGE_DROP = "usage_drop"
    RENEWAL_RISK = "renewal_risk"


# -- who may do what (closeloop.schemas.tokens, closeloop.schemas.users) -------------------------


class Role(StrEnum):
    """What a token may do. Each role includes the ones below it, except ``ingest``, which may
    only write events (Segment-compatible ingestion and file uploads) and read nothing."""

    admin = "admin"  # everything, including tokens
    editor = "editor"  # create and edit jobs, launch, pause, stop, remove accounts, dispatch
    viewer = "viewer"  # read every resource and report
    ingest = "ingest"  # write events only


class UserRole(StrEnum):
    """A person's role on the dashboard: the API token roles without ``ingest``."""

    admin = "admin"
    editor = "editor"
    viewer = "viewer"
