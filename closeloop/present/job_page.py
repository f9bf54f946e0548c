"""The dashboard's job page as view rows: the headline lift, health items, and the rows of its
tables (arms, comparisons, funnel, segments, deliveries, accounts, the delivery log).

Rows are lists of cells in the order of their ``*_COLUMNS``; a cell is text or a number. The web
layer adds links and badges; the numbers are formatted here, once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from closeloop.present import report_view as view
from closeloop.present.charts import completion_curves
from closeloop.present.format import count, days, money, pct, pp, pp_ci, pval, status_text
from closeloop.present.measurement import COMPLETION_RATE, decisive
from closeloop.schemas.base import Page
from closeloop.schemas.job_page import JobAccount, JobHealth, JobPage, StoreQuery
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.jobs import OutboxList
from closeloop.schemas.measurement import HeterogeneityTest, Segment, SurvivalCurve

Cell = str | int | float | None

DECISION_TONE = {"ship": "good", "stop": "bad", "review": "warn", "keep_running": "info"}
STATUS_TONE = {
    "positive": "good",
    "negative": "bad",
    "inconclusive": "warn",
    "insufficient_data": "neutral",
}
STATE_TONE = {"ok": "good", "warn": "warn", "bad": "bad", "unknown": "neutral"}


def when(moment: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM`` (UTC), or empty."""
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else ""


def exact(value: float | int | None) -> str:
    """A number as JSON writes it (for data attributes a test or script reads back exactly)."""
    return json.dumps(value)


# -- the headline lift -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiftView:
    """The job's completion lift (variants pooled) against the control, as the verdict reads it."""

    arm: str
    control: str
    status: str
    estimate: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    decided_by: str
    text: str  # "+5.1 pp [+1.2, +9.0]"
    p_text: str


def lift_view(report: JobReport) -> LiftView | None:
    """The completion comparison the report's status comes from (None when there is none)."""
    comparison = view.job_comparison(report, COMPLETION_RATE)
    if comparison is None:
        return None
    result = decisive(comparison)
    lower, upper = result.ci
    return LiftView(
        arm=comparison.arm,
        control=comparison.control,
        status=comparison.status,
        estimate=result.estimate,
        lower=lower,
        upper=upper,
        p_value=result.p_value,
        decided_by=(comparison.decided_by or "fixed_horizon").replace("_", " "),
        text=f"{pp(result.estimate)} {pp_ci(result.ci)}",
        p_text=pval(result.p_value),
    )


def curves_spec(report: JobReport) -> dict[str, Any] | None:
    """The survival (completion) curves per arm as a Vega-Lite spec, or None without curves."""
    curves = (report.variant_measurement or report.measurement).curves
    if not curves:
        return None
    text = json.dumps({arm: curve.model_dump(mode="json") for arm, curve in curves.items()})
    spec: dict[str, Any] = json.loads(_curves_spec_text(text))
    return spec


@functools.lru_cache(maxsize=16)
def _curves_spec_text(curves_json: str) -> str:
    # Building and validating the altair chart costs ~100 ms; the same curves give the same spec.
    curves = {
        arm: SurvivalCurve.model_validate(curve) for arm, curve in json.loads(curves_json).items()
    }
    return json.dumps(completion_curves(curves).properties(width="container").to_dict())


# -- health ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthItem:
    name: str
    state: str  # ok, warn, bad, unknown
    value: str
    detail: str
    queries: list[StoreQuery]


def health_items(health: JobHealth) -> list[HealthItem]:
    """The health strip: sample ratio, deliveries, data freshness, each with its queries."""
    ratio = health.sample_ratio
    enrolled = ", ".join(f"{arm} {n:,}" for arm, n in ratio.enrolled.items()) or "no enrollments"
    if ratio.srm is None:
        srm_value, srm_detail = "not testable", f"{enrolled} (one arm, or too few units)"
    else:
        srm_value = "mismatch" if ratio.srm.mismatch else "as configured"
        srm_detail = (
            f"{enrolled}; holdout {pct(ratio.holdout_fraction, 0)} planned; "
            f"chi² = {ratio.srm.chi2:.2f}, p = {pval(ratio.srm.p_value)} (mismatch when p < 0.001)"
            if ratio.srm.chi2 is not None
            else enrolled
        )
    deliveries = health.deliveries
    fresh = health.freshness
    lag = (
        f"{fresh.event_lag_hours / 24:,.1f} days ago"
        if fresh.event_lag_hours is not None and fresh.event_lag_hours >= 48
        else f"{fresh.event_lag_hours:,.1f} h ago"
        if fresh.event_lag_hours is not None
        else "no events"
    )
    fresh_detail = (
        f"newest event {when(fresh.newest_event)} UTC; last tick {when(fresh.last_tick)} UTC"
        + (f". {' '.join(fresh.warnings)}" if fresh.warnings else "")
    )
    return [
        HealthItem("Sample ratio", ratio.state, srm_value, srm_detail, [ratio.query]),
        HealthItem(
            "Deliveries",
            deliveries.state,
            f"{deliveries.sent:,} sent · {deliveries.failed:,} failed · "
            f"{deliveries.pending:,} pending",
            ", ".join(f"{status} {n:,}" for status, n in deliveries.by_status.items())
            or "no messages",
            [deliveries.query],
        ),
        HealthItem(
            "Data freshness", fresh.state, lag, fresh_detail, [fresh.query, fresh.tick_query]
        ),
    ]


# -- tables ----------------------------------------------------------------------------------------

ARM_COLUMNS = (
    "arm",
    "entered",
    "completed",
    "exited",
    "active",
    "matured",
    "completion rate",
    "median days to goal",
)


def arm_rows(report: JobReport) -> list[list[Cell]]:
    return [
        [
            row["arm"] + (" (variant)" if row["variant"] else ""),
            row["entered"],
            row["completed"],
            row["exited"],
            row["active"],
            row["matured"],
            pct(row["completion_rate"]),
            days(row["median"]).removeprefix("+"),
        ]
        for row in view.arm_rows(report)
    ]


COMPARISON_COLUMNS = (
    "scope",
    "versus",
    "metric",
    "estimate",
    "interval",
    "p",
    "relative",
    "status",
)


def comparison_rows(report: JobReport) -> list[list[Cell]]:
    return [
        [
            row["scope"],
            row["versus"],
            row["metric"],
            row["estimate"],
            row["ci"],
            row["p"],
            row["relative"],
            status_text(row["status"]),
        ]
        for row in view.comparison_rows(report)
    ]


FUNNEL_COLUMNS = ("arm", "entered", "messaged", "delivered", "completed", "completed / entered")


def funnel_rows(page: JobPage) -> list[list[Cell]]:
    return [
        [
            step.arm,
            step.entered,
            step.messaged,
            step.delivered,
            step.completed,
            pct(step.completed / step.entered) if step.entered else "—",
        ]
        for step in page.funnel
    ]


SEGMENT_COLUMNS = (
    "segment",
    "arm",
    "holdout n",
    "treated n",
    "holdout rate",
    "treated rate",
    "lift",
    "interval",
    "adjusted interval",
    "p (BH)",
    "note",
)


def segment_row(segment: Segment) -> list[Cell]:
    """One segment's lift; the adjusted interval exists for the segments BH selects."""
    return [
        segment.segment,
        segment.arm,
        segment.n_control,
        segment.n_arm,
        pct(segment.rate_control),
        pct(segment.rate_arm),
        pp(segment.lift.estimate),
        pp_ci(segment.lift.ci),
        pp_ci(segment.adjusted_ci) if segment.adjusted_ci is not None else "not selected",
        pval(segment.p_value_bh),
        "small: read with care" if segment.small else "",
    ]


DELIVERY_COLUMNS = ("arm", "units", "units reached", *view.DELIVERY_STATUSES)


def delivery_rows(report: JobReport) -> list[list[Cell]]:
    return [
        [row["arm"], row["units"], row["units_reached"], *row["by_status"]]
        for row in view.delivery_rows(report)
    ]


ACCOUNT_COLUMNS = (
    "account",
    "name",
    "arm",
    "entered",
    "ended",
    "how",
    "segment",
    "plan",
    "industry",
    "region",
    "owner",
    "ARR",
)


def account_rows(accounts: Page[JobAccount]) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for item in accounts.items:
        enrollment, account = item.enrollment, item.account
        ended = enrollment.completed_at or enrollment.exited_at
        rows.append(
            [
                enrollment.account_id,
                account.name if account is not None else "",
                enrollment.arm,
                when(enrollment.entered_at),
                when(ended),
                "completed" if enrollment.completed_at else (enrollment.exit_reason or ""),
                account.segment if account is not None else "",
                account.plan if account is not None else "",
                account.industry if account is not None else "",
                account.region if account is not None else "",
                account.owner if account is not None else "",
                money(account.arr, signed=False) if account is not None else "",
            ]
        )
    return rows


MESSAGE_COLUMNS = (
    "id",
    "account",
    "arm",
    "step",
    "channel",
    "status",
    "attempts",
    "due",
    "sent",
    "last error",
)


def message_rows(outbox: OutboxList) -> list[list[Cell]]:
    return [
        [
            message.id,
            message.account_id,
            message.arm or "",
            message.step_index,
            message.channel,
            message.status,
            message.attempts,
            when(message.due_at),
            when(message.sent_at),
            message.last_error or "",
        ]
        for message in outbox.messages
    ]


def _range(offset: int, shown: int, total: int) -> str:
    if total == 0 or shown == 0:
        return f"none of {count(total)}" if total else "none"
    return f"{offset + 1:,}–{offset + shown:,} of {count(total)}"


def page_range(page: Page[Any]) -> str:
    """ "1–25 of 1,305" (or "none")."""
    return _range(page.offset, len(page.items), page.total)


def outbox_range(outbox: OutboxList) -> str:
    return _range(outbox.offset, outbox.count, outbox.total)


# -- a segment's drill-down -----------------------------------------------------------------------


def segment_detail(segment: Segment) -> list[tuple[str, str]]:
    """One segment's figures as (label, value) pairs, the intervals the report carries."""
    sequential = segment.sequential
    return [
        ("arm against control", f"{segment.arm} − {segment.control}"),
        ("units", f"{segment.n_arm:,} {segment.arm}, {segment.n_control:,} {segment.control}"),
        (
            "completion",
            f"{pct(segment.rate_arm)} {segment.arm}, {pct(segment.rate_control)} {segment.control}",
        ),
        ("lift", pp(segment.lift.estimate)),
        ("interval (marginal)", pp_ci(segment.lift.ci)),
        (
            "adjusted interval (false coverage rate)",
            pp_ci(segment.adjusted_ci)
            if segment.adjusted_ci is not None
            else "not selected by Benjamini–Hochberg: no adjusted interval",
        ),
        ("always-valid interval", pp_ci(sequential.ci) if sequential is not None else "—"),
        ("p", pval(segment.lift.p_value)),
        ("p (Benjamini–Hochberg)", pval(segment.p_value_bh)),
        ("p (Holm)", pval(segment.p_value_holm)),
        ("in the adjusted family", "yes" if segment.in_family else "no"),
        ("small", "yes: fewer than 50 units in an arm" if segment.small else "no"),
    ]


def heterogeneity_lines(tests: list[HeterogeneityTest]) -> list[str]:
    return [
        f"Across {test.column} ({test.arm}, {test.scale.replace('_', ' ')} scale): Cochran's "
        f"Q = {test.q:.2f}, df = {test.df}, p = {pval(test.p_value)}"
        if test.q is not None
        else f"Across {test.column} ({test.arm}, {test.scale}): not computable"
        for test in tests
    ]
