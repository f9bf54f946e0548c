"""The machinery of loading: YAML files with positions, per-item validation, expressions parsed
and checked where they stand, problems collected (never raised one at a time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from closeloop.definitions.expressions import (
    AttributeType,
    Entity,
    Expression,
    Vocabulary,
    check_expression,
    parse_expression,
)
from closeloop.definitions.located_yaml import LocatedDocument, PathKey, load_located_yaml
from closeloop.definitions.models import ProjectConfig
from closeloop.errors import DefinitionError, ExpressionError

M = TypeVar("M", bound=BaseModel)


@dataclass
class Found:
    """A definition that validated on its own, with where it came from."""

    model: Any
    document: LocatedDocument
    path: PathKey


class Loader:
    def __init__(
        self,
        folder: Path,
        account_attributes: Mapping[str, AttributeType],
        person_attributes: Mapping[str, AttributeType],
    ) -> None:
        self.folder = folder
        self.account_attributes = account_attributes
        self.person_attributes = person_attributes
        self.errors: list[DefinitionError] = []
        # Expressions of items that failed validation, checked once the vocabulary is known.
        self.deferred: list[tuple[str, LocatedDocument, PathKey, Entity]] = []
        # Names of items that failed validation (by kind), so references to them are not
        # reported as unknown on top of the item's own problem.
        self.invalid_names: dict[str | int, dict[str, Entity]] = {}

    # -- files ------------------------------------------------------------------------------

    def files(
        self, config: ProjectConfig, config_doc: LocatedDocument, kind: str
    ) -> list[LocatedDocument]:
        listed: tuple[str, ...] | None = getattr(config, kind)
        names = listed if listed is not None else (f"{kind}.yaml",)
        documents = []
        for relative in names:
            path = self.folder / relative
            if not path.is_file():
                if listed is not None:
                    self.errors.append(
                        DefinitionError(
                            f"{kind} file {relative!r} does not exist",
                            config_doc.location((kind,)),
                            hint=f"create {path} or remove it from `{kind}:`",
                        )
                    )
                continue
            document = self.load(path)
            if document is not None:
                documents.append(document)
        return documents

    def load(self, path: Path) -> LocatedDocument | None:
        try:
            return load_located_yaml(path)
        except DefinitionError as error:
            self.errors.append(error)
            return None
        except OSError as error:
            self.errors.append(DefinitionError(f"cannot read {path}: {error.strerror}"))
            return None

    def items(
        self,
        documents: list[LocatedDocument],
        key: str,
        file_model: type[BaseModel],
        model: type[M],
        expression_fields: tuple[str, ...],
    ) -> list[Found]:
        """Validate each item of ``key`` on its own, so one bad item does not hide the others.

        An item whose fields do not validate still has its expressions parsed: every syntax
        problem of the file is reported at once.
        """
        found: list[Found] = []
        names: dict[str, str] = {}
        for document in documents:
            data = document.data
            items = data.get(key) if isinstance(data, dict) else None
            if not isinstance(items, list):
                self.validate(file_model, document)
                continue
            self.validate(file_model, document, data={**data, key: []})
            for index, item in enumerate(items):
                path: PathKey = (key, index)
                definition = self.validate(model, document, prefix=path, data=item)
                if definition is None:
                    if isinstance(item, dict):
                        self.parse_only(item, document, path, expression_fields)
                    continue
                name = str(definition.name)  # type: ignore[attr-defined]
                if name in names:
                    self.errors.append(
                        DefinitionError(
                            f"{key[:-1]} name {name!r} is used twice",
                            document.location((*path, "name")),
                            hint=f"the first is in {names[name]}; names are unique",
                        )
                    )
                    continue
                names[name] = document.file
                found.append(Found(definition, document, path))
        return found

    def parse_only(
        self, item: dict[str, Any], document: LocatedDocument, path: PathKey, keys: tuple[str, ...]
    ) -> None:
        """Remember the expressions of an item that did not validate, to check them later.

        ``keys`` name the expression fields; ``objectives.completion`` reaches into each item of
        a list. Once every name of the project is known (:meth:`check_deferred`), they are
        type-checked like the expressions of valid items, so one mistake does not hide another.
        """
        scope = Entity.PERSON if item.get("target") == "person" else Entity.ACCOUNT
        for key in keys:
            head, _, rest = key.partition(".")
            value = item.get(head)
            if rest:
                for number, child in enumerate(value if isinstance(value, list) else []):
                    if isinstance(child, dict) and isinstance(child.get(rest), str):
                        where = (*path, head, number, rest)
                        self.deferred.append((child[rest], document, where, scope))
                continue
            texts = value if isinstance(value, list) else [value]
            for number, text in enumerate(texts):
                if isinstance(text, str):
                    where = (*path, head, number) if isinstance(value, list) else (*path, head)
                    self.deferred.append(
                        (text, document, where, Entity.PERSON if head == "people" else scope)
                    )
        name = item.get("name")
        if isinstance(name, str):
            self.invalid_names.setdefault(path[0], {})[name] = scope

    def check_deferred(self, vocabulary: Vocabulary) -> None:
        for text, document, where, scope in self.deferred:
            self.parse(text, document, where, vocabulary, scope)
        self.deferred.clear()

    def validate(
        self,
        model: type[M],
        document: LocatedDocument,
        *,
        prefix: PathKey = (),
        data: Any = None,
    ) -> M | None:
        try:
            return model.model_validate(document.data if data is None else data)
        except ValidationError as validation:
            for problem in validation.errors():
                path: PathKey = prefix + tuple(
                    part
                    for part in problem["loc"]
                    if isinstance(part, str | int) and part not in _UNION_TAGS
                )
                is_unknown_key = problem["type"] == "extra_forbidden"
                where = ".".join(str(part) for part in path) or "(top level)"
                message = problem["msg"].removeprefix("Value error, ")
                hint = ""
                if is_unknown_key:
                    allowed = _allowed_fields(model, path[len(prefix) :])
                    message = f"unknown field {path[-1]!r}" if path else message
                    hint = f"allowed here: {', '.join(allowed)}" if allowed else ""
                self.errors.append(
                    DefinitionError(
                        f"{where}: {message}",
                        document.location(path, key=is_unknown_key),
                        hint=hint,
                    )
                )
            return None

    # -- expressions ------------------------------------------------------------------------

    def parse(
        self,
        text: str,
        document: LocatedDocument,
        where: PathKey,
        vocabulary: Vocabulary | None,
        scope: Entity = Entity.ACCOUNT,
    ) -> Expression | None:
        """Parse (and, given a vocabulary, type-check) the expression at ``where``."""
        line, column, block = document.value_start(where)
        if block:
            # Block scalars lose their indentation; restore it so columns match the file.
            text = "\n".join(" " * (column - 1) + part for part in text.splitlines())
            column = 1
        try:
            expression = parse_expression(text, file=document.file, line=line, column=column)
            if vocabulary is not None:
                check_expression(
                    expression,
                    vocabulary,
                    text=text,
                    file=document.file,
                    line=line,
                    column=column,
                    scope=scope,
                )
        except ExpressionError as error:
            self.errors.append(error)
            return None
        return expression

    def has_errors_since(self, before: int) -> bool:
        """Whether an error (not a warning) was reported after the first ``before`` problems."""
        return any(error.severity == "error" for error in self.errors[before:])

    def fail(self, message: str, found: Found, key: PathKey = (), hint: str = "") -> None:
        self.errors.append(
            DefinitionError(message, found.document.location((*found.path, *key)), hint=hint)
        )

    def warn(self, message: str, found: Found, key: PathKey = (), hint: str = "") -> None:
        self.errors.append(
            DefinitionError(
                message,
                found.document.location((*found.path, *key)),
                hint=hint,
                severity="warning",
            )
        )


_UNION_TAGS = {
    "action",
    "EmailStep",
    "WaitStep",
    "ReEntryPolicy",
    "email",
    "slack",
    "webhook",
    "set_attribute",
    "enroll",
    "file",
    "literal['never']",
}


def _allowed_fields(model: type[BaseModel], path: PathKey) -> list[str]:
    current: Any = model
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field_info = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field_info is None:
            return []
        annotation = field_info.annotation
        args = [*getattr(annotation, "__args__", ())]
        for arg in list(args):
            args.extend(getattr(arg, "__args__", ()))
        candidates = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(current.model_fields) if hasattr(current, "model_fields") else []
