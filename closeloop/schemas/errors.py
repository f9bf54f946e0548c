"""One error shape for every surface: ``{"error": {"code", "message", "location", "hint"}}``.

``code`` is the ``code`` of the closeloop error class (the CLI prints the same codes), so a script
can branch on it whatever surface it talks to.
"""

from __future__ import annotations

from pydantic import Field

from closeloop.errors import (
    CloseloopError,
    DefinitionErrors,
    LocatedError,
    SourceLocation,
    redact,
)
from closeloop.schemas.base import Schema


class ErrorLocation(Schema):
    """Where the problem is: a file (or an import's row and column), line and column, the line."""

    file: str | None = None
    line: int | None = Field(default=None, ge=1)
    column: int | None = Field(default=None, ge=1)
    source_line: str | None = Field(default=None, description="the text of the offending line")
    caret: str | None = Field(default=None, description="the line with a caret under the column")


class ErrorBody(Schema):
    code: str = Field(description="machine-readable code, the same as the CLI's")
    message: str
    location: ErrorLocation | None = None
    hint: str = ""
    problems: list[ErrorBody] = Field(
        default_factory=list, description="every problem, when several were found at once"
    )


class ErrorResponse(Schema):
    error: ErrorBody


def location_of(location: SourceLocation | None) -> ErrorLocation | None:
    if location is None:
        return None
    return ErrorLocation(
        file=location.file,
        line=location.line,
        column=location.column,
        source_line=location.source_line.rstrip("\n") if location.source_line else None,
        caret=location.caret() or None,
    )


def error_body(error: BaseException) -> ErrorBody:
    """The public shape of a closeloop error (secrets in URLs masked)."""
    if isinstance(error, DefinitionErrors):
        problems = [error_body(problem) for problem in error.errors]
        first = problems[0] if problems else None
        count = len(problems)
        return ErrorBody(
            code=DefinitionErrors.code,
            message=f"{count} problem{'s' if count != 1 else ''} in the definitions"
            + (f"; the first: {first.message}" if first else ""),
            location=first.location if first else None,
            hint=first.hint if first else "",
            problems=problems,
        )
    if isinstance(error, LocatedError):
        return ErrorBody(
            code=type(error).code,
            message=redact(error.message),
            location=location_of(error.location),
            hint=redact(error.hint),
        )
    code = type(error).code if isinstance(error, CloseloopError) else "internal_error"
    return ErrorBody(code=code, message=redact(str(error)))


def error_response(error: BaseException) -> ErrorResponse:
    return ErrorResponse(error=error_body(error))
