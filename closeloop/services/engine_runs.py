"""Engine use cases: ticks, backfills and dispatching the outbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from closeloop.channels.base import Channel
from closeloop.channels.email import EMAIL, SmtpEmailChannel
from closeloop.engine.dispatcher import Dispatcher, DispatchResult
from closeloop.engine.tick import TickResult, run_tick
from closeloop.services.project import Workspace


def tick(workspace: Workspace, at: datetime, job_name: str | None = None) -> list[TickResult]:
    """Run one tick at ``at`` for one job or every job of the project.

    Jobs run in descending ``priority`` (then by name), each in its own transaction, so when the
    contact policy must choose, a higher-priority job enrolls an account first.
    """
    jobs = workspace.project.jobs
    names = (
        [job_name]
        if job_name
        else sorted(jobs, key=lambda name: (-jobs[name].definition.priority, name))
    )
    return [
        run_tick(
            workspace.project,
            workspace.project.job(name),
            workspace.warehouse,
            workspace.store,
            at,
            workspace.settings.author,
        )
        for name in names
    ]


def tick_times(start: datetime, end: datetime, every: timedelta) -> Iterator[datetime]:
    """``start``, ``start + every``, … up to and including ``end``."""
    if every <= timedelta(0):
        raise ValueError("the interval between ticks must be positive")
    moment = start
    while moment <= end:
        yield moment
        moment += every


def email_channels(workspace: Workspace) -> dict[str, Channel]:
    settings = workspace.settings
    return {
        EMAIL: SmtpEmailChannel(
            settings.smtp_host, settings.smtp_port, workspace.project.config.email_from
        )
    }


def dispatch(
    workspace: Workspace, now: datetime, channels: dict[str, Channel] | None = None
) -> DispatchResult:
    """Send everything in the outbox that is due at ``now``."""
    dispatcher = Dispatcher(workspace.store, channels or email_channels(workspace))
    try:
        return dispatcher.dispatch(now)
    finally:
        dispatcher.close()


def backfill(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    every: timedelta = timedelta(days=1),
    *,
    job_name: str | None = None,
    send: bool = True,
    on_tick: Callable[[datetime, list[TickResult], DispatchResult | None], None] | None = None,
) -> list[TickResult]:
    """Replay ticks from ``start`` to ``end`` in simulated time, dispatching after each if asked."""
    results: list[TickResult] = []
    channels = email_channels(workspace) if send else None
    dispatcher = Dispatcher(workspace.store, channels) if channels is not None else None
    try:
        for moment in tick_times(start, end, every):
            ticked = tick(workspace, moment, job_name)
            sent = dispatcher.dispatch(moment) if dispatcher is not None else None
            results.extend(ticked)
            if on_tick is not None:
                on_tick(moment, ticked, sent)
    finally:
        if dispatcher is not None:
            dispatcher.close()
    return results
