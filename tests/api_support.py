"""An API client on a real project folder, with one token per role (importable from tests)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from closeloop.api.app import create_app
from closeloop.schemas.tokens import Role
from closeloop.services.server import Server
from closeloop.services.tokens import create_token


@dataclass
class Api:
    client: TestClient
    server: Server
    tokens: dict[Role, str]

    def headers(self, role: Role | str = Role.admin) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[Role(role)]}"}

    def get(self, path: str, role: Role | str = Role.viewer, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.get(path, headers=self.headers(role), **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, role: Role | str = Role.editor, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.post(path, headers=self.headers(role), **kwargs)  # type: ignore[arg-type]


@contextmanager
def api_for(project_dir: Path, environ: Mapping[str, str] | None = None) -> Iterator[Api]:
    """A TestClient on ``project_dir`` (already ``init``-ed) and a token for every role."""
    server = Server.open(project_dir, environ)
    tokens = {
        role: create_token(server.store, name=f"test-{role.value}", role=role, actor="tests").token
        for role in Role
    }
    app = create_app(server=server)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client=client, server=server, tokens=tokens)
    finally:
        server.close()
