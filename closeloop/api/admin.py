"""Routes: health (public), API tokens and the audit log (admin); the audit of API writes.

``GET /api/health`` is the one public route besides the OpenAPI documents: load balancers and
process supervisors probe it without a token, and it reveals only the closeloop version, the
project's name and whether the state store answers.

**Audit of writes** (:class:`AuditWrites`, installed by ``create_app``): every POST, PUT, PATCH or
DELETE that passed authentication writes one entry (actor = the token's name, action =
``api.METHOD /the/route/{template}``, subject = the request path, detail = the status code), whether
it succeeded or failed, and before the client gets the response. Requests refused with 401 or 403
name no verified actor and are not written: a flood of bad tokens must not become a flood of
writes. Bodies, query strings and headers are never recorded (they may hold secrets or personal
data). Segment ingestion (``/v1/track``, ``/identify``, ``/group``, ``/page``, ``/batch``) is not
audited per request: it is high-volume and appends events, it changes no configuration, and each
event's arrival is already recorded with the event itself; bulk file uploads (``/v1/import/…``)
are audited like any other write.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BeforeValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closeloop.api.security import Admin, served
from closeloop.schemas.admin import AuditPage, Health, TokenRequest
from closeloop.schemas.tokens import CreatedToken, TokenInfo
from closeloop.services import tokens as token_service
from closeloop.services.server import Server

router = APIRouter(prefix="/api", tags=["admin"])

# The routes anyone may call without a token (the auth-matrix test checks this list).
PUBLIC_PATHS = frozenset({"/api/health"})


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "the state store does not answer"}},
)
def health(request: Request, response: Response) -> Health:
    """Liveness: the version, the project's name, whether the state store answers. No token."""
    result = served(request).health()
    if not result.store_reachable:
        response.status_code = 503
    return result


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(
    request: Request,
    _principal: Admin,
    include_revoked: Annotated[bool, Query(description="also list revoked tokens")] = False,
) -> list[TokenInfo]:
    """The API tokens (never the tokens themselves or their hashes)."""
    return token_service.list_tokens(served(request).store, include_revoked=include_revoked)


@router.post("/tokens", response_model=CreatedToken, status_code=201)
def create_token(request: Request, principal: Admin, body: TokenRequest) -> CreatedToken:
    """A new token with a role; ``token`` is in this response only and cannot be shown again."""
    return token_service.create_token(
        served(request).store, name=body.name, role=body.role, actor=principal.name
    )


@router.delete("/tokens/{name_or_id}", response_model=list[TokenInfo])
def revoke_token(request: Request, principal: Admin, name_or_id: str) -> list[TokenInfo]:
    """Revoke the active tokens with this name (or id); 404 when there is none."""
    return token_service.revoke_token(served(request).store, name_or_id, actor=principal.name)


def _iso_only(value: object) -> object:
    """An ISO 8601 date-time, not a number (pydantic would read ``0.5`` as a Unix time)."""
    if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
        raise ValueError("not an ISO 8601 date-time such as 2024-05-01T00:00:00Z")
    return value


_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


@router.get("/audit", response_model=AuditPage)
def audit_log(
    request: Request,
    _principal: Admin,
    action: Annotated[
        str | None,
        Query(
            max_length=200,
            description="an action (job.launched) or a prefix ending in * (api.*, token.*)",
        ),
    ] = None,
    actor: Annotated[
        str | None, Query(max_length=200, description="a token name or an author")
    ] = None,
    since: Annotated[
        datetime | None,
        BeforeValidator(_iso_only),
        Query(description="entries at or after this ISO 8601 time (no zone: UTC)"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Who changed what, newest first: engine and CLI changes and every API write."""
    if since is not None and since.tzinfo is not None:
        try:
            since = since.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise HTTPException(422, f"since={since.isoformat()} is out of range") from None
    return served(request).audit_log(
        action=action, actor=actor, since=since, offset=offset, limit=limit
    )


# -- the audit of API writes -------------------------------------------------------------------

log = logging.getLogger("closeloop.api.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_INGESTION_PREFIX, _AUDITED_INGESTION_PREFIX = "/v1/", "/v1/import/"


# Routes that take a POST body but change nothing (a computation or a preview): not audited.
READS_BY_POST = frozenset(
    {
        "/api/power",
        "/api/validate",
        "/api/explain",
        "/api/reports/measure",
        "/api/jobs/{name}/dry-run",
    }
)


def audited(method: str, path: str) -> bool:
    """Whether a request is audited: writes, except per-event Segment ingestion."""
    if method not in WRITE_METHODS:
        return False
    return not path.startswith(_INGESTION_PREFIX) or path.startswith(_AUDITED_INGESTION_PREFIX)


class AuditWrites:
    """ASGI middleware: one audit entry per authenticated write, written before the response
    starts (so a client that reads the audit log after its request finds the entry)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        recorded = False

        async def record_then_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                await self._record(scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, record_then_send)
        except BaseException:
            if not recorded:
                recorded = True
                await self._record(scope, 500)
            raise

    @staticmethod
    async def _record(scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        if principal is None:  # refused before authentication succeeded (401, 403)
            return
        route = scope.get("route")
        template = getattr(route, "path", None) or scope["path"]
        if template in READS_BY_POST:
            return
        server: Server = scope["app"].state.server
        try:
            await anyio.to_thread.run_sync(
                lambda: server.record_request(
                    actor=principal.name,
                    method=scope["method"],
                    route=template,
                    path=scope["path"],
                    status=status,
                )
            )
        except Exception as error:  # the change is made; a lost audit row must not hide it
            log.error(
                "could not write the audit entry for %s %s by %s: %s",
                scope["method"],
                template,
                principal.name,
                type(error).__name__,
            )
