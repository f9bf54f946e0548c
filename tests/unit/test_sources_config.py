"""``sources:`` in closeloop.yaml: the model, and a mapping checked and applied to a schema."""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import pytest
from pydantic import ValidationError

from closeloop.data.sources import canonical_view, extra_attributes, structure_problems
from closeloop.data.tables import ACCOUNTS, CANONICAL_TABLES, EVENTS
from closeloop.definitions.expressions import AttributeType
from closeloop.definitions.models import ProjectConfig, SourceMapping
from closeloop.definitions.sources import SOURCE_TABLES


def _config(sources: object) -> ProjectConfig:
    return ProjectConfig.model_validate({"name": "t", "sources": sources})


def _errors(sources: object) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as raised:
        _config(sources)
    return [(error["loc"], error["msg"]) for error in raised.value.errors()]


def test_the_canonical_tables_are_the_data_layers() -> None:
    assert tuple(CANONICAL_TABLES) == SOURCE_TABLES


def test_the_documented_example_loads() -> None:
    config = _config(
        {
            "accounts": {
                "table": "crm_accounts",
                "columns": {"account_id": "id", "name": "company", "segment": "tier"},
            },
            "events": {"table": "analytics.product_events"},
        }
    )
    events = config.sources["events"]
    assert events.parts == ("analytics", "product_events")
    assert events.source_column("timestamp") == "timestamp"
    assert config.sources["accounts"].source_column("segment") == "tier"
    assert ProjectConfig(name="t").sources == {}


def test_an_unknown_table_is_reported_at_its_key_with_the_closest_name() -> None:
    errors = _errors({"acounts": {"table": "crm"}, "events": {"table": "e", "column": {}}})
    assert errors[0][0] == ("sources", "acounts")
    assert "'acounts' is not a canonical table (did you mean 'accounts'?" in errors[0][1]
    # The other entries' problems come in the same report.
    assert errors[1] == (("sources", "events", "column"), "Extra inputs are not permitted")


@pytest.mark.parametrize("table", ["", "a..b", "a.b.c.d", " .x"])
def test_a_table_name_has_one_to_three_parts(table: str) -> None:
    (location, message), *_ = _errors({"people": {"table": table}})
    assert location == ("sources", "people", "table")
    assert message


def test_a_mapped_column_names_its_source() -> None:
    (location, message), *_ = _errors({"people": {"table": "p", "columns": {"email": " "}}})
    assert location == ("sources", "people", "columns")
    assert "email: name the source column" in message


CRM = ibis.schema(
    {
        "id": "int32",
        "company": "string",
        "signup": dt.Timestamp(timezone="UTC"),
        "tier": "string",
        "arr": dt.Decimal(12, 2),
        "health": "float64",
        "tags": "array<string>",
        "plan": "string",
    }
)
CRM_MAPPING = SourceMapping(
    table="crm_accounts",
    columns={"account_id": "id", "name": "company", "created_at": "signup", "segment": "tier"},
)


def test_a_mapped_table_has_the_canonical_schema_then_its_other_columns() -> None:
    assert structure_problems(ACCOUNTS, CRM_MAPPING, CRM) == []
    view = canonical_view(ACCOUNTS, CRM_MAPPING, ibis.table(CRM, name="crm_accounts"))
    schema = view.schema()
    assert list(schema.names[: len(ACCOUNTS.columns)]) == list(ACCOUNTS.column_names)
    assert {name: schema[name] for name in ACCOUNTS.column_names} == dict(
        ACCOUNTS.ibis_schema().items()
    )
    # Other columns of usable types stay, as attributes; an array is left out.
    assert extra_attributes(view, ACCOUNTS) == {
        "id": AttributeType.NUMBER,
        "company": AttributeType.STRING,
        "signup": AttributeType.TIMESTAMP,
        "tier": AttributeType.STRING,
        "health": AttributeType.NUMBER,
    }
    assert "tags" not in schema
    assert schema["signup"] == dt.timestamp  # zoned times are read as UTC, without the zone


def test_structure_problems_name_the_column_and_what_would_fix_it() -> None:
    mapping = SourceMapping(
        table="analytics.product_events",
        columns={"event_id": "uid", "acount_id": "acct", "name": "evnt", "value": "label"},
    )
    schema = ibis.schema(
        {"uid": "string", "acct": "int64", "evt": "string", "ts": "string", "label": "string"}
    )
    found = structure_problems(EVENTS, mapping, schema)
    problems = {problem.path: problem for problem in found}
    assert set(problems) == {
        ("columns", "acount_id"),
        ("columns", "name"),
        ("columns", "value"),
        ("table",),
    }
    assert problems[("columns", "acount_id")].at_key
    assert "did you mean 'account_id'?" in problems[("columns", "acount_id")].hint
    assert problems[("columns", "name")].message == (
        "analytics.product_events has no column 'evnt'"
    )
    assert problems[("columns", "name")].hint == "did you mean 'evt'?"
    assert problems[("columns", "value")].message == (
        "analytics.product_events.label is of type string; events.value needs a number"
    )
    # Required columns neither mapped nor found by name are reported at the table.
    required = [problem.message for problem in found if problem.path == ("table",)]
    assert [message.split(" is required")[0] for message in required] == [
        "events.account_id",
        "events.timestamp",
    ]
