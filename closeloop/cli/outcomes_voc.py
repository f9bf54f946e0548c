"""``closeloop outcomes voc`` (NPS, CSAT, CES) and ``closeloop outcomes divergence`` (satisfaction
rising while NRR is flat or falling); docs/metrics.md defines every figure and switch."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, parse_time, reports_errors
from closeloop.present.format import count, num
from closeloop.schemas.options import (
    DEFAULT_ALPHA,
    DEFAULT_COMMENTS,
    DEFAULT_CSAT_MIN_RISE,
    DEFAULT_NPS_MIN_RISE,
    DEFAULT_NRR_MAX_CHANGE,
    DEFAULT_PERIODS,
)

if TYPE_CHECKING:
    from closeloop.schemas.voc import Divergence, Satisfaction, Voc, VocGroup


class VocFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class PeriodChoice(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


class CesDirectionChoice(StrEnum):
    LOWER_IS_EASIER = "lower_is_easier"
    HIGHER_IS_EASIER = "higher_is_easier"


DEFAULT_WINDOW = timedelta(days=365)

FormatChoice = Annotated[
    VocFormat,
    typer.Option("--format", help="table, json, or csv (the main table: one row per group)."),
]
PeriodOption = Annotated[
    PeriodChoice, typer.Option("--period", help="Trend periods: calendar month or quarter.")
]

GROUP_COLUMNS = (
    "group",
    "key",
    "start",
    "end",
    "nps",
    "nps_lower",
    "nps_upper",
    "nps_responses",
    "csat",
    "csat_lower",
    "csat_upper",
    "csat_responses",
    "ces",
    "ces_lower",
    "ces_upper",
    "ces_easy_share",
    "ces_responses",
    "account_nps",
    "account_csat",
    "account_ces",
    "nps_account_response_rate",
    "nps_people_response_rate",
)
SERIES_COLUMNS = (
    "key",
    "start",
    "end",
    "nps",
    "nps_responses",
    "csat",
    "csat_responses",
    "nrr",
    "starting_mrr",
    "retained_mrr",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@reports_errors
def voc(
    start: Annotated[
        str | None,
        typer.Option("--start", help="Window start, inclusive (default: --end minus 365 days)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Window end, exclusive (default: now).")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="An account attribute (as of --start) to split answers by."),
    ] = None,
    period: PeriodOption = PeriodChoice.MONTH,
    ces_direction: Annotated[
        CesDirectionChoice,
        typer.Option("--ces-direction", help="Which end of the CES scale means little effort."),
    ] = CesDirectionChoice.LOWER_IS_EASIER,
    comments: Annotated[
        int, typer.Option("--comments", help="Newest comments to list (0 to 1000).")
    ] = DEFAULT_COMMENTS,
    output_format: FormatChoice = VocFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Voice of the customer for answers in [--start, --end): NPS (score interval), CSAT
    (Wilson) and CES (t interval) per respondent and per account (latest answer), response
    rates, the trend per period, segments (--by) and the newest comments."""
    from closeloop.schemas import dump_json
    from closeloop.services import outcomes_voc as service
    from closeloop.services.project import open_workspace

    finish = parse_time(end) if end else _now()
    begin = parse_time(start) if start else finish - DEFAULT_WINDOW
    with open_workspace(project, write=False) as workspace:
        result = service.voc(
            workspace,
            begin,
            finish,
            period=period.value,
            by=by,
            ces_direction=ces_direction.value,
            comments=comments,
        )
    if output_format == VocFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == VocFormat.CSV:
        _voc_csv(result)
    else:
        _render_voc(result)


@reports_errors
def divergence(
    end: Annotated[
        str | None,
        typer.Option("--end", help="Use the whole periods before this time (default: now)."),
    ] = None,
    periods: Annotated[
        int, typer.Option("--periods", help="How many periods the trends span (2 to 120).")
    ] = DEFAULT_PERIODS,
    period: PeriodOption = PeriodChoice.MONTH,
    nps_min_rise: Annotated[
        float, typer.Option("--nps-min-rise", help="NPS points per year that count as rising.")
    ] = DEFAULT_NPS_MIN_RISE,
    csat_min_rise: Annotated[
        float,
        typer.Option("--csat-min-rise", help="CSAT percentage points per year that count."),
    ] = DEFAULT_CSAT_MIN_RISE,
    nrr_max_change: Annotated[
        float,
        typer.Option(
            "--nrr-max-change", help="NRR pp per year at or below which NRR is flat or falling."
        ),
    ] = DEFAULT_NRR_MAX_CHANGE,
    alpha: Annotated[
        float, typer.Option("--alpha", help="One-sided level of the rising-slope test.")
    ] = DEFAULT_ALPHA,
    output_format: FormatChoice = VocFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The divergence alert: NPS or CSAT rising while net revenue retention is flat or falling
    over the last --periods periods, with both trends and the rule that fired."""
    from closeloop.schemas import dump_json
    from closeloop.services import outcomes_voc as service
    from closeloop.services.project import open_workspace

    finish = parse_time(end) if end else _now()
    with open_workspace(project, write=False) as workspace:
        result = service.divergence(
            workspace,
            finish,
            periods=periods,
            period=period.value,
            nps_min_rise=nps_min_rise,
            csat_min_rise=csat_min_rise,
            nrr_max_change=nrr_max_change,
            alpha=alpha,
        )
    if output_format == VocFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == VocFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(SERIES_COLUMNS)
        for row in result.series:
            values = row.model_dump(mode="json")
            writer.writerow(["" if values[c] is None else values[c] for c in SERIES_COLUMNS])
    else:
        _render_divergence(result)


def _group_row(kind: str, group: VocGroup | None, result: Voc) -> list[object]:
    respondents = group.respondents if group is not None else None
    nps = respondents.nps if respondents is not None else result.nps
    csat = respondents.csat if respondents is not None else result.csat
    ces = respondents.ces if respondents is not None else result.ces
    accounts = group.accounts if group is not None else result.account_level
    rates = group.response_rates if group is not None else result.response_rates
    nps_rate = next(rate for rate in rates if rate.kind == "nps")
    start = group.start if group is not None else result.start
    end = group.end if group is not None else result.end
    values: list[object] = [
        kind,
        group.key if group is not None else "all",
        f"{start:%Y-%m-%dT%H:%M:%S}Z",
        f"{end:%Y-%m-%dT%H:%M:%S}Z",
        nps.value,
        nps.lower,
        nps.upper,
        nps.responses,
        csat.value,
        csat.lower,
        csat.upper,
        csat.responses,
        ces.value,
        ces.lower,
        ces.upper,
        ces.easy_share,
        ces.responses,
        accounts.nps.value,
        accounts.csat.value,
        accounts.ces.value,
        nps_rate.account_response_rate,
        nps_rate.people_response_rate,
    ]
    return ["" if value is None else value for value in values]


def _voc_csv(result: Voc) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(GROUP_COLUMNS)
    writer.writerow(_group_row("all", None, result))
    for group in result.trend:
        writer.writerow(_group_row("period", group, result))
    for group in result.segments:
        writer.writerow(_group_row("segment", group, result))


def _interval(lower: float | None, upper: float | None) -> str:
    return "" if lower is None or upper is None else f"[{num(lower)}, {num(upper)}]"


def _levels_table(levels: list[tuple[str, Satisfaction]]) -> Table:
    view = Table("level", "metric", "value", "95% CI", "answers", title="headline")
    for name, level in levels:
        view.add_row(
            name,
            "NPS",
            num(level.nps.value),
            _interval(level.nps.lower, level.nps.upper),
            count(level.nps.responses),
        )
        view.add_row(
            name,
            "CSAT %",
            num(level.csat.value),
            _interval(level.csat.lower, level.csat.upper),
            count(level.csat.responses),
        )
        view.add_row(
            name,
            "CES mean",
            num(level.ces.value, 2),
            _interval(level.ces.lower, level.ces.upper),
            count(level.ces.responses),
        )
        view.add_row(
            name,
            "CES % easy",
            num(level.ces.easy_share),
            _interval(level.ces.easy_lower, level.ces.easy_upper),
            count(level.ces.responses),
        )
    return view


def _groups_table(title: str, groups: list[VocGroup]) -> Table:
    view = Table(title, "NPS", "95% CI", "n", "CSAT %", "n", "CES", "n", "NPS accounts", "rate %")
    for group in groups:
        nps, csat, ces = group.respondents.nps, group.respondents.csat, group.respondents.ces
        rate = next(r for r in group.response_rates if r.kind == "nps")
        view.add_row(
            group.key,
            num(nps.value),
            _interval(nps.lower, nps.upper),
            count(nps.responses),
            num(csat.value),
            count(csat.responses),
            num(ces.value, 2),
            count(ces.responses),
            num(group.accounts.nps.value),
            num(rate.account_response_rate),
        )
    return view


def _render_voc(result: Voc) -> None:
    from closeloop.schemas.voc import Satisfaction

    console.print(
        f"voice of the customer {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} "
        f"(CES: {result.ces_direction.replace('_', ' ')})",
        highlight=False,
    )
    console.print(
        _levels_table(
            [
                ("respondent", Satisfaction(nps=result.nps, csat=result.csat, ces=result.ces)),
                ("account", result.account_level),
            ]
        )
    )
    rates = Table(
        "survey",
        "active accounts",
        "answering",
        "rate %",
        "people",
        "answering",
        "rate %",
        title="response rates",
    )
    for rate in result.response_rates:
        rates.add_row(
            rate.kind,
            count(rate.accounts_active),
            count(rate.accounts_responding),
            num(rate.account_response_rate),
            count(rate.people),
            count(rate.people_responding),
            num(rate.people_response_rate),
        )
    console.print(rates)
    if result.trend:
        console.print(_groups_table(result.period, result.trend))
    if result.segments:
        console.print(_groups_table(result.by or "segment", result.segments))
    for item in result.excluded:
        console.print(
            f"[yellow]excluded:[/yellow] {count(item.responses)} {item.kind} answers on "
            f"{item.scale_min:g}-{item.scale_max:g}: {item.reason}",
            highlight=False,
        )
    if result.comments:
        view = Table(
            "date",
            "account",
            "kind",
            "score",
            "comment",
            title=f"newest comments ({count(len(result.comments))} of "
            f"{count(result.comments_total)})",
        )
        for comment in result.comments:
            view.add_row(
                f"{comment.responded_at:%Y-%m-%d}",
                comment.account_id,
                comment.kind,
                f"{comment.score:g}",
                comment.comment,
            )
        console.print(view)


def _render_divergence(result: Divergence) -> None:
    verdict = "[red]FIRED[/red]" if result.fired else "[green]not fired[/green]"
    console.print(
        f"divergence alert {verdict}: {result.thresholds.periods} {result.thresholds.period}s "
        f"from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}",
        highlight=False,
    )
    for rule in result.rules:
        mark = "fired" if rule.fired else "quiet"
        console.print(f"  {rule.name} ({mark}): {rule.explanation}", highlight=False)
    view = Table("period", "NPS", "n", "CSAT %", "n", "NRR %", "starting MRR", title="trends")
    for row in result.series:
        view.add_row(
            row.key,
            num(row.nps),
            count(row.nps_responses),
            num(row.csat),
            count(row.csat_responses),
            num(row.nrr),
            num(row.starting_mrr, 0),
        )
    console.print(view)
    console.print(f"NRR: {result.nrr_source}", highlight=False)
