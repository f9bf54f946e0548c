"""The engine's status words and the job revision bump: small, and imported by commands that
only read the state store (``jobs list``), so nothing here loads Ibis, Arrow or the channels."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from closeloop.engine import schema


class OutboxStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"  # failed for good: render error, permanent refusal, or out of retries
    GHOST = "ghost"  # holdout: logged as would-have-sent, never sent
    SKIPPED = "skipped"  # treatment, but nobody to send to (or the account opted out)
    CANCELLED = "cancelled"  # a reminder whose enrollment ended before it fell due
    NOT_SENT = "not_sent"  # written by a replay (backfill without --send): never dispatched

    ALL = (PENDING, SENDING, SENT, DEAD, GHOST, SKIPPED, CANCELLED, NOT_SENT)


class ExitReason:
    TIMEOUT = "timeout"
    NO_LONGER_ELIGIBLE = "no_longer_eligible"
    OPTED_OUT = "opted_out"
    REMOVED = "removed"
    JOB_STOPPED = "job_stopped"


class JobStatus:
    DRAFT = "draft"  # defined, never launched: no record in the store
    LIVE = "live"
    PAUSED = "paused"  # enrolls nobody and sends nothing; completions are still detected
    STOPPED = "stopped"  # ended for good: every active enrollment exited


def bump_revision(connection: Connection, job_name: str) -> None:
    """Every transaction that changes a job's enrollments outside a tick calls this, so a tick
    that decided before it records nothing and decides again."""
    j = schema.jobs
    connection.execute(j.update().where(j.c.name == job_name).values(revision=j.c.revision + 1))
