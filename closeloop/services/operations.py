"""Operating the engine: jobs and their lifecycle, the outbox, opt-outs (for cli, api, web)."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closeloop.engine import browse, lifecycle, optouts
from closeloop.engine import outbox as outbox_repository
from closeloop.engine.optouts import TokenError
from closeloop.engine.outbox import OutboxMessage as StoredMessage
from closeloop.engine.statuses import JobStatus
from closeloop.errors import ConfigurationError, DataImportError, NotFoundError, redact
from closeloop.schemas.base import Page
from closeloop.schemas.jobs import (
    AccountRemoval,
    ArmDeliveries,
    AuditEntry,
    Enrollment,
    JobDetail,
    JobList,
    JobSummary,
    LaunchResult,
    OptOut,
    OutboxList,
    OutboxMessage,
    OutboxRetry,
    StatusChange,
    TickSummary,
)
from closeloop.services.project import Workspace

if TYPE_CHECKING:
    from closeloop.engine.tick import TickResult

__all__ = ["JobStatus", "TokenError", "mask_secrets"]

MAX_PAGE = 500
"""The most items one page of a list holds (the API's ``limit`` is capped here)."""


def acting_as(workspace: Workspace, actor: str) -> Workspace:
    """The workspace with ``actor`` as the author of what it records (audit log, versions)."""
    return replace(workspace, settings=replace(workspace.settings, author=actor))


def moment(at: datetime | None) -> datetime:
    """A time as the stores keep it (naive UTC; a zone is converted), or now when None."""
    if at is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if at.tzinfo is None:
        return at
    try:
        return at.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ConfigurationError(f"{at.isoformat()} is out of range in UTC") from None


def list_jobs(workspace: Workspace) -> list[JobSummary]:
    """Every job of the project and of the store (a job the YAML dropped is kept), by name."""
    launched = {job.name: job for job in lifecycle.jobs_overview(workspace.store)}
    names = sorted(set(launched) | set(workspace.project.jobs))
    summaries = []
    for name in names:
        job = launched.get(name)
        summaries.append(
            JobSummary(
                name=name,
                status=job.status if job else JobStatus.DRAFT,
                version=job.version if job else None,
                versions=job.versions if job else 0,
                launched_at=job.launched_at if job else None,
                last_tick=job.last_tick if job else None,
                enrolled=job.enrolled if job else 0,
                active=job.active if job else 0,
                in_project=name in workspace.project.jobs,
                enrolled_by_arm=job.enrolled_by_arm if job else {},
            )
        )
    return summaries


def job_list(workspace: Workspace) -> JobList:
    """``closeloop jobs list``."""
    jobs = list_jobs(workspace)
    return JobList(count=len(jobs), jobs=jobs)


def show_job(workspace: Workspace, name: str) -> JobDetail:
    """``closeloop jobs show``: status, deliveries per arm, outbox, versions, audit, definition."""
    summary = next((job for job in list_jobs(workspace) if job.name == name), None)
    if summary is None:
        known = ", ".join(sorted(workspace.project.jobs)) or "none"
        raise NotFoundError(f"no job {name!r}; jobs: {known}")
    store = workspace.store
    loaded = workspace.project.jobs.get(name)
    return JobDetail(
        summary=summary,
        deliveries={
            arm: ArmDeliveries(
                arm=row.arm,
                units=row.units,
                units_reached=row.units_reached,
                by_status=row.by_status,
            )
            for arm, row in outbox_repository.deliveries_by_arm(store, name).items()
        },
        outbox=outbox_repository.status_counts(store, name),
        versions_in_use=lifecycle.versions_in_use(store, name),
        audit=[
            AuditEntry(
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                subject=entry.subject,
                detail=mask_secrets(entry.detail),
            )
            for entry in lifecycle.audit_entries(store, name)
        ],
        definition=(
            mask_secrets(loaded.definition.model_dump(mode="json", exclude_defaults=True))
            if loaded is not None
            else None
        ),
        file=_relative(workspace, loaded.file) if loaded is not None else None,
    )


def _relative(workspace: Workspace, file: str) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(workspace.settings.project_dir.resolve()).as_posix()
    except ValueError:
        return file


def remove_account(
    workspace: Workspace, job_name: str, account_id: str, at: datetime
) -> AccountRemoval:
    """Take an account out of a job: its active enrollments exit (reason removed)."""
    workspace.project.job(job_name)
    removed = lifecycle.remove_account(
        workspace.store, job_name, account_id, workspace.settings.author, at
    )
    return AccountRemoval(job=job_name, account_id=account_id, removed=removed)


# -- lifecycle -------------------------------------------------------------------------------


def tick_summary(result: TickResult) -> TickSummary:
    return TickSummary(
        job=result.job_name,
        at=result.at,
        version=result.version,
        status=result.status,
        entered=result.entered,
        completed=result.completed,
        exited=result.exited,
        already_done=result.already_done,
        outbox=result.outbox,
        problems=[redact(problem) for problem in result.problems],
    )


def launch_checks(workspace: Workspace, names: list[str], at: datetime) -> list[str]:
    """For jobs that have never ticked (this tick launches them): what they can detect.

    Each such job is estimated in one warehouse query, and the launch tick that follows stores
    its plan from the same estimate."""
    from closeloop.services import power

    power.estimate_launches(workspace, names, at)
    return [
        line
        for name in names
        if workspace.store.last_tick(name) is None
        for line in power.launch_check(workspace, name, at)
    ]


def launch(workspace: Workspace, job_name: str, at: datetime) -> LaunchResult:
    """Launch a draft at ``at`` (its first tick), with the launch checks of its power; a job
    already launched is left alone (``launched: false``)."""
    from closeloop.services import engine_runs

    workspace.project.job(job_name)  # NotFoundError names the known jobs
    checks = launch_checks(workspace, [job_name], at)
    result = engine_runs.launch_job(workspace, job_name, at)
    if result is None:
        return LaunchResult(job=job_name, launched=False)
    return LaunchResult(job=job_name, launched=True, tick=tick_summary(result), checks=checks)


def change_status(workspace: Workspace, job_name: str, status: str, at: datetime) -> StatusChange:
    """Pause (``paused``), resume (``live``) or stop (``stopped``) a launched job."""
    from closeloop.services import engine_runs

    previous = engine_runs.set_job_status(workspace, job_name, status, at)
    return StatusChange(job=job_name, previous=previous, status=status, changed=previous != status)


def mask_secrets(value: Any, key: str | None = None) -> Any:
    """``value`` (JSON) with every URL's password masked, and the query values of ``url`` fields
    (a webhook URL may carry a token; ``url: env:NAME`` keeps it out of the YAML altogether)."""
    from closeloop.services.engine_runs import mask_url

    if isinstance(value, dict):
        return {name: mask_secrets(item, str(name)) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(item, key) for item in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value) if key == "url" else redact(value)
    return value


# -- enrollments -----------------------------------------------------------------------------


def enrollments_page(
    workspace: Workspace,
    *,
    job_name: str | None = None,
    arm: str | None = None,
    status: str | None = None,
    account_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> Page[Enrollment]:
    """Enrollments matching the filters, newest entry first."""
    if job_name is not None:
        _known_job(workspace, job_name)
    rows, total = browse.enrollments_page(
        workspace.store,
        job_name=job_name,
        arm=arm,
        status=status,
        account_id=account_id,
        offset=offset,
        limit=min(limit, MAX_PAGE),
    )
    items = [
        Enrollment(
            enrollment_id=row.enrollment_id,
            job=row.job_name,
            job_version=row.job_version,
            account_id=row.account_id,
            person_id=row.person_id,
            arm=row.arm,
            status=row.status,
            entered_at=row.entered_at,
            completed_at=row.completed_at,
            exited_at=row.exited_at,
            exit_reason=row.exit_reason,
        )
        for row in rows
    ]
    return Page[Enrollment](items=items, total=total, offset=offset, limit=min(limit, MAX_PAGE))


def _known_job(workspace: Workspace, name: str) -> None:
    """NotFoundError unless the project defines the job or the store has launched it."""
    if name in workspace.project.jobs:
        return
    if lifecycle.job_status(workspace.store, name) == JobStatus.DRAFT:
        workspace.project.job(name)  # NotFoundError names the known jobs


# -- outbox ----------------------------------------------------------------------------------


def public_message(message: StoredMessage) -> OutboxMessage:
    return OutboxMessage(
        id=message.id,
        idempotency_key=message.idempotency_key,
        job_name=message.job_name,
        account_id=message.account_id,
        arm=message.arm,
        step_index=message.step_index,
        channel=message.channel,
        status=message.status,
        attempts=message.attempts,
        due_at=message.due_at,
        next_attempt_at=message.next_attempt_at,
        sent_at=message.sent_at,
        last_error=redact(message.last_error) if message.last_error else message.last_error,
        detail=redact(message.detail) if message.detail else message.detail,
    )


def outbox_list(
    workspace: Workspace,
    *,
    status: str | None = None,
    job_name: str | None = None,
    account_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> OutboxList:
    """Counts by status and one page of the messages matching the filters, newest first."""
    limit = min(limit, MAX_PAGE)
    rows, total = browse.outbox_page(
        workspace.store,
        status=status,
        job_name=job_name,
        account_id=account_id,
        offset=offset,
        limit=limit,
    )
    return OutboxList(
        counts=outbox_counts(workspace, job_name),
        count=len(rows),
        messages=[public_message(row) for row in rows],
        total=total,
        offset=offset,
        limit=limit,
    )


def outbox_counts(workspace: Workspace, job_name: str | None = None) -> dict[str, int]:
    return outbox_repository.status_counts(workspace.store, job_name)


def outbox_retry(
    workspace: Workspace, now: datetime, *, ids: list[int] | None = None, job_name: str | None
) -> OutboxRetry:
    """Put dead-lettered messages back in the queue (all of them, of a job, or by id)."""
    return OutboxRetry(
        requeued=outbox_repository.retry(workspace.store, now, ids=ids, job_name=job_name)
    )


def outbox_purge(
    workspace: Workspace, status: str, *, before: datetime | None, job_name: str | None
) -> int:
    return outbox_repository.purge(workspace.store, status, before=before, job_name=job_name)


# -- opt-outs --------------------------------------------------------------------------------


def optout_accounts(
    workspace: Workspace,
    account_ids: list[str],
    *,
    source: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> int:
    return optouts.record_optouts(
        workspace.store,
        account_ids,
        source=source,
        actor=workspace.settings.author,
        reason=reason,
        at=at,
    )


def optout_from_link(workspace: Workspace, token_or_url: str, at: datetime | None = None) -> str:
    """Redeem an unsubscribe link or token (TokenError when forged or expired); the account."""
    from closeloop.services.engine_runs import unsubscribe_links

    account = unsubscribe_links(workspace).account_of(token_or_url)
    optouts.record_optouts(
        workspace.store, [account], source="link", actor="unsubscribe link", at=at
    )
    return account


def optout_import(workspace: Workspace, file: Path, at: datetime | None = None) -> int:
    """Opt out every account in a CSV file with an ``account_id`` column."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "account_id" not in reader.fieldnames:
                raise DataImportError(f"{file}: the file needs an account_id column")
            accounts = []
            for row in reader:
                account = (row.get("account_id") or "").strip()
                if not account:
                    # line_num: the line the row ended on, blank lines included
                    raise DataImportError(f"{file}:{reader.line_num}: account_id is empty")
                accounts.append(account)
    except OSError as error:
        raise DataImportError(f"cannot read {file}: {error.strerror}") from None
    return optout_accounts(workspace, accounts, source="import", at=at)


def optout_list(workspace: Workspace) -> list[OptOut]:
    return [
        OptOut(
            account_id=found.account_id,
            opted_out_at=found.opted_out_at,
            source=found.source,
            actor=found.actor,
            reason=found.reason,
        )
        for found in optouts.list_optouts(workspace.store)
    ]
