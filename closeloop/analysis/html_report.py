"""The job report as a standalone HTML page (inline SVG charts; no scripts, no CDN)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import jinja2

from closeloop import __version__
from closeloop.analysis.charts import completion_curves, lift_chart, to_svg
from closeloop.analysis.job_report import JobReport
from closeloop.analysis.matching import MatchedComparison
from closeloop.analysis.measurement import (
    CHECKPOINTS,
    COMPLETION_RATE,
    TIME_TO_GOAL,
    VALUE,
    Comparison,
)
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.stats import Interval, Status

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("closeloop.analysis", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def _ok(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def pct(value: float | None) -> str:
    return f"{value:.1%}" if _ok(value) else "—"


def pp(value: float | None) -> str:
    return f"{value * 100:+.1f} pp" if _ok(value) else "—"


def pp_ci(ci: Interval) -> str:
    if not (_ok(ci.lower) and _ok(ci.upper)):
        return "—"
    return f"[{ci.lower * 100:+.1f}, {ci.upper * 100:+.1f}]"


def pval(value: float | None) -> str:
    if not _ok(value):
        return "—"
    assert value is not None
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def days(value: float | None) -> str:
    return f"{value:+.1f} d" if _ok(value) else "—"


def num(value: float | None) -> str:
    return f"{value:.1f}" if _ok(value) else "—"


def headline(report: JobReport) -> str:
    """One sentence a CS leader can repeat to the board, honest about uncertainty."""
    comparison = report.decisive_lift
    always_valid = comparison is report.sequential_lift
    sooner = ""
    difference = report.time_to_goal.absolute
    if _ok(difference.estimate) and _ok(difference.ci.lower):
        # Words and interval in one direction: days sooner, or days later.
        if difference.estimate <= 0:
            amount, low, high, word = (
                -difference.estimate,
                -difference.ci.upper,
                -difference.ci.lower,
                "sooner",
            )
        else:
            amount, low, high, word = (
                difference.estimate,
                difference.ci.lower,
                difference.ci.upper,
                "later",
            )
        sooner = (
            f"; over {report.horizon_days:g} days they reached it {amount:.1f} days {word} on "
            f"average [{low:.1f}, {high:.1f}]"
        )
    if report.matched is not None:
        return _observational_headline(report, sooner="")
    if report.status is Status.INSUFFICIENT_DATA:
        reason = comparison.message or (report.warnings[0] if report.warnings else "")
        return "Not enough data to measure this job yet" + (f": {reason}" if reason else ".")
    effect = (
        f"{comparison.estimate * 100:+.1f} percentage points "
        f"[{comparison.ci.lower * 100:+.1f}, {comparison.ci.upper * 100:+.1f}]"
    )
    so_far = ""
    if always_valid:
        so_far = (
            " so far (always-valid interval; enrollments are still maturing)"
            if report.measurement.running
            else " (always-valid interval: called while the job ran)"
        )
    if report.status is Status.POSITIVE:
        return f"The job worked: completion rose {effect} versus the holdout{so_far}{sooner}."
    if report.status is Status.NEGATIVE:
        return f"The job backfired: completion changed {effect} versus the holdout{so_far}{sooner}."
    return (
        f"Inconclusive: completion changed {effect} versus the holdout{so_far}; the interval "
        f"includes no effect{sooner}."
    )


def impact_line(report: JobReport) -> str | None:
    """The job's value in money, with its interval: the added ARR of its matured treated units.

    From the longest revenue horizon at which the MRR change could be compared: the difference
    in MRR change per account, times the treated accounts, times 12.
    """
    if report.revenue is None:
        return None
    for horizon in sorted(report.revenue.horizons, key=lambda h: -h.days):
        comparison = horizon.comparison
        if not (_ok(comparison.mrr_change.estimate) and _ok(comparison.mrr_change.ci.lower)):
            continue
        ci = comparison.added_arr_ci
        return (
            f"{compact_money(comparison.added_arr)} ARR a year "
            f"[{compact_money(ci.lower)}, {compact_money(ci.upper)}] "
            f"from {comparison.treated_accounts:,} treated accounts over {horizon.days} days "
            f"({comparison.status.value}; in the subscriptions' currency)"
        )
    return None


def compact_money(value: float) -> str:
    """A signed amount, compact: +41k, -1.2M, +950."""
    sign = "+" if value >= 0 else "-"
    amount = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if amount >= limit:
            scaled = amount / limit
            return f"{sign}{scaled:.{0 if scaled >= 100 else 1}f}{suffix}"
    return f"{sign}{amount:,.0f}"


def _observational_headline(report: JobReport, sooner: str) -> str:
    matched = report.matched
    assert matched is not None
    effect = matched.completion
    counts = matched.counts
    if report.status is Status.INSUFFICIENT_DATA or not _ok(effect.estimate):
        return (
            "No randomized holdout, and too little to compare with: "
            + (effect.message or "the matched comparison has no estimate")
            + "."
        )
    direction = {
        Status.POSITIVE: "higher than",
        Status.NEGATIVE: "lower than",
    }.get(report.status, "not distinguishable from")
    return (
        f"Observational (no holdout): enrolled accounts' completion was {pp(effect.estimate)} "
        f"{pp_ci(effect.ci)}, {direction} matched accounts that were eligible but not enrolled "
        f"(effect on the {counts.treated_matched:,} matched treated accounts; not randomized)."
    )


def matched_html(matched: MatchedComparison) -> dict[str, Any]:
    """A matched comparison as text cells, for the HTML pages."""
    counts = matched.counts
    return {
        "arm": matched.treated,
        "control": matched.comparison,
        "estimand": matched.estimand,
        "covariates": ", ".join(c.name for c in matched.covariates),
        "effect": f"{pp(matched.completion.estimate)} {pp_ci(matched.completion.ci)}",
        "naive": f"{pp(matched.naive_completion.estimate)} {pp_ci(matched.naive_completion.ci)}",
        "counts": f"{counts.treated_matched:,} treated matched ({counts.treated_pruned:,} pruned), "
        f"{counts.control_matched:,} comparison units ({counts.control_pruned:,} pruned)",
        "warnings": list(matched.warnings),
        "balance": [
            [
                row.covariate + (f" = {row.level}" if row.level is not None else ""),
                f"{row.treated_before:.3g}",
                f"{row.control_before:.3g}",
                f"{row.smd_before:+.2f}",
                f"{row.smd_after:+.2f}",
            ]
            for row in matched.balance
        ],
    }


def arm_rows(report: JobReport) -> list[dict[str, Any]]:
    """Per arm, then per variant: what the engine did and what each arm achieved."""
    rows = []
    groups = [(report.arms, report.measurement)]
    if report.variant_measurement is not None:
        groups.append((report.variants, report.variant_measurement))
    seen = set()
    for summaries, measurement in groups:
        for name, summary in summaries.items():
            if name in seen or name not in measurement.arms:
                continue
            seen.add(name)
            arm = measurement.arms[name]
            rows.append(
                {
                    "arm": name,
                    "variant": summaries is report.variants,
                    "entered": summary.entered,
                    "completed": summary.completed,
                    "exited": summary.exited,
                    "exits": ", ".join(
                        f"{reason} {count}"
                        for reason, count in sorted(summary.exited_by_reason.items())
                    ),
                    "active": summary.active,
                    "matured": arm.matured,
                    "completion_rate": arm.completion_rate,
                    "completion_at": arm.completion_at,
                    "median": arm.median_time_to_goal,
                    "median_ci": arm.curve.median_ci,
                    "conditional_median": arm.conditional_median_days,
                    "conditional_mean": arm.conditional_mean_days,
                }
            )
    return rows


def comparison_rows(report: JobReport) -> list[dict[str, Any]]:
    """Every comparison the report makes, the job as a whole first, then each variant."""
    rows = []
    measurements = [("job", report.measurement)]
    if report.variant_measurement is not None:
        measurements.append(("variant", report.variant_measurement))
    for scope, measurement in measurements:
        for comparison in measurement.comparisons:
            if scope == "variant" and comparison.arm == TREATMENT:
                continue
            rows.append(_comparison_row(scope, comparison, report.horizon_days))
    return rows


def _comparison_row(scope: str, comparison: Comparison, horizon_days: float) -> dict[str, Any]:
    absolute = comparison.absolute
    label = {
        COMPLETION_RATE: "completion rate",
        VALUE: "value" + (" (CUPED)" if comparison.cuped else ""),
        TIME_TO_GOAL: f"restricted mean time to goal over {horizon_days:g} d",
    }[comparison.metric]
    if comparison.metric == COMPLETION_RATE:
        estimate, interval = pp(absolute.estimate), pp_ci(absolute.ci)
    elif comparison.metric == TIME_TO_GOAL:
        estimate, interval = days(absolute.estimate), days_ci(absolute.ci)
    else:
        estimate, interval = num(absolute.estimate), num_ci(absolute.ci)
    sequential = comparison.sequential
    adjusted = comparison.covariate_adjusted
    return {
        "adjusted": (
            f"{pp(adjusted.result.estimate)} {pp_ci(adjusted.result.ci)}"
            if adjusted is not None and _ok(adjusted.result.estimate)
            else ""
        ),
        "holm": pval(comparison.adjusted.p_value) if comparison.adjusted is not None else "",
        "bayesian": (
            f"{comparison.bayesian.probability_better:.1%}"
            if comparison.bayesian is not None and comparison.bayesian.is_defined
            else ""
        ),
        "scope": scope,
        "versus": f"{comparison.arm} − {comparison.control}",
        "metric": label,
        "estimate": estimate,
        "ci": interval,
        "p": pval(absolute.p_value),
        "relative": pct(comparison.relative.estimate) if comparison.relative else "",
        "always_valid": pp_ci(sequential.ci) if sequential is not None else "",
        "logrank": pval(comparison.logrank.p_value) if comparison.logrank else "",
        "status": comparison.decisive.status.value,
    }


def segment_rows(
    report: JobReport, truths: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    rows = []
    measurements = [report.measurement]
    if report.variant_measurement is not None:
        measurements.append(report.variant_measurement)
    for measurement in measurements:
        for segment in measurement.segments:
            if measurement is report.variant_measurement and segment.arm == TREATMENT:
                continue
            truth = truths.get(segment.segment) if truths and segment.arm == TREATMENT else None
            ci = segment.lift.ci
            rows.append(
                {
                    "column": segment.column,
                    "segment": segment.segment,
                    "arm": segment.arm,
                    "small": segment.small,
                    "holdout_n": segment.control_stat.n,
                    "treatment_n": segment.arm_stat.n,
                    "holdout_rate": segment.control_stat.mean if segment.control_stat.n else None,
                    "treatment_rate": segment.arm_stat.mean if segment.arm_stat.n else None,
                    "lift": segment.lift.estimate,
                    "ci": ci,
                    "adjusted_ci": segment.adjusted_ci,
                    "sequential_ci": (
                        segment.sequential.ci if segment.sequential is not None else None
                    ),
                    "p": segment.lift.p_value,
                    "p_bh": segment.p_value_bh,
                    "p_holm": segment.p_value_holm,
                    "truth": truth,
                    "covered": truth is not None and ci.lower <= truth <= ci.upper,
                }
            )
    return rows


def heterogeneity_rows(report: JobReport) -> list[dict[str, Any]]:
    measurements = [report.measurement]
    if report.variant_measurement is not None:
        measurements.append(report.variant_measurement)
    return [
        {
            "column": h.column,
            "arm": h.arm,
            "scale": h.scale,
            "q": h.q,
            "df": h.df,
            "p": pval(h.p_value),
        }
        for measurement in measurements
        for h in measurement.heterogeneity
        if not (measurement is report.variant_measurement and h.arm == TREATMENT)
    ]


def money(value: float | None) -> str:
    return f"{value:+,.0f}" if _ok(value) else "—"


def money_ci(ci: Interval) -> str:
    return f"[{money(ci.lower)}, {money(ci.upper)}]" if _ok(ci.lower) and _ok(ci.upper) else "—"


def revenue_rows(report: JobReport) -> list[dict[str, Any]]:
    """Per horizon: the job (variants pooled) against the holdout on retention, NRR and MRR."""
    if report.revenue is None:
        return []
    rows = []
    for horizon in report.revenue.horizons:
        comparison = horizon.comparison
        holdout = horizon.arms.get(HOLDOUT)
        treated = horizon.arms.get(TREATMENT)
        rows.append(
            {
                "days": horizon.days,
                "matured": horizon.matured,
                "retention": (
                    f"{pct(holdout.retention if holdout else None)} → "
                    f"{pct(treated.retention if treated else None)}"
                ),
                "retention_difference": f"{pp(comparison.retention.estimate)} "
                f"{pp_ci(comparison.retention.ci)}",
                "nrr": (
                    f"{pct(holdout.nrr if holdout else None)} → "
                    f"{pct(treated.nrr if treated else None)}"
                ),
                "nrr_difference": f"{pp(comparison.nrr.estimate)} {pp_ci(comparison.nrr.ci)}",
                "mrr_change": f"{money(comparison.mrr_change.estimate)} "
                f"{money_ci(comparison.mrr_change.ci)}",
                "added_mrr": f"{money(comparison.added_mrr)} {money_ci(comparison.added_mrr_ci)}",
                "added_arr": money(comparison.added_arr),
                "status": comparison.status.value,
                "message": comparison.mrr_change.message,
                "warnings": horizon.warnings,
            }
        )
    return rows


def days_ci(ci: Interval) -> str:
    return f"[{days(ci.lower)}, {days(ci.upper)}]" if _ok(ci.lower) and _ok(ci.upper) else "—"


def num_ci(ci: Interval) -> str:
    return f"[{num(ci.lower)}, {num(ci.upper)}]" if _ok(ci.lower) and _ok(ci.upper) else "—"


DELIVERY_STATUSES = ("sent", "pending", "dead", "skipped", "not_sent", "ghost", "cancelled")
"""The outbox statuses a report's deliveries table shows, in this order."""


def level(alpha: float) -> str:
    """A confidence level for a header: 0.025 -> "97.5%"."""
    return f"{(1 - alpha) * 100:g}%"


def verdict_view(report: JobReport) -> dict[str, Any] | None:
    """The verdict block the report opens with: decision, summary, reasons, guardrails, money."""
    verdict = report.verdict
    if verdict is None:
        return None
    return {
        "decision": verdict.decision.value,
        "words": verdict.words,
        "summary": verdict.summary,
        "reasons": verdict.reasons,
        "guardrails": [
            {"name": g.name, "state": g.state.value, "detail": g.detail} for g in verdict.guardrails
        ],
        "impact": impact_line(report),
    }


def render_job_report_html(report: JobReport, truths: Mapping[str, float] | None = None) -> str:
    rows = segment_rows(report, truths)
    chart_rows = [
        {
            "segment": row["segment"]
            if row["arm"] == TREATMENT
            else f"{row['segment']} ({row['arm']})",
            "estimate": row["lift"] * 100,
            "low": row["ci"].lower * 100,
            "high": row["ci"].upper * 100,
            **({"truth": row["truth"] * 100} if row["truth"] is not None else {}),
        }
        for row in rows
        if _ok(row["lift"]) and _ok(row["ci"].lower)
    ]
    measurement = report.variant_measurement or report.measurement
    curves = {name: arm.curve for name, arm in measurement.arms.items() if arm.risk_table.times}
    return _ENV.get_template("job_report.html.j2").render(
        report=report,
        headline=headline(report),
        verdict=verdict_view(report),
        final_level=level(report.measurement.options.final_alpha),
        running_level=level(report.measurement.options.running_alpha),
        weeks=report.measurement.by_entry_week,
        competing=report.measurement.competing,
        value_cap=report.measurement.value_cap,
        arms=arm_rows(report),
        comparisons=comparison_rows(report),
        curves_svg=to_svg(completion_curves(curves, report.horizon_days)) if curves else "",
        lift_svg=to_svg(lift_chart(chart_rows)) if chart_rows else "",
        segment_rows=rows,
        heterogeneity=heterogeneity_rows(report),
        revenue=revenue_rows(report),
        deliveries=list(report.deliveries.values()),
        delivery_statuses=DELIVERY_STATUSES,
        matched=matched_html(report.matched) if report.matched is not None else None,
        checkpoints=[t for t in CHECKPOINTS if t <= report.horizon_days],
        truths=bool(truths),
        version=__version__,
        pct=pct,
        pp=pp,
        pp_ci=pp_ci,
        pval=pval,
        days=days,
        num=num,
    )
