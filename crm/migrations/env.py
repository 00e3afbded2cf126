"""Alembic environment: always run programmatically by crm.store.Store.migrate (a connection is passed in)."""

from alembic import context

from crm.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
