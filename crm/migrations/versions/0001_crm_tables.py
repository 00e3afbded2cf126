"""The CRM tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from crm.schema import CRM_TABLES, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The first revision creates the tables as crm/schema.py defines them. Any later change to a table
# goes into a new revision with explicit operations, and tests/test_store.py checks that a migrated
# database has exactly the schema of crm/schema.py.
def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=list(CRM_TABLES))


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(CRM_TABLES))
