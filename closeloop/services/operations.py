"""Operating the engine: jobs and their lifecycle, the outbox, opt-outs (for cli, api, web)."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from closeloop.engine import lifecycle, optouts
from closeloop.engine import outbox as outbox_repository
from closeloop.engine.lifecycle import AuditEntry, JobOverview
from closeloop.engine.optouts import OptOut, TokenError
from closeloop.engine.outbox import ArmDeliveries, OutboxMessage
from closeloop.engine.tick import JobStatus
from closeloop.errors import DataImportError, NotFoundError
from closeloop.services.engine_runs import unsubscribe_links
from closeloop.services.project import Workspace

__all__ = [
    "ArmDeliveries",
    "AuditEntry",
    "JobOverview",
    "JobStatus",
    "OptOut",
    "OutboxMessage",
    "TokenError",
    "to_jsonable",
]


@dataclass(frozen=True)
class JobSummary:
    """A job of the project or of the store: its status (draft when never launched)."""

    name: str
    status: str
    version: int | None
    versions: int
    launched_at: datetime | None
    last_tick: datetime | None
    enrolled: int
    active: int
    in_project: bool


def list_jobs(workspace: Workspace) -> list[JobSummary]:
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
            )
        )
    return summaries


@dataclass(frozen=True)
class JobDetail:
    summary: JobSummary
    deliveries: dict[str, ArmDeliveries]
    outbox: dict[str, int]
    versions_in_use: list[tuple[int, int]]
    audit: list[AuditEntry]


def show_job(workspace: Workspace, name: str) -> JobDetail:
    summary = next((job for job in list_jobs(workspace) if job.name == name), None)
    if summary is None:
        known = ", ".join(sorted(workspace.project.jobs)) or "none"
        raise NotFoundError(f"no job {name!r}; jobs: {known}")
    store = workspace.store
    return JobDetail(
        summary=summary,
        deliveries=outbox_repository.deliveries_by_arm(store, name),
        outbox=outbox_repository.status_counts(store, name),
        versions_in_use=lifecycle.versions_in_use(store, name),
        audit=lifecycle.audit_entries(store, name),
    )


def remove_account(workspace: Workspace, job_name: str, account_id: str, at: datetime) -> int:
    workspace.project.job(job_name)
    return lifecycle.remove_account(
        workspace.store, job_name, account_id, workspace.settings.author, at
    )


# -- outbox ----------------------------------------------------------------------------------


def outbox_list(
    workspace: Workspace,
    *,
    status: str | None = None,
    job_name: str | None = None,
    account_id: str | None = None,
    limit: int = 100,
) -> list[OutboxMessage]:
    return outbox_repository.list_messages(
        workspace.store, status=status, job_name=job_name, account_id=account_id, limit=limit
    )


def outbox_counts(workspace: Workspace, job_name: str | None = None) -> dict[str, int]:
    return outbox_repository.status_counts(workspace.store, job_name)


def outbox_retry(
    workspace: Workspace, now: datetime, *, ids: list[int] | None = None, job_name: str | None
) -> int:
    return outbox_repository.retry(workspace.store, now, ids=ids, job_name=job_name)


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
    return optouts.list_optouts(workspace.store)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, datetimes and tuples as JSON values (one formatter for every result here)."""
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
