"""crm-dedup's own tables: runs, proposed groups, merge history, skips.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from crm.schema import DEDUP_TABLES, metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=list(DEDUP_TABLES))


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(DEDUP_TABLES))
