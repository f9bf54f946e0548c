"""The state store: a SQL database (SQLite by default, PostgreSQL by URL) behind SQLAlchemy.

Holds what the engine decides (job versions, enrollments, the outbox, processed ticks, the audit
log); the warehouse holds what customers did. Migrations run through Alembic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from closeloop.definitions.project import LoadedJob
from closeloop.engine import schema
from closeloop.errors import ConfigurationError, NotFoundError, StateError


def utc_now() -> datetime:
    """The current time as naive UTC (the store keeps all times naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class JobRecord:
    name: str
    salt: str
    version: int
    content_hash: str
    holdout: float
    launched_at: datetime


class StateStore:
    """The transactional store: ``engine`` is a SQLAlchemy engine; ``engine.begin()`` for work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str) -> StateStore:
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as error:
            raise ConfigurationError(f"cannot use state store URL {url!r}: {error}") from error
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- migrations --------------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("closeloop.engine") / "migrations")
        )
        return config

    def migrate(self) -> None:
        """Bring the store's schema up to date (idempotent)."""
        config = self._alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def check_migrated(self) -> None:
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        if current != head:
            raise StateError(
                f"the state store is at migration {current or 'none'}, closeloop needs {head}; "
                "run `closeloop migrate`"
            )

    # -- jobs and versions -------------------------------------------------------------------

    def launch_or_update_job(
        self, job: LoadedJob, at: datetime, author: str = "closeloop"
    ) -> JobRecord:
        """Register a job at its current definition; a changed definition becomes a new version.

        The salt that drives holdout assignment is fixed at first launch, so assignment stays
        stable across versions.
        """
        definition = job.definition.model_dump_json()
        with self.engine.begin() as connection:
            row = (
                connection.execute(sa.select(schema.jobs).where(schema.jobs.c.name == job.name))
                .mappings()
                .first()
            )
            if row is None:
                salt = hashlib.sha256(f"{job.name}|{at.isoformat()}".encode()).hexdigest()[:16]
                version = 1
                connection.execute(
                    schema.jobs.insert().values(
                        name=job.name,
                        salt=salt,
                        current_version=1,
                        content_hash=job.content_hash,
                        holdout=job.definition.holdout,
                        launched_at=at,
                        hypothesis=json.dumps(
                            job.definition.hypothesis.model_dump(mode="json")
                            if job.definition.hypothesis
                            else None
                        ),
                    )
                )
                self._audit(connection, author, "job.launched", job.name, {"version": 1})
            elif row["content_hash"] != job.content_hash:
                salt, version = row["salt"], row["current_version"] + 1
                connection.execute(
                    schema.jobs.update()
                    .where(schema.jobs.c.name == job.name)
                    .values(
                        current_version=version,
                        content_hash=job.content_hash,
                        holdout=job.definition.holdout,
                    )
                )
                self._audit(
                    connection,
                    author,
                    "job.changed",
                    job.name,
                    {"from_version": row["current_version"], "to_version": version},
                )
            else:
                return JobRecord(
                    job.name,
                    row["salt"],
                    row["current_version"],
                    row["content_hash"],
                    row["holdout"],
                    row["launched_at"],
                )
            connection.execute(
                schema.definition_versions.insert().values(
                    kind="job",
                    name=job.name,
                    version=version,
                    content_hash=job.content_hash,
                    definition=definition,
                    created_at=utc_now(),
                    author=author,
                )
            )
            launched_at = at if row is None else row["launched_at"]
            return JobRecord(
                job.name, salt, version, job.content_hash, job.definition.holdout, launched_at
            )

    def job_record(self, name: str) -> JobRecord:
        with self.engine.connect() as connection:
            row = (
                connection.execute(sa.select(schema.jobs).where(schema.jobs.c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"job {name!r} has never run; run `closeloop tick` first")
        return JobRecord(
            row["name"],
            row["salt"],
            row["current_version"],
            row["content_hash"],
            row["holdout"],
            row["launched_at"],
        )

    def last_tick(self, job_name: str) -> datetime | None:
        """The time of the job's latest processed tick (the natural "as of" for its report)."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.max(schema.ticks.c.at)).where(schema.ticks.c.job_name == job_name)
            ).scalar()
        return value if isinstance(value, datetime) else None

    def _audit(
        self, connection: Connection, actor: str, action: str, subject: str, detail: Any
    ) -> None:
        connection.execute(
            schema.audit_log.insert().values(
                at=utc_now(), actor=actor, action=action, subject=subject, detail=json.dumps(detail)
            )
        )

    # -- enrollments -------------------------------------------------------------------------

    def enrollments_table(self, job_name: str | None = None) -> pa.Table:
        """Enrollments (of one job, or all) as an Arrow table, to publish to the warehouse."""
        e = schema.enrollments
        query = sa.select(
            e.c.enrollment_id,
            e.c.job_name,
            e.c.job_version,
            e.c.account_id,
            e.c.arm,
            e.c.entered_at,
            e.c.completed_at,
            e.c.exited_at,
            e.c.exit_reason,
        ).order_by(e.c.job_name, e.c.entered_at, e.c.account_id)
        if job_name is not None:
            query = query.where(e.c.job_name == job_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return pa.Table.from_pylist([dict(row) for row in rows], schema=ENROLLMENT_ARROW_SCHEMA)


ENROLLMENT_ARROW_SCHEMA = pa.schema(
    [
        ("enrollment_id", pa.string()),
        ("job_name", pa.string()),
        ("job_version", pa.int64()),
        ("account_id", pa.string()),
        ("arm", pa.string()),
        ("entered_at", pa.timestamp("us")),
        ("completed_at", pa.timestamp("us")),
        ("exited_at", pa.timestamp("us")),
        ("exit_reason", pa.string()),
    ]
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
