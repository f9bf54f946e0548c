"""Terminal rendering (Rich) of definition results: problems, validation, matches, stages,
definition lists and histories. Formatting only; the models come from ``closeloop.schemas``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from closeloop.errors import LocatedError
from closeloop.present.format import SEVERITY_STYLE
from closeloop.schemas.definitions import (
    DefinitionHistory,
    DefinitionList,
    DefinitionProblem,
    Matches,
    Validation,
    problem_of,
)
from closeloop.schemas.errors import ErrorLocation

DIFF_STYLE = {"+": "green", "-": "red", "@": "cyan"}


def where(location: ErrorLocation) -> str:
    """``file:line:col`` (or ``line:col`` for a text without a file)."""
    prefix = f"{location.file}:" if location.file else ""
    return f"{prefix}{location.line}:{location.column}"


def problem_text(problem: DefinitionProblem | LocatedError) -> Text:
    """``file:line:col: error|warning: message``, then the line with a caret, then the hint."""
    if isinstance(problem, LocatedError):
        problem = problem_of(problem)
    text = Text()
    location = problem.location
    if location is not None and location.line is not None:
        text.append(f"{where(location)}: ", style="bold")
    text.append(f"{problem.severity}:", style=SEVERITY_STYLE.get(problem.severity, "white"))
    text.append(f" {problem.message}")
    if location is not None and location.caret:
        text.append(f"\n{location.caret}")
    if problem.hint:
        text.append(f"\n    hint: {problem.hint}", style="dim")
    return text


def problems_summary(errors: int, warnings: int) -> str:
    return (
        f"{errors + warnings} problem(s) found: {errors} error(s), {warnings} warning(s)"
        if errors + warnings
        else "no problems found"
    )


def print_validation(console: Console, result: Validation) -> None:
    """Every problem at its place, then the count (or ``ok`` when there is no error)."""
    for problem in result.problems:
        console.print(problem_text(problem), highlight=False, soft_wrap=True)
    if not result.valid:
        console.print(problems_summary(result.errors, result.warnings), highlight=False)
        return
    console.print(
        f"[green]ok[/green]: {result.definitions} definition(s) valid "
        f"({result.jobs} job(s)); {problems_summary(0, result.warnings)}",
        highlight=False,
    )


def print_warnings(console: Console, warnings: list[str]) -> None:
    """Data warnings (stale data, names the data lacks) in yellow, one line each."""
    for warning in warnings:
        console.print(
            f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True
        )


def print_matches(console: Console, title: str, matches: Matches) -> None:
    """The count, a sample table (the id first, then details) and the SQL when there is one."""
    console.print(
        f"[bold]{matches.count:,}[/bold] {matches.target.value}(s) match {escape(title)} "
        f"as of {matches.as_of:%Y-%m-%d %H:%M} UTC"
    )
    if matches.sample:
        columns = list(matches.sample[0])
        table = Table(title=f"Sample ({len(matches.sample)})", title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in matches.sample:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)
    if matches.sql:
        from rich.syntax import Syntax  # here: it loads Pygments, which only the SQL needs

        console.print("[bold]SQL[/bold]")
        console.print(Syntax(matches.sql, "sql", word_wrap=True))
    print_warnings(console, matches.warnings)


def print_definitions(console: Console, found: DefinitionList) -> None:
    table = Table(title="Definitions", title_justify="left")
    for column in ("kind", "name", "hash", "version", "recorded", "author"):
        table.add_column(column)
    for item in found.definitions:
        latest = item.latest
        current = latest is not None and latest.content_hash == item.content_hash
        table.add_row(
            item.kind.value,
            item.name,
            item.content_hash,
            (f"v{latest.version}" + ("" if current else " (differs)")) if latest else "-",
            f"{latest.created_at:%Y-%m-%d %H:%M}" if latest else "-",
            latest.author if latest else "-",
        )
    console.print(table)


def print_history(console: Console, found: DefinitionHistory) -> None:
    for version in found.versions:
        console.print(
            f"[bold]{version.kind.value} {escape(version.name)} v{version.version}[/bold] · "
            f"{version.created_at:%Y-%m-%d %H:%M:%S} UTC · {escape(version.author)} · "
            f"{version.content_hash}",
            highlight=False,
        )
        console.print(diff_text(version.diff), highlight=False, soft_wrap=True)


def diff_text(diff: str) -> Text:
    """A unified diff coloured by line (no padding, so it copies and pipes cleanly)."""
    text = Text()
    for line in diff.splitlines(keepends=True):
        text.append(line, style=DIFF_STYLE.get(line[:1], ""))
    return text
