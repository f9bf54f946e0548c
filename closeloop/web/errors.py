"""Every failure of the dashboard, rendered once: an HTML error page for a browser, the API's
JSON error shape (``{"error": {...}}``) for a JSON or CSV request. Never a traceback."""

from __future__ import annotations

import logging

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
)
from closeloop.schemas.errors import ErrorBody, error_body

log = logging.getLogger("closeloop.web")

# The HTTP status of each closeloop error class, the first match winning (as the API answers).
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
    (ValueError, 422),  # BadParameter and friends
    (CloseloopError, 400),
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
}

TITLES = {
    400: "Bad request",
    401: "Log in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid request",
    500: "Something went wrong",
}


def status_of(error: BaseException) -> int:
    if isinstance(error, CloseloopError):
        for kind, status in _STATUS:
            if isinstance(error, kind):
                return status
    return 500


def body_of(error: BaseException) -> ErrorBody:
    """The public error body; an unexpected error is logged and told without its details."""
    if isinstance(error, CloseloopError):
        return error_body(error)
    log.error("unexpected error in the dashboard", exc_info=error)
    return ErrorBody(
        code="internal_error",
        message=(
            f"closeloop failed unexpectedly ({type(error).__name__}); "
            "the server log has the details"
        ),
    )


def http_body(status: int, message: str) -> ErrorBody:
    return ErrorBody(code=HTTP_CODES.get(status, f"http_{status}"), message=message)
