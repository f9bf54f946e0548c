"""The standalone HTML pages: a job's report and a measurement (inline SVG charts, no scripts).

Both render the public models (:class:`JobReport`, :class:`Measurement`) with the rows the
terminal shows, so the page and ``--format json`` carry the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2

from closeloop import __version__
from closeloop.present import measurement as measured
from closeloop.present import report_view as view
from closeloop.present.charts import completion_chart, completion_curves, lift_chart, to_svg
from closeloop.present.format import days, level, num, pct, pp, pp_ci, pval
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.measurement import Measurement

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("closeloop.present", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def job_report_html(report: JobReport, truths: Mapping[str, float] | None = None) -> str:
    """The job's report as one page; ``truths`` (the simulator's effects) add a column."""
    rows = view.segment_rows(report, truths)
    chart_rows = view.lift_chart_rows(report, rows)
    curves = (report.variant_measurement or report.measurement).curves
    arms = view.arm_rows(report)
    measurement = report.measurement
    return _ENV.get_template("job_report.html.j2").render(
        report=report,
        as_of=view.as_of_text(report),
        headline=view.headline(report),
        verdict=view.verdict_view(report),
        final_level=level(measurement.final_alpha),
        running_level=level(measurement.running_alpha),
        weeks=measurement.by_entry_week,
        competing=measurement.competing,
        value_cap=measurement.value_cap,
        arms=arms,
        comparisons=view.comparison_rows(report),
        curves_svg=to_svg(completion_curves(curves)) if curves else "",
        lift_svg=to_svg(lift_chart(chart_rows)) if chart_rows else "",
        segment_rows=rows,
        heterogeneity=view.heterogeneity_rows(report),
        revenue=view.revenue_rows(report),
        deliveries=view.delivery_rows(report),
        delivery_statuses=view.DELIVERY_STATUSES,
        matched=measured.matched_view(report.matched) if report.matched is not None else None,
        checkpoints=view.row_checkpoints(arms),
        truths=bool(truths),
        version=__version__,
        pct=pct,
        pp=pp,
        pp_ci=pp_ci,
        pval=pval,
        days=days,
        num=num,
    )


def job_report_pdf(report: JobReport) -> bytes:
    """The job's report page as a PDF, made by WeasyPrint (as the board report's)."""
    import weasyprint  # imported here: loading pango takes a moment nobody else should pay

    return bytes(weasyprint.HTML(string=job_report_html(report)).write_pdf())


def write_job_report_html(
    report: JobReport, path: Path, truths: Mapping[str, float] | None = None
) -> Path:
    """Write :func:`job_report_html` to ``path`` (its folder is created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(job_report_html(report, truths), encoding="utf-8")
    return path


def measurement_html(measurement: Measurement) -> str:
    """A measurement as one page with the tables of the terminal output and the curves."""
    srm = measured.srm_text(measurement)
    mismatch = measurement.srm is not None and measurement.srm.mismatch
    horizon = measurement.horizon_days or 0.0
    return _ENV.get_template("measurement.html.j2").render(
        horizon=measured.horizon(measurement),
        control=measurement.control,
        status=measurement.status,
        headline=measured.headline(measurement),
        warnings=measurement.warnings,
        arm_columns=measured.arm_columns(measurement),
        arms=measured.arm_rows(measurement),
        curves_svg=(
            to_svg(completion_chart(measurement.curves, horizon)) if measurement.curves else ""
        ),
        comparison_columns=measured.COMPARISON_COLUMNS,
        comparisons=[measured.comparison_cells(c) for c in measurement.comparisons],
        srm=(
            "not run (no --weights)" if srm is None else srm + (" — mismatch" if mismatch else "")
        ),
        segment_columns=measured.SEGMENT_COLUMNS,
        segments=[measured.segment_cells(segment) for segment in measurement.segments],
        heterogeneity=measured.heterogeneity_lines(measurement),
        matched=[measured.matched_view(m) for m in measurement.matched or []],
        version=__version__,
    )
