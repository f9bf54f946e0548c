"""A project served by the real ``closeloop serve`` app (API + dashboard) on loopback, with a user
and an API token per role, for the stages, health, plans and outcomes page tests."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from closeloop.asgi import create_app
from closeloop.schemas.tokens import Role
from closeloop.services import users
from closeloop.services.server import Server
from closeloop.services.tokens import create_token

PASSWORD = "correct horse battery"
ROLES = ("admin", "editor", "viewer")


@dataclass
class Served:
    base: str
    project: Path
    server: Server
    tokens: dict[str, str]

    def client(self, role: str = "viewer") -> httpx.Client:
        """A client that sends the role's API token (Bearer)."""
        return httpx.Client(
            base_url=self.base,
            timeout=120,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
        )

    def anonymous(self) -> httpx.Client:
        """A client with no token and no cookie: a customer's browser."""
        return httpx.Client(base_url=self.base, timeout=120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(project: Path) -> Iterator[Served]:
    """Serve ``project`` (already ``init``-ed) on a free loopback port until the block ends."""
    server = Server.open(project)
    tokens = {}
    for role in ROLES:
        users.add_user(server.store, name=f"{role}-user", role=role, password=PASSWORD, actor="t")
        tokens[role] = create_token(
            server.store, name=f"{role}-token", role=Role(role), actor="t"
        ).token
    port = _free_port()
    config = uvicorn.Config(
        create_app(server=server), host="127.0.0.1", port=port, log_level="warning"
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not http.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", project, server, tokens)
    finally:
        http.should_exit = True
        thread.join(timeout=10)
        server.close()


@contextmanager
def logged_in(served: Served, role: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client with a session cookie (logged in through the form), and its CSRF token."""
    client = httpx.Client(base_url=served.base, timeout=120)
    try:
        answer = client.post(
            "/login", data={"name": f"{role}-user", "password": PASSWORD, "next": "/plans"}
        )
        assert answer.status_code == 303, answer.text
        page = client.get("/outcomes")
        found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert found, page.text[:500]
        yield client, found.group(1)
    finally:
        client.close()


def csv_links(html: str) -> list[str]:
    """The CSV download links of a page (one per table)."""
    return [link.replace("&amp;", "&") for link in re.findall(r'href="([^"]+\.csv[^"]*)"', html)]
