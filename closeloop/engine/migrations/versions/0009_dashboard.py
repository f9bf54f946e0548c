"""The dashboard and the board report: people who log in, their sessions, the customer's
read-only links to a success plan, and the scheduled board reports already sent.

- ``users``: a name, a role (admin / editor / viewer) and a slow password hash (the password
  itself is never stored).
- ``web_sessions``: one row per login; only the SHA-256 of the session cookie is stored, with the
  CSRF token that every form and htmx write must echo. Logging out or removing the user revokes.
- ``plan_links``: a signed, expiring, revocable link that shows one account's success plan to the
  customer, read-only; only the SHA-256 of the link's token is stored.
- ``board_report_sends``: one row per (period, recipient) of the scheduled board report, claimed
  before the email is sent, so two daemons never send the same period twice.

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("last_login_at", sa.DateTime),
    )
    op.create_table(
        "web_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
    )
    op.create_index("ix_web_sessions_user_name", "web_sessions", ["user_name"])
    op.create_table(
        "plan_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("success_plans.id"), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
        sa.Column("last_opened_at", sa.DateTime),
    )
    op.create_index("ix_plan_links_plan_id", "plan_links", ["plan_id"])
    op.create_table(
        "board_report_sends",
        sa.Column("period", sa.String(40), primary_key=True),
        sa.Column("recipient", sa.String(320), primary_key=True),
        sa.Column("claimed_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("message_id", sa.String(500)),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("board_report_sends")
    op.drop_index("ix_plan_links_plan_id", table_name="plan_links")
    op.drop_table("plan_links")
    op.drop_index("ix_web_sessions_user_name", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
