"""Upgrading a state store that already holds work: nothing is lost, new columns are filled."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic import command

from closeloop.engine import schema
from closeloop.engine.state import HEAD_REVISION, StateStore
from closeloop.errors import StateError
from support import Backends

AT = datetime(2024, 3, 1)


def test_upgrading_from_0001_keeps_enrollments_and_outbox_rows(backends: Backends) -> None:
    store = StateStore.connect(backends.state_url)
    try:
        config = store._alembic_config()
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        with store.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (name, salt, current_version, content_hash, holdout,"
                    " launched_at) VALUES ('Nudge', 's', 1, 'h', 0.2, :at)"
                ),
                {"at": AT},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO enrollments (enrollment_id, job_name, job_version, account_id,"
                    " arm, entered_at) VALUES ('e1', 'Nudge', 1, 'a1', 'treatment', :at)"
                ),
                {"at": AT},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO outbox (idempotency_key, enrollment_id, job_name, account_id,"
                    " step_index, channel, payload, status, attempts, created_at,"
                    " next_attempt_at) VALUES ('k1', 'e1', 'Nudge', 'a1', 0, 'email', '{}',"
                    " 'sent', 1, :at, :at)"
                ),
                {"at": AT},
            )
        store.migrate()
        store.check_migrated()
        with store.engine.begin() as connection:
            enrollment = connection.execute(sa.select(schema.enrollments)).mappings().one()
            outbox = connection.execute(sa.select(schema.outbox)).mappings().one()
            # Two people of one account may now enter the same job at the same tick.
            connection.execute(
                schema.enrollments.insert(),
                [
                    {
                        "enrollment_id": f"p{i}",
                        "job_name": "Nudge",
                        "job_version": 1,
                        "account_id": "a1",
                        "person_id": f"person-{i}",
                        "arm": "treatment",
                        "entered_at": AT,
                    }
                    for i in (1, 2)
                ],
            )
        assert enrollment["enrollment_id"] == "e1" and enrollment["person_id"] is None
        assert outbox["status"] == "sent" and outbox["due_at"] == AT
        if store.engine.dialect.name == "sqlite":
            with store.engine.connect() as connection:
                # The table rebuild turned foreign keys off; new connections have them again.
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


def test_head_revision_is_alembics_head() -> None:
    """``HEAD_REVISION`` lets a store at head open without Alembic; it must name the newest
    migration, or a store would be taken as up to date while a migration is missing."""
    from alembic.script import ScriptDirectory

    store = StateStore.connect("sqlite://")
    head = ScriptDirectory.from_config(store._alembic_config()).get_current_head()
    assert head == HEAD_REVISION


def test_a_store_at_an_older_migration_is_upgraded_and_one_at_head_left_alone(
    backends: Backends,
) -> None:
    store = StateStore.connect(backends.state_url)
    try:
        config = store._alembic_config()
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0009")
        with pytest.raises(StateError, match="at migration 0009"):
            store.check_migrated()
        store.migrate()
        store.check_migrated()
        assert store._current_revision() == HEAD_REVISION
        store.migrate()  # at head: nothing to do
        assert store._current_revision() == HEAD_REVISION
    finally:
        store.close()
