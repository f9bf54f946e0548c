"""The split each tick used, per arm, for jobs with adaptive (Thompson) allocation.

A report checks the sample ratio of variants against these shares, weighted by how many units
entered at each tick, since the split changes from tick to tick.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tick_allocations",
        sa.Column("job_name", sa.String(200), sa.ForeignKey("jobs.name"), primary_key=True),
        sa.Column("at", sa.DateTime, primary_key=True),
        sa.Column("arm", sa.String(64), primary_key=True),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("probability_best", sa.Float),
        sa.Column("matured", sa.Integer, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tick_allocations")
