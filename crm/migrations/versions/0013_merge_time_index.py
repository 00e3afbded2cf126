"""Index the merges by entity and time: the review page finds the merge that took a soft-deleted
record among the merges made at the record's deleted_at (queries.merged_into reads dedup_merges by
entity_type and merged_at), which without it walks the table.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# name, table, columns: as crm/schema.py declares them
INDEXES = (
    ("ix_dedup_merges_merged_at", "dedup_merges", ["entity_type", "merged_at"]),
)


def upgrade() -> None:
    # a database created by migration 0002 from today's crm/schema.py has it already
    inspector = sa.inspect(op.get_bind())
    for name, table, columns in INDEXES:
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
