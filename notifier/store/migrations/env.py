"""Alembic environment: always run by Store.open / `tariff-notifier migrate` on a given
connection (never from alembic.ini), so SQLite and PostgreSQL take the same path."""

from __future__ import annotations

from alembic import context

from notifier.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
