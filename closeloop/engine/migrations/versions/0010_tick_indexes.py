"""Indexes for ticks that scale: what a tick reads from the state store without a table scan.

- ``ix_enrollments_entered`` (``entered_at``, ``account_id``): the contact policy counts, for
  every tick that enrolls, the jobs each account entered within the last ``per_days`` days across
  all jobs; without it that is a scan of every enrollment ever made.

(``ix_outbox_enrollment``, used when an enrollment ends to cancel its pending reminders, came
with 0004.)

Revision ID: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_enrollments_entered", "enrollments", ["entered_at", "account_id"])


def downgrade() -> None:
    op.drop_index("ix_enrollments_entered", table_name="enrollments")
