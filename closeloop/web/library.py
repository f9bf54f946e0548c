"""``/library``: every job ever run, what it did and what it caused, filtered by goal, segment,
message and timing (``closeloop library``; its JSON twin is the API's ``GET /api/library``
model)."""

from __future__ import annotations

from urllib.parse import quote

from closeloop.present import library_page as view
from closeloop.schemas.library import SortKey
from closeloop.services import library as library_service
from closeloop.web.pages import (
    Badge,
    BadParameter,
    Cell,
    Link,
    Page,
    PageRequest,
    Table,
    Tone,
    page,
)

STATUSES = ("positive", "negative", "inconclusive", "insufficient_data", "not_measured", "error")
_TONE = {"positive": Tone.good, "negative": Tone.bad, "inconclusive": Tone.warn}


@page("/library", template="library.html.j2", nav="Library", title="Intervention library")
def library_page(request: PageRequest) -> Page:
    goal = request.query_str("goal")
    segment = request.query_str("segment")
    message = request.query_str("message")
    within = request.query_int("within_days", None, minimum=0, maximum=3650)
    status = request.query_str("status")
    if status is not None and status not in STATUSES:
        raise BadParameter(f"parameter 'status': {status!r} is not one of {', '.join(STATUSES)}")
    sort = request.query_choice("sort", SortKey, SortKey.EFFECT) or SortKey.EFFECT
    with request.workspace() as workspace:
        library = library_service.library(
            workspace,
            goal=goal,
            segment=segment,
            status=status,
            message=message,
            within_days=within,
            sort=sort,
        )
    rows: list[list[Cell]] = [
        [
            Link(row.name, f"/jobs/{quote(row.name, safe='')}"),
            Badge(row.status_text, _TONE.get(row.status, Tone.neutral)),
            row.lift,
            row.goal,
            row.sends,
            row.segment,
            row.enrolled,
            row.launched,
        ]
        for row in view.library_rows(library, segment)
    ]
    return Page(
        model=library,
        tables={"jobs": Table(view.LIBRARY_COLUMNS, rows, "Jobs")},
        context={
            "filters": {
                "goal": goal or "",
                "segment": segment or "",
                "message": message or "",
                "within_days": "" if within is None else str(within),
                "status": status or "",
                "sort": sort.value,
            },
            "statuses": STATUSES,
            "sorts": [key.value for key in SortKey],
        },
    )
