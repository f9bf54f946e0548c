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

from closeloop.data.tables import ENROLLMENTS
from closeloop.definitions.project import LoadedJob
from closeloop.engine import schema
from closeloop.engine.versions import parse_text, record_definition
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
        if self.engine.dialect.name == "sqlite":
            # A migration may turn SQLite's foreign keys off for a table rebuild; fresh
            # connections get them back (see _sqlite_pragmas).
            self.engine.dispose()

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

        The version comes from ``definition_versions`` (the same rows every definition gets when a
        workspace opens), so one change never makes two versions and ``current_version`` is the
        latest recorded one. The salt that drives holdout assignment is fixed at first launch, so
        assignment stays stable across versions; the hypothesis recorded at launch stays locked,
        and a later change of goal or hypothesis is written to the audit log.
        """
        with self.engine.begin() as connection:
            version, _ = record_definition(
                connection, "job", job.name, job.content_hash, job.definition, author, utc_now()
            )
            row = (
                connection.execute(sa.select(schema.jobs).where(schema.jobs.c.name == job.name))
                .mappings()
                .first()
            )
            if row is None:
                salt = hashlib.sha256(f"{job.name}|{at.isoformat()}".encode()).hexdigest()[:16]
                connection.execute(
                    schema.jobs.insert().values(
                        name=job.name,
                        salt=salt,
                        current_version=version,
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
                self._audit(connection, author, "job.launched", job.name, {"version": version})
                return JobRecord(
                    job.name, salt, version, job.content_hash, job.definition.holdout, at
                )
            if row["current_version"] != version or row["content_hash"] != job.content_hash:
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
                self._audit_locked_fields(connection, author, job, row["current_version"], version)
            return JobRecord(
                job.name,
                row["salt"],
                version,
                job.content_hash,
                job.definition.holdout,
                row["launched_at"],
            )

    def _audit_locked_fields(
        self, connection: Connection, author: str, job: LoadedJob, before: int, after: int
    ) -> None:
        """Goal and hypothesis are fixed at launch; changing them later is recorded, not hidden."""
        v = schema.definition_versions
        stored = connection.execute(
            sa.select(v.c.definition).where(
                v.c.kind == "job", v.c.name == job.name, v.c.version == before
            )
        ).scalar()
        previous = parse_text(stored) if isinstance(stored, str) else {}
        current = job.definition.model_dump(mode="json", exclude_defaults=True)
        for field in ("goal", "hypothesis"):
            if previous.get(field) != current.get(field):
                self._audit(
                    connection,
                    author,
                    f"job.{field}_changed",
                    job.name,
                    {
                        "from_version": before,
                        "to_version": after,
                        "from": previous.get(field),
                        "to": current.get(field),
                    },
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
        query = sa.select(*[e.c[name] for name in ENROLLMENTS.column_names]).order_by(
            e.c.job_name, e.c.entered_at, e.c.account_id
        )
        if job_name is not None:
            query = query.where(e.c.job_name == job_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return pa.Table.from_pylist([dict(row) for row in rows], schema=ENROLLMENT_ARROW_SCHEMA)


# The published copy has exactly the warehouse's columns and types (data.tables.ENROLLMENTS).
ENROLLMENT_ARROW_SCHEMA = ENROLLMENTS.ibis_schema().to_pyarrow()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
