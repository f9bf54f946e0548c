"""``GET /api/outcomes/adoption``: the model ``closeloop outcomes adoption --format json`` prints.
Bad dates, an unknown ``by`` column or an out-of-range threshold answer 422 with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.adoption import DEFAULT_DROP_THRESHOLD, DEFAULT_DROP_WINDOW_DAYS, Adoption
from closeloop.services import outcomes_adoption as service

router = APIRouter(prefix="/api/outcomes", tags=["outcomes"])


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@router.get("/adoption", response_model=Adoption)
def adoption(
    request: Request,
    _principal: Viewer,
    at: Annotated[
        datetime | None, Query(description="window [at - 30 days, at) (default: now)")
    ] = None,
    start: Annotated[datetime | None, Query(description="window start, with end")] = None,
    end: Annotated[datetime | None, Query(description="window end (exclusive), as-of")] = None,
    by: Annotated[str | None, Query(description="an accounts column to split by")] = None,
    period: Annotated[
        Literal["month"] | None, Query(description="month: activity per month")
    ] = None,
    activity: Annotated[
        list[str] | None, Query(description="event names that count as activity (default any)")
    ] = None,
    feature: Annotated[
        list[str] | None,
        Query(description="key feature event names (default every name used in the window)"),
    ] = None,
    drop_threshold: Annotated[
        float, Query(description="relative fall that flags a usage drop")
    ] = DEFAULT_DROP_THRESHOLD,
    drop_window_days: Annotated[
        int, Query(description="length of each usage-drop window in days")
    ] = DEFAULT_DROP_WINDOW_DAYS,
    value_event: Annotated[
        str | None, Query(description="event marking first value (time to value)")
    ] = None,
    value_where: Annotated[
        list[str] | None, Query(description="KEY=VALUE property filters on the value event")
    ] = None,
) -> Adoption:
    """Adoption over a window, as ``closeloop outcomes adoption``."""
    begin, finish = service.window(
        _naive_utc(at), _naive_utc(start), _naive_utc(end), datetime.now(UTC).replace(tzinfo=None)
    )
    where = service.parse_where(value_where or [])
    server = served(request)
    with server.workspace() as workspace:
        return service.adoption(
            workspace,
            begin,
            finish,
            by=by,
            period=period,
            activity_events=activity or [],
            features=feature or [],
            drop_threshold=drop_threshold,
            drop_window_days=drop_window_days,
            value_event=value_event,
            value_where=where,
        )
