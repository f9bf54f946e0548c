"""Load test: sustained Segment ingestion into a real server on 127.0.0.1, every event counted.

Run with ``.venv/bin/python bench/ingest_load.py [--seconds 60] [--clients 4] [--batch 100]``.

It makes a project in a temporary folder with ``--accounts`` accounts (imported from a file), one
ingest token per client, and starts the API as its own process (``python -m uvicorn`` with the
app factory, flushing in the background every second as ``closeloop serve`` does). Client
threads post ``/v1/batch`` requests of ``--batch`` track messages back to back for ``--seconds``
(a bounded loop: it stops by itself). About 2% of messages repeat a ``messageId`` sent earlier and
about 2% name an account that does not exist. Then the server is stopped (its last flush runs),
anything still buffered is flushed, and the warehouse is counted: every acknowledged message must
be stored, a duplicate, or quarantined, and each count must be exactly the one sent. The figures
(events/s, requests/s, CPU count) are printed and written as JSON (``--json PATH``, default
``bench/results/ingest_load.json``, in the convention of bench/README.md: the figures are the
one result, case ``segment batch``); ``tests/e2e/test_ingest_load.py`` runs a short version of
this script. Nothing is asserted on speed; the accounting is checked and a mismatch exits with
code 1 (the JSON is written all the same, with ``accounted: false``).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from closeloop.data.warehouse import Warehouse
from closeloop.schemas.tokens import Role
from closeloop.services.data import import_table
from closeloop.services.ingest import flush_project
from closeloop.services.project import init_project, open_workspace
from closeloop.services.server import Server
from closeloop.services.tokens import create_token

DUPLICATE_EVERY = 50  # one message in 50 repeats a messageId sent before
UNKNOWN_EVERY = 47  # one message in 47 names an account that does not exist


@dataclass
class Client:
    """One sender: a token, a connection, and what it was told was accepted."""

    number: int
    token: str
    port: int
    batch: int
    accounts: int
    deadline: float
    sent: int = 0
    requests: int = 0
    refused: int = 0
    unique: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {
            "Content-Type": "application/json",
            # Segment's libraries send the write key as the HTTP Basic user.
            "Authorization": "Basic " + base64.b64encode(f"{self.token}:".encode()).decode(),
        }
        counter = 0
        last: dict[str, Any] | None = None
        while time.monotonic() < self.deadline:
            messages: list[dict[str, Any]] = []
            unknown: list[str] = []
            for _ in range(self.batch):
                counter += 1
                if counter % DUPLICATE_EVERY == 0 and last is not None:
                    messages.append(last)  # a retry of a message sent before, as it was
                    continue
                message_id = f"c{self.number}-{counter}"
                account = f"a{counter % self.accounts}"
                if counter % UNKNOWN_EVERY == 0:
                    account = f"ghost-{counter}"
                    unknown.append(message_id)
                last = {
                    "type": "track",
                    "messageId": message_id,
                    "userId": f"u{counter % (self.accounts * 3)}",
                    "event": "report_built" if counter % 3 else "login",
                    "context": {"groupId": account},
                    "properties": {"plan": "pro", "duration_ms": counter % 997},
                    "timestamp": datetime.now(UTC).isoformat(),
                }
                messages.append(last)
            body = json.dumps({"batch": messages}).encode()
            try:
                connection.request("POST", "/v1/batch", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            self.requests += 1
            if response.status == 429:
                self.refused += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status != 200:
                self.failures.append(f"HTTP {response.status}: {answer[:200]!r}")
                continue
            self.sent += len(messages)
            self.unique.update(message["messageId"] for message in messages)
            self.unknown.update(unknown)
        connection.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _make_project(folder: Path, accounts: int) -> None:
    init_project(folder, name="load")
    rows = "".join(f"a{i},Account {i},2024-01-01T00:00:00Z,pro\n" for i in range(accounts))
    (folder / "accounts.csv").write_text("account_id,name,created_at,plan\n" + rows)
    with open_workspace(folder) as workspace:
        import_table(workspace, "accounts", folder / "accounts.csv")


def _start_server(folder: Path, port: int, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "closeloop.api.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(command, env={**environ, "CLOSELOOP_PROJECT": str(folder)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("the server did not start listening within 60 s")


def run(folder: Path, *, seconds: float, clients: int, batch: int, accounts: int) -> dict[str, Any]:
    """The whole load test on a new project in ``folder``; the figures and the accounting."""
    _make_project(folder, accounts)
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CLOSELOOP_WAREHOUSE_URL", "CLOSELOOP_STATE_URL", "CLOSELOOP_PROJECT")
    }
    environ["CLOSELOOP_INGEST_FLUSH_INTERVAL"] = "1"
    opened = Server.open(folder, environ)
    try:
        tokens = [
            create_token(opened.store, name=f"load-{i}", role=Role.ingest, actor="bench").token
            for i in range(clients)
        ]
    finally:
        opened.close()
    port = _free_port()
    server = _start_server(folder, port, environ)
    try:
        started = time.monotonic()
        senders = [
            Client(i, tokens[i], port, batch, accounts, started + seconds) for i in range(clients)
        ]
        threads = [threading.Thread(target=sender.run) for sender in senders]
        cpu_before = os.times()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        cpu_after = os.times()
    finally:
        server.terminate()  # uvicorn closes: the app's lifespan stops the flusher after a flush
        server.wait(timeout=300)
    drain_started = time.monotonic()
    remaining = flush_project(folder)  # anything the server's last flush did not reach
    drain = time.monotonic() - drain_started
    sent = sum(sender.sent for sender in senders)
    unique = set().union(*(sender.unique for sender in senders))
    unknown = set().union(*(sender.unknown for sender in senders))
    with Warehouse.connect(f"duckdb:///{folder / 'warehouse.duckdb'}") as warehouse:
        events = warehouse.table("events")
        stored_ids = set(events.select("event_id").to_pyarrow().column(0).to_pylist())
        quarantine = warehouse.table("quarantine")
        quarantined_rows = quarantine.filter(quarantine.file == "segment:track")
        quarantined = int(quarantined_rows.count().to_pyarrow().as_py())
    stored = len(stored_ids)
    duplicates = sent - len(unique)
    figures = {
        "seconds": round(elapsed, 2),
        "clients": clients,
        "batch": batch,
        "cpus": os.cpu_count(),
        "requests": sum(sender.requests for sender in senders),
        "rate_limited": sum(sender.refused for sender in senders),
        "failures": [failure for sender in senders for failure in sender.failures][:10],
        "sent": sent,
        "events_per_second": round(sent / elapsed),
        "requests_per_second": round(sum(s.requests for s in senders) / elapsed, 1),
        "client_cpu_seconds": round(
            (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system), 1
        ),
        "stored": stored,
        "duplicates": duplicates,
        "quarantined": quarantined,
        "expected_stored": len(unique - unknown),
        "expected_quarantined": len(unknown),
        "left_for_the_final_flush": remaining.messages,
        "final_flush_seconds": round(drain, 2),
        "still_buffered": remaining.remaining,
    }
    figures["accounted"] = (
        stored + duplicates + quarantined == sent
        and stored_ids == unique - unknown
        and quarantined == len(unknown)
        and remaining.remaining == 0
        and not figures["failures"]
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long clients send")
    parser.add_argument("--clients", type=int, default=4, help="client threads, one token each")
    parser.add_argument("--batch", type=int, default=100, help="messages per /v1/batch request")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts in the project")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "ingest_load.json",
        help="where to write the figures as JSON",
    )
    options = parser.parse_args()
    if not 0 < options.seconds <= 600:
        parser.error("--seconds must be between 0 and 600")
    with tempfile.TemporaryDirectory(prefix="closeloop-load-") as folder:
        figures = run(
            Path(folder) / "load",
            seconds=options.seconds,
            clients=options.clients,
            batch=options.batch,
            accounts=options.accounts,
        )
    document = {
        "benchmark": "ingest_load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": [round(value, 2) for value in os.getloadavg()],
        },
        "params": {
            "seconds": options.seconds,
            "clients": options.clients,
            "batch": options.batch,
            "accounts": options.accounts,
            "duplicate_every": DUPLICATE_EVERY,
            "unknown_every": UNKNOWN_EVERY,
        },
        "results": [{"case": "segment batch", **figures}],
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"{figures['sent']:,} events in {figures['requests']:,} requests over "
        f"{figures['seconds']} s from {figures['clients']} clients "
        f"({figures['cpus']} CPUs): {figures['events_per_second']:,} events/s, "
        f"{figures['requests_per_second']:,} requests/s"
    )
    total = figures["stored"] + figures["duplicates"] + figures["quarantined"]
    print(
        f"stored {figures['stored']:,} + duplicates {figures['duplicates']:,} + quarantined "
        f"{figures['quarantined']:,} = {total:,}"
        f" (sent {figures['sent']:,}); expected stored {figures['expected_stored']:,}, "
        f"quarantined {figures['expected_quarantined']:,}"
    )
    print(
        f"final flush: {figures['left_for_the_final_flush']:,} messages in "
        f"{figures['final_flush_seconds']} s; rate limited {figures['rate_limited']}; "
        f"failures {figures['failures'] or 'none'}"
    )
    print("every event accounted for" if figures["accounted"] else "ACCOUNTING MISMATCH")
    print(f"figures written to {options.json}")
    if not figures["accounted"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
