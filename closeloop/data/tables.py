"""The canonical tables of the data contract (DESIGN §3): names, columns, types, natural ids.

This is the public import format. Timestamps are UTC and stored without a time zone; extra columns
in an imported file are kept in the ``properties`` column as a JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ibis.expr.datatypes as dt
    import ibis.expr.schema as sch


class ColumnType(StrEnum):
    STRING = "string"
    TIMESTAMP = "timestamp"
    DATE = "date"
    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"  # a JSON object stored as text, so every backend can hold it


# Ibis type names, so that reading the contract (table names, columns) needs no Ibis: the CLI
# lists the tables in its help without loading a warehouse library.
_IBIS_TYPE_NAMES: dict[ColumnType, str] = {
    ColumnType.STRING: "string",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.DATE: "date",
    ColumnType.FLOAT: "float64",
    ColumnType.INTEGER: "int64",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.JSON: "string",
}


def ibis_type(column_type: ColumnType) -> dt.DataType:
    """The Ibis type a column of this type is stored as."""
    import ibis.expr.datatypes as dt

    return dt.dtype(_IBIS_TYPE_NAMES[column_type])


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    references: str | None = None  # "accounts": the value must be a known account_id


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.required)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def ibis_schema(self) -> sch.Schema:
        import ibis

        return ibis.schema({c.name: ibis_type(c.type) for c in self.columns})


S, TS, D, F, INT, B, J = (
    ColumnType.STRING,
    ColumnType.TIMESTAMP,
    ColumnType.DATE,
    ColumnType.FLOAT,
    ColumnType.INTEGER,
    ColumnType.BOOLEAN,
    ColumnType.JSON,
)

ACCOUNTS = TableSpec(
    "accounts",
    key="account_id",
    columns=(
        Column("account_id", S, required=True),
        Column("name", S),
        Column("domain", S),
        Column("created_at", TS, required=True),
        Column("segment", S),
        Column("plan", S),
        Column("industry", S),
        Column("employees", INT),
        Column("region", S),
        Column("owner", S),
        Column("arr", F),
        Column("renewal_date", D),
        Column("properties", J),
    ),
)

PEOPLE = TableSpec(
    "people",
    key="person_id",
    columns=(
        Column("person_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("email", S),
        Column("name", S),
        Column("role", S),
        Column("created_at", TS),
        Column("properties", J),
    ),
)

EVENTS = TableSpec(
    "events",
    key="event_id",
    columns=(
        Column("event_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("person_id", S),
        Column("name", S, required=True),
        Column("timestamp", TS, required=True),
        Column("value", F),
        Column("properties", J),
    ),
)

SUBSCRIPTIONS = TableSpec(
    "subscriptions",
    key="subscription_id",
    columns=(
        Column("subscription_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("plan", S),
        Column("start_date", D, required=True),
        Column("end_date", D),
        Column("mrr", F, required=True),
        Column("billing_period_months", INT),
        Column("quantity", INT),
        Column("properties", J),
    ),
)

SURVEY_RESPONSES = TableSpec(
    "survey_responses",
    key="response_id",
    columns=(
        Column("response_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("person_id", S),
        Column("kind", S, required=True),  # nps, csat or ces
        Column("score", F, required=True),
        Column("scale_min", F, required=True),
        Column("scale_max", F, required=True),
        Column("comment", S),
        Column("responded_at", TS, required=True),
        Column("properties", J),
    ),
)

ACTIVITIES = TableSpec(
    "activities",
    key="activity_id",
    columns=(
        Column("activity_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("person_id", S),
        Column("owner", S),
        Column("kind", S, required=True),  # email, call, meeting, qbr, training, ...
        Column("occurred_at", TS, required=True),
        Column("notes", S),
        Column("properties", J),
    ),
)

OPPORTUNITIES = TableSpec(
    "opportunities",
    key="opportunity_id",
    columns=(
        Column("opportunity_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("kind", S, required=True),  # expansion, renewal or new
        Column("amount", F),
        Column("source", S),  # cs_sourced, cs_influenced, sales or marketing
        Column("created_at", TS, required=True),
        Column("closed_at", TS),
        Column("status", S, required=True),  # open, won or lost
        Column("properties", J),
    ),
)

CHURN_REASONS = TableSpec(
    "churn_reasons",
    key="churn_id",
    columns=(
        Column("churn_id", S, required=True),
        Column("account_id", S, required=True, references="accounts"),
        Column("churned_at", TS, required=True),
        Column("reason", S, required=True),
        Column("controllable", B),
        Column("notes", S),
        Column("properties", J),
    ),
)

QUARANTINE = TableSpec(
    "quarantine",
    key="quarantine_id",
    columns=(
        Column("quarantine_id", S, required=True),
        Column("table_name", S, required=True),
        Column("file", S, required=True),
        Column("row_number", INT, required=True),
        Column("column_name", S),
        Column("reason", S, required=True),
        Column("raw", J),
        Column("quarantined_at", TS, required=True),
    ),
)

# The engine's enrollment facts, published into the warehouse so expressions (`in job "X"`) and
# reports can join them. Written by the engine (``engine.publish``), never imported by users.
ENROLLMENTS = TableSpec(
    "closeloop_enrollments",
    key="enrollment_id",
    columns=(
        Column("enrollment_id", S, required=True),
        Column("job_name", S, required=True),
        Column("job_version", INT, required=True),
        Column("account_id", S, required=True),
        Column("person_id", S),  # set for jobs whose target is a person
        Column("arm", S, required=True),
        Column("entered_at", TS, required=True),
        Column("completed_at", TS),
        Column("exited_at", TS),
        Column("exit_reason", S),
    ),
)

# The simulator's ground truth per job, variant and segment (``closeloop simulate --run-jobs`` and
# the demo write it; replaced as a whole each time). Never imported by users.
GROUND_TRUTH = TableSpec(
    "closeloop_ground_truth",
    key="truth_id",
    columns=(
        Column("truth_id", S, required=True),  # job|variant|segment
        Column("job_name", S, required=True),
        Column("variant", S, required=True),
        Column("segment", S, required=True),
        Column("horizon_days", F, required=True),
        Column("n", INT, required=True),
        Column("completion_if_treated", F, required=True),
        Column("completion_if_control", F, required=True),
        Column("effect", F, required=True),
        Column("as_of", TS, required=True),
    ),
)

# Daily point-in-time health scores (``closeloop health snapshot``, and the daemon once a day): one
# row per score, account and day; taking a day again replaces that day's rows. Never imported.
HEALTH_SCORES = TableSpec(
    "closeloop_health_scores",
    key="snapshot_id",
    columns=(
        Column("snapshot_id", S, required=True),  # score|account|day
        Column("score_name", S, required=True),
        Column("account_id", S, required=True),
        Column("day", D, required=True),
        Column("score", F),  # null when no measure has a value
        Column("band", S),
        Column("measures", J),  # each measure's value, scaled value, weight, missing flag
        Column("computed_at", TS, required=True),
    ),
)

# Values written onto accounts and people with their time (``send: set_attribute`` write-backs),
# so an "as of" question sees a value only from the moment it was written.
ATTRIBUTE_HISTORY = TableSpec(
    "attribute_history",
    key="write_id",
    columns=(
        Column("write_id", S, required=True),  # the delivery's idempotency key
        Column("entity", S, required=True),  # account or person
        Column("entity_id", S, required=True),
        Column("name", S, required=True),
        Column("value", J),  # JSON text, so numbers and booleans keep their type
        Column("valid_from", TS, required=True),
        Column("source", S),  # e.g. "job:Integration nudge"
    ),
)

CANONICAL_TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        ACCOUNTS,
        PEOPLE,
        EVENTS,
        SUBSCRIPTIONS,
        SURVEY_RESPONSES,
        ACTIVITIES,
        OPPORTUNITIES,
        CHURN_REASONS,
    )
}
"""Every importable table, parents before children (the order a loader should write them in)."""
