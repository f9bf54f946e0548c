"""The board report as people read it: view rows, charts, the terminal, standalone HTML and PDF.

One set of rows (:func:`board_tables`) feeds every surface, so the terminal, the HTML file, the
PDF and the dashboard's home page (and its CSV exports) show the same figures as
``--format json``. Charts are Altair specs: inline SVG in the HTML/PDF, Vega-Lite on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, cast

import altair as alt
import jinja2
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop import __version__
from closeloop.present.charts import to_svg
from closeloop.present.format import (
    MISSING,
    VERDICT_STYLE,
    count,
    money,
    money_ci,
    num,
    ok,
    pct,
    pp,
    pp_ci,
    status_text,
)
from closeloop.schemas.board import BoardReport, Initiative, Part

Row = dict[str, Any]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("closeloop.present", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)

MESSAGE_WORDS = {"ghost": "holdout (logged, not sent)", "not_sent": "replayed, not sent"}
TREND_COLOURS = {"NRR": "#2563eb", "GRR": "#16a34a"}


# -- words ---------------------------------------------------------------------------------


def period_text(start: date, end: date) -> str:
    """``November 2026``, ``2026-Q3`` or ``2026-11-02 to 2026-11-08`` (the last day included)."""
    last = end - timedelta(days=1)
    if start.day == 1 and end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        if months == 1:
            return f"{start:%B %Y}"
        if months == 3 and start.month in (1, 4, 7, 10):
            return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.isoformat()} to {last.isoformat()}"


def ratio(value: float | None) -> str:
    """A retention ratio as a percentage: 1.0114 -> 101.1%."""
    return pct(value)


def unavailable(part: Part) -> str | None:
    """Why a part is missing, or None when it is there."""
    return part.reason or "unavailable" if part.status != "ok" else None


# -- rows ------------------------------------------------------------------------------------


def outcome_rows(report: BoardReport) -> list[Row]:
    """The headline outcomes of the period, with the change from the preceding period."""
    outcomes = report.outcomes
    row = outcomes.period
    if row is None:
        return []
    before = outcomes.trend[-2] if len(outcomes.trend) >= 2 else None
    measures = (
        ("NRR", "nrr", ratio),
        ("GRR", "grr", ratio),
        ("Logo churn", "customer_churn_rate", pct),
        ("Revenue churn (gross)", "gross_mrr_churn_rate", pct),
        ("Revenue churn (net)", "net_mrr_churn_rate", pct),
    )
    rows: list[Row] = []
    for label, field, shown in measures:
        value = getattr(row, field)
        previous = getattr(before, field) if before is not None else None
        rows.append(
            {
                "measure": label,
                "value": shown(value),
                "previous": shown(previous),
                "change": pp(value - previous) if ok(value) and ok(previous) else MISSING,
                "raw": value,
            }
        )
    rows.append(
        {
            "measure": "Expansion MRR",
            "value": money(row.expansion_mrr, signed=False),
            "previous": money(before.expansion_mrr, signed=False) if before else MISSING,
            "change": money(row.expansion_mrr - before.expansion_mrr) if before else MISSING,
            "raw": row.expansion_mrr,
        }
    )
    return rows


def trend_rows(report: BoardReport) -> list[Row]:
    return [
        {
            "period": f"{row.period_start:%Y-%m}",
            "starting_mrr": money(row.starting_mrr, signed=False),
            "ending_mrr": money(row.ending_mrr, signed=False),
            "nrr": ratio(row.nrr),
            "grr": ratio(row.grr),
            "logo_churn": pct(row.customer_churn_rate),
            "revenue_churn": pct(row.gross_mrr_churn_rate),
            "expansion_mrr": money(row.expansion_mrr, signed=False),
        }
        for row in report.outcomes.trend
    ]


def expansion_rows(report: BoardReport) -> list[Row]:
    row = report.outcomes.period
    if row is None:
        return []
    total = sum(item.expansion_mrr for item in row.expansion_by_source)
    return [
        {
            "source": status_text(item.source),
            "expansion_mrr": money(item.expansion_mrr, signed=False),
            "share": pct(item.expansion_mrr / total) if total else MISSING,
            "movements": count(item.movements),
        }
        for item in sorted(row.expansion_by_source, key=lambda item: -item.expansion_mrr)
    ]


def leading_rows(report: BoardReport) -> list[Row]:
    """One line per leading indicator: its value, its interval where it has one, and context."""
    leading = report.leading
    rows: list[Row] = []
    adoption = leading.adoption
    if adoption.overall is not None and adoption.status == "ok":
        rows.append(
            {
                "indicator": "Active accounts",
                "value": count(adoption.overall.active_accounts),
                "interval": MISSING,
                "detail": f"{count(adoption.overall.active_users)} active users, stickiness "
                f"(DAU/MAU) {pct(adoption.overall.stickiness)}",
            }
        )
        for feature in adoption.features[:3]:
            rows.append(
                {
                    "indicator": f"Adoption: {feature.feature}",
                    "value": pct(feature.adoption_rate),
                    "interval": f"[{pct(feature.ci_lower)}, {pct(feature.ci_upper)}]",
                    "detail": f"{count(feature.adopted_accounts)} of "
                    f"{count(feature.eligible_accounts)} active accounts",
                }
            )
        rows.append(
            {
                "indicator": "Usage drops",
                "value": count(adoption.usage_drops),
                "interval": MISSING,
                "detail": f"of {count(adoption.checked_accounts)} accounts checked",
            }
        )
    else:
        rows.append(_missing_row("Adoption", adoption))
    ttv = leading.time_to_value
    if ttv.status == "ok" and ttv.overall is not None:
        rows.append(
            {
                "indicator": f"Time to value ({ttv.value_event})",
                "value": f"{num(ttv.overall.median_days, 0)} days (median)",
                "interval": MISSING,
                "detail": f"{count(ttv.overall.reached_value)} of {count(ttv.overall.accounts)} "
                f"accounts reached it; 75% by {num(ttv.overall.p75_days, 0)} days",
            }
        )
    else:
        rows.append(_missing_row("Time to value", ttv))
    voice = leading.voice_of_customer
    if voice.status == "ok" and voice.nps is not None and voice.csat is not None:
        nps, csat = voice.nps, voice.csat
        rows.append(
            {
                "indicator": "NPS",
                "value": num(nps.value, 0),
                "interval": f"[{num(nps.lower, 0)}, {num(nps.upper, 0)}]"
                if nps.responses
                else MISSING,
                "detail": f"{count(nps.responses)} answers" if nps.responses else "no NPS answers",
            }
        )
        rows.append(
            {
                "indicator": "CSAT",
                "value": f"{num(csat.value)}%" if csat.responses else MISSING,
                "interval": f"[{num(csat.lower)}%, {num(csat.upper)}%]"
                if csat.responses
                else MISSING,
                "detail": f"{count(csat.responses)} answers"
                if csat.responses
                else "no CSAT answers",
            }
        )
    else:
        rows.append(_missing_row("NPS / CSAT", voice))
    risk = leading.risk
    if risk.status == "ok":
        rows.append(
            {
                "indicator": "Accounts at risk",
                "value": count(risk.accounts_at_risk),
                "interval": MISSING,
                "detail": f"{money(risk.arr_at_risk, signed=False)} ARR at risk "
                f"({count(sum(1 for s in risk.signals if s.accounts))} signals)",
            }
        )
    else:
        rows.append(_missing_row("Risk", risk))
    return rows


def _missing_row(label: str, part: Part) -> Row:
    return {"indicator": label, "value": MISSING, "interval": MISSING, "detail": unavailable(part)}


def risk_rows(report: BoardReport) -> list[Row]:
    return [
        {
            "signal": signal.id,
            "description": signal.description,
            "accounts": count(signal.accounts),
            "arr_at_risk": money(signal.arr_at_risk, signed=False),
        }
        for signal in report.leading.risk.signals
    ]


def initiative_rows(report: BoardReport) -> list[Row]:
    return [_initiative_row(job) for job in report.initiatives.jobs]


def _initiative_row(job: Initiative) -> Row:
    if job.status != "ok":
        return {
            "job": job.name,
            "verdict": MISSING,
            "decision": "",
            "lift": MISSING,
            "interval": MISSING,
            "added_arr": MISSING,
            "arr_interval": MISSING,
            "enrolled": count(job.enrolled),
            "note": job.reason or "",
        }
    return {
        "job": job.name,
        "verdict": job.decision_words or MISSING,
        "decision": job.decision or "",
        "lift": pp(job.lift),
        "interval": pp_ci((job.lift_lower, job.lift_upper)),
        "added_arr": money(job.added_arr),
        "arr_interval": money_ci((job.added_arr_lower, job.added_arr_upper)),
        "enrolled": count(job.enrolled),
        "note": (
            f"lift {status_text(job.lift_status or '')}; value over "
            f"{job.revenue_horizon_days} days {status_text(job.revenue_status or '')}"
            if job.revenue_horizon_days is not None
            else f"lift {status_text(job.lift_status or '')}; no revenue value measured yet"
        ),
    }


def activity_rows(report: BoardReport) -> list[Row]:
    activity = report.activity
    if activity.status != "ok":
        return [{"activity": "Activity", "value": MISSING, "detail": unavailable(activity)}]
    others = {
        status: n for status, n in activity.messages.items() if status not in ("sent", "dead") and n
    }
    plans = activity.success_plans
    return [
        {"activity": "Jobs launched", "value": count(activity.jobs_launched), "detail": ""},
        {
            "activity": "Jobs running",
            "value": count(activity.jobs_running),
            "detail": "ticked during the period",
        },
        {
            "activity": "Enrollments",
            "value": count(activity.accounts_enrolled),
            "detail": "entered a job in the period",
        },
        {
            "activity": "Messages sent",
            "value": count(activity.messages_sent),
            "detail": ", ".join(
                f"{MESSAGE_WORDS.get(s, status_text(s))} {count(n)}" for s, n in others.items()
            ),
        },
        {
            "activity": "Messages failed",
            "value": count(activity.messages_failed),
            "detail": "dead-lettered",
        },
        {
            "activity": "Success-plan objectives met",
            "value": f"{count(plans.met)} of {count(plans.decided)}" if plans else MISSING,
            "detail": (
                f"{count(plans.missed)} missed; {pct(plans.rate)} "
                f"[{pct(plans.lower)}, {pct(plans.upper)}] by the period end"
                if plans
                else "no objective decided by the period end"
            ),
        },
    ]


TABLE_COLUMNS = {
    "outcomes": ("measure", "value", "previous", "change"),
    "trend": (
        "period",
        "starting_mrr",
        "ending_mrr",
        "nrr",
        "grr",
        "logo_churn",
        "revenue_churn",
        "expansion_mrr",
    ),
    "expansion": ("source", "expansion_mrr", "share", "movements"),
    "leading": ("indicator", "value", "interval", "detail"),
    "risk": ("signal", "description", "accounts", "arr_at_risk"),
    "initiatives": (
        "job",
        "verdict",
        "lift",
        "interval",
        "added_arr",
        "arr_interval",
        "enrolled",
        "note",
    ),
    "activity": ("activity", "value", "detail"),
}
"""Every table of the report by name (the CSV exports' names), with its columns, in order."""


def board_tables(report: BoardReport) -> dict[str, list[Row]]:
    """Every table of the report by name (:data:`TABLE_COLUMNS`), its rows with those columns
    (the initiatives' rows also carry ``decision``, for the verdict's colour)."""
    rows = {
        "outcomes": outcome_rows(report),
        "trend": trend_rows(report),
        "expansion": expansion_rows(report),
        "leading": leading_rows(report),
        "risk": risk_rows(report),
        "initiatives": initiative_rows(report),
        "activity": activity_rows(report),
    }
    keep = {name: (*columns, "decision") for name, columns in TABLE_COLUMNS.items()}
    return {
        name: [{key: row[key] for key in keep[name] if key in row} for row in found]
        for name, found in rows.items()
    }


# -- charts --------------------------------------------------------------------------------


def trend_chart(report: BoardReport) -> alt.Chart | None:
    """NRR and GRR per period, the report's period last."""
    points = [
        {"period": f"{row.period_start:%Y-%m}", "measure": name, "value": value}
        for row in report.outcomes.trend
        for name, value in (("NRR", row.nrr), ("GRR", row.grr))
        if ok(value)
    ]
    if not points:
        return None
    return cast(
        alt.Chart,
        alt.Chart(pd.DataFrame(points), title="Net and gross revenue retention")
        .mark_line(point=True)
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("value:Q", title=None, axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=alt.Color(
                "measure:N",
                scale=alt.Scale(domain=list(TREND_COLOURS), range=list(TREND_COLOURS.values())),
                title=None,
            ),
            tooltip=["period", "measure", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(width=420, height=180),
    )


def initiatives_chart(report: BoardReport) -> alt.LayerChart | None:
    """Each measured job's completion lift with its interval (percentage points)."""
    rows = [
        {
            "job": job.name,
            "lift": job.lift * 100,
            "lower": job.lift_lower * 100,
            "upper": job.lift_upper * 100,
        }
        for job in report.initiatives.jobs
        if ok(job.lift) and ok(job.lift_lower) and ok(job.lift_upper)
    ]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    base = alt.Chart(data).encode(y=alt.Y("job:N", title=None))
    interval = base.mark_rule(strokeWidth=2, color="#6b7280").encode(
        x=alt.X("lower:Q", title="completion lift (pp) with its interval"), x2="upper:Q"
    )
    point = base.mark_point(filled=True, size=70, color="#2563eb").encode(
        x="lift:Q", tooltip=["job", alt.Tooltip("lift:Q", format=".1f")]
    )
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(color="#9ca3af", strokeDash=[4, 3])
    layered = cast(alt.LayerChart, alt.layer(zero.encode(x="x:Q"), interval, point))
    return layered.properties(
        width=420, height=max(40, 28 * len(rows)), title="Initiatives: measured effect"
    )


def charts(report: BoardReport) -> dict[str, alt.TopLevelMixin]:
    """The report's charts by name (only those it has data for)."""
    found: dict[str, alt.TopLevelMixin | None] = {
        "trend": trend_chart(report),
        "initiatives": initiatives_chart(report),
    }
    return {name: chart for name, chart in found.items() if chart is not None}


# -- HTML and PDF ----------------------------------------------------------------------------


def board_context(report: BoardReport) -> dict[str, Any]:
    """What the templates need: the rows, the words and the parts' reasons."""
    leading = report.leading
    return {
        "report": report,
        "period": period_text(report.start, report.end),
        "last_day": report.end - timedelta(days=1),
        "outcome_rows": outcome_rows(report),
        "trend_rows": trend_rows(report),
        "expansion_rows": expansion_rows(report),
        "leading_rows": leading_rows(report),
        "risk_rows": risk_rows(report),
        "initiative_rows": initiative_rows(report),
        "activity_rows": activity_rows(report),
        "outcomes_missing": unavailable(report.outcomes),
        "initiatives_missing": unavailable(report.initiatives),
        "parts_missing": [
            (name, unavailable(part))
            for name, part in (
                ("Adoption", leading.adoption),
                ("Time to value", leading.time_to_value),
                ("NPS / CSAT", leading.voice_of_customer),
                ("Risk", leading.risk),
            )
            if part.status != "ok"
        ],
        "version": __version__,
    }


def board_html(report: BoardReport) -> str:
    """The report as one standalone page (inline SVG charts, print CSS for A4, no scripts)."""
    return _ENV.get_template("board.html.j2").render(
        **board_context(report),
        charts={name: to_svg(chart) for name, chart in charts(report).items()},
    )


def board_pdf(report: BoardReport) -> bytes:
    """The standalone page as an A4 PDF, made by WeasyPrint (HTML and CSS to PDF, no browser)."""
    import weasyprint  # imported here: loading pango takes a moment nobody else should pay

    return bytes(weasyprint.HTML(string=board_html(report)).write_pdf())


# -- terminal ----------------------------------------------------------------------------------


def _table(title: str, rows: Sequence[Row], columns: Sequence[str]) -> Table:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(escape(str(row[column])) for column in columns))
    return table


def print_board(report: BoardReport, console: Console) -> None:
    """The report in the terminal, in the order of the page."""
    console.print(
        f"[bold]{report.project}[/bold]: board report {period_text(report.start, report.end)} "
        f"({report.start} to {report.end - timedelta(days=1)})",
        highlight=False,
    )
    console.print("[bold]1. Outcomes[/bold]")
    if report.outcomes.status != "ok":
        console.print(f"  unavailable: {unavailable(report.outcomes)}", highlight=False)
    if report.outcomes.period is not None:
        console.print(
            _table(
                "this period, and the one before",
                outcome_rows(report),
                ("measure", "value", "previous", "change"),
            )
        )
        console.print(
            _table(
                f"trend by {report.outcomes.trend_period}",
                trend_rows(report),
                ("period", "nrr", "grr", "logo_churn", "revenue_churn", "expansion_mrr"),
            )
        )
        if expansion_rows(report):
            console.print(
                _table(
                    "expansion by source",
                    expansion_rows(report),
                    ("source", "expansion_mrr", "share", "movements"),
                )
            )
    console.print("[bold]2. Leading indicators[/bold]")
    console.print(_table("", leading_rows(report), ("indicator", "value", "interval", "detail")))
    console.print("[bold]Initiatives[/bold]")
    if report.initiatives.status != "ok":
        console.print(f"  {unavailable(report.initiatives)}", highlight=False)
    else:
        table = Table(
            "job", "verdict", "lift", "interval", "added ARR", "interval", "enrolled", "note"
        )
        for row in initiative_rows(report):
            style = VERDICT_STYLE.get(row["decision"], "")
            verdict = escape(row["verdict"])
            table.add_row(
                escape(row["job"]),
                f"[{style}]{verdict}[/{style}]" if style else verdict,
                *(
                    escape(row[column])
                    for column in ("lift", "interval", "added_arr", "arr_interval", "enrolled")
                ),
                escape(row["note"]),
            )
        console.print(table)
    console.print("[bold]3. Activity[/bold]")
    console.print(_table("", activity_rows(report), ("activity", "value", "detail")))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


# -- email -----------------------------------------------------------------------------------


def board_subject(report: BoardReport) -> str:
    return f"{report.project} board report {period_text(report.start, report.end)}"


def board_email_text(report: BoardReport) -> str:
    """The plain-text part of the scheduled email: the headline figures; the HTML part and the
    attached PDF carry the whole report."""
    lines = [
        f"{report.project}: board report {period_text(report.start, report.end)} "
        f"({report.start} to {report.end - timedelta(days=1)})",
        "",
        "1. Outcomes",
    ]
    rows = outcome_rows(report)
    lines += [f"   {row['measure']}: {row['value']} ({row['change']})" for row in rows] or [
        f"   unavailable: {unavailable(report.outcomes)}"
    ]
    lines += ["", "2. Leading indicators"]
    lines += [
        f"   {row['indicator']}: {row['value']}"
        + (f" {row['interval']}" if row["interval"] != MISSING else "")
        for row in leading_rows(report)
    ]
    lines += ["", "Initiatives"]
    lines += [
        f"   {row['job']}: {row['verdict']}; lift {row['lift']} {row['interval']}; "
        f"added ARR {row['added_arr']} {row['arr_interval']}"
        for row in initiative_rows(report)
    ] or [f"   {unavailable(report.initiatives)}"]
    lines += ["", "3. Activity"]
    lines += [f"   {row['activity']}: {row['value']}" for row in activity_rows(report)]
    lines += ["", "The whole report is attached as PDF."]
    return "\n".join(lines) + "\n"
