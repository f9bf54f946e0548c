"""Accounts, people and an account's timeline, read in the warehouse and the state store.

Every read is an Ibis query filtered and limited in the warehouse (never a whole table pulled into
Python): a page of accounts is one ``ORDER BY … LIMIT … OFFSET`` and one ``COUNT``. Attributes are
read *as of* a time through the attribute history (imports' updates and write-backs), so an
account shows the plan it had then; without a time, as of now.

A timeline merges five sources, newest first: the account's events, its enrollments (entered,
completed, exited, with the arm), its messages (outbox), and its attribute changes. Each source
is read newest-first and limited to the page's end, so a page costs the same however long the
account's history is; ``total`` counts every item that matches the filters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import ibis
import ibis.expr.types as ir

from closeloop.data.history import BASELINE_SOURCE, as_of
from closeloop.data.tables import ACCOUNTS, ATTRIBUTE_HISTORY, EVENTS, PEOPLE, TableSpec
from closeloop.engine import browse
from closeloop.engine.state import utc_now
from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.schemas.base import Page
from closeloop.schemas.resources import Account, Person, TimelineItem, TimelineKind
from closeloop.services.project import Workspace

MAX_PAGE = 500
"""The most items one page holds (the API's ``limit`` is capped here)."""

_STATE_LIMIT = 10_000
"""Enrollments of one account read for its timeline (re-entry keeps this small in practice)."""


def naive_utc(moment: datetime | None) -> datetime | None:
    """A date-time as the stores keep it: UTC without a zone (a naive one is taken as UTC)."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ConfigurationError(f"{moment.isoformat()} is out of range in UTC") from None


def _moment(at: datetime | None) -> datetime:
    return naive_utc(at) or utc_now().replace(tzinfo=None)


def _plain(value: Any) -> Any:
    """A warehouse value as JSON can hold it (Decimal as float, NaN as null)."""
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date | str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)


def _properties(text: Any) -> dict[str, Any] | None:
    """The ``properties`` column (JSON text) as an object; other JSON is kept under ``value``."""
    if text is None or text == "":
        return None
    if isinstance(text, Mapping):
        return {str(key): _plain(item) for key, item in text.items()}
    try:
        parsed = json.loads(str(text))
    except ValueError:
        return {"value": str(text)}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _page_of(
    table: ir.Table, order: Iterable[Any], offset: int, limit: int
) -> list[dict[str, Any]]:
    rows = table.order_by(list(order)).limit(limit, offset=offset).to_pyarrow().to_pylist()
    return [dict(row) for row in rows]


def _count(table: ir.Table) -> int:
    return int(table.count().execute())


def _contains(column: ir.Value, text: str) -> ir.BooleanValue:
    return column.cast("string").lower().contains(text.lower()).fill_null(False)


# -- accounts ---------------------------------------------------------------------------------


def _as_of(workspace: Workspace, spec: TableSpec, entity: str, at: datetime | None) -> ir.Table:
    """Accounts or people with their attributes as of ``at`` (now when None; with ``at``, only
    those created by then)."""
    warehouse = workspace.warehouse
    table = as_of(warehouse, entity, warehouse.table(spec.name), _moment(at), key=spec.key)
    if at is not None:
        moment = ibis.literal(_moment(at), type="timestamp")
        table = table.filter(table.created_at.isnull() | (table.created_at <= moment))
    return table


def _accounts(workspace: Workspace, at: datetime | None) -> ir.Table:
    return _as_of(workspace, ACCOUNTS, "account", at)


R = TypeVar("R", Account, Person)


def _record(model: type[R], spec: TableSpec, row: Mapping[str, Any]) -> R:
    """A row as its model: the canonical columns, ``properties`` parsed, other columns in
    ``extra``."""
    canonical = set(spec.column_names)
    fields = {name: _plain(row.get(name)) for name in canonical if name != "properties"}
    return model(
        **fields,
        properties=_properties(row.get("properties")),
        extra={key: _plain(value) for key, value in row.items() if key not in canonical},
    )


def _account(row: Mapping[str, Any]) -> Account:
    return _record(Account, ACCOUNTS, row)


def list_accounts(
    workspace: Workspace,
    *,
    segment: str | None = None,
    plan: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    at: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> Page[Account]:
    """Accounts with their attributes as of ``at`` (now when None; with ``at``, only accounts
    created by then), filtered by segment, plan and owner as of that time; ``q`` matches the id,
    name or domain (case-insensitive). Ordered by ``account_id``."""
    limit = min(limit, MAX_PAGE)
    table = _accounts(workspace, at)
    if segment is not None:
        table = table.filter(table.segment == segment)
    if plan is not None:
        table = table.filter(table.plan == plan)
    if owner is not None:
        table = table.filter(table.owner == owner)
    if q:
        table = table.filter(
            _contains(table.account_id, q) | _contains(table.name, q) | _contains(table.domain, q)
        )
    rows = _page_of(table, [table.account_id], offset, limit)
    return Page[Account](
        items=[_account(row) for row in rows], total=_count(table), offset=offset, limit=limit
    )


def get_account(workspace: Workspace, account_id: str, at: datetime | None = None) -> Account:
    """One account as of ``at`` (now when None); NotFoundError when there is none."""
    table = _accounts(workspace, at)
    rows = _page_of(table.filter(table.account_id == account_id), [table.account_id], 0, 1)
    if not rows:
        when = f" as of {_moment(at).isoformat()}" if at is not None else ""
        raise NotFoundError(f"no account {account_id!r}{when}")
    return _account(rows[0])


# -- people -----------------------------------------------------------------------------------


def _people(workspace: Workspace, at: datetime | None) -> ir.Table:
    return _as_of(workspace, PEOPLE, "person", at)


def _person(row: Mapping[str, Any]) -> Person:
    return _record(Person, PEOPLE, row)


def list_people(
    workspace: Workspace,
    *,
    account_id: str | None = None,
    role: str | None = None,
    q: str | None = None,
    at: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> Page[Person]:
    """People with their attributes as of ``at``, of one account or all; ``q`` matches the id,
    name or email (case-insensitive). Ordered by ``person_id``."""
    limit = min(limit, MAX_PAGE)
    table = _people(workspace, at)
    if account_id is not None:
        table = table.filter(table.account_id == account_id)
    if role is not None:
        table = table.filter(table.role == role)
    if q:
        table = table.filter(
            _contains(table.person_id, q) | _contains(table.name, q) | _contains(table.email, q)
        )
    rows = _page_of(table, [table.person_id], offset, limit)
    return Page[Person](
        items=[_person(row) for row in rows], total=_count(table), offset=offset, limit=limit
    )


def get_person(workspace: Workspace, person_id: str, at: datetime | None = None) -> Person:
    table = _people(workspace, at)
    rows = _page_of(table.filter(table.person_id == person_id), [table.person_id], 0, 1)
    if not rows:
        when = f" as of {_moment(at).isoformat()}" if at is not None else ""
        raise NotFoundError(f"no person {person_id!r}{when}")
    return _person(rows[0])


# -- the timeline -----------------------------------------------------------------------------


def account_timeline(
    workspace: Workspace,
    account_id: str,
    *,
    kinds: Iterable[TimelineKind] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> Page[TimelineItem]:
    """What happened to an account, newest first: events, enrollments, messages and attribute
    changes in ``[since, until]`` (every kind unless ``kinds`` names some)."""
    get_account(workspace, account_id)  # NotFoundError for an unknown account
    limit = min(limit, MAX_PAGE)
    wanted = set(kinds) if kinds else set(TimelineKind)
    start, end = naive_utc(since), naive_utc(until)
    depth = offset + limit  # each source's newest items that can reach this page
    items: list[TimelineItem] = []
    total = 0
    if TimelineKind.event in wanted:
        found, count = _events(workspace, account_id, start, end, depth)
        items += found
        total += count
    states = wanted & {TimelineKind.entered, TimelineKind.completed, TimelineKind.exited}
    if states:
        found = _enrollment_items(workspace, account_id, states, start, end)
        items += found
        total += len(found)
    if TimelineKind.message in wanted:
        found, count = _messages(workspace, account_id, start, end, depth)
        items += found
        total += count
    if TimelineKind.attribute in wanted:
        found, count = _attribute_changes(workspace, account_id, start, end, depth)
        items += found
        total += count
    order = {kind: index for index, kind in enumerate(TimelineKind)}
    items.sort(key=lambda item: (item.at, -order[item.kind], item.name), reverse=True)
    return Page[TimelineItem](
        items=items[offset : offset + limit], total=total, offset=offset, limit=limit
    )


def _in_range(
    table: ir.Table, column: ir.TimestampValue, start: datetime | None, end: datetime | None
) -> ir.Table:
    if start is not None:
        table = table.filter(column >= ibis.literal(start, type="timestamp"))
    if end is not None:
        table = table.filter(column <= ibis.literal(end, type="timestamp"))
    return table


def _events(
    workspace: Workspace,
    account_id: str,
    start: datetime | None,
    end: datetime | None,
    depth: int,
) -> tuple[list[TimelineItem], int]:
    events = workspace.warehouse.table(EVENTS.name)
    table = _in_range(events.filter(events.account_id == account_id), events.timestamp, start, end)
    rows = _page_of(table, [table.timestamp.desc(), table.event_id.desc()], 0, depth)
    items = [
        TimelineItem(
            at=row["timestamp"],
            kind=TimelineKind.event,
            name=str(row["name"]),
            person_id=row.get("person_id"),
            detail={
                "event_id": row["event_id"],
                "value": _plain(row.get("value")),
                "properties": _properties(row.get("properties")),
            },
        )
        for row in rows
    ]
    return items, _count(table)


def _enrollment_items(
    workspace: Workspace,
    account_id: str,
    kinds: set[TimelineKind],
    start: datetime | None,
    end: datetime | None,
) -> list[TimelineItem]:
    rows, _ = browse.enrollments_page(workspace.store, account_id=account_id, limit=_STATE_LIMIT)
    items = []
    for row in rows:
        detail = {
            "enrollment_id": row.enrollment_id,
            "arm": row.arm,
            "status": row.status,
            "job_version": row.job_version,
        }
        moments: tuple[tuple[TimelineKind, datetime | None, dict[str, Any]], ...] = (
            (TimelineKind.entered, row.entered_at, {}),
            (TimelineKind.completed, row.completed_at, {}),
            (TimelineKind.exited, row.exited_at, {"exit_reason": row.exit_reason}),
        )
        for kind, moment, more in moments:
            if kind not in kinds or moment is None:
                continue
            if (start is not None and moment < start) or (end is not None and moment > end):
                continue
            items.append(
                TimelineItem(
                    at=moment,
                    kind=kind,
                    name=row.job_name,
                    person_id=row.person_id,
                    detail={**detail, **more},
                )
            )
    return items


def _messages(
    workspace: Workspace,
    account_id: str,
    start: datetime | None,
    end: datetime | None,
    depth: int,
) -> tuple[list[TimelineItem], int]:
    found, total = browse.account_messages(
        workspace.store, account_id, since=start, until=end, limit=depth
    )
    items = [
        TimelineItem(
            at=timed.at,
            kind=TimelineKind.message,
            name=timed.message.job_name,
            person_id=timed.person_id,
            detail={
                "id": timed.message.id,
                "channel": timed.message.channel,
                "step_index": timed.message.step_index,
                "arm": timed.message.arm,
                "status": timed.message.status,
                "attempts": timed.message.attempts,
            },
        )
        for timed in found
    ]
    return items, total


def _attribute_changes(
    workspace: Workspace,
    account_id: str,
    start: datetime | None,
    end: datetime | None,
    depth: int,
) -> tuple[list[TimelineItem], int]:
    warehouse = workspace.warehouse
    if not warehouse.has_table(ATTRIBUTE_HISTORY.name):
        return [], 0
    history = warehouse.table(ATTRIBUTE_HISTORY.name)
    table = history.filter(
        history.entity == "account",
        history.entity_id == account_id,
        # the value an attribute had before its first change is a baseline, not a change
        history.source.isnull() | (history.source != BASELINE_SOURCE),
    )
    table = _in_range(table, table.valid_from, start, end)
    rows = _page_of(table, [table.valid_from.desc(), table.write_id.desc()], 0, depth)
    items = []
    for row in rows:
        try:
            value = json.loads(row["value"]) if row.get("value") is not None else None
        except ValueError:
            value = row["value"]
        items.append(
            TimelineItem(
                at=row["valid_from"],
                kind=TimelineKind.attribute,
                name=str(row["name"]),
                detail={"value": _plain(value), "source": row.get("source")},
            )
        )
    return items, _count(table)
