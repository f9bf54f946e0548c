"""What every command shares: consoles, options, time parsing, the one error renderer, bars."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from closeloop.errors import CloseloopError, DefinitionErrors, LocatedError, redact

# Piped output (CI logs, files) gets a width that fits the report tables; terminals use their own.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 132
console = Console(width=_WIDTH)
errors = Console(stderr=True, width=_WIDTH)

DATABASE_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "duckdb", "_duckdb")

P = ParamSpec("P")
R = TypeVar("R")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]

ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project", "-p", help="Project folder (default: the one containing the current folder)."
    ),
]


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Render closeloop errors once, as a message and exit code 1 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DefinitionErrors as problems:
            from closeloop.present.definitions import problem_text, problems_summary

            for problem in problems.errors:
                errors.print(problem_text(problem), highlight=False, soft_wrap=True)
            failing = sum(problem.severity == "error" for problem in problems.errors)
            errors.print(problems_summary(failing, len(problems.errors) - failing), highlight=False)
            raise typer.Exit(1) from None
        except LocatedError as error:
            from closeloop.present.definitions import problem_text

            errors.print(problem_text(error), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except CloseloopError as error:
            # The code in brackets is the one the API answers with for the same error.
            errors.print(
                f"[red]error:[/red] {escape(redact(str(error)))} [dim]\\[{error.code}][/dim]",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
        except Exception as error:
            # A database that is down, locked past its timeout or out of space is a condition of
            # the machine, not a bug: say so in one line (passwords masked), without a traceback.
            if not type(error).__module__.startswith(DATABASE_MODULES):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            errors.print(
                f"[red]error:[/red] the database refused: {redact(first) or type(error).__name__}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def parse_time(text: str) -> datetime:
    """ISO date or date-time; a zone is converted to UTC, no zone means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date or date-time (e.g. 2024-03-01T00:00)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def parse_interval(text: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise typer.BadParameter(f"{text!r} is not an interval like 1d, 6h, 30m or 10s")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def bar(*columns: TextColumn) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def now_or(text: str | None) -> datetime:
    """``--at``: the given time, or the wall clock (naive UTC)."""
    return parse_time(text) if text else datetime.now(UTC).replace(tzinfo=None)
