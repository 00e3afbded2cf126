"""Ids a merge deleted are never handed out again (SQLite AUTOINCREMENT, PostgreSQL sequences), so that
undoing the merge can put its rows back under their ids without touching records added since; and
migration 0009 converts a SQLite database of revision 0008, keeping its rows, ids and schema."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm import schema
from crm.store import Store, StoreError, _alembic_config, head_revision
from merge_rules import MergeSettings, apply_plan, plan_groups, undo_merge
from merge_rules.testing import dump_crm, load_sample

D = dt.datetime
COMM, CONTACTS = schema.communications, schema.contacts
# the highest ids of the sample CRM (merge_rules.testing.sample_rows) are 15 for both tables
PRIMARY, DUPLICATE = 16, 17   # the duplicate holds the highest contact id...
KEPT_PHONE, REPEAT = 16, 18   # ...and its repeat of the primary's phone the highest communications id


def _contact(id_, first):
    return dict(id=id_, last_name="Соколов", first_name=first, middle_name=None, birthdate=None, post=None,
                address=None, comments=None, source=None, tax_id=None, responsible_id=2,
                created_at=D(2024, 1, 1), modified_at=D(2024, 1, 1), deleted_at=None)


def add_duplicates(store) -> None:
    """Contact #17 duplicates #16; #17's phone (communications #18, the highest id) repeats #16's,
    so merging deletes it; its e-mail (#17) is new and moves to #16."""
    store.insert(CONTACTS, [_contact(PRIMARY, "Андрей"), _contact(DUPLICATE, "Андрей")])
    store.insert(COMM, [
        dict(id=KEPT_PHONE, entity_type="contact", entity_id=PRIMARY, type="phone", kind="work", value="+7 905 123-00-01"),
        dict(id=17, entity_type="contact", entity_id=DUPLICATE, type="email", kind="work", value="sokolov@mail.ru"),
        dict(id=REPEAT, entity_type="contact", entity_id=DUPLICATE, type="phone", kind="work", value="8 905 123 00 01"),
    ])
    store.fix_sequences()


def merge_duplicates(store, mode: str) -> int:
    plan = plan_groups(store, "contact", [(PRIMARY, [PRIMARY, DUPLICATE])],
                       MergeSettings(conflict_policy="keep_primary", delete_mode=mode))[0]
    res = apply_plan(store, plan, 1)
    assert res.status == "applied"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(COMM.c.id).where(COMM.c.id == REPEAT)).first() is None
        deleted = conn.execute(sa.select(CONTACTS.c.id).where(CONTACTS.c.id == DUPLICATE)).first() is None
    assert deleted == (mode == "hard")
    return res.merge_id


def add_new_records(store) -> tuple[int, int]:
    """A new e-mail of another contact (#15) and a new contact, inserted as the CRM and an import do:
    without ids. Returns their ids."""
    with store.engine.begin() as conn:
        comm_id = conn.execute(COMM.insert().values(entity_type="contact", entity_id=15, type="email",
                                                    kind="home", value="anna.new@x.ru")).inserted_primary_key[0]
        contact_id = conn.execute(CONTACTS.insert().values(
            {k: v for k, v in _contact(None, "Новый").items() if k != "id"})).inserted_primary_key[0]
    return comm_id, contact_id


def check_undo_restores_exactly(store, merge_id: int, before: dict, comm_id: int, contact_id: int) -> None:
    """Undo succeeds without force, puts back every row as it was, and leaves the new records alone."""
    res = undo_merge(store, merge_id, 1)
    assert res.status == "undone" and res.overwritten == []
    after = dump_crm(store)
    new_comm = after["communications"].pop([r[0] for r in after["communications"]].index(comm_id))
    assert new_comm == (comm_id, "contact", 15, "email", "home", "anna.new@x.ru")
    new_contact = after["contacts"].pop([r[0] for r in after["contacts"]].index(contact_id))
    assert new_contact[:3] == (contact_id, "Соколов", "Новый")
    assert after == before


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_ids_a_merge_deleted_are_not_reused_and_undo_restores_them(store, mode):
    load_sample(store)
    add_duplicates(store)
    before = dump_crm(store)
    merge_id = merge_duplicates(store, mode)
    comm_id, contact_id = add_new_records(store)
    assert comm_id > REPEAT, f"communications #{comm_id}: the id of the row the merge deleted was handed out again"
    assert contact_id > DUPLICATE, f"contacts #{contact_id}: an id handed out before was handed out again"
    check_undo_restores_exactly(store, merge_id, before, comm_id, contact_id)


# -- migration 0009 (SQLite) ---------------------------------------------------------------------

REBUILT = ("users", "contacts", "companies", "leads", "communications", "deals", "invoices", "quotes",
           "activities", "history", "dedup_merges", "dedup_skips")


LATER_INDEXES = ("ix_dedup_skips_id_b", "ix_dedup_merges_group_id", "ix_dedup_merges_merged_at")  # 0012, 0013


def create_at_0008(url: str) -> Store:
    """A SQLite database as revisions 0001-0008 made it: today's tables without AUTOINCREMENT (the
    only change of 0009 it tests), the SQLite-only index of 0005, stamped 0008. (With dedup_groups.left_out
    of 0010: today's code, which loads the sample, reads it; tests/test_left_out.py tests 0010.) Without
    the indexes of 0012 and 0013, which the upgrade then adds."""
    old = sa.MetaData(naming_convention=schema.metadata.naming_convention)
    for table in schema.metadata.sorted_tables:
        if table.name == "dedup_together":  # (migration 0011 adds it)
            continue
        copy = table.to_metadata(old)
        copy.dialect_options["sqlite"]["autoincrement"] = False
        for index in [i for i in copy.indexes if i.name in LATER_INDEXES]:
            copy.indexes.discard(index)
    store = Store(url)
    with store.engine.begin() as conn:
        old.create_all(conn)
        conn.exec_driver_sql("CREATE INDEX ix_dedup_groups_managers_sqlite ON dedup_groups "
                             "(entity_type, status, score, tier, run_id, responsible_ids)")
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "0008")
    made = _definitions(store)
    assert not any("AUTOINCREMENT" in line for lines in made.values() for line in lines)
    assert not {("index", name) for name in LATER_INDEXES} & set(made)
    return store


def _definitions(store) -> dict[tuple[str, str], list[str]]:
    """Every table's and index's CREATE statement, line by line: columns in order, then the table
    constraints sorted (the copied metadata of create_at_0008 lists them in another order; a renamed
    table's name comes back quoted)."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").all()
    out = {}
    for kind, name, sql in rows:
        lines = [line.strip().rstrip(",").rstrip() for line in
                 re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", sql).splitlines()]
        constraints = sorted(line for line in lines if line.startswith("CONSTRAINT "))
        out[(kind, name)] = [line for line in lines if not line.startswith("CONSTRAINT ")] + constraints
    return out


def _all_rows(store) -> dict[str, list[tuple]]:
    return dump_crm(store, schema.CRM_TABLES + tuple(t for t in schema.DEDUP_TABLES if t.name != "dedup_together"))


def test_migration_0009_rebuilds_sqlite_tables_with_autoincrement_keeping_rows_and_ids(tmp_path):
    store = create_at_0008(f"sqlite:///{tmp_path}/old.db")
    load_sample(store)
    add_duplicates(store)
    before_merge = dump_crm(store)
    # merged before the upgrade: the deleted rows held the highest ids, which no table remembers
    merge_id = merge_duplicates(store, "hard")
    rows = _all_rows(store)
    assert store.migrate() == head_revision()
    store.check_schema()
    assert _all_rows(store) == rows

    fresh = Store(f"sqlite:///{tmp_path}/fresh.db")
    fresh.migrate()
    expected = _definitions(fresh)
    assert _definitions(store) == expected  # columns, constraints, foreign keys, indexes: all as created today
    for name in REBUILT:
        assert expected[("table", name)][1] == "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT", name
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_dedup_groups_managers_sqlite")] == []
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        seq = dict(conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all())
    # the next ids are above the rows the merge deleted (found in its before-image), not just above max(id)
    assert seq["communications"] == REPEAT and seq["contacts"] == DUPLICATE
    assert seq["history"] == max(r[0] for r in rows["history"]) and seq["dedup_merges"] == merge_id

    comm_id, contact_id = add_new_records(store)
    assert (comm_id, contact_id) == (REPEAT + 1, DUPLICATE + 1)
    check_undo_restores_exactly(store, merge_id, before_merge, comm_id, contact_id)
    # migrating again changes nothing
    rows = _all_rows(store)
    assert store.migrate() == head_revision() and _all_rows(store) == rows and _definitions(store) == expected
    store.dispose()
    fresh.dispose()


def test_migration_0009_refuses_a_table_it_does_not_recognise_and_leaves_the_database_at_0008(tmp_path):
    store = create_at_0008(f"sqlite:///{tmp_path}/odd.db")
    load_sample(store)
    rows = _all_rows(store)
    with store.engine.begin() as conn:  # a hand-made change the migration cannot safely rewrite
        conn.exec_driver_sql("ALTER TABLE quotes RENAME COLUMN id TO quote_id")
    with pytest.raises(StoreError, match="quotes"):
        store.migrate()
    assert store.revision() == "0008"
    with store.engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1  # switched back on
        conn.exec_driver_sql("ALTER TABLE quotes RENAME COLUMN quote_id TO id")
        assert "AUTOINCREMENT" not in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'contacts'").scalar_one()
    assert _all_rows(store) == rows
    assert store.migrate() == head_revision() and _all_rows(store) == rows
    store.dispose()
