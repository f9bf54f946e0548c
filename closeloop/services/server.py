"""What a long-running server (``closeloop serve``, the API, the dashboard) holds between requests.

DuckDB admits one writing process per file, so the server keeps **no** warehouse connection open:
each request opens the workspace, does its work and closes it, and ingestion is buffered and
written in batches. ``closeloop report``, ``explain`` and ``import`` therefore keep working while
``serve`` runs (each waits for the file lock, as two CLI commands do). The state store (SQLite in
WAL mode or PostgreSQL) admits many processes; the server keeps one engine for authentication.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from closeloop.engine.state import StateStore
from closeloop.schemas.tokens import TokenInfo
from closeloop.services.project import Workspace, open_workspace
from closeloop.services.tokens import authenticate
from closeloop.settings import Settings, load_settings


@dataclass
class Server:
    """A project served over HTTP: its settings and one state-store engine for tokens."""

    settings: Settings
    store: StateStore
    environ: Mapping[str, str] | None = None

    @classmethod
    def open(
        cls, project_dir: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> Server:
        """Open the project's state store, migrated (so tokens can be checked from the start)."""
        settings = load_settings(project_dir, environ)
        store = StateStore.connect(settings.state_url)
        store.migrate()
        return cls(settings=settings, store=store, environ=environ)

    def close(self) -> None:
        self.store.close()

    def authenticate(self, token: str) -> TokenInfo | None:
        return authenticate(self.store, token)

    @contextmanager
    def workspace(self, *, write: bool = False) -> Iterator[Workspace]:
        """The workspace for one request, closed (and the warehouse file released) afterwards."""
        with open_workspace(self.settings.project_dir, write=write, environ=self.environ) as ws:
            yield ws
