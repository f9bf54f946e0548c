"""A tick at time T: detect completions and timeouts, then enroll newly eligible accounts.

Everything a tick decides for a job — enrollments, exits, the outbox rows of their actions and the
ledger row that marks the tick done — is written in one transaction, so a crash at any point
either leaves the tick undone (run it again) or done (running it again changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.channels.email import EMAIL, EmailTemplates
from closeloop.data.compiler import goal_reached_at, matching_accounts
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine import schema
from closeloop.engine.assignment import (
    HOLDOUT,
    assign_arm,
    enrollment_id,
    idempotency_key,
)
from closeloop.engine.state import JobRecord, StateStore, utc_now

MAX_RECIPIENTS = 5


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    GHOST = "ghost"  # holdout: logged as would-have-sent, never sent
    SKIPPED = "skipped"  # treatment, but nobody to send to


class ExitReason:
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class TickResult:
    job_name: str
    at: datetime
    version: int
    entered: int
    completed: int
    exited: int
    already_done: bool = False


def run_tick(
    project: Project, job: LoadedJob, warehouse: Warehouse, store: StateStore, at: datetime
) -> TickResult:
    """Run job ``job`` at time ``at``; running the same tick again is a no-op."""
    record = store.launch_or_update_job(job, at)
    with store.engine.connect() as connection:
        done = connection.execute(
            sa.select(schema.ticks.c.job_version).where(
                schema.ticks.c.job_name == job.name, schema.ticks.c.at == at
            )
        ).first()
    if done is not None:
        return TickResult(job.name, at, done[0], 0, 0, 0, already_done=True)

    # Reads from the warehouse happen before the transaction: they decide, the transaction records.
    active = _active_enrollments(store, job.name, at)
    completions = _completions(job, warehouse, active, at)
    timeouts = _timeouts(job, active, completions, at)
    newcomers = _eligible(job, warehouse, store, at) if job.definition.is_enrolling(at) else []
    assignments = [
        (account, assign_arm(record.salt, account, record.holdout)) for account in newcomers
    ]
    messages = _render_entry_messages(project, job, warehouse, record, assignments, at)

    with store.engine.begin() as connection:
        for enrollment, completed_at in completions.items():
            connection.execute(
                schema.enrollments.update()
                .where(schema.enrollments.c.enrollment_id == enrollment)
                .values(completed_at=completed_at)
            )
        for enrollment, exited_at in timeouts.items():
            connection.execute(
                schema.enrollments.update()
                .where(schema.enrollments.c.enrollment_id == enrollment)
                .values(exited_at=exited_at, exit_reason=ExitReason.TIMEOUT)
            )
        _insert_enrollments(connection, job, record, assignments, messages, at)
        connection.execute(
            schema.ticks.insert().values(
                job_name=job.name,
                at=at,
                job_version=record.version,
                entered=len(assignments),
                completed=len(completions),
                exited=len(timeouts),
                processed_at=utc_now(),
            )
        )
    return TickResult(
        job.name, at, record.version, len(assignments), len(completions), len(timeouts)
    )


def _active_enrollments(store: StateStore, job_name: str, at: datetime) -> list[dict[str, Any]]:
    e = schema.enrollments
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.enrollment_id, e.c.account_id, e.c.entered_at).where(
                e.c.job_name == job_name,
                e.c.completed_at.is_(None),
                e.c.exited_at.is_(None),
                e.c.entered_at < at,
            )
        ).mappings()
        return [dict(row) for row in rows]


def _completions(
    job: LoadedJob, warehouse: Warehouse, active: Sequence[dict[str, Any]], at: datetime
) -> dict[str, datetime]:
    """Enrollments whose goal first held (at event time) within their duration."""
    if not active:
        return {}
    candidates = ibis.memtable(
        pa.table(
            {
                "account_id": pa.array([row["account_id"] for row in active], pa.string()),
                "entered_at": pa.array([row["entered_at"] for row in active], pa.timestamp("us")),
            }
        )
    )
    reached = goal_reached_at(job.goal, warehouse, at, candidates).to_pyarrow().to_pylist()
    reached_at = {row["account_id"]: row["reached_at"] for row in reached}
    duration = timedelta(days=job.definition.duration_days)
    completions: dict[str, datetime] = {}
    for row in active:
        moment = reached_at.get(row["account_id"])
        if moment is not None and moment <= row["entered_at"] + duration:
            completions[row["enrollment_id"]] = _naive(moment)
    return completions


def _timeouts(
    job: LoadedJob,
    active: Sequence[dict[str, Any]],
    completions: dict[str, datetime],
    at: datetime,
) -> dict[str, datetime]:
    duration = timedelta(days=job.definition.duration_days)
    return {
        row["enrollment_id"]: row["entered_at"] + duration
        for row in active
        if row["enrollment_id"] not in completions and row["entered_at"] + duration <= at
    }


def _eligible(job: LoadedJob, warehouse: Warehouse, store: StateStore, at: datetime) -> list[str]:
    """Accounts in the audience and in no exclusion as of ``at`` that were never enrolled."""
    audience = matching_accounts(job.audience, warehouse, at)
    for exclusion in job.exclusions:
        audience = audience.anti_join(matching_accounts(exclusion, warehouse, at), "account_id")
    matched = set(audience.to_pyarrow().column("account_id").to_pylist())
    e = schema.enrollments
    with store.engine.connect() as connection:
        # re_entry: never — anyone who ever entered this job stays out.
        enrolled = set(
            connection.execute(sa.select(e.c.account_id).where(e.c.job_name == job.name)).scalars()
        )
    return sorted(matched - enrolled)


def _render_entry_messages(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    record: JobRecord,
    assignments: Sequence[tuple[str, str]],
    at: datetime,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Payloads of every entry step for every new enrollment (holdout rows carry no content)."""
    if not assignments or not job.definition.steps:
        return {}
    accounts_wanted = [account for account, _ in assignments]
    keys = ibis.memtable(pa.table({"account_id": pa.array(accounts_wanted, pa.string())}))
    accounts = warehouse.table("accounts").semi_join(keys, "account_id").to_pyarrow().to_pylist()
    people = (
        warehouse.table("people")
        .semi_join(keys, "account_id")
        .filter(lambda p: p.email.notnull())
        .order_by(["account_id", "created_at", "person_id"])
        .select("account_id", "email", "name", "role")
        .to_pyarrow()
        .to_pylist()
    )
    by_account = {row["account_id"]: row for row in accounts}
    contacts: dict[str, list[dict[str, Any]]] = {}
    for person in people:
        contacts.setdefault(person["account_id"], []).append(person)
    templates = EmailTemplates(project.folder / "templates")
    payloads: dict[tuple[str, int], dict[str, Any]] = {}
    for account, arm in assignments:
        recipients = [p["email"] for p in contacts.get(account, [])][:MAX_RECIPIENTS]
        for index, step in enumerate(job.definition.steps):
            unsubscribe = project.config.unsubscribe_url.format(account_id=account)
            if arm == HOLDOUT:
                payloads[(account, index)] = {"to": recipients, "ghost": True}
                continue
            context = {
                "account": by_account.get(account, {"account_id": account}),
                "contact": (contacts.get(account) or [{}])[0],
                "job": {"name": job.name},
                "unsubscribe_url": unsubscribe,
            }
            rendered = templates.render(step.template, step.subject, context)
            payloads[(account, index)] = {
                "to": recipients,
                "subject": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "unsubscribe_url": unsubscribe,
            }
    return payloads


def _insert_enrollments(
    connection: Connection,
    job: LoadedJob,
    record: JobRecord,
    assignments: Sequence[tuple[str, str]],
    messages: dict[tuple[str, int], dict[str, Any]],
    at: datetime,
) -> None:
    if not assignments:
        return
    enrollment_rows = []
    outbox_rows = []
    for account, arm in assignments:
        enrollment = enrollment_id(job.name, account, at.isoformat())
        enrollment_rows.append(
            {
                "enrollment_id": enrollment,
                "job_name": job.name,
                "job_version": record.version,
                "account_id": account,
                "arm": arm,
                "entered_at": at,
            }
        )
        for index, _step in enumerate(job.definition.steps):
            payload = messages[(account, index)]
            if arm == HOLDOUT:
                status = OutboxStatus.GHOST
            elif payload["to"]:
                status = OutboxStatus.PENDING
            else:
                status = OutboxStatus.SKIPPED
            outbox_rows.append(
                {
                    "idempotency_key": idempotency_key(job.name, record.version, enrollment, index),
                    "enrollment_id": enrollment,
                    "job_name": job.name,
                    "account_id": account,
                    "step_index": index,
                    "channel": EMAIL,
                    "payload": json.dumps(payload),
                    "status": status,
                    "attempts": 0,
                    "created_at": at,
                    "next_attempt_at": at,
                    "last_error": None
                    if status != OutboxStatus.SKIPPED
                    else "no contact with an email",
                }
            )
    connection.execute(schema.enrollments.insert(), enrollment_rows)
    if outbox_rows:
        connection.execute(schema.outbox.insert(), outbox_rows)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
