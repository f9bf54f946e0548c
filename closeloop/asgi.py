"""The composition root of ``closeloop serve`` and ``closeloop api``: one served project, the
REST API and the dashboard in one ASGI app.

Paths whose first segment is one of the API's (``/api``, ``/v1``, ``/openapi.json``, ``/docs``,
``/redoc``) go to the API unchanged (its 404, 405 and error shape included); everything else is
the dashboard's. The API's lifespan (ingestion's flusher) runs as before, and the one
:class:`Server` is closed once, at shutdown, when this app opened it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from closeloop.api.app import create_app as create_api
from closeloop.services.server import Server
from closeloop.web.app import create_dashboard


class ServedApp:
    """The API and the dashboard behind one ASGI callable (``state`` is the API's)."""

    def __init__(self, api: FastAPI, dashboard: Starlette, server: Server, *, owns: bool) -> None:
        self.api = api
        self.dashboard = dashboard
        self.server = server
        self.state = api.state
        # The first path segments the API answers ("api", "v1", "openapi.json", "docs", ...).
        self.api_segments = frozenset(
            route.path.split("/")[1]
            for route in iter_route_contexts(api.routes)
            if route.path and route.path.startswith("/")
        )

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            try:
                async with api.router.lifespan_context(api):
                    yield
            finally:
                if owns:
                    server.close()

        self._lifespan = Starlette(lifespan=lifespan)

    def is_api(self, path: str) -> bool:
        return path.split("/")[1] in self.api_segments if path.startswith("/") else False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.is_api(scope.get("path", "")):
            await self.api(scope, receive, send)
        else:
            await self.dashboard(scope, receive, send)


def create_app(
    project_dir: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    server: Server | None = None,
) -> ServedApp:
    """The API and the dashboard of the project in ``project_dir`` (or of ``server``)."""
    served = server or Server.open(project_dir, environ)
    api = create_api(server=served)
    return ServedApp(api, create_dashboard(served), served, owns=server is None)
