"""Alembic migrations of the CRM database (versions/), and what more than one of them needs."""

import sqlalchemy as sa


def lz4_available(bind) -> bool:
    """Whether this is a PostgreSQL server that can compress columns with lz4 (14+, built with it)."""
    if bind.dialect.name != "postgresql":
        return False
    row = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")).first()
    return row is not None and "lz4" in (row[0] or [])
