"""``closeloop users``: the people who log in to the dashboard (add, list, remove).

Users live in the state store with an argon2 hash of their password; like ``tokens``, these
commands need neither the warehouse nor valid definitions.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from closeloop.cli.common import FormatOption, OutputFormat, ProjectOption, console, reports_errors
from closeloop.errors import ConfigurationError
from closeloop.schemas.options import UserRole

users_app = typer.Typer(
    help="Dashboard users (log in to the pages of closeloop serve): add, list, remove.",
    no_args_is_help=True,
)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else ""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigurationError("--password-stdin: no password on standard input")
        return password
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat the password", hide_input=True)
    if first != second:
        raise ConfigurationError("the two passwords differ; nothing was changed")
    return str(first)


@users_app.command("add")
@reports_errors
def add(
    name: Annotated[str, typer.Argument(help="The name to log in with.")],
    role: Annotated[
        UserRole,
        typer.Option(help="viewer (read), editor (also edit and launch jobs), admin (all)."),
    ] = UserRole.viewer,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ] = False,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Add a user; the password (asked twice, hidden) is stored as an argon2 hash only."""
    from closeloop.schemas import dump_json
    from closeloop.services import tokens as token_service
    from closeloop.services import users as user_service

    password = _password(password_stdin)
    with token_service.project_store(project) as (settings, store):
        user = user_service.add_user(
            store, name=name, role=role, password=password, actor=settings.author
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(user))
        return
    console.print(f"added user {user.name!r} with role {user.role.value}", highlight=False)


@users_app.command("list")
@reports_errors
def list_(
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The users: name, role, when added and by whom, last login."""
    from closeloop.schemas import dump_json
    from closeloop.services import tokens as token_service
    from closeloop.services import users as user_service

    with token_service.project_store(project) as (_settings, store):
        users = user_service.list_users(store)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(users))
        return
    if not users.users:
        console.print("no users: add one with `closeloop users add NAME --role viewer`")
        return
    table = Table("name", "role", "added", "by", "last login")
    for user in users.users:
        table.add_row(
            user.name,
            user.role.value,
            _when(user.created_at),
            user.created_by,
            _when(user.last_login_at),
        )
    console.print(table)


@users_app.command("remove")
@reports_errors
def remove(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Remove a user: their open sessions are revoked at once."""
    from closeloop.schemas import dump_json
    from closeloop.services import tokens as token_service
    from closeloop.services import users as user_service

    with token_service.project_store(project) as (settings, store):
        removed = user_service.remove_user(store, name, actor=settings.author)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(removed))
        return
    console.print(
        f"removed user {removed.user.name!r}; {removed.sessions_revoked} open session(s) revoked",
        highlight=False,
    )
