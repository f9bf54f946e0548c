"""Initial state store: definition versions, jobs, enrollments, outbox, ticks, audit log.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "definition_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.UniqueConstraint("kind", "name", "version", name="uq_definition_version"),
    )
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("holdout", sa.Float, nullable=False),
        sa.Column("launched_at", sa.DateTime, nullable=False),
        sa.Column("hypothesis", sa.Text),
    )
    op.create_table(
        "enrollments",
        sa.Column("enrollment_id", sa.String(40), primary_key=True),
        sa.Column("job_name", sa.String(200), sa.ForeignKey("jobs.name"), nullable=False),
        sa.Column("job_version", sa.Integer, nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("entered_at", sa.DateTime, nullable=False),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("exited_at", sa.DateTime),
        sa.Column("exit_reason", sa.String(32)),
        sa.UniqueConstraint("job_name", "account_id", "entered_at", name="uq_enrollment"),
    )
    op.create_index(
        "ix_enrollments_job_active", "enrollments", ["job_name", "completed_at", "exited_at"]
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(80), nullable=False, unique=True),
        sa.Column(
            "enrollment_id",
            sa.String(40),
            sa.ForeignKey("enrollments.enrollment_id"),
            nullable=False,
        ),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "ticks",
        sa.Column("job_name", sa.String(200), sa.ForeignKey("jobs.name"), primary_key=True),
        sa.Column("at", sa.DateTime, primary_key=True),
        sa.Column("job_version", sa.Integer, nullable=False),
        sa.Column("entered", sa.Integer, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("exited", sa.Integer, nullable=False),
        sa.Column("processed_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    for table in ("audit_log", "ticks", "outbox", "enrollments", "jobs", "definition_versions"):
        op.drop_table(table)
