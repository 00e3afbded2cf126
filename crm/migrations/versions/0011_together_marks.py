"""dedup_together: pairs of records a person marked "the same" (`crm-dedup include`, the review page's
"Add to this group"), with who and when, so that every later run puts them in one group, as
dedup_skips keeps the pairs marked "not duplicates" apart.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from crm.schema import dedup_together, metadata

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database created by migration 0002 from today's crm/schema.py has the table already
    bind = op.get_bind()
    if "dedup_together" not in sa.inspect(bind).get_table_names():
        metadata.create_all(bind, tables=[dedup_together], checkfirst=False)


def downgrade() -> None:
    op.drop_table("dedup_together")
