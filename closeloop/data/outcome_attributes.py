"""Built-in outcome attributes of accounts, computed in the warehouse as of T.

Each built-in is a small table (``account_id`` and one value column) the compiler left-joins onto
its frame, like an event count. Nothing after T is used: subscriptions active at T, survey answers
responded at or before T, events with ``timestamp <= T``, opportunities created by T and not closed
by T. Formulas, windows and missing values: docs/metrics.md ("Outcome attributes").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from closeloop.data.warehouse import Warehouse
from closeloop.definitions.builtins import BUILTIN_ACCOUNT_ATTRIBUTES

SECONDS_PER_DAY = 86_400.0
MONTHS_PER_YEAR = 12
ACTIVE_WINDOW_DAYS = 30
USAGE_WINDOW_DAYS = 60
# Built-ins that are counts or sums: an account with nothing to count has 0, not a missing value.
ZERO_WHEN_ABSENT = frozenset(
    {"mrr", "subscription_arr", "active_users_30d", "events_30d", "open_opportunities"}
)


def _timestamp(moment: datetime) -> ir.TimestampScalar:
    return ibis.literal(moment, type="timestamp")


def _events(warehouse: Warehouse, as_of: datetime, days: float) -> ir.Table:
    """Every event in (T - days, T]."""
    events = warehouse.table("events")
    return events.filter(
        events.timestamp <= _timestamp(as_of),
        events.timestamp > _timestamp(as_of - timedelta(days=days)),
    )


def _mrr(warehouse: Warehouse, as_of: datetime, column: str, factor: int) -> ir.Table:
    """Sum of ``mrr`` over subscriptions active on T's day: start_date <= day < end_date."""
    subscriptions = warehouse.table("subscriptions")
    day = ibis.literal(as_of.date(), type="date")
    active = subscriptions.filter(
        subscriptions.start_date <= day,
        subscriptions.end_date.isnull() | (subscriptions.end_date > day),
    )
    return active.group_by("account_id").aggregate(
        **{column: active.mrr.cast("float64").sum() * factor}
    )


def _latest_score(warehouse: Warehouse, as_of: datetime, kind: str, column: str) -> ir.Table:
    """The score (on its own scale) of the account's latest ``kind`` answer at or before T;
    ties on ``responded_at`` go to the largest ``response_id``."""
    answers = warehouse.table("survey_responses")
    answers = answers.filter(
        answers.kind == ibis.literal(kind, type="string"),
        answers.responded_at <= _timestamp(as_of),
    )
    ranked = answers.mutate(
        _rank=ibis.row_number().over(
            group_by=answers.account_id,
            order_by=[answers.responded_at.desc(), answers.response_id.desc()],
        )
    )
    latest = ranked.filter(ranked._rank == 0)
    return latest.select("account_id", **{column: latest.score.cast("float64")})


def _active_users(warehouse: Warehouse, as_of: datetime, column: str) -> ir.Table:
    """Distinct people (events with a ``person_id``) with an event in (T - 30 days, T]."""
    events = _events(warehouse, as_of, ACTIVE_WINDOW_DAYS)
    events = events.filter(events.person_id.notnull())
    return events.group_by("account_id").aggregate(
        **{column: events.person_id.nunique().cast("float64")}
    )


def _events_30d(warehouse: Warehouse, as_of: datetime, column: str) -> ir.Table:
    events = _events(warehouse, as_of, ACTIVE_WINDOW_DAYS)
    return events.group_by("account_id").aggregate(**{column: events.count().cast("float64")})


def _usage_change(warehouse: Warehouse, as_of: datetime, column: str) -> ir.Table:
    """(recent - earlier) / earlier, with recent the events in (T - 60d, T] and earlier those in
    (T - 120d, T - 60d]; missing when earlier is 0 or the account was created after T - 120d."""
    window = timedelta(days=USAGE_WINDOW_DAYS)
    events = _events(warehouse, as_of, 2 * USAGE_WINDOW_DAYS)
    recent = events.timestamp > _timestamp(as_of - window)
    counts = events.group_by("account_id").aggregate(
        _recent=recent.ifelse(1, 0).sum().cast("float64"),
        _earlier=(~recent).ifelse(1, 0).sum().cast("float64"),
    )
    accounts = warehouse.table("accounts")
    old_enough = accounts.filter(accounts.created_at <= _timestamp(as_of - 2 * window))
    joined = counts.inner_join(old_enough.select("account_id"), "account_id")
    change = (joined._recent - joined._earlier) / joined._earlier.nullif(0)
    return joined.select("account_id", **{column: change})


def _last_seen(warehouse: Warehouse, as_of: datetime, column: str) -> ir.Table:
    """Days from the account's latest event at or before T to T."""
    events = warehouse.table("events")
    events = events.filter(events.timestamp <= _timestamp(as_of))
    latest = events.group_by("account_id").aggregate(_latest=events.timestamp.max())
    seconds = _timestamp(as_of).epoch_seconds() - latest._latest.epoch_seconds()
    return latest.select("account_id", **{column: seconds.cast("float64") / SECONDS_PER_DAY})


def _open_opportunities(warehouse: Warehouse, as_of: datetime, column: str) -> ir.Table:
    """Opportunities created at or before T and not closed by T (whatever their status now)."""
    opportunities = warehouse.table("opportunities")
    now = _timestamp(as_of)
    open_at = opportunities.filter(
        opportunities.created_at <= now,
        opportunities.closed_at.isnull() | (opportunities.closed_at > now),
    )
    return open_at.group_by("account_id").aggregate(**{column: open_at.count().cast("float64")})


_BUILDERS: dict[str, Callable[[Warehouse, datetime, str], ir.Table]] = {
    "mrr": lambda w, t, c: _mrr(w, t, c, 1),
    "subscription_arr": lambda w, t, c: _mrr(w, t, c, MONTHS_PER_YEAR),
    "nps_latest": lambda w, t, c: _latest_score(w, t, "nps", c),
    "csat_latest": lambda w, t, c: _latest_score(w, t, "csat", c),
    "ces_latest": lambda w, t, c: _latest_score(w, t, "ces", c),
    "active_users_30d": _active_users,
    "events_30d": _events_30d,
    "usage_change_60d": _usage_change,
    "last_seen_days": _last_seen,
    "open_opportunities": _open_opportunities,
}
assert set(_BUILDERS) == set(BUILTIN_ACCOUNT_ATTRIBUTES), "every built-in is computed"


def outcome_attribute(warehouse: Warehouse, name: str, as_of: datetime, column: str) -> ir.Table:
    """Per account with a value: ``account_id`` and the built-in ``name`` as of ``as_of``, in
    ``column``. Accounts absent from it have 0 (``ZERO_WHEN_ABSENT``) or no value."""
    return _BUILDERS[name](warehouse, as_of, column)
