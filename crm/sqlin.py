"""IN (...) lists for statements that are built once and run thousands of times.

SQLAlchemy's expanding IN parameters re-render the SQL on every execution; for the short lists of a
merge (2-3 records, a few links) a statement with one bound parameter per item, cached per list
length, runs several times cheaper. Long lists (bulk planning) keep the expanding form, or on
PostgreSQL become one array parameter (``= ANY(...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

SMALL = 16  # lists up to this length get a statement of their own size
ARRAY = "array"  # a long list on PostgreSQL: one array parameter


def size(values: Sequence[Any], dialect: str | None = None) -> int | str | None:
    """The cache key of a list: its length when short; when long, ARRAY on PostgreSQL (``dialect``),
    else None (expanding)."""
    if len(values) <= SMALL:
        return len(values)
    return ARRAY if dialect == "postgresql" else None


def in_(column, name: str, n: int | str | None):
    if n == ARRAY:
        # = ANY(array): PostgreSQL gets one parameter, not thousands. With an expanding IN of 2,000
        # ids psycopg spent ~25 ms splitting each statement's text into its placeholders, and the
        # server parsed them all; bulk planning ran such statements hundreds of times.
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    if n is None:
        return column.in_(sa.bindparam(name, expanding=True))
    return column.in_([sa.bindparam(f"{name}_{i}") for i in range(n)])


def params(name: str, values: Sequence[Any], n: int | str | None) -> dict[str, Any]:
    if n is None or n == ARRAY:
        return {name: list(values)}
    return {f"{name}_{i}": v for i, v in enumerate(values)}
