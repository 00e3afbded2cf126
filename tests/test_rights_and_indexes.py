"""Three review findings, on SQLite and PostgreSQL:

1. who may withdraw a person's mark is one rule (merge_rules.skips.may_withdraw_mark) wherever it is
   withdrawn: `crm-dedup unskip`, the review page, the engine's unskip_pair, and `crm-dedup include
   --undo` for a "the same" mark: an admin any, a manager only a mark between two records of their own;
2. the indexes of migration 0012 (a mark's second record, a merge's group) are there, in a new
   database and in one migrated from 0011, and the queries that need them use them;
3. the merge message names one merged record in the singular.

The review sample (review.testing): admin #1; managers Мария #2 (contacts #10, #12), Пётр #3 (#11),
John #4 (#13, #14); group contact-10 holds #10, #11, #12."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from crm import schema
from crm.store import Store, _alembic_config, head_revision
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.apply import merge_message
from merge_rules.errors import PermissionDenied
from merge_rules.grouping import CannotInclude, withdraw_include
from merge_rules.skips import may_withdraw_mark, skip_pair, unskip_pair
from merge_rules.testing import SAMPLE_GROUPS, load_sample
from merge_rules.together import load_together, mark_together
from merge_rules.tx import write_transaction
from pipelines.cli import app as cli_app
from review import actions
from review.testing import ADMIN, JOHN, MARIA, PETR, USER_IDS, load_review_sample

EMAILS = (ADMIN, MARIA, PETR, JOHN)
NEW_INDEXES = {"ix_dedup_skips_id_b": ("dedup_skips", ["entity_type", "id_b"]),
               "ix_dedup_together_id_b": ("dedup_together", ["entity_type", "id_b"]),
               "ix_dedup_merges_group_id": ("dedup_merges", ["group_id"])}


def invoke(*args):
    return CliRunner().invoke(cli_app, [str(a) for a in args])


@pytest.fixture
def sample(store, tmp_path):
    info = load_review_sample(store, tmp_path / "run")
    with store.engine.connect() as conn:
        users = {r["email"]: dict(r) for r in conn.execute(sa.select(schema.users)).mappings()}
    return store, info["groups"], users


def skips(store) -> set[tuple[int, int]]:
    s = schema.dedup_skips
    with store.engine.connect() as conn:
        return set(map(tuple, conn.execute(sa.select(s.c.id_a, s.c.id_b)).all()))


def owners(store, ids) -> dict[int, dict]:
    c = schema.contacts
    with store.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(c.c.id, c.c.responsible_id)
                                                       .where(c.c.id.in_(ids))).mappings()}


# -- 1. who may withdraw a mark -----------------------------------------------------------------

def test_a_not_duplicates_mark_is_withdrawn_by_the_same_rule_on_the_command_line_the_page_and_the_engine(sample):
    store, _groups, users = sample
    records = owners(store, [10, 11, 12, 13, 14])
    allowed = {ADMIN: {(10, 11), (10, 12), (13, 14)}, MARIA: {(10, 12)}, PETR: set(), JOHN: {(13, 14)}}
    for email in EMAILS:
        user = users[email]
        for a, b in ((10, 11), (10, 12), (13, 14)):
            ok = (a, b) in allowed[email]
            assert may_withdraw_mark(user, [records[a], records[b]]) is ok, (email, a, b)

            # the page's action
            skip_pair(store, "contact", a, b, USER_IDS[MARIA])
            out = actions.unskip(store, "contact", b, a, user)
            assert out.ok is ok and out.status == (200 if ok else 403), (email, a, b, out.message)
            assert ((a, b) in skips(store)) is not ok

            # the command line
            skip_pair(store, "contact", a, b, USER_IDS[MARIA])
            result = invoke("unskip", a, b, "--entity", "contact", "--user", email, "--db", store.url)
            assert result.exit_code == (0 if ok else 2), (email, a, b, result.output)
            assert ((a, b) in skips(store)) is not ok

            # the engine itself, whoever calls it
            skip_pair(store, "contact", a, b, USER_IDS[MARIA])
            if ok:
                assert unskip_pair(store, "contact", a, b, user["id"])["user_id"] == USER_IDS[MARIA]
            else:
                with pytest.raises(PermissionDenied, match="only between two records of their own"):
                    unskip_pair(store, "contact", a, b, user["id"])
                assert unskip_pair(store, "contact", a, b, None) is not None  # the pipeline itself: as an admin
            assert skips(store) == set()


def test_a_manager_cannot_withdraw_a_mark_with_another_managers_record_even_her_own(sample):
    """The stricter rule: Мария marked her #10 and Пётр's #11 "not duplicates" (one record of hers
    is enough to mark); withdrawing it would undo a decision about Пётр's record, so only an admin
    (or a manager of both) may."""
    store, _groups, users = sample
    result = invoke("skip", 10, 11, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 0, result.output
    result = invoke("unskip", 11, 10, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("error: Мария Иванова (#2) is a manager and may withdraw a \"not duplicates\" mark only between two "
            "records of their own; not contact #11 (Пётр Сидоров). Ask an admin") in " ".join(result.output.split())
    out = actions.unskip(store, "contact", 10, 11, users[MARIA])
    assert not out.ok and out.status == 403 and "#11 is Пётр Сидоров's" in out.message
    # a mark not there: said first, whoever asks
    result = invoke("unskip", 10, 14, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 2 and "contact #10 and #14 are not marked as not duplicates" in result.output
    assert skips(store) == {(10, 11)}
    result = invoke("unskip", 10, 11, "--user", ADMIN, "--db", store.url)
    assert result.exit_code == 0 and "(marked by Мария Иванова (#2)" in result.output, result.output
    assert skips(store) == set()


def test_include_undo_follows_the_same_rule(sample):
    store, groups, users = sample
    gid = groups["contact-10"]
    with store.engine.connect() as conn, write_transaction(conn):
        mark_together(conn, "contact", 11, 12, USER_IDS[MARIA])
        mark_together(conn, "contact", 10, 12, USER_IDS[ADMIN])
    # #11 is Пётр's, #12 Мария's: neither manager may take the mark back, even Мария who made it
    result = invoke("include", "--undo", gid, 11, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ("Мария Иванова (#2) is a manager and may withdraw a \"the same\" mark only between two records of their "
            "own; not contact #11 (Пётр Сидоров)") in " ".join(result.output.split()), result.output
    with pytest.raises(PermissionDenied, match=r"not contact #12 \(Мария Иванова\)"):
        withdraw_include(store, gid, 11, USER_IDS[PETR])
    with pytest.raises(PermissionDenied, match=r"not contact #10 \(Мария Иванова\), #12 \(Мария Иванова\)"):
        withdraw_include(store, gid, 10, USER_IDS[JOHN])
    assert set(load_together(store, "contact")) == {(10, 12), (11, 12)}
    # #10 and #12 are both Мария's: hers to withdraw; the other one an admin's
    result = invoke("include", "--undo", gid, 10, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 0 and "no longer marked the same" in result.output, result.output
    assert load_together(store, "contact") == [(11, 12)]
    assert "no longer marked the same" in withdraw_include(store, gid, 11, USER_IDS[ADMIN])
    assert load_together(store, "contact") == []
    with pytest.raises(CannotInclude, match="no mark to withdraw"):
        withdraw_include(store, gid, 11, USER_IDS[ADMIN])


# -- 2. the indexes of migration 0012 -----------------------------------------------------------

def _indexes(store) -> dict[str, tuple[str, list[str]]]:
    insp = sa.inspect(store.engine)
    return {i["name"]: (t, i["column_names"]) for t in ("dedup_skips", "dedup_together", "dedup_merges")
            for i in insp.get_indexes(t) if i["name"] in NEW_INDEXES}


def _schema_diff(store) -> list:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    return [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_dedup_groups_managers_sqlite")]


def test_migration_0012_adds_the_indexes_to_a_database_at_0011_and_takes_them_back(db_url):
    store = Store(db_url)
    assert store.migrate() == head_revision()
    assert _indexes(store) == NEW_INDEXES  # created from today's schema by 0002 (and 0011): nothing to add
    # a database migrated to 0011 before: without them
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for name, (table, _columns) in NEW_INDEXES.items():
            conn.execute(sa.text(f"DROP INDEX {name}"))
        command.stamp(cfg, "0011")
    assert _indexes(store) == {} and _schema_diff(store) != []
    assert store.migrate() == head_revision()  # (through 0012; later revisions on top)
    assert _indexes(store) == NEW_INDEXES and _schema_diff(store) == []
    store.check_schema()
    # downgrading takes them back; upgrading again adds them
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    assert _indexes(store) == {}
    assert store.migrate() == head_revision() and _indexes(store) == NEW_INDEXES
    store.dispose()


def _plan(conn, sql: str) -> str:
    if conn.dialect.name == "sqlite":
        return " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    return " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def test_a_records_marks_and_a_groups_merge_are_found_by_index(store):
    """A record's marks (as queries.marks_of reads them) and who merged a group (queries.group_merge_since),
    over marks and merges of three entity types, with the tables' statistics up to date."""
    when = dt.datetime(2024, 5, 1, 12, 0)
    pairs = [{"entity_type": et, "id_a": a, "id_b": a + 1 + k, "user_id": None, "created_at": when}
             for et in schema.ENTITY_TYPES for a in range(1, 1001) for k in range(2)]
    merges = [{"group_id": f"contact-{i}-abc", "batch_id": f"b{i % 7}", "entity_type": "contact", "primary_id": i,
               "merged_ids": [i + 1], "merged_at": when, "status": "applied", "summary": "", "before_image": {},
               "after_image": {}} for i in range(1, 2001)]
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_skips.insert(), pairs)
        conn.execute(schema.dedup_together.insert(), pairs)
        conn.execute(schema.dedup_merges.insert(), merges)
        conn.exec_driver_sql("ANALYZE")
    with store.engine.connect() as conn:
        skips_plan = _plan(conn, "SELECT id_a, id_b, user_id, created_at FROM dedup_skips WHERE entity_type = "
                                 "'contact' AND (id_a = 500 OR id_b = 500) ORDER BY created_at DESC, id DESC")
        together_plan = _plan(conn, "SELECT id_a, id_b, user_id FROM dedup_together WHERE entity_type = 'contact' "
                                    "AND (id_a = 500 OR id_b = 500)")
        merges_plan = _plan(conn, "SELECT id, merged_at FROM dedup_merges WHERE status = 'applied' AND "
                                  "group_id = 'contact-10-abc' ORDER BY id DESC LIMIT 1")
    assert "ix_dedup_skips_id_b" in skips_plan, skips_plan
    assert "ix_dedup_together_id_b" in together_plan, together_plan
    assert "ix_dedup_merges_group_id" in merges_plan, merges_plan


# -- 3. the merge message -----------------------------------------------------------------------

def test_merge_message_names_one_merged_record_in_the_singular():
    admin = {"id": 1, "name": "Админ Главный"}
    assert merge_message("contact", 12, [1462], admin) == "Merged contact #1462 into #12 by Админ Главный"
    assert merge_message("contact", 10, [11, 12], admin) == "Merged contacts #11, #12 into #10 by Админ Главный"
    assert merge_message("company", 20, [22], admin) == "Merged company #22 into #20 by Админ Главный"
    assert merge_message("company", 20, [21, 22], admin) == "Merged companies #21, #22 into #20 by Админ Главный"
    assert merge_message("lead", 601, [602], admin) == "Merged lead #602 into #601 by Админ Главный"
    assert merge_message("lead", 601, [602, 603], admin) == "Merged leads #602, #603 into #601 by Админ Главный"


def test_the_history_and_the_merge_result_say_it(store):
    load_sample(store)
    with store.engine.connect() as conn:
        name = conn.execute(sa.select(schema.users.c.name).where(schema.users.c.id == 1)).scalar_one()
    results = []
    for entity in ("contact", "company", "lead"):  # (leads after contacts and companies, as a batch merges)
        results += apply_batch(store, plan_groups(store, entity, SAMPLE_GROUPS[entity],
                                                  MergeSettings(conflict_policy="keep_primary")), 1, "b1")
    said = {r.message for r in results if r.status == "applied"}
    h = schema.history
    with store.engine.connect() as conn:
        events = set(conn.execute(sa.select(h.c.message).where(h.c.event == "merge")).scalars())
    expected = {f"Merged contacts #11, #12 into #10 by {name}", f"Merged contact #14 into #13 by {name}",
                f"Merged company #22 into #20 by {name}", f"Merged company #24 into #23 by {name}",
                f"Merged lead #602 into #601 by {name}"}
    assert said == expected and events == expected, (said, events)
