"""Segment-compatible ingestion: check and buffer messages, rate-limit, flush to the warehouse.

A request is checked whole before anything is kept (Segment's size limits on the raw body, then
every message's fields; each problem located, e.g. ``batch[3].event``) and its messages are
appended to the state store's buffer in one transaction; the sender is answered once they are
there. A flusher (a thread of the server, or ``closeloop ingest flush``) claims buffered messages,
opens the warehouse, writes them (:mod:`closeloop.data.ingest_writer`), closes it and deletes
them, so the server never holds the warehouse between flushes and ``closeloop report``,
``explain`` and ``import`` keep working while it runs. docs/ingestion.md has the whole contract.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from closeloop.data.ingest_writer import Message, Written, write_messages
from closeloop.data.warehouse import Warehouse
from closeloop.engine import ingest_buffer
from closeloop.engine.ingest_buffer import BufferedMessage, NewMessage
from closeloop.engine.state import StateStore, utc_now
from closeloop.errors import CloseloopError, NotFoundError
from closeloop.schemas.errors import ErrorBody, ErrorLocation
from closeloop.schemas.ingest import (
    FlushResult,
    ImportReport,
    IngestAck,
    MessageType,
    SegmentBatch,
    SegmentMessage,
)
from closeloop.schemas.tokens import TokenInfo
from closeloop.services.data import IMPORT_TABLES, import_table
from closeloop.services.project import configured_sources
from closeloop.services.server import Server
from closeloop.settings import Settings, load_settings

log = logging.getLogger("closeloop.ingest")

MESSAGE_LIMIT = 32 * 1024
"""Segment's limit on one message, in bytes of JSON."""
BATCH_LIMIT = 500 * 1024
"""Segment's limit on one batch (and on any request body), in bytes."""
FLUSH_BATCH = 20_000
"""Messages written to the warehouse per claim."""
CLAIM_LEASE = timedelta(minutes=5)
"""How long a flusher holds claimed messages; a flusher that dies frees them after this."""
MAX_PROBLEMS = 50
"""Problems listed in one error (the rest are counted)."""

EVENT_NAMES = {"page": "page_viewed", "screen": "screen_viewed"}
"""The event name a page or screen message is stored under."""


class IngestError(CloseloopError, ValueError):
    """A request refused whole: nothing of it was kept. ``status`` is the HTTP status."""

    code = "invalid_message"

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        location: str | None = None,
        hint: str = "",
        problems: tuple[ErrorBody, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.location, self.hint = message, status, location, hint
        self.error_code = code or self.code
        self.problems, self.headers = problems, headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(
            code=self.error_code,
            message=self.message,
            location=ErrorLocation(file=self.location) if self.location else None,
            hint=self.hint,
            problems=list(self.problems),
        )


# -- checking a request ---------------------------------------------------------------------------


def check_length(content_length: str | None) -> None:
    """Refuse a body announced larger than Segment's batch limit before reading it."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise IngestError(f"Content-Length {content_length!r} is not a number") from None
    _check_size(size, BATCH_LIMIT, "request body")


def check_streamed(size: int) -> None:
    """Refuse a body sent without Content-Length as soon as ``size`` bytes of it pass the limit."""
    if size > BATCH_LIMIT:
        raise IngestError(
            f"the request body passed Segment's limit of {BATCH_LIMIT // 1024} KB "
            f"({BATCH_LIMIT:,} bytes): {size:,} bytes were read before it was refused",
            code="too_large",
            hint="send at most 32 KB per message and 500 KB per batch; split larger batches",
        )


def _check_size(size: int, limit: int, what: str, location: str | None = None) -> None:
    if size > limit:
        raise IngestError(
            f"the {what} is {size:,} bytes, over Segment's limit of {limit // 1024} KB "
            f"({limit:,} bytes)",
            code="too_large",
            location=location,
            hint="send at most 32 KB per message and 500 KB per batch; split larger batches",
        )


def parse_request(body: bytes, kind: MessageType | None, received_at: datetime) -> list[NewMessage]:
    """The messages of one request (``kind`` None: a ``/v1/batch``), checked whole.

    Raises :class:`IngestError` naming each problem's location; nothing is kept then.
    """
    _check_size(len(body), MESSAGE_LIMIT if kind is not None else BATCH_LIMIT, _what(kind))
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise IngestError("the body is not UTF-8 text", code="invalid_json") from None
    except json.JSONDecodeError as error:
        raise IngestError(
            f"the body is not JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            code="invalid_json",
        ) from None
    if not isinstance(document, dict):
        raise IngestError(f"the body must be a JSON object, not {_json_type(document)}")
    if kind is not None:
        items: list[tuple[str, dict[str, Any], str | None]] = [
            ("", {**document, "type": kind}, None)
        ]
    else:
        items = _batch_items(document)
    problems: list[ErrorBody] = []
    messages: list[NewMessage] = []
    for prefix, item, text in items:
        found = _message(prefix, item, text, received_at, problems)
        if found is not None:
            messages.append(found)
    if problems:
        count = len(problems)
        raise IngestError(
            problems[0].message
            + (f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""),
            location=problems[0].location.file if problems[0].location else None,
            hint="nothing of this request was kept; fix the messages and send it again",
            problems=tuple(problems[:MAX_PROBLEMS]),
        )
    return messages


def _what(kind: MessageType | None) -> str:
    return f"{kind} message" if kind is not None else "batch"


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return next((n for t, n in names.items() if isinstance(value, t)), "a number")


def _batch_items(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], str | None]]:
    """Each message of a batch with its location and, when it is kept as sent, its JSON text."""
    try:
        batch = SegmentBatch.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = _location("", first["loc"])
        raise IngestError(f"{where}: {first['msg']}", location=where) from None
    items: list[tuple[str, dict[str, Any], str | None]] = []
    for index, item in enumerate(batch.batch):
        where = f"batch[{index}]"
        sent = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        _check_size(len(sent.encode()), MESSAGE_LIMIT, f"message {where}", where)
        text: str | None = sent
        merged = dict(item)
        # Batch-level context and sentAt apply to every message (a message's own win).
        if batch.context and isinstance(item.get("context", {}), dict):
            merged["context"] = {**batch.context, **item.get("context", {})}
            text = None
        if batch.sent_at is not None and "sentAt" not in item:
            merged["sentAt"] = batch.sent_at.isoformat()
            text = None
        items.append((where, merged, text))
    return items


def _location(prefix: str, parts: tuple[int | str, ...]) -> str:
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _problem(location: str, message: str) -> ErrorBody:
    return ErrorBody(
        code="invalid_message",
        message=f"{location}: {message}",
        location=ErrorLocation(file=location),
    )


def _message(
    prefix: str,
    item: dict[str, Any],
    text: str | None,
    received_at: datetime,
    problems: list[ErrorBody],
) -> NewMessage | None:
    """The message to buffer, or None with its problems added to ``problems``; ``text`` is the
    item's JSON as sent, kept as the body when nothing needs adding to it."""
    before = len(problems)
    try:
        message = SegmentMessage.model_validate(item)
    except ValidationError as error:
        problems += [
            _problem(_location(prefix, problem["loc"]), problem["msg"])
            for problem in error.errors()
        ]
        return None

    def missing(field: str, why: str) -> None:
        problems.append(_problem(_location(prefix, (field,)), why))

    if message.type is None:
        missing(
            "type", "each message of a batch needs a type: track, page, screen, identify or group"
        )
        return None
    if message.user_id is None and message.anonymous_id is None:
        missing("userId", f"a {message.type} message needs a userId or an anonymousId")
    if message.type == "track" and not (message.event or "").strip():
        missing("event", "a track message needs an event (its name)")
    if message.type == "group" and message.group_id is None:
        missing("groupId", "a group message needs a groupId (the account)")
    if len(problems) > before:
        return None
    message_id = message.message_id or f"closeloop-{uuid.uuid4()}"
    if text is None or item.get("messageId") != message_id or item.get("type") != message.type:
        item = {**item, "type": message.type, "messageId": message_id}
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    return NewMessage(
        kind=message.type,
        message_id=message_id,
        timestamp=_timestamp(message, received_at),
        body=text,
    )


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _timestamp(message: SegmentMessage, received_at: datetime) -> datetime:
    """When it happened: ``timestamp`` (else ``originalTimestamp``), moved by the client's clock
    skew (``receivedAt - sentAt``) when ``sentAt`` is given, as Segment does; else the time the
    request was received."""
    given = message.timestamp or message.original_timestamp
    if given is None:
        return received_at
    moment = _naive_utc(given)
    if message.sent_at is not None:
        moment += received_at - _naive_utc(message.sent_at)
    return moment


# -- rate limits ----------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per API token: ``rate`` messages per second, bursts up to one second's
    worth. A request is admitted while the bucket is not empty and then pays for all its
    messages (the bucket may go below zero), so a batch of any size is admitted whole and the
    average stays at ``rate``. ``rate`` 0 admits everything."""

    def __init__(self, rate: float, *, clock: Any = time.monotonic) -> None:
        self.rate, self.capacity, self.clock = rate, max(rate, 1.0), clock
        self._buckets: dict[int, tuple[float, float]] = {}  # token id -> (level, updated)
        self._lock = threading.Lock()

    def _level(self, key: int, now: float) -> float:
        level, updated = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, level + (now - updated) * self.rate)

    def admit(self, key: int) -> None:
        """Refuse (429) when ``key``'s bucket is empty."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            level = self._level(key, now)
            self._buckets[key] = (level, now)
        if level <= 0:
            wait = max(1, math.ceil((1 - level) / self.rate))
            raise IngestError(
                f"rate limit: this token may send {self.rate:g} messages per second; "
                f"retry after {wait} s",
                status=429,
                code="rate_limited",
                hint="the limit is per token (CLOSELOOP_INGEST_RATE on the server)",
                headers={"Retry-After": str(wait)},
            )

    def charge(self, key: int, messages: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            self._buckets[key] = (self._level(key, now) - messages, now)


# -- flushing -------------------------------------------------------------------------------------


@contextmanager
def _warehouse(settings: Settings) -> Iterator[Warehouse]:
    """The warehouse alone (closeloop.yaml's ``sources:``, not the definitions), so a flush
    works while someone edits a job file."""
    _, sources = configured_sources(settings.project_dir)
    with Warehouse.connect(settings.warehouse_url, sources=sources) as warehouse:
        yield warehouse


def read_buffered(buffered: BufferedMessage) -> Message:
    """A buffered message as the warehouse writer takes it (page and screen: their event name,
    ``name`` and ``category`` in properties)."""
    message = SegmentMessage.model_validate_json(buffered.body)
    context_group = message.context.group_id if message.context else None
    properties = dict(message.properties or {})
    if buffered.kind in EVENT_NAMES:
        properties.update(
            {k: v for k, v in (("name", message.name), ("category", message.category)) if v}
        )
    return Message(
        sequence=buffered.id,
        kind=buffered.kind,
        message_id=buffered.message_id,
        timestamp=buffered.timestamp,
        user_id=message.user_id,
        account_id=message.group_id if buffered.kind == "group" else context_group,
        event=message.event if buffered.kind == "track" else EVENT_NAMES.get(buffered.kind),
        properties=properties,
        traits=dict(message.traits or {}),
        raw=buffered.body,
    )


def flush(settings: Settings, store: StateStore, *, limit: int = FLUSH_BATCH) -> FlushResult:
    """Write every buffered message to the warehouse (``limit`` per claim); the counts."""
    claimer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    total = Written()
    messages = 0
    while True:
        claimed = ingest_buffer.claim(store, claimer, limit=limit, lease=CLAIM_LEASE)
        if not claimed:
            break
        ids = [message.id for message in claimed]
        try:
            with _warehouse(settings) as warehouse:
                written = write_messages(warehouse, [read_buffered(message) for message in claimed])
        except BaseException:
            ingest_buffer.unclaim(store, claimer, ids)
            raise
        ingest_buffer.release(store, claimer, ids)
        messages += len(claimed)
        for name, value in vars(written).items():
            setattr(total, name, getattr(total, name) + value)
        if len(claimed) < limit:
            break
    return FlushResult(messages=messages, remaining=ingest_buffer.pending(store), **vars(total))


class Flusher:
    """Flushes the buffer every ``interval`` seconds (and when woken) in a background thread."""

    def __init__(self, settings: Settings, store: StateStore, interval: float) -> None:
        self.settings, self.store, self.interval = settings, store, interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="closeloop-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last flush (messages left are flushed by the next start)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        self._stopping.clear()

    def flush(self) -> FlushResult:
        with self.writing():
            return flush(self.settings, self.store)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off this server's flushes while something else of it writes the warehouse (an
        upload), so the two never conflict in one DuckDB file."""
        with self._lock:
            yield

    def _run(self) -> None:
        failures = 0
        while True:
            stopping = self._stopping.is_set()
            try:
                result = self.flush()
                failures = 0
                if result.messages:
                    log.info("flushed %s", result.model_dump_json())
            except Exception:
                failures += 1
                log.exception("flushing the ingestion buffer failed; the messages stay buffered")
            if stopping:
                return
            # After failures, wait longer (up to a minute) before trying again.
            self._wake.wait(min(60.0, self.interval * 2 ** min(failures, 6)))
            self._wake.clear()


# -- the server's side ----------------------------------------------------------------------------


class Ingestion:
    """What a server holds for ingestion: the rate limiter and the background flusher."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limiter = RateLimiter(server.settings.ingest_rate)
        self.flusher = Flusher(server.settings, server.store, server.settings.ingest_flush_interval)

    def start(self) -> None:
        self.flusher.start()

    def stop(self) -> None:
        self.flusher.stop()

    def admit(self, principal: TokenInfo) -> None:
        self.limiter.admit(principal.id)

    def accept(self, body: bytes, kind: MessageType | None, principal: TokenInfo) -> IngestAck:
        """Check and buffer one request's messages (all or none)."""
        received_at = utc_now()
        messages = parse_request(body, kind, received_at)
        self.limiter.charge(principal.id, len(messages))
        ingest_buffer.append(self.server.store, messages, token_id=principal.id, at=received_at)
        return IngestAck(received=len(messages))

    def import_upload(
        self,
        table: str,
        filename: str,
        upload: BinaryIO,
        *,
        format: str | None = None,
        encoding: str | None = None,
    ) -> ImportReport:
        """Import an uploaded file into ``table`` as ``closeloop import`` does."""
        if table not in IMPORT_TABLES:
            raise NotFoundError(
                f"unknown table {table!r}; canonical tables are: {', '.join(IMPORT_TABLES)}"
            )
        name = Path(filename or f"{table}.upload").name or f"{table}.upload"
        with tempfile.TemporaryDirectory(prefix="closeloop-upload-") as folder:
            received = Path(folder) / "received"
            digest = hashlib.sha256()
            with received.open("wb") as target:
                while chunk := upload.read(1 << 20):
                    digest.update(chunk)
                    target.write(chunk)
            # Named by its content, so the quarantine rows of a file uploaded twice are one set
            # (an import quarantines nothing twice for the same file, row and values).
            path = (
                Path(tempfile.gettempdir()) / "closeloop-uploads" / digest.hexdigest()[:16] / name
            )
            # One write at a time: no conflict with a flush, nor with the same file uploaded at
            # the same moment (it would share the path).
            with self.flusher.writing():
                path.parent.mkdir(parents=True, exist_ok=True)
                received.replace(path)
                try:
                    with self.server.workspace(write=False) as workspace:
                        result = import_table(
                            workspace, table, path, format=format, encoding=encoding
                        )
                finally:
                    path.unlink(missing_ok=True)
        return ImportReport(
            table=result.table,
            file=name,
            rows_read=result.rows_read,
            imported=result.imported,
            updated=result.updated,
            unchanged=result.unchanged,
            quarantined=result.quarantined,
            future_dated=result.future_dated,
            warnings=[warning.replace(str(path), name) for warning in result.warnings],
        )


def flush_project(project_dir: Path | None = None) -> FlushResult:
    """Flush the buffer of the project in ``project_dir`` (``closeloop ingest flush``, or a
    worker process beside an API process that does not flush)."""
    settings = load_settings(project_dir)
    store = StateStore.connect(settings.state_url)
    try:
        store.migrate()
        return flush(settings, store)
    finally:
        store.close()
