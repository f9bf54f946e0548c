"""What an enrollment sends, and when: step schedules, recipients and outbox rows.

A job's sequence (``steps``, or a variant's) is laid out at enrollment: each email falls due at
``entered_at`` plus the waits before it. An email after a wait is a reminder; it is cancelled if
the enrollment ends before it falls due. ``on_completion`` and ``on_exit`` actions are written
when the tick detects the end. Every row has a step index unique within its enrollment, so the
idempotency key (job, version, enrollment, step) never collides:

* sequence steps keep their position in the sequence (0, 1, 2, … including waits),
* ``on_completion`` actions are ``COMPLETION_STEP + i``, ``on_exit`` actions ``EXIT_STEP + i``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from closeloop.channels.email import EMAIL, EmailTemplates
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import EmailStep, Step, WaitStep
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine.assignment import HOLDOUT, idempotency_key

MAX_RECIPIENTS = 5
COMPLETION_STEP = 1000
EXIT_STEP = 2000


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    GHOST = "ghost"  # holdout: logged as would-have-sent, never sent
    SKIPPED = "skipped"  # treatment, but nobody to send to
    CANCELLED = "cancelled"  # a reminder whose enrollment ended before it fell due


@dataclass(frozen=True)
class Scheduled:
    """One email of a sequence: its step index and how long after entry it falls due."""

    step_index: int
    step: EmailStep
    delay: timedelta


def schedule(steps: Sequence[Step]) -> list[Scheduled]:
    """The emails of a sequence with their delays after entry (the sum of the waits before).

    >>> from closeloop.definitions.models import EmailStep, WaitStep
    >>> email = EmailStep(send="email", subject="Hi", template="t")
    >>> [s.delay.days for s in schedule([email, WaitStep(wait_days=3), email])]
    [0, 3]
    """
    delay = timedelta(0)
    scheduled: list[Scheduled] = []
    for index, step in enumerate(steps):
        if isinstance(step, WaitStep):
            delay += timedelta(days=step.wait_days)
        else:
            scheduled.append(Scheduled(index, step, delay))
    return scheduled


@dataclass(frozen=True)
class Unit:
    """An enrollment as far as sending is concerned."""

    enrollment_id: str
    account_id: str
    person_id: str | None
    arm: str


@dataclass(frozen=True)
class Planned:
    """An outbox row to write for ``unit``: ``step`` at ``step_index``, due at ``due_at``."""

    unit: Unit
    step_index: int
    step: EmailStep
    due_at: datetime


def entry_plan(job: LoadedJob, units: Sequence[Unit], entered_at: datetime) -> list[Planned]:
    """The sequence of each new enrollment (the holdout is timed like the first treated arm)."""
    return [
        Planned(unit, item.step_index, item.step, entered_at + item.delay)
        for unit in units
        for item in schedule(job.definition.steps_of(unit.arm))
    ]


def end_plan(
    actions: Sequence[EmailStep], base: int, units: Sequence[Unit], at: datetime
) -> list[Planned]:
    """``on_completion`` or ``on_exit`` actions, due at the tick that detected the end."""
    return [
        Planned(unit, base + index, action, at)
        for unit in units
        for index, action in enumerate(actions)
    ]


class Renderer:
    """Builds outbox rows: recipients and rendered content from the warehouse and templates."""

    def __init__(self, project: Project, job: LoadedJob, warehouse: Warehouse) -> None:
        self.project = project
        self.job = job
        self.warehouse = warehouse
        self.templates = EmailTemplates(project.folder / "templates")

    def rows(self, version: int, plan: Sequence[Planned], at: datetime) -> list[dict[str, Any]]:
        if not plan:
            return []
        accounts, contacts = self._lookups({item.unit.account_id for item in plan})
        rows: list[dict[str, Any]] = []
        for item in plan:
            unit = item.unit
            people = contacts.get(unit.account_id, [])
            if unit.person_id is not None:  # a person target writes to that person only
                people = [p for p in people if p["person_id"] == unit.person_id]
            recipients = [p["email"] for p in people][:MAX_RECIPIENTS]
            unsubscribe = self.project.config.unsubscribe_url.format(account_id=unit.account_id)
            if unit.arm == HOLDOUT:
                payload: dict[str, Any] = {"to": recipients, "ghost": True}
                status = OutboxStatus.GHOST
            else:
                context = {
                    "account": accounts.get(unit.account_id, {"account_id": unit.account_id}),
                    "contact": (people or [{}])[0],
                    "job": {"name": self.job.name},
                    "unsubscribe_url": unsubscribe,
                }
                rendered = self.templates.render(item.step.template, item.step.subject, context)
                payload = {
                    "to": recipients,
                    "subject": rendered.subject,
                    "text": rendered.text,
                    "html": rendered.html,
                    "unsubscribe_url": unsubscribe,
                }
                status = OutboxStatus.PENDING if recipients else OutboxStatus.SKIPPED
            rows.append(
                {
                    "idempotency_key": idempotency_key(
                        self.job.name, version, unit.enrollment_id, item.step_index
                    ),
                    "enrollment_id": unit.enrollment_id,
                    "job_name": self.job.name,
                    "account_id": unit.account_id,
                    "step_index": item.step_index,
                    "channel": EMAIL,
                    "payload": json.dumps(payload),
                    "status": status,
                    "attempts": 0,
                    "created_at": at,
                    "next_attempt_at": item.due_at,
                    "due_at": item.due_at,
                    "last_error": "no contact with an email"
                    if status == OutboxStatus.SKIPPED
                    else None,
                }
            )
        return rows

    def _lookups(
        self, account_ids: set[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        keys = ibis.memtable(pa.table({"account_id": pa.array(sorted(account_ids), pa.string())}))
        accounts = (
            self.warehouse.table("accounts").semi_join(keys, "account_id").to_pyarrow().to_pylist()
        )
        people = (
            self.warehouse.table("people")
            .semi_join(keys, "account_id")
            .filter(lambda p: p.email.notnull())
            .order_by(["account_id", "created_at", "person_id"])
            .select("account_id", "person_id", "email", "name", "role")
            .to_pyarrow()
            .to_pylist()
        )
        contacts: dict[str, list[dict[str, Any]]] = {}
        for person in people:
            contacts.setdefault(person["account_id"], []).append(person)
        return {row["account_id"]: row for row in accounts}, contacts
