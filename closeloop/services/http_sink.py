"""A real HTTP server on loopback that keeps what it receives (for the demo and tests).

``with HttpSink(secret="s3cret") as sink:`` listens on ``sink.url``, answers every POST and records
it in ``sink.received``. With a ``secret`` it checks each request's closeloop signature and
timestamp the way a receiver should (a failure is answered 401 and recorded); ``fail_first`` makes
the first N requests fail with ``fail_status`` (to watch retries), ``status`` is the answer after
that, and ``delay`` holds every answer back (to watch timeouts).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from closeloop.channels.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the sink saw it. ``headers`` has lower-case names; ``json`` is the parsed
    body (``None`` if it is not JSON); ``signature_ok`` is ``None`` when the sink has no secret."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    idempotency_key: str | None
    signature_ok: bool | None
    error: str | None
    status: int  # what the sink answered


class HttpSink:
    """``with HttpSink() as sink:`` runs an HTTP server on 127.0.0.1 at ``sink.url``."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        status: int = 200,
        fail_first: int = 0,
        fail_status: int = 500,
        delay: float = 0.0,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        host: str = "127.0.0.1",
    ) -> None:
        self.secret = secret
        self.status = status
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.tolerance_seconds = tolerance_seconds
        self.host = host
        self._received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes answers held back by ``delay`` at exit
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash; append any path)."""
        if self._server is None:
            raise RuntimeError("the sink is not running: use it as `with HttpSink() as sink:`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def arrivals(self) -> Counter[str | None]:
        """How many requests arrived per idempotency key (refused ones included)."""
        with self._lock:
            return Counter(request.idempotency_key for request in self._received)

    def __enter__(self) -> HttpSink:
        self._stopping.clear()
        self._server = _Server((self.host, 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="closeloop-http-sink",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads (block_on_close)
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _answer(self, request: _Handler, body: bytes) -> tuple[int, str]:
        """Record one request and decide the answer: (status, text)."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        signature_ok: bool | None = None
        error: str | None = None
        if self.secret is not None:
            try:
                verify(
                    self.secret,
                    headers.get(TIMESTAMP_HEADER.lower()),
                    headers.get(SIGNATURE_HEADER.lower()),
                    body,
                    now=time.time(),
                    tolerance_seconds=self.tolerance_seconds,
                )
                signature_ok = True
            except SignatureError as refused:
                signature_ok, error = False, str(refused)
        with self._lock:
            failing = len(self._received) < self.fail_first
            if error is not None:
                status, text = 401, f"bad signature: {error}"
            elif failing:
                status, text = self.fail_status, f"failing on purpose (first {self.fail_first})"
            else:
                status, text = self.status, "ok" if 200 <= self.status < 300 else "refused"
            self._received.append(
                ReceivedRequest(
                    method=request.command,
                    path=request.path,
                    headers=headers,
                    body=body,
                    json=_parse(body),
                    idempotency_key=headers.get(IDEMPOTENCY_HEADER.lower()),
                    signature_ok=signature_ok,
                    error=error,
                    status=status,
                )
            )
        return status, text


class _Server(ThreadingHTTPServer):
    # Request threads are joined at close, so a test ends with no thread or socket left behind.
    daemon_threads = False
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sink: HttpSink
    ) -> None:
        self.sink = sink
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hung up (a timeout test) is not the sink's failure


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # seconds a connection may idle before the sink drops it

    def do_POST(self) -> None:
        sink = self._sink()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, text = sink._answer(self, body)
        if sink.delay:
            sink._stopping.wait(sink.delay)
        content = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _sink(self) -> HttpSink:
        server = self.server
        assert isinstance(server, _Server)
        return server.sink


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
