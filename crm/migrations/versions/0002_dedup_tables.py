"""crm-dedup's own tables: runs, proposed groups, merge history, skips.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from crm.schema import DEDUP_TABLES, metadata
from crm.store import refuse_existing_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a table of one of these names that is there already is not ours (Store.migrate refuses it
    # before it begins; this is for any other caller): creating over it would keep it as it is
    bind = op.get_bind()
    refuse_existing_tables(bind, DEDUP_TABLES)
    metadata.create_all(bind, tables=list(DEDUP_TABLES), checkfirst=False)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(DEDUP_TABLES))
