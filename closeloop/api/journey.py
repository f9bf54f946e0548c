"""The stage view and the signals: ``GET /api/stages/{name}``, ``GET /api/signals`` and
``POST /api/signals/{id}/job`` (an Editor: writes a draft job), the models the CLI prints.

An unknown stage or signal answers 404 naming the ones there are; a job name that is taken, 409;
a window that is not positive, 422."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request

from closeloop.api.security import Editor, Viewer, served
from closeloop.schemas.jobs import JobWritten
from closeloop.schemas.journey import SignalJobRequest, SignalKind, Signals, StageView
from closeloop.services import journey as service

router = APIRouter(prefix="/api", tags=["journey"])

At = Annotated[
    datetime | None,
    Query(description="evaluate as of this time (ISO 8601; no zone means UTC); default now"),
]


def _now_or(moment: datetime | None) -> datetime:
    return moment if moment is not None else datetime.now(UTC).replace(tzinfo=None)


@router.get("/stages/{name}", response_model=StageView)
def stage(
    request: Request,
    _principal: Viewer,
    name: str,
    at: At = None,
    as_of: Annotated[datetime | None, Query(description="the same as `at` (older name)")] = None,
    window: Annotated[
        float, Query(gt=0, le=3650, description="days of the window counts (as_of - window, as_of]")
    ] = service.DEFAULT_WINDOW_DAYS,
    since: Annotated[
        datetime | None, Query(description="also the stage as of this time, and what moved")
    ] = None,
    accounts: Annotated[bool, Query(description="every account in the stage, with its class")] = (
        False
    ),
) -> StageView:
    """A stage as of a time, as ``closeloop stage``: counts, per objective the completion rate
    and Kaplan–Meier time to complete, the typical order, and optionally the accounts."""
    with served(request).workspace() as workspace:
        return service.stage_view(
            workspace,
            name,
            _now_or(at or as_of),
            window_days=window,
            since=since,
            accounts=accounts,
        )


@router.get("/signals", response_model=Signals)
def signals(
    request: Request,
    _principal: Viewer,
    at: At = None,
    kind: Annotated[SignalKind | None, Query(description="only this kind")] = None,
) -> Signals:
    """Accounts that need attention, each signal with its rule, as ``closeloop signals``."""
    with served(request).workspace() as workspace:
        return service.signals(workspace, _now_or(at), kind)


@router.post("/signals/{signal_id:path}/job", response_model=JobWritten, status_code=201)
def job_from_signal(
    request: Request,
    principal: Editor,
    signal_id: str,
    body: Annotated[SignalJobRequest | None, Body()] = None,
) -> JobWritten:
    """Write a draft job (not launched) whose audience is the signal's rule, as ``closeloop
    jobs create-from-signal``; 404 for an unknown signal, 409 when the name is taken."""
    chosen = body or SignalJobRequest()
    return service.create_job_from_signal(
        served(request),
        signal_id,
        _now_or(chosen.at),
        name=chosen.name,
        actor=f"api:{principal.name}",
    )
