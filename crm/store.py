"""The CRM database: opened from a URL, migrated with Alembic, read into pandas in chunks, written in batches."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine, processors

from crm import schema

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///data/crm.db"
ENV_VAR = "CRM_DEDUP_DB"
MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(Exception):
    """A database problem a user can act on; the message says what to do."""


# PostgreSQL URLs as people write them (libpq's postgres://, SQLAlchemy's with another driver): the
# server is the same whatever the client library, and psycopg (3) is the one installed
_POSTGRES_SCHEMES = re.compile(r"^(?:postgres|postgresql)(?:\+(?:psycopg2|psycopg2cffi|psycopg|asyncpg|pg8000))?://")


def resolve_url(url: str | None = None) -> str:
    """The URL given, else $CRM_DEDUP_DB, else the embedded SQLite default; a PostgreSQL URL of any
    spelling (postgres://, postgresql://, postgresql+psycopg2://...) is made psycopg's."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    return _POSTGRES_SCHEMES.sub("postgresql+psycopg://", url, count=1)


def hide_password(url: str) -> str:
    """A URL as it may be shown, its password starred, even when it cannot be parsed."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # (a port that is no number is a ValueError)
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


class Store:
    """One CRM database. ``Store(url)`` connects; ``migrate()`` creates or upgrades the schema."""

    def __init__(self, url: str | None = None, *, must_exist: bool = False, echo: bool = False):
        self.url = resolve_url(url)
        try:
            parsed = sa.engine.make_url(self.url)
            parsed.port  # noqa: B018 - read here: a port that is no number raises ValueError
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise StoreError(
                f"The database URL {hide_password(self.url)!r} is not a valid URL. "
                "Use sqlite:///path/to/crm.db or postgresql://user@host:5432/dbname."
            ) from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql") or (self.dialect == "sqlite" and parsed.drivername not in ("sqlite", "sqlite+pysqlite")):
            raise StoreError(f"Unsupported database {parsed.drivername!r} in {hide_password(self.url)!r}: use "
                             "sqlite:///path/to/crm.db or postgresql://user@host:5432/dbname.")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            path = parsed.database
            if path and path != ":memory:":
                p = Path(path)
                if must_exist and not p.exists():
                    # the path looked at, in full: sqlite:///tmp/x.db is tmp/x.db under the working directory
                    relative = "" if p.is_absolute() else (
                        f" ({path} is relative to the working directory; sqlite:////{path} with four slashes "
                        f"names the absolute path /{path})")
                    raise StoreError(
                        f"There is no database at {p.absolute()}{relative}. Create one with `crm-dedup demo` or "
                        f"`crm-dedup init --db {self.url}`, or point --db / ${ENV_VAR} at an existing one."
                    )
                p.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"Cannot connect to the database {parsed.render_as_string(hide_password=True)}: "
                f"{str(exc.orig).strip().splitlines()[0]}. Check that the server runs and the database exists."
            ) from exc
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    self._check_search_path(conn)
                # here too, not only in migrate: the CLI reports a StoreError of opening as one line
                self._refuse_tables_in_the_way(conn)
        except StoreError:
            self.engine.dispose()
            raise

    # -- schema -------------------------------------------------------------------------------

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def migrate(self) -> str:
        """Create the schema or upgrade it to the newest revision; returns that revision."""
        from alembic import command

        cfg = _alembic_config()
        with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                # pysqlite opens no transaction before DDL: without this, a failure after the first
                # CREATE TABLE would leave the tables made so far. IMMEDIATE: one migrate at a time.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            self._refuse_tables_in_the_way(conn)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self.revision() or ""

    def _check_search_path(self, conn: Connection) -> None:
        """PostgreSQL: refuse a search_path none of whose schemas exists (or may be used): nothing
        could be created or read, and the first CREATE TABLE would fail with "no schema has been
        selected to create in"."""
        if conn.execute(sa.text("SELECT current_schema()")).scalar() is not None:
            return
        path = conn.execute(sa.text("SHOW search_path")).scalar() or ""
        user = conn.execute(sa.text("SELECT current_user")).scalar()
        names = [n.strip().strip('"') for n in path.split(",") if n.strip()]
        names = [user if n == "$user" else n for n in names]
        if not names:
            raise StoreError(f"The database {self.display_url} has an empty search_path: name the schema to "
                             "work in in the URL (?options=-csearch_path%3Dname).")
        raise StoreError(
            f"The database {self.display_url} has no schema to work in: the schema(s) "
            f"{', '.join(names)} of its search_path do not exist (or the user {user} may not use them). "
            f"Create it (CREATE SCHEMA {names[0]}) or name an existing schema in the URL "
            "(?options=-csearch_path%3Dname).")

    def _refuse_tables_in_the_way(self, conn: Connection) -> None:
        """A database without crm-dedup's schema (no Alembic revision) must not hold a table of one
        of our names already: creating the schema would keep it as it is, stamp the revision, and the
        first query on a column it lacks would fail."""
        if MigrationContext.configure(conn).get_current_revision() is None:
            refuse_existing_tables(conn, schema.metadata.sorted_tables)

    def check_schema(self) -> None:
        """Refuse to work on a database without our schema or with an older one."""
        current, head = self.revision(), head_revision()
        if current is None:
            raise StoreError(
                f"The database {self.display_url} has no crm-dedup schema. Run `crm-dedup init` to create it."
            )
        if current != head:
            raise StoreError(
                f"The database {self.display_url} has schema revision {current}, this version needs {head}. "
                "Run `crm-dedup migrate` to upgrade it (back it up first)."
            )
        inspector = sa.inspect(self.engine)
        present = set(inspector.get_table_names())
        missing = sorted(set(schema.metadata.tables) - present)
        if missing:  # dropped by hand: the revision says all is there, so migrate would do nothing
            raise StoreError(
                f"The database {self.display_url} lacks the table(s) {', '.join(missing)} of its schema revision "
                f"{current}: they were dropped outside crm-dedup. Restore them from a backup, or create a new "
                "database with `crm-dedup init` and import the records."
            )
        # changed by hand, or another application's table an older `init` kept: a query would fail later
        found = {name: {c["name"]: c for c in columns} for (_, name), columns in
                 inspector.get_multi_columns(filter_names=list(schema.metadata.tables)).items()}
        problems = []
        for table in schema.metadata.sorted_tables:
            columns = found.get(table.name, {})
            lacking = [c.name for c in table.columns if c.name not in columns]
            # a column crm-dedup does not know is harmless, unless an insert must fill it
            unfilled = [name for name, c in columns.items() if name not in table.c and not c["nullable"]
                        and c.get("default") is None and not c.get("identity") and not c.get("computed")]
            if lacking:
                problems.append(f"{table.name} lacks the column(s) {', '.join(lacking)}")
            if unfilled:
                problems.append(f"{table.name} has the column(s) {', '.join(unfilled)}, unknown to crm-dedup, "
                                "which an insert must fill (NOT NULL without a default)")
        if problems:
            raise StoreError(
                f"The database {self.display_url} does not have the tables of its schema revision {current}: "
                f"{'; '.join(problems)}. They were changed outside crm-dedup, or are another application's "
                "tables an older `crm-dedup init` kept. Restore them from a backup, or create a new database "
                "with `crm-dedup init` and import the records."
            )

    def refresh_statistics(self) -> list[str]:
        """PostgreSQL: ANALYZE crm-dedup's tables whose planner statistics autovacuum would refresh by
        now (never analyzed, or more than 10% of their rows changed since). Where autovacuum is off,
        or has not caught up with a bulk load, the planner guesses: it looked up a chunk of 2,000
        contacts' communications by scanning every contact's (0.4-0.6 s, ~0.1 s with statistics),
        25 times per 1,000 groups planned. A table that cannot be analyzed now (locked for more than
        a few seconds, not ours to analyze) is logged and left as it is. Returns the tables
        analyzed (none on SQLite, whose planner takes the indexes without statistics)."""
        if self.dialect != "postgresql":
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT schemaname, relname FROM pg_stat_user_tables WHERE schemaname = current_schema()"
                " AND n_live_tup > 0 AND (coalesce(last_analyze, last_autoanalyze) IS NULL"
                " OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)")).all()
        stale = sorted((schema_name, table) for schema_name, table in rows if table in schema.metadata.tables)
        analyzed = []
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            quote = conn.dialect.identifier_preparer.quote
            conn.execute(sa.text("SET lock_timeout = '5s'"))
            try:
                for schema_name, table in stale:
                    try:
                        conn.execute(sa.text(f"ANALYZE {quote(schema_name)}.{quote(table)}"))
                        analyzed.append(table)
                    except sa.exc.DBAPIError as exc:  # the run goes on with the statistics there are
                        log.warning("could not refresh the planner statistics of %s: %s", table,
                                    str(exc.orig).strip().splitlines()[0])
            finally:
                conn.execute(sa.text("RESET lock_timeout"))  # (the connection goes back to the pool)
        return analyzed

    @property
    def display_url(self) -> str:
        return hide_password(self.url)

    # -- reading ------------------------------------------------------------------------------

    def read_query(self, query: sa.Select, chunksize: int = 200_000) -> Iterator[pd.DataFrame]:
        """Run a select and yield DataFrames of at most ``chunksize`` rows, streaming from the server."""
        with self.engine.connect().execution_options(stream_results=True) as conn:
            result = conn.execute(query)
            columns = list(result.keys())
            while rows := result.fetchmany(chunksize):
                yield pd.DataFrame.from_records(rows, columns=columns)

    def read_frame(self, query: sa.Select, chunksize: int = 200_000) -> pd.DataFrame:
        chunks = list(self.read_query(query, chunksize))
        if not chunks:
            with self.engine.connect() as conn:
                columns = list(conn.execute(query.limit(0)).keys())
            return pd.DataFrame(columns=columns)
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

    def read_entities(self, entity_type: str, *, include_deleted: bool = False,
                      chunksize: int = 200_000, since=None) -> pd.DataFrame:
        """All records of one entity type, one row each (communications not included)."""
        return self._read_on_driver(entities_query(entity_type, include_deleted, since), chunksize)

    def read_communications(self, entity_type: str, *, include_deleted: bool = False,
                            chunksize: int = 500_000) -> pd.DataFrame:
        """The phones, emails, websites and messengers of one entity type, one row per value."""
        return self._read_on_driver(communications_query(entity_type, include_deleted), chunksize)

    def communication_chunks(self, entity_type: str, *, include_deleted: bool = False,
                             chunksize: int = 500_000) -> Iterator[pd.DataFrame]:
        """read_communications a chunk of rows at a time, for a caller that need not hold them all."""
        return self._chunks_on_driver(communications_query(entity_type, include_deleted), chunksize)

    def _read_on_driver(self, query: sa.Select, chunksize: int) -> pd.DataFrame:
        """The frame ``read_frame(query, chunksize)`` returns, read on the driver's cursor (see
        _chunks_on_driver), its chunks joined."""
        chunks = list(self._chunks_on_driver(query, chunksize))
        if not chunks:
            return pd.DataFrame(columns=list(query.selected_columns.keys()))
        return _concat_chunks(chunks)

    def _chunks_on_driver(self, query: sa.Select, chunksize: int) -> Iterator[pd.DataFrame]:
        """The frame ``read_frame(query, chunksize)`` returns, read on the driver's cursor, in chunks.

        Through Connection.execute every value passes SQLAlchemy's rows and type processors one at a
        time, which costs more than the driver's own fetch. Here the compiled SELECT runs on the DBAPI
        cursor (on PostgreSQL a server-side cursor, as stream_results uses), each chunk becomes a
        DataFrame through the same ``from_records`` inference, and the one conversion SQLAlchemy does
        on the entity tables (SQLite keeps dates and datetimes as ISO text) is done a column at a
        time. A chunk holding a value in any other form goes through SQLAlchemy's processors value by
        value, so the frame is the same either way. For queries over the entity tables (read_frame
        stays the general path)."""
        dialect = self.engine.dialect
        compiled = query.compile(dialect=dialect)
        state = compiled.construct_expanded_state()
        values = {name: _bound(compiled, state, dialect, name, value) for name, value in state.parameters.items()}
        params = [values[name] for name in state.positiontup] if dialect.positional else values
        columns = list(query.selected_columns.keys())
        types = [c.type for c in query.selected_columns]
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            # PostgreSQL: a named cursor streams; its transaction ends when the pool resets the connection
            cursor = driver.cursor(name="crm_store_read") if self.dialect == "postgresql" else driver.cursor()
            try:
                with closing(cursor):
                    cursor.execute(state.statement, params)
                    procs = [t.dialect_impl(dialect).result_processor(dialect, d[1])
                             for t, d in zip(types, cursor.description)]
                    while rows := cursor.fetchmany(chunksize):
                        yield _rows_frame(rows, columns, procs)
            except dialect.loaded_dbapi.Error as exc:
                # the exception classes Connection.execute raises, for callers that catch them
                raise sa.exc.DBAPIError.instance(state.statement, params, exc, dialect.loaded_dbapi.Error,
                                                 dialect=dialect) from exc

    # -- writing ------------------------------------------------------------------------------

    def insert(self, table: sa.Table, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, *,
               batch_size: int = 10_000, conn: Connection | None = None, statement: sa.Insert | None = None) -> int:
        """Insert rows in batches, in one transaction (or in the caller's). Returns the count.
        ``statement``: the INSERT to run instead of ``table.insert()`` (a column bound differently)."""
        if isinstance(rows, pd.DataFrame):
            rows = _records(rows)
        if conn is None:
            with self.engine.begin() as own:
                return self.insert(table, rows, batch_size=batch_size, conn=own, statement=statement)
        statement = statement if statement is not None else table.insert()
        count, batch = 0, []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                conn.execute(statement, batch)
                count += len(batch)
                batch = []
        if batch:
            conn.execute(statement, batch)
            count += len(batch)
        return count

    def fix_sequences(self, conn: Connection | None = None) -> None:
        """After inserting explicit ids on PostgreSQL, move each id sequence past the largest id."""
        if self.dialect != "postgresql":
            return
        if conn is None:
            with self.engine.begin() as own:
                return self.fix_sequences(own)
        for table in schema.metadata.sorted_tables:
            if "id" in table.c and isinstance(table.c.id.type, sa.Integer) and table.c.id.primary_key:
                conn.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))

    def truncate_crm(self) -> None:
        """Empty every table (the demo generator starts from nothing)."""
        with self.engine.begin() as conn:
            for table in reversed(schema.metadata.sorted_tables):
                conn.execute(table.delete())

    # -- summaries ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts per table, live records per entity type and per responsible manager."""
        out: dict[str, Any] = {"url": self.display_url, "revision": self.revision(), "tables": {}, "per_manager": []}
        with self.engine.connect() as conn:
            for table in schema.CRM_TABLES + schema.DEDUP_TABLES:
                out["tables"][table.name] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            u = schema.users
            for entity, table in schema.ENTITY_TABLES.items():
                rows = conn.execute(
                    sa.select(u.c.name, sa.func.count(table.c.id))
                    .select_from(table.outerjoin(u, u.c.id == table.c.responsible_id))
                    .where(table.c.deleted_at.is_(None))
                    .group_by(u.c.name).order_by(u.c.name)
                ).all()
                out["per_manager"] += [{"entity": entity, "manager": n or "(nobody)", "records": c} for n, c in rows]
        return out

    def dispose(self) -> None:
        self.engine.dispose()

    # `with Store(url) as store:` (a notebook, a script) gives the connections back at the end
    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()


def refuse_existing_tables(conn: Connection, tables: Iterable[sa.Table]) -> None:
    """Raise StoreError naming those of ``tables`` the database (on PostgreSQL, its current schema)
    has already, as tables or views, before crm-dedup's schema is created: create_all would keep
    them as they are. Migrations 0001 and 0002 call it too."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names()) | set(inspector.get_view_names())
    clash = sorted(t.name for t in tables if t.name in present)
    if not clash:
        return
    url = conn.engine.url.render_as_string(hide_password=True)
    where = f"The schema {inspector.default_schema_name} of the database {url}" \
        if conn.dialect.name == "postgresql" else f"The database {url}"
    other = ("another database, or another schema (CREATE SCHEMA crm_dedup, then add "
             "?options=-csearch_path%3Dcrm_dedup to the URL)") if conn.dialect.name == "postgresql" \
        else "another database file"
    raise StoreError(
        f"{where} already has the table(s) {', '.join(clash)}, which crm-dedup did not create there: "
        "creating its schema would take them over as they are. Nothing was created. Use "
        f"{other}, or drop or rename those tables, then run `crm-dedup init`.")


def entities_query(entity_type: str, include_deleted: bool = False, since=None) -> sa.Select:
    """The SELECT of Store.read_entities: the records in id order, live ones only unless asked."""
    table = schema.ENTITY_TABLES[entity_type]
    query = sa.select(table)
    if not include_deleted:
        query = query.where(table.c.deleted_at.is_(None))
    if since is not None:
        query = query.where(table.c.modified_at > since)
    return query.order_by(table.c.id)


def communications_query(entity_type: str, include_deleted: bool = False) -> sa.Select:
    """The SELECT of Store.read_communications: by record, then by id; of live records unless asked."""
    comm, table = schema.communications, schema.ENTITY_TABLES[entity_type]
    query = sa.select(comm.c.entity_id, comm.c.type, comm.c.kind, comm.c.value).where(
        comm.c.entity_type == entity_type)
    if not include_deleted:
        live = sa.select(table.c.id).where(table.c.deleted_at.is_(None))
        query = query.where(comm.c.entity_id.in_(live))
    return query.order_by(comm.c.entity_id, comm.c.id)


# -- reading on the driver's cursor (Store._read_on_driver) ---------------------------------------

def _rows_frame(rows: list[tuple], columns: list[str], procs: list[Callable | None]) -> pd.DataFrame:
    """One chunk as read_query makes it: ``DataFrame.from_records`` of the rows after SQLAlchemy's
    result processors ``procs`` (None: the driver's value is kept). Not consolidated: the chunks are
    joined column by column."""
    converted = {}
    for i, proc in enumerate(procs):
        if proc is None:
            continue
        vectorised = _VECTORISED.get(proc)
        values = None
        if vectorised is not None:
            values = vectorised(np.fromiter(map(itemgetter(i), rows), dtype=object, count=len(rows)))
        if values is None:  # a value not in the form SQLAlchemy writes: its processors, value by value
            rows = [tuple(p(v) if p else v for p, v in zip(procs, row)) for row in rows]
            return pd.DataFrame.from_records(rows, columns=columns)
        converted[i] = values
    if not converted:
        return pd.DataFrame.from_records(rows, columns=columns)
    rest = pd.DataFrame.from_records(rows, columns=columns, exclude=[columns[i] for i in converted])
    return pd.DataFrame({name: converted[i] if i in converted else rest[name].to_numpy()
                         for i, name in enumerate(columns)}, copy=False)


def _iso_text(raw: np.ndarray, shape: str, fraction: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(missing mask, the other values) when every value of ``raw`` is None or a str of exactly
    ``shape`` (9: any ASCII digit), or with ``fraction`` also ``shape`` + '.999999'; else None. The
    shape check keeps numpy's parser to the strings Python's fromisoformat reads alike."""
    missing = np.equal(raw, None)
    values = raw[~missing]
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None
    text = values.astype(str) if len(values) else np.array([], dtype=f"U{len(shape)}")
    width = text.dtype.itemsize // 4
    full = len(shape) + 7 if fraction else len(shape)
    if width not in (len(shape), full):
        return None
    codes = text.view(np.uint32).reshape(len(text), width)
    ok = _matches(codes[:, :len(shape)], shape)
    if width > len(shape):  # shorter strings are padded with NUL by numpy: no fraction there
        tail = codes[:, len(shape):]
        ok &= np.where(tail[:, 0] == 0, (tail == 0).all(axis=1), _matches(tail, ".999999"))
    return (missing, values) if ok.all() else None


def _matches(codes: np.ndarray, shape: str) -> np.ndarray:
    lo = np.array([ord("0") if c == "9" else ord(c) for c in shape], dtype=np.uint32)
    hi = np.array([ord("9") if c == "9" else ord(c) for c in shape], dtype=np.uint32)
    return ((codes >= lo) & (codes <= hi)).all(axis=1)


# datetime64[ns] holds these (microseconds, as SQLite's text has them)
_NS_MIN = np.datetime64(pd.Timestamp.min.ceil("us").to_datetime64(), "us")
_NS_MAX = np.datetime64(pd.Timestamp.max.floor("us").to_datetime64(), "us")


def _bound(compiled, state, dialect, name: str, value):
    """A parameter as SQLAlchemy would send it: through its type's bind processor. On SQLite a
    datetime becomes the text SQLAlchemy stores ("2021-03-04 05:06:07.000000"); left to the driver
    it would take the sqlite3 module's adapter, which any imported library may replace (nbformat
    registers one writing "2021-03-04T05:06:07", which compares otherwise with the stored texts)."""
    if name in state.processors:
        return state.processors[name](value)
    bind = compiled.binds.get(name)
    process = bind.type.dialect_impl(dialect).bind_processor(dialect) if bind is not None else None
    return process(value) if process is not None else value


def _iso_datetimes(raw: np.ndarray) -> np.ndarray | None:
    """processors.str_to_datetime (datetime.fromisoformat) for a whole column of SQLite text, as
    from_records would type its result: datetime64[ns] with NaT for None, or the column itself when
    it is all None. None when a value is not 'YYYY-MM-DD HH:MM:SS[.ffffff]' or out of that range."""
    parsed = _iso_text(raw, "9999-99-99 99:99:99", fraction=True)
    if parsed is None:
        return None
    missing, values = parsed
    if missing.all():
        return raw
    try:
        stamps = values.astype("datetime64[us]")  # checks month, day, hour... as fromisoformat does
    except ValueError:
        return None
    if stamps.min() < _NS_MIN or stamps.max() > _NS_MAX:
        return None
    out = np.full(len(raw), np.datetime64("NaT", "ns"))
    out[~missing] = stamps.astype("datetime64[ns]")
    return out


def _iso_dates(raw: np.ndarray) -> np.ndarray | None:
    """processors.str_to_date (date.fromisoformat) for a whole column of SQLite text: an object
    array of datetime.date and None. None when a value is not 'YYYY-MM-DD' or not a valid date."""
    parsed = _iso_text(raw, "9999-99-99")
    if parsed is None:
        return None
    missing, values = parsed
    try:
        days = values.astype("datetime64[D]")
    except ValueError:
        return None
    if len(days) and days.min() < np.datetime64("0001-01-01"):  # numpy reads year 0, Python does not
        return None
    out = raw.copy()
    out[~missing] = days.astype(object)
    return out


_VECTORISED: dict[Callable, Callable[[np.ndarray], np.ndarray | None]] = {
    processors.str_to_datetime: _iso_datetimes,
    processors.str_to_date: _iso_dates,
}


def _concat_chunks(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(chunks, ignore_index=True)`` (one chunk: itself). When every chunk has the same
    columns and dtypes the columns are joined directly: the same frame, without pd.concat looking at
    each value of an object column that is all None (deleted_at) to decide its dtype, and left
    unconsolidated (consolidating copies every column once more)."""
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    if first.columns.is_unique and all(isinstance(d, np.dtype) for d in first.dtypes) \
            and all(c.columns.equals(first.columns) and c.dtypes.equals(first.dtypes) for c in chunks[1:]):
        frame = pd.DataFrame({name: np.concatenate([c[name].to_numpy() for c in chunks])
                              for name in first.columns}, copy=False)
        if frame.dtypes.equals(first.dtypes):
            return frame
    return pd.concat(_missing_typed_as_the_rest(chunks), ignore_index=True)


def _missing_typed_as_the_rest(chunks: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The chunks, where a column holds no value at all in some (None: from_records makes it object)
    and datetimes or floats in the others (deleted_at, an id with None), with it cast to their type. pd.concat
    leaves such columns out when it types the result, which pandas has deprecated: cast, they give
    the same frame now and after."""
    out = list(chunks)
    for name in chunks[0].columns:
        empty = [i for i, c in enumerate(chunks) if len(c) and c[name].isna().all()]
        if not empty or len(empty) == len(chunks):
            continue
        dtype = pd.concat([c[name] for i, c in enumerate(chunks) if i not in empty], ignore_index=True).dtype
        if dtype.kind in "Mf":
            for i in empty:
                if out[i][name].dtype != dtype:
                    out[i] = out[i].astype({name: dtype})
    return out


def _records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """DataFrame rows as dicts with None for missing values (NaN/NaT are not SQL NULL)."""
    frame = frame.astype(object).where(frame.notna(), None)
    for row in frame.itertuples(index=False, name=None):
        yield dict(zip(frame.columns, row))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
