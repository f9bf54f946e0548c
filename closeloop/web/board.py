"""The home page ``/``: the board report for a period (default: the last full month before the
data ends), with a period picker, its charts, every table as CSV (``/index.csv?table=NAME``) and
the whole report as JSON (``/index.json``, the API's ``GET /api/board``), HTML (``/board.html``)
and PDF (``/board.pdf``).

The report composes several measurements (a few seconds on a big project), so a report is kept
for :data:`CACHE_SECONDS` per period: the page, its twins and the downloads a reader clicks next
answer from the same result.
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute

from closeloop.present import board as view
from closeloop.schemas.board import BoardReport
from closeloop.services import board as service
from closeloop.services.server import Server
from closeloop.web import downloads
from closeloop.web.pages import Badge, BadParameterError, Page, PageRequest, Table, Tone, page

CACHE_SECONDS = 600.0
_DECISION_TONE = {
    "ship": Tone.good,
    "stop": Tone.bad,
    "keep_running": Tone.info,
    "review": Tone.warn,
}
_cache: dict[tuple[str, date | None, date | None], tuple[float, BoardReport]] = {}
_cache_lock = threading.Lock()


def cached_report(server: Server, start: date | None, end: date | None) -> BoardReport:
    """The report for ``[start, end)`` (both None: the default period), at most
    :data:`CACHE_SECONDS` old."""
    if (start is None) != (end is None):
        raise BadParameterError("start and end: give both, or neither (the last full month)")
    key = (str(server.settings.project_dir), start, end)
    now = time.monotonic()
    with _cache_lock:
        found = _cache.get(key)
        if found is not None and now - found[0] < CACHE_SECONDS:
            return found[1]
    with server.workspace() as workspace:
        if start is None or end is None:
            start, end = service.default_period(workspace)
        report = service.board_report(workspace, start, end)
    with _cache_lock:
        for stale in [k for k, (at, _) in _cache.items() if now - at >= CACHE_SECONDS]:
            del _cache[stale]
        _cache[key] = (now, report)
    return report


def _tables(report: BoardReport) -> dict[str, Table]:
    tables = {}
    for name, rows in view.board_tables(report).items():
        columns = view.TABLE_COLUMNS[name]
        cells = []
        for row in rows:
            line: list[str | Badge] = [row[column] for column in columns]
            if name == "initiatives" and row.get("decision"):
                tone = _DECISION_TONE.get(row["decision"], Tone.neutral)
                line[columns.index("verdict")] = Badge(row["verdict"], tone)
            cells.append(line)
        tables[name] = Table(columns=[c.replace("_", " ") for c in columns], rows=cells)
    return tables


def _month_after(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _period_links(start: date, end: date) -> dict[str, str]:
    """The same length of period before and after (a calendar month when it is one)."""
    if start.day == 1 and end == _month_after(start):
        before = (service.previous_month(start), start)
        after = (end, _month_after(end))
    else:
        length = end - start
        before, after = (start - length, start), (end, end + length)
    return {
        "previous": "/?" + urlencode({"start": before[0], "end": before[1]}),
        "next": "/?" + urlencode({"start": after[0], "end": after[1]}),
    }


@page("/", template="board.html.j2", nav="Board", title="Board report")
def board_page(request: PageRequest) -> Page:
    start, end = request.query_date("start"), request.query_date("end")
    report = cached_report(request.server, start, end)
    query = urlencode({"start": report.start, "end": report.end})
    charts = {name: chart.to_dict() for name, chart in view.charts(report).items()}
    return Page(
        model=report,
        tables=_tables(report),
        title=f"Board report: {view.period_text(report.start, report.end)}",
        context={
            "report": report,
            "period": view.period_text(report.start, report.end),
            "last_day": report.end - timedelta(days=1),
            "kpis": view.outcome_rows(report),
            "charts": charts,
            "missing": view.board_context(report)["parts_missing"],
            "outcomes_missing": view.unavailable(report.outcomes),
            "initiatives_missing": view.unavailable(report.initiatives),
            "links": _period_links(report.start, report.end),
            "downloads": {
                "PDF": f"/board.pdf?{query}",
                "HTML": f"/board.html?{query}",
                "JSON": f"/index.json?{query}",
            },
        },
    )


# -- the report as a file: its own routes, since a page answers HTML, JSON or CSV ----------------


def _query_day(request: Request, name: str) -> date | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadParameterError(f"{name}: {text!r} is not a date like 2026-11-01") from None


async def _document(request: Request, server: Server, kind: str) -> tuple[bytes | str, str, str]:
    start, end = _query_day(request, "start"), _query_day(request, "end")
    report = await run_in_threadpool(cached_report, server, start, end)
    if kind == "html":
        return await run_in_threadpool(view.board_html, report), downloads.HTML, ""
    document = await run_in_threadpool(view.board_pdf, report)
    name = f"board-{report.start.isoformat()}-{report.end.isoformat()}.pdf"
    return document, downloads.PDF, name


async def board_document(request: Request, server: Server) -> tuple[bytes | str, str, str]:
    return await _document(request, server, "pdf")


async def board_standalone(request: Request, server: Server) -> tuple[bytes | str, str, str]:
    return await _document(request, server, "html")


# Not public in effect: each checks the session or token itself (pages cannot answer a file).
PUBLIC_ROUTES: list[BaseRoute] = [
    downloads.download("/board.pdf", board_document),
    downloads.download("/board.html", board_standalone),
]
