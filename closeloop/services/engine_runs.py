"""Engine use cases: ticks, backfills, dispatching, the daemon, dry runs and job lifecycle."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from closeloop.channels.base import Sender
from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.channels.enroll import ENROLL, EnrollSender, Referral
from closeloop.channels.file import FILE, FileSender
from closeloop.channels.registry import ACTION_KINDS
from closeloop.channels.set_attribute import SET_ATTRIBUTE, AttributeSender, AttributeWrite
from closeloop.channels.slack import DEFAULT_ROUTE, SLACK, SlackSender, route_key
from closeloop.channels.webhook import WEBHOOK, WebhookSender
from closeloop.data import history, rollups
from closeloop.data.tables import ATTRIBUTE_HISTORY
from closeloop.engine import lifecycle
from closeloop.engine.dispatcher import Dispatcher, DispatchResult
from closeloop.engine.optouts import UnsubscribeLinks
from closeloop.engine.referrals import record_referral
from closeloop.engine.state import LaunchPlan, StateStore, utc_now
from closeloop.engine.tick import (
    JobStatus,
    Preview,
    TickResult,
    preview_tick,
    run_tick,
    tick_reads,
)
from closeloop.errors import CloseloopError, UndeliverableError, redact
from closeloop.schemas.jobs import DryRun, EnteringUnit, PreviewMessage
from closeloop.services.project import Workspace, open_workspace
from closeloop.settings import load_settings

__all__ = [
    "BackfillResult",
    "DispatchResult",
    "JobStatus",
    "Preview",
    "TickResult",
    "backfill",
    "dispatch",
    "dry_run",
    "senders",
    "tick",
    "tick_times",
]


def unsubscribe_links(workspace: Workspace) -> UnsubscribeLinks:
    config = workspace.project.config
    return UnsubscribeLinks(
        workspace.settings.secret,
        config.unsubscribe_url,
        timedelta(days=config.unsubscribe_days),
    )


def _job_names(workspace: Workspace, job_name: str | None) -> list[str]:
    jobs = workspace.project.jobs
    if job_name is not None:
        workspace.project.job(job_name)  # NotFoundError names the known jobs
        return [job_name]
    return sorted(jobs, key=lambda name: (-jobs[name].definition.priority, name))


def tick(
    workspace: Workspace,
    at: datetime,
    job_name: str | None = None,
    *,
    launch: bool = False,
    replay: bool = False,
) -> list[TickResult]:
    """Run one tick at ``at`` for one job or every job of the project.

    Jobs run in descending ``priority`` (then by name), each in its own transaction, so when the
    contact policy must choose, a higher-priority job enrolls an account first. Drafts are
    launched only with ``launch``; ``replay`` records planned sends as ``not_sent``.
    """
    links = unsubscribe_links(workspace)
    names = _job_names(workspace, job_name)
    # A tick writes no attribute history: which attributes have some is asked once, not per frame.
    with history.recorded_names_fixed():
        if launch:
            from closeloop.services.power import estimate_launches  # the statistics: launch only

            # Drafts store a plan when they launch: one estimate each, shared with the checks.
            estimate_launches(workspace, names, at)
        # Per-unit event totals brought up to date once for every job of this tick: each job
        # then reads the events since them, not all history (closeloop.data.rollups).
        rollup = rollups.refresh(workspace.warehouse)
        return _tick_jobs(workspace, names, at, launch, replay, links, rollup)


def _tick_jobs(
    workspace: Workspace,
    names: list[str],
    at: datetime,
    launch: bool,
    replay: bool,
    links: UnsubscribeLinks,
    rollup: rollups.Rollup | None,
) -> list[TickResult]:
    project = workspace.project
    # One signed link per account for the whole tick, whichever jobs message it.
    unsubscribe_url = cache(links.url)
    # Every job's eligible units and goal times are asked in one query per target, on first use.
    reads = tick_reads(
        project,
        [project.job(name) for name in names],
        workspace.warehouse,
        workspace.store,
        at,
        rollup,
    )
    return [
        run_tick(
            project,
            project.job(name),
            workspace.warehouse,
            workspace.store,
            at,
            workspace.settings.author,
            launch=launch,
            replay=replay,
            unsubscribe_url=unsubscribe_url,
            launch_plan=partial(_launch_plan, workspace, name, at),
            rollup=rollup,
            reads=reads,
        )
        for name in names
    ]


def _launch_plan(workspace: Workspace, name: str, at: datetime) -> LaunchPlan | None:
    """The plan a launching job stores (:func:`closeloop.services.power.launch_plan`)."""
    from closeloop.services.power import launch_plan  # the statistics: only when a job launches

    return launch_plan(workspace, name, at)


def tick_times(start: datetime, end: datetime, every: timedelta) -> Iterator[datetime]:
    """``start``, ``start + every``, … up to and including ``end``."""
    if every <= timedelta(0):
        raise ValueError("the interval between ticks must be positive")
    moment = start
    while moment <= end:
        yield moment
        moment += every


def senders(workspace: Workspace, *, deliver_to: Path | None = None) -> dict[str, Sender]:
    """A sender for every action kind, from settings and closeloop.yaml.

    ``deliver_to`` writes every message to files in that folder instead (dry runs): nothing
    leaves the machine and nothing is written back to the warehouse or other jobs.
    """
    if deliver_to is not None:
        override = FileSender(deliver_to, override=True)
        return dict.fromkeys(ACTION_KINDS, override)
    settings, config = workspace.settings, workspace.project.config
    return {
        EMAIL: SmtpSender(
            settings.smtp_host,
            settings.smtp_port,
            config.email_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
        ),
        SLACK: SlackSender(slack_routes(workspace, os.environ)),
        WEBHOOK: WebhookSender(settings.secret, timeout=settings.webhook_timeout),
        SET_ATTRIBUTE: AttributeSender(_attribute_writer(workspace), utc_now),
        ENROLL: EnrollSender(lambda referral: _refer(workspace, referral), utc_now),
        FILE: FileSender(settings.project_dir),
    }


def slack_routes(workspace: Workspace, environ: Mapping[str, str]) -> dict[str, str]:
    """Route key (``default``, ``owner:<name>``) -> incoming-webhook URL, from the environment
    variables closeloop.yaml's ``slack:`` names.

    Variables that are unset are left out rather than refused, so a missing Slack secret fails
    the Slack messages that need it (dead-lettered with the reason), never the emails.
    """
    routing = workspace.project.config.slack
    routes = {}
    if routing.default and environ.get(routing.default):
        routes[DEFAULT_ROUTE] = environ[routing.default]
    for owner, variable in routing.owners.items():
        if environ.get(variable):
            routes[route_key(owner)] = environ[variable]
    return routes


def _attribute_writer(workspace: Workspace) -> Callable[[AttributeWrite], None]:
    warehouse = workspace.warehouse

    def write(change: AttributeWrite) -> None:
        table = warehouse.table(ATTRIBUTE_HISTORY.name)
        if table.filter(table.write_id == change.idempotency_key).count().execute():
            return  # a resend of a write that landed (the accept-before-record window)
        warehouse.append(
            ATTRIBUTE_HISTORY.name,
            warehouse.arrow_for(
                ATTRIBUTE_HISTORY.name,
                {
                    "write_id": [change.idempotency_key],
                    "entity": [change.entity],
                    "entity_id": [change.entity_id],
                    "name": [change.name],
                    "value": [change.value],
                    "valid_from": [change.valid_from],
                    "source": [change.source],
                },
            ),
        )

    return write


def _refer(workspace: Workspace, referral: Referral) -> None:
    if referral.job_name not in workspace.project.jobs:
        raise UndeliverableError(
            f"enroll names job {referral.job_name!r}, which the project no longer has"
        )
    record_referral(workspace.store, referral)


def rehearse_dispatch(workspace: Workspace, now: datetime, folder: Path) -> DispatchResult:
    """Write every message due at ``now`` to JSON files in ``folder``; the outbox is untouched,
    so the next real dispatch sends the same messages."""
    dispatcher = Dispatcher(workspace.store, senders(workspace, deliver_to=folder))
    try:
        return dispatcher.rehearse(now)
    finally:
        dispatcher.close()


def dispatch(
    workspace: Workspace,
    now: datetime,
    channels: Mapping[str, Sender] | None = None,
) -> DispatchResult:
    """Send everything in the outbox that is due at ``now``."""
    dispatcher = Dispatcher(
        workspace.store,
        channels or senders(workspace),
        rate_limits=workspace.project.config.rate_limits,
    )
    try:
        return dispatcher.dispatch(now)
    finally:
        dispatcher.close()


@dataclass
class BackfillResult:
    ticks: list[TickResult] = field(default_factory=list)
    dispatched: DispatchResult = field(default_factory=DispatchResult)
    sent: bool = False

    def outbox(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.ticks:
            for status, count in result.outbox.items():
                counts[status] = counts.get(status, 0) + count
        return counts


def backfill(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    every: timedelta = timedelta(days=1),
    *,
    job_name: str | None = None,
    send: bool = False,
    launch: bool = False,
    channels: Mapping[str, Sender] | None = None,
    on_tick: Callable[[datetime, list[TickResult], DispatchResult | None], None] | None = None,
) -> BackfillResult:
    """Replay ticks from ``start`` to ``end`` in simulated time.

    Without ``send`` nothing is emailed: what the ticks plan is recorded as ``not_sent`` and never
    dispatched later (the report then warns that the treated arm received nothing). With
    ``send`` the outbox is dispatched after each tick, to real recipients.
    """
    result = BackfillResult(sent=send)
    dispatcher = (
        Dispatcher(
            workspace.store,
            channels or senders(workspace),
            rate_limits=workspace.project.config.rate_limits,
        )
        if send
        else None
    )
    try:
        for moment in tick_times(start, end, every):
            ticked = tick(workspace, moment, job_name, launch=launch, replay=not send)
            sent = dispatcher.dispatch(moment) if dispatcher is not None else None
            result.ticks.extend(ticked)
            if sent is not None:
                result.dispatched.add(sent)
            if on_tick is not None:
                on_tick(moment, ticked, sent)
    finally:
        if dispatcher is not None:
            dispatcher.close()
    return result


def dry_run(workspace: Workspace, job_name: str, at: datetime) -> DryRun:
    """Who would enter ``job_name`` at ``at`` and what each would receive; nothing is recorded
    or sent."""
    preview = preview_tick(
        workspace.project,
        workspace.project.job(job_name),
        workspace.warehouse,
        workspace.store,
        at,
        unsubscribe_url=unsubscribe_links(workspace).url,
    )
    return dry_run_result(preview)


def dry_run_result(preview: Preview) -> DryRun:
    by_arm: dict[str, int] = {}
    for unit in preview.entering:
        by_arm[unit.arm] = by_arm.get(unit.arm, 0) + 1
    return DryRun(
        job=preview.job_name,
        at=preview.at,
        status=preview.status,
        entering=[
            EnteringUnit(account_id=u.account_id, person_id=u.person_id, arm=u.arm)
            for u in preview.entering
        ],
        entering_by_arm=by_arm,
        completing=len(preview.completing),
        exiting=preview.exiting,
        messages=[
            PreviewMessage(
                account_id=str(row["account_id"]),
                step=int(str(row["step_index"])),
                channel=str(row["channel"]),
                status=str(row["status"]),
                due_at=row["due_at"] if isinstance(row["due_at"], datetime) else None,
                payload=_masked_payload(str(row["payload"])),
                problem=redact(str(row["last_error"])) if row["last_error"] else None,
            )
            for row in preview.outbox_rows
        ],
    )


def _masked_payload(text: str) -> dict[str, Any]:
    """A rendered message as a dry run shows it: a webhook URL's token and any URL's password
    masked (the outbox keeps the real one for sending)."""
    payload = json.loads(text)
    if not isinstance(payload, dict):
        return {"value": payload}
    url = payload.get("url")
    if isinstance(url, str) and "://" in url:
        payload["url"] = mask_url(url)
    return payload


def mask_url(url: str) -> str:
    """``url`` with its password and its query values masked (they may be tokens)."""
    masked = redact(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if not parts.query:
        return masked
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return urlunsplit(parts._replace(query=urlencode([(k, "***") for k, _ in pairs], safe="*")))


# -- lifecycle ------------------------------------------------------------------------------


def launch_job(workspace: Workspace, job_name: str, at: datetime) -> TickResult | None:
    """Launch a draft at ``at`` (its first tick): lock goal and hypothesis, enroll, plan sends."""
    status = lifecycle.job_status(workspace.store, job_name)
    if status != JobStatus.DRAFT:
        return None
    (result,) = tick(workspace, at, job_name, launch=True)
    return result


def set_job_status(workspace: Workspace, job_name: str, status: str, at: datetime) -> str:
    workspace.project.job(job_name)
    return lifecycle.set_status(workspace.store, job_name, status, workspace.settings.author, at)


# -- the daemon -----------------------------------------------------------------------------


@dataclass
class Cycle:
    """One round of ``closeloop run``: a tick of every job, then a dispatch."""

    at: datetime
    ticks: list[TickResult] = field(default_factory=list)
    dispatched: DispatchResult = field(default_factory=DispatchResult)
    error: str | None = None


def run_cycle(
    project_dir: Path | None, at: datetime, environ: Mapping[str, str] | None = None
) -> Cycle:
    """Open the project afresh (definitions may have changed), tick, dispatch, close.

    The warehouse is open only during the cycle, so other commands can use a DuckDB file
    between cycles. A closeloop error becomes the cycle's ``error``; the daemon goes on.
    """
    # The daily chores import the statistics (SciPy) a tick alone does not need.
    from closeloop.services import board_schedule
    from closeloop.services import health as health_scores
    from closeloop.services import plans as success_plans

    try:
        with open_workspace(project_dir, environ=environ) as workspace:
            ticks = tick(workspace, at)
            dispatched = dispatch(workspace, at)
            # Success-plan values, once a UTC day; a failure is logged and never stops ticks.
            success_plans.daily_check(workspace, at)
            # Today's health-score snapshot when it is missing; failures are logged, not raised.
            health_scores.daily_snapshot(workspace, at)
            # The board report of a period that has closed, once per recipient; never raises.
            board_schedule.send_scheduled(workspace, at)
        return Cycle(at, ticks, dispatched)
    except CloseloopError as error:
        return Cycle(at, error=redact(str(error)))


def run_daemon(
    project_dir: Path | None,
    every: timedelta,
    stop: threading.Event,
    on_cycle: Callable[[Cycle], None],
    *,
    max_cycles: int | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> int:
    """Tick and dispatch every ``every`` until ``stop`` is set (SIGTERM); return the cycles run.

    One instance per project: a second ``closeloop run`` on the same state store is refused while
    the first holds the runner lock (a PostgreSQL advisory lock, or a lock file next to the
    SQLite file; both are released when the process ends, even by SIGKILL).
    """
    settings = load_settings(project_dir, environ)
    store = StateStore.connect(settings.state_url)
    cycles = 0
    try:
        with store.runner_lock():
            while not stop.is_set():
                on_cycle(run_cycle(settings.project_dir, clock(), environ))
                cycles += 1
                if max_cycles is not None and cycles >= max_cycles:
                    break
                stop.wait(every.total_seconds())
    finally:
        store.close()
    return cycles
