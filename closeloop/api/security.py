"""Who may call a route: a token (Bearer, or HTTP Basic user as Segment sends its write key)
whose role grants the role the route declares.

Every route declares its role with :func:`require`; ``tests/e2e/test_api_auth.py`` enumerates all
routes and checks each against no token, a bad token and every role.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from closeloop.schemas.tokens import GRANTS, Role, TokenInfo
from closeloop.services.server import Server


class _DocumentedBasic(HTTPBasic):
    """HTTP Basic for the OpenAPI document only: the header is parsed by
    :func:`presented_token`, so a malformed one gets the same 401 as every other bad token
    (FastAPI's own parser answers it with a different message and challenge)."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        return None


bearer = HTTPBearer(auto_error=False, description="an API token: `closeloop tokens create`")
basic = _DocumentedBasic(
    auto_error=False,
    scheme_name="HTTPBasic",
    description="Segment's convention: the token (write key) as the user name, no password",
)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer, Basic realm="closeloop"'}


def served(request: Request) -> Server:
    """The project this app serves (its settings, state store and per-request workspaces)."""
    server: Server = request.app.state.server
    return server


def presented_token(request: Request) -> str | None:
    """The token in the Authorization header: ``Bearer TOKEN`` or ``Basic base64(TOKEN:)``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = (
                base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or password or None
    return None


class RoleDependency:
    """A FastAPI dependency that authenticates the request and checks ``role``; ``role`` is read
    by the auth-matrix test to know what each route declares."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(
        self,
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        _basic: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    ) -> TokenInfo:
        token = presented_token(request)
        if token is None:
            raise HTTPException(401, "an API token is required", headers=UNAUTHORIZED_HEADERS)
        principal = served(request).authenticate(token)
        if principal is None:
            raise HTTPException(
                401, "the API token is unknown or revoked", headers=UNAUTHORIZED_HEADERS
            )
        if self.role not in GRANTS[principal.role]:
            raise HTTPException(
                403,
                f"this route needs the {self.role.value} role; "
                f"the token has {principal.role.value}",
            )
        request.state.principal = principal
        return principal


def require(role: Role) -> Callable[..., TokenInfo]:
    return RoleDependency(role)


Admin = Annotated[TokenInfo, Depends(require(Role.admin))]
Editor = Annotated[TokenInfo, Depends(require(Role.editor))]
Viewer = Annotated[TokenInfo, Depends(require(Role.viewer))]
Ingest = Annotated[TokenInfo, Depends(require(Role.ingest))]
