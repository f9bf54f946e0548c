"""Routes: the voice of the customer and the divergence alert (viewer role), the models
``closeloop outcomes voc|divergence --format json`` print. Bad dates or switches answer 422,
an unknown attribute to group by 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.voc import Divergence, Voc
from closeloop.services import outcomes_voc as service

router = APIRouter(prefix="/api/outcomes", tags=["outcomes"])

DEFAULT_WINDOW = timedelta(days=365)
Period = Annotated[
    Literal["month", "quarter"], Query(description="trend periods: calendar month or quarter")
]


def _naive_utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@router.get("/voc", response_model=Voc)
def voc(
    request: Request,
    _principal: Viewer,
    start: Annotated[
        datetime | None,
        Query(description="window start, inclusive (ISO 8601); default end minus 365 days"),
    ] = None,
    end: Annotated[
        datetime | None, Query(description="window end, exclusive (ISO 8601); default now")
    ] = None,
    by: Annotated[
        str | None, Query(description="an account attribute (as of start) to split answers by")
    ] = None,
    period: Period = "month",
    ces_direction: Annotated[
        Literal["lower_is_easier", "higher_is_easier"],
        Query(description="which end of the CES scale means little effort"),
    ] = "lower_is_easier",
    comments: Annotated[
        int, Query(ge=0, le=service.MAX_COMMENTS, description="newest comments to list")
    ] = service.DEFAULT_COMMENTS,
) -> Voc:
    """NPS, CSAT and CES as ``closeloop outcomes voc``: respondent and account level with
    intervals, response rates, trend, segments, excluded scales and comments."""
    finish = _naive_utc(end)
    begin = _naive_utc(start) if start is not None else finish - DEFAULT_WINDOW
    with served(request).workspace() as workspace:
        return service.voc(
            workspace,
            begin,
            finish,
            period=period,
            by=by,
            ces_direction=ces_direction,
            comments=comments,
        )


@router.get("/divergence", response_model=Divergence)
def divergence(
    request: Request,
    _principal: Viewer,
    end: Annotated[
        datetime | None,
        Query(description="use the whole periods before this time (ISO 8601); default now"),
    ] = None,
    periods: Annotated[
        int, Query(ge=2, le=120, description="how many periods the trends span")
    ] = service.DEFAULT_PERIODS,
    period: Period = "month",
    nps_min_rise: Annotated[
        float, Query(description="NPS points per year that count as rising")
    ] = service.DEFAULT_NPS_MIN_RISE,
    csat_min_rise: Annotated[
        float, Query(description="CSAT percentage points per year that count as rising")
    ] = service.DEFAULT_CSAT_MIN_RISE,
    nrr_max_change: Annotated[
        float, Query(description="NRR pp per year at or below which NRR is flat or falling")
    ] = service.DEFAULT_NRR_MAX_CHANGE,
    alpha: Annotated[
        float, Query(gt=0, lt=1, description="one-sided level of the rising-slope test")
    ] = service.DEFAULT_ALPHA,
) -> Divergence:
    """The divergence alert as ``closeloop outcomes divergence``."""
    with served(request).workspace() as workspace:
        return service.divergence(
            workspace,
            _naive_utc(end),
            periods=periods,
            period=period,
            nps_min_rise=nps_min_rise,
            csat_min_rise=csat_min_rise,
            nrr_max_change=nrr_max_change,
            alpha=alpha,
        )
