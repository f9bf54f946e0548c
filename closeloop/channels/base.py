"""The one small protocol every channel implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """One concrete send, as stored in the outbox. ``idempotency_key`` travels with the message."""

    idempotency_key: str
    channel: str
    account_id: str
    job_name: str
    payload: dict[str, Any]


class Channel(Protocol):
    """Sends messages; raises :class:`closeloop.errors.ChannelError` when a send fails."""

    name: str

    def send(self, message: OutboundMessage) -> None: ...

    def close(self) -> None: ...
