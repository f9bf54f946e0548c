"""The outbox dispatcher: claim due messages, send them, record the outcome.

A message is claimed (status ``sending``, with a lease) in one transaction, sent, then marked
``sent`` in another. If the process dies between the send and the mark, the lease runs out and the
message is sent again *with the same idempotency key*, so receivers can drop the repeat. Failures
are retried with exponential backoff and dead-lettered after ``max_attempts``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from closeloop.channels.base import Channel, OutboundMessage
from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.engine.steps import COMPLETION_STEP, OutboxStatus
from closeloop.errors import ChannelError


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


@dataclass
class DispatchResult:
    sent: list[Delivery] = field(default_factory=list)
    retried: int = 0
    dead: int = 0


class Dispatcher:
    def __init__(
        self,
        store: StateStore,
        channels: Mapping[str, Channel],
        *,
        policy: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=10),
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy or RetryPolicy()
        self.lease = lease
        self.batch_size = batch_size

    def dispatch(self, now: datetime) -> DispatchResult:
        """Send every message due at ``now`` (until none is left); return what happened."""
        result = DispatchResult()
        while True:
            claimed = self._claim(now)
            if not claimed:
                return result
            for message_id, message, arm in claimed:
                self._send_one(message_id, message, arm, now, result)

    def _claim(self, now: datetime) -> list[tuple[int, OutboundMessage, str | None]]:
        o, e = schema.outbox, schema.enrollments
        due = sa.or_(
            sa.and_(o.c.status == OutboxStatus.PENDING, o.c.next_attempt_at <= now),
            sa.and_(o.c.status == OutboxStatus.SENDING, o.c.claimed_at <= now - self.lease),
        )
        with self.store.engine.begin() as connection:
            self._cancel_stale_reminders(connection, now)
            rows = (
                connection.execute(
                    sa.select(
                        o.c.id,
                        o.c.idempotency_key,
                        o.c.channel,
                        o.c.account_id,
                        o.c.job_name,
                        o.c.payload,
                        e.c.arm,
                    )
                    .select_from(o.outerjoin(e, e.c.enrollment_id == o.c.enrollment_id))
                    .where(due)
                    .order_by(o.c.next_attempt_at, o.c.id)
                    .limit(self.batch_size)
                    # PostgreSQL: concurrent dispatchers skip each other's rows; SQLite ignores this
                    # and serialises writers instead.
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
                    .values(status=OutboxStatus.SENDING, claimed_at=now)
                ).rowcount
                if updated:
                    claimed.append(
                        (
                            row["id"],
                            OutboundMessage(
                                idempotency_key=row["idempotency_key"],
                                channel=row["channel"],
                                account_id=row["account_id"],
                                job_name=row["job_name"],
                                payload=json.loads(row["payload"]),
                            ),
                            row["arm"],
                        )
                    )
        return claimed

    def _cancel_stale_reminders(self, connection: Connection, now: datetime) -> None:
        """Never send a sequence message whose enrollment ended before the message fell due.

        The tick cancels these when it detects the end; this guard covers rows it could not see,
        such as a retry of a reminder (its due time stays, its next attempt moves).
        """
        o, e = schema.outbox, schema.enrollments
        ended_before_due = (
            sa.select(e.c.enrollment_id)
            .where(
                e.c.enrollment_id == o.c.enrollment_id,
                sa.or_(e.c.completed_at < o.c.due_at, e.c.exited_at < o.c.due_at),
            )
            .exists()
        )
        connection.execute(
            o.update()
            .where(
                o.c.status == OutboxStatus.PENDING,
                o.c.next_attempt_at <= now,
                o.c.step_index < COMPLETION_STEP,
                ended_before_due,
            )
            .values(
                status=OutboxStatus.CANCELLED,
                last_error="the enrollment ended before it fell due",
            )
        )

    def _send_one(
        self,
        message_id: int,
        message: OutboundMessage,
        arm: str | None,
        now: datetime,
        result: DispatchResult,
    ) -> None:
        o = schema.outbox
        channel = self.channels.get(message.channel)
        try:
            if channel is None:
                raise ChannelError(f"no channel {message.channel!r} is configured")
            channel.send(message)
        except ChannelError as error:
            with self.store.engine.begin() as connection:
                attempts = (
                    connection.execute(
                        sa.select(o.c.attempts).where(o.c.id == message_id)
                    ).scalar_one()
                    + 1
                )
                dead = attempts >= self.policy.max_attempts
                connection.execute(
                    o.update()
                    .where(o.c.id == message_id)
                    .values(
                        status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                        attempts=attempts,
                        next_attempt_at=now + self.policy.delay(attempts),
                        claimed_at=None,
                        last_error=str(error),
                    )
                )
            if dead:
                result.dead += 1
            else:
                result.retried += 1
            return
        with self.store.engine.begin() as connection:
            connection.execute(
                o.update()
                .where(o.c.id == message_id)
                .values(status=OutboxStatus.SENT, sent_at=now, attempts=o.c.attempts + 1)
            )
        result.sent.append(
            Delivery(
                message_id,
                message.idempotency_key,
                message.job_name,
                message.account_id,
                message.channel,
                now,
                arm,
            )
        )

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
