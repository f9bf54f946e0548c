"""The stage view and the signals as tables, and their CSV rows (``closeloop stage``, ``closeloop
signals``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop.present.definitions import print_warnings
from closeloop.present.format import count, money, num, pct, pp
from closeloop.schemas.journey import (
    AccountClass,
    ObjectiveView,
    Signals,
    StageAccount,
    StageView,
)

CLASS_STYLE = {
    AccountClass.AHEAD: "green",
    AccountClass.ON_TRACK: "",
    AccountClass.BEHIND: "yellow",
    AccountClass.STUCK: "red",
}
OBJECTIVE_COLUMNS = (
    "name",
    "count",
    "entered",
    "completion_rate",
    "median_days",
    "p75_days",
    "censored",
    "completed_after_exit",
    "completer_median_days",
    "dated",
    "ahead_days",
    "behind_days",
    "stuck_days",
)
ACCOUNT_COLUMNS = (
    "account_id",
    "name",
    "owner",
    "arr",
    "days_in_stage",
    "objectives_done",
    "objectives_missing",
    "days_since_progress",
    "class",
    "reason",
)
SIGNAL_COLUMNS = (
    "signal",
    "kind",
    "account_id",
    "name",
    "owner",
    "arr",
    "detail",
    "rule",
)


def objective_row(objective: ObjectiveView) -> dict[str, Any]:
    return {column: getattr(objective, column) for column in OBJECTIVE_COLUMNS}


def account_row(account: StageAccount) -> dict[str, Any]:
    row = account.model_dump(by_alias=True, mode="json")
    row["objectives_done"] = "; ".join(account.objectives_done)
    row["objectives_missing"] = "; ".join(account.objectives_missing)
    return {column: row[column] for column in ACCOUNT_COLUMNS}


def signal_rows(found: Signals) -> list[dict[str, Any]]:
    """One row per flagged account and signal (an account may carry several signals)."""
    return [
        {
            "signal": signal.id,
            "kind": signal.kind.value,
            "account_id": account.account_id,
            "name": account.name,
            "owner": account.owner,
            "arr": account.arr,
            "detail": account.detail,
            "rule": " ".join(signal.rule.split()),
        }
        for signal in found.signals
        for account in signal.accounts
    ]


def _days(value: float | None) -> str:
    """Days as "12.5"; a quantile the curve never reaches as "never"."""
    return num(value) if value is not None else "never"


def print_stage(console: Console, view: StageView) -> None:
    window = view.window
    console.print(
        f"[bold]{escape(view.name)}[/bold] as of {view.as_of:%Y-%m-%d %H:%M} UTC: "
        f"{count(view.in_stage)} in the stage · ever {count(view.entered)} entered, "
        f"{count(view.completed)} completed, {count(view.exited)} left without completing · "
        f"last {num(window.days, 0)} days: {count(window.entered)} entered, "
        f"{count(window.completed)} completed, {count(window.exited)} left without completing",
        highlight=False,
    )
    if view.objectives:
        table = Table(
            title="Objectives: time to complete from entry (Kaplan–Meier, days)",
            title_justify="left",
        )
        headers = ("objective", "completed in stage", "rate", "median", "p75", "censored")
        for header in (*headers, "after leaving"):
            table.add_column(header, justify="left" if header == "objective" else "right")
        for objective in view.objectives:
            table.add_row(
                escape(objective.name),
                f"{count(objective.count)} of {count(objective.entered)}",
                pct(objective.completion_rate, 0),
                _days(objective.median_days),
                _days(objective.p75_days),
                count(objective.censored),
                count(objective.completed_after_exit),
            )
        console.print(table)
        console.print(
            "[dim]censored: not completed in the stage (yet), counted up to leaving the stage or "
            "now; after leaving: of those, completed once out of the stage; 'never': too few are "
            "known to complete to reach that quantile.[/dim]"
        )
        console.print(f"Typical order: {escape(' → '.join(view.typical_order))}")
        for sequence in view.sequences:
            console.print(
                f"  {count(sequence.accounts)} × {escape(' → '.join(sequence.objectives))}",
                highlight=False,
            )
    if view.markers:
        markers = Table(title="Markers (accounts in the stage)", title_justify="left")
        markers.add_column("marker")
        markers.add_column("accounts", justify="right")
        for marker in view.markers:
            markers.add_row(escape(marker.name), count(marker.count))
        console.print(markers)
    if view.accounts is not None:
        _print_accounts(console, view)
    if view.since is not None:
        change = view.since
        console.print(
            f"Since {change.since:%Y-%m-%d %H:%M}: in stage {count(change.in_stage_before)} → "
            f"{count(change.in_stage_now)} ({change.in_stage_change:+,})",
            highlight=False,
        )
        moved = Table(title="Objectives then and now", title_justify="left")
        for header in ("objective", "rate then", "rate now", "change", "median then", "now"):
            moved.add_column(header, justify="left" if header == "objective" else "right")
        for row in change.objectives:
            moved.add_row(
                escape(row.name),
                pct(row.completion_rate_before, 0),
                pct(row.completion_rate_now, 0),
                pp(row.completion_rate_change),
                _days(row.median_days_before),
                _days(row.median_days_now),
            )
        console.print(moved)
    print_warnings(console, view.warnings)


def _print_accounts(console: Console, view: StageView) -> None:
    accounts = view.accounts or []
    thresholds = view.thresholds
    table = Table(
        title=f"Accounts in the stage ({count(len(accounts))})",
        title_justify="left",
    )
    for header in ("account", "owner", "ARR", "days", "missing", "idle", "class", "why"):
        table.add_column(header, justify="right" if header in ("ARR", "days", "idle") else "left")
    for account in accounts:
        style = CLASS_STYLE[account.account_class]
        label = account.account_class.value
        table.add_row(
            escape(account.name or account.account_id),
            escape(account.owner or "—"),
            money(account.arr, signed=False),
            num(account.days_in_stage, 0),
            escape(", ".join(account.objectives_missing) or "—"),
            num(account.days_since_progress, 0),
            f"[{style}]{label}[/{style}]" if style else label,
            escape(account.reason),
        )
    console.print(table)
    console.print(
        f"[dim]classes: a missing objective is due past its {pct(thresholds.behind, 0)} "
        f"quantile and overdue past its {pct(thresholds.stuck, 0)}; stuck = overdue and no "
        f"progress for {num(thresholds.stuck_days, 0)} days; ahead = an objective done before "
        f"its {pct(thresholds.ahead, 0)} quantile (docs/stages.md).[/dim]"
    )


def print_signals(console: Console, found: Signals) -> None:
    console.print(
        f"Signals as of {found.as_of:%Y-%m-%d %H:%M} UTC: {count(found.count)} with accounts",
        highlight=False,
    )
    for signal in found.signals:
        console.print(
            f"[bold]{escape(signal.id)}[/bold]: {count(signal.count)} accounts, "
            f"{money(signal.arr_at_risk, signed=False)} ARR at risk — {escape(signal.description)}",
            highlight=False,
        )
        console.print(f"  rule: {escape(' '.join(signal.rule.split()))}", highlight=False)
        if not signal.accounts:
            continue
        table = Table(show_edge=False, pad_edge=False)
        for header in ("account", "owner", "ARR", "detail"):
            table.add_column(header, justify="right" if header == "ARR" else "left")
        for account in signal.accounts:
            table.add_row(
                escape(account.name or account.account_id),
                escape(account.owner or "—"),
                money(account.arr, signed=False),
                escape(account.detail),
            )
        console.print(table)
    console.print(
        "[dim]a job for one: closeloop jobs create-from-signal SIGNAL_ID (a draft; its audience "
        "is the rule).[/dim]"
    )
    print_warnings(console, found.warnings)
