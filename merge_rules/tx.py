"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
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


# -- statements run on the driver's cursor ---------------------------------------------------------
#
# A merge runs about a dozen short statements. Through Connection.execute each costs far more Python
# than the database spends on it, and on PostgreSQL each is a round trip to the server. So the merge
# path compiles its statements once per dialect and runs them on the DBAPI cursor, through the same
# type processors SQLAlchemy applies (SQLite's datetimes as text, JSON). On PostgreSQL a phase's
# statements go in one round trip: the reads in psycopg's pipeline mode, the writes as one statement
# of data-modifying CTEs (PostgreSQL runs them all against one snapshot; a merge never writes the
# same row twice, so their order does not matter).

class Raw:
    """A Core statement compiled once for one dialect, run on the driver's cursor."""

    def __init__(self, stmt, dialect, column_keys: list[str] | None = None):
        self.stmt, self.dialect = stmt, dialect
        compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        if "POSTCOMPILE" in self.sql:
            raise ValueError("Raw statements take IN lists of a fixed length (crm.sqlin with a size)")
        self.order = list(compiled.positiontup) if dialect.positional else None
        self.processors = {name: proc for name, b in compiled.binds.items()
                           if (proc := b.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        self._positional = ([(n, self.processors.get(n)) for n in self.order] if self.order is not None else None)
        # literals (a constant table name in a UNION, values() constants) carry their own value
        self.defaults = {name: b.effective_value for name, b in compiled.binds.items() if not b.required}
        columns = (getattr(stmt, "exported_columns", None) if getattr(stmt, "is_dml", False)
                   else getattr(stmt, "selected_columns", None))
        self.result_types = [c.type for c in columns] if columns is not None else []
        self._result_processors: list | None = None
        # PostgreSQL: a write that returns nothing may go into one statement with others (Executor)
        self.cte_ok = bool(getattr(stmt, "is_dml", False)) and not self.result_types and not dialect.positional
        # the SQL split around its %(name)s parameters: text, name, text, name, ..., text
        self.pieces = re.split(r"%\((\w+)\)s", self.sql) if self.cte_ok else []

    def params(self, values: dict):
        values = {**self.defaults, **values} if self.defaults else values
        if self._positional is not None:
            return [proc(values[n]) if proc else values[n] for n, proc in self._positional]
        procs = self.processors
        return {n: procs[n](v) if n in procs else v for n, v in values.items()}

    def rows(self, rows: list, description) -> list[tuple]:
        if self._result_processors is None:
            self._result_processors = [t.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
                                       for t, d in zip(self.result_types, description)]
        procs = self._result_processors
        if not any(procs):
            return rows
        return [tuple(p(v) if p else v for p, v in zip(procs, row)) for row in rows]


class Done:
    """One statement's outcome: rowcount and rows (inside a pipeline, once the pipeline has run)."""

    def __init__(self, raw: Raw):
        self.raw = raw
        self.rowcount = -1
        self._rows: list = []
        self._description = None

    def take(self, cursor) -> None:
        self.rowcount = cursor.rowcount
        if self.raw.result_types:  # (building cursor.description costs, so only when rows come back)
            self._description = cursor.description if self.raw._result_processors is None else ()
            self._rows = cursor.fetchall()

    def rows(self) -> list[tuple]:
        return self.raw.rows(self._rows, self._description) if self._description is not None else []

    def scalar(self):
        return self.rows()[0][0]


class Executor:
    """Runs Raw statements on one SQLAlchemy connection, inside its transaction. Within
    ``pipeline()`` PostgreSQL statements are queued and sent together at the end of the block (on
    SQLite, where there are no round trips, they run at once); read a Done only after the block."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect
        self.pg = conn.dialect.name == "postgresql"
        self._queue: list | None = None
        self._cte_sql: dict[tuple, str] = {}
        self.begin()

    def begin(self) -> None:
        """Look the driver's connection up again (SQLAlchemy may have replaced it after an error);
        call at the start of each transaction."""
        self.driver = self.conn.connection.driver_connection
        self._cursor = None if self.pg else self.driver.cursor()  # SQLite: results are read at once

    def _wrap(self, exc: Exception, sql: str | None, params=None) -> sa.exc.DBAPIError:
        # the same exception classes Connection.execute raises, so retrying() and the callers'
        # IntegrityError handling work unchanged
        return sa.exc.DBAPIError.instance(sql, params, exc, self.dialect.loaded_dbapi.Error, dialect=self.dialect)

    def run(self, raw: Raw, values: dict) -> Done:
        done, params = Done(raw), raw.params(values)
        if self._queue is not None:
            self._queue.append((raw, params, done))
            return done
        cur = self._cursor or self.driver.cursor()
        try:
            cur.execute(raw.sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap(exc, raw.sql, params) from exc
        done.take(cur)
        return done

    @contextmanager
    def pipeline(self) -> Iterator[Executor]:
        if not self.pg or self._queue is not None:
            yield self
            return
        self._queue = queue = []
        try:
            yield self
        finally:
            self._queue = None
        if queue:
            self._send(queue)

    def _send(self, queue: list) -> None:
        drv = self.driver
        try:
            if len(queue) > 1 and all(raw.cte_ok for raw, _p, _d in queue):
                # writes: one statement of data-modifying CTEs, whose SELECT returns each row count
                import psycopg  # only on PostgreSQL

                shape = tuple(raw for raw, _v, _d in queue)
                sql = self._cte_sql.get(shape)
                if sql is None:
                    if len(self._cte_sql) > 2000:  # shapes are few in practice; never grow without bound
                        self._cte_sql.clear()
                    sql = self._cte_sql[shape] = _cte_statement(shape)
                args = [values[name] for raw, values, _d in queue for name in raw.pieces[1::2]]
                # PostgreSQL's own $n placeholders: psycopg need not parse a query it sees once
                cur = psycopg.RawCursor(drv)
                cur.execute(sql, args)
                counts = cur.fetchone()
                for (_raw, _values, done), n in zip(queue, counts):
                    done.rowcount = n
                return
            # reads: psycopg's pipeline mode, the statements prepared once and sent together
            with drv.pipeline():
                cursors = []
                for raw, params, _done in queue:
                    cur = drv.cursor()
                    cur.execute(raw.sql, params)
                    cursors.append(cur)
            for cur, (_raw, _params, done) in zip(cursors, queue):
                done.take(cur)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap(exc, None) from exc


def _cte_statement(raws: tuple[Raw, ...]) -> str:
    """WITH w0 AS (<write> RETURNING 1), w1 AS (...) SELECT (SELECT count(*) FROM w0), ...: the
    writes' parameters numbered $1, $2, ... in order."""
    parts, n = [], 0
    for i, raw in enumerate(raws):
        parts.append(f"w{i} AS (")
        for j, piece in enumerate(raw.pieces):
            if j % 2:
                n += 1
                parts.append(f"${n}")
            else:
                parts.append(piece)
        parts.append(" RETURNING 1)" + (",\n" if i < len(raws) - 1 else "\n"))
    return "WITH " + "".join(parts) + "SELECT " + ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(raws)))
