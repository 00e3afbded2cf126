"""PostgreSQL only: the plans and pairs of proposed groups compressed with lz4 instead of pglz.

A run stores ~3 KB of plan JSON per group, which PostgreSQL compresses as it writes it (TOAST): with
pglz, storing the 122,600 groups of a million contacts took 11.9 s; with lz4, 7.9-8.5 s, the table
~5% larger. Rows written before keep their compression. Skipped where the server cannot use lz4
(before PostgreSQL 14, or built without it). Not declared in crm/schema.py: compression is no
column property SQLAlchemy describes.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from crm.migrations import lz4_available

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("plan", "pairs")


def _present(bind) -> list[str]:
    """The columns still in dedup_groups (a database made from today's schema has no plan there)."""
    names = {c["name"] for c in sa.inspect(bind).get_columns("dedup_groups")}
    return [c for c in COLUMNS if c in names]


def upgrade() -> None:
    bind = op.get_bind()
    if lz4_available(bind):
        for column in _present(bind):
            op.execute(f'ALTER TABLE dedup_groups ALTER COLUMN "{column}" SET COMPRESSION lz4')


def downgrade() -> None:
    bind = op.get_bind()
    if lz4_available(bind):
        for column in _present(bind):
            op.execute(f'ALTER TABLE dedup_groups ALTER COLUMN "{column}" SET COMPRESSION DEFAULT')
