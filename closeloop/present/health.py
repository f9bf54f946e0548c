"""Health scores as tables: one account's score explained, a snapshot taken, and the backtest
(``closeloop health show|snapshot|backtest``)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop.present.format import count, num, pct
from closeloop.schemas.health import (
    AccountHealth,
    CalibrationRow,
    Discrimination,
    HealthBacktest,
    HealthExplained,
    HealthScoreList,
    HealthSnapshot,
    OutcomeRate,
)

BAND_STYLE = {"poor": "red", "concerning": "yellow", "healthy": "green"}


def band_text(band: str | None) -> str:
    if band is None:
        return "—"
    style = BAND_STYLE.get(band, "")
    return f"[{style}]{band}[/{style}]" if style else band


def print_scores(result: HealthScoreList, console: Console) -> None:
    if not result.scores:
        console.print("no health scores defined (health.yaml; docs/health.md)")
        return
    for score in result.scores:
        table = Table(
            title=f"{escape(score.name)}: poor below {num(score.poor_below, 0)}, concerning "
            f"below {num(score.concerning_below, 0)} ({escape(score.file)})"
        )
        for header in ("measure", "expression", "kind", "weight", "polarity", "range"):
            table.add_column(header)
        for measure in score.measures:
            span = measure.range
            table.add_row(
                escape(measure.name),
                escape(measure.expression),
                measure.kind,
                num(measure.weight, 2),
                measure.polarity,
                f"{num(span[0], 2)} to {num(span[1], 2)}" if span else "—",
            )
        console.print(table)
        for segment in score.segments:
            weights = ", ".join(f"{name} {num(w, 2)}" for name, w in segment.weights.items())
            console.print(f"  when {escape(segment.when)}: {escape(weights)}")


def _score_line(health: AccountHealth) -> str:
    variant = f", weights for {escape(health.variant)}" if health.variant else ""
    missing = f"; missing: {escape(', '.join(health.missing))}" if health.missing else ""
    return (
        f"{escape(health.score_name)} as of {health.at:%Y-%m-%d %H:%M}: "
        f"{num(health.score, 1)} {band_text(health.band)}{variant}{missing}"
    )


def print_account_health(explained: list[HealthExplained], console: Console) -> None:
    for item in explained:
        now = item.now
        console.print(_score_line(now))
        table = Table()
        for header in ("measure", "value", "scaled", "weight", "effective", "points"):
            table.add_column(header, justify="left" if header == "measure" else "right")
        for part in now.measures:
            table.add_row(
                escape(part.name),
                "missing" if part.missing else num(part.value, 2),
                num(part.scaled, 1),
                num(part.weight, 2),
                pct(part.effective_weight, 0),
                num(part.contribution, 1),
            )
        console.print(table)
        if item.before is None:
            continue
        console.print(f"since: {_score_line(item.before)}; change {num(item.change, 1)} points")
        moved = Table(title="why the score moved (largest change first)")
        for header in ("measure", "value then", "value now", "points then", "points now", "change"):
            moved.add_column(header, justify="left" if header == "measure" else "right")
        for change in item.changes:
            moved.add_row(
                escape(change.name),
                num(change.value_before, 2),
                num(change.value_now, 2),
                num(change.contribution_before, 1),
                num(change.contribution_now, 1),
                f"{change.change:+.1f}",
            )
        console.print(moved)


def print_snapshot(result: HealthSnapshot, console: Console) -> None:
    for taken in result.scores:
        bands = ", ".join(f"{band} {count(n)}" for band, n in taken.bands.items())
        console.print(
            f"{escape(taken.score_name)}: snapshot of {taken.day} (as of "
            f"{result.at:%Y-%m-%d %H:%M} UTC) written for {count(taken.accounts)} accounts, "
            f"{count(taken.scored)} scored ({bands})"
        )


def _auc(result: Discrimination) -> str:
    if result.auc is None:
        return f"— ({result.status})"
    return f"{num(result.auc, 2)} [{num(result.auc_low, 2)}, {num(result.auc_high, 2)}]"


def _rate(rate: OutcomeRate) -> str:
    if rate.rate is None:
        return "—"
    return f"{pct(rate.rate, 1)} [{pct(rate.low, 0)}, {pct(rate.high, 0)}]"


def _calibration(title: str, rows: list[CalibrationRow], console: Console) -> None:
    table = Table(title=title)
    for header in ("group", "accounts", "scores", "churn", "contraction"):
        table.add_column(header, justify="left" if header == "group" else "right")
    for row in rows:
        table.add_row(
            band_text(row.group) if row.group in BAND_STYLE else row.group,
            count(row.n),
            f"{num(row.score_min, 0)}–{num(row.score_max, 0)}" if row.n else "—",
            _rate(row.churn),
            _rate(row.contraction),
        )
    console.print(table)


def print_backtest(result: HealthBacktest, console: Console) -> None:
    console.print(
        f"backtest as of {result.at:%Y-%m-%d %H:%M}, outcomes to {result.end:%Y-%m-%d %H:%M} "
        f"({num(result.horizon_days, 0)} days): {count(result.accounts)} paying accounts"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for score in result.scores:
        table = Table(title=f"{escape(score.score_name)}: does a low score predict the outcome?")
        for header in (
            "segment",
            "accounts",
            "churned",
            "churn AUC [95%]",
            "lift d1",
            "contracted",
            "contraction AUC [95%]",
            "lift d1",
        ):
            table.add_column(header, justify="left" if header == "segment" else "right")
        for group in score.groups:
            table.add_row(
                escape(group.segment),
                count(group.n),
                count(group.churn.events),
                _auc(group.churn),
                num(group.churn.top_decile_lift, 2),
                count(group.contraction.events),
                _auc(group.contraction),
                num(group.contraction.top_decile_lift, 2),
            )
        console.print(table)
        _calibration("calibration by band", score.by_band, console)
        _calibration("calibration by score decile (d1 lowest)", score.by_decile, console)
        for warning in score.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
