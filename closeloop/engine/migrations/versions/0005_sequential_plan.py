"""The plan a job's always-valid results are tuned for, fixed at launch.

``jobs.planned_units`` (N*: the units the job was planned to enroll over its duration),
``planned_baseline`` (the completion rate the plan assumed) and ``planned_effect`` (the relative
lift it was planned to detect). They are written with the launch and never change, so the
always-valid interval of a look does not depend on how many units happen to be in by then. Jobs
launched before this migration have none (their reports say which default was used).

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("planned_units", sa.Float))
        batch.add_column(sa.Column("planned_baseline", sa.Float))
        batch.add_column(sa.Column("planned_effect", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("planned_effect")
        batch.drop_column("planned_baseline")
        batch.drop_column("planned_units")
