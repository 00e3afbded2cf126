"""The store on SQLite and PostgreSQL: migrations, schema identical to crm/schema.py, chunked reads,
batched writes, clear errors for bad URLs and old schemas."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from crm import schema
from crm.store import Store, StoreError, head_revision
from pipelines.cli import app

NOW = dt.datetime(2024, 5, 1, 12, 0)


def test_migrated_schema_is_exactly_the_declared_one(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    # migration 0005 adds one SQLite-only index that crm/schema.py cannot declare for both backends
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_dedup_groups_managers_sqlite")]
    assert diff == []
    assert store.revision() == head_revision()
    store.check_schema()


def test_a_store_used_in_a_with_block_gives_its_connections_back(db_url):
    with Store(db_url) as store:
        store.migrate()
        assert store.read_entities("contact").empty
        assert store.engine.pool.checkedin() > 0  # a connection kept for the next query
    assert store.engine.pool.checkedin() == 0


def test_migrate_is_idempotent_and_downgrade_then_upgrade_works(db_url):
    from alembic import command

    from crm.store import _alembic_config

    store = Store(db_url)
    assert store.migrate() == head_revision()
    assert store.migrate() == head_revision()
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with pytest.raises(StoreError, match="crm-dedup migrate"):
        store.check_schema()
    assert store.migrate() == head_revision()
    store.check_schema()


def test_migration_0008_adds_users_signed_out_at_and_takes_it_back_with_records_pointing_at_users(db_url):
    """Downgrading 0008 drops the column in place: rebuilding users would trip the foreign keys of
    the records whose responsible is a user (SQLite)."""
    from alembic import command

    from crm.store import _alembic_config
    from merge_rules.testing import load_sample

    store = Store(db_url)
    store.migrate()
    load_sample(store)
    before = store.stats()["tables"]
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    assert "signed_out_at" not in [c["name"] for c in sa.inspect(store.engine).get_columns("users")]
    assert store.migrate() == head_revision() and store.stats()["tables"] == before
    assert "signed_out_at" in [c["name"] for c in sa.inspect(store.engine).get_columns("users")]
    store.dispose()


def test_migration_0007_moves_the_plans_out_of_the_groups_and_back(db_url):
    """A database at revision 0006 keeps its plans in dedup_groups.plan: upgrading moves each group's
    plan to dedup_plans (under the group's run), downgrading puts it back."""
    from alembic import command

    from crm import proposals
    from crm.store import _alembic_config

    store = Store(db_url)
    store.migrate()
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    plan = {"primary_id": 1, "fields": {"last_name": {"value": "Иванов"}}}
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO dedup_runs (id, started_at, status, entity_types, folder) "
                             "VALUES ('r1', :t, 'completed', 'contact', '/tmp')"), {"t": NOW})
        for gid, value in (("contact-1", '{"primary_id": 1, "fields": {"last_name": {"value": "Иванов"}}}'),
                           ("contact-3", None)):
            conn.execute(sa.text(
                "INSERT INTO dedup_groups (id, entity_type, run_id, status, tier, score, primary_id, member_ids, "
                "responsible_ids, primary_reason, criteria, plan, pairs, updated_at) VALUES (:id, 'contact', 'r1', "
                "'pending', 'certain', 0.9, 1, '[1, 2]', '[]', 'oldest', 'phone', :plan, '[]', :t)"),
                {"id": gid, "plan": value, "t": NOW})
    store.migrate()
    groups = proposals.read_groups(store).set_index("id")
    assert groups.loc["contact-1", "plan"] == plan and groups.loc["contact-3", "plan"] is None
    assert "plan" not in [c["name"] for c in sa.inspect(store.engine).get_columns("dedup_groups")]
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with store.engine.connect() as conn:
        back = dict(conn.execute(sa.text("SELECT id, plan FROM dedup_groups")).all())
    assert back["contact-3"] is None
    stored = back["contact-1"]  # JSON text on SQLite, a value on PostgreSQL (json column)
    assert (json.loads(stored) if isinstance(stored, str) else stored) == plan
    store.dispose()


@pytest.mark.pg
def test_plans_are_compressed_with_lz4_on_postgresql():
    """Migrations 0006 and 0007: PostgreSQL compresses the proposed groups' pairs and their plans
    (in dedup_plans since 0007) with lz4 (cheaper to write than pglz); they read back as written.
    (SQLite has no such setting.)"""
    from alembic import command
    from conftest import drop_pg_schema, pg_schema_url

    from crm import proposals
    from crm.store import _alembic_config

    url, name = pg_schema_url()
    store = Store(url)

    def compression(table: str) -> dict[str, str]:
        with store.engine.connect() as conn:
            return dict(conn.execute(sa.text(
                f"SELECT attname, attcompression FROM pg_attribute WHERE attrelid = '{table}'::regclass "
                "AND attname IN ('plan', 'pairs')")).all())

    try:
        store.migrate()
        with store.engine.connect() as conn:
            if int(conn.execute(sa.text("SHOW server_version_num")).scalar()) < 140000:
                pytest.skip("PostgreSQL before 14 has one compression method")
            lz4 = conn.execute(sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                       "WHERE name = 'default_toast_compression'")).scalar()
        if not lz4:  # a server built without lz4: the migrations leave the columns as they were
            assert compression("dedup_groups") == {"pairs": ""} and compression("dedup_plans") == {"plan": ""}
            return
        assert compression("dedup_groups") == {"pairs": "l"} and compression("dedup_plans") == {"plan": "l"}
        proposals.start_run(store, "run-lz4", ["contact"], "/tmp")
        plan = {"fields": {"last_name": {"value": "Иванов " * 2000}}}  # large enough to be compressed
        proposals.replace_pending(store, "run-lz4", ["contact"], [
            {"id": "contact-1", "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": 1,
             "member_ids": [1, 2], "responsible_ids": [], "primary_reason": "oldest", "criteria": "phone",
             "plan": plan, "pairs": []}])
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_column_compression(plan) FROM dedup_plans")).scalar() == "lz4"
        assert proposals.read_groups(store)["plan"].iloc[0] == plan
        cfg = _alembic_config()
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        assert compression("dedup_groups") == {"plan": "", "pairs": ""}
        store.migrate()
        assert compression("dedup_groups") == {"pairs": "l"} and compression("dedup_plans") == {"plan": "l"}
        assert proposals.read_groups(store)["plan"].iloc[0] == plan  # moved back and forth with the column
    finally:
        store.dispose()
        drop_pg_schema(name)


def test_database_without_schema_says_run_init(db_url):
    store = Store(db_url)
    with pytest.raises(StoreError, match="crm-dedup init"):
        store.check_schema()


def _contacts(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(1, n + 1), "last_name": [f"Иванов{i}" for i in range(n)], "first_name": "Иван",
        "middle_name": None, "birthdate": [dt.date(1980, 1, 1 + i % 28) for i in range(n)],
        "responsible_id": None, "created_at": NOW, "modified_at": NOW, "deleted_at": None,
    })


def test_batched_write_and_chunked_read(store):
    n = 2500
    assert store.insert(schema.contacts, _contacts(n), batch_size=700) == n
    comms = [{"entity_type": "contact", "entity_id": i, "type": "phone", "kind": "mobile", "value": f"+7999{i:07d}"}
             for i in range(1, n + 1)]
    assert store.insert(schema.communications, comms, batch_size=999) == n
    chunks = list(store.read_query(sa.select(schema.contacts).order_by(schema.contacts.c.id), chunksize=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    frame = store.read_entities("contact", chunksize=400)
    assert len(frame) == n and frame["last_name"].iloc[0] == "Иванов0"
    assert frame["birthdate"].iloc[3] == dt.date(1980, 1, 4)
    comm = store.read_communications("contact")
    assert len(comm) == n and set(comm.columns) == {"entity_id", "type", "kind", "value"}
    # soft-deleted records and their communications are not read
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id <= 10).values(deleted_at=NOW))
    assert len(store.read_entities("contact")) == n - 10
    assert len(store.read_communications("contact")) == n - 10
    assert len(store.read_entities("contact", include_deleted=True)) == n


def test_tables_changed_since_their_statistics_are_analyzed(store, caplog):
    """After a bulk load the planner statistics are refreshed where autovacuum has not (PostgreSQL),
    once: a second call finds nothing to do. A table locked by someone else is left for the next run
    with a warning, and the run goes on. SQLite has nothing to refresh."""
    import time

    n = 500
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.insert(), _contacts(n).to_dict("records"))
    if store.dialect == "sqlite":
        assert store.refresh_statistics() == []
        return

    def stats(column: str):
        with store.engine.connect() as conn:
            return conn.execute(sa.text(
                f"SELECT {column} FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname = 'contacts'")).scalar()

    deadline = time.monotonic() + 30
    while not stats("n_live_tup") and time.monotonic() < deadline:
        time.sleep(0.2)  # the server's counters reach the view within a second or so
    if stats("coalesce(last_analyze, last_autoanalyze)") is None:  # (autovacuum, where on, may be first)
        with store.engine.connect() as locker:  # SHARE UPDATE EXCLUSIVE: what ANALYZE itself takes
            locker.execute(sa.text("LOCK TABLE contacts IN SHARE UPDATE EXCLUSIVE MODE"))
            assert "contacts" not in store.refresh_statistics()
            locker.rollback()
        assert "could not refresh the planner statistics of contacts" in caplog.text
        assert "contacts" in store.refresh_statistics()
    assert stats("coalesce(last_analyze, last_autoanalyze)") is not None
    assert store.refresh_statistics() == []


def test_a_failed_batch_writes_nothing(store):
    rows = _contacts(5).to_dict("records")
    rows[3]["created_at"] = None  # NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.insert(schema.contacts, rows, batch_size=2)
    assert store.read_entities("contact").empty


def test_stats_counts_tables_and_managers(store):
    store.insert(schema.users, [{"id": 1, "name": "Анна", "email": "a@example.com", "role": "manager"}])
    frame = _contacts(3).assign(responsible_id=[1, 1, None])
    store.insert(schema.contacts, frame)
    s = store.stats()
    assert s["tables"]["contacts"] == 3 and s["tables"]["users"] == 1
    managers = {(r["entity"], r["manager"]): r["records"] for r in s["per_manager"]}
    assert managers[("contact", "Анна")] == 2 and managers[("contact", "(nobody)")] == 1


def test_bad_urls_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="not a valid URL"):
        Store("not a url at all")
    with pytest.raises(StoreError, match="Unsupported database"):
        Store("mysql://root@localhost/test")
    # a password is never shown, whatever is wrong with the URL
    with pytest.raises(StoreError, match="Unsupported database") as refused:
        Store("mysql://root:S3cretPW@localhost/test")
    assert "S3cretPW" not in str(refused.value) and "root:***@localhost" in str(refused.value)
    with pytest.raises(StoreError, match="is not a valid URL") as refused:  # a port that is no number
        Store("postgresql://bob:S3cretPW@db.example:abc/crm")
    assert "S3cretPW" not in str(refused.value)
    with pytest.raises(StoreError, match="Unsupported database 'sqlite\+aiosqlite'"):
        Store(f"sqlite+aiosqlite:///{tmp_path}/async.db")
    with pytest.raises(StoreError, match="There is no database at"):
        Store(f"sqlite:///{tmp_path}/missing.db", must_exist=True)
    with pytest.raises(StoreError, match="Cannot connect"):
        Store("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database_here")


def test_a_table_dropped_by_hand_is_named(store):
    """The revision says every table is there, so `migrate` would change nothing: the check names the
    missing table instead of letting a command fail on it with a traceback."""
    store.check_schema()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE dedup_skips"))
    with pytest.raises(StoreError, match="lacks the table\\(s\\) dedup_skips of its schema revision"):
        store.check_schema()


def test_environment_variable_selects_the_database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("CRM_DEDUP_DB", url)
    assert Store().url == url
    # PostgreSQL as libpq (postgres://) and other drivers write it: psycopg, the one installed
    for spelling in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg", "postgresql+psycopg"):
        store = Store(f"{spelling}://postgres@127.0.0.1:5432/test")
        assert store.url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        store.dispose()


def test_cli_init_stats_and_errors(tmp_path):
    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/cli.db"
    result = runner.invoke(app, ["stats", "--db", url])
    assert result.exit_code == 2 and "There is no database" in result.output
    result = runner.invoke(app, ["init", "--db", url])
    assert result.exit_code == 0 and head_revision() in result.output
    result = runner.invoke(app, ["stats", "--db", url, "--json"])
    assert result.exit_code == 0 and '"contacts": 0' in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output and "merge" in result.output


def test_approving_more_groups_than_a_statement_takes_parameters(store):
    """`approve --tier certain` names every certain group: 70,000 ids (PostgreSQL takes at most 65,535
    parameters a statement) approve the pending ones among them, in one transaction."""
    from crm import proposals

    now = dt.datetime(2026, 1, 1)
    store.insert(schema.users, [{"id": 1, "name": "Админ", "email": "a@example.com", "role": "admin"}])
    store.insert(schema.dedup_runs, [{"id": "r1", "started_at": now, "status": "completed", "entity_types": "contact"}])
    store.insert(schema.dedup_groups, [
        {"id": f"contact:{i}", "entity_type": "contact", "run_id": "r1", "status": "skipped" if i == 3 else "pending",
         "tier": "certain", "score": 0.99, "primary_id": i, "member_ids": [i, i + 1000], "responsible_ids": [],
         "primary_reason": "", "criteria": "", "updated_at": now} for i in range(1, 6)])
    ids = [f"contact:{i}" for i in range(70_000, 0, -1)]
    assert proposals.set_status(store, ids, "approved", 1) == 4
    groups = proposals.read_groups(store).set_index("id")
    assert groups.loc["contact:3", "status"] == "skipped"
    assert (groups.drop(index="contact:3")["status"] == "approved").all()
    assert (groups.drop(index="contact:3")["approved_by"] == 1).all()


# -- a database that is not (only) crm-dedup's ----------------------------------------------------

def _tables(url: str) -> dict[str, list[str]]:
    """Every table of the database (PostgreSQL: of the test's schema) with its columns."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def _run_sql(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def _one_line_error(result) -> str:
    """The CLI refused with its one-line error (no traceback); returns that line."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_init_refuses_a_database_that_has_a_table_of_ours_already_and_creates_nothing(db_url):
    """Another application's `users`: init names it and what to do, and neither creates a table nor
    stamps a revision (before, it kept the table, stamped the head revision and failed on users.role)."""
    _run_sql(db_url, "CREATE TABLE users (id int PRIMARY KEY, login text)")
    line = _one_line_error(CliRunner().invoke(app, ["init", "--db", db_url]))
    assert "already has the table(s) users," in line and "drop or rename those tables" in line
    assert ("another schema" in line) == db_url.startswith("postgresql")
    assert _tables(db_url) == {"users": ["id", "login"]}
    # every other command says the same (it used to die on an SQL error)
    line = _one_line_error(CliRunner().invoke(app, ["stats", "--db", db_url]))
    assert "already has the table(s) users," in line
    with pytest.raises(StoreError, match=r"already has the table\(s\) users,"):
        Store(db_url)
    # a table that appears between opening and migrating: migrate checks again, in its transaction
    _run_sql(db_url, "DROP TABLE users")
    store = Store(db_url)
    _run_sql(db_url, "CREATE TABLE dedup_runs (id text PRIMARY KEY)", "CREATE TABLE users (id int PRIMARY KEY)")
    with pytest.raises(StoreError, match=r"already has the table\(s\) dedup_runs, users,"):
        store.migrate()
    assert store.revision() is None and set(_tables(db_url)) == {"dedup_runs", "users"}
    store.dispose()


def test_a_migration_that_refuses_leaves_nothing_half_made(db_url, monkeypatch):
    """Migration 0002 refuses a dedup table that is there already after 0001 created the CRM tables
    (Store.migrate's own check left out, as for a caller running the migrations another way): the
    whole upgrade is one transaction on both backends, so not one table or revision stays."""
    store = Store(db_url)
    _run_sql(db_url, "CREATE TABLE dedup_skips (id int PRIMARY KEY, why text)")
    monkeypatch.setattr(Store, "_refuse_tables_in_the_way", lambda self, conn: None)
    with pytest.raises(StoreError, match=r"already has the table\(s\) dedup_skips,"):
        store.migrate()
    assert store.revision() is None
    assert _tables(db_url) == {"dedup_skips": ["id", "why"]}
    store.dispose()


def test_check_schema_names_the_columns_a_table_of_ours_lacks(store):
    store.check_schema()
    _run_sql(store.url, "ALTER TABLE users DROP COLUMN department")
    with pytest.raises(StoreError, match=r"users lacks the column\(s\) department\. They were changed outside"):
        store.check_schema()


def test_a_database_an_older_init_made_over_another_table_is_reported_not_queried(db_url):
    """What `init` made before it refused: another application's users kept, the rest created and
    the head revision stamped. Every command names the table and its columns instead of failing on
    the first query of users.role."""
    from alembic import command

    from crm.store import _alembic_config

    _run_sql(db_url, "CREATE TABLE users (id int PRIMARY KEY, login text NOT NULL)")
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn)  # checkfirst, as migration 0001 did
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")
    engine.dispose()
    store = Store(db_url)
    with pytest.raises(StoreError) as refused:
        store.check_schema()
    assert "users lacks the column(s) name, email, phone, role, department, password_hash, signed_out_at; " \
           "users has the column(s) login, unknown to crm-dedup, which an insert must fill" in str(refused.value)
    store.dispose()
    line = _one_line_error(CliRunner().invoke(app, ["stats", "--db", db_url]))
    assert "users lacks the column(s) name, email" in line


@pytest.mark.pg
def test_a_postgresql_schema_missing_from_the_search_path_is_named():
    from conftest import PG_ADMIN_URL, require_pg

    require_pg()
    url = f"{PG_ADMIN_URL}?options=-csearch_path%3Dt_missing_schema_x"
    with pytest.raises(StoreError, match="the schema\\(s\\) t_missing_schema_x of its search_path do not exist"):
        Store(url)
    line = _one_line_error(CliRunner().invoke(app, ["init", "--db", url]))
    assert "CREATE SCHEMA t_missing_schema_x" in line
