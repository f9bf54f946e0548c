"""The state store: a SQL database (SQLite by default, PostgreSQL by URL) behind SQLAlchemy.

Holds what the engine decides (job versions, enrollments, the outbox, processed ticks, the audit
log); the warehouse holds what customers did. Migrations run through Alembic.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from closeloop.data.tables import ENROLLMENTS
from closeloop.engine import schema
from closeloop.engine.versions import latest_version, parse_text, record_definition
from closeloop.errors import (
    ConcurrencyError,
    ConfigurationError,
    NotFoundError,
    StateError,
    mask_url,
    redact,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from alembic.config import Config

    from closeloop.definitions.project import LoadedJob

SQLITE_BUSY_TIMEOUT_SECONDS = 60.0
RUNNER_LOCK_KEY = 0x636C6F73  # "clos": the advisory lock `closeloop run` holds on PostgreSQL
MIGRATION_LOCK_KEY = 0x636C6D67  # "clmg": held while migrating a PostgreSQL state store


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
    status: str = "live"
    revision: int = 0
    plan: LaunchPlan | None = None


@dataclass(frozen=True)
class LaunchPlan:
    """What a job was planned to detect, fixed at launch: it tunes the always-valid results.

    ``units`` is N*, the units the job should enroll over its planned duration; ``baseline`` the
    completion rate assumed; ``relative_effect`` the lift (treated / holdout - 1) to detect.
    """

    units: float
    baseline: float | None = None
    relative_effect: float | None = None


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
            if url.startswith("sqlite"):
                engine = sa.create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
                )
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as error:
            raise ConfigurationError(
                redact(f"cannot use state store URL {mask_url(url)!r}: {error}")
            ) from error
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return cls(engine)

    @property
    def url(self) -> str:
        """The store's URL with its credentials masked, for messages."""
        return mask_url(self.engine.url.render_as_string(hide_password=False))

    def exists(self) -> bool:
        """Whether the store has been created (a SQLite file that is there; a server always)."""
        if self.engine.dialect.name != "sqlite":
            return True
        database = self.engine.url.database
        return not database or database == ":memory:" or Path(database).is_file()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def runner_lock(self) -> Iterator[None]:
        """Held by ``closeloop run`` for its life: one daemon per state store.

        PostgreSQL: a session advisory lock on a dedicated connection; SQLite: an exclusive
        ``flock`` on a file next to the database. The operating system or the server releases
        either when the process ends, however it ends.
        """
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                got = connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": RUNNER_LOCK_KEY}
                ).scalar()
                connection.commit()
                if not got:
                    raise StateError(
                        f"another `closeloop run` is running on {self.url}; one per project"
                    )
                try:
                    yield
                finally:
                    connection.execute(
                        sa.text("SELECT pg_advisory_unlock(:key)"), {"key": RUNNER_LOCK_KEY}
                    )
                    connection.commit()
            return
        database = self.engine.url.database or "state"
        path = Path(f"{database}.run.lock")
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                raise StateError(
                    f"another `closeloop run` is running on this project ({holder or path}); "
                    "one per project"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- migrations --------------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        from alembic.config import Config  # Alembic only when a migration may run

        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("closeloop.engine") / "migrations")
        )
        return config

    def _current_revision(self) -> str | None:
        """The store's migration (alembic_version), or None when it has none (new, or empty)."""
        if not self.exists():
            return None
        with self.engine.connect() as connection:
            try:
                return connection.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar()
            except sa.exc.DBAPIError:
                return None  # no alembic_version table yet

    def migrate(self) -> None:
        """Bring the store's schema up to date (idempotent). A store already at
        :data:`HEAD_REVISION` is left alone without loading Alembic (every command opens the
        store this way)."""
        if self._current_revision() == HEAD_REVISION:
            return
        from alembic import command

        config = self._alembic_config()
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as connection:
            if sqlite:
                # SQLite rebuilds a table to drop a constraint, and other tables reference it:
                # that needs foreign keys off, which SQLite only accepts outside a transaction
                # (https://www.sqlite.org/lang_altertable.html#otheralter). Set it on the driver
                # connection before SQLAlchemy begins one, and check the keys before committing.
                connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys = OFF"
                )
            with connection.begin():
                if self.engine.dialect.name == "postgresql":
                    # Two processes starting on a new database would both create the tables;
                    # the second waits here and then finds the store up to date.
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise StateError(
                            f"migrating the state store broke a reference in table {broken[0]}"
                        )
        if sqlite:
            # Fresh connections get foreign keys back on (see _sqlite_pragmas).
            self.engine.dispose()

    def check_migrated(self) -> None:
        head = HEAD_REVISION
        if not self.exists():
            raise StateError(
                f"there is no state store at {self.url} yet; run `closeloop migrate` "
                "(or a command that runs jobs, such as `closeloop tick`)"
            )
        current = self._current_revision()
        if current != head:
            raise StateError(
                f"the state store is at migration {current or 'none'}, closeloop needs {head}; "
                "run `closeloop migrate`"
            )

    # -- jobs and versions -------------------------------------------------------------------

    def sync_job(self, job: LoadedJob, author: str = "closeloop") -> JobRecord | None:
        """The job's record, with a changed definition recorded as a new version.

        A job with no record is a draft: None is returned and nothing is written (a tick launches
        a draft in its own recording transaction: :meth:`planned_launch`, :meth:`record_launch`).
        The version comes from ``definition_versions`` (the rows every definition gets when a
        workspace opens), so one change never makes two versions and ``current_version`` is the
        latest recorded one. The salt that drives holdout assignment is fixed at launch, so
        assignment stays stable across versions; the hypothesis recorded at launch stays locked,
        and a later change of goal or hypothesis is written to the audit log. Two processes doing
        this at once collide on a unique key; the loser reads what the winner wrote.
        """
        for attempt in range(3):
            try:
                return self._sync_job(job, author)
            except (sa.exc.IntegrityError, ConcurrencyError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _sync_job(self, job: LoadedJob, author: str) -> JobRecord | None:
        with self.engine.begin() as connection:
            row = (
                connection.execute(sa.select(schema.jobs).where(schema.jobs.c.name == job.name))
                .mappings()
                .first()
            )
            if row is None:
                return None
            version, _ = record_definition(
                connection, "job", job.name, job.content_hash, job.definition, author, utc_now()
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
                self.audit(
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
                row["status"],
                row["revision"],
            )

    def planned_launch(self, job: LoadedJob, at: datetime) -> JobRecord:
        """The record a draft gets if it launches at ``at``; nothing is written.

        The version is the job's latest recorded one when its content is unchanged, else the
        next; :meth:`record_launch` checks that it still is when it writes.
        """
        with self.engine.connect() as connection:
            latest = latest_version(connection, "job", job.name)
        version = 1 if latest is None else int(latest["version"])
        if latest is not None and latest["content_hash"] != job.content_hash:
            version += 1
        return JobRecord(
            job.name,
            launch_salt(job.name, at),
            version,
            job.content_hash,
            job.definition.holdout,
            at,
            "live",
            revision=1,
        )

    def record_launch(
        self, connection: Connection, job: LoadedJob, record: JobRecord, author: str
    ) -> JobRecord:
        """Write a launch in the caller's transaction (the first tick's, so a launch and its first
        tick are one). Two launchers collide on the job's primary key; a definition recorded
        meanwhile under another version number is a :class:`ConcurrencyError`."""
        version, _ = record_definition(
            connection, "job", job.name, job.content_hash, job.definition, author, utc_now()
        )
        if version != record.version:
            raise ConcurrencyError(
                f"job {job.name!r} got version {version} while launching as {record.version}"
            )
        at = record.launched_at
        connection.execute(
            schema.jobs.insert().values(
                name=job.name,
                salt=record.salt,
                current_version=version,
                content_hash=job.content_hash,
                holdout=job.definition.holdout,
                launched_at=at,
                hypothesis=json.dumps(
                    job.definition.hypothesis.model_dump(mode="json")
                    if job.definition.hypothesis
                    else None
                ),
                status="live",
                status_changed_at=at,
                revision=record.revision,
                planned_units=record.plan.units if record.plan else None,
                planned_baseline=record.plan.baseline if record.plan else None,
                planned_effect=record.plan.relative_effect if record.plan else None,
            )
        )
        self.audit(
            connection, author, "job.launched", job.name, {"version": version, "at": at.isoformat()}
        )
        return record

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
                self.audit(
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
            raise NotFoundError(
                f"job {name!r} has not been launched; launch it with `closeloop jobs launch`"
            )
        return JobRecord(
            row["name"],
            row["salt"],
            row["current_version"],
            row["content_hash"],
            row["holdout"],
            row["launched_at"],
            row["status"],
            row["revision"],
            (
                LaunchPlan(row["planned_units"], row["planned_baseline"], row["planned_effect"])
                if row["planned_units"] is not None
                else None
            ),
        )

    def last_tick(self, job_name: str) -> datetime | None:
        """The time of the job's latest processed tick (the natural "as of" for its report)."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.max(schema.ticks.c.at)).where(schema.ticks.c.job_name == job_name)
            ).scalar()
        return value if isinstance(value, datetime) else None

    def audit(
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
            rows = connection.execute(query).fetchall()
        import pyarrow as pa

        arrow_schema = enrollment_arrow_schema()
        # Column by column (a dict per row cost more than the query).
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(arrow_schema)
        return pa.Table.from_arrays(
            [
                pa.array(values, type=field.type)
                for values, field in zip(columns, arrow_schema, strict=True)
            ],
            schema=arrow_schema,
        )


def launch_salt(job_name: str, at: datetime) -> str:
    """The salt a job gets when it launches at ``at``; it fixes holdout assignment for good."""
    return hashlib.sha256(f"{job_name}|{at.isoformat()}".encode()).hexdigest()[:16]


@functools.cache
def enrollment_arrow_schema() -> pa.Schema:
    """The published copy's Arrow schema: exactly the warehouse's columns and types
    (data.tables.ENROLLMENTS). Built on first use: it loads Ibis and Arrow, which commands that
    only read the store (``users list``) never need."""
    return ENROLLMENTS.ibis_schema().to_pyarrow()


HEAD_REVISION = "0011"
"""The newest migration in ``engine/migrations/versions`` (a test keeps it equal to Alembic's
head): a store already there is opened without loading Alembic. A new migration updates it."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # Switching a new database to WAL needs it to itself: when several processes open a new
    # store at once, SQLite answers "locked" at once instead of waiting, so wait here.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
    # SQLAlchemy, not the driver, opens transactions (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    """Every SQLite transaction takes the write lock when it begins.

    A deferred transaction that read and then writes fails at once (SQLITE_BUSY) when another
    writer committed in between; an immediate one waits its turn (up to the busy timeout), so
    concurrent ticks and dispatchers serialise their writes instead of failing. Readers in WAL
    mode are never blocked.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")
