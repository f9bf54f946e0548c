"""Health scores: ``GET /api/health-scores``, ``GET /api/health-scores/accounts/{account_id}``,
``GET /api/health-scores/backtest`` and ``POST /api/health-scores/snapshot`` (an Editor: writes
the day's snapshot), the models ``closeloop health …`` prints. (``/api/health`` is the server's
own health check.)

An unknown score or account answers 404; a ``since`` not before ``at`` or a horizon that is not
positive, 422."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request

from closeloop.api.security import Editor, Viewer, served
from closeloop.schemas.health import (
    AccountHealthReport,
    HealthBacktest,
    HealthScoreList,
    HealthSnapshot,
)
from closeloop.schemas.jobs import AtRequest
from closeloop.services import health as service

router = APIRouter(prefix="/api/health-scores", tags=["health scores"])

Score = Annotated[str | None, Query(description="one health score by name; default every score")]


def _naive_utc(moment: datetime | None) -> datetime | None:
    """A zoned time as naive UTC (the warehouse's convention); no zone means UTC already."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _now_or(moment: datetime | None) -> datetime:
    found = _naive_utc(moment)
    return found if found is not None else datetime.now(UTC).replace(tzinfo=None)


@router.get("", response_model=HealthScoreList)
def list_scores(request: Request, _principal: Viewer) -> HealthScoreList:
    """The project's health scores: measures, weights, polarity, ranges, bands and segments."""
    with served(request).workspace() as workspace:
        return service.scores(workspace)


@router.get("/accounts/{account_id}", response_model=AccountHealthReport)
def account(
    request: Request,
    _principal: Viewer,
    account_id: str,
    at: Annotated[
        datetime | None, Query(description="as of this time (ISO 8601; no zone means UTC); now")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="also the score then, and why it moved since")
    ] = None,
    score: Score = None,
) -> AccountHealthReport:
    """One account's scores explained, as ``closeloop health show``: each measure's value,
    scaled value, effective weight and points; with ``since`` the change per measure."""
    with served(request).workspace() as workspace:
        return service.account_health(
            workspace, account_id, _now_or(at), since=_naive_utc(since), score=score
        )


@router.get("/backtest", response_model=HealthBacktest)
def backtest(
    request: Request,
    _principal: Viewer,
    at: Annotated[datetime, Query(description="score as of this time (ISO 8601)")],
    horizon_days: Annotated[
        float, Query(gt=0, le=3650, description="outcomes in (at, at + horizon_days]")
    ] = service.DEFAULT_HORIZON_DAYS,
    score: Score = None,
) -> HealthBacktest:
    """Whether each score predicts churn and contraction, as ``closeloop health backtest``:
    AUC with its interval, top-decile lift and calibration, overall and per segment."""
    with served(request).workspace() as workspace:
        return service.backtest(workspace, _now_or(at), horizon_days=horizon_days, score=score)


@router.post("/snapshot", response_model=HealthSnapshot)
def snapshot(
    request: Request,
    _principal: Editor,
    body: Annotated[AtRequest | None, Body()] = None,
    score: Score = None,
) -> HealthSnapshot:
    """Take the snapshot of a day (``at``'s, default today) for each score, replacing that
    day's rows, as ``closeloop health snapshot``."""
    with served(request).workspace() as workspace:
        return service.snapshot(workspace, _naive_utc(body.at if body else None), score=score)
