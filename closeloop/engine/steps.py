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
from typing import Any, NamedTuple

import ibis
import ibis.expr.types as ir
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


class Unit(NamedTuple):
    """An enrollment as far as sending is concerned (a tuple: a tick reads 100k of them)."""

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


class Directory:
    """Accounts and their contacts as the warehouse has them, fetched once per account.

    Rendering needs each treated unit's account row and its recipients: the account's first
    :data:`MAX_RECIPIENTS` people with an email (oldest first), or for a person job that person
    alone. One directory serves every job of a tick: an account or person several jobs act on
    is fetched once, and each job asks only for what is not fetched yet (one query each for
    accounts, their first contacts and people).
    """

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.accounts: dict[str, dict[str, Any] | None] = {}  # None: no such account
        self.contacts: dict[str, list[dict[str, Any]]] = {}  # account -> first contacts
        self.people: dict[str, list[dict[str, Any]]] = {}  # person -> its rows with an email

    def fetch(self, account_ids: set[str], person_ids: set[str] | None = None) -> None:
        """Make sure ``account_ids`` (with their first contacts) and ``person_ids`` are known;
        absent ones are remembered as absent."""
        missing = sorted(account_ids.difference(self.accounts))
        if missing:
            keys = _keys("account_id", missing)
            accounts = self.warehouse.table("accounts").semi_join(keys, "account_id")
            people = self._people().semi_join(keys, "account_id")
            order = [people.created_at, people.person_id]
            numbered = people.mutate(
                _n=ibis.row_number().over(group_by=people.account_id, order_by=order)
            )
            first = numbered.filter(numbered._n < MAX_RECIPIENTS).order_by(
                ["account_id", "created_at", "person_id"]
            )
            self.accounts.update(dict.fromkeys(missing))
            self.accounts.update((row["account_id"], row) for row in _rows(accounts))
            for person in _rows(first.select(*CONTACT_COLUMNS)):
                self.contacts.setdefault(person["account_id"], []).append(person)
        wanted = sorted((person_ids or set()).difference(self.people))
        if wanted:
            people = self._people().semi_join(_keys("person_id", wanted), "person_id")
            self.people.update((person, []) for person in wanted)
            for person in _rows(people.select(*CONTACT_COLUMNS)):
                self.people[person["person_id"]].append(person)

    def recipients(self, unit: Unit) -> list[dict[str, Any]]:
        """The people an action for ``unit`` goes to (fetched before)."""
        if unit.person_id is None:
            return self.contacts.get(unit.account_id, [])
        # A person job acts on that person only, as a contact of the unit's account.
        rows = self.people.get(unit.person_id, [])
        return [row for row in rows if row["account_id"] == unit.account_id][:MAX_RECIPIENTS]

    def _people(self) -> ir.Table:
        people = self.warehouse.table("people")
        return people.filter(people.email.notnull())


CONTACT_COLUMNS = ("account_id", "person_id", "email", "name", "role")


def _keys(column: str, values: list[str]) -> ir.Table:
    return ibis.memtable(pa.table({column: pa.array(values, pa.string())}))


def _rows(table: ir.Table) -> list[dict[str, Any]]:
    return list(table.to_pyarrow().to_pylist())


class Renderer:
    """Builds outbox rows: each action rendered by its kind with the unit's data.

    ``replay`` marks rows that would be sent as ``not_sent`` (a backfill that does not send):
    they record what the job did in the past and are never dispatched. ``directory`` (one for
    every job of a tick) holds the accounts and contacts already fetched.
    """

    def __init__(
        self,
        project: Project,
        job: LoadedJob,
        warehouse: Warehouse,
        *,
        replay: bool = False,
        directory: Directory | None = None,
    ) -> None:
        self.project = project
        self.job = job
        self.directory = directory if directory is not None else Directory(warehouse)
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
        directory = self.directory
        directory.fetch(
            {item.unit.account_id for item in treated},
            {item.unit.person_id for item in treated if item.unit.person_id is not None},
        )
        templates = self.templates.pinned()  # the files as they are now, for all of these rows
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
                context = RenderContext(
                    job_name=self.job.name,
                    step_index=item.step_index,
                    enrollment_id=unit.enrollment_id,
                    idempotency_key=key,
                    arm=unit.arm,
                    account=directory.accounts.get(unit.account_id)
                    or {"account_id": unit.account_id},
                    contacts=directory.recipients(unit),
                    person_id=unit.person_id,
                    unsubscribe_url=unsubscribe_url(unit.account_id) if unsubscribe_url else "",
                    at=item.due_at,
                )
                rendered, failure = _render(kind.render, item.step, context, templates)
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
