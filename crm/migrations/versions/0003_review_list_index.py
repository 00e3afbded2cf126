"""The review list index also covers tier and run (and, on PostgreSQL, the managers).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_dedup_groups_list", table_name="dedup_groups")
    op.create_index("ix_dedup_groups_list", "dedup_groups", ["entity_type", "status", "score", "tier", "run_id"],
                    postgresql_include=["responsible_ids"])


def downgrade() -> None:
    op.drop_index("ix_dedup_groups_list", table_name="dedup_groups")
    op.create_index("ix_dedup_groups_list", "dedup_groups", ["entity_type", "status", "score"])
