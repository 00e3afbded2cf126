"""Merge plans in a table of their own (dedup_plans), keyed by group and run, instead of
dedup_groups.plan.

A run writes each chunk of plans as soon as it is made; replacing the pending groups at the end is
then one short transaction over small rows (at a million contacts, ~380 MB of plans no longer
written, checked and checkpointed while the write lock is held). Existing plans are moved over.
On PostgreSQL the plans are compressed with lz4 where the server can (as migration 0006 did for the
column they leave).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from crm.migrations import lz4_available
from crm.schema import dedup_plans

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _columns(bind, table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(bind).get_columns(table)]


def upgrade() -> None:
    bind = op.get_bind()
    # a database created by migration 0002 from today's crm/schema.py has the table already
    dedup_plans.create(bind, checkfirst=True)
    if "plan" in _columns(bind, "dedup_groups"):
        # (a skipped group's plan may have been stored as JSON null: no plan)
        text = "CAST(plan AS TEXT)" if bind.dialect.name == "postgresql" else "plan"
        op.execute("INSERT INTO dedup_plans (group_id, run_id, plan) "
                   f"SELECT id, run_id, plan FROM dedup_groups WHERE plan IS NOT NULL AND {text} <> 'null'")
        op.drop_column("dedup_groups", "plan")
    if lz4_available(bind):
        op.execute('ALTER TABLE dedup_plans ALTER COLUMN "plan" SET COMPRESSION lz4')


def downgrade() -> None:
    bind = op.get_bind()
    op.add_column("dedup_groups", sa.Column("plan", sa.JSON))
    op.execute("UPDATE dedup_groups SET plan = (SELECT p.plan FROM dedup_plans p "
               "WHERE p.group_id = dedup_groups.id AND p.run_id = dedup_groups.run_id)")
    if lz4_available(bind):
        op.execute('ALTER TABLE dedup_groups ALTER COLUMN "plan" SET COMPRESSION lz4')
    op.drop_table("dedup_plans")
