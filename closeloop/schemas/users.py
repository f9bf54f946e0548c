"""Dashboard users: who may log in to the pages, with which role (never a password or hash)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Schema
from closeloop.schemas.options import UserRole as UserRole


class UserInfo(Schema):
    """A user as ``closeloop users list`` shows it."""

    name: str
    role: UserRole
    created_at: datetime
    created_by: str
    last_login_at: datetime | None = Field(default=None, description="null until a first login")


class UserList(Schema):
    """``closeloop users list``: every dashboard user, by name."""

    count: int = Field(ge=0)
    users: list[UserInfo]


class RemovedUser(Schema):
    """``closeloop users remove``: the user removed and how many live sessions were revoked."""

    user: UserInfo
    sessions_revoked: int = Field(ge=0)
