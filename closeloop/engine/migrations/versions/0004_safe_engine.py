"""A state store that is safe under concurrency: job lifecycle and revision, one active enrollment
per unit, outbox details, opt-outs and referrals.

* ``jobs.status`` (live for every job launched before this migration), ``status_changed_at`` and
  ``revision``, which every change of a job's enrollments bumps (ticks compare and set it);
* a partial unique index: at most one active enrollment per (job, unit). Stores written by older
  versions may hold double enrollments made by overlapping ticks; before the index is created, the
  later duplicates are exited at their own entry time with reason ``duplicate``, so they are
  visible, not deleted, and reports stop counting them twice;
* ``outbox.detail`` and an index on ``outbox.enrollment_id``;
* ``optouts``, ``referrals`` and ``counters`` (with its ``contacts`` row: the revision ticks of
  different jobs compare and set under the contact policy).

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ACTIVE = "completed_at IS NULL AND exited_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="live"))
        batch.add_column(sa.Column("status_changed_at", sa.DateTime))
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("detail", sa.Text))
        batch.create_index("ix_outbox_enrollment", ["enrollment_id"])
    # Older overlapping ticks could enroll one unit twice: keep the earliest active enrollment.
    op.execute(
        f"""
        UPDATE enrollments SET exited_at = entered_at, exit_reason = 'duplicate'
        WHERE {_ACTIVE} AND EXISTS (
            SELECT 1 FROM enrollments AS earlier
            WHERE earlier.job_name = enrollments.job_name
              AND COALESCE(earlier.person_id, earlier.account_id)
                  = COALESCE(enrollments.person_id, enrollments.account_id)
              AND earlier.completed_at IS NULL AND earlier.exited_at IS NULL
              AND (earlier.entered_at < enrollments.entered_at
                   OR (earlier.entered_at = enrollments.entered_at
                       AND earlier.enrollment_id < enrollments.enrollment_id))
        )
        """
    )
    op.create_index(
        "uq_enrollments_active_unit",
        "enrollments",
        ["job_name", sa.text("coalesce(person_id, account_id)")],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    op.create_table(
        "optouts",
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("opted_out_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "referrals",
        sa.Column("idempotency_key", sa.String(80), primary_key=True),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(200)),
        sa.Column("from_job", sa.String(200), nullable=False),
        sa.Column("referred_at", sa.DateTime, nullable=False),
        sa.Column("consumed_at", sa.DateTime),
    )
    op.create_index("ix_referrals_open", "referrals", ["job_name", "consumed_at"])
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "contacts", "value": 0}])


def downgrade() -> None:
    op.drop_table("counters")
    op.drop_index("ix_referrals_open", "referrals")
    op.drop_table("referrals")
    op.drop_table("optouts")
    op.drop_index("uq_enrollments_active_unit", "enrollments")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_enrollment")
        batch.drop_column("detail")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("revision")
        batch.drop_column("status_changed_at")
        batch.drop_column("status")
