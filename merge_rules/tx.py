"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL: deadlock_detected, serialization_failure. The transaction is rolled back; run it again.
RETRY_SQLSTATES = {"40P01", "40001"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@contextmanager
def write_transaction(conn: Connection, *, durable: bool = True) -> Iterator[Connection]:
    """One write transaction on ``conn``: committed at the end, rolled back on any error.

    On SQLite it starts with BEGIN IMMEDIATE, taking the database's write lock before reading, so
    that what is read cannot change before it is written. On PostgreSQL the rows are locked by the
    callers' SELECT ... FOR UPDATE. ``durable=False`` (PostgreSQL) commits without waiting for the
    WAL flush (synchronous_commit off, for this transaction only): still atomic, but a crash of the
    server may lose the last few commits, as SQLite's WAL with synchronous=NORMAL may.
    """
    if conn.in_transaction():
        conn.rollback()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        if not durable:
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def retrying(func: Callable[[], T], attempts: int = 4) -> T:
    """Run ``func`` (a whole transaction) again when PostgreSQL aborted it for a deadlock."""
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except sa.exc.DBAPIError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state not in RETRY_SQLSTATES or attempt == attempts:
                raise
            log.info("transaction aborted (%s), retrying (attempt %d)", state, attempt + 1)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
