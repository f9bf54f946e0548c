"""``closeloop tokens``: create (the token is printed once), list and revoke API tokens.

The tokens live in the state store, hashed; these commands need neither the warehouse nor valid
definitions, so they work while ``closeloop serve`` holds the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from closeloop.cli.common import FormatOption, OutputFormat, ProjectOption, console, reports_errors
from closeloop.schemas.options import Role

if TYPE_CHECKING:
    from closeloop.schemas.tokens import TokenInfo

tokens_app = typer.Typer(
    help="API tokens (Bearer, or the HTTP Basic user as Segment sends its write key): "
    "create, list, revoke.",
    no_args_is_help=True,
)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else ""


def _print_tokens(tokens: Sequence[TokenInfo], output_format: OutputFormat) -> None:
    if output_format == OutputFormat.JSON:
        from pydantic import TypeAdapter

        from closeloop.schemas.tokens import TokenInfo

        listed = TypeAdapter(list[TokenInfo]).dump_json(list(tokens), indent=2)
        typer.echo(listed.decode())
        return
    table = Table("id", "name", "role", "prefix", "created", "by", "last used", "revoked")
    for token in tokens:
        table.add_row(
            str(token.id),
            token.name,
            token.role.value,
            token.prefix + "…",
            _when(token.created_at),
            token.created_by,
            _when(token.last_used_at),
            _when(token.revoked_at),
        )
    console.print(table)


@tokens_app.command("create")
@reports_errors
def create(
    role: Annotated[
        Role, typer.Option(help="admin, editor, viewer, or ingest (may only write events).")
    ],
    name: Annotated[str, typer.Option(help="Who or what uses the token (e.g. segment, ci).")],
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Create a token with a role and print it once: only its SHA-256 is kept."""
    from closeloop.schemas import dump_json
    from closeloop.services import tokens as token_service

    with token_service.project_store(project) as (settings, store):
        created = token_service.create_token(store, name=name, role=role, actor=settings.author)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(created))
        return
    console.print(
        f"created token {created.id} {created.name!r} with role {created.role.value}; "
        "it is shown this once, store it now:",
        highlight=False,
    )
    typer.echo(created.token)


@tokens_app.command("list")
@reports_errors
def list_(
    include_revoked: Annotated[
        bool, typer.Option("--all", help="Also list revoked tokens.")
    ] = False,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The tokens: name, role, the first characters, when created, last used, revoked."""
    from closeloop.services import tokens as token_service

    with token_service.project_store(project) as (_settings, store):
        tokens = token_service.list_tokens(store, include_revoked=include_revoked)
    if not tokens and output_format == OutputFormat.TABLE:
        console.print("no API tokens: create one with `closeloop tokens create --role R --name N`")
        return
    _print_tokens(tokens, output_format)


@tokens_app.command("revoke")
@reports_errors
def revoke(
    name_or_id: Annotated[str, typer.Argument(help="The token's name (all with it) or id.")],
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Revoke tokens by name or id: requests carrying them get 401 from now on."""
    from closeloop.services import tokens as token_service

    with token_service.project_store(project) as (settings, store):
        revoked = token_service.revoke_token(store, name_or_id, actor=settings.author)
    if output_format == OutputFormat.JSON:
        _print_tokens(revoked, output_format)
        return
    for token in revoked:
        console.print(f"revoked token {token.id} {token.name!r} ({token.role.value})")
