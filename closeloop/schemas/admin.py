"""Administration: the server's health, token requests and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from closeloop.schemas.base import Page, Schema
from closeloop.schemas.tokens import Role


class Health(Schema):
    """Liveness of a served project. Public: it names nothing beyond the version and project."""

    status: str = Field(description="ok, or unavailable when the state store cannot be reached")
    version: str = Field(description="the closeloop version serving")
    project: str = Field(description="the project's name (closeloop.yaml)")
    store_reachable: bool = Field(description="whether the state store answered a query")


class TokenRequest(Schema):
    """A token to create: who or what will use it, and its role."""

    name: str = Field(
        min_length=1,
        max_length=200,
        # Some text besides spaces, and no control characters (PostgreSQL refuses NUL in text).
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        description="who or what uses the token",
    )
    role: Role


class AuditEntry(Schema):
    """One change recorded in the audit log: who did what to which subject, and when."""

    id: int
    at: datetime = Field(description="when (UTC)")
    actor: str = Field(description="the token name (API), or the settings' author (CLI, engine)")
    action: str = Field(
        description="what was done: job.launched, token.create, … or, for API writes, "
        "api.METHOD /route/{template}"
    )
    subject: str = Field(description="what it was done to: a job, a token, a request path")
    detail: Any = Field(
        default=None, description="details (never a secret, a token or a request body)"
    )


class AuditPage(Page[AuditEntry]):
    """One page of the audit log, newest first."""
