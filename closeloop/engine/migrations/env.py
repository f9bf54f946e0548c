"""Alembic environment: runs closeloop's state-store migrations on the connection it is handed."""

from __future__ import annotations

from alembic import context

from closeloop.engine.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
