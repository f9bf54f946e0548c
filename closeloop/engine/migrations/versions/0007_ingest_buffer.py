"""The ingestion buffer: Segment messages acknowledged to their sender, not yet in the warehouse.

A request is answered once its messages are here (the state store admits many writers; the
warehouse, a DuckDB file, only one process at a time). The flusher claims rows for a while
(``claimed_by``/``claimed_until``), writes them to the warehouse and deletes them; a flusher that
dies leaves its claim to expire and another takes the rows again (``closeloop.services.ingest``).

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_buffer",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("timestamp", sa.DateTime, nullable=False),
        sa.Column("token_id", sa.Integer),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.DateTime),
    )
    op.create_index("ix_ingest_buffer_claimed_until", "ingest_buffer", ["claimed_until"])


def downgrade() -> None:
    op.drop_index("ix_ingest_buffer_claimed_until", table_name="ingest_buffer")
    op.drop_table("ingest_buffer")
