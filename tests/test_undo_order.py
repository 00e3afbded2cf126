"""Undo of chained merges (A into B, then B into C) on both backends: a merge that a later, still-applied
merge touched is never undone first, with force or without; undone newest first, everything comes back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import schema
from merge_rules import MergeSettings, UndoConflict, apply_batch, apply_plan, plan_groups, undo_batch, undo_merge
from merge_rules.testing import dump_crm, load_sample

AUTO = MergeSettings(conflict_policy="keep_primary")


def plan_one(store, entity, group):
    return plan_groups(store, entity, [group], AUTO)[0]


def statuses(store) -> dict[int, str]:
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(m.c.id, m.c.status)).all())


@pytest.fixture
def chain(store):
    """The sample CRM, its dump before any merge, and two merges: company #22 into #20 (with its phone,
    e-mail, deal, documents and link), then #20 into #21."""
    load_sample(store)
    before = dump_crm(store)
    first = apply_plan(store, plan_one(store, "company", (20, [20, 22])), 1)
    second = apply_plan(store, plan_one(store, "company", (21, [21, 20])), 1)
    assert (first.status, second.status) == ("applied", "applied")
    return store, before, first.merge_id, second.merge_id


def test_forced_undo_of_the_older_merge_is_refused_and_changes_nothing(chain):
    store, _, first, second = chain
    after_both = dump_crm(store)
    for force in (False, True):
        with pytest.raises(UndoConflict) as err:
            undo_merge(store, first, 1, force=force)
        msg = str(err.value)
        assert f"Merge(s) #{second} touched these records later: undo them first" in msg
        assert "newest first" in msg and "Undo with force" not in msg
        assert err.value.later == [second]
        assert dump_crm(store) == after_both
        assert statuses(store) == {first: "applied", second: "applied"}


def test_undo_newest_first_restores_everything(chain):
    store, before, first, second = chain
    assert undo_merge(store, second, 1).status == "undone"
    assert undo_merge(store, first, 1).status == "undone"
    assert dump_crm(store) == before
    assert statuses(store) == {first: "undone", second: "undone"}


def test_force_still_overwrites_a_persons_edit_and_reports_it(chain):
    store, before, first, second = chain
    c = schema.companies
    with store.engine.begin() as conn:
        conn.execute(c.update().where(c.c.id == 21).values(industry="Банки"))
    with pytest.raises(UndoConflict, match="Undo with force to overwrite them"):
        undo_merge(store, second, 1)
    forced = undo_merge(store, second, 1, force=True)
    assert forced.status == "undone"
    assert any(o.startswith("companies #21 changed since the merge: industry") and "'Банки'" in o
               for o in forced.overwritten)
    # the later merge is undone: the first one is no longer held, and undoes cleanly
    assert undo_merge(store, first, 1).status == "undone"
    assert dump_crm(store) == before


def test_an_undone_later_merge_no_longer_holds_the_rows(chain):
    """A person's edit after the later merge was undone: force overwrites it as before."""
    store, before, first, second = chain
    undo_merge(store, second, 1)
    c = schema.companies
    with store.engine.begin() as conn:
        conn.execute(c.update().where(c.c.id == 20).values(comments="позвонить"))
    forced = undo_merge(store, first, 1, force=True)
    assert forced.status == "undone" and len(forced.overwritten) == 1
    assert "comments" in forced.overwritten[0] and "'позвонить'" in forced.overwritten[0]
    assert dump_crm(store) == before


def test_undo_all_of_a_batch_holding_the_chain_goes_newest_first(store):
    load_sample(store)
    before = dump_crm(store)
    apply_batch(store, [plan_one(store, "company", (20, [20, 22]))], 1, "chain")
    apply_batch(store, [plan_one(store, "company", (21, [21, 20]))], 1, "chain")
    results = undo_batch(store, "chain", 1, force=True)
    assert [r.status for r in results] == ["undone", "undone"]
    assert results[0].merge_id > results[1].merge_id
    assert dump_crm(store) == before


def test_undo_all_of_the_older_batch_is_refused_while_a_later_batch_holds_it(store):
    load_sample(store)
    apply_batch(store, [plan_one(store, "company", (20, [20, 22]))], 1, "one")
    (later,) = apply_batch(store, [plan_one(store, "company", (21, [21, 20]))], 1, "two")
    after_both = dump_crm(store)
    (res,) = undo_batch(store, "one", 1, force=True)
    assert res.status == "conflict" and f"Merge(s) #{later.merge_id} touched these records later" in res.message
    assert dump_crm(store) == after_both
    assert [r.status for r in undo_batch(store, "two", 1)] == ["undone"]
    assert [r.status for r in undo_batch(store, "one", 1)] == ["undone"]
