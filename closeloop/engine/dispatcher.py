"""The outbox dispatcher: claim due messages, send them, record the outcome.

A message is claimed (status ``sending``, ``claimed_at`` = the wall-clock time of the claim) in
one transaction, sent, then marked in another. The lease is measured on the wall clock, never on
the ``now`` a caller passes (which may be simulated time in a backfill), so two dispatchers that
overlap never claim the same row while its lease runs. If the process dies between the send and
the mark, the lease runs out and the message is sent again *with the same idempotency key*, so
receivers can drop the repeat: that accept-before-record window is the only way a key arrives
twice.

One message never stops the others: whatever a sender raises is that message's failure. A
:class:`~closeloop.errors.ChannelError` (or anything unexpected) is retried with exponential
backoff and dead-lettered after ``max_attempts``; an
:class:`~closeloop.errors.UndeliverableError` is dead-lettered at once. Messages of an account
that opted out are skipped, whatever the channel; messages of a paused job wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.channels.base import OutboundMessage, Receipt, Sender
from closeloop.engine import schema
from closeloop.engine.state import StateStore, utc_now
from closeloop.engine.steps import COMPLETION_STEP, OutboxStatus
from closeloop.errors import ChannelError, UndeliverableError, redact

LIVE = "live"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=6)

    def delay(self, attempts: int) -> timedelta:
        factor: int = 2 ** max(attempts - 1, 0)
        return min(self.base_delay * factor, self.max_delay)


@dataclass(frozen=True)
class Delivery:
    outbox_id: int
    idempotency_key: str
    job_name: str
    account_id: str
    channel: str
    sent_at: datetime
    arm: str | None = None  # the enrollment's arm (a variant name, or "treatment")
    detail: str | None = None


@dataclass
class DispatchResult:
    sent: list[Delivery] = field(default_factory=list)
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # why each dead letter died (a sample)

    def add(self, other: DispatchResult) -> None:
        self.sent.extend(other.sent)
        self.retried += other.retried
        self.dead += other.dead
        self.skipped += other.skipped
        self.errors.extend(other.errors[: max(0, MAX_ERRORS - len(self.errors))])


MAX_ERRORS = 20


class RateLimiter:
    """At most ``per_second`` sends per channel from this dispatcher (sleeps between sends)."""

    def __init__(
        self,
        per_second: Mapping[str, float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = dict(per_second)
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}

    def wait(self, channel: str) -> None:
        rate = self.per_second.get(channel)
        if not rate:
            return
        now = self._clock()
        ready = self._next.get(channel, now)
        if ready > now:
            self._sleep(ready - now)
            now = ready
        self._next[channel] = now + 1.0 / rate


@dataclass(frozen=True)
class Claim:
    """A message this dispatcher claimed: the outbox row, the message, its arm and step."""

    outbox_id: int
    message: OutboundMessage
    arm: str | None
    step_index: int


class Dispatcher:
    def __init__(
        self,
        store: StateStore,
        channels: Mapping[str, Sender],
        *,
        policy: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=10),
        batch_size: int = 500,
        rate_limits: Mapping[str, float] | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy or RetryPolicy()
        self.lease = lease
        self.batch_size = batch_size
        self.limiter = RateLimiter(rate_limits or {})
        self.wall_clock = wall_clock

    def dispatch(self, now: datetime) -> DispatchResult:
        """Send every message due at ``now`` (until none is left); return what happened.

        ``now`` decides what is due (simulated time in a backfill); leases use the wall clock.
        """
        result = DispatchResult()
        while True:
            claimed = self._claim(now, result)
            if not claimed:
                return result
            for claim in claimed:
                self._send_one(claim, now, result)

    def rehearse(self, now: datetime) -> DispatchResult:
        """Hand every message due at ``now`` to the channels without claiming or recording
        anything (``dispatch --deliver-to``: the channels are file writers). The outbox is left
        exactly as it was, so a real dispatch later sends the same messages."""
        o, e = schema.outbox, schema.enrollments
        query = (
            sa.select(o, e.c.arm, _account_opted_out().label("opted_out"))
            .select_from(o.outerjoin(e, e.c.enrollment_id == o.c.enrollment_id))
            .where(_pending_and_due(now), _job_is_live(), ~_reminder_ended_before_due())
            .order_by(o.c.next_attempt_at, o.c.id)
        )
        result = DispatchResult()
        with self.store.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        for row in rows:
            if row["opted_out"]:
                result.skipped += 1
                continue
            message = OutboundMessage(
                row["idempotency_key"],
                row["channel"],
                row["account_id"],
                row["job_name"],
                json.loads(row["payload"]),
                now,
            )
            channel = self.channels.get(message.channel)
            try:
                if channel is None:
                    raise ChannelError(f"no {message.channel!r} channel is configured")
                receipt = channel.send(message)
            except Exception as error:  # reported, never recorded: the outbox stays as it was
                result.dead += 1
                result.errors.append(f"{message.job_name} / {message.account_id}: {error}")
                continue
            result.sent.append(
                Delivery(
                    row["id"],
                    message.idempotency_key,
                    message.job_name,
                    message.account_id,
                    message.channel,
                    now,
                    row["arm"],
                    receipt.detail,
                )
            )
        return result

    def _claim(self, now: datetime, result: DispatchResult) -> list[Claim]:
        o, e = schema.outbox, schema.enrollments
        claimed_at = self.wall_clock()
        due = sa.or_(
            _pending_and_due(now),
            sa.and_(o.c.status == OutboxStatus.SENDING, o.c.claimed_at <= claimed_at - self.lease),
        )
        with self.store.engine.begin() as connection:
            self._cancel_stale_reminders(connection, now)
            result.skipped += self._skip_opted_out(connection, now)
            rows = (
                connection.execute(
                    sa.select(
                        o.c.id,
                        o.c.idempotency_key,
                        o.c.channel,
                        o.c.account_id,
                        o.c.job_name,
                        o.c.payload,
                        o.c.step_index,
                        e.c.arm,
                    )
                    .select_from(o.outerjoin(e, e.c.enrollment_id == o.c.enrollment_id))
                    .where(due, _job_is_live())
                    .order_by(o.c.next_attempt_at, o.c.id)
                    .limit(self.batch_size)
                    # PostgreSQL: concurrent dispatchers skip each other's rows; SQLite
                    # serialises writers instead (every transaction begins immediate).
                    .with_for_update(of=o, skip_locked=True)
                )
                .mappings()
                .all()
            )
            claimed = []
            for row in rows:
                updated = connection.execute(
                    o.update()
                    .where(o.c.id == row["id"], due)
                    .values(status=OutboxStatus.SENDING, claimed_at=claimed_at)
                ).rowcount
                if not updated:
                    continue
                try:
                    payload = json.loads(row["payload"])
                except ValueError as error:
                    _dead_now(connection, row["id"], f"the stored payload is not JSON: {error}")
                    result.dead += 1
                    continue
                claimed.append(
                    Claim(
                        row["id"],
                        OutboundMessage(
                            idempotency_key=row["idempotency_key"],
                            channel=row["channel"],
                            account_id=row["account_id"],
                            job_name=row["job_name"],
                            payload=payload,
                            sent_at=now,
                        ),
                        row["arm"],
                        row["step_index"],
                    )
                )
        return claimed

    def _skip_opted_out(self, connection: Connection, now: datetime) -> int:
        """Due messages of accounts that opted out are skipped, on every channel."""
        o = schema.outbox
        return int(
            connection.execute(
                o.update()
                .where(_pending_and_due(now), _account_opted_out())
                .values(status=OutboxStatus.SKIPPED, last_error="the account opted out")
            ).rowcount
        )

    def _cancel_stale_reminders(self, connection: Connection, now: datetime) -> None:
        """Never send a sequence message whose enrollment ended before the message fell due.

        The tick cancels these when it detects the end; this guard covers rows it could not see,
        such as a retry of a reminder (its due time stays, its next attempt moves).
        """
        o = schema.outbox
        connection.execute(
            o.update()
            .where(_pending_and_due(now), _reminder_ended_before_due())
            .values(
                status=OutboxStatus.CANCELLED,
                last_error="the enrollment ended before it fell due",
            )
        )

    def _send_one(self, claim: Claim, now: datetime, result: DispatchResult) -> None:
        message_id, message, arm = claim.outbox_id, claim.message, claim.arm
        channel = self.channels.get(message.channel)
        permanent = False
        try:
            if channel is None:
                raise ChannelError(
                    f"no {message.channel!r} channel is configured (see docs/jobs.md, channels)"
                )
            self.limiter.wait(message.channel)
            receipt = channel.send(message)
        except UndeliverableError as error:
            reason, permanent = str(error), True
        except ChannelError as error:
            reason = str(error)
        except Exception as error:  # a sender's bug is this message's failure, not everyone's
            reason = f"unexpected {type(error).__name__} in the {message.channel} channel: {error}"
        else:
            detail = receipt.detail if isinstance(receipt, Receipt) else None
            self._mark_sent(message_id, now, detail)
            result.sent.append(
                Delivery(
                    message_id,
                    message.idempotency_key,
                    message.job_name,
                    message.account_id,
                    message.channel,
                    now,
                    arm,
                    detail,
                )
            )
            return
        reason = (
            f"job {message.job_name!r} step {claim.step_index}, account "
            f"{message.account_id!r}, {message.channel}: {redact(reason)}"
        )
        dead = self._mark_failed(message_id, now, reason, permanent)
        if dead:
            result.dead += 1
            if len(result.errors) < MAX_ERRORS:
                result.errors.append(reason)
        else:
            result.retried += 1

    def _mark_sent(self, message_id: int, now: datetime, detail: str | None) -> None:
        o = schema.outbox
        with self.store.engine.begin() as connection:
            connection.execute(
                o.update()
                .where(o.c.id == message_id)
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=now,
                    attempts=o.c.attempts + 1,
                    claimed_at=None,
                    detail=detail,
                )
            )

    def _mark_failed(self, message_id: int, now: datetime, reason: str, permanent: bool) -> bool:
        o = schema.outbox
        with self.store.engine.begin() as connection:
            attempts = (
                connection.execute(sa.select(o.c.attempts).where(o.c.id == message_id)).scalar_one()
                + 1
            )
            dead = permanent or attempts >= self.policy.max_attempts
            connection.execute(
                o.update()
                .where(o.c.id == message_id)
                .values(
                    status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                    attempts=attempts,
                    next_attempt_at=now + self.policy.delay(attempts),
                    claimed_at=None,
                    last_error=reason,
                )
            )
        return dead

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


# -- the conditions every pass over the outbox shares (claim, sweeps, rehearsal) --------------


def _pending_and_due(now: datetime) -> sa.ColumnElement[bool]:
    o = schema.outbox
    return sa.and_(o.c.status == OutboxStatus.PENDING, o.c.next_attempt_at <= now)


def _job_is_live() -> sa.ColumnElement[bool]:
    """The message's job is live (a paused job's messages wait; a stopped job's are cancelled)."""
    o, j = schema.outbox, schema.jobs
    return sa.select(j.c.name).where(j.c.name == o.c.job_name, j.c.status == LIVE).exists()


def _account_opted_out() -> sa.Exists:
    o, optouts = schema.outbox, schema.optouts
    return sa.select(optouts.c.account_id).where(optouts.c.account_id == o.c.account_id).exists()


def _reminder_ended_before_due() -> sa.Exists:
    """A sequence message whose enrollment ended before it fell due: it must never go out.

    The enrollments are aliased so the subquery stays correlated to the outbox alone, also in
    queries that join the enrollments themselves.
    """
    o, ended = schema.outbox, schema.enrollments.alias("ended")
    return (
        sa.select(ended.c.enrollment_id)
        .where(
            ended.c.enrollment_id == o.c.enrollment_id,
            o.c.step_index < COMPLETION_STEP,
            sa.or_(ended.c.completed_at < o.c.due_at, ended.c.exited_at < o.c.due_at),
        )
        .exists()
    )


def _dead_now(connection: Connection, message_id: int, reason: str) -> None:
    o = schema.outbox
    connection.execute(
        o.update()
        .where(o.c.id == message_id)
        .values(status=OutboxStatus.DEAD, claimed_at=None, last_error=reason)
    )
