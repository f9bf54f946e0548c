"""The REST API: one FastAPI app per served project, one error shape for every failure.

Routers parse, call a service and return its schema model; nothing here computes or formats.
Every failure answers ``{"error": {"code", "message", "location", "hint"}}`` with the code the
CLI uses for the same error (:mod:`closeloop.schemas.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from closeloop import __version__
from closeloop.api import (
    admin,
    board,
    churn,
    health,
    ingest,
    journey,
    outcomes_adoption,
    outcomes_revenue,
    outcomes_team,
    outcomes_voc,
    planning,
    plans,
    reports,
    resources,
)
from closeloop.api.reference import openapi_with_roles
from closeloop.errors import (
    CloseloopError,
    ConcurrencyError,
    ConfigurationError,
    DataImportError,
    DefinitionErrors,
    LocatedError,
    NotFoundError,
    RenderError,
    StateError,
    WarehouseNotEmptyError,
    redact,
)
from closeloop.schemas.errors import ErrorBody, ErrorLocation, ErrorResponse, error_body
from closeloop.services.ingest import Ingestion
from closeloop.services.server import Server

log = logging.getLogger("closeloop.api")

# The HTTP status of each closeloop error class (the first match wins).
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (ConcurrencyError, 409),
    (WarehouseNotEmptyError, 409),
    (StateError, 409),
    (DefinitionErrors, 422),
    (LocatedError, 422),
    (DataImportError, 422),
    (RenderError, 422),
    (ConfigurationError, 422),
    (CloseloopError, 400),
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code}
    for status, code in (
        (400, "bad request"),
        (401, "no or bad token"),
        (403, "role too low"),
        (404, "not found"),
        (409, "conflicts with the current state (e.g. a job that is stopped, a name taken)"),
        (413, "body too large"),
        (422, "invalid request"),
        (429, "rate limited (ingestion); Retry-After says when to try again"),
        (500, "unexpected failure (the server log has the details)"),
    )
}


def status_of(error: BaseException) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_json(
    body: ErrorBody, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        ErrorResponse(error=body).model_dump(mode="json"), status_code=status, headers=headers
    )


async def _closeloop_error(_request: Request, error: Exception) -> JSONResponse:
    return error_json(error_body(error), status_of(error))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
    body = ErrorBody(code=code, message=redact(str(error.detail)))
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette answers with the methods of the first route on the path; several routes
        # share a path here (GET and POST /api/jobs), so list every method the path takes.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_json(body, error.status_code, headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on the request's path."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path is None:
            continue
        pattern, _, _ = compile_path(route.path)
        if pattern.match(request.url.path):
            methods |= set(route.methods or ())
    return sorted(methods)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        ErrorBody(
            code="invalid_request",
            message=f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}",
            location=ErrorLocation(file=".".join(str(part) for part in problem["loc"])),
        )
        for problem in error.errors()
    ]
    first = problems[0] if problems else ErrorBody(code="invalid_request", message="invalid")
    body = ErrorBody(
        code="invalid_request",
        message=first.message,
        location=first.location,
        hint="see problems for every field that failed",
        problems=problems,
    )
    return error_json(body, 422)


async def _unexpected_error(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    body = ErrorBody(
        code="internal_error",
        message=(
            f"closeloop failed unexpectedly ({type(error).__name__}); "
            "the server log has the details"
        ),
    )
    return error_json(body, 500)


def create_app(
    project_dir: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    server: Server | None = None,
) -> FastAPI:
    """The API for the project in ``project_dir`` (or an already opened ``server``)."""
    served = server or Server.open(project_dir, environ)
    ingestion = Ingestion(served)  # the rate limiter and the flusher of buffered Segment messages

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ingestion.start()
        try:
            yield
        finally:
            ingestion.stop()
            if server is None:
                served.close()

    app = FastAPI(
        title="closeloop",
        version=__version__,
        description=(
            "Customer-success interventions with randomized holdouts, measured honestly. "
            "Authenticate with an API token (`closeloop tokens create`) as a Bearer token, or as "
            "the HTTP Basic user name (Segment's convention for write keys)."
        ),
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.server = served
    app.state.ingestion = ingestion
    app.add_exception_handler(CloseloopError, _closeloop_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for module in (
        resources,
        reports,
        planning,
        ingest,
        admin,
        outcomes_adoption,
        outcomes_team,
        outcomes_revenue,
        outcomes_voc,
        journey,
        churn,
        health,
        plans,
        board,
    ):
        app.include_router(module.router)
    app.add_middleware(admin.AuditWrites)  # one audit entry per authenticated write
    app.openapi = openapi_with_roles(app)  # type: ignore[method-assign]
    return app
