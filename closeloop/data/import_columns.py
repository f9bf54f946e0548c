"""Which column of a file feeds which canonical column, and how its values are cleaned.

A file's columns reach the canonical ones by name, or by a mapping (``--map canonical=source`` or
``imports.<table>.map`` in closeloop.yaml); columns that feed nothing are kept in ``properties``.
A required column with no source stops the import before anything is written, with a rename hint
for every missing column ("did you mean name = event_name? pass --map name=event_name"); an
optional column the file seems to have under another name is a warning with the same hint.

Normalisation (``imports.<table>.normalize``) runs in the staging DuckDB, set-based, before the
typed checks: so ``aliases: {"N/A": null}`` empties a numeric column and ``casefold`` makes
``Enterprise``/``ENTERPRISE`` one segment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from closeloop.data.readers import ROW, TextBatch, arrow_text, arrow_to_text
from closeloop.data.tables import ColumnType, TableSpec
from closeloop.definitions.models import ColumnNormalization
from closeloop.errors import DataImportError

# Names real exports give canonical columns (CRMs, Segment/Mixpanel/Amplitude, billing tools).
# Compared without case, spaces or punctuation; a table-specific entry comes first.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "account_id": (
        "account",
        "acct",
        "acct_id",
        "company_id",
        "organization_id",
        "org_id",
        "customer_id",
        "group_id",
        "tenant_id",
        "workspace_id",
    ),
    "person_id": ("user_id", "contact_id", "member_id", "user", "distinct_id", "anonymous_id"),
    "timestamp": (
        "ts",
        "time",
        "event_time",
        "event_timestamp",
        "occurred_at",
        "sent_at",
        "received_at",
        "datetime",
        "date",
        "created_at",
    ),
    "created_at": (
        "created",
        "created_date",
        "creation_date",
        "date_created",
        "signup",
        "signup_date",
        "signed_up_at",
        "signup_at",
        "joined_at",
    ),
    "email": ("email_address", "e_mail", "mail"),
    "segment": ("tier", "customer_segment", "segment_name", "market_segment"),
    "employees": ("employee_count", "headcount", "company_size", "num_employees", "seats"),
    "owner": ("csm", "account_owner", "owner_name", "owner_email", "success_manager"),
    "renewal_date": ("renewal", "renews_on", "renewal_on", "contract_end", "contract_end_date"),
    "domain": ("website", "company_domain", "url"),
    "arr": ("annual_recurring_revenue", "annual_revenue", "acv"),
    "mrr": ("monthly_recurring_revenue", "monthly_amount", "amount"),
    "start_date": ("started_at", "start", "period_start", "starts_on"),
    "end_date": ("ended_at", "end", "period_end", "cancelled_at", "canceled_at", "ends_on"),
    "score": ("rating", "nps", "nps_score", "csat", "value"),
    "responded_at": ("submitted_at", "response_date", "created_at", "date", "timestamp"),
    "occurred_at": ("activity_date", "date", "timestamp", "created_at", "completed_at"),
    "amount": ("value", "deal_amount", "deal_value", "arr"),
    "status": ("stage", "deal_stage", "state"),
    "churned_at": ("churn_date", "cancelled_at", "canceled_at", "churned_on"),
    "reason": ("churn_reason", "cancel_reason", "cancellation_reason"),
    "kind": ("type", "activity_type", "survey_type"),
}
_TABLE_SYNONYMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("accounts", "name"): ("company", "company_name", "account_name", "organization", "org_name"),
    ("people", "name"): ("full_name", "contact_name", "user_name", "display_name"),
    ("events", "name"): ("event_name", "event", "event_type", "action", "evt", "type"),
    ("events", "value"): ("amount", "revenue", "quantity"),
    ("events", "event_id"): ("id", "uid", "uuid", "message_id", "insert_id", "event_uuid"),
    ("accounts", "account_id"): ("id",),
    ("people", "person_id"): ("id",),
    ("subscriptions", "subscription_id"): ("id", "sub_id"),
    ("survey_responses", "response_id"): ("id", "survey_response_id"),
    ("activities", "activity_id"): ("id",),
    ("opportunities", "opportunity_id"): ("id", "deal_id", "opp_id"),
    ("churn_reasons", "churn_id"): ("id",),
}
# Built once: json.dumps builds an encoder per call, a cost paid twice per imported row.
_RAW = json.JSONEncoder(ensure_ascii=False)
_PROPERTIES = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_SPACES = r"[\s\x{00A0}\x{2000}-\x{200B}\x{202F}\x{205F}\x{3000}]+"
_SMALL_UNSIGNED: tuple[pa.DataType, ...] = (pa.uint8(), pa.uint16(), pa.uint32())
# Arrow types a canonical column takes as they are (typed in the staging DuckDB without text).
_TYPED_AS_IS: dict[ColumnType, tuple[Callable[[pa.DataType], bool], ...]] = {
    ColumnType.INTEGER: (pa.types.is_signed_integer, lambda kind: bool(kind in _SMALL_UNSIGNED)),
    ColumnType.FLOAT: (pa.types.is_float32, pa.types.is_float64, pa.types.is_integer),
    ColumnType.BOOLEAN: (pa.types.is_boolean,),
    ColumnType.TIMESTAMP: (pa.types.is_timestamp, pa.types.is_date),
    ColumnType.DATE: (pa.types.is_date,),
}


def _folded(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def synonyms(table: str, column: str) -> tuple[str, ...]:
    """Names an export may give ``column`` of ``table``, most specific first."""
    return _TABLE_SYNONYMS.get((table, column), ()) + _SYNONYMS.get(column, ())


@dataclass(frozen=True)
class ColumnPlan:
    """How one import reads its file: each canonical column's source and normalisation."""

    spec: TableSpec
    sources: Mapping[str, str] = field(default_factory=dict)  # canonical -> file column
    normalize: Mapping[str, ColumnNormalization] = field(default_factory=dict)
    origin: str = "--map"  # where the mapping came from, for messages

    def __post_init__(self) -> None:
        known = self.spec.column_names
        for label, names in (("map", self.sources), ("normalize", self.normalize)):
            for name in names:
                if name not in known:
                    close = get_close_matches(name, known, n=1)
                    raise DataImportError(
                        f"{self.origin if label == 'map' else 'normalize'}: {self.spec.name} has "
                        f"no column {name!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; its columns are {', '.join(known)}"
                    )

    def source(self, canonical: str) -> str:
        return self.sources.get(canonical, canonical)

    @property
    def used(self) -> frozenset[str]:
        """File columns that feed a canonical column (the rest go to ``properties``)."""
        return frozenset(self.source(name) for name in self.spec.column_names)

    # -- the file's columns -----------------------------------------------------------------

    def check_columns(self, path: Path, columns: list[str], *, where: str = "1") -> list[str]:
        """Stop when a mapped or required column is missing (with a hint for each); return
        warnings for optional columns the file seems to have under another name."""
        present = set(columns)
        wrong_sources = [
            (canonical, source)
            for canonical, source in self.sources.items()
            if source not in present
        ]
        if wrong_sources:
            problems = []
            for canonical, source in wrong_sources:
                close = get_close_matches(source, columns, n=1, cutoff=0.6)
                problems.append(
                    f"{canonical}={source}: the file has no column {source!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                )
            raise DataImportError(
                f"{path}:{where}: {self.origin}: {'; '.join(problems)}; the file's columns are "
                f"{_listed(columns)}"
            )
        missing = [name for name in self.spec.required if self.source(name) not in present]
        if missing:
            hints = {name: self._hint(name, columns) for name in missing}
            found = {name: hint for name, hint in hints.items() if hint}
            message = (
                f"{path}:{where}: {self.spec.name} needs column(s) {', '.join(missing)}; the file "
                f"has {_listed(columns)}"
            )
            if found:
                pairs = ", ".join(f"{name} = {hint}" for name, hint in found.items())
                flags = " ".join(f"--map {name}={hint}" for name, hint in found.items())
                message += (
                    f". Did you mean {pairs}? pass {flags} (or set them under "
                    f"imports.{self.spec.name}.map in closeloop.yaml)"
                )
            raise DataImportError(message)
        warnings = []
        for column in self.spec.columns:
            if column.required or self.source(column.name) in present:
                continue
            hint = self._hint(column.name, columns)
            if hint:
                warnings.append(
                    f"the file has no {column.name!r} column but has {hint!r}: pass --map "
                    f"{column.name}={hint} to use it as {column.name} (it is kept in properties)"
                )
        return warnings

    def _hint(self, canonical: str, columns: Iterable[str]) -> str | None:
        """The file column most likely meant as ``canonical``, if one is convincing."""
        free = [c for c in columns if c not in self.used]
        by_fold: dict[str, str] = {}
        for name in free:
            by_fold.setdefault(_folded(name), name)
        for candidate in (canonical, *synonyms(self.spec.name, canonical)):
            found = by_fold.get(_folded(candidate))
            if found is not None:
                return found
        close = get_close_matches(canonical, free, n=1, cutoff=0.8)
        return close[0] if close else None

    def given(self, batch: TextBatch) -> set[str]:
        """The canonical columns a batch has values for, plus the names of its extra columns."""
        if batch.columns is not None:
            keys = {name for name in batch.columns.column_names if name != ROW}
        else:
            keys = {name for row in batch.rows for name in row}
        given = {name for name in self.spec.column_names if self.source(name) in keys}
        return given | (keys - self.used)

    # -- text into Arrow ----------------------------------------------------------------------

    def text_table(self, batch: TextBatch) -> tuple[pa.Table, frozenset[str]]:
        """The batch as columns of the canonical names, plus ``_row``; and the names of the
        columns that are typed already (the rest are text: trimmed, blank is null). Extra
        columns are merged into ``properties``."""
        if batch.columns is not None:
            return self._columnar_table(batch.columns)
        names = self.spec.column_names
        sources = [(name, self.source(name)) for name in names]
        used = self.used
        columns: dict[str, list[str | None]] = {name: [] for name in names}
        has_properties = "properties" in columns
        for row in batch.rows:
            for name, source in sources:
                value = row.get(source)
                if value is not None:
                    value = value.strip()
                columns[name].append(value or None)
            extras = {
                key: value
                for key, value in row.items()
                if key not in used and value not in (None, "")
            }
            if extras and has_properties:
                properties = columns["properties"]
                properties[-1] = _merge_properties(properties[-1], extras)
        data: dict[str, list[Any]] = {ROW: list(batch.row_numbers)}
        data.update(columns)
        schema = pa.schema([(ROW, pa.int64())] + [(n, pa.string()) for n in names])
        return pa.table(data, schema=schema), frozenset()

    def _columnar_table(self, table: pa.Table) -> tuple[pa.Table, frozenset[str]]:
        """:meth:`text_table` of a columnar batch, set-based: a column whose Arrow type the
        canonical type takes as it is stays typed; text is trimmed, blank made null."""
        present = set(table.column_names)
        size = table.num_rows
        columns: dict[str, pa.Array | pa.ChunkedArray] = {ROW: table.column(ROW)}
        typed: set[str] = set()
        for column in self.spec.columns:
            source = self.source(column.name)
            if source not in present:
                columns[column.name] = pa.nulls(size, pa.string())
                continue
            columns[column.name], is_typed = self.canonical_values(
                column.name, table.column(source)
            )
            if is_typed:
                typed.add(column.name)
        extras = [name for name in table.column_names if name != ROW and name not in self.used]
        if extras and "properties" in columns:
            columns["properties"] = self._with_extras(table, extras, columns["properties"])
        return pa.table(columns), frozenset(typed)

    def canonical_values(
        self, name: str, values: pa.Array | pa.ChunkedArray
    ) -> tuple[pa.Array | pa.ChunkedArray, bool]:
        """A columnar batch's values for canonical column ``name``, and whether they are typed:
        of an Arrow type the column takes as it is (and no normalisation), else as text,
        trimmed, blank made null."""
        column = self.spec.column(name)
        if name not in self.normalize and any(
            test(values.type) for test in _TYPED_AS_IS.get(column.type, ())
        ):
            return values, True
        trimmed = pc.utf8_trim_whitespace(arrow_text(values))
        return pc.if_else(pc.equal(trimmed, ""), None, trimmed), False

    def _with_extras(
        self, table: pa.Table, extras: list[str], properties: pa.Array | pa.ChunkedArray
    ) -> pa.Array:
        """``properties`` with the non-blank values of the extra columns merged in (as text)."""
        texts = [(name, arrow_to_text(table.column(name).combine_chunks())[0]) for name in extras]
        merged: list[str | None] = properties.to_pylist()
        for index in range(table.num_rows):
            found = {
                name: values[index] for name, values in texts if values[index] not in (None, "")
            }
            if found:
                merged[index] = _merge_properties(merged[index], found)
        return pa.array(merged, pa.string())

    def raw_texts(self, batch: TextBatch, row_numbers: Iterable[int]) -> dict[int, str]:
        """The rows numbered ``row_numbers`` as read, as JSON (the quarantine's ``raw``)."""
        return {number: _RAW.encode(row) for number, row in batch.raw_rows(row_numbers).items()}

    # -- normalisation ------------------------------------------------------------------------

    def normalize_sql(self, table: str) -> str | None:
        """SELECT over ``table`` with every normalised column cleaned; None when none is."""
        if not self.normalize:
            return None
        selected = [ROW]
        for name in self.spec.column_names:
            rule = self.normalize.get(name)
            value = _quote(name)
            selected.append(
                f"{normalized_value(value, rule)} AS {value}" if rule is not None else value
            )
        return f"SELECT {', '.join(selected)} FROM {table}"


def normalized_value(value: str, rule: ColumnNormalization) -> str:
    """The SQL of ``value`` after ``rule``: trim, then casefold, then aliases; blank is null."""
    if rule.trim:
        value = f"trim(regexp_replace({value}, '{_SPACES}', ' ', 'g'))"
    if rule.casefold:
        value = f"lower({value})"
    if rule.aliases:
        cases = []
        for alias, target in rule.aliases.items():
            key = " ".join(alias.split()) if rule.trim else alias.strip()
            key = key.lower() if rule.casefold else key
            cases.append(
                f"WHEN {sql_text(key)} THEN {'NULL' if target is None else sql_text(target)}"
            )
        value = f"(CASE {value} {' '.join(cases)} ELSE {value} END)"
    return f"nullif({value}, '')"


def sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _listed(columns: list[str]) -> str:
    shown = ", ".join(columns[:30]) if columns else "no columns"
    return shown + (f", … ({len(columns)} in all)" if len(columns) > 30 else "")


def _merge_properties(existing: str | None, extras: Mapping[str, str | None]) -> str:
    merged: dict[str, object] = {}
    if existing:
        try:
            parsed = json.loads(existing)
        except json.JSONDecodeError:
            # Left as is, so the JSON check quarantines the row with its real reason.
            return existing
        if not isinstance(parsed, dict):
            return existing
        merged.update(parsed)
    for key, value in extras.items():
        merged[key] = _structured(value)
    return _PROPERTIES.encode(merged)


def _structured(value: str | None) -> object:
    """Nested JSON (an object or array from a JSON Lines row) stays structured in properties."""
    if value is not None and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value
