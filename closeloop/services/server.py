"""What a long-running server (``closeloop serve``, the API, the dashboard) holds between requests.

DuckDB admits one writing process per file, so the server keeps **no** warehouse connection open:
each request opens the workspace, does its work and closes it, and ingestion is buffered and
written in batches. ``closeloop report``, ``explain`` and ``import`` therefore keep working while
``serve`` runs (each waits for the file lock, as two CLI commands do). The state store (SQLite in
WAL mode or PostgreSQL) admits many processes; the server keeps one engine for authentication.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import sqlalchemy as sa
import yaml

from closeloop import __version__
from closeloop.engine import audit
from closeloop.engine import tokens as token_store
from closeloop.engine.state import StateStore
from closeloop.errors import redact
from closeloop.schemas.admin import AuditEntry, AuditPage, Health
from closeloop.schemas.tokens import TokenInfo
from closeloop.services.project import Workspace, open_workspace
from closeloop.services.tokens import authenticate, token_hash
from closeloop.settings import PROJECT_FILE, Settings, load_settings

TOUCH_SECONDS = 5.0
"""How often a token's ``last_used_at`` is written while it is in use."""


@dataclass
class Server:
    """A project served over HTTP: its settings and one state-store engine for tokens."""

    settings: Settings
    store: StateStore
    environ: Mapping[str, str] | None = None
    # token hash -> (touch again after, principal): see authenticate
    _touched: dict[str, tuple[float, TokenInfo]] = field(
        default_factory=dict, init=False, repr=False
    )

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
        """The token's principal, or None. Revocation is seen at once (every request looks the
        token up), but ``last_used_at`` is written at most every :data:`TOUCH_SECONDS` per token:
        a write transaction per request would halve ingestion's requests per second."""
        key = token_hash(token)
        now = time.monotonic()
        remembered = self._touched.get(key)
        if remembered is not None and remembered[0] > now:
            if token_store.find_active(self.store, key) is not None:
                return remembered[1]
            self._touched.pop(key, None)
            return None
        principal = authenticate(self.store, token)
        if principal is not None:
            self._touched[key] = (now + TOUCH_SECONDS, principal)
        return principal

    @contextmanager
    def workspace(self, *, write: bool = False) -> Iterator[Workspace]:
        """The workspace for one request, closed (and the warehouse file released) afterwards."""
        with open_workspace(write=write, settings=self.settings) as ws:
            yield ws

    @cached_property
    def project_name(self) -> str:
        """The ``name`` in closeloop.yaml, else the folder's name (health must not fail on a
        definition error, so this reads the one key without validating the project)."""
        try:
            config = yaml.safe_load(
                (self.settings.project_dir / PROJECT_FILE).read_text(encoding="utf-8")
            )
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            config = None
        name = config.get("name") if isinstance(config, dict) else None
        return str(name) if name else self.settings.project_dir.name

    def health(self) -> Health:
        """Liveness: the version, the project, and whether the state store answers a query."""
        try:
            with self.store.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            reachable = True
        except sa.exc.SQLAlchemyError:
            reachable = False
        return Health(
            status="ok" if reachable else "unavailable",
            version=__version__,
            project=self.project_name,
            store_reachable=reachable,
        )

    def audit_log(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> AuditPage:
        """One page of the audit log, newest first (filters: :func:`engine.audit.list_entries`)."""
        records, total = audit.list_entries(
            self.store, action=action, actor=actor, since=since, offset=offset, limit=limit
        )
        return AuditPage(
            items=[
                AuditEntry(
                    id=entry.id,
                    at=entry.at,
                    actor=entry.actor,
                    action=entry.action,
                    subject=entry.subject,
                    detail=entry.detail,
                )
                for entry in records
            ],
            total=total,
            offset=offset,
            limit=limit,
        )

    def record_request(
        self, *, actor: str, method: str, route: str, path: str, status: int
    ) -> None:
        """Audit one API write: ``api.METHOD /route/{template}`` on the request's path, with its
        status. Never the body, the query string or a header (they may carry secrets)."""
        audit.record(
            self.store,
            actor=actor,
            action=f"api.{method} {route}",
            subject=path,
            detail={"status": status},
        )


# -- secrets out of logs -----------------------------------------------------------------------

MASK = "***"
_MIN_MASKED_LENGTH = 6  # shorter values (a test password "pw") would mask ordinary words


def secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """What must never reach a log: the SMTP password, the signing secret (it signs webhooks
    and unsubscribe links) and the Slack webhook URLs closeloop.yaml names by variable."""
    env = os.environ if environ is None else environ
    values = [settings.smtp_password or "", settings.secret]
    try:
        config = yaml.safe_load((settings.project_dir / PROJECT_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        config = None
    slack = config.get("slack") if isinstance(config, dict) else None
    if isinstance(slack, dict):
        variables = [slack.get("default")]
        owners = slack.get("owners")
        if isinstance(owners, dict):
            variables.extend(owners.values())
        values.extend(env.get(name, "") for name in variables if isinstance(name, str))
    return sorted({v for v in values if len(v) >= _MIN_MASKED_LENGTH}, key=len, reverse=True)


class SecretsFilter(logging.Filter):
    """A log handler filter that masks known secret values (and URL passwords) in a record's
    message and exception text, so a secret quoted by a library's error never reaches a log.

    Installed on the handlers of ``closeloop serve``/``api``; the API itself never logs a
    secret on purpose, this is the net under it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_MASKED_LENGTH}, key=len, reverse=True
        )

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return redact(text)

    def _argument(self, value: object) -> object:
        # Keep each argument's place and type (uvicorn's access formatter unpacks them); only a
        # value whose text holds a secret becomes its masked text.
        text = value if isinstance(value, str) else str(value)
        masked = self.mask(text)
        return value if masked == text else masked

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._argument(value) for value in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: self._argument(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True
