"""Objectives as people write them (a YAML file, an API body, CLI options), checked before
anything is stored: every problem at once, each with file:line:column and a caret.

A measure is ``manual``, a number (``count(event "report_viewed")``, ``seats_used``,
``count(people where role = "admin")``), or a condition (``count(event "login") >= 10``: 1 when
it holds, else 0), in the project's expression language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from closeloop.definitions.expressions import (
    Attribute,
    AttributeType,
    Entity,
    EventCount,
    Expression,
    HasValue,
    Literal,
    LiteralKind,
    Operand,
    PeopleCount,
    Vocabulary,
    check_expression,
    parse_expression,
)
from closeloop.definitions.located_yaml import LocatedDocument, PathKey, load_located_yaml
from closeloop.engine.plans import MANUAL
from closeloop.errors import DefinitionError, DefinitionErrors, ExpressionError, SourceLocation
from closeloop.schemas.plans import ObjectiveInput

MEASURE_HINT = (
    'a measure is "manual", a number such as count(event "report_viewed") or an attribute, '
    'or a condition such as count(event "login") >= 10 (1 when it holds, else 0)'
)


@dataclass(frozen=True)
class ParsedMeasure:
    """A measure ready to evaluate: the node and whether it is a condition (1/0)."""

    text: str
    node: Expression | Operand
    is_condition: bool


def _number_type(node: Operand, vocabulary: Vocabulary) -> AttributeType | None:
    if isinstance(node, EventCount | PeopleCount):
        return AttributeType.NUMBER
    if isinstance(node, Literal):
        return AttributeType.NUMBER if node.kind == LiteralKind.NUMBER else None
    if isinstance(node, Attribute):
        resolved = vocabulary.resolve(node, Entity.ACCOUNT)
        return None if resolved is None else resolved[1]
    return None


def parse_measure(
    text: str,
    vocabulary: Vocabulary,
    *,
    file: str | None = None,
    line: int = 1,
    column: int = 1,
) -> ParsedMeasure:
    """Parse and type-check a measure that is not ``manual``; ExpressionError at the place.

    The language's grammar reads conditions; a number is read as the operand of
    ``<measure> has any value``, which leaves every column of the text where it was.
    """
    try:
        condition = parse_expression(text, file=file, line=line, column=column)
    except ExpressionError as as_condition:
        try:
            wrapped = parse_expression(f"{text} has any value", file=file, line=line, column=column)
        except ExpressionError as as_number:
            # Report the failure that lies inside the text the person wrote.
            inside = as_number.location is not None and (
                as_number.location.line > line
                or as_number.location.column < column + len(text.rstrip())
            )
            raise (as_number if inside else as_condition) from None
        assert isinstance(wrapped, HasValue)
        operand = wrapped.operand
        # Type-check the number where the checker accepts it: a count compared with 0 (its
        # filters, window and people condition checked), an attribute as having a value.
        probe: Expression = wrapped
        if isinstance(operand, EventCount | PeopleCount):
            probe = parse_expression(f"{text} >= 0", file=file, line=line, column=column)
        check_expression(probe, vocabulary, text=text, file=file, line=line, column=column)
        kind = _number_type(operand, vocabulary)
        if kind not in (AttributeType.NUMBER, AttributeType.BOOLEAN):
            described = "text or a time" if kind is None else f"a {kind}"
            raise ExpressionError(
                f"a measure must be a number or a condition; {text.strip()!r} is {described}",
                SourceLocation(line, column, file, _source_line(text, column)),
                MEASURE_HINT,
            ) from None
        return ParsedMeasure(text, wrapped.operand, False)
    check_expression(condition, vocabulary, text=text, file=file, line=line, column=column)
    return ParsedMeasure(text, condition, True)


def _source_line(text: str, column: int) -> str:
    return " " * (column - 1) + (text.splitlines() or [""])[0]


def measure_of(text: str, vocabulary: Vocabulary) -> ParsedMeasure | None:
    """The parsed measure of a stored objective (None for ``manual``)."""
    return None if text == MANUAL else parse_measure(text, vocabulary)


def check_objective(
    objective: ObjectiveInput,
    vocabulary: Vocabulary,
    *,
    where: str = "objective",
    document: LocatedDocument | None = None,
    path: PathKey = (),
) -> list[DefinitionError]:
    """The problems of one objective (empty when it can be stored)."""
    problems: list[DefinitionError] = []

    def at(key: str) -> SourceLocation | None:
        return None if document is None else document.location((*path, key))

    if objective.measure == MANUAL:
        if objective.baseline is None:
            problems.append(
                DefinitionError(
                    f"{where}: a manual objective needs its baseline (the value today)",
                    at("measure"),
                    "add `baseline: <number>`",
                )
            )
        elif objective.baseline == objective.target:
            problems.append(
                DefinitionError(
                    f"{where}: the target equals the baseline ({objective.target:g}): "
                    "there is nothing to progress towards",
                    at("target"),
                    "agree a target above or below today's value",
                )
            )
        return problems
    if objective.baseline is not None:
        problems.append(
            DefinitionError(
                f"{where}: the baseline of a measured objective is evaluated, not given",
                at("baseline"),
                'remove `baseline`, or make the measure "manual"',
            )
        )
    line, column, file = 1, 1, "measure"
    text = objective.measure
    if document is not None:
        line, column, block = document.value_start((*path, "measure"))
        file = document.file
        if block:
            text = "\n".join(" " * (column - 1) + part for part in text.splitlines())
            column = 1
    try:
        parse_measure(text, vocabulary, file=file, line=line, column=column)
    except ExpressionError as error:
        if error.hint:
            problems.append(error)
        else:
            problems.append(ExpressionError(error.message, error.location, MEASURE_HINT))
    return problems


def check_objectives(objectives: list[ObjectiveInput], vocabulary: Vocabulary) -> None:
    """Raise DefinitionErrors with every problem of these objectives (an API body, options)."""
    problems = [
        problem
        for index, objective in enumerate(objectives)
        for problem in check_objective(
            objective, vocabulary, where=f"objectives[{index}] ({objective.title!r})"
        )
    ]
    if problems:
        raise DefinitionErrors(problems)


def load_objectives(path: Path, vocabulary: Vocabulary) -> list[ObjectiveInput]:
    """The objectives of a YAML file (a list of mappings); DefinitionErrors with every problem,
    each located in the file."""
    document = load_located_yaml(path)
    data: Any = document.data
    if not isinstance(data, list):
        raise DefinitionErrors(
            [
                DefinitionError(
                    "an objectives file is a list of objectives",
                    document.location(()),
                    "start each objective with `- title: …` (fields: "
                    + ", ".join(ObjectiveInput.model_fields)
                    + ")",
                )
            ]
        )
    problems: list[DefinitionError] = []
    objectives: list[ObjectiveInput] = []
    for index, item in enumerate(data):
        try:
            objective = ObjectiveInput.model_validate(item)
        except ValidationError as validation:
            for problem in validation.errors():
                key: PathKey = (index, *(p for p in problem["loc"] if isinstance(p, str | int)))
                unknown = problem["type"] == "extra_forbidden"
                message = problem["msg"].removeprefix("Value error, ")
                hint = ""
                if unknown:
                    message = f"unknown field {key[-1]!r}"
                    hint = "allowed: " + ", ".join(ObjectiveInput.model_fields)
                where = ".".join(str(p) for p in key)
                problems.append(
                    DefinitionError(
                        f"{where}: {message}", document.location(key, key=unknown), hint
                    )
                )
            continue
        problems += check_objective(
            objective,
            vocabulary,
            where=f"{index} ({objective.title!r})",
            document=document,
            path=(index,),
        )
        objectives.append(objective)
    if problems:
        raise DefinitionErrors(problems)
    if not objectives:
        raise DefinitionErrors(
            [DefinitionError("the file lists no objectives", document.location(()))]
        )
    return objectives


M = TypeVar("M", bound=BaseModel)


def request(model: type[M], **fields: Any) -> M:
    """A request model from command-line options; each invalid option a located reason."""
    try:
        return model.model_validate(fields)
    except ValidationError as validation:
        problems = [
            DefinitionError(
                f"--{'.'.join(str(p) for p in problem['loc']).replace('_', '-')}: "
                f"{problem['msg'].removeprefix('Value error, ')}",
                hint="check the option's value",
            )
            for problem in validation.errors()
        ]
        raise DefinitionErrors(problems) from None
