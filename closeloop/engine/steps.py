"""What an enrollment does, and when: step schedules, render contexts and outbox rows.

A job's sequence (``steps``, or a variant's) is laid out at enrollment: each action falls due at
``entered_at`` plus the waits before it. An action after a wait is a reminder; it is cancelled if
the enrollment ends before it falls due. ``on_completion`` and ``on_exit`` actions are written
when the tick detects the end. Every row has a step index unique within its enrollment, so the
idempotency key (job, version, enrollment, step) never collides:

* sequence steps keep their position in the sequence (0, 1, 2, … including waits),
* ``on_completion`` actions are ``COMPLETION_STEP + i``, ``on_exit`` actions ``EXIT_STEP + i``.

Actions are generic here: each kind renders its own payload (closeloop.channels.registry). One
unit's render failure is that row's failure alone (``dead`` with the reason, or ``skipped`` when
there is nobody to send to); the tick goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from closeloop.channels.base import RenderContext, Rendered
from closeloop.channels.registry import action_kind
from closeloop.channels.templates import TEMPLATES_DIR, TemplateSet
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import ActionStep, Step, WaitStep
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine.assignment import HOLDOUT, idempotency_key
from closeloop.engine.statuses import OutboxStatus as OutboxStatus  # re-exported
from closeloop.errors import CloseloopError

MAX_RECIPIENTS = 5
COMPLETION_STEP = 1000
EXIT_STEP = 2000


@dataclass(frozen=True)
class Scheduled:
    """One action of a sequence: its step index and how long after entry it falls due."""

    step_index: int
    step: ActionStep
    delay: timedelta


def schedule(steps: Sequence[Step]) -> list[Scheduled]:
    """The actions of a sequence with their delays after entry (the sum of the waits before).

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
    step: ActionStep
    due_at: datetime


def entry_plan(job: LoadedJob, units: Sequence[Unit], entered_at: datetime) -> list[Planned]:
    """The sequence of each new enrollment (the holdout is timed like the first treated arm)."""
    schedules: dict[str, list[Scheduled]] = {}
    for unit in units:
        if unit.arm not in schedules:
            schedules[unit.arm] = schedule(job.definition.steps_of(unit.arm))
    return [
        Planned(unit, item.step_index, item.step, entered_at + item.delay)
        for unit in units
        for item in schedules[unit.arm]
    ]


def end_plan(
    actions: Sequence[ActionStep], base: int, units: Sequence[Unit], at: datetime
) -> list[Planned]:
    """``on_completion`` or ``on_exit`` actions, due at the tick that detected the end."""
    return [
        Planned(unit, base + index, action, at)
        for unit in units
        for index, action in enumerate(actions)
    ]


class Renderer:
    """Builds outbox rows: each action rendered by its kind with the unit's data.

    ``replay`` marks rows that would be sent as ``not_sent`` (a backfill that does not send):
    they record what the job did in the past and are never dispatched.
    """

    def __init__(
        self, project: Project, job: LoadedJob, warehouse: Warehouse, *, replay: bool = False
    ) -> None:
        self.project = project
        self.job = job
        self.warehouse = warehouse
        self.replay = replay
        self.templates = TemplateSet.shared(project.folder / TEMPLATES_DIR)

    def rows(
        self,
        version: int,
        plan: Sequence[Planned],
        at: datetime,
        unsubscribe_url: Callable[[str], str] | None = None,
    ) -> list[dict[str, Any]]:
        """Outbox rows for ``plan``; ``unsubscribe_url(account_id) -> str`` makes the link."""
        if not plan:
            return []
        treated = [item for item in plan if item.unit.arm != HOLDOUT]
        accounts, contacts = self._lookups({item.unit.account_id for item in treated})
        rows: list[dict[str, Any]] = []
        for item in plan:
            unit = item.unit
            key = idempotency_key(self.job.name, version, unit.enrollment_id, item.step_index)
            kind = action_kind(item.step)
            error: str | None = None
            if unit.arm == HOLDOUT:
                payload: dict[str, Any] = {"ghost": True}
                status = OutboxStatus.GHOST
            else:
                people = contacts.get(unit.account_id, [])
                if unit.person_id is not None:  # a person target acts on that person only
                    people = [p for p in people if p["person_id"] == unit.person_id]
                context = RenderContext(
                    job_name=self.job.name,
                    step_index=item.step_index,
                    enrollment_id=unit.enrollment_id,
                    idempotency_key=key,
                    arm=unit.arm,
                    account=accounts.get(unit.account_id, {"account_id": unit.account_id}),
                    contacts=people[:MAX_RECIPIENTS],
                    person_id=unit.person_id,
                    unsubscribe_url=unsubscribe_url(unit.account_id) if unsubscribe_url else "",
                    at=item.due_at,
                )
                rendered, failure = _render(kind.render, item.step, context, self.templates)
                payload = rendered.payload
                if failure is not None:
                    status, error = OutboxStatus.DEAD, failure
                elif rendered.skip is not None:
                    status, error = OutboxStatus.SKIPPED, f"{context.where()}: {rendered.skip}"
                else:
                    status = OutboxStatus.NOT_SENT if self.replay else OutboxStatus.PENDING
            rows.append(
                {
                    "idempotency_key": key,
                    "enrollment_id": unit.enrollment_id,
                    "job_name": self.job.name,
                    "account_id": unit.account_id,
                    "step_index": item.step_index,
                    "channel": kind.name,
                    "payload": json.dumps(payload, default=str),
                    "status": status,
                    "attempts": 0,
                    "created_at": at,
                    "next_attempt_at": item.due_at,
                    "due_at": item.due_at,
                    "last_error": error,
                }
            )
        return rows

    def _lookups(
        self, account_ids: set[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        if not account_ids:  # only holdout units: nothing is rendered
            return {}, {}
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


def _render(
    render: Any, step: ActionStep, context: RenderContext, templates: TemplateSet
) -> tuple[Rendered, str | None]:
    """One unit's render, and the reason it failed (named with job, step and account) if it did.

    A failure is that row's alone: the tick records it as dead and goes on with everyone else.
    """
    try:
        rendered: Rendered = render(step, context, templates)
    except CloseloopError as error:
        reason = str(error)
    except Exception as error:  # a kind's bug must not stop the tick for everyone else
        reason = f"{type(error).__name__}: {error}"
    else:
        return rendered, None
    where = context.where()
    return Rendered(), reason if reason.startswith(where) else f"{where}: {reason}"
