"""Team and relationship outcomes, computed in the warehouse for a window ``[start, end)``.

A CSM's *book* is the accounts whose ``by`` attribute (default ``owner``) named them at the
window's start (the attribute history as of ``start``, else the stored value), among accounts
created before ``end``; accounts without a value form the book ``UNASSIGNED``. Every figure
below is a count or a sum per book fetched once from the warehouse (a row per CSM, per activity
kind or per churn reason); rates and intervals are made from those sums by the caller.

docs/metrics.md ("Team") states each definition; the names here are the ones it documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from closeloop.analysis.revenue import OPEN_END
from closeloop.data import history
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine.assignment import HOLDOUT
from closeloop.errors import NotFoundError

UNASSIGNED = "(unassigned)"
"""The book of accounts whose ``by`` attribute is empty, and the owner of unowned activities."""

DEFAULT_BY = "owner"
DEFAULT_SPONSOR_ATTRIBUTE = "executive_sponsor"
DEFAULT_REFERENCE_ATTRIBUTE = "reference"
TRUE_TEXTS = ("true", "yes", "y", "1")
"""A flag attribute is set when its value is JSON ``true`` or one of these texts (any case)."""

MONEY_DIGITS = 6

# Columns of ``accounts`` that are no attribute to group a book by.
_NOT_GROUPS = ("account_id", "properties", "created_at")


@dataclass(frozen=True)
class ActivityCount:
    owner: str
    kind: str
    activities: int
    accounts_touched: int


@dataclass(frozen=True)
class ChurnCount:
    reason: str
    controllable: bool | None
    churns: int
    mrr_lost: float


@dataclass(frozen=True)
class BookFigures:
    """Every sum of one CSM's book (see docs/metrics.md "Team" for each definition)."""

    csm: str
    accounts: int
    activities: int
    people: int
    engaged_people: int
    engaged_accounts: int
    sponsor_accounts: int
    reference_accounts: int
    starting_mrr: float
    retained_mrr: float
    goals_achieved: int
    goal_accounts: int
    nps_responses: int
    nps_promoters: int
    nps_detractors: int
    csat_responses: int
    csat_satisfied: int
    churns: int
    controllable_churns: int
    controllable_mrr_lost: float
    treated_units: int
    treated_completed: int
    holdout_units: int
    holdout_completed: int


@dataclass(frozen=True)
class TeamFigures:
    books: list[BookFigures]
    activities: list[ActivityCount]
    churn: list[ChurnCount]
    first_day: date
    last_day: date


def group_columns(warehouse: Warehouse) -> list[str]:
    """The account attributes a book can be defined by."""
    return [c for c in warehouse.table("accounts").columns if c not in _NOT_GROUPS]


def team_figures(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    *,
    by: str = DEFAULT_BY,
    sponsor_attribute: str = DEFAULT_SPONSOR_ATTRIBUTE,
    reference_attribute: str = DEFAULT_REFERENCE_ATTRIBUTE,
) -> TeamFigures:
    """The team's figures for ``[start, end)``; ``by`` names the account attribute holding the
    CSM. An unknown ``by`` raises :class:`NotFoundError` listing the attributes there are."""
    if by not in group_columns(warehouse):
        known = ", ".join(group_columns(warehouse))
        raise NotFoundError(
            f"accounts have no attribute {by!r} to group books by; they have: {known}"
        )
    first_day = start.date()
    last_day = (end - timedelta(microseconds=1)).date()
    book = _book(warehouse, start, end, by, sponsor_attribute, reference_attribute)
    start_at, end_at = ibis.literal(start, type="timestamp"), ibis.literal(end, type="timestamp")
    activities = _activities(warehouse, start_at, end_at)
    churns = churns_with_mrr_lost(warehouse, start_at, end_at)

    per_book = book.group_by("csm").aggregate(
        accounts=book.account_id.count(),
        sponsor_accounts=_count_if(book.sponsor),
        reference_accounts=_count_if(book.reference),
    )
    parts = [
        _activity_totals(activities),
        _contacts(warehouse, book, start_at, end_at),
        _revenue(warehouse, book, first_day, last_day),
        _goals(warehouse, book, start_at, end_at),
        _satisfaction(warehouse, book, start_at, end_at),
        _book_churn(book, churns),
        _arms(warehouse, book, start_at, end_at),
    ]
    joined = per_book
    for part in parts:
        joined = joined.left_join(part, "csm").select(joined, *(part[c] for c in part.columns[1:]))
    rows = joined.order_by("csm").to_pyarrow().to_pylist()
    books = [BookFigures(**_zero_filled(row)) for row in rows]

    by_kind = activities.group_by(["owner", "kind"]).aggregate(
        activities=activities.count(), accounts_touched=activities.account_id.nunique()
    )
    kinds = [
        ActivityCount(**row) for row in by_kind.order_by(["owner", "kind"]).to_pyarrow().to_pylist()
    ]
    reasons = churns.group_by(["reason", "controllable"]).aggregate(
        churns=churns.count(), mrr_lost=churns.mrr_lost.sum()
    )
    churn = sorted(
        (ChurnCount(**_money_rounded(row)) for row in reasons.to_pyarrow().to_pylist()),
        # The same order on every backend (they place nulls differently): unflagged last.
        key=lambda r: (-r.churns, r.reason, r.controllable is None, r.controllable is False),
    )
    return TeamFigures(books, kinds, churn, first_day, last_day)


def _count_if(condition: ir.BooleanValue) -> ir.IntegerScalar:
    """How many rows meet ``condition`` (a missing value does not); PostgreSQL cannot cast a
    boolean to a number, so each row counts through a CASE."""
    return ibis.ifelse(condition.fill_null(False), 1, 0).sum()


def _zero_filled(row: dict[str, Any]) -> dict[str, Any]:
    """A CSM with no row in a part (no activities, no enrollments) has zero of it."""
    return _money_rounded(
        {
            key: (0.0 if key.endswith("mrr") or key.endswith("mrr_lost") else 0)
            if value is None
            else value
            for key, value in row.items()
        }
    )


def _money_rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Sums of money to 1e-6: backends add floats in different orders, and equal data should
    give equal figures everywhere."""
    return {
        key: round(value, MONEY_DIGITS) if isinstance(value, float) else value
        for key, value in row.items()
    }


def _flag(accounts: ir.Table, name: str) -> ir.BooleanValue:
    """An account flag: a column of ``accounts`` if there is one, else a key of ``properties``."""
    if name in accounts.columns and name != "properties":
        text = accounts[name].cast("string").lower()
    else:
        value = accounts.properties.cast("json")[name]
        as_bool = value.unwrap_as("boolean")
        text = ibis.ifelse(
            as_bool.isnull(), value.unwrap_as("string").lower(), as_bool.cast("string").lower()
        )
    return text.isin(list(TRUE_TEXTS)).fill_null(False)


def _book(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    by: str,
    sponsor_attribute: str,
    reference_attribute: str,
) -> ir.Table:
    accounts = warehouse.table("accounts")
    accounts = history.as_of(warehouse, "account", accounts, start, key="account_id")
    accounts = accounts.filter(accounts.created_at < ibis.literal(end, type="timestamp"))
    owner = accounts[by].cast("string")
    return accounts.select(
        account_id=accounts.account_id,
        csm=ibis.ifelse(owner.isnull() | (owner == ""), UNASSIGNED, owner),
        sponsor=_flag(accounts, sponsor_attribute),
        reference=_flag(accounts, reference_attribute),
    )


def _activities(warehouse: Warehouse, start: ir.Value, end: ir.Value) -> ir.Table:
    activities = warehouse.table("activities")
    activities = activities.filter(
        (activities.occurred_at >= start) & (activities.occurred_at < end)
    )
    owner = activities.owner
    return activities.select(
        "account_id",
        "person_id",
        "kind",
        owner=ibis.ifelse(owner.isnull() | (owner == ""), UNASSIGNED, owner),
    )


def _activity_totals(activities: ir.Table) -> ir.Table:
    """Activities logged by each CSM (``activities.owner``), whatever account they touched."""
    totals = activities.group_by("owner").aggregate(activities=activities.count())
    return totals.select(csm=totals.owner, activities=totals.activities)


def _contacts(warehouse: Warehouse, book: ir.Table, start: ir.Value, end: ir.Value) -> ir.Table:
    """People of the book's accounts, and those with an activity or an event in the window."""
    people = warehouse.table("people").select("person_id", "account_id")
    activities = warehouse.table("activities")
    events = warehouse.table("events")
    touched = ibis.union(
        activities.filter(
            (activities.occurred_at >= start)
            & (activities.occurred_at < end)
            & activities.person_id.notnull()
        ).select("person_id", "account_id"),
        events.filter(
            (events.timestamp >= start) & (events.timestamp < end) & events.person_id.notnull()
        ).select("person_id", "account_id"),
        distinct=True,
    ).mutate(engaged=ibis.literal(1, type="int64"))
    known = people.left_join(touched, ["person_id", "account_id"]).select(
        people.person_id, people.account_id, engaged=touched.engaged.fill_null(0)
    )
    per_account = known.group_by("account_id").aggregate(
        people=known.count(), engaged_people=known.engaged.sum()
    )
    joined = book.inner_join(per_account, "account_id")
    return joined.group_by("csm").aggregate(
        people=joined.people.sum(),
        engaged_people=joined.engaged_people.sum(),
        engaged_accounts=_count_if(joined.engaged_people > 0),
    )


def mrr_on(warehouse: Warehouse, day: ir.Value) -> ir.Table:
    """Each account's MRR on ``day``: the sum of its subscriptions running that day
    (``start_date <= day < end_date``, no end date: still running)."""
    subscriptions = warehouse.table("subscriptions")
    running = subscriptions.filter(
        (subscriptions.start_date <= day)
        & (subscriptions.end_date.isnull() | (subscriptions.end_date > day))
    )
    return running.group_by("account_id").aggregate(mrr=running.mrr.sum())


def _revenue(warehouse: Warehouse, book: ir.Table, first_day: date, last_day: date) -> ir.Table:
    """MRR on the window's first day, and on its last day of the accounts paying on the first."""
    at_start = mrr_on(warehouse, ibis.literal(first_day, type="date"))
    at_end = mrr_on(warehouse, ibis.literal(last_day, type="date")).rename(end_mrr="mrr")
    paying = book.inner_join(at_start, "account_id").filter(lambda t: t.mrr > 0)
    paying = paying.left_join(at_end, "account_id").select(
        paying.csm, paying.mrr, end_mrr=at_end.end_mrr.fill_null(0.0)
    )
    return paying.group_by("csm").aggregate(
        starting_mrr=paying.mrr.sum(), retained_mrr=paying.end_mrr.sum()
    )


def _enrollments(warehouse: Warehouse) -> ir.Table | None:
    if not warehouse.has_table(ENROLLMENTS_TABLE):
        return None
    return warehouse.table(ENROLLMENTS_TABLE)


def _goals(warehouse: Warehouse, book: ir.Table, start: ir.Value, end: ir.Value) -> ir.Table:
    """Enrollments of the book's accounts whose goal was reached in the window (any arm)."""
    enrollments = _enrollments(warehouse)
    if enrollments is None:
        return book.select("csm").distinct().mutate(goals_achieved=0, goal_accounts=0)
    done = enrollments.filter(
        (enrollments.completed_at >= start) & (enrollments.completed_at < end)
    )
    joined = book.inner_join(done, "account_id")
    return joined.group_by("csm").aggregate(
        goals_achieved=joined.count(), goal_accounts=joined.account_id.nunique()
    )


def _arms(warehouse: Warehouse, book: ir.Table, start: ir.Value, end: ir.Value) -> ir.Table:
    """Enrollments of the book's accounts entered in the window, by arm: units, and those whose
    goal was reached before the window's end (holdout vs every other arm)."""
    enrollments = _enrollments(warehouse)
    if enrollments is None:
        return (
            book.select("csm")
            .distinct()
            .mutate(treated_units=0, treated_completed=0, holdout_units=0, holdout_completed=0)
        )
    entered = enrollments.filter((enrollments.entered_at >= start) & (enrollments.entered_at < end))
    joined = book.inner_join(entered, "account_id")
    held = joined.arm == ibis.literal(HOLDOUT, type="string")
    completed = joined.completed_at.notnull() & (joined.completed_at < end)
    return joined.group_by("csm").aggregate(
        treated_units=_count_if(~held),
        treated_completed=_count_if((~held) & completed),
        holdout_units=_count_if(held),
        holdout_completed=_count_if(held & completed),
    )


def _satisfaction(warehouse: Warehouse, book: ir.Table, start: ir.Value, end: ir.Value) -> ir.Table:
    """NPS and CSAT answers of the book's accounts in the window (every response counts).

    NPS answers are put on 0–10 (``(score - scale_min) / (scale_max - scale_min) * 10``):
    promoters 9 and up, detractors 6 and below. CSAT: satisfied is the top two of the scale
    (``score >= scale_max - 1``).
    """
    responses = warehouse.table("survey_responses")
    responses = responses.filter((responses.responded_at >= start) & (responses.responded_at < end))
    joined = book.inner_join(responses, "account_id")
    span = joined.scale_max - joined.scale_min
    on_ten = ibis.ifelse(span > 0, (joined.score - joined.scale_min) / span * 10, ibis.null())
    nps = joined.kind == "nps"
    csat = joined.kind == "csat"
    return joined.group_by("csm").aggregate(
        nps_responses=_count_if(nps & on_ten.notnull()),
        nps_promoters=_count_if(nps & (on_ten >= 9)),
        nps_detractors=_count_if(nps & (on_ten <= 6)),
        csat_responses=_count_if(csat),
        csat_satisfied=_count_if(csat & (joined.score >= joined.scale_max - 1)),
    )


def churns_with_mrr_lost(warehouse: Warehouse, start: ir.Value, end: ir.Value) -> ir.Table:
    """Churns in the window (``churned_at`` in ``[start, end)``) with the MRR the account had just
    before: the sum of its subscriptions running on the day before the churn's date."""
    churns = warehouse.table("churn_reasons")
    churns = churns.filter((churns.churned_at >= start) & (churns.churned_at < end))
    churns = churns.select(
        "churn_id",
        "account_id",
        "churned_at",
        "reason",
        "controllable",
        "notes",
        day_before=churns.churned_at.date() - ibis.interval(days=1),
    )
    subscriptions = warehouse.table("subscriptions")
    running = churns.inner_join(
        subscriptions,
        [
            churns.account_id == subscriptions.account_id,
            subscriptions.start_date <= churns.day_before,
            # No OR in a join condition (DuckDB would not hash on the account; see
            # analysis.revenue.OPEN_END).
            subscriptions.end_date.fill_null(ibis.literal(OPEN_END, type="date"))
            > churns.day_before,
        ],
    )
    lost = running.group_by("churn_id").aggregate(mrr_lost=running.mrr.sum())
    return churns.left_join(lost, "churn_id").select(
        churns.churn_id,
        churns.account_id,
        churns.churned_at,
        churns.reason,
        churns.controllable,
        churns.notes,
        mrr_lost=lost.mrr_lost.fill_null(0.0),
    )


def _book_churn(book: ir.Table, churns: ir.Table) -> ir.Table:
    joined = book.inner_join(churns, "account_id")
    controllable = joined.controllable.fill_null(False)
    return joined.group_by("csm").aggregate(
        churns=joined.count(),
        controllable_churns=_count_if(controllable),
        controllable_mrr_lost=ibis.ifelse(controllable, joined.mrr_lost, 0.0).sum(),
    )
