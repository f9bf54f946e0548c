"""Person-target enrollments and outbox due times.

``enrollments.person_id`` is set for jobs whose target is a person. Several people of one account
can enter a job at the same tick, so the (job, account, entered_at) uniqueness goes: the
enrollment id (a hash of job, unit and entry time) is the primary key and already unique.
``outbox.due_at`` keeps when a message fell due, which retries move ``next_attempt_at`` away from;
a reminder whose enrollment ended before ``due_at`` is cancelled.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a constraint by rebuilding the table, and the outbox references it: that
        # needs foreign keys off (https://www.sqlite.org/lang_altertable.html#otheralter). The
        # pragma only takes effect before the migration's first write (on a store at 0001);
        # a fresh store has no rows to check. StateStore.migrate drops the connection after.
        op.execute("PRAGMA foreign_keys = OFF")
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("person_id", sa.String(200)))
        batch.drop_constraint("uq_enrollment", type_="unique")
        batch.create_index("ix_enrollments_unit", ["job_name", "account_id", "person_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime))
    outbox = sa.table("outbox", sa.column("due_at", sa.DateTime), sa.column("created_at"))
    op.execute(outbox.update().values(due_at=outbox.c.created_at))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("due_at")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_index("ix_enrollments_unit")
        batch.create_unique_constraint("uq_enrollment", ["job_name", "account_id", "entered_at"])
        batch.drop_column("person_id")
