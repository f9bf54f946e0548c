"""``GET /api/board``: the board report ``closeloop board --format json`` prints; ``.html`` and
``.pdf`` give the standalone page and its PDF (the same model rendered by present/board.py).

Without ``start`` and ``end`` the period is the last full month before the data ends; one without
the other, or an end not after the start, answers 422."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from closeloop.api.security import Viewer, served
from closeloop.errors import ConfigurationError
from closeloop.present.board import board_html, board_pdf
from closeloop.schemas.board import BoardReport
from closeloop.services import board as service

router = APIRouter(prefix="/api", tags=["board"])

Start = Annotated[
    date | None, Query(description="period start (inclusive, YYYY-MM-DD); default: last month")
]
End = Annotated[date | None, Query(description="period end (exclusive, YYYY-MM-DD)")]
ValueEvent = Annotated[
    str | None,
    Query(min_length=1, description="the event marking first value (time to value)"),
]
HTML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/html": {"schema": {"type": "string"}}},
        "description": "the board report as one standalone HTML page",
    }
}
PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the board report as an A4 PDF",
    }
}


def _report(
    request: Request, start: date | None, end: date | None, value_event: str | None
) -> BoardReport:
    if (start is None) != (end is None):
        raise ConfigurationError("start and end go together (or give neither)")
    server = served(request)
    with server.workspace() as workspace:
        if start is None or end is None:
            start, end = service.default_period(workspace)
        return service.board_report(workspace, start, end, value_event=value_event)


@router.get("/board", response_model=BoardReport, summary="Board report")
def board(
    request: Request,
    _principal: Viewer,
    start: Start = None,
    end: End = None,
    value_event: ValueEvent = None,
) -> BoardReport:
    """Outcomes, leading indicators, initiatives and activity for [start, end), as
    ``closeloop board --format json``."""
    return _report(request, start, end, value_event)


@router.get(
    "/board.html",
    response_class=Response,
    responses=HTML_RESPONSE,
    summary="Board report as HTML",
)
def board_page(
    request: Request,
    _principal: Viewer,
    start: Start = None,
    end: End = None,
    value_event: ValueEvent = None,
) -> HTMLResponse:
    """The board report as one standalone HTML page (inline SVG charts, print CSS)."""
    return HTMLResponse(board_html(_report(request, start, end, value_event)))


@router.get(
    "/board.pdf", response_class=Response, responses=PDF_RESPONSE, summary="Board report as PDF"
)
def board_document(
    request: Request,
    _principal: Viewer,
    start: Start = None,
    end: End = None,
    value_event: ValueEvent = None,
) -> Response:
    """The board report as an A4 PDF (WeasyPrint)."""
    report = _report(request, start, end, value_event)
    name = f"board-{report.start.isoformat()}-{report.end.isoformat()}.pdf"
    return Response(
        board_pdf(report),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
