"""Write Segment messages to the canonical tables: groups to accounts, identifies to people,
tracks and pages to events; what cannot be written goes to the quarantine table.

One call writes one flush of buffered messages, in this order: ``group`` messages upsert their
accounts; ``group`` (with a ``userId``) and ``identify`` messages upsert people, mapping each
user to an account; then ``track``/``page``/``screen`` messages become events, each with the
account in ``context.groupId``, else the account its user is mapped to. Accounts and people go
through the attribute-history upsert of imports (:func:`closeloop.data.history.upsert`): a
changed trait is recorded with the message's time as its valid-from. Within one call a user's or
an account's messages are folded in time order (the latest value of each trait wins).

Every message counts exactly once: an event stored, a duplicate (its ``messageId`` is stored as
an event or quarantined already, or repeats in the call), quarantined, or a profile applied.
Writing the same messages again is a no-op, so a flush repeated after a crash adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import ibis
import pyarrow as pa

from closeloop.data import history
from closeloop.data.tables import ACCOUNTS, EVENTS, PEOPLE, QUARANTINE, ColumnType, TableSpec
from closeloop.data.warehouse import Warehouse

EVENT_KINDS = ("track", "page", "screen")
PROFILE_KINDS = ("identify", "group")

ACCOUNT_TRAITS = {
    "name": "name",
    "website": "domain",
    "domain": "domain",
    "industry": "industry",
    "employees": "employees",
    "plan": "plan",
    "segment": "segment",
    "region": "region",
    "owner": "owner",
    "arr": "arr",
    "renewal_date": "renewal_date",
    "renewalDate": "renewal_date",
    "created_at": "created_at",
    "createdAt": "created_at",
}
"""Group traits that fill a canonical column of ``accounts``; other traits go to properties."""

PERSON_TRAITS = {
    "email": "email",
    "name": "name",
    "role": "role",
    "created_at": "created_at",
    "createdAt": "created_at",
}
"""Identify traits that fill a canonical column of ``people``; other traits go to properties."""


@dataclass(frozen=True)
class Message:
    """A buffered Segment message, read: ``account_id`` is a group's ``groupId`` and any other
    message's ``context.groupId``; ``event`` the event name (``page_viewed`` for a page)."""

    sequence: int  # arrival order; the "row" of a quarantined message
    kind: str
    message_id: str
    timestamp: datetime  # naive UTC
    user_id: str | None
    account_id: str | None
    event: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    raw: str = "{}"


@dataclass
class Written:
    """What one call wrote (see the module docstring for how messages are counted)."""

    events_stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    profiles_applied: int = 0
    accounts_inserted: int = 0
    accounts_updated: int = 0
    people_inserted: int = 0
    people_updated: int = 0


@dataclass(frozen=True)
class _Reject:
    message: Message
    table: str
    column: str | None
    reason: str


@dataclass
class _Fold:
    """One account's or person's messages in this call, folded in time order."""

    columns: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    last_message: Message | None = None
    messages: list[Message] = field(default_factory=list)

    def add(self, message: Message, columns: Mapping[str, Any], extras: Mapping[str, Any]) -> None:
        self.columns.update(columns)
        self.extras.update(extras)
        self.first = message.timestamp if self.first is None else self.first
        self.last = message.timestamp
        self.last_message = message
        self.messages.append(message)


def write_messages(warehouse: Warehouse, messages: Sequence[Message]) -> Written:
    """Write ``messages`` (one flush) to accounts, people, events and the quarantine."""
    warehouse.ensure_tables()
    for name in (ACCOUNTS.name, PEOPLE.name, EVENTS.name):
        warehouse.refuse_if_mapped(name)
    ordered = sorted(messages, key=lambda m: (m.timestamp, m.sequence))
    written = Written()
    rejects: list[_Reject] = []
    staging = duckdb.connect()
    try:
        staging.execute("SET TimeZone = 'UTC'")
        groups = [m for m in ordered if m.kind == "group"]
        _write_accounts(warehouse, staging, groups, written, rejects)
        profiles = [m for m in ordered if m.kind == "identify" or (m.kind == "group" and m.user_id)]
        _write_people(warehouse, staging, profiles, written, rejects)
    finally:
        staging.close()
    events = sorted((m for m in messages if m.kind in EVENT_KINDS), key=lambda m: m.sequence)
    _write_events(warehouse, events, written, rejects)
    new, repeated = _quarantine(warehouse, rejects)
    written.quarantined += new
    written.duplicates += repeated
    set_aside = {r.message.sequence for r in rejects if r.message.kind in PROFILE_KINDS}
    written.profiles_applied = sum(m.kind in PROFILE_KINDS for m in messages) - len(set_aside)
    return written


# -- accounts -------------------------------------------------------------------------------------


def _write_accounts(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    groups: Sequence[Message],
    written: Written,
    rejects: list[_Reject],
) -> None:
    folds: dict[str, _Fold] = {}
    for message in groups:
        converted = _traits(message, ACCOUNTS, ACCOUNT_TRAITS, "accounts", rejects)
        if converted is not None and message.account_id is not None:
            folds.setdefault(message.account_id, _Fold()).add(message, *converted)
    if not folds:
        return
    stored = _stored_properties(warehouse, ACCOUNTS, folds)
    inserted, updated = _upsert(warehouse, staging, ACCOUNTS, folds, stored, rejects)
    written.accounts_inserted += inserted
    written.accounts_updated += updated


# -- people ---------------------------------------------------------------------------------------


def _write_people(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    profiles: Sequence[Message],
    written: Written,
    rejects: list[_Reject],
) -> None:
    wanted = {m.account_id for m in profiles if m.account_id is not None}
    known = _known(warehouse, ACCOUNTS, wanted)
    rejected = {reject.message.sequence for reject in rejects}
    folds: dict[str, _Fold] = {}
    for message in profiles:
        if message.user_id is None or message.sequence in rejected:
            continue  # an anonymous identify: nothing to attach its traits to
        if message.account_id is not None and message.account_id not in known:
            rejects.append(_unknown_account(message, "people", "context.groupId"))
            continue
        if message.kind == "group":
            converted: tuple[dict[str, Any], dict[str, Any]] | None = ({}, {})
        else:
            converted = _traits(message, PEOPLE, PERSON_TRAITS, "people", rejects)
        if converted is None:
            continue
        columns, extras = converted
        if message.account_id is not None:
            columns["account_id"] = message.account_id
        folds.setdefault(message.user_id, _Fold()).add(message, columns, extras)
    if not folds:
        return
    stored = _stored_properties(warehouse, PEOPLE, folds)
    for person, fold in list(folds.items()):
        if person not in stored and "account_id" not in fold.columns:
            for message in fold.messages:
                rejects.append(
                    _Reject(
                        message,
                        "people",
                        "context.groupId",
                        f"messageId {message.message_id}: no account for user {person}: "
                        f"context.groupId is missing and user {person} was never grouped; "
                        "send a group call for the user first (or set context.groupId)",
                    )
                )
            del folds[person]
    inserted, updated = _upsert(warehouse, staging, PEOPLE, folds, stored, rejects)
    written.people_inserted += inserted
    written.people_updated += updated


# -- events ---------------------------------------------------------------------------------------


def _write_events(
    warehouse: Warehouse, events: Sequence[Message], written: Written, rejects: list[_Reject]
) -> None:
    seen: set[str] = set()
    unique: list[Message] = []
    for message in events:
        if message.message_id in seen:
            written.duplicates += 1
        else:
            seen.add(message.message_id)
            unique.append(message)
    stored_ids = _known(warehouse, EVENTS, seen)
    fresh = [m for m in unique if m.message_id not in stored_ids]
    written.duplicates += len(unique) - len(fresh)
    users = _user_accounts(warehouse, {m.user_id for m in fresh if m.user_id and not m.account_id})
    wanted = {m.account_id for m in fresh if m.account_id} | set(users.values())
    accounts = _known(warehouse, ACCOUNTS, wanted)
    rows: dict[str, list[Any]] = {name: [] for name in EVENTS.column_names}
    for message in fresh:
        account = message.account_id or users.get(message.user_id or "")
        if account is None or account not in accounts:
            rejects.append(_no_event_account(message, users))
            continue
        rows["event_id"].append(message.message_id)
        rows["account_id"].append(account)
        rows["person_id"].append(message.user_id)
        rows["name"].append(message.event)
        rows["timestamp"].append(message.timestamp)
        rows["value"].append(_event_value(message.properties))
        rows["properties"].append(_json_or_none(message.properties))
    if rows["event_id"]:
        warehouse.append(EVENTS.name, warehouse.arrow_for(EVENTS.name, rows))
        written.events_stored += len(rows["event_id"])


def _no_event_account(message: Message, users: Mapping[str, str]) -> _Reject:
    if message.account_id is not None:
        return _unknown_account(message, "events", "context.groupId")
    if message.user_id is None:
        why = "context.groupId is missing and the message has no userId"
    elif message.user_id in users:
        return _unknown_account(message, "events", "userId", users[message.user_id])
    else:
        why = f"context.groupId is missing and user {message.user_id} was never grouped"
    return _Reject(
        message,
        "events",
        "context.groupId",
        f"messageId {message.message_id}: no account: {why}; send a group call for the user "
        "(or set context.groupId)",
    )


def _unknown_account(
    message: Message, table: str, column: str, account: str | None = None
) -> _Reject:
    account = account or message.account_id
    via = f"the account of user {message.user_id}" if column == "userId" else column
    return _Reject(
        message,
        table,
        column,
        f"messageId {message.message_id}: unknown account {account!r} ({via}): no group call "
        "or import created it; send a group call (or import the account) first",
    )


def _event_value(properties: Mapping[str, Any]) -> float | None:
    """``properties.value``, else ``properties.revenue``, when it is a finite number."""
    for name in ("value", "revenue"):
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


# -- shared ---------------------------------------------------------------------------------------


def _traits(
    message: Message,
    spec: TableSpec,
    mapping: Mapping[str, str],
    table: str,
    rejects: list[_Reject],
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A message's traits as canonical columns and the rest; None (and a reject) when a trait
    that fills a canonical column has a value of the wrong type."""
    columns: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for name, value in message.traits.items():
        column = mapping.get(name)
        if column is None:
            extras[name] = value
            continue
        if value is None:
            continue
        try:
            columns[column] = _typed(value, spec.column(column).type)
        except ValueError as error:
            rejects.append(
                _Reject(
                    message,
                    table,
                    f"traits.{name}",
                    f"messageId {message.message_id}: traits.{name}: {error}",
                )
            )
            return None
    return columns, extras


def _typed(value: Any, kind: ColumnType) -> Any:
    if kind is ColumnType.STRING:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected text, got {json.dumps(value)[:80]}")
        return str(value)
    if kind in (ColumnType.INTEGER, ColumnType.FLOAT):
        number = _number(value)
        if number is None or (kind is ColumnType.INTEGER and not number.is_integer()):
            expected = "an integer" if kind is ColumnType.INTEGER else "a number"
            raise ValueError(f"expected {expected}, got {json.dumps(value)[:80]}")
        return int(number) if kind is ColumnType.INTEGER else number
    if kind is ColumnType.TIMESTAMP:
        moment = _moment(value)
        if moment is None:
            raise ValueError(f"expected a time like 2024-03-31T14:05:00Z, got {value!r}"[:120])
        return moment
    if kind is ColumnType.DATE:
        moment = _moment(value)
        if moment is None:
            raise ValueError(f"expected a date like 2024-03-31, got {value!r}"[:120])
        return moment.date()
    raise ValueError(f"cannot hold {kind}")  # pragma: no cover (no other trait columns)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment if 1900 <= moment.year <= 2200 else None


def _known(warehouse: Warehouse, spec: TableSpec, ids: Iterable[str | None]) -> set[str]:
    """The ``ids`` that ``spec``'s table holds (one semi-join)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return set()
    keys = ibis.memtable(pa.table({spec.key: pa.array(wanted, pa.string())}))
    found = warehouse.table(spec.name).semi_join(keys, spec.key).select(spec.key).to_pyarrow()
    return {str(value) for value in found.column(0).to_pylist()}


def _stored_properties(
    warehouse: Warehouse, spec: TableSpec, folds: Mapping[str, _Fold]
) -> dict[str, dict[str, Any]]:
    """The stored properties of each id in ``folds`` that is stored ({} when it has none)."""
    keys = ibis.memtable(pa.table({spec.key: pa.array(sorted(folds), pa.string())}))
    table = warehouse.table(spec.name)
    rows = table.semi_join(keys, spec.key).select(spec.key, "properties").to_pyarrow().to_pylist()
    stored: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            properties = json.loads(row["properties"]) if row["properties"] else {}
        except ValueError:
            properties = {}
        stored[str(row[spec.key])] = properties if isinstance(properties, dict) else {}
    return stored


def _upsert(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    folds: Mapping[str, _Fold],
    stored: Mapping[str, dict[str, Any]],
    rejects: list[_Reject],
) -> tuple[int, int]:
    """Upsert one row per fold through attribute history; rows that set the same columns go
    together (the upsert compares only the columns a batch sets)."""
    by_given: dict[tuple[str, ...], list[tuple[str, _Fold, dict[str, Any]]]] = {}
    for key, fold in folds.items():
        assert fold.first is not None and fold.last is not None
        values = dict(fold.columns)
        if key not in stored:
            values.setdefault("created_at", fold.first)
        # Traits accumulate as Segment's do: new extras are merged into the stored properties.
        properties = {**stored.get(key, {}), **fold.extras}
        columns = [spec.key, *values]
        if fold.extras:
            columns.append("properties")
        properties["valid_from"] = fold.last.isoformat(timespec="microseconds") + "+00:00"
        values["properties"] = json.dumps(properties, ensure_ascii=False, default=str)
        values[spec.key] = key
        by_given.setdefault(tuple(sorted(set(columns))), []).append((key, fold, values))
    inserted = updated = 0
    for given, rows in by_given.items():
        table = warehouse.arrow_for(
            spec.name,
            {name: [values.get(name) for _, _, values in rows] for name in spec.column_names},
        )
        table = table.append_column(
            "_row", pa.array([_sequence(f) for _, f, _ in rows], pa.int64())
        )
        table = table.append_column("_raw", pa.array([_raw(f) for _, f, _ in rows], pa.string()))
        result = history.upsert(
            warehouse,
            staging,
            spec,
            table,
            given=history.given_columns(spec, given),
            source="segment",
        )
        inserted += result.inserted
        updated += result.updated
        by_row = {_sequence(fold): fold for _, fold, _ in rows}
        for problem in result.rejected:
            fold = by_row[problem.row_number]
            assert fold.last_message is not None
            rejects.append(_Reject(fold.last_message, spec.name, problem.column, problem.reason))
    return inserted, updated


def _sequence(fold: _Fold) -> int:
    assert fold.last_message is not None
    return fold.last_message.sequence


def _raw(fold: _Fold) -> str:
    assert fold.last_message is not None
    return fold.last_message.raw


def _user_accounts(warehouse: Warehouse, users: set[str | None]) -> dict[str, str]:
    """The account each of ``users`` is mapped to (stored people)."""
    wanted = sorted({u for u in users if u})
    if not wanted:
        return {}
    keys = ibis.memtable(pa.table({PEOPLE.key: pa.array(wanted, pa.string())}))
    people = warehouse.table(PEOPLE.name)
    rows = people.semi_join(keys, PEOPLE.key).select("person_id", "account_id").to_pyarrow()
    return {
        str(row["person_id"]): str(row["account_id"])
        for row in rows.to_pylist()
        if row["account_id"] is not None
    }


def _json_or_none(values: Mapping[str, Any]) -> str | None:
    return json.dumps(values, ensure_ascii=False, default=str) if values else None


def quarantine_id(kind: str, message_id: str) -> str:
    """The quarantine row of a message: the same message set aside twice is one row."""
    return hashlib.sha256(f"segment|{kind}|{message_id}".encode()).hexdigest()[:24]


def _quarantine(warehouse: Warehouse, rejects: Sequence[_Reject]) -> tuple[int, int]:
    """Write rejects to the quarantine table: (newly quarantined, quarantined already)."""
    if not rejects:
        return 0, 0
    by_id: dict[str, _Reject] = {}
    repeated = 0
    for reject in rejects:
        key = quarantine_id(reject.message.kind, reject.message.message_id)
        if key in by_id:
            repeated += 1
        else:
            by_id[key] = reject
    already = _known(warehouse, QUARANTINE, by_id)
    fresh = {key: reject for key, reject in by_id.items() if key not in already}
    if fresh:
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = warehouse.arrow_for(
            QUARANTINE.name,
            {
                "quarantine_id": list(fresh),
                "table_name": [r.table for r in fresh.values()],
                "file": [f"segment:{r.message.kind}" for r in fresh.values()],
                "row_number": [r.message.sequence for r in fresh.values()],
                "column_name": [r.column for r in fresh.values()],
                "reason": [_storable(r.reason) for r in fresh.values()],
                "raw": [_storable(r.message.raw) for r in fresh.values()],
                "quarantined_at": [now] * len(fresh),
            },
        )
        warehouse.append(QUARANTINE.name, rows)
    return len(fresh), repeated + len(already)


def _storable(text: str) -> str:
    """PostgreSQL refuses NUL characters in text, so they are escaped."""
    return text.replace("\x00", "\\u0000")
