"""Index the second record of a mark and the group of a merge: a record's "not duplicates" and "the
same" marks are read as id_a = X OR id_b = X (the pair's unique key serves only id_a), and the review
page looks up who just merged a group by dedup_merges.group_id.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# name, table, columns: as crm/schema.py declares them
INDEXES = (
    ("ix_dedup_skips_id_b", "dedup_skips", ["entity_type", "id_b"]),
    ("ix_dedup_together_id_b", "dedup_together", ["entity_type", "id_b"]),
    ("ix_dedup_merges_group_id", "dedup_merges", ["group_id"]),
)


def upgrade() -> None:
    # a database created by migration 0002 (or dedup_together by 0011) from today's crm/schema.py has
    # them already
    inspector = sa.inspect(op.get_bind())
    for name, table, columns in INDEXES:
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
