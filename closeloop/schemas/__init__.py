"""The public contract: a typed pydantic model for every result and error closeloop returns.

The CLI's ``--format json``, the REST API and the dashboard's JSON twins all dump these models;
``docs/*.schema.json`` and the OpenAPI components are generated from them. Models here hold data
only: formatting lives in :mod:`closeloop.present`, computation in ``analysis`` and ``stats``.
"""

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
