"""``GET /api/churn/review``: the model ``closeloop churn review --format json`` prints.

A date that does not parse, an empty window or a look-back under a day answers 422 with the
reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.churn_review import ChurnReview
from closeloop.services import churn_review as service
from closeloop.services.definitions import naive_utc

router = APIRouter(prefix="/api/churn", tags=["outcomes"])


@router.get("/review", response_model=ChurnReview)
def review(
    request: Request,
    _principal: Viewer,
    start: Annotated[datetime, Query(description="window start (inclusive, ISO 8601)")],
    end: Annotated[datetime, Query(description="window end (exclusive, ISO 8601)")],
    lookback: Annotated[
        int, Query(ge=1, le=3650, description="days of health history before each churn")
    ] = service.DEFAULT_LOOKBACK_DAYS,
) -> ChurnReview:
    """Every churn in [start, end) with its reason, stalled stage, health, jobs and their
    measured effects, and success plans, grouped by reason, as ``closeloop churn review``."""
    with served(request).workspace() as workspace:
        return service.churn_review(
            workspace, naive_utc(start), naive_utc(end), lookback_days=lookback
        )
