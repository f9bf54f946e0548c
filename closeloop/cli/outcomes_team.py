"""``closeloop outcomes team``: activities per CSM and kind, contacts engaged, executive sponsors
and references, churn reasons with the controllable share, and a scorecard per CSM built on what
CS can influence, beside revenue (docs/metrics.md, "Team")."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, parse_time, reports_errors
from closeloop.present.format import count, money, num, pct

if TYPE_CHECKING:
    from closeloop.schemas.team import Scorecard, Share, TeamOutcomes


class TeamFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@reports_errors
def team(
    start: Annotated[str, typer.Option("--start", help="Window start (inclusive, ISO).")],
    end: Annotated[str, typer.Option("--end", help="Window end (exclusive, ISO).")],
    by: Annotated[
        str, typer.Option("--by", help="The account attribute naming each account's CSM.")
    ] = "owner",
    sponsor_attribute: Annotated[
        str,
        typer.Option(
            "--sponsor-attribute",
            help="Account attribute or property that flags an executive sponsor.",
        ),
    ] = "executive_sponsor",
    reference_attribute: Annotated[
        str,
        typer.Option(
            "--reference-attribute", help="Account attribute or property that flags a reference."
        ),
    ] = "reference",
    output_format: Annotated[
        TeamFormat, typer.Option("--format", help="table, json, or csv (the scorecards).")
    ] = TeamFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """A scorecard per CSM on what CS can influence (goals achieved, satisfaction, controllable
    churn, treated vs holdout completion) beside revenue; activities, contacts, sponsors,
    references and churn reasons, for the window [start, end)."""
    from closeloop.schemas import dump_json
    from closeloop.services import outcomes_team as service
    from closeloop.services.project import open_workspace

    window_start, window_end = parse_time(start), parse_time(end)
    with open_workspace(project, write=False) as workspace:
        result = service.team_outcomes(
            workspace,
            window_start,
            window_end,
            by=by,
            sponsor_attribute=sponsor_attribute,
            reference_attribute=reference_attribute,
        )
    if output_format == TeamFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == TeamFormat.CSV:
        write_csv(result)
    else:
        print_team(result)


def scorecard_row(card: Scorecard) -> dict[str, Any]:
    """A scorecard as one flat row: each share becomes ``NAME_successes``, ``NAME_n``, …"""
    from closeloop.schemas.team import Share

    row: dict[str, Any] = {}
    for name, value in card:
        if isinstance(value, Share):
            for part, number in value:
                row[f"{name}_{part}"] = number
        else:
            row[name] = value
    return row


def csv_fields() -> list[str]:
    """The columns of ``--format csv``, the same whether or not there are rows."""
    from closeloop.schemas.team import Scorecard, Share

    fields: list[str] = []
    for name, field in Scorecard.model_fields.items():
        if field.annotation is Share:
            fields.extend(f"{name}_{part}" for part in Share.model_fields)
        else:
            fields.append(name)
    return fields


def write_csv(result: TeamOutcomes) -> None:
    rows = [scorecard_row(card) for card in result.scorecards]
    fields = csv_fields()
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _share(value: Share) -> str:
    if value.rate is None:
        return "—"
    return (
        f"{pct(value.rate, 0)} of {count(value.n)} [{pct(value.lower, 0)}, {pct(value.upper, 0)}]"
    )


def print_team(result: TeamOutcomes) -> None:
    window = f"{result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M}"
    scorecards = Table(
        title=f"CSM scorecards, books by {result.by!r}, {window} "
        f"(what CS can influence, then revenue)"
    )
    for header in (
        "CSM",
        "accounts",
        "goals (accounts)",
        "NPS (n)",
        "CSAT top-2",
        "controllable churn",
        "treated done",
        "holdout done",
        "starting MRR",
        "NRR",
    ):
        scorecards.add_column(header, justify="left" if header == "CSM" else "right")
    for card in result.scorecards:
        scorecards.add_row(
            card.csm,
            count(card.accounts),
            f"{count(card.goals_achieved)} ({count(card.goal_accounts)})",
            f"{num(card.nps, 0)} ({count(card.nps_responses)})",
            _share(card.csat),
            f"{count(card.controllable_churns)}, {money(card.controllable_mrr_lost, signed=False)}",
            _share(card.treated_completion),
            _share(card.holdout_completion),
            money(card.starting_mrr, signed=False),
            pct(card.nrr),
        )
    console.print(scorecards)
    console.print(
        "[dim]treated/holdout done: enrollments entered in the window that reached the goal by "
        f"its end; descriptive, not a measured effect. Intervals: Wilson, "
        f"{result.confidence:.0%}.[/dim]"
    )

    relationship = Table(title="Relationship per CSM")
    for header in (
        "CSM",
        "activities",
        "per account",
        "people",
        "engaged",
        "contacts / account",
        "sponsors",
        "references",
    ):
        relationship.add_column(header, justify="left" if header == "CSM" else "right")
    for card in result.scorecards:
        relationship.add_row(
            card.csm,
            count(card.activities),
            num(card.activities_per_account),
            count(card.people),
            f"{count(card.engaged_people)} ({pct(card.engaged_people_share, 0)})",
            num(card.contacts_engaged_per_account),
            f"{count(card.sponsor_accounts)} ({pct(card.sponsor_share, 0)})",
            f"{count(card.reference_accounts)} ({pct(card.reference_share, 0)})",
        )
    console.print(relationship)

    kinds = Table(title="Activities per owner and kind")
    for header in ("owner", "kind", "activities", "accounts touched", "per account managed"):
        kinds.add_column(header, justify="left" if header in ("owner", "kind") else "right")
    for row in result.activities:
        kinds.add_row(
            row.owner,
            row.kind,
            count(row.activities),
            count(row.accounts_touched),
            num(row.activities_per_account),
        )
    console.print(kinds)

    churn = result.churn
    reasons = Table(title="Churn reasons")
    for header in ("reason", "controllable", "churns", "MRR lost"):
        reasons.add_column(header, justify="left" if header == "reason" else "right")
    for reason in churn.reasons:
        flag = "—" if reason.controllable is None else ("yes" if reason.controllable else "no")
        reasons.add_row(
            reason.reason, flag, count(reason.churns), money(reason.mrr_lost, signed=False)
        )
    console.print(reasons)
    console.print(
        f"{count(churn.churns)} churns, {money(churn.mrr_lost, signed=False)} MRR lost; "
        f"controllable: {_share(churn.controllable_share)} of the flagged churns "
        f"({count(churn.unflagged_churns)} unflagged), {pct(churn.controllable_mrr_share)} of "
        "their MRR lost"
    )
