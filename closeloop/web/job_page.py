"""``/jobs/{name}``: a job's page (verdict first, health, funnel, lift, curves, segments,
accounts, deliveries) and ``/jobs/{name}/segments/{column}``: its lift by one account column.

The JSON twin of the job page is :class:`closeloop.schemas.job_page.JobPage`, whose ``report`` is
exactly ``GET /api/jobs/{name}/report``; the segments page's is :class:`JobSegments`.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute

from closeloop.present import html, report_view
from closeloop.present import job_page as view
from closeloop.present.format import status_text
from closeloop.schemas.job_page import JobPage
from closeloop.schemas.measurement import Segment
from closeloop.services import job_page as service
from closeloop.services.server import Server
from closeloop.web import downloads
from closeloop.web.pages import Badge, Cell, Link, Page, PageRequest, Table, Tone, page

OFFSETS = ("completed_offset", "not_completed_offset", "deliveries_offset")
"""The query parameters that page through the accounts and the delivery log."""

MAX_OFFSET = 10_000_000


def job_path(name: str) -> str:
    return f"/jobs/{quote(name, safe='')}"


def segment_path(name: str, column: str, segment: str | None = None) -> str:
    path = f"{job_path(name)}/segments/{quote(column, safe='')}"
    return path + (f"?{urlencode({'segment': segment})}" if segment is not None else "")


def _tone(name: str) -> Tone:
    return Tone(name) if name in Tone.__members__ else Tone.neutral


def _segment_cells(job_name: str, segment: Segment) -> list[Cell]:
    cells: list[Cell] = list(view.segment_row(segment))
    cells[0] = Link(segment.segment, segment_path(job_name, segment.column, segment.segment))
    return cells


def _tables(model: JobPage) -> dict[str, Table]:
    report = model.report
    name = model.job_name
    segments = [
        segment
        for measurement in (report.measurement, report.variant_measurement)
        if measurement is not None
        for segment in measurement.segments
    ]

    def accounts(rows: list[list[view.Cell]]) -> list[list[Cell]]:
        return [
            [Link(str(row[0]), f"/accounts/{quote(str(row[0]), safe='')}"), *row[1:]]
            for row in rows
        ]

    return {
        "arms": Table(view.ARM_COLUMNS, view.arm_rows(report), "Arms"),
        "funnel": Table(view.FUNNEL_COLUMNS, view.funnel_rows(model), "Funnel per arm"),
        "comparisons": Table(
            view.COMPARISON_COLUMNS,
            [
                [
                    *row[:-1],
                    Badge(
                        str(row[-1]),
                        _tone(view.STATUS_TONE.get(str(row[-1]).replace(" ", "_"), "neutral")),
                    ),
                ]
                for row in view.comparison_rows(report)
            ],
            "Comparisons",
        ),
        "segments": Table(
            view.SEGMENT_COLUMNS,
            [_segment_cells(name, segment) for segment in segments],
            "Lift by segment",
        ),
        "deliveries": Table(view.DELIVERY_COLUMNS, view.delivery_rows(report), "Messages per arm"),
        "completed": Table(
            view.ACCOUNT_COLUMNS,
            accounts(view.account_rows(model.completed)),
            "Accounts that completed",
        ),
        "not_completed": Table(
            view.ACCOUNT_COLUMNS,
            accounts(view.account_rows(model.not_completed)),
            "Accounts that left without completing",
        ),
        "delivery_log": Table(
            view.MESSAGE_COLUMNS, view.message_rows(model.deliveries), "Delivery log"
        ),
    }


def _pager(
    request: PageRequest, parameter: str, offset: int, limit: int, total: int
) -> dict[str, str | None]:
    """Links to the previous and next page of one list, keeping the other lists' offsets."""

    def url(value: int) -> str:
        params = {key: request.query[key] for key in OFFSETS if key in request.query}
        params[parameter] = str(value)
        return f"{request.request.url.path}?{urlencode(params)}"

    return {
        "previous": url(max(offset - limit, 0)) if offset > 0 else None,
        "next": url(offset + limit) if offset + limit < total else None,
    }


@page("/jobs/{name}", template="job.html.j2", title="Job")
def job_page(request: PageRequest, name: str) -> Page:
    offsets = {
        key: request.query_int(key, 0, minimum=0, maximum=MAX_OFFSET) or 0 for key in OFFSETS
    }
    with request.workspace() as workspace:
        model = service.job_page(workspace, name, **offsets)
        columns = service.segment_columns(workspace)
    report = model.report
    lift = view.lift_view(report)
    verdict = report_view.verdict_view(report)
    return Page(
        model=model,
        tables=_tables(model),
        title=name,
        context={
            "job": model,
            "job_url": job_path(name),
            "report": report,
            "verdict": verdict,
            "verdict_tone": view.DECISION_TONE.get(verdict["decision"], "neutral")
            if verdict
            else "neutral",
            "headline": report_view.headline(report),
            "as_of": report_view.as_of_text(report),
            "lift": lift,
            "lift_tone": view.STATUS_TONE.get(lift.status, "neutral") if lift else "neutral",
            "status_text": status_text,
            "exact": view.exact,
            "health": view.health_items(model.health),
            "state_tone": view.STATE_TONE,
            "curves": view.curves_spec(report),
            "impact": report_view.impact_line(report.revenue_value),
            "columns": [(column, segment_path(name, column)) for column in columns],
            "ranges": {
                "completed": view.page_range(model.completed),
                "not_completed": view.page_range(model.not_completed),
                "delivery_log": view.outbox_range(model.deliveries),
            },
            "pagers": {
                "completed": _pager(
                    request,
                    "completed_offset",
                    model.completed.offset,
                    model.completed.limit,
                    model.completed.total,
                ),
                "not_completed": _pager(
                    request,
                    "not_completed_offset",
                    model.not_completed.offset,
                    model.not_completed.limit,
                    model.not_completed.total,
                ),
                "delivery_log": _pager(
                    request,
                    "deliveries_offset",
                    model.deliveries.offset,
                    model.deliveries.limit,
                    model.deliveries.total,
                ),
            },
        },
    )


@page("/jobs/{name}/segments/{column}", template="job_segment.html.j2", title="Segments")
def job_segments_page(request: PageRequest, name: str, column: str) -> Page:
    selected = request.query_str("segment")
    with request.workspace() as workspace:
        model = service.job_segments(workspace, name, column, segment=selected)
    rows = [_segment_cells(name, segment) for segment in model.segments]
    chosen = [segment for segment in model.segments if segment.segment == selected]
    return Page(
        model=model,
        tables={"segments": Table(view.SEGMENT_COLUMNS, rows, f"Lift by {column}")},
        title=f"{name}: by {column}" + (f" = {selected}" if selected else ""),
        context={
            "job_name": name,
            "job_url": job_path(name),
            "chosen": [view.segment_detail(segment) for segment in chosen],
            "columns": [(other, segment_path(name, other)) for other in model.columns],
            "heterogeneity": view.heterogeneity_lines(model.heterogeneity),
            "exact": view.exact,
        },
    )


# -- the report as a file (HTML as `closeloop report --html` writes it, and PDF) ----------------


async def _report_file(request: Request, server: Server, kind: str) -> tuple[bytes | str, str, str]:
    name = request.path_params["name"]

    def make() -> tuple[bytes | str, str, str]:
        with server.workspace() as workspace:
            model = service.cached_job_report(workspace, name).reported.model
        if kind == "html":
            return html.job_report_html(model), downloads.HTML, ""
        return html.job_report_pdf(model), downloads.PDF, f"{_file_name(name)}-report.pdf"

    return await run_in_threadpool(make)


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "job"


async def report_html(request: Request, server: Server) -> tuple[bytes | str, str, str]:
    return await _report_file(request, server, "html")


async def report_pdf(request: Request, server: Server) -> tuple[bytes | str, str, str]:
    return await _report_file(request, server, "pdf")


PUBLIC_ROUTES: list[BaseRoute] = [
    downloads.download("/jobs/{name}/report.html", report_html),
    downloads.download("/jobs/{name}/report.pdf", report_pdf),
]
