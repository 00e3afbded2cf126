"""dedup_groups.left_out: the records a run left out of a group although they are probable or better
with one of its members (a "not duplicates" mark or the chaining guard kept them apart), so that the
review page and `crm-dedup groups` can show them beside the group.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database created by migration 0001/0002 from today's crm/schema.py has the column already
    if "left_out" not in [c["name"] for c in sa.inspect(op.get_bind()).get_columns("dedup_groups")]:
        op.add_column("dedup_groups", sa.Column("left_out", sa.JSON))


def downgrade() -> None:
    op.drop_column("dedup_groups", "left_out")
