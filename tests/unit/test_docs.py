"""Docs that cannot drift: every definition field and every CLI command is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import typer.main
from pydantic import BaseModel

from closeloop.cli.main import app
from closeloop.definitions.json_schema import FILE_KINDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "definitions.md").read_text(encoding="utf-8") + (
    ROOT / "README.md"
).read_text(encoding="utf-8")


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """``model`` and every model reachable through its fields' annotations."""
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        pending: list[object] = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _models(annotation, seen)
            pending.extend(typing.get_args(annotation))
    return seen


def _fields() -> list[tuple[str, str]]:
    models: set[type[BaseModel]] = set()
    for model, _ in FILE_KINDS.values():
        _models(model, models)
    return sorted(
        (model.__name__, name)
        for model in models
        if not model.__name__.endswith("File")  # the wrappers' one field is the list itself
        for name in model.model_fields
    ) + [("file", kind) for kind in FILE_KINDS if kind != "closeloop"]


def _commands(group: typing.Any, prefix: str = "") -> list[str]:
    # Groups have ``commands`` (typer's command classes; click may be vendored inside typer).
    found = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        found.append(path)
        if hasattr(command, "commands"):
            found.extend(_commands(command, f"{path} "))
    return sorted(found)


FIELDS = _fields()
COMMANDS = _commands(typer.main.get_command(app))


def test_the_walk_finds_nested_models() -> None:
    names = {model for model, _ in FIELDS}
    assert {"JobDefinition", "Hypothesis", "Ratio", "StageExit", "ContactPolicy"} <= names
    assert {"explain", "definitions history", "schema", "validate"} <= set(COMMANDS)


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=[f"{m}.{n}" for m, n in FIELDS])
def test_every_definition_field_is_documented(model: str, name: str) -> None:
    # Fields are written in backticks, alone or as part of a dotted path (`exit.after_days`).
    pattern = rf"`(?:[\w\[\]]+\.)*{re.escape(name)}(?:[.\[`:\s])"
    assert re.search(pattern, DOCS), f"{model}.{name} is not documented in docs/definitions.md"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    assert f"closeloop {command}" in DOCS or f"`{command}`" in DOCS, (
        f"`closeloop {command}` is not documented in README.md or docs/definitions.md"
    )
