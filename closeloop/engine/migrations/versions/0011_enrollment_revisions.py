"""Enrollments carry a revision, so the warehouse's copy is brought up to date incrementally.

* ``enrollments.revision``: set by the database itself on every insert and update, whoever writes
  (a tick, a stop, an opt-out, a future writer), so no writer can forget it. On SQLite, where
  writers are serialised, it is one more than the largest revision so far; on PostgreSQL it is the
  writing transaction's id (``txid_current()``), and a publisher reads everything at or above the
  oldest transaction still running when it last read (``engine.publish``).
* ``ix_enrollments_revision``, for "changed since".
* ``counters`` row ``enrollments_store``: a random number naming this store, so a warehouse that
  was last brought up to date from another store is copied again in full.

A later migration that rebuilds ``enrollments`` on SQLite (a batch operation with a table copy)
drops the triggers with the old table: it must create them again (:func:`create_triggers`).

Revision ID: 0011
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER enrollments_revision_insert AFTER INSERT ON enrollments
    BEGIN
        UPDATE enrollments
        SET revision = (SELECT coalesce(max(revision), 0) + 1 FROM enrollments)
        WHERE rowid = NEW.rowid;
    END
    """,
    # The insert trigger's own update changes the revision, so it does not fire this one.
    """
    CREATE TRIGGER enrollments_revision_update AFTER UPDATE ON enrollments
    WHEN NEW.revision IS OLD.revision
    BEGIN
        UPDATE enrollments
        SET revision = (SELECT coalesce(max(revision), 0) + 1 FROM enrollments)
        WHERE rowid = NEW.rowid;
    END
    """,
)

POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION closeloop_enrollment_revision() RETURNS trigger AS $$
    BEGIN
        NEW.revision := txid_current();
        RETURN NEW;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER enrollments_revision BEFORE INSERT OR UPDATE ON enrollments
    FOR EACH ROW EXECUTE FUNCTION closeloop_enrollment_revision()
    """,
)


def create_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_TRIGGERS if sqlite else POSTGRES_TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # A plain ADD COLUMN (no table rebuild on SQLite).
    op.add_column("enrollments", sa.Column("revision", sa.BigInteger))
    op.execute(
        "UPDATE enrollments SET revision = rowid"
        if sqlite
        else "UPDATE enrollments SET revision = txid_current()"
    )
    op.create_index("ix_enrollments_revision", "enrollments", ["revision"])
    create_triggers()
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.Integer))
    op.bulk_insert(counters, [{"name": "enrollments_store", "value": secrets.randbelow(2**31 - 1)}])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS enrollments_revision_insert")
        op.execute("DROP TRIGGER IF EXISTS enrollments_revision_update")
    else:
        op.execute("DROP TRIGGER IF EXISTS enrollments_revision ON enrollments")
        op.execute("DROP FUNCTION IF EXISTS closeloop_enrollment_revision()")
    op.execute("DELETE FROM counters WHERE name = 'enrollments_store'")
    op.drop_index("ix_enrollments_revision", "enrollments")
    # A plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: a rebuild reflects the table,
    # which cannot carry the expression-based unique index uq_enrollments_active_unit.
    op.drop_column("enrollments", "revision")
