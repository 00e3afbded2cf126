"""users.signed_out_at: when the user last signed out of the review page. Its sessions live in signed
cookies, which the server cannot take back; a session begun before this moment is refused, so a
copied cookie stops working once its user signs out.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database created by migration 0001 from today's crm/schema.py has the column already
    if "signed_out_at" not in [c["name"] for c in sa.inspect(op.get_bind()).get_columns("users")]:
        op.add_column("users", sa.Column("signed_out_at", sa.DateTime))


def downgrade() -> None:
    # in place (SQLite 3.35+ drops a column): rebuilding users would trip the foreign keys to it
    op.drop_column("users", "signed_out_at")
