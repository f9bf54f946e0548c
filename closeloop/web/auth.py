"""Who is asking: a logged-in user (the ``closeloop_session`` cookie) or an API token (Bearer).

A session's unsafe requests (POST, PUT, PATCH, DELETE) must echo its CSRF token, as the form
field ``csrf_token`` or the ``X-CSRF-Token`` header (base.html.j2 sets the header for htmx);
a Bearer request carries no ambient credential and is exempt.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from closeloop.schemas.tokens import Role
from closeloop.services import users as user_service
from closeloop.services.server import Server
from closeloop.web.pages import Principal

COOKIE = "closeloop_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def authenticate(request: Request, server: Server) -> Principal | None:
    """The request's principal: a Bearer token if one is presented (a bad one is not silently
    replaced by the cookie), else the session cookie; None when neither is valid."""
    token = bearer_token(request)
    if token is not None:
        info = await run_in_threadpool(server.authenticate, token)
        if info is None:
            return None
        return Principal(name=info.name, role=info.role, via="token")
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    user = await run_in_threadpool(user_service.session_user, server.store, cookie)
    if user is None:
        return None
    return Principal(
        name=user.name, role=Role(user.role.value), via="session", csrf_token=user.csrf_token
    )


def csrf_ok(request: Request, principal: Principal, form: FormData | None) -> bool:
    """Whether an unsafe request may go on: a token's always, a session's with its CSRF token."""
    if request.method in SAFE_METHODS or principal.via == "token":
        return True
    expected = principal.csrf_token or ""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and form is not None:
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    return (
        bool(expected)
        and presented is not None
        and hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
    )


def same_origin(request: Request) -> bool:
    """Whether a POST came from this site: its ``Origin`` (sent by browsers with every cross-site
    POST) names this host, or it has none (a script, curl, or an older browser's same-site form)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    # Behind a reverse proxy the browser's host may arrive as X-Forwarded-Host.
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return any(origin in (f"http://{host}", f"https://{host}") for host in hosts if host)


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in (anything else, e.g. ``//evil.example``: ``/``)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(character) < 32 for character in target)
    ):
        return "/"
    return target


def set_session_cookie(
    response: Response, request: Request, cookie: str, expires_at: datetime
) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        expires=expires_at.replace(tzinfo=UTC),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


class LoginThrottle:
    """Failed logins per name, in this process: after :attr:`limit` failures within
    :attr:`window` seconds the name is refused (429) until the oldest failure leaves the window,
    whatever the password, so a password cannot be guessed at request speed."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(name.casefold(), deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def wait_seconds(self, name: str, now: float | None = None) -> int:
        """0 when ``name`` may try; else how many seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._recent(name, now)
            if len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - now + 0.999))

    def failed(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(name, now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.casefold(), None)
