"""Scheduled board-report emails: who has been sent which period (the only SQL on
``board_report_sends``).

Crash semantics: a process first *claims* ``(period, recipient)`` (an INSERT that fails on the
primary key when another process holds it), then sends, then records ``sent_at`` and the
Message-ID, or the ``error``. A failed send is claimed again on a later cycle (one UPDATE that
only one process can win). A claim with neither result (a process died between claiming and
recording) is never sent again: the email may have left before the crash, and a board gets a
report at most once per period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from closeloop.engine import schema
from closeloop.engine.state import StateStore

MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class BoardSend:
    period: str
    recipient: str
    claimed_at: datetime
    sent_at: datetime | None
    message_id: str | None
    error: str | None


def claim(store: StateStore, period: str, recipient: str, now: datetime) -> bool:
    """True when this process may send ``period`` to ``recipient``: it inserted the claim, or
    it took over a claim whose send failed. False when it is sent, or someone else holds it."""
    table = schema.board_report_sends
    try:
        with store.engine.begin() as connection:
            connection.execute(
                table.insert().values(period=period, recipient=recipient, claimed_at=now)
            )
        return True
    except sa.exc.IntegrityError:
        pass
    with store.engine.begin() as connection:
        taken = connection.execute(
            table.update()
            .where(
                table.c.period == period,
                table.c.recipient == recipient,
                table.c.sent_at.is_(None),
                table.c.error.is_not(None),
            )
            .values(claimed_at=now, error=None)
        ).rowcount
    return bool(taken)


def record_sent(
    store: StateStore, period: str, recipient: str, at: datetime, message_id: str
) -> None:
    table = schema.board_report_sends
    with store.engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.period == period, table.c.recipient == recipient)
            .values(sent_at=at, message_id=message_id, error=None)
        )


def record_failed(store: StateStore, period: str, recipient: str, error: str) -> None:
    """The send failed: keep the reason; a later cycle claims and tries again."""
    table = schema.board_report_sends
    with store.engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.period == period, table.c.recipient == recipient)
            .values(error=(error or "failed")[:MAX_ERROR_LENGTH])
        )


def sends(store: StateStore, period: str | None = None) -> list[BoardSend]:
    """Every claim (of one period), by period and recipient."""
    table = schema.board_report_sends
    query = sa.select(table).order_by(table.c.period, table.c.recipient)
    if period is not None:
        query = query.where(table.c.period == period)
    with store.engine.connect() as connection:
        return [BoardSend(**row._mapping) for row in connection.execute(query)]
