"""The index of migration 0013 on dedup_merges (entity_type, merged_at), on SQLite and PostgreSQL: a new
database has it, a database at 0012 gets it on upgrade and loses it on downgrade, and the review page's
queries.merged_into, which reads the merges made at a record's deleted_at, still finds the merge and
reads them through it.

The review sample (review.testing): group contact-13 holds contacts #13 and #14."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm import schema
from crm.store import Store, _alembic_config, head_revision
from review import queries
from review.testing import ADMIN
from test_review import sample, sign_in  # noqa: F401 - the fixture, per backend
from test_review_position import merge_group

NAME, COLUMNS = "ix_dedup_merges_merged_at", ["entity_type", "merged_at"]
OF_0012 = {"ix_dedup_skips_id_b", "ix_dedup_together_id_b", "ix_dedup_merges_group_id"}


def _indexes(store) -> dict[str, list[str]]:
    """Every index of the dedup tables 0012 and 0013 index: name -> columns."""
    insp = sa.inspect(store.engine)
    return {i["name"]: i["column_names"] for t in ("dedup_merges", "dedup_skips", "dedup_together")
            for i in insp.get_indexes(t)}


def _schema_diff(store) -> list:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    return [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_dedup_groups_managers_sqlite")]


def _at_0012(store, cfg, *, drop: bool) -> None:
    """Stamp the database 0012, as one migrated to 0012 before today's schema (``drop``: without the
    index) or one 0002 created from today's schema and stamped there (with it)."""
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if drop:
            conn.execute(sa.text(f"DROP INDEX {NAME}"))
        command.stamp(cfg, "0012")


def test_a_new_database_has_the_merge_time_index(store):
    assert store.revision() == head_revision()
    assert _indexes(store)[NAME] == COLUMNS
    assert _schema_diff(store) == []


def test_migration_0013_adds_the_index_to_a_database_at_0012_and_takes_it_back(db_url):
    store = Store(db_url)
    store.migrate()
    cfg = _alembic_config()
    # made from today's schema and stamped 0012: it has the index already, the upgrade changes nothing
    _at_0012(store, cfg, drop=False)
    assert store.migrate() == head_revision() and _indexes(store)[NAME] == COLUMNS
    # migrated to 0012 before: without it
    _at_0012(store, cfg, drop=True)
    assert NAME not in _indexes(store) and _schema_diff(store) != []
    assert store.migrate() == head_revision()
    assert _indexes(store)[NAME] == COLUMNS and _schema_diff(store) == []
    store.check_schema()
    # downgrading to 0012 takes it back and leaves 0012's; upgrading again adds it
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    assert store.revision() == "0012"
    assert NAME not in _indexes(store) and OF_0012 <= set(_indexes(store))
    assert store.migrate() == head_revision() and _indexes(store)[NAME] == COLUMNS
    store.dispose()


def _plan(conn, statement: str, parameters) -> str:
    if conn.dialect.name == "sqlite":
        return " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    return " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def test_merged_into_finds_the_merge_through_the_index(sample):
    """#14 merged into #13 on the review page, among 3000 merges of three entity types (some made at
    the very same moment, of another entity) with the table's statistics up to date: merged_into, given
    #14's deleted_at, finds that merge, and its read of the merges made then uses the index."""
    store, app, groups = sample
    merge_group(sign_in(app, ADMIN), groups["contact-13"], 13)  # 14 into 13
    m, contacts = schema.dedup_merges, schema.contacts
    with store.engine.connect() as conn:
        merge_id = conn.execute(sa.select(m.c.id).where(m.c.primary_id == 13)).scalar_one()
        deleted_at = conn.execute(sa.select(contacts.c.deleted_at).where(contacts.c.id == 14)).scalar_one()
    start = dt.datetime(2024, 5, 1, 12, 0)
    others = [{"group_id": f"{et}-{i}-abc", "batch_id": f"b{i % 7}", "entity_type": et, "primary_id": 5000 + i,
               "merged_ids": [6000 + i], "merged_at": deleted_at if i % 500 == 0 else start + dt.timedelta(minutes=i),
               "status": "applied", "summary": "", "before_image": {}, "after_image": {}}
              for et in ("company", "lead", "contact") for i in range(1, 1001)]
    with store.engine.begin() as conn:
        conn.execute(m.insert(), others)
        conn.exec_driver_sql("ANALYZE")

    statements: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.engine.connect() as conn:
            found = queries.merged_into(conn, "contact", 14, deleted_at)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert found["id"] == merge_id and found["primary_id"] == 13 and found["before"]["id"] == 14
    by_time = [(s, p) for s, p in statements if "merged_at =" in s]
    assert len(by_time) == 1, statements
    with store.engine.connect() as conn:
        plan = _plan(conn, *by_time[0])
    assert NAME in plan, plan
