"""The job report as a standalone HTML page (inline SVG charts; no scripts, no CDN)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import jinja2

from closeloop import __version__
from closeloop.analysis.charts import completion_curves, lift_chart, to_svg
from closeloop.analysis.job_report import JobReport
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
    lift = report.lift
    sooner = ""
    ttg = report.time_to_goal
    if ttg is not None and _ok(ttg.rmst_difference.estimate):
        difference = ttg.rmst_difference
        faster = -difference.estimate
        sooner = (
            f"; over {report.horizon_days} days they reached it {abs(faster):.1f} days "
            f"{'sooner' if faster >= 0 else 'later'} on average "
            f"[{-difference.ci.upper:.1f}, {-difference.ci.lower:.1f}]"
        )
    if report.status is Status.INSUFFICIENT_DATA:
        return "Not enough data to measure this job yet" + (
            f": {report.warnings[0]}" if report.warnings else "."
        )
    effect = (
        f"{lift.estimate * 100:+.1f} percentage points "
        f"[{lift.ci.lower * 100:+.1f}, {lift.ci.upper * 100:+.1f}]"
    )
    if report.status is Status.POSITIVE:
        return f"The job worked: completion rose {effect} versus the holdout{sooner}."
    if report.status is Status.NEGATIVE:
        return f"The job backfired: completion changed {effect} versus the holdout{sooner}."
    return (
        f"Inconclusive: completion changed {effect} versus the holdout; the interval includes "
        f"no effect{sooner}."
    )


def segment_rows(
    report: JobReport, truths: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for segment in report.segments:
        truth = truths.get(segment.segment) if truths else None
        ci = segment.lift.ci
        rows.append(
            {
                "segment": segment.segment,
                "small": segment.small,
                "holdout_n": segment.holdout.n,
                "treatment_n": segment.treatment.n,
                "holdout_rate": segment.holdout.mean if segment.holdout.n else None,
                "treatment_rate": segment.treatment.mean if segment.treatment.n else None,
                "lift": segment.lift.estimate,
                "ci": ci,
                "p": segment.lift.p_value,
                "adjusted_p": segment.adjusted_p_value,
                "truth": truth,
                "covered": truth is not None and ci.lower <= truth <= ci.upper,
            }
        )
    return rows


def render_job_report_html(report: JobReport, truths: Mapping[str, float] | None = None) -> str:
    rows = segment_rows(report, truths)
    chart_rows = [
        {
            "segment": row["segment"],
            "estimate": row["lift"] * 100,
            "low": row["ci"].lower * 100,
            "high": row["ci"].upper * 100,
            **({"truth": row["truth"] * 100} if row["truth"] is not None else {}),
        }
        for row in rows
        if _ok(row["lift"]) and _ok(row["ci"].lower)
    ]
    ttg = report.time_to_goal
    return _ENV.get_template("job_report.html.j2").render(
        report=report,
        headline=headline(report),
        arms=[report.arms[TREATMENT], report.arms[HOLDOUT]],
        ttg=ttg,
        curves_svg=to_svg(completion_curves(ttg.curves, ttg.horizon_days)) if ttg else "",
        lift_svg=to_svg(lift_chart(chart_rows)) if chart_rows else "",
        segment_rows=rows,
        truths=bool(truths),
        version=__version__,
        pct=pct,
        pp=pp,
        pp_ci=pp_ci,
        pval=pval,
        days=days,
        num=num,
    )
