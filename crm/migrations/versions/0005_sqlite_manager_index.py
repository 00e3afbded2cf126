"""SQLite only: a covering index for a manager's review list (filter on responsible_ids).

PostgreSQL carries responsible_ids in ix_dedup_groups_list (INCLUDE); SQLite has no INCLUDE, and a
JSON column may be an index key there, not on PostgreSQL. This index is therefore not declared in
crm/schema.py, which describes both backends.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAME = "ix_dedup_groups_managers_sqlite"
SQLITE_ONLY_INDEXES = (NAME,)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(NAME, "dedup_groups", ["entity_type", "status", "score", "tier", "run_id", "responsible_ids"],
                        if_not_exists=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index(NAME, table_name="dedup_groups")
