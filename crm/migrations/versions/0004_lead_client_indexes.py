"""Index the lead's links to the client it duplicates (merges re-link and check them).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# A database created at revision 0001 by this version already has them (0001 builds the tables as
# crm/schema.py declares them), hence if_not_exists.
def upgrade() -> None:
    op.create_index("ix_leads_contact_id", "leads", ["contact_id"], if_not_exists=True)
    op.create_index("ix_leads_company_id", "leads", ["company_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_leads_company_id", table_name="leads")
    op.drop_index("ix_leads_contact_id", table_name="leads")
