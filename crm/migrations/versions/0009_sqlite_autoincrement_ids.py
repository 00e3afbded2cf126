"""SQLite only: ids are never handed out twice (AUTOINCREMENT on every table with an integer id).

Without it SQLite gives a new row the highest deleted rowid again: after a merge dropped the repeated
phones of the duplicates (or hard-deleted them), the next e-mail added or record imported took their
ids, and undoing the merge refused ("exists again since the merge"), or with force overwrote the new
rows. PostgreSQL's sequences never reuse ids: nothing to do there.

SQLite cannot add AUTOINCREMENT to a table, so each one is rebuilt (its CREATE statement with the
primary key made AUTOINCREMENT, every row copied with its id, its indexes recreated), as the SQLite
ALTER TABLE documentation describes: with foreign keys off, since dropping the old table would
otherwise delete-check every row pointing at it. A foreign key check afterwards, and one transaction:
a failure leaves the database at 0008. sqlite_sequence then starts each table above its highest id
and above every id a stored merge deleted or added (its before/after images), so that those merges
can still be undone.

Downgrading keeps AUTOINCREMENT: the older code works on it, and dropping it would let ids be reused.

Revision ID: 0009
Revises: 0008
"""

import logging
import re

from alembic import op

from crm.store import StoreError

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

TABLES = ("users", "contacts", "companies", "leads", "communications", "deals", "invoices", "quotes",
          "activities", "history", "dedup_merges", "dedup_skips")

# the definitions crm/schema.py created through SQLAlchemy: "CREATE TABLE name (\n\tid INTEGER NOT NULL, ...,
# CONSTRAINT pk_name PRIMARY KEY (id), ...)"; with AUTOINCREMENT the key goes on the column
_NAME = re.compile(r'^CREATE TABLE\s+("?)(\w+)\1\s*\(')
_ID_COLUMN = re.compile(r'^(CREATE TABLE [^(]*\(\s*"?id"?\s+INTEGER\s+NOT NULL)(?=\s*,)')
_PK_CONSTRAINT = re.compile(r',\s*(?:CONSTRAINT\s+"?\w+"?\s+)?PRIMARY KEY\s*\(\s*"?id"?\s*\)')


def _autoincrement_sql(table: str, sql: str, new_name: str) -> str:
    out, renamed = _NAME.subn(f"CREATE TABLE {new_name} (", sql)
    out, keyed = _PK_CONSTRAINT.subn("", out)
    out, columns = _ID_COLUMN.subn(r"\1 PRIMARY KEY AUTOINCREMENT", out)
    if (renamed, keyed, columns) != (1, 1, 1):
        raise StoreError(
            f"Migration 0009 cannot rebuild the table {table}: its definition is not the one crm-dedup created "
            f"(expected an \"id INTEGER NOT NULL\" first column and \"PRIMARY KEY (id)\"), it is: {sql}. "
            "Nothing was changed; restore the table's definition (or a backup) and run `crm-dedup migrate` again.")
    return out


def _rebuild(conn, table: str) -> None:
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar()
    if sql is None or re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE):
        return  # created by today's schema (or not there: the table check of the store reports that)
    tmp = f"_autoincrement_{table}"
    create = _autoincrement_sql(table, sql, tmp)
    extras = [s for (s,) in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        (table,))]
    columns = ", ".join(f'"{r[1]}"' for r in conn.exec_driver_sql(f'PRAGMA table_info("{table}")'))
    count = conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one()
    conn.exec_driver_sql(create)
    conn.exec_driver_sql(f'INSERT INTO {tmp} ({columns}) SELECT {columns} FROM "{table}"')
    copied = conn.exec_driver_sql(f"SELECT count(*) FROM {tmp}").scalar_one()
    if copied != count:
        raise StoreError(f"Migration 0009 copied {copied} of the {count} rows of {table}; nothing was changed.")
    conn.exec_driver_sql(f'DROP TABLE "{table}"')
    conn.exec_driver_sql(f'ALTER TABLE {tmp} RENAME TO "{table}"')
    for statement in extras:  # (dropped with the old table; UNIQUE constraints come with the new one)
        conn.exec_driver_sql(statement)
    log.info("rebuilt %s with AUTOINCREMENT (%d rows)", table, count)


def _seed_sequences(conn) -> None:
    """Start each table's ids above its highest id and above the ids the stored merges deleted or added."""
    present = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
    top = {t: conn.exec_driver_sql(f'SELECT coalesce(max(id), 0) FROM "{t}"').scalar_one()
           for t in TABLES if t in present}
    for image in ("before_image", "after_image") if "dedup_merges" in present else ():
        for table, highest in conn.exec_driver_sql(
                f"SELECT img.key, max(CAST(json_extract(r.value, '$.id') AS INTEGER)) "
                f"FROM dedup_merges m, json_each(m.{image}) img, json_each(img.value) r GROUP BY img.key"):
            if table in top and highest is not None:
                top[table] = max(top[table], highest)
    seq = dict(conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all())
    for table, highest in top.items():
        if highest > seq.get(table, 0):
            if table in seq:
                conn.exec_driver_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table))
            else:
                conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest))


def _autoincrement_everywhere(conn) -> None:
    """Rebuild the tables that lack AUTOINCREMENT, with foreign keys off, in one transaction of its own.

    PRAGMA foreign_keys does nothing inside a transaction, and the store migrates in one: the revisions
    before this one (done, and stamped) are committed first, on the driver's connection."""
    raw = conn.connection.driver_connection
    if raw.in_transaction:
        raw.commit()
    fk_on = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        raw.execute("BEGIN IMMEDIATE")
        try:
            known = set(raw.execute("PRAGMA foreign_key_check").fetchall())
            for table in TABLES:
                _rebuild(conn, table)
            _seed_sequences(conn)
            broken = [r for r in raw.execute("PRAGMA foreign_key_check").fetchall() if r not in known]
            if broken:
                raise StoreError(f"Migration 0009 would leave rows pointing at missing records: {broken[:10]}; "
                                 "nothing was changed.")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
    finally:
        if fk_on:
            raw.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    sqls = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name IN ({})".format(
        ", ".join("?" * len(TABLES))), TABLES).scalars().all()
    if any(not re.search(r"\bAUTOINCREMENT\b", s, re.IGNORECASE) for s in sqls):
        _autoincrement_everywhere(conn)
    else:  # a database created by migrations 0001-0002 from today's crm/schema.py
        _seed_sequences(conn)


def downgrade() -> None:
    pass  # see the module docstring: AUTOINCREMENT stays
