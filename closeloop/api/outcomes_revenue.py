"""``GET /api/outcomes/revenue``: the model ``closeloop outcomes revenue --format json`` prints,
with the same options as query parameters (docs/metrics.md, "Revenue").

An unknown ``by`` attribute answers 404 naming the attributes there are; a date that does not
parse, a switch value that does not exist, or an end not after the start answers 422."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.revenue_outcomes import (
    DEFAULT_GROSS_MARGIN,
    DEFAULT_MATCH_DAYS,
    ChurnAt,
    ChurnDenominator,
    FreeDowngrade,
    NewAndChurned,
    PausedPolicy,
    ReactivationGap,
    RevenueMethod,
    RevenueOutcomes,
    RevenuePeriod,
    RevenuePolicy,
)
from closeloop.services import outcomes_revenue as service

router = APIRouter(prefix="/api/outcomes", tags=["outcomes"])


@router.get("/revenue", response_model=RevenueOutcomes)
def revenue(
    request: Request,
    _principal: Viewer,
    start: Annotated[date, Query(description="window start (inclusive, YYYY-MM-DD)")],
    end: Annotated[date, Query(description="window end (exclusive, YYYY-MM-DD)")],
    method: Annotated[
        RevenueMethod, Query(description="endpoint (MRR before vs at the end) or event")
    ] = RevenueMethod.endpoint,
    by: Annotated[
        str | None, Query(description="group by an account attribute as of start (or cohort)")
    ] = None,
    period: Annotated[RevenuePeriod | None, Query(description="also per month or quarter")] = None,
    churn_at: Annotated[
        ChurnAt, Query(description="lose MRR at the paid period's end or at cancellation")
    ] = ChurnAt.period_end,
    reactivation_gap: Annotated[
        ReactivationGap, Query(description="a return after any gap, or a full month at zero")
    ] = ReactivationGap.any,
    new_and_churned: Annotated[
        NewAndChurned, Query(description="accounts joining and leaving in one period")
    ] = NewAndChurned.exclude,
    free_downgrade: Annotated[
        FreeDowngrade, Query(description="paid to free: churn or contraction")
    ] = FreeDowngrade.churn,
    paused: Annotated[
        PausedPolicy, Query(description="paused rows: zero MRR, or their accounts excluded")
    ] = PausedPolicy.zero,
    churn_denominator: Annotated[
        ChurnDenominator, Query(description="starting customers, or plus new ones")
    ] = ChurnDenominator.start,
    gross_margin: Annotated[
        float, Query(ge=0, le=1, description="gross margin for CLV")
    ] = DEFAULT_GROSS_MARGIN,
    match_days: Annotated[
        int, Query(ge=0, le=3650, description="opportunity won up to N days before expansion")
    ] = DEFAULT_MATCH_DAYS,
) -> RevenueOutcomes:
    """MRR movements, NRR, GRR, churn rates, ARPA, CLV and expansion by source for [start,
    end), as ``closeloop outcomes revenue``."""
    policy = RevenuePolicy(
        method=method,
        churn_at=churn_at,
        reactivation_gap=reactivation_gap,
        new_and_churned=new_and_churned,
        free_downgrade=free_downgrade,
        paused=paused,
        churn_denominator=churn_denominator,
        gross_margin=gross_margin,
        match_days=match_days,
    )
    server = served(request)
    with server.workspace() as workspace:
        return service.revenue(workspace, start, end, period=period, by=by, policy=policy)
