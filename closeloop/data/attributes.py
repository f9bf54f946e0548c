"""The stored attributes expressions may use (the accounts' and people's columns), without
loading Ibis: loading a project's definitions needs these names and types, not the compiler."""

from __future__ import annotations

from closeloop.data.tables import ACCOUNTS, PEOPLE, ColumnType
from closeloop.definitions.expressions import AttributeType

ALIASES = {"signup_date": "created_at"}
ATTRIBUTE_TYPES = {
    ColumnType.STRING: AttributeType.STRING,
    ColumnType.FLOAT: AttributeType.NUMBER,
    ColumnType.INTEGER: AttributeType.NUMBER,
    ColumnType.TIMESTAMP: AttributeType.TIMESTAMP,
    ColumnType.DATE: AttributeType.DATE,
    ColumnType.BOOLEAN: AttributeType.BOOLEAN,
}


def account_attributes() -> dict[str, AttributeType]:
    """The stored account attributes: the accounts table's columns and their aliases."""
    attributes = {
        column.name: ATTRIBUTE_TYPES[column.type]
        for column in ACCOUNTS.columns
        if column.type in ATTRIBUTE_TYPES and column.name != "properties"
    }
    for alias, column in ALIASES.items():
        attributes[alias] = attributes[column]
    return attributes


def person_attributes() -> dict[str, AttributeType]:
    """The stored person attributes: the people table's columns."""
    return {
        column.name: ATTRIBUTE_TYPES[column.type]
        for column in PEOPLE.columns
        if column.type in ATTRIBUTE_TYPES and column.name != "properties"
    }
