"""Routes: accounts (with their timeline), people, jobs and their lifecycle, enrollments, outbox.

Reads need the ``viewer`` role; writes (create or replace a job, launch, pause, resume, stop,
remove an account, retry messages) need ``editor``. A dry run needs only ``viewer``: it renders
what a tick would do and records or sends nothing. Lists are pages (``offset``, ``limit`` up to
500, ``total``) and take the filters each route documents. Every write is recorded in the audit
log under the token's name (``api:NAME``).

Each request opens the project's workspace and closes it before answering (the server holds no
warehouse connection; DuckDB admits one writing process per file). Job lists, details, dry runs
and outbox lists are the same models ``closeloop … --format json`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from closeloop.api.security import Editor, Viewer, served
from closeloop.schemas.base import Page
from closeloop.schemas.data import QuarantineListing, QuarantinePurge
from closeloop.schemas.jobs import (
    AccountRemoval,
    AtRequest,
    DryRun,
    Enrollment,
    JobDetail,
    JobList,
    JobWritten,
    LaunchResult,
    OutboxList,
    OutboxRetry,
    RetryRequest,
    StatusChange,
)
from closeloop.schemas.resources import Account, Person, TimelineItem, TimelineKind
from closeloop.schemas.tokens import TokenInfo
from closeloop.services import accounts, data, engine_runs, job_editing, operations
from closeloop.services.project import Workspace

router = APIRouter(prefix="/api")

MAX_PAGE = operations.MAX_PAGE
# Far beyond any list here, and well within every backend's 64-bit integers (offset + limit).
MAX_OFFSET = 1_000_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="index of the first item to return")]
Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"the most items to return (at most {MAX_PAGE})")
]
AsOf = Annotated[
    datetime | None,
    Query(description="attributes as they were at this time (ISO 8601; default now)"),
]
JobName = Annotated[str, Path(description="the job's name")]
JOB_BODY = Body(
    description="one item of `jobs:` in jobs.yaml, as JSON (the fields of a job definition; "
    "docs/jobs.md)",
    examples=[
        {
            "name": "Integration nudge",
            "audience": 'count(event "integration_connected") = 0',
            "goal": 'count(event "integration_connected") >= 1',
            "duration_days": 30,
            "holdout": 0.2,
            "steps": [
                {"send": "email", "subject": "Connect {{ account.name }}", "template": "nudge"}
            ],
        }
    ],
)


@contextmanager
def _workspace(request: Request, *, write: bool = False) -> Iterator[Workspace]:
    with served(request).workspace(write=write) as workspace:
        yield workspace


@contextmanager
def _acting(request: Request, principal: TokenInfo) -> Iterator[Workspace]:
    """A writable workspace whose records name the token (``api:NAME``) as their author."""
    with _workspace(request, write=True) as workspace:
        yield operations.acting_as(workspace, f"api:{principal.name}")


# -- accounts and people ------------------------------------------------------------------------


@router.get("/accounts", response_model=Page[Account], tags=["accounts"])
def list_accounts(
    request: Request,
    _principal: Viewer,
    offset: Offset = 0,
    limit: Limit = 100,
    segment: Annotated[str | None, Query(description="only this segment")] = None,
    plan: Annotated[str | None, Query(description="only this plan")] = None,
    owner: Annotated[str | None, Query(description="only this owner")] = None,
    q: Annotated[
        str | None, Query(description="text in the id, name or domain (any case)", max_length=200)
    ] = None,
    as_of: AsOf = None,
) -> Page[Account]:
    """Accounts by id, with their attributes as of a time (filters apply to those values)."""
    with _workspace(request) as workspace:
        return accounts.list_accounts(
            workspace,
            segment=segment,
            plan=plan,
            owner=owner,
            q=q,
            at=as_of,
            offset=offset,
            limit=limit,
        )


@router.get("/accounts/{account_id}", response_model=Account, tags=["accounts"])
def get_account(
    request: Request, _principal: Viewer, account_id: str, as_of: AsOf = None
) -> Account:
    """One account with its attributes as of a time (default now)."""
    with _workspace(request) as workspace:
        return accounts.get_account(workspace, account_id, as_of)


@router.get("/accounts/{account_id}/timeline", response_model=Page[TimelineItem], tags=["accounts"])
def account_timeline(
    request: Request,
    _principal: Viewer,
    account_id: str,
    offset: Offset = 0,
    limit: Limit = 100,
    kind: Annotated[
        list[TimelineKind] | None, Query(description="only these kinds (repeat the parameter)")
    ] = None,
    since: Annotated[datetime | None, Query(description="from this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="up to this time (inclusive)")] = None,
) -> Page[TimelineItem]:
    """What happened to an account, newest first: events, enrollments (entered, completed,
    exited, with the arm), messages and attribute changes."""
    with _workspace(request) as workspace:
        return accounts.account_timeline(
            workspace,
            account_id,
            kinds=kind,
            since=since,
            until=until,
            offset=offset,
            limit=limit,
        )


@router.get("/people", response_model=Page[Person], tags=["accounts"])
def list_people(
    request: Request,
    _principal: Viewer,
    offset: Offset = 0,
    limit: Limit = 100,
    account_id: Annotated[str | None, Query(description="only this account's people")] = None,
    role: Annotated[str | None, Query(description="only this role")] = None,
    q: Annotated[
        str | None, Query(description="text in the id, name or email (any case)", max_length=200)
    ] = None,
    as_of: AsOf = None,
) -> Page[Person]:
    """People (contacts) by id, with their attributes as of a time."""
    with _workspace(request) as workspace:
        return accounts.list_people(
            workspace,
            account_id=account_id,
            role=role,
            q=q,
            at=as_of,
            offset=offset,
            limit=limit,
        )


@router.get("/people/{person_id}", response_model=Person, tags=["accounts"])
def get_person(request: Request, _principal: Viewer, person_id: str, as_of: AsOf = None) -> Person:
    """One person with their attributes as of a time (default now)."""
    with _workspace(request) as workspace:
        return accounts.get_person(workspace, person_id, as_of)


# -- jobs ---------------------------------------------------------------------------------------


@router.get("/jobs", response_model=JobList, tags=["jobs"])
def list_jobs(request: Request, _principal: Viewer) -> JobList:
    """Every job: status, version, enrollments, last tick (as `closeloop jobs list`)."""
    with _workspace(request) as workspace:
        return operations.job_list(workspace)


@router.get("/jobs/{name}", response_model=JobDetail, tags=["jobs"])
def show_job(request: Request, _principal: Viewer, name: JobName) -> JobDetail:
    """One job: status, deliveries per arm, outbox, versions, audit log and its definition."""
    with _workspace(request) as workspace:
        return operations.show_job(workspace, name)


@router.post("/jobs", response_model=JobWritten, status_code=201, tags=["jobs"])
def create_job(
    request: Request,
    principal: Editor,
    body: Annotated[dict[str, Any], JOB_BODY],
) -> JobWritten:
    """Add a job to the first file of `jobs:`, after the whole project validates with it
    (422 with file, line, column and caret otherwise; 409 when the name is taken)."""
    return job_editing.create_job(served(request), body, actor=f"api:{principal.name}")


@router.put("/jobs/{name}", response_model=JobWritten, tags=["jobs"])
def replace_job(
    request: Request,
    principal: Editor,
    name: JobName,
    body: Annotated[dict[str, Any], JOB_BODY],
) -> JobWritten:
    """Replace a job's definition in its file, after the whole project validates with it; a
    launched job moves to the new version (a changed goal or hypothesis is audited)."""
    return job_editing.replace_job(served(request), name, body, actor=f"api:{principal.name}")


@router.post("/jobs/{name}/launch", response_model=LaunchResult, tags=["jobs"])
def launch_job(
    request: Request,
    principal: Editor,
    name: JobName,
    body: Annotated[AtRequest | None, Body()] = None,
) -> LaunchResult:
    """Launch a draft: lock its goal and hypothesis, enroll and plan its first sends (the
    launch checks say what it can detect); `launched: false` when already launched."""
    with _acting(request, principal) as workspace:
        return operations.launch(workspace, name, operations.moment(body.at if body else None))


def _status(
    request: Request, principal: TokenInfo, name: str, status: str, body: AtRequest | None
) -> StatusChange:
    with _acting(request, principal) as workspace:
        return operations.change_status(
            workspace, name, status, operations.moment(body.at if body else None)
        )


@router.post("/jobs/{name}/pause", response_model=StatusChange, tags=["jobs"])
def pause_job(
    request: Request,
    principal: Editor,
    name: JobName,
    body: Annotated[AtRequest | None, Body()] = None,
) -> StatusChange:
    """Pause a live job: it enrolls nobody and sends nothing until resumed (409 otherwise)."""
    return _status(request, principal, name, engine_runs.JobStatus.PAUSED, body)


@router.post("/jobs/{name}/resume", response_model=StatusChange, tags=["jobs"])
def resume_job(
    request: Request,
    principal: Editor,
    name: JobName,
    body: Annotated[AtRequest | None, Body()] = None,
) -> StatusChange:
    """Resume a paused job."""
    return _status(request, principal, name, engine_runs.JobStatus.LIVE, body)


@router.post("/jobs/{name}/stop", response_model=StatusChange, tags=["jobs"])
def stop_job(
    request: Request,
    principal: Editor,
    name: JobName,
    body: Annotated[AtRequest | None, Body()] = None,
) -> StatusChange:
    """Stop a job for good: active enrollments exit (job_stopped), unsent messages cancelled."""
    return _status(request, principal, name, engine_runs.JobStatus.STOPPED, body)


@router.delete("/jobs/{name}/accounts/{account_id}", response_model=AccountRemoval, tags=["jobs"])
def remove_account(
    request: Request,
    principal: Editor,
    name: JobName,
    account_id: str,
    at: Annotated[datetime | None, Query(description="when (default now)")] = None,
) -> AccountRemoval:
    """Take an account out of a job (exit reason removed); its unsent messages are cancelled."""
    with _acting(request, principal) as workspace:
        return operations.remove_account(workspace, name, account_id, operations.moment(at))


@router.post("/jobs/{name}/dry-run", response_model=DryRun, tags=["jobs"])
def dry_run(
    request: Request,
    _principal: Viewer,
    name: JobName,
    body: Annotated[AtRequest | None, Body()] = None,
) -> DryRun:
    """Who would enter the job at a time and what each would receive; nothing is recorded or
    sent (so the viewer role may ask)."""
    with _workspace(request) as workspace:
        return engine_runs.dry_run(workspace, name, operations.moment(body.at if body else None))


# -- enrollments and the outbox -----------------------------------------------------------------


@router.get("/enrollments", response_model=Page[Enrollment], tags=["jobs"])
def list_enrollments(
    request: Request,
    _principal: Viewer,
    offset: Offset = 0,
    limit: Limit = 100,
    job: Annotated[str | None, Query(description="only this job")] = None,
    arm: Annotated[str | None, Query(description="only this arm (holdout, treatment, …)")] = None,
    status: Annotated[str | None, Query(description="active, completed or exited")] = None,
    account_id: Annotated[str | None, Query(description="only this account")] = None,
) -> Page[Enrollment]:
    """Enrollments, newest entry first."""
    with _workspace(request) as workspace:
        return operations.enrollments_page(
            workspace,
            job_name=job,
            arm=arm,
            status=status,
            account_id=account_id,
            offset=offset,
            limit=limit,
        )


@router.get("/outbox", response_model=OutboxList, tags=["outbox"])
def list_outbox(
    request: Request,
    _principal: Viewer,
    offset: Offset = 0,
    limit: Limit = 100,
    job: Annotated[str | None, Query(description="only this job")] = None,
    status: Annotated[
        str | None,
        Query(description="pending, sending, sent, dead, ghost, skipped, cancelled or not_sent"),
    ] = None,
    account_id: Annotated[str | None, Query(description="only this account")] = None,
) -> OutboxList:
    """Counts by status and messages in the outbox, newest first, with status, attempts and
    last error (as `closeloop outbox list`)."""
    with _workspace(request) as workspace:
        return operations.outbox_list(
            workspace,
            status=status,
            job_name=job,
            account_id=account_id,
            offset=offset,
            limit=limit,
        )


@router.post("/outbox/retry", response_model=OutboxRetry, tags=["outbox"])
def retry_outbox(
    request: Request,
    principal: Editor,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> OutboxRetry:
    """Queue dead-lettered messages again (attempts reset); the next dispatch sends them."""
    asked = body or RetryRequest()
    with _acting(request, principal) as workspace:
        return operations.outbox_retry(
            workspace, operations.moment(asked.at), ids=asked.ids, job_name=asked.job
        )


# -- the quarantine ----------------------------------------------------------------------------

QuarantineTable = Annotated[
    str | None,
    Query(description="only this canonical table (accounts, people, events, …)"),
]


@router.get("/quarantine", response_model=QuarantineListing, tags=["data"])
def list_quarantine(
    request: Request,
    _principal: Viewer,
    table: QuarantineTable = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> QuarantineListing:
    """Rows imports and Segment ingestion set aside (oldest first), with file, row, column and
    reason, and how many there are by table (as `closeloop quarantine list --format json`)."""
    with _workspace(request) as workspace:
        return data.quarantine_list(workspace, table, limit=limit, offset=offset)


@router.delete("/quarantine", response_model=QuarantinePurge, tags=["data"])
def purge_quarantine(
    request: Request,
    _principal: Editor,
    table: QuarantineTable = None,
    before: Annotated[
        datetime | None, Query(description="only rows quarantined before this time")
    ] = None,
    confirm: Annotated[
        bool, Query(description="needed to delete every selected row (not with `before`)")
    ] = False,
) -> QuarantinePurge:
    """Delete quarantined rows for good (as `closeloop quarantine purge`)."""
    cutoff = operations.moment(before) if before is not None else None
    with _workspace(request) as workspace:
        return data.quarantine_purge(workspace, table, before=cutoff, confirmed=confirm)
