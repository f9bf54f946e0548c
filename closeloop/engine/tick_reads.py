"""The warehouse questions of a tick of many jobs, asked once for all of them.

A tick asks the warehouse two questions per job: which units are eligible for it now, and when
each of its running enrollments reached the goal. Asked job by job, each question is an Ibis
expression built, compiled and run on its own, and twenty jobs pay that twenty times, most of it
in Python. :class:`TickReads` asks each question once per target (accounts, people) for every job
of the tick, on one frame whose per-unit tables the jobs share
(:func:`~closeloop.data.compiler.audience_flags`,
:func:`~closeloop.data.compiler.goals_reached_at`). The answers are the ones each job would get
alone; ``tests/integration/test_tick_reads.py`` compares them.

Reading the goal times needs every job's running enrollments, read from the state store with
the job's revision (read first). A job's decision reuses them when the revision it decides at is
still the one read ahead: every change to a job's enrollments bumps its revision in the same
transaction, so an equal revision means the same enrollments, and a change after the read makes
the decision's compare and set fail (the tick then decides again, reading afresh).

Some answers cannot be read ahead, and a job then asks alone, as before:

- a job whose audience, goal or exclusions mention job membership (``entered job "X"``): it
  changes as the jobs ticked before it enroll;
- the goal of a job whose running enrollments are not the ones read ahead (another process
  recorded a tick of the job in between, and this tick decides again).

The tick's :class:`~closeloop.engine.steps.Directory` (accounts and contacts for rendering) is
shared here too, so an account several jobs act on is fetched once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from closeloop.data.compiler import audience_flags, goal_candidates, goals_reached_at
from closeloop.data.rollups import Rollup
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, MembershipKind, memberships
from closeloop.definitions.project import LoadedJob, Project
from closeloop.engine.steps import Directory, Unit

Candidates = tuple[tuple[str, datetime], ...]  # (unit key, entered_at) of running enrollments


@dataclass(frozen=True)
class Running:
    """A job's running enrollments and when each entered, read at the job's ``revision``
    (None: the job was never launched)."""

    revision: int | None
    units: list[Unit]
    entered: dict[str, datetime]
    target: Entity

    @cached_property
    def candidates(self) -> Candidates:
        return candidates(self.units, self.entered, self.target)


def unit_key(unit: Unit, target: Entity) -> str:
    """The key a job's expressions know the unit by: the person for a person job."""
    return unit.person_id if target == Entity.PERSON and unit.person_id else unit.account_id


def candidates(units: Sequence[Unit], entered: dict[str, datetime], target: Entity) -> Candidates:
    return tuple((unit_key(unit, target), entered[unit.enrollment_id]) for unit in units)


def references_jobs(job: LoadedJob) -> bool:
    """Whether any of the job's expressions asks about job membership (``entered job "X"``)."""
    return any(
        kind == MembershipKind.JOB
        for expression in (job.audience, job.goal, *job.exclusions)
        for kind, _ in memberships(expression)
    )


@dataclass
class TickReads:
    """Eligible units and goal times of every job of one tick at ``at``, read on first use.

    ``running(job)`` reads the job's running enrollments (revision first).
    """

    project: Project
    jobs: Sequence[LoadedJob]
    warehouse: Warehouse
    at: datetime
    running: Callable[[LoadedJob], Running]
    rollup: Rollup | None = None
    directory: Directory = field(init=False)
    _eligible: dict[str, dict[str, str]] | None = field(default=None, init=False)
    _running: dict[str, Running] = field(default_factory=dict, init=False)
    _reached: dict[str, dict[str, datetime]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.directory = Directory(self.warehouse)

    def _shared(self) -> list[LoadedJob]:
        return [job for job in self.jobs if not references_jobs(job)]

    def eligible(self, job: LoadedJob) -> dict[str, str] | None:
        """The job's eligible units (unit key -> account id), or None if it must ask alone."""
        if self._eligible is None:
            self._eligible = self._read_eligible()
        return self._eligible.get(job.name)

    def running_at(self, job: LoadedJob, revision: int) -> Running | None:
        """The job's running enrollments read ahead, if it is still at ``revision`` (module
        doc), else None (read them afresh)."""
        if self._reached is None:
            self._reached = self._read_reached()
        found = self._running.get(job.name)
        return found if found is not None and found.revision == revision else None

    def reached(self, job: LoadedJob, candidates: Candidates) -> dict[str, datetime] | None:
        """When each of ``candidates`` reached the job's goal (absent: not yet), or None if the
        job must ask alone (its candidates are not the ones read ahead)."""
        if self._reached is None:
            self._reached = self._read_reached()
        if job.name not in self._reached or self._running[job.name].candidates != candidates:
            return None
        return self._reached[job.name]

    def _read_eligible(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        asking = [
            job
            for job in self._shared()
            if job.definition.is_enrolling(self.at) or job.definition.exit_when_ineligible
        ]
        for target in Entity:
            jobs = [job for job in asking if Entity(job.definition.target) == target]
            if not jobs:
                continue
            key = "person_id" if target == Entity.PERSON else "account_id"
            flags = audience_flags(
                [(job.audience, job.exclusions) for job in jobs],
                self.warehouse,
                self.at,
                self.project.catalog,
                target,
                rollup=self.rollup,
            ).to_pyarrow()
            keys = flags.column(key).to_pylist()
            accounts = flags.column("account_id").to_pylist()
            for index, job in enumerate(jobs):
                holds = flags.column(f"_a{index}").to_pylist()
                found[job.name] = {
                    unit: account
                    for unit, account, flag in zip(keys, accounts, holds, strict=True)
                    if flag
                }
        return found

    def _read_reached(self) -> dict[str, dict[str, datetime]]:
        found: dict[str, dict[str, datetime]] = {}
        for target in Entity:
            jobs = [job for job in self._shared() if Entity(job.definition.target) == target]
            rows = []
            for index, job in enumerate(jobs):
                running = self._running[job.name] = self.running(job)
                read = running.candidates
                found[job.name] = {}
                rows += [(index, unit, entered_at) for unit, entered_at in read]
            if not rows:
                continue
            key = "person_id" if target == Entity.PERSON else "account_id"
            table = goal_candidates(target, rows)
            reached = goals_reached_at(
                [job.goal for job in jobs],
                self.warehouse,
                self.at,
                table,
                self.project.catalog,
                target,
                rollup=self.rollup,
                entered_since=min(row[2] for row in rows),
            ).to_pyarrow()
            for index, unit, moment in zip(
                reached.column("_goal").to_pylist(),
                reached.column(key).to_pylist(),
                reached.column("reached_at").to_pylist(),
                strict=True,
            ):
                found[jobs[index].name][unit] = moment
        return found
