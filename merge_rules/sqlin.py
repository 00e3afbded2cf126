"""IN (...) lists for statements that are built once and run thousands of times.

SQLAlchemy's expanding IN parameters re-render the SQL on every execution; for the short lists of a
merge (2-3 records, a few links) a statement with one bound parameter per item, cached per list
length, runs several times cheaper. Long lists (bulk planning) keep the expanding form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

SMALL = 16  # lists up to this length get a statement of their own size


def size(values: Sequence[Any]) -> int | None:
    """The cache key of a list: its length when short, None (expanding) when long."""
    return len(values) if len(values) <= SMALL else None


def in_(column, name: str, n: int | None):
    if n is None:
        return column.in_(sa.bindparam(name, expanding=True))
    return column.in_([sa.bindparam(f"{name}_{i}") for i in range(n)])


def params(name: str, values: Sequence[Any], n: int | None) -> dict[str, Any]:
    if n is None:
        return {name: list(values)}
    return {f"{name}_{i}": v for i, v in enumerate(values)}
