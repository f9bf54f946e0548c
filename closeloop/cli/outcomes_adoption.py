"""``closeloop outcomes adoption``: active accounts and users, stickiness, feature adoption,
engagement depth, usage drops and time to first value (docs/metrics.md, "Adoption")."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, parse_time, reports_errors
from closeloop.present.format import count, num, pct
from closeloop.schemas.options import DEFAULT_DROP_THRESHOLD, DEFAULT_DROP_WINDOW_DAYS

if TYPE_CHECKING:
    from closeloop.schemas.adoption import Adoption


class AdoptionFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class Period(StrEnum):
    MONTH = "month"


ACCOUNT_COLUMNS = (
    "account_id",
    "events",
    "active_users",
    "mean_daily_active_users",
    "stickiness",
    "key_features_used",
)


@reports_errors
def adoption(
    at: Annotated[
        str | None, typer.Option("--at", help="Window [T - 30 days, T) (default: now).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Window start (inclusive), with --end.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Window end (exclusive) and as-of time.")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="An accounts column to split activity by.")
    ] = None,
    period: Annotated[
        Period | None, typer.Option("--period", help="month: activity per calendar month.")
    ] = None,
    activity: Annotated[
        list[str] | None,
        typer.Option("--activity", help="Activity event name (repeat; default any event)."),
    ] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            help="Key feature event name (repeat; default every event name used in the window).",
        ),
    ] = None,
    drop_threshold: Annotated[
        float, typer.Option("--drop-threshold", help="Relative fall that flags a usage drop.")
    ] = DEFAULT_DROP_THRESHOLD,
    drop_window_days: Annotated[
        int, typer.Option("--drop-window-days", help="Length of each usage-drop window.")
    ] = DEFAULT_DROP_WINDOW_DAYS,
    value_event: Annotated[
        str | None,
        typer.Option("--value-event", help="Event marking first value (time to value)."),
    ] = None,
    value_where: Annotated[
        list[str] | None,
        typer.Option("--value-where", help="KEY=VALUE property filter on the value event."),
    ] = None,
    output_format: Annotated[
        AdoptionFormat,
        typer.Option("--format", help="table, json, or csv (one row per active account)."),
    ] = AdoptionFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Adoption over a window: active accounts and users, DAU/MAU stickiness, feature adoption
    among active accounts (Wilson 95% intervals), engagement depth, usage-drop flags and
    Kaplan–Meier time to first value per signup month."""
    from closeloop.schemas import dump_json
    from closeloop.services import outcomes_adoption as service
    from closeloop.services.project import open_workspace

    begin, finish = service.window(
        parse_time(at) if at else None,
        parse_time(start) if start else None,
        parse_time(end) if end else None,
        datetime.now(UTC).replace(tzinfo=None),
    )
    where = service.parse_where(value_where or [])
    with open_workspace(project, write=False) as workspace:
        result = service.adoption(
            workspace,
            begin,
            finish,
            by=by,
            period=period.value if period else None,
            activity_events=activity or [],
            features=feature or [],
            drop_threshold=drop_threshold,
            drop_window_days=drop_window_days,
            value_event=value_event,
            value_where=where,
        )
    if output_format == AdoptionFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == AdoptionFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(ACCOUNT_COLUMNS)
        for row in result.accounts:
            values = row.model_dump()
            writer.writerow(["" if values[c] is None else values[c] for c in ACCOUNT_COLUMNS])
    else:
        _render(result)


def _render(result: Adoption) -> None:
    settings, overall = result.settings, result.overall
    console.print(
        f"adoption {settings.start:%Y-%m-%d %H:%M} to {settings.end:%Y-%m-%d %H:%M}: "
        f"{count(overall.active_accounts)} active accounts, {count(overall.active_users)} "
        f"active users, stickiness (DAU/MAU) {pct(overall.stickiness)}",
        highlight=False,
    )
    for title, rows in (
        (settings.by or "segment", [(s.segment or "(none)", s) for s in result.segments]),
        ("period", [(f"{p.period_start:%Y-%m-%d}", p) for p in result.periods]),
    ):
        if rows:
            view = Table(title, "active accounts", "active users", "mean DAU", "stickiness")
            for label, row in rows:
                view.add_row(
                    label,
                    count(row.active_accounts),
                    count(row.active_users),
                    num(row.mean_daily_active_users),
                    pct(row.stickiness),
                )
            console.print(view)
    features = Table("feature", "adopted", "eligible", "rate", "95% CI", title="feature adoption")
    for item in result.feature_adoption:
        features.add_row(
            item.feature,
            count(item.adopted_accounts),
            count(item.eligible_accounts),
            pct(item.adoption_rate),
            f"[{pct(item.ci_lower)}, {pct(item.ci_upper)}]",
        )
    console.print(features)
    depth = result.engagement_depth
    console.print(
        f"engagement depth: mean {num(depth.mean_key_features_used)} key features over "
        f"{count(depth.eligible_accounts)} active accounts; "
        + ", ".join(f"{b.key_features_used}: {count(b.accounts)}" for b in depth.distribution),
        highlight=False,
    )
    drops = result.usage_drops
    console.print(
        f"usage drops: {count(len(drops.flagged))} of {count(drops.checked_accounts)} accounts "
        f"({count(drops.too_young_accounts)} too young excluded)",
        highlight=False,
    )
    if drops.flagged:
        view = Table("account", "earlier", "recent", "change")
        for drop in drops.flagged:
            view.add_row(
                drop.account_id,
                count(drop.earlier_events),
                count(drop.recent_events),
                pct(drop.change),
            )
        console.print(view)
    if result.time_to_value is not None:
        view = Table(
            "signup cohort",
            "accounts",
            "reached",
            "censored",
            "median days",
            "p75 days",
            title=f"time to first value ({result.time_to_value.value_event})",
        )
        for cohort in result.time_to_value.cohorts:
            view.add_row(
                cohort.cohort,
                count(cohort.accounts),
                count(cohort.reached_value),
                count(cohort.censored),
                num(cohort.median_days, 0),
                num(cohort.p75_days, 0),
            )
        console.print(view)
