"""Accounts, people and an account's timeline, as the REST API returns them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from closeloop.schemas.base import Number, Schema


class Account(Schema):
    """An account with its attributes as of a time (attribute history applied)."""

    account_id: str
    name: str | None = None
    domain: str | None = None
    created_at: datetime | None = None
    segment: str | None = None
    plan: str | None = None
    industry: str | None = None
    employees: int | None = None
    region: str | None = None
    owner: str | None = None
    arr: Number = None
    renewal_date: date | None = None
    properties: dict[str, Any] | None = Field(
        default=None, description="the extra columns an import kept, as a JSON object"
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="columns of a table read in place (sources:) beyond the canonical ones",
    )


class Person(Schema):
    """A person (a contact of an account) with their attributes as of a time."""

    person_id: str
    account_id: str
    email: str | None = None
    name: str | None = None
    role: str | None = None
    created_at: datetime | None = None
    properties: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class TimelineKind(StrEnum):
    """What a timeline item records."""

    event = "event"  # a product event of the account (events table)
    entered = "entered"  # the account (or one of its people) entered a job, in an arm
    completed = "completed"  # an enrollment reached the job's goal
    exited = "exited"  # an enrollment ended without the goal (timeout, removed, opted out, ...)
    message = "message"  # a message planned or delivered (outbox)
    attribute = "attribute"  # an attribute changed (attribute history: imports, write-backs)


class TimelineItem(Schema):
    """One thing that happened to an account, newest first in a timeline."""

    at: datetime
    kind: TimelineKind
    name: str = Field(
        description="the event's name, the job's name, or the attribute's name; a message's job"
    )
    person_id: str | None = None
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="what else is known: an event's value and properties, an enrollment's arm "
        "and status, a message's channel, step and status, an attribute's new value and source",
    )
