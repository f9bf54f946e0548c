"""``closeloop plans``: success plans agreed with customers (docs/success-plans.md).

Writes take ``--expect-version N``: the change is refused, with nothing written, when someone
changed the plan since version N was read.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from closeloop.cli.common import (
    FormatOption,
    OutputFormat,
    ProjectOption,
    console,
    parse_time,
    reports_errors,
)

if TYPE_CHECKING:
    from closeloop.schemas.plans import Plan

plans_app = typer.Typer(
    help="Success plans: objectives agreed with a customer, milestones, renegotiations, "
    "goals achieved.",
    no_args_is_help=True,
)


class Status(StrEnum):
    OPEN = "open"
    MET = "met"
    MISSED = "missed"
    DROPPED = "dropped"


class Dropped(StrEnum):
    DROPPED = "dropped"


class By(StrEnum):
    CSM = "csm"
    SEGMENT = "segment"


AtOption = Annotated[
    str | None, typer.Option("--at", help="Statuses as of this time (ISO; default: now).")
]
ExpectVersion = Annotated[
    int | None,
    typer.Option(
        "--expect-version",
        min=1,
        help="Refuse (nothing written) unless the plan is still at this version.",
    ),
]


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO date (e.g. 2024-06-30)") from None


def _print(plan: Plan, output_format: OutputFormat) -> None:
    from closeloop.present.plans import print_plan
    from closeloop.schemas import dump_json

    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(plan))
    else:
        print_plan(console, plan)


@plans_app.command("list")
@reports_errors
def list_plans(
    account: Annotated[str | None, typer.Option(help="Only this account's plans.")] = None,
    owner: Annotated[
        str | None, typer.Option(help="Only plans this person owns, or owns an objective of.")
    ] = None,
    status: Annotated[
        Status | None, typer.Option(help="Only plans with an objective in this status.")
    ] = None,
    at: AtOption = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Success plans, each with its objectives counted by status."""
    from closeloop.present.plans import print_plan_list
    from closeloop.schemas import dump_json
    from closeloop.services import plans as service
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        result = service.list_plans(
            workspace,
            account_id=account,
            owner=owner,
            status=status.value if status else None,
            at=parse_time(at) if at else None,
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_plan_list(console, result)


@plans_app.command("show")
@reports_errors
def show(
    plan: Annotated[int, typer.Argument(help="The plan's id.")],
    version: Annotated[
        int | None, typer.Option(min=1, help="Show the plan as this version left it.")
    ] = None,
    at: AtOption = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """One plan: objectives, progress, milestones (50/80/100%), renegotiations, versions."""
    from closeloop.services import plans as service
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        result = service.show_plan(
            workspace, plan, version=version, at=parse_time(at) if at else None
        )
    _print(result, output_format)


@plans_app.command("create")
@reports_errors
def create(
    account: Annotated[str, typer.Argument(help="The account's id.")],
    title: Annotated[str, typer.Option(help="The plan's title.")],
    owner: Annotated[str | None, typer.Option(help="The plan's owner (CSM).")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", exists=True, dir_okay=False, help="A YAML list of objectives to agree."
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Create a plan for an account (version 1), with the objectives of --file."""
    from closeloop.schemas.plans import PlanCreate
    from closeloop.services import plans as service
    from closeloop.services.plan_objectives import request
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        objectives = service.objectives_file(workspace, file) if file else []
        body = request(PlanCreate, account_id=account, title=title, owner=owner)
        result = service.create_plan(
            workspace,
            body.model_copy(update={"objectives": objectives}),
            actor=workspace.settings.author,
        )
    _print(result, output_format)


@plans_app.command("add-objective")
@reports_errors
def add_objective(
    plan: Annotated[int, typer.Argument(help="The plan's id.")],
    title: Annotated[str | None, typer.Option(help="The objective's title.")] = None,
    measure: Annotated[
        str, typer.Option(help='An expression (a number or a condition), or "manual".')
    ] = "manual",
    target: Annotated[float | None, typer.Option(help="The agreed target value.")] = None,
    target_date: Annotated[
        str | None, typer.Option("--date", help="The agreed date (ISO, e.g. 2024-06-30).")
    ] = None,
    baseline: Annotated[
        float | None, typer.Option(help="Manual objectives: the value today.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="The objective's CSM.")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", exists=True, dir_okay=False, help="A YAML list of objectives."),
    ] = None,
    expect_version: ExpectVersion = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Add objectives to a plan: one from the options, or the list of --file."""
    from closeloop.schemas.plans import ObjectiveInput
    from closeloop.services import plans as service
    from closeloop.services.plan_objectives import request
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        if file is not None:
            objectives = service.objectives_file(workspace, file)
        else:
            objectives = [
                request(
                    ObjectiveInput,
                    title=title,
                    measure=measure,
                    target=target,
                    target_date=_date(target_date),
                    baseline=baseline,
                    owner=owner,
                )
            ]
        result = service.add_objectives(
            workspace,
            plan,
            objectives,
            expected_version=expect_version,
            actor=workspace.settings.author,
        )
    _print(result, output_format)


@plans_app.command("update")
@reports_errors
def update(
    plan: Annotated[int, typer.Argument(help="The plan's id.")],
    objective: Annotated[int, typer.Argument(help="The objective's id.")],
    value: Annotated[
        float | None, typer.Option(help="A manual objective's value, observed now.")
    ] = None,
    status: Annotated[
        Dropped | None, typer.Option(help="dropped (met and missed are derived).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="The objective's new CSM.")] = None,
    title: Annotated[str | None, typer.Option(help="The objective's new title.")] = None,
    expect_version: ExpectVersion = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Record a manual value, drop an objective, or change its owner or title."""
    from closeloop.schemas.plans import ObjectiveUpdate
    from closeloop.services import plans as service
    from closeloop.services.plan_objectives import request
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        body = request(
            ObjectiveUpdate,
            value=value,
            status=status.value if status else None,
            owner=owner,
            title=title,
            version=expect_version,
        )
        result = service.update_objective(
            workspace, plan, objective, body, actor=workspace.settings.author
        )
    _print(result, output_format)


@plans_app.command("renegotiate")
@reports_errors
def renegotiate(
    plan: Annotated[int, typer.Argument(help="The plan's id.")],
    objective: Annotated[int, typer.Argument(help="The objective's id.")],
    target: Annotated[float, typer.Option(help="The newly agreed target value.")],
    reason: Annotated[str, typer.Option(help="Why the target changed.")],
    agreed_by: Annotated[str, typer.Option(help="The customer contact who agreed.")],
    target_date: Annotated[
        str | None, typer.Option("--date", help="The newly agreed date (default: unchanged).")
    ] = None,
    expect_version: ExpectVersion = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Agree a new target (and date) with the customer; the old one stays in the history."""
    from closeloop.schemas.plans import RenegotiationRequest
    from closeloop.services import plans as service
    from closeloop.services.plan_objectives import request
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        body = request(
            RenegotiationRequest,
            target=target,
            target_date=_date(target_date),
            reason=reason,
            agreed_by=agreed_by,
            version=expect_version,
        )
        result = service.renegotiate(
            workspace, plan, objective, body, actor=workspace.settings.author
        )
    _print(result, output_format)


@plans_app.command("check")
@reports_errors
def check(
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this time (default: now).")
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Evaluate open measured objectives in the warehouse and record their values.

    The daemon does this once a day."""
    from closeloop.present.plans import print_check
    from closeloop.schemas import dump_json
    from closeloop.services import plans as service
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        result = service.check(
            workspace, parse_time(at) if at else None, actor=workspace.settings.author
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_check(console, result)


@plans_app.command("achieved")
@reports_errors
def achieved(
    at: AtOption = None,
    by: Annotated[By, typer.Option(help="Group by csm or segment.")] = By.CSM,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The goals-achieved rate per CSM or segment, with Wilson intervals.

    Among objectives decided by --at (met, or past their agreed date), the share met."""
    from closeloop.present.plans import print_achieved
    from closeloop.schemas import dump_json
    from closeloop.services import plans as service
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        result = service.goals_achieved(workspace, parse_time(at) if at else None, by=by.value)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_achieved(console, result)


# -- the customer's read-only links (services.plan_links) -------------------------------------


@plans_app.command("share")
@reports_errors
def share(
    plan: Annotated[int, typer.Argument(help="The plan's id.")],
    expires: Annotated[
        str, typer.Option("--expires", help="How long the link works: 30d, 12h (at most 366d).")
    ] = "30d",
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="The dashboard's address, to print the whole link."),
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Create the customer's read-only link to a plan (shown once; revocable, expiring).

    The link opens /shared/plans/TOKEN on the dashboard without a login."""
    from closeloop.present.plan_links import print_created_link
    from closeloop.schemas import dump_json
    from closeloop.services import plan_links as link_service
    from closeloop.services.tokens import project_store

    with project_store(project) as (settings, store):
        result = link_service.share_plan(
            store,
            settings.secret,
            plan,
            expires_days=link_service.parse_expiry(expires),
            actor=settings.author,
            base_url=base_url,
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_created_link(console, result)


@plans_app.command("links")
@reports_errors
def links(
    plan: Annotated[int | None, typer.Argument(help="Only this plan's links.")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The customer links (of a plan, or of all), newest first, with state and last opening."""
    from closeloop.present.plan_links import print_links
    from closeloop.schemas import dump_json
    from closeloop.services import plan_links as link_service
    from closeloop.services.tokens import project_store

    with project_store(project) as (_settings, store):
        result = link_service.list_links(store, plan_id=plan)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_links(console, result.links)


@plans_app.command("unshare")
@reports_errors
def unshare(
    link: Annotated[int, typer.Argument(help="The link's id (closeloop plans links).")],
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Revoke a customer link for good: it then answers 410 Gone."""
    from closeloop.present.plan_links import print_revoked
    from closeloop.schemas import dump_json
    from closeloop.services import plan_links as link_service
    from closeloop.services.tokens import project_store

    with project_store(project) as (settings, store):
        result = link_service.revoke_link(store, link, actor=settings.author)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_revoked(console, result)
