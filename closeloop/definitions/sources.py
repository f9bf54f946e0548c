"""``sources:`` in closeloop.yaml: canonical tables read in place from the warehouse.

Each entry maps one canonical table (DESIGN §3) onto an existing table or view and names, per
canonical column, the source column that holds it. Nothing is copied: the data layer reads the
source through a renaming, casting view (``closeloop.data.sources``). Which columns a canonical
table has is the data layer's knowledge, so mapped column names are checked by ``closeloop
validate`` against the warehouse, not here.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# The canonical tables, parents first (closeloop.data.tables.CANONICAL_TABLES; a test keeps the
# two equal: definitions may not import the data layer).
SOURCE_TABLES = (
    "accounts",
    "people",
    "events",
    "subscriptions",
    "survey_responses",
    "activities",
    "opportunities",
    "churn_reasons",
)
MAX_NAME_PARTS = 3  # catalog.schema.table


class SourceMapping(BaseModel):
    """Where one canonical table is read in place: ``{table: crm_accounts, columns: {...}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str = Field(
        min_length=1,
        description="a table or view of the warehouse: name, schema.name or catalog.schema.name",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> source column; unmapped canonical columns are read from "
        "a source column of the same name, else are null",
    )

    @field_validator("table")
    @classmethod
    def _qualified_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > MAX_NAME_PARTS or any(not part.strip() for part in parts):
            raise ValueError(
                f"{value!r} is not a table name; write name, schema.name or catalog.schema.name"
            )
        return value

    @field_validator("columns")
    @classmethod
    def _named_columns(cls, value: dict[str, str]) -> dict[str, str]:
        for canonical, source in value.items():
            if not source.strip():
                raise ValueError(f"{canonical}: name the source column that holds it")
        return value

    @property
    def parts(self) -> tuple[str, ...]:
        """The table name split into catalog, schema and name (as many as were written)."""
        return tuple(self.table.split("."))

    def source_column(self, canonical: str) -> str:
        """The source column read for canonical column ``canonical``."""
        return self.columns.get(canonical, canonical)


def unknown_table_message(name: str) -> str:
    close = get_close_matches(name, SOURCE_TABLES, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"{name!r} is not a canonical table ({suggestion}tables: {', '.join(SOURCE_TABLES)})"


def _known_tables(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Each key names a canonical table; every problem of ``sources:`` is reported at once, an
    unknown table at its own key (so the error points at it) with the closest table name."""
    if not isinstance(value, dict):
        return handler(value)
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("unknown_table", unknown_table_message(str(name))),
            loc=(str(name),),
            input=name,
        )
        for name in value
        if name not in SOURCE_TABLES
    ]
    result = None
    try:
        result = handler({name: item for name, item in value.items() if name in SOURCE_TABLES})
    except ValidationError as inner:
        errors += [
            InitErrorDetails(
                type=error["type"],
                loc=error["loc"],
                input=error["input"],
                ctx=error.get("ctx", {}),
            )
            for error in inner.errors()
        ]
    if errors:
        raise ValidationError.from_exception_data("sources", errors)
    return result


Sources = Annotated[
    dict[str, SourceMapping],
    WrapValidator(_known_tables),
    Field(
        default_factory=dict,
        description="canonical table -> the warehouse table or view it is read from in place "
        "(docs/sources.md); tables not listed are imported",
        json_schema_extra={"propertyNames": {"enum": list(SOURCE_TABLES)}},
    ),
]
