"""A tick at time T: detect completions and exits, then enroll newly eligible units.

Everything a tick decides for a job — enrollments, completions, exits, the outbox rows of their
actions, the cancellation of reminders that no longer apply and the ledger row that marks the tick
done — is written in one transaction, so a crash at any point either leaves the tick undone (run
it again) or done (running it again changes nothing).

Two ticks of one job may run at the same time (two cron entries, a slow tick and the next one, a
server and a CLI). A tick decides from what it read at the job's ``revision`` and records only if
the revision is still the same (compare and set, in the recording transaction, which holds the
job's row lock on PostgreSQL and the write lock on SQLite). If another tick recorded first, this
one decides again from the new state; a tick older than the job's latest is refused. On top of
that the store itself refuses a second active enrollment of one unit in one job (a partial unique
index), so no interleaving can enroll a unit twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache

import ibis
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.data.compiler import (
    eligible_units,
    excluded_units,
    goal_candidates,
    goal_reached_at,
)
from closeloop.data.rollups import Rollup
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity
from closeloop.definitions.models import Allocation, ContactPolicy
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine import schema
from closeloop.engine.allocation import TickAllocation, thompson_tick_allocation
from closeloop.engine.assignment import assign_variant, enrollment_id
from closeloop.engine.optouts import opted_out_since
from closeloop.engine.publish import publish_enrollments
from closeloop.engine.state import JobRecord, LaunchPlan, StateStore, utc_now
from closeloop.engine.statuses import ExitReason, JobStatus, OutboxStatus
from closeloop.engine.steps import (
    COMPLETION_STEP,
    EXIT_STEP,
    Planned,
    Renderer,
    Unit,
    end_plan,
    entry_plan,
)
from closeloop.engine.tick_reads import (
    Candidates,
    Running,
    TickReads,
    candidates,
    references_jobs,
    unit_key,
)
from closeloop.errors import ConcurrencyError, NotFoundError

__all__ = ["ExitReason", "JobStatus", "OutboxStatus", "TickResult", "run_tick"]

MAX_ATTEMPTS = 5  # decide-and-record rounds before a tick gives up to a busier writer


class StaleTickError(ConcurrencyError):
    """A tick at a time before the job's latest tick."""

    code = "stale_tick"


class _Again(Exception):  # noqa: N818 (control flow, never escapes run_tick)
    """Raised inside the recording transaction to roll it back and decide again."""


@dataclass(frozen=True)
class TickResult:
    job_name: str
    at: datetime
    version: int
    entered: int
    completed: int
    exited: int
    already_done: bool = False
    status: str = JobStatus.LIVE
    outbox: dict[str, int] = field(default_factory=dict)  # rows written, by status
    problems: tuple[str, ...] = ()  # rows that failed to render, with job, step and account


@dataclass(frozen=True)
class _Decisions:
    completions: dict[str, datetime]
    exits: dict[str, tuple[datetime, str]]
    entering: list[Unit]
    active: dict[str, Unit]
    allocation: TickAllocation | None = None  # the split used, with adaptive allocation
    referrals: tuple[str, ...] = ()  # referral keys this tick consumed


def run_tick(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    store: StateStore,
    at: datetime,
    author: str = "closeloop",
    *,
    launch: bool = False,
    replay: bool = False,
    unsubscribe_url: Callable[[str], str] | None = None,
    launch_plan: Callable[[], LaunchPlan | None] | None = None,
    rollup: Rollup | None = None,
    reads: TickReads | None = None,
) -> TickResult:
    """Run job ``job`` at time ``at``; running the same tick again is a no-op.

    A draft job (never launched) is launched at ``at`` only with ``launch``; otherwise the tick
    does nothing for it. ``replay`` records the actions it plans as ``not_sent`` (a backfill that
    does not send). ``unsubscribe_url(account_id)`` makes each message's signed link.
    ``launch_plan()``, called only when the tick launches, gives the plan stored with the launch.
    ``rollup`` (:func:`closeloop.data.rollups.refresh`, up to date with the events) answers
    per-unit event totals without rescanning history; the decisions are the same without it.
    ``reads`` (one for every job of a tick) answers the job's warehouse questions from one query
    for all jobs; the decisions are the same without it.
    """
    directory = reads.directory if reads is not None else None
    renderer = Renderer(project, job, warehouse, replay=replay, directory=directory)
    planned = cache(launch_plan) if launch_plan is not None else None  # once, however many tries
    for _ in range(MAX_ATTEMPTS):
        record = store.sync_job(job, author)
        launching = record is None
        if record is None:
            if not launch:
                return TickResult(job.name, at, 0, 0, 0, 0, status=JobStatus.DRAFT)
            # The launch is written in this tick's transaction: a launch and its first tick
            # happen together or not at all.
            record = store.planned_launch(job, at)
            if planned is not None:
                record = replace(record, plan=planned())
            state = _JobState(0, JobStatus.LIVE, None, None, _contacts_revision(store))
        else:
            state = _job_state(store, job.name, at)
        if state.done_version is not None:
            return TickResult(
                job.name, at, state.done_version, 0, 0, 0, already_done=True, status=state.status
            )
        if state.latest is not None and state.latest > at:
            raise StaleTickError(
                f"job {job.name!r} already ticked at {state.latest:%Y-%m-%d %H:%M:%S}, after "
                f"{at:%Y-%m-%d %H:%M:%S}; ticks only move forward (tick at a later time)"
            )
        if state.status == JobStatus.STOPPED:
            return TickResult(job.name, at, record.version, 0, 0, 0, status=state.status)
        if references_jobs(job):
            publish_enrollments(store, warehouse)
        # Reads happen before the transaction: they decide, the transaction records.
        revision = None if launching else state.revision
        decisions = _decide(
            project, job, warehouse, store, record, at, state.status, rollup, reads, revision
        )
        plan = _plan(job, decisions, at) if state.status == JobStatus.LIVE else []
        outbox_rows = renderer.rows(record.version, plan, at, unsubscribe_url)
        try:
            with store.engine.begin() as connection:
                if launching:
                    store.record_launch(connection, job, record, author)
                elif not _compare_and_set(connection, job.name, state.revision):
                    continue  # another process changed the job since we read it: decide again
                capped = project.config.contact_policy is not None and decisions.entering
                if capped and not _contacts_unchanged(connection, state.contacts):
                    raise _Again  # another job enrolled meanwhile: the cap may have changed
                _record(connection, job, record, decisions, outbox_rows, at)
        except _Again:
            continue  # the transaction rolled back; decide again from the new state
        except (sa.exc.IntegrityError, ConcurrencyError) as error:
            if launching:
                continue  # another process launched the job first: this tick decides again
            raise ConcurrencyError(
                f"job {job.name!r} at {at:%Y-%m-%d %H:%M:%S}: another process recorded the same "
                f"enrollments first; nothing was recorded by this tick ({_first_line(error)})"
            ) from None
        counts: dict[str, int] = {}
        for row in outbox_rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return TickResult(
            job.name,
            at,
            record.version,
            len(decisions.entering),
            len(decisions.completions),
            len(decisions.exits),
            status=state.status,
            outbox=counts,
            problems=tuple(
                row["last_error"] for row in outbox_rows if row["status"] == OutboxStatus.DEAD
            ),
        )
    raise ConcurrencyError(
        f"job {job.name!r} was changed by other processes {MAX_ATTEMPTS} times while this tick "
        f"at {at:%Y-%m-%d %H:%M:%S} decided; nothing was recorded, run it again"
    )


@dataclass(frozen=True)
class Preview:
    """What a tick at ``at`` would do, recorded nowhere (``closeloop dry-run``)."""

    job_name: str
    at: datetime
    status: str
    entering: list[Unit]
    completing: list[str]  # enrollment ids
    exiting: dict[str, str]  # enrollment id -> reason
    outbox_rows: list[dict[str, object]]


def preview_tick(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    store: StateStore,
    at: datetime,
    *,
    unsubscribe_url: Callable[[str], str] | None = None,
) -> Preview:
    """Who would enter, complete and exit at ``at`` and what each would receive; nothing is
    written. A draft is previewed as if it launched at ``at`` (its arms are the ones that launch
    would assign)."""
    try:
        record = store.job_record(job.name)
        status = record.status
    except NotFoundError:
        record, status = store.planned_launch(job, at), JobStatus.DRAFT
    deciding = JobStatus.LIVE if status == JobStatus.DRAFT else status
    if status == JobStatus.STOPPED:
        return Preview(job.name, at, status, [], [], {}, [])
    if references_jobs(job):
        publish_enrollments(store, warehouse)
    decisions = _decide(project, job, warehouse, store, record, at, deciding)
    plan = _plan(job, decisions, at) if deciding == JobStatus.LIVE else []
    rows = Renderer(project, job, warehouse).rows(record.version, plan, at, unsubscribe_url)
    return Preview(
        job.name,
        at,
        status,
        decisions.entering,
        sorted(decisions.completions),
        {key: reason for key, (_, reason) in decisions.exits.items()},
        rows,
    )


def _plan(job: LoadedJob, decisions: _Decisions, at: datetime) -> list[Planned]:
    """The actions a live job's tick writes: entrants' sequences, then the completion and exit
    actions of the enrollments that ended."""
    active = decisions.active
    definition = job.definition
    return [
        *entry_plan(job, decisions.entering, at),
        *end_plan(
            definition.on_completion,
            COMPLETION_STEP,
            [active[e] for e in decisions.completions],
            at,
        ),
        *end_plan(definition.on_exit, EXIT_STEP, [active[e] for e in decisions.exits], at),
    ]


@dataclass(frozen=True)
class _JobState:
    revision: int
    status: str
    latest: datetime | None  # the job's latest tick
    done_version: int | None  # the version of the tick at ``at``, if it is done
    contacts: int = 0  # the shared contact revision (see _contacts_unchanged)


def _job_state(store: StateStore, job_name: str, at: datetime) -> _JobState:
    """The job's revision and status, read before anything the tick decides from."""
    j, t = schema.jobs, schema.ticks
    contacts = _contacts_revision(store)
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(j.c.revision, j.c.status).where(j.c.name == job_name)
        ).one()
        latest = connection.execute(
            sa.select(sa.func.max(t.c.at)).where(t.c.job_name == job_name)
        ).scalar()
        done = connection.execute(
            sa.select(t.c.job_version).where(t.c.job_name == job_name, t.c.at == at)
        ).scalar()
    return _JobState(row.revision, row.status, latest, done, contacts)


CONTACTS = "contacts"


def _contacts_revision(store: StateStore) -> int:
    c = schema.counters
    with store.engine.connect() as connection:
        value = connection.execute(sa.select(c.c.value).where(c.c.name == CONTACTS)).scalar()
    return int(value or 0)


def _contacts_unchanged(connection: Connection, revision: int) -> bool:
    """Bump the shared contact revision if it is still ``revision``.

    Under a contact policy a tick's enrollments depend on other jobs' (the cap counts them), so a
    tick that enrolls anyone also compares and sets this revision: two jobs ticking at once
    cannot both take an account's last free slot.
    """
    c = schema.counters
    updated = connection.execute(
        c.update().where(c.c.name == CONTACTS, c.c.value == revision).values(value=c.c.value + 1)
    ).rowcount
    return bool(updated)


def _compare_and_set(connection: Connection, job_name: str, revision: int) -> bool:
    """Bump the job's revision if it is still ``revision`` (and so lock its row until commit)."""
    j = schema.jobs
    updated = connection.execute(
        j.update()
        .where(j.c.name == job_name, j.c.revision == revision)
        .values(revision=j.c.revision + 1)
    ).rowcount
    return bool(updated)


def _record(
    connection: Connection,
    job: LoadedJob,
    record: JobRecord,
    decisions: _Decisions,
    outbox_rows: list[dict[str, object]],
    at: datetime,
) -> None:
    e = schema.enrollments
    # One prepared statement each, executed for all rows (executemany), not a statement per row.
    if decisions.completions:
        connection.execute(
            e.update()
            .where(e.c.enrollment_id == sa.bindparam("ended_id"))
            .values(completed_at=sa.bindparam("ended_at")),
            [
                {"ended_id": enrollment, "ended_at": completed_at}
                for enrollment, completed_at in decisions.completions.items()
            ],
        )
    if decisions.exits:
        connection.execute(
            e.update()
            .where(e.c.enrollment_id == sa.bindparam("ended_id"))
            .values(exited_at=sa.bindparam("ended_at"), exit_reason=sa.bindparam("reason")),
            [
                {"ended_id": enrollment, "ended_at": exited_at, "reason": reason}
                for enrollment, (exited_at, reason) in decisions.exits.items()
            ],
        )
    cancel_reminders(
        connection,
        [
            *decisions.completions.items(),
            *((enrollment, exited_at) for enrollment, (exited_at, _) in decisions.exits.items()),
        ],
    )
    if decisions.entering:
        connection.execute(
            e.insert(),
            [
                {
                    "enrollment_id": unit.enrollment_id,
                    "job_name": job.name,
                    "job_version": record.version,
                    "account_id": unit.account_id,
                    "person_id": unit.person_id,
                    "arm": unit.arm,
                    "entered_at": at,
                }
                for unit in decisions.entering
            ],
        )
    if outbox_rows:
        connection.execute(schema.outbox.insert(), outbox_rows)
    if decisions.allocation is not None:
        connection.execute(
            schema.tick_allocations.insert(), decisions.allocation.rows(job.name, at)
        )
    if decisions.referrals:
        r = schema.referrals
        connection.execute(
            r.update()
            .where(r.c.idempotency_key.in_(decisions.referrals), r.c.consumed_at.is_(None))
            .values(consumed_at=at)
        )
    connection.execute(
        schema.ticks.insert().values(
            job_name=job.name,
            at=at,
            job_version=record.version,
            entered=len(decisions.entering),
            completed=len(decisions.completions),
            exited=len(decisions.exits),
            processed_at=utc_now(),
        )
    )


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _decide(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    store: StateStore,
    record: JobRecord,
    at: datetime,
    status: str = JobStatus.LIVE,
    rollup: Rollup | None = None,
    reads: TickReads | None = None,
    revision: int | None = None,
) -> _Decisions:
    """What the job does at ``at``; ``revision``: the job's, read before anything else (the
    running enrollments read ahead at it are reused, see closeloop.engine.tick_reads)."""
    definition = job.definition
    target = Entity(definition.target)
    running = (
        reads.running_at(job, revision) if reads is not None and revision is not None else None
    )
    if running is not None:
        active, entered = running.units, running.entered
    else:
        active, entered = _active_units(store, job.name, at)
    by_id = {unit.enrollment_id: unit for unit in active}
    pairs = running.candidates if running is not None else None
    completions = _completions(project, job, warehouse, active, entered, at, rollup, reads, pairs)
    duration = timedelta(days=definition.duration_days)
    exits: dict[str, tuple[datetime, str]] = {}
    for unit in active:
        deadline = entered[unit.enrollment_id] + duration
        if unit.enrollment_id not in completions and deadline <= at:
            exits[unit.enrollment_id] = (deadline, ExitReason.TIMEOUT)
    opted_out = opted_out_since(store, at)
    for unit in active:
        ended = unit.enrollment_id in completions or unit.enrollment_id in exits
        if not ended and unit.account_id in opted_out:
            moment = max(opted_out[unit.account_id], entered[unit.enrollment_id])
            exits[unit.enrollment_id] = (moment, ExitReason.OPTED_OUT)
    enrolling = definition.is_enrolling(at) and status == JobStatus.LIVE
    if not enrolling and not definition.exit_when_ineligible:
        return _Decisions(completions, exits, [], by_id)
    eligible = _eligible(project, job, warehouse, at, rollup, reads)
    if definition.exit_when_ineligible:
        for unit in active:
            ended = unit.enrollment_id in completions or unit.enrollment_id in exits
            if not ended and unit_key(unit, target) not in eligible:
                exits[unit.enrollment_id] = (at, ExitReason.NO_LONGER_ELIGIBLE)
    if not enrolling:
        return _Decisions(completions, exits, [], by_id)
    referred = _open_referrals(store, job.name, target, at)
    # A referral stands in for the audience; the job's exclusions still apply to it.
    referred_keys = {key for key, _ in referred.values()}
    excluded = _excluded(project, job, warehouse, at, referred_keys, rollup)
    for key, account in referred.values():
        if key not in excluded:
            eligible.setdefault(key, account)
    blocked = _blocked_by_re_entry(store, job, target, at)
    capped = _capped_accounts(store, job.name, project.config.contact_policy, at)
    capped |= set(opted_out)
    arms = [(variant.name, variant.weight) for variant in definition.variants] or [
        (definition.arms[0], 1.0)
    ]
    allocation = None
    if definition.allocation == Allocation.THOMPSON:
        pending = [
            (by_id[key].arm, entered[key], completed_at)
            for key, completed_at in completions.items()
        ]
        allocation = thompson_tick_allocation(store, job, record.salt, record.holdout, at, pending)
        arms = allocation.treated_weights()
    entering = [
        Unit(
            enrollment_id(job.name, key, at.isoformat()),
            account,
            key if target == Entity.PERSON else None,
            assign_variant(record.salt, key, record.holdout, arms),
        )
        for key, account in sorted(eligible.items())
        if key not in blocked and account not in capped
    ]
    return _Decisions(completions, exits, entering, by_id, allocation, tuple(referred))


def _open_referrals(
    store: StateStore, job_name: str, target: Entity, at: datetime
) -> dict[str, tuple[str, str]]:
    """Units other jobs' ``enroll`` actions sent here by ``at``: referral key -> (unit, account)."""
    r = schema.referrals
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(r.c.idempotency_key, r.c.account_id, r.c.person_id).where(
                r.c.job_name == job_name, r.c.consumed_at.is_(None), r.c.referred_at <= at
            )
        ).all()
    found = {}
    for key, account, person in rows:
        if target == Entity.PERSON and person is None:
            continue  # a person job cannot enroll a whole account; the referral stays open
        found[key] = (person if target == Entity.PERSON else account, account)
    return found


def _active_units(
    store: StateStore, job_name: str, at: datetime
) -> tuple[list[Unit], dict[str, datetime]]:
    """Enrollments still running before ``at``, and when each entered."""
    e = schema.enrollments
    # A tick reads 100k of these: SQLite's stored ISO text goes through the C parser
    # (datetime.fromisoformat) instead of SQLAlchemy's per-row processor.
    as_text = store.engine.dialect.name == "sqlite"
    entered_at = sa.type_coerce(e.c.entered_at, sa.String) if as_text else e.c.entered_at
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.enrollment_id, e.c.account_id, e.c.person_id, e.c.arm, entered_at)
            .where(
                e.c.job_name == job_name,
                e.c.completed_at.is_(None),
                e.c.exited_at.is_(None),
                e.c.entered_at < at,
            )
            .order_by(e.c.enrollment_id)
        ).all()
    parse = datetime.fromisoformat if as_text else _same
    return [Unit._make(row[:4]) for row in rows], {row[0]: parse(row[4]) for row in rows}


def _same(moment: datetime) -> datetime:
    return moment


def tick_reads(
    project: Project,
    jobs: Sequence[LoadedJob],
    warehouse: Warehouse,
    store: StateStore,
    at: datetime,
    rollup: Rollup | None = None,
) -> TickReads:
    """The warehouse questions of a tick of ``jobs`` at ``at``, asked once for all of them."""

    def running(job: LoadedJob) -> Running:
        j = schema.jobs
        with store.engine.connect() as connection:  # the revision before the enrollments
            revision = connection.execute(
                sa.select(j.c.revision).where(j.c.name == job.name)
            ).scalar()
        active, entered = _active_units(store, job.name, at)
        return Running(revision, active, entered, Entity(job.definition.target))

    return TickReads(project, jobs, warehouse, at, running, rollup)


def _completions(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    active: Sequence[Unit],
    entered: dict[str, datetime],
    at: datetime,
    rollup: Rollup | None = None,
    reads: TickReads | None = None,
    pairs: Candidates | None = None,
) -> dict[str, datetime]:
    """Enrollments whose goal first held (at event time) within their duration; ``pairs``:
    their candidates (unit key, entered_at) if already made."""
    if not active:
        return {}
    target = Entity(job.definition.target)
    key = "person_id" if target == Entity.PERSON else "account_id"
    if pairs is None:
        pairs = candidates(active, entered, target)
    read = reads.reached(job, pairs) if reads is not None else None
    if read is not None:
        reached_at = read
    else:
        table = goal_candidates(target, [(0, unit, moment) for unit, moment in pairs])
        reached = goal_reached_at(
            job.goal,
            warehouse,
            at,
            table,
            project.catalog,
            target,
            rollup=rollup,
            entered_since=min(moment for _, moment in pairs),
        ).to_pyarrow()
        reached_at = dict(
            zip(
                reached.column(key).to_pylist(),
                reached.column("reached_at").to_pylist(),
                strict=True,
            )
        )
    duration = timedelta(days=job.definition.duration_days)
    completions: dict[str, datetime] = {}
    for unit in active:
        moment = reached_at.get(unit_key(unit, target))
        if moment is not None and moment <= entered[unit.enrollment_id] + duration:
            completions[unit.enrollment_id] = _naive(moment)
    return completions


def _eligible(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    at: datetime,
    rollup: Rollup | None = None,
    reads: TickReads | None = None,
) -> dict[str, str]:
    """Units in the audience and in no exclusion as of ``at``: unit key -> account id."""
    read = reads.eligible(job) if reads is not None else None
    if read is not None:
        return dict(read)
    target = Entity(job.definition.target)
    key = "person_id" if target == Entity.PERSON else "account_id"
    audience = eligible_units(
        job.audience, job.exclusions, warehouse, at, project.catalog, target, rollup=rollup
    )
    columns = [key] if key == "account_id" else [key, "account_id"]
    rows = audience.select(*columns).distinct().to_pyarrow().to_pylist()
    return {row[key]: row["account_id"] for row in rows}


def _excluded(
    project: Project,
    job: LoadedJob,
    warehouse: Warehouse,
    at: datetime,
    keys: set[str],
    rollup: Rollup | None = None,
) -> set[str]:
    """Which of ``keys`` (unit keys) match one of the job's exclusions as of ``at``."""
    if not keys or not job.exclusions:
        return set()
    target = Entity(job.definition.target)
    key = "person_id" if target == Entity.PERSON else "account_id"
    wanted = ibis.memtable(pa.table({key: pa.array(sorted(keys), pa.string())}))
    excluded = excluded_units(job.exclusions, warehouse, at, project.catalog, target, rollup=rollup)
    rows = excluded.semi_join(wanted, key).distinct().to_pyarrow()
    return set(rows.column(key).to_pylist())


def _blocked_by_re_entry(
    store: StateStore, job: LoadedJob, target: Entity, at: datetime
) -> set[str]:
    """Units that may not enter now: enrolled and active, or (by ``re_entry``) ended too recently.

    ``re_entry: never`` blocks anyone who ever entered; ``{after_days: N}`` blocks until N days
    after the previous enrollment ended (completed or exited).
    """
    e = schema.enrollments
    key = e.c.person_id if target == Entity.PERSON else e.c.account_id
    policy = job.definition.re_entry
    with store.engine.connect() as connection:
        if policy == "never":
            return set(connection.execute(sa.select(key).where(e.c.job_name == job.name)).scalars())
        cutoff = at - timedelta(days=policy.after_days)
        ended = sa.func.coalesce(e.c.completed_at, e.c.exited_at)
        rows = connection.execute(
            sa.select(key).where(
                e.c.job_name == job.name,
                sa.or_(ended.is_(None), ended > cutoff),
            )
        ).scalars()
        return set(rows)


def _capped_accounts(
    store: StateStore, job_name: str, policy: ContactPolicy | None, at: datetime
) -> set[str]:
    """Accounts that ``max_jobs`` other jobs enrolled within the last ``per_days`` days.

    Holdout enrollments count too: the cap limits assignment, so both arms stay comparable.
    """
    if policy is None:
        return set()
    e = schema.enrollments
    since = at - timedelta(days=policy.per_days)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.account_id)
            .where(e.c.job_name != job_name, e.c.entered_at > since, e.c.entered_at <= at)
            .group_by(e.c.account_id)
            .having(sa.func.count(sa.distinct(e.c.job_name)) >= policy.max_jobs)
        ).scalars()
        return set(rows)


def cancel_reminders(connection: Connection, ended: Sequence[tuple[str, datetime]]) -> None:
    """Sequence messages (pending or ghost) that fall due after their enrollment ended never go
    out. ``ended``: (enrollment id, when it ended); one statement run for all of them, each an
    index lookup (``ix_outbox_enrollment``)."""
    if not ended:
        return
    o = schema.outbox
    connection.execute(
        o.update()
        .where(
            o.c.enrollment_id == sa.bindparam("ended_id"),
            o.c.step_index < COMPLETION_STEP,
            # (an expanding IN cannot take part in an executemany)
            sa.or_(o.c.status == OutboxStatus.PENDING, o.c.status == OutboxStatus.GHOST),
            o.c.due_at > sa.bindparam("ended_at"),
        )
        .values(
            status=OutboxStatus.CANCELLED, last_error="the enrollment ended before it fell due"
        ),
        [{"ended_id": enrollment, "ended_at": moment} for enrollment, moment in ended],
    )


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
