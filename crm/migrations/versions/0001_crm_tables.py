"""The CRM tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from crm.schema import CRM_TABLES, metadata
from crm.store import refuse_existing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The first revision creates the tables as crm/schema.py defines them. Any later change to a table
# goes into a new revision with explicit operations, and tests/test_store.py checks that a migrated
# database has exactly the schema of crm/schema.py.
def upgrade() -> None:
    # a table of one of these names that is there already is not ours (Store.migrate refuses it
    # before it begins; this is for any other caller): creating over it would keep it as it is
    bind = op.get_bind()
    refuse_existing_tables(bind, CRM_TABLES)
    metadata.create_all(bind, tables=list(CRM_TABLES), checkfirst=False)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(CRM_TABLES))
