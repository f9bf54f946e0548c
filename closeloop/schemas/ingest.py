"""Ingestion: Segment's message format (what senders post) and what each ingestion step returns.

The message models follow Segment's HTTP Tracking API spec (camelCase on the wire, unknown
fields such as ``integrations`` or ``context.library`` accepted and kept in the buffered message);
docs/ingestion.md maps each field to the canonical tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from closeloop.schemas.base import Schema


def _id_text(value: Any) -> Any:
    """Segment SDKs send ids as strings; some send numbers, which mean the same id as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


Id = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=200)]

MessageType = Literal["track", "page", "screen", "identify", "group"]


class SegmentContext(BaseModel):
    """``context``: only ``groupId`` is read (the account of a track, page or identify)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    group_id: Id | None = Field(default=None, alias="groupId")


class SegmentMessage(BaseModel):
    """One Segment message (the body of ``/v1/track`` etc., or an item of ``/v1/batch``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: MessageType | None = Field(
        default=None, description="set by the route; required for items of a batch"
    )
    message_id: Id | None = Field(
        default=None,
        alias="messageId",
        description="the de-duplication key: a track's or page's event_id",
    )
    user_id: Id | None = Field(default=None, alias="userId")
    anonymous_id: Id | None = Field(default=None, alias="anonymousId")
    event: str | None = Field(default=None, max_length=200, description="track: the event name")
    name: str | None = Field(default=None, description="page/screen: the page's name")
    category: str | None = Field(default=None, description="page: the page's category")
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    group_id: Id | None = Field(default=None, alias="groupId", description="group: the account")
    context: SegmentContext | None = None
    timestamp: datetime | None = Field(
        default=None, description="when it happened (default: when it was received)"
    )
    sent_at: datetime | None = Field(
        default=None, alias="sentAt", description="when the client sent it (corrects skew)"
    )
    received_at: datetime | None = Field(default=None, alias="receivedAt")
    original_timestamp: datetime | None = Field(default=None, alias="originalTimestamp")


class SegmentBatch(BaseModel):
    """The body of ``/v1/batch``: messages of any type, each with its ``type``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    batch: list[dict[str, Any]] = Field(description="the messages (Segment's message objects)")
    context: dict[str, Any] | None = Field(default=None, description="merged into each message")
    sent_at: datetime | None = Field(default=None, alias="sentAt")


class IngestAck(Schema):
    """Segment's answer (``success``) plus how many messages were buffered."""

    success: bool = True
    received: int = Field(ge=0, description="messages buffered, to be written by the flusher")


class FlushResult(Schema):
    """What a flush wrote: every message flushed counts in exactly one of ``events_stored``,
    ``duplicates``, ``quarantined`` and ``profiles_applied``."""

    messages: int = Field(ge=0, description="buffered messages written (or set aside)")
    events_stored: int = Field(ge=0, description="track/page/screen messages stored as events")
    duplicates: int = Field(
        ge=0, description="messages whose messageId was stored (or quarantined) already"
    )
    quarantined: int = Field(ge=0, description="messages set aside in the quarantine table")
    profiles_applied: int = Field(ge=0, description="identify and group messages applied")
    accounts_inserted: int = Field(ge=0)
    accounts_updated: int = Field(ge=0)
    people_inserted: int = Field(ge=0)
    people_updated: int = Field(ge=0)
    remaining: int = Field(ge=0, description="messages still buffered after the flush")


class ImportReport(Schema):
    """What became of each row of an uploaded file (as ``closeloop import`` reports it)."""

    table: str
    file: str = Field(description="the uploaded file's name")
    rows_read: int = Field(ge=0)
    imported: int = Field(ge=0, description="rows with ids not stored before")
    updated: int = Field(ge=0, description="stored accounts/people whose values changed")
    unchanged: int = Field(ge=0, description="rows stored already as they are, or repeated")
    quarantined: int = Field(ge=0)
    future_dated: int = Field(ge=0, description="rows dated more than a day after the import")
    warnings: list[str] = Field(default_factory=list)
