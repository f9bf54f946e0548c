"""Routes: Segment-compatible ingestion (``/v1/track``, ``identify``, ``group``, ``page``,
``screen``, ``batch``) and bulk file upload (``/v1/import/{table}``), for the ``ingest`` role.

Senders authenticate as Segment's libraries do (the write key as the HTTP Basic user) or with a
Bearer token. A request is answered ``{"success": true, "received": n}`` once its messages are
buffered; refusals use the one error shape (docs/ingestion.md).
"""

from __future__ import annotations

import zlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from closeloop.api.security import Ingest
from closeloop.schemas.errors import ErrorResponse
from closeloop.schemas.ingest import (
    ImportReport,
    IngestAck,
    MessageType,
    SegmentBatch,
    SegmentMessage,
)
from closeloop.schemas.tokens import TokenInfo
from closeloop.services.ingest import (
    BATCH_LIMIT,
    IngestError,
    Ingestion,
    check_length,
    check_streamed,
)

router = APIRouter(tags=["ingestion"])

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed message or over Segment's limits"},
    429: {"model": ErrorResponse, "description": "rate limit of the token (see Retry-After)"},
}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema with its ``$defs`` written in place (OpenAPI has no ``$defs``)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return dict(resolve(schema))


def _body_schema(model: type[SegmentMessage] | type[SegmentBatch]) -> dict[str, Any]:
    schema = _inlined(model.model_json_schema(by_alias=True))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _body(request: Request) -> bytes:
    """The raw body, refused as soon as it passes Segment's batch limit (announced or read)."""
    check_length(request.headers.get("content-length"))
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        check_streamed(size)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not gzipped:
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        inflated = inflater.decompress(body, BATCH_LIMIT + 1)
    except zlib.error as error:
        raise IngestError(f"the body is not valid gzip: {error}", code="invalid_json") from None
    check_length(str(len(inflated)))
    return inflated


async def _ingest(request: Request, principal: TokenInfo, kind: MessageType | None) -> Any:
    ingestion: Ingestion = request.app.state.ingestion
    try:
        ingestion.admit(principal)
        body = await _body(request)
        return await run_in_threadpool(ingestion.accept, body, kind, principal)
    except IngestError as error:
        return JSONResponse(
            ErrorResponse(error=error.body()).model_dump(mode="json"),
            status_code=error.status,
            headers=error.headers,
        )


def _route(kind: MessageType, summary: str) -> None:
    async def endpoint(request: Request, principal: Ingest) -> Any:
        return await _ingest(request, principal, kind)

    endpoint.__name__ = f"ingest_{kind}"
    router.add_api_route(
        f"/v1/{kind}",
        endpoint,
        methods=["POST"],
        response_model=IngestAck,
        summary=summary,
        responses=_REFUSALS,
        openapi_extra=_body_schema(SegmentMessage),
    )


_route("track", "Record an event (Segment track): one row of events")
_route("identify", "Set a user's traits (Segment identify): a row of people")
_route("group", "Map a user to an account and set its traits (Segment group)")
_route("page", "Record a page view (Segment page): an event named page_viewed")
_route("screen", "Record a screen view (Segment screen): an event named screen_viewed")


@router.post(
    "/v1/batch",
    response_model=IngestAck,
    summary="Send up to 500 KB of messages of any type (Segment batch)",
    responses=_REFUSALS,
    openapi_extra=_body_schema(SegmentBatch),
)
async def ingest_batch(request: Request, principal: Ingest) -> Any:
    return await _ingest(request, principal, None)


@router.post(
    "/v1/import/{table}",
    response_model=ImportReport,
    summary="Import a CSV, JSON Lines or Parquet file into a canonical table",
)
def import_upload(
    request: Request,
    table: str,
    principal: Ingest,
    file: Annotated[UploadFile, File(description="the file, as `closeloop import` reads it")],
    format: Annotated[
        Literal["csv", "jsonl", "parquet"] | None,
        Form(description="csv, jsonl or parquet (default: from the file name, else the content)"),
    ] = None,
    encoding: Annotated[
        str | None, Form(description="text encoding of a CSV or JSON Lines file (default UTF-8)")
    ] = None,
) -> ImportReport:
    ingestion: Ingestion = request.app.state.ingestion
    return ingestion.import_upload(
        table, file.filename or "", file.file, format=format, encoding=encoding
    )
