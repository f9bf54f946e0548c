"""A job's report as text rows and sentences, shared by the terminal and the HTML page.

Everything renders the public model :class:`closeloop.schemas.job_report.JobReport`: the job as a
whole (variants pooled into one treated arm) against the control, then each variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from closeloop.present.format import (
    compact_money,
    days,
    days_ci,
    money,
    money_ci,
    num,
    num_ci,
    ok,
    pct,
    pp,
    pp_ci,
    pval,
)
from closeloop.present.measurement import COMPLETION_RATE, decisive, find_comparison
from closeloop.schemas.job_report import ArmCounts, JobReport
from closeloop.schemas.measurement import Comparison, Estimate, Measurement
from closeloop.schemas.revenue import RevenueValue

DELIVERY_STATUSES = ("sent", "pending", "dead", "skipped", "not_sent", "ghost", "cancelled")
"""The outbox statuses a report's deliveries table shows, in this order."""

TIME_TO_GOAL = "time_to_goal"


# -- the job's own arms and comparisons ------------------------------------------------------------


def treated_arm(report: JobReport) -> str:
    """The job's treated arm (its variants pooled): the job measurement's other arm."""
    control = report.measurement.control
    return next((name for name in report.measurement.arms if name != control), "treatment")


def job_comparison(report: JobReport, metric: str) -> Comparison | None:
    """The job as a whole against its control on ``metric``."""
    return find_comparison(report.measurement, treated_arm(report), metric)


def as_of_text(report: JobReport) -> str:
    """The analysis time as ``YYYY-MM-DD HH:MM`` (UTC)."""
    return f"{datetime.fromisoformat(report.as_of):%Y-%m-%d %H:%M}"


# -- headline --------------------------------------------------------------------------------------


def _sooner(report: JobReport) -> str:
    """How much sooner (or later) the treated arm reached the goal, in one direction, or ""."""
    comparison = job_comparison(report, TIME_TO_GOAL)
    difference = comparison.rmst_difference if comparison is not None else None
    if difference is None:
        return ""
    estimate, (lower, upper) = difference.estimate, difference.ci
    if not (ok(estimate) and ok(lower) and ok(upper)):
        return ""
    # Words and interval in one direction: days sooner, or days later.
    if estimate <= 0:
        amount, low, high, word = -estimate, -upper, -lower, "sooner"
    else:
        amount, low, high, word = estimate, lower, upper, "later"
    return (
        f"; over {report.horizon_days:g} days they reached it {amount:.1f} days {word} on "
        f"average [{low:.1f}, {high:.1f}]"
    )


def headline(report: JobReport) -> str:
    """One sentence a CS leader can repeat to the board, honest about uncertainty."""
    if report.matched is not None:
        return _observational_headline(report)
    comparison = job_comparison(report, COMPLETION_RATE)
    if report.status == "insufficient_data" or comparison is None:
        reason = (comparison.message if comparison is not None else "") or (
            report.warnings[0] if report.warnings else ""
        )
        return "Not enough data to measure this job yet" + (f": {reason}" if reason else ".")
    result = decisive(comparison)
    effect = f"{pp(result.estimate).removesuffix(' pp')} percentage points {pp_ci(result.ci)}"
    so_far = ""
    if comparison.decided_by == "always_valid":
        so_far = (
            " so far (always-valid interval; enrollments are still maturing)"
            if report.measurement.running
            else " (always-valid interval: called while the job ran)"
        )
    sooner = _sooner(report)
    if report.status == "positive":
        return f"The job worked: completion rose {effect} versus the holdout{so_far}{sooner}."
    if report.status == "negative":
        return f"The job backfired: completion changed {effect} versus the holdout{so_far}{sooner}."
    return (
        f"Inconclusive: completion changed {effect} versus the holdout{so_far}; the interval "
        f"includes no effect{sooner}."
    )


def _observational_headline(report: JobReport) -> str:
    matched = report.matched
    assert matched is not None
    effect = matched.completion
    if report.status == "insufficient_data" or not ok(effect.estimate):
        return (
            "No randomized holdout, and too little to compare with: "
            + (matched.message or "the matched comparison has no estimate")
            + "."
        )
    direction = {"positive": "higher than", "negative": "lower than"}.get(
        report.status, "not distinguishable from"
    )
    return (
        f"Observational (no holdout): enrolled accounts' completion was {pp(effect.estimate)} "
        f"{pp_ci(effect.ci)}, {direction} matched accounts that were eligible but not enrolled "
        f"(effect on the {matched.counts.treated_matched:,} matched treated accounts; "
        "not randomized)."
    )


def impact_line(revenue: RevenueValue | None) -> str | None:
    """The job's value in money, with its interval: the added ARR of its matured treated units.

    From the longest revenue horizon at which the MRR change could be compared: the difference
    in MRR change per account, times the treated accounts, times 12.
    """
    if revenue is None:
        return None
    for horizon in sorted(revenue.horizons, key=lambda h: -h.days):
        comparison = horizon.comparison
        change = comparison.mrr_change_difference
        added, (lower, upper) = comparison.added_arr, comparison.added_arr_ci
        if not (ok(change.estimate) and ok(change.ci[0])):
            continue
        if not (ok(added) and ok(lower) and ok(upper)):
            continue
        return (
            f"{compact_money(added)} ARR a year "
            f"[{compact_money(lower)}, {compact_money(upper)}] "
            f"from {comparison.treated_accounts:,} treated accounts over {horizon.days} days "
            f"({comparison.status}; in the subscriptions' currency)"
        )
    return None


def verdict_view(report: JobReport) -> dict[str, Any] | None:
    """The verdict block the report opens with: decision, summary, reasons, guardrails, money."""
    verdict = report.verdict
    if verdict is None:
        return None
    return {
        "decision": verdict.decision,
        "words": verdict.words,
        "summary": verdict.summary,
        "reasons": verdict.reasons,
        "guardrails": [
            {"name": g.name, "state": g.state, "detail": g.detail} for g in verdict.guardrails
        ],
        "impact": verdict.impact,
    }


# -- rows ------------------------------------------------------------------------------------------


def _measurements(report: JobReport) -> list[tuple[str, Measurement]]:
    """The job's measurement, then the variants' (scope "job", then "variant")."""
    found = [("job", report.measurement)]
    if report.variant_measurement is not None:
        found.append(("variant", report.variant_measurement))
    return found


def _arm_row(
    name: str, summary: ArmCounts, measurement: Measurement, variant: bool
) -> dict[str, Any]:
    arm = measurement.arms[name]
    return {
        "arm": name,
        "variant": variant,
        "entered": summary.entered,
        "completed": summary.completed,
        "exited": summary.exited,
        "exits": ", ".join(
            f"{reason} {count}" for reason, count in sorted(summary.exited_by_reason.items())
        ),
        "active": summary.active,
        "matured": arm.matured,
        "completion_rate": arm.completion_rate,
        "completion_at": arm.completion_at,
        "median": arm.median_time_to_goal,
        "median_ci": arm.median_time_to_goal_ci,
        "conditional_median": arm.conditional_median_days,
        "conditional_mean": arm.conditional_mean_days,
    }


def arm_rows(report: JobReport) -> list[dict[str, Any]]:
    """Per arm, then per variant: what the engine did and what each arm achieved."""
    rows = []
    groups = [(report.arms, report.measurement, False)]
    if report.variant_measurement is not None:
        groups.append((report.variants, report.variant_measurement, True))
    seen = set()
    for summaries, measurement, variant in groups:
        for name, summary in summaries.items():
            if name in seen or name not in measurement.arms:
                continue
            seen.add(name)
            rows.append(_arm_row(name, summary, measurement, variant))
    return rows


def row_checkpoints(rows: list[dict[str, Any]]) -> list[str]:
    """The checkpoint days ("7", "14" …) any arm row has, in order."""
    return sorted({day for row in rows for day in row["completion_at"]}, key=float)


def comparison_rows(report: JobReport) -> list[dict[str, Any]]:
    """Every comparison the report makes, the job as a whole first, then each variant."""
    treated = treated_arm(report)
    return [
        _comparison_row(scope, comparison, report.horizon_days)
        for scope, measurement in _measurements(report)
        for comparison in measurement.comparisons
        if not (scope == "variant" and comparison.arm == treated)
    ]


def _estimate_cells(comparison: Comparison, result: Estimate) -> tuple[str, str]:
    if comparison.metric == COMPLETION_RATE:
        return pp(result.estimate), pp_ci(result.ci)
    if comparison.metric == TIME_TO_GOAL:
        return days(result.estimate), days_ci(result.ci)
    return num(result.estimate), num_ci(result.ci)


def _comparison_row(scope: str, comparison: Comparison, horizon_days: float) -> dict[str, Any]:
    absolute = comparison.absolute or comparison.rmst_difference or decisive(comparison)
    label = {
        COMPLETION_RATE: "completion rate",
        "value": "value" + (" (CUPED)" if comparison.cuped else ""),
        TIME_TO_GOAL: f"restricted mean time to goal over {horizon_days:g} d",
    }[comparison.metric]
    estimate, interval = _estimate_cells(comparison, absolute)
    adjusted = comparison.covariate_adjusted
    bayesian = comparison.bayesian
    return {
        "adjusted": (
            f"{pp(adjusted.estimate)} {pp_ci(adjusted.ci)}"
            if adjusted is not None and ok(adjusted.estimate)
            else ""
        ),
        "holm": pval(comparison.p_value_holm) if comparison.family > 1 else "",
        "bayesian": (
            pct(bayesian.probability_better)
            if bayesian is not None and bayesian.probability_better is not None
            else ""
        ),
        "scope": scope,
        "versus": f"{comparison.arm} − {comparison.control}",
        "metric": label,
        "estimate": estimate,
        "ci": interval,
        "p": pval(absolute.p_value),
        "relative": pct(comparison.relative.estimate) if comparison.relative else "",
        "always_valid": pp_ci(comparison.sequential.ci) if comparison.sequential else "",
        "logrank": pval(comparison.logrank.p_value) if comparison.logrank else "",
        "status": comparison.status,
    }


def _covered(truth: float | None, interval: tuple[float | None, float | None]) -> bool:
    lower, upper = interval
    return truth is not None and ok(lower) and ok(upper) and lower <= truth <= upper


def segment_rows(
    report: JobReport, truths: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Every segment's lift; ``truths`` (the simulator's true effects) go beside the job's own."""
    treated = treated_arm(report)
    rows = []
    for scope, measurement in _measurements(report):
        for segment in measurement.segments:
            if scope == "variant" and segment.arm == treated:
                continue
            truth = truths.get(segment.segment) if truths and segment.arm == treated else None
            rows.append(
                {
                    "column": segment.column,
                    "segment": segment.segment,
                    "arm": segment.arm,
                    "small": segment.small,
                    "holdout_n": segment.n_control,
                    "treatment_n": segment.n_arm,
                    "holdout_rate": segment.rate_control,
                    "treatment_rate": segment.rate_arm,
                    "lift": segment.lift.estimate,
                    "ci": segment.lift.ci,
                    "adjusted_ci": segment.adjusted_ci,
                    "sequential_ci": segment.sequential.ci if segment.sequential else None,
                    "p": segment.lift.p_value,
                    "p_bh": segment.p_value_bh,
                    "p_holm": segment.p_value_holm,
                    "truth": truth,
                    "covered": _covered(truth, segment.lift.ci),
                }
            )
    return rows


def lift_chart_rows(report: JobReport, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The segment rows the lift chart can draw, in percentage points."""
    treated = treated_arm(report)
    chart = []
    for row in rows:
        lower, upper = row["ci"]
        if not (ok(row["lift"]) and ok(lower) and ok(upper)):
            continue
        chart.append(
            {
                "segment": row["segment"]
                if row["arm"] == treated
                else f"{row['segment']} ({row['arm']})",
                "estimate": row["lift"] * 100,
                "low": lower * 100,
                "high": upper * 100,
                **({"truth": row["truth"] * 100} if row["truth"] is not None else {}),
            }
        )
    return chart


def heterogeneity_rows(report: JobReport) -> list[dict[str, Any]]:
    treated = treated_arm(report)
    return [
        {
            "column": test.column,
            "arm": test.arm,
            "scale": test.scale,
            "q": num(test.q, 2),
            "df": test.df,
            "p": pval(test.p_value),
        }
        for scope, measurement in _measurements(report)
        for test in measurement.heterogeneity
        if not (scope == "variant" and test.arm == treated)
    ]


def _before_after(before: float | None, after: float | None) -> str:
    return f"{pct(before)} → {pct(after)}"


def revenue_rows(report: JobReport) -> list[dict[str, Any]]:
    """Per horizon: the job (variants pooled) against the holdout on retention, NRR and MRR."""
    revenue = report.revenue_value
    if revenue is None:
        return []
    rows = []
    for horizon in revenue.horizons:
        comparison = horizon.comparison
        control = horizon.arms.get(comparison.control)
        treated = horizon.arms.get(comparison.arm)
        retention, nrr = comparison.retention_difference, comparison.nrr_difference
        change = comparison.mrr_change_difference
        rows.append(
            {
                "days": horizon.days,
                "matured": horizon.matured,
                "retention": _before_after(
                    control.retention if control else None, treated.retention if treated else None
                ),
                "retention_difference": f"{pp(retention.estimate)} {pp_ci(retention.ci)}",
                "nrr": _before_after(
                    control.nrr if control else None, treated.nrr if treated else None
                ),
                "nrr_difference": f"{pp(nrr.estimate)} {pp_ci(nrr.ci)}",
                "mrr_change": f"{money(change.estimate)} {money_ci(change.ci)}",
                "added_mrr": f"{money(comparison.added_mrr)} {money_ci(comparison.added_mrr_ci)}",
                "added_arr": money(comparison.added_arr),
                "status": comparison.status,
                "message": change.message,
                "warnings": horizon.warnings,
            }
        )
    return rows


def delivery_rows(report: JobReport) -> list[dict[str, Any]]:
    """Messages per arm by outbox status (every status of DELIVERY_STATUSES, zero if none)."""
    return [
        {
            "arm": arm,
            "units": deliveries.units,
            "units_reached": deliveries.units_reached,
            "by_status": [deliveries.messages.get(status, 0) for status in DELIVERY_STATUSES],
        }
        for arm, deliveries in report.deliveries.items()
    ]
