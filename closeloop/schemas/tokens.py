"""API tokens and the roles they carry."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Schema
from closeloop.schemas.options import Role as Role

# What each role may do: a route declares the least role it needs.
GRANTS: dict[Role, frozenset[Role]] = {
    Role.admin: frozenset({Role.admin, Role.editor, Role.viewer, Role.ingest}),
    Role.editor: frozenset({Role.editor, Role.viewer}),
    Role.viewer: frozenset({Role.viewer}),
    Role.ingest: frozenset({Role.ingest}),
}


class TokenInfo(Schema):
    """A token as lists show it: never the token or its hash."""

    id: int
    name: str
    role: Role
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: datetime
    created_by: str
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedToken(TokenInfo):
    """A token just created: ``token`` is shown this once and cannot be recovered later."""

    token: str
