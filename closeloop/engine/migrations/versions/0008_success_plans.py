"""Success plans: per-account objectives agreed with the customer, their renegotiations, their
values over time, and every version of each plan (``closeloop.engine.plans``).

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "success_plans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_success_plans_account_id", "success_plans", ["account_id"])
    op.create_table(
        "success_plan_versions",
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("success_plans.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("change", sa.String(500), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "plan_objectives",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("success_plans.id"), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("measure", sa.Text, nullable=False),
        sa.Column("baseline", sa.Float, nullable=False),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("target_date", sa.Date, nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("dropped_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_plan_objectives_plan_id", "plan_objectives", ["plan_id"])
    op.create_table(
        "plan_renegotiations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("objective_id", sa.Integer, sa.ForeignKey("plan_objectives.id"), nullable=False),
        sa.Column("old_target", sa.Float, nullable=False),
        sa.Column("old_target_date", sa.Date, nullable=False),
        sa.Column("new_target", sa.Float, nullable=False),
        sa.Column("new_target_date", sa.Date, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("agreed_by", sa.String(200), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_plan_renegotiations_objective_id", "plan_renegotiations", ["objective_id"])
    op.create_table(
        "plan_observations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("objective_id", sa.Integer, sa.ForeignKey("plan_objectives.id"), nullable=False),
        sa.Column("observed_at", sa.DateTime, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "ix_plan_observations_objective_id", "plan_observations", ["objective_id", "observed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_plan_observations_objective_id", table_name="plan_observations")
    op.drop_table("plan_observations")
    op.drop_index("ix_plan_renegotiations_objective_id", table_name="plan_renegotiations")
    op.drop_table("plan_renegotiations")
    op.drop_index("ix_plan_objectives_plan_id", table_name="plan_objectives")
    op.drop_table("plan_objectives")
    op.drop_table("success_plan_versions")
    op.drop_index("ix_success_plans_account_id", table_name="success_plans")
    op.drop_table("success_plans")
