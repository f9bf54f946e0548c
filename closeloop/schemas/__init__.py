"""The public contract: a typed pydantic model for every result and error closeloop returns.

The CLI's ``--format json``, the REST API and the dashboard's JSON twins all dump these models;
``docs/*.schema.json`` and the OpenAPI components are generated from them. Models here hold data
only: formatting lives in :mod:`closeloop.present`, computation in ``analysis`` and ``stats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeloop.lazy_exports import load_export

if TYPE_CHECKING:
    from closeloop.schemas.base import Number, Page, Schema, dump_json
    from closeloop.schemas.errors import ErrorBody, ErrorLocation, ErrorResponse, error_response

__all__ = [
    "ErrorBody",
    "ErrorLocation",
    "ErrorResponse",
    "Number",
    "Page",
    "Schema",
    "dump_json",
    "error_response",
]

# Loaded on first use, so that a module of this package without models (schemas.options, which
# the CLI's options are built from) does not load pydantic.
_EXPORTS = {
    "Number": "base",
    "Page": "base",
    "Schema": "base",
    "dump_json": "base",
    "ErrorBody": "errors",
    "ErrorLocation": "errors",
    "ErrorResponse": "errors",
    "error_response": "errors",
}


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, globals(), name)
