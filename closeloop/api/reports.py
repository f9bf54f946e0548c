"""Routes: a job's report and ``measure`` on uploaded files (viewer role; nothing is written).

Each returns the model the matching CLI command prints with ``--format json``
(``closeloop report JOB``, ``closeloop measure``). An unknown job answers 404; bad options or
files 422 with the one error shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from closeloop.api.security import Viewer, served
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.measurement import Measurement
from closeloop.services import measure as measure_service
from closeloop.services import reports as reports_service

router = APIRouter(prefix="/api", tags=["reports"])


def _utc(moment: datetime | None) -> datetime | None:
    """A time as naive UTC (the store's convention); no zone means UTC already."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


@router.get("/jobs/{name}/report", response_model=JobReport)
def job_report(
    request: Request,
    _principal: Viewer,
    name: str,
    as_of: Annotated[
        datetime | None,
        Query(
            description="measure as of this time (ISO 8601; no zone means UTC); default: the "
            "job's last tick"
        ),
    ] = None,
    segment_by: Annotated[
        list[str] | None,
        Query(
            description="an account attribute, or cohort:NAME, to break the lift down by "
            "(repeatable; default: segment)"
        ),
    ] = None,
    value_event: Annotated[
        str | None,
        Query(description="also measure this event's value summed over the horizon after entry"),
    ] = None,
    covariate_days: Annotated[
        int,
        Query(ge=0, le=3650, description="CUPED: the value's pre-entry window in days (0: none)"),
    ] = 0,
    match_on: Annotated[
        list[str] | None,
        Query(
            description="jobs without a holdout: attributes to match on (repeatable; default: "
            "segment, plan, tenure_days)"
        ),
    ] = None,
) -> JobReport:
    """A job's report, as ``closeloop report JOB --format json``."""
    outcome = reports_service.ValueOutcome(value_event, covariate_days) if value_event else None
    with served(request).workspace() as workspace:
        reported = reports_service.report_job(
            workspace,
            name,
            _utc(as_of),
            segment_by=tuple(segment_by or ("segment",)),
            value_outcome=outcome,
            match_on=match_on,
            as_of_label="as_of",
        )
    return reported.model


@router.post("/reports/measure", response_model=Measurement)
def measure(
    _principal: Viewer,
    units: Annotated[
        UploadFile,
        File(description="units file (.csv, .parquet, .jsonl): unit_id, arm, entered_at"),
    ],
    events: Annotated[
        UploadFile,
        File(description="events file: unit_id, name, timestamp and optionally value"),
    ],
    goal: Annotated[str, Form(description="the event whose first occurrence is the goal")],
    control: Annotated[str, Form(description="the control arm (e.g. holdout)")],
    horizon: Annotated[str, Form(description="how long after entry counts: 14d, 14, 36h, 2w")],
    value_event: Annotated[
        str | None, Form(description="also compare the sum of this event's value")
    ] = None,
    covariate: Annotated[
        str | None, Form(description="a pre-entry numeric units column for CUPED on the value")
    ] = None,
    segment_by: Annotated[
        list[str] | None, Form(description="pre-entry units columns to break the lift down by")
    ] = None,
    match_on: Annotated[
        list[str] | None,
        Form(description="no randomization: match each arm to the control on these columns"),
    ] = None,
    weights: Annotated[
        list[str] | None, Form(description="ARM=W, the planned split for the sample-ratio check")
    ] = None,
    alpha: Annotated[
        float, Form(ge=0.0001, le=0.5, description="two-sided significance of every test")
    ] = 0.05,
) -> Measurement:
    """Measure an intervention run elsewhere, as ``closeloop measure --format json``."""
    units_name, events_name = _upload_name(units, "units"), _upload_name(events, "events")
    request = measure_service.MeasureRequest(
        # Where the uploads are copied is up to the service; these name them until then.
        units=Path(units_name),
        events=Path(events_name),
        goal=goal,
        horizon_days=measure_service.parse_horizon(horizon),
        control=control,
        value_event=value_event or None,
        covariate=covariate or None,
        segment_by=tuple(segment_by or ()),
        weights=measure_service.parse_weights(weights or []),
        match_on=tuple(match_on or ()),
        alpha=alpha,
        units_name=units_name,
        events_name=events_name,
    )
    return measure_service.measure_uploads(request, units.file, events.file).model


def _upload_name(upload: UploadFile, fallback: str) -> str:
    """The upload's file name without any folder the client sent (``C:\\x\\units.csv``)."""
    name = (upload.filename or fallback).replace("\\", "/").rsplit("/", 1)[-1]
    return name or fallback
