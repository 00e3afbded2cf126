"""Applying and undoing merges on both backends: the writes, conservation of links, undo identity,
stale plans, permissions, idempotent batches, skips, lead links, history."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from crm import proposals, schema
from merge_rules import (MergeSettings, PermissionDenied, StalePlanError, UndoConflict, UnresolvedConflicts,
                         apply_batch, apply_plan, link_lead_to_client, load_skips, merge_history, plan_groups,
                         skip_pair, skip_record, undo_batch, undo_merge)
from merge_rules.errors import MergeError
from merge_rules.testing import SAMPLE_GROUPS, dangling_links, dump_crm, load_sample, load_synthetic

D = dt.datetime
AUTO = MergeSettings(conflict_policy="keep_primary")
LINK_TABLES = ("deals", "invoices", "quotes", "activities", "history", "contact_companies", "leads")


@pytest.fixture
def sample(store):
    load_sample(store)
    return store


def plan_one(store, entity, group, settings=AUTO, **kw):
    return plan_groups(store, entity, [group], settings, **kw)[0]


def rows(store, table, *where):
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]


def one(store, table, id_):
    (row,) = rows(store, table, table.c.id == id_)
    return row


def counts(store):
    with store.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in schema.CRM_TABLES}


def merge_everything(store, groups_by_type, batch, settings=AUTO, user=1):
    """Plan and apply each entity type in turn (a contact merge changes leads' contact_id, so leads are
    planned after contacts are merged)."""
    results = []
    for entity in ("contact", "company", "lead"):
        groups = groups_by_type.get(entity, [])
        if groups:
            results += apply_batch(store, plan_groups(store, entity, groups, settings), user, batch)
    return results


# -- one merge ------------------------------------------------------------------------------------

def test_apply_writes_the_primary_moves_links_and_records_history(sample):
    plan = plan_one(sample, "contact", (10, [10, 11, 12]))
    res = apply_plan(sample, plan, 1)
    assert res.status == "applied" and res.merge_id is not None
    assert res.moved == {"communications": 3, "deals": 2, "invoices": 2, "quotes": 1, "activities": 1,
                         "history": 2, "leads": 1, "contact_companies": 3}
    c = schema.contacts
    p = one(sample, c, 10)
    assert p["birthdate"] == dt.date(1980, 5, 17) and p["post"] == "Директор"
    assert p["comments"].startswith("Звонить после 15:00\n\n--- from contact #11 (2024-04-15) ---")
    assert p["created_at"] == D(2022, 11, 5, 8, 30) and p["modified_at"] > D(2025, 1, 1)
    for d in (11, 12):
        assert one(sample, c, d)["deleted_at"] is not None
    comm = schema.communications
    assert sorted(r["value"] for r in rows(sample, comm, comm.c.entity_type == "contact", comm.c.entity_id == 10)) == \
        sorted(["+7 (916) 123-45-67", "ivanov@mail.ru", "+7 495 765-43-21 доб. 12", "i.ivanov@yandex.ru", "ivanov.ru"])
    assert rows(sample, comm, comm.c.entity_type == "contact", comm.c.entity_id.in_([11, 12])) == []
    assert {r["id"] for r in rows(sample, schema.deals, schema.deals.c.contact_id == 10)} == {100, 101, 102}
    assert one(sample, schema.leads, 600)["contact_id"] == 10
    cc = schema.contact_companies
    assert sorted((r["company_id"], r["is_primary"]) for r in rows(sample, cc, cc.c.contact_id == 10)) == \
        [(20, True), (21, False), (22, False)]
    h = schema.history
    events = rows(sample, h, h.c.entity_type == "contact", h.c.entity_id == 10)
    assert sorted(e["id"] for e in events if e["event"] == "created") == [500, 501]
    (merge_event,) = [e for e in events if e["event"] == "merge"]
    assert merge_event["message"] == "Merged contacts #11, #12 into #10 by Админ Главный"
    assert merge_event["user_id"] == 1
    m = one(sample, schema.dedup_merges, res.merge_id)
    assert (m["entity_type"], m["primary_id"], m["merged_ids"], m["status"], m["user_id"]) == \
        ("contact", 10, [11, 12], "applied", 1)
    assert set(m["before_image"]) >= {"contacts", "communications", "deals", "contact_companies", "leads"}
    assert dangling_links(sample) == []


def test_apply_sets_the_group_applied(sample):
    now = D(2024, 1, 1)
    with sample.engine.begin() as conn:
        conn.execute(schema.dedup_runs.insert().values(id="r1", started_at=now, status="completed", entity_types="contact"))
        conn.execute(schema.dedup_groups.insert().values(
            id="g-13", entity_type="contact", run_id="r1", status="approved", tier="high", score=0.95, primary_id=13,
            member_ids=[13, 14], responsible_ids=[4], primary_reason="older", criteria="1 match by email",
            updated_at=now))
    plan = plan_one(sample, "contact", (13, [13, 14]), group_ids={13: "g-13"})
    res = apply_plan(sample, plan, 4)
    g = one(sample, schema.dedup_groups, "g-13")
    assert (g["status"], g["merge_id"]) == ("applied", res.merge_id)
    undo_merge(sample, res.merge_id, 4)
    g = one(sample, schema.dedup_groups, "g-13")
    assert (g["status"], g["merge_id"]) == ("pending", None)


def test_hard_delete_removes_duplicates_and_undo_restores_them(sample):
    before = dump_crm(sample)
    plan = plan_one(sample, "contact", (10, [10, 11, 12]), MergeSettings(conflict_policy="keep_primary", delete_mode="hard"))
    res = apply_plan(sample, plan, 1)
    assert rows(sample, schema.contacts, schema.contacts.c.id.in_([11, 12])) == []
    assert dangling_links(sample) == []
    undo_merge(sample, res.merge_id, 1)
    assert dump_crm(sample) == before


# -- conservation and identity --------------------------------------------------------------------

def test_conservation_then_undo_everything_is_identity_on_the_sample(sample):
    before, n_before = dump_crm(sample), counts(sample)
    results = merge_everything(sample, SAMPLE_GROUPS, "all")
    assert [r.status for r in results] == ["applied"] * 5
    n_after = counts(sample)
    for t in ("deals", "invoices", "quotes", "activities", "contacts", "companies", "leads", "users"):
        assert n_after[t] == n_before[t], t
    assert n_after["history"] == n_before["history"] + 5  # one event per merge
    assert dangling_links(sample) == []
    undone = undo_batch(sample, "all", 1)
    assert [u.status for u in undone] == ["undone"] * 5
    assert dump_crm(sample) == before


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_merge_then_undo_many_synthetic_groups_is_identity(store, mode):
    groups = load_synthetic(store, 60, seed=7)
    before, n_before = dump_crm(store), counts(store)
    settings = MergeSettings(conflict_policy="most_recent", delete_mode=mode)
    results = merge_everything(store, groups, "b1", settings)
    assert Counter(r.status for r in results) == {"applied": sum(len(g) for g in groups.values())}
    assert dangling_links(store) == []
    n_after = counts(store)
    kept = ("deals", "invoices", "quotes", "activities") + (("contacts", "companies", "leads") if mode == "soft" else ())
    for t in kept:
        assert n_after[t] == n_before[t], t
    assert n_after["history"] == n_before["history"] + len(results)
    undone = undo_batch(store, "b1", 1)
    assert Counter(u.status for u in undone) == {"undone": len(results)}
    assert dump_crm(store) == before


def test_merge_every_true_cluster_of_a_demo_crm_then_undo_it_all(store):
    from crm.demo import DemoSizes, generate_demo

    generate_demo(store, DemoSizes(contacts=300, companies=100, leads=100, managers=3), seed=3)
    before, n_before = dump_crm(store), counts(store)
    assert dangling_links(store) == []
    truth = schema.demo_truth
    groups = {}
    with store.engine.connect() as conn:
        for et, table in schema.ENTITY_TABLES.items():
            live = set(conn.execute(sa.select(table.c.id).where(table.c.deleted_at.is_(None))).scalars())
            clusters = {}
            for cluster, eid in conn.execute(sa.select(truth.c.cluster, truth.c.entity_id).where(truth.c.entity_type == et)):
                if eid in live:
                    clusters.setdefault(cluster, []).append(eid)
            groups[et] = [(min(m), sorted(m)) for m in clusters.values() if len(m) > 1]
    assert sum(len(g) for g in groups.values()) > 20, "the demo should hold duplicate clusters"
    results = merge_everything(store, groups, "demo")
    assert Counter(r.status for r in results) == {"applied": sum(len(g) for g in groups.values())}, \
        [r.message for r in results if r.status != "applied"][:3]
    n_after = counts(store)
    for t in ("deals", "invoices", "quotes", "activities", "contact_companies"):
        assert n_after[t] <= n_before[t] if t == "contact_companies" else n_after[t] == n_before[t], t
    assert n_after["history"] == n_before["history"] + len(results)
    assert dangling_links(store) == []
    assert Counter(u.status for u in undo_batch(store, "demo", 1)) == {"undone": len(results)}
    assert dump_crm(store) == before


# -- refusals -------------------------------------------------------------------------------------

def test_stale_plan_is_refused_naming_the_record_and_the_change(sample):
    plan = plan_one(sample, "contact", (10, [10, 11, 12]))
    with sample.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 11).values(post="Владелец"))
        conn.execute(schema.deals.insert().values(id=150, title="Новая", contact_id=12, stage="NEW",
                                                  amount=1, currency="RUB", created_at=D(2024, 9, 9)))
    before = dump_crm(sample)
    with pytest.raises(StalePlanError) as err:
        apply_plan(sample, plan, 1)
    msg = str(err.value)
    assert "contact #11 was edited: post 'Генеральный директор' -> 'Владелец'" in msg
    assert "deals row 150 now points at contact #12 and would not be moved by this plan" in msg
    assert msg.endswith("Make a new plan.")
    assert dump_crm(sample) == before  # nothing written
    fresh = plan_one(sample, "contact", (10, [10, 11, 12]))
    assert apply_plan(sample, fresh, 1).status == "applied"
    assert one(sample, schema.deals, 150)["contact_id"] == 10


def test_a_plan_stale_only_because_links_moved_is_planned_again_and_merged(sample, tmp_path):
    """The apply flow: a group whose links moved since it was approved (another group's merge, a deal
    re-linked) merges what was approved, planned again; one whose records were edited goes back to a
    person, its reason noted once however often that happens."""
    from pipelines.apply import apply_approved

    settings = tmp_path / "settings.yaml"
    settings.write_text("merge: {conflict_policy: keep_primary}\n")
    proposals.start_run(sample, "r1", ["contact"], str(tmp_path))
    groups = {"g-links": (10, [10, 11, 12]), "g-edited": (13, [13, 14])}
    proposals.replace_pending(sample, "r1", ["contact"], [
        {"id": gid, "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": p, "member_ids": ms,
         "responsible_ids": [], "primary_reason": "most linked records", "criteria": "phone", "pairs": [],
         "plan": plan_one(sample, "contact", (p, ms)).to_dict()} for gid, (p, ms) in groups.items()])
    for attempt in range(2):
        proposals.set_status(sample, list(groups), "approved", 1)
        with sample.engine.begin() as conn:
            if attempt == 0:  # a deal of the primary moved to a duplicate, and one added to a duplicate
                conn.execute(schema.deals.update().where(schema.deals.c.contact_id == 10).values(contact_id=11))
                conn.execute(schema.deals.insert().values(id=150, title="Новая", contact_id=12, stage="NEW",
                                                          amount=1, currency="RUB", created_at=D(2024, 9, 9)))
            conn.execute(schema.contacts.update().where(schema.contacts.c.id == 14).values(post=f"edit {attempt}"))
        results = {r["group_id"]: r for r in apply_approved(sample.url, f"b{attempt}", 1, str(settings))}
        assert results["g-edited"]["status"] == "stale" and "contact #14 was edited: post" in results["g-edited"]["message"]
        if attempt == 0:
            assert results["g-links"]["status"] == "applied" and results["g-links"]["merge_id"]
            assert "re-planned first: only links of its records had moved" in results["g-links"]["message"]
        else:
            assert set(results) == {"g-edited"}
    stored = proposals.read_groups(sample).set_index("id")
    assert stored.loc["g-links", "status"] == "applied" and stored.loc["g-edited", "status"] == "pending"
    assert stored.loc["g-edited", "primary_reason"] == "most linked records (re-planned: records changed)"
    with sample.engine.connect() as conn:
        deals = conn.execute(sa.select(schema.deals.c.contact_id).where(schema.deals.c.contact_id.in_([10, 11, 12]))).all()
    assert deals and {d[0] for d in deals} == {10}


def test_a_plan_whose_duplicate_was_merged_elsewhere_is_stale(sample):
    first = plan_one(sample, "contact", (10, [10, 11]))
    second = plan_one(sample, "contact", (12, [12, 11]))
    apply_plan(sample, first, 1)
    with pytest.raises(StalePlanError, match=r"contact #11 was deleted or merged into another record"):
        apply_plan(sample, second, 1)


def test_a_manager_may_not_merge_another_managers_record(sample):
    plan = plan_one(sample, "contact", (10, [10, 11, 12]))  # #11 is Пётр Сидоров's
    before = dump_crm(sample)
    with pytest.raises(PermissionDenied) as err:
        apply_plan(sample, plan, 2)
    assert str(err.value) == (
        "Мария Иванова (#2) is a manager and may merge only contact records they are responsible for; "
        "not #11 (Пётр Сидоров). Ask an admin, or the responsible manager, to merge this group.")
    assert dump_crm(sample) == before
    res = apply_batch(sample, [plan], 2, "mgr")
    assert res[0].status == "denied"
    with pytest.raises(PermissionDenied, match="There is no user #77"):
        apply_plan(sample, plan, 77)
    # a manager merges their own records; an admin merges anything
    assert apply_plan(sample, plan_one(sample, "contact", (13, [13, 14])), 4).status == "applied"
    assert apply_plan(sample, plan, 1).status == "applied"


def test_unresolved_conflicts_are_not_merged(sample):
    plan = plan_one(sample, "contact", (10, [10, 11, 12]), MergeSettings())  # policy "ask"
    with pytest.raises(UnresolvedConflicts) as err:
        apply_plan(sample, plan, 1)
    assert err.value.fields == ["post", "source"]
    assert "post: #10 'Директор', #11 'Генеральный директор'" in str(err.value)
    assert apply_batch(sample, [plan], 1, "x")[0].status == "conflicts"
    chosen = plan_one(sample, "contact", (10, [10, 11, 12]), MergeSettings(), choices={10: {"post": 11, "source": 11}})
    assert apply_plan(sample, chosen, 1).status == "applied"
    p = one(sample, schema.contacts, 10)
    assert (p["post"], p["source"]) == ("Генеральный директор", "phone")


def test_a_pair_marked_not_duplicates_after_planning_is_not_merged(sample):
    """A skip made after the group was planned (`crm-dedup skip`) stops its merge, whole, naming the
    pair; the rest of the batch goes on. Skips are per entity type."""
    plan = plan_one(sample, "contact", (10, [10, 11, 12]))
    other = plan_one(sample, "contact", (13, [13, 14]))
    before = dump_crm(sample)
    skip_pair(sample, "contact", 12, 11, 2)
    skip_pair(sample, "company", 13, 14, 2)  # (companies #13 and #14: no bearing on contacts #13 and #14)
    with pytest.raises(MergeError, match=r'#11 and #12 were marked "not duplicates"'):
        apply_plan(sample, plan, 1)
    assert dump_crm(sample) == before
    results = apply_batch(sample, [plan, other], 1, "b")
    assert [r.status for r in results] == ["not_duplicates", "applied"]
    assert results[0].message.startswith("The group of contact #10 is not merged")
    assert one(sample, schema.contacts, 11)["deleted_at"] is None


def test_conflicts_left_open_are_settled_by_the_policy_the_merge_runs_with(sample, tmp_path):
    """Planned with conflict_policy 'ask' (a person chose one value of two), approved: merged with
    the settings' default it waits for a person; merged with a policy, the policy settles the rest
    and the person's choice stands."""
    from pipelines.apply import apply_approved

    asking, settling = tmp_path / "ask.yaml", tmp_path / "keep.yaml"
    asking.write_text("merge: {conflict_policy: ask}\n")
    settling.write_text("merge: {conflict_policy: keep_primary}\n")
    plan = plan_one(sample, "contact", (10, [10, 11, 12]), MergeSettings(), choices={10: {"post": 11}})
    assert [c.field for c in plan.unresolved] == ["source"]
    proposals.start_run(sample, "r1", ["contact"], str(tmp_path))
    proposals.replace_pending(sample, "r1", ["contact"], [
        {"id": "g1", "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": 10,
         "member_ids": [10, 11, 12], "responsible_ids": [], "primary_reason": "x", "criteria": "phone", "pairs": [],
         "plan": plan.to_dict()}])
    source = one(sample, schema.contacts, 10)["source"]
    proposals.set_status(sample, ["g1"], "approved", 1)
    (waits,) = apply_approved(sample.url, "b1", 1, str(asking))
    assert waits["status"] == "conflicts" and "merge.conflict_policy" in waits["message"]
    proposals.set_status(sample, ["g1"], "approved", 1)
    (merged,) = apply_approved(sample.url, "b2", 1, str(settling))
    assert merged["status"] == "applied"
    p = one(sample, schema.contacts, 10)
    assert (p["post"], p["source"]) == ("Генеральный директор", source)


def test_a_person_s_choices_survive_a_re_plan_and_a_merge_s_settings_settle_only_open_conflicts(sample, tmp_path):
    """Approved with a chosen value: when only links moved, the plan made again keeps the choice and
    merges. A conflict left open is settled by the merge's policy; the way of deleting stays the
    approved plan's (settings that would delete hard merge it soft, as every plan planned soft)."""
    from pipelines.apply import apply_approved

    hard = tmp_path / "hard.yaml"
    hard.write_text("merge: {conflict_policy: keep_primary, delete_mode: hard}\n")
    chosen = plan_one(sample, "contact", (10, [10, 11, 12]), AUTO, choices={10: {"post": 11}})
    left_open = plan_one(sample, "contact", (13, [13, 14]), MergeSettings(conflict_policy="ask"))
    assert left_open.unresolved, "the sample's 13/14 conflict"
    proposals.start_run(sample, "r1", ["contact"], str(tmp_path))
    proposals.replace_pending(sample, "r1", ["contact"], [
        {"id": gid, "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": plan.primary_id,
         "member_ids": plan.member_ids, "responsible_ids": [], "primary_reason": "x", "criteria": "phone",
         "pairs": [], "plan": plan.to_dict()} for gid, plan in (("g-chosen", chosen), ("g-open", left_open))])
    proposals.set_status(sample, ["g-chosen", "g-open"], "approved", 1)
    with sample.engine.begin() as conn:  # a deal added to a duplicate: only links moved
        conn.execute(schema.deals.insert().values(id=150, title="Новая", contact_id=12, stage="NEW",
                                                  amount=1, currency="RUB", created_at=D(2024, 9, 9)))
    results = {r["group_id"]: r for r in apply_approved(sample.url, "b1", 1, str(hard))}
    assert results["g-chosen"]["status"] == "applied"  # (delete_mode of the approved plan: soft)
    assert one(sample, schema.contacts, 10)["post"] == "Генеральный директор"  # #11's, as chosen
    assert one(sample, schema.contacts, 11)["deleted_at"] is not None
    assert results["g-open"]["status"] == "applied", results["g-open"]
    assert one(sample, schema.contacts, 14)["deleted_at"] is not None  # soft: the row is there, marked
    assert one(sample, schema.contacts, 13)["deleted_at"] is None


def test_a_plan_with_problems_is_not_applied(sample):
    plan = plan_one(sample, "contact", (10, [10, 999]))
    with pytest.raises(MergeError, match="contact #999 does not exist"):
        apply_plan(sample, plan, 1)
    assert apply_batch(sample, [plan], 1, "p")[0].status == "failed"


# -- batches --------------------------------------------------------------------------------------

def test_a_batch_is_idempotent(sample):
    plans = plan_groups(sample, "contact", SAMPLE_GROUPS["contact"], AUTO)
    first = apply_batch(sample, plans, 1, "batch-1")
    assert [r.status for r in first] == ["applied", "applied"]
    again = apply_batch(sample, plans, 1, "batch-1")
    assert [r.status for r in again] == ["already_applied", "already_applied"]
    assert [r.merge_id for r in again] == [r.merge_id for r in first]
    assert apply_plan(sample, plans[0], 1, batch_id="batch-1").status == "already_applied"
    assert len(rows(sample, schema.dedup_merges)) == 2
    h = schema.history
    assert len(rows(sample, h, h.c.event == "merge")) == 2


def test_batch_reports_each_group_and_goes_on(sample):
    good = plan_one(sample, "contact", (13, [13, 14]))
    stale = plan_one(sample, "contact", (10, [10, 11, 12]))
    with sample.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 12).values(post="x"))
    seen = []
    results = apply_batch(sample, [stale, good], 1, "mixed", on_result=seen.append)
    assert [r.status for r in results] == ["stale", "applied"] and seen == results
    assert "contact #12 was edited: post empty -> 'x'" in results[0].message


# -- undo -----------------------------------------------------------------------------------------

def test_undo_refuses_when_a_merged_row_changed_then_force_reports_it(sample):
    before = dump_crm(sample)
    res = apply_plan(sample, plan_one(sample, "contact", (10, [10, 11, 12])), 1)
    with sample.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(post="Президент"))
        conn.execute(schema.deals.update().where(schema.deals.c.id == 101).values(contact_id=15))
    with pytest.raises(UndoConflict) as err:
        undo_merge(sample, res.merge_id, 1)
    changes = err.value.changes
    assert any(c.startswith("contacts #10 changed since the merge: post 'Директор' -> 'Президент'") for c in changes)
    assert "deals #101 changed since the merge: contact_id 10 -> 15" in changes
    assert "Undo with force to overwrite them." in str(err.value)
    forced = undo_merge(sample, res.merge_id, 1, force=True)
    assert forced.status == "undone" and len(forced.overwritten) == 2
    assert dump_crm(sample) == before
    assert undo_merge(sample, res.merge_id, 1).status == "already_undone"


def test_undo_names_a_later_merge_to_undo_first(sample):
    before = dump_crm(sample)
    first = apply_plan(sample, plan_one(sample, "contact", (10, [10, 11])), 1)
    second = apply_plan(sample, plan_one(sample, "contact", (12, [12, 10])), 1)
    with pytest.raises(UndoConflict, match=rf"Merge\(s\) #{second.merge_id} touched these records later: undo them first"):
        undo_merge(sample, first.merge_id, 1)
    undo_merge(sample, second.merge_id, 1)
    undo_merge(sample, first.merge_id, 1)
    assert dump_crm(sample) == before


def test_undo_permissions_and_unknown_merge(sample):
    res = apply_plan(sample, plan_one(sample, "contact", (13, [13, 14])), 4)
    with pytest.raises(PermissionDenied, match="may undo only merges they made"):
        undo_merge(sample, res.merge_id, 2)
    with pytest.raises(MergeError, match="There is no merge #9999"):
        undo_merge(sample, 9999, 1)
    assert undo_merge(sample, res.merge_id, 4).status == "undone"


def test_merge_history_lists_merges_newest_first(sample):
    merge_everything(sample, SAMPLE_GROUPS, "h")
    # the company merge #3 later folded contact 10's link to company 22, which merge #1 had moved
    with pytest.raises(UndoConflict, match=r"Merge\(s\) #3 touched these records later"):
        undo_merge(sample, 1, 1)
    undo_merge(sample, 5, 1)
    frame = merge_history(sample)
    assert list(frame.columns[:7]) == ["id", "when", "who", "entity_type", "primary_id", "merged_ids", "status"]
    assert list(frame["id"]) == [5, 4, 3, 2, 1]
    assert list(frame["status"]) == ["undone", "applied", "applied", "applied", "applied"]
    assert frame.iloc[-1]["who"] == "Админ Главный" and frame.iloc[-1]["merged_ids"] == [11, 12]
    assert frame.iloc[-1]["summary"].startswith("Merge contacts #11, #12 into #10")
    assert list(merge_history(sample, entity_type="company")["primary_id"]) == [23, 20]
    assert len(merge_history(sample, limit=2)) == 2
    assert list(merge_history(sample, limit=2, offset=1)["id"]) == list(frame["id"][1:3])
    assert merge_history(sample, user_id=999).empty and len(merge_history(sample, user_id=1)) == len(frame)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_merge_then_undo_is_identity(store, data):
    """Random groups with random field values (sizes, values, empties, conflicts, links): merge then undo
    restores every row of every CRM table."""
    store.truncate_crm()
    seed = data.draw(st.integers(0, 10_000), label="seed")
    n = data.draw(st.integers(1, 6), label="groups")
    mode = data.draw(st.sampled_from(["soft", "hard"]), label="delete_mode")
    policy = data.draw(st.sampled_from(["keep_primary", "most_recent", "longest"]), label="policy")
    groups = load_synthetic(store, n, seed=seed)
    # random values over the synthetic ones: texts in both alphabets, empties, dates
    words = st.one_of(st.none(), st.sampled_from(["", " ", "Иванов", "иванов", "Smith", "ООО «Ромашка»"]),
                      # PostgreSQL text cannot hold NUL
                      st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12))
    with store.engine.begin() as conn:
        for et, gs in groups.items():
            table = schema.ENTITY_TABLES[et]
            for _p, members in gs:
                for m in members:
                    values = {"comments": data.draw(words), "source": data.draw(words)}
                    if et == "contact":
                        values["birthdate"] = data.draw(st.one_of(st.none(), st.dates(dt.date(1940, 1, 1), dt.date(2010, 1, 1))))
                        values["post"] = data.draw(words)
                    conn.execute(table.update().where(table.c.id == m).values(**values))
    before = dump_crm(store)
    results = merge_everything(store, groups, "prop", MergeSettings(conflict_policy=policy, delete_mode=mode))
    assert all(r.status == "applied" for r in results), [r.message for r in results]
    assert dangling_links(store) == []
    assert all(u.status == "undone" for u in undo_batch(store, "prop", 1))
    assert dump_crm(store) == before


# -- skips and leads ------------------------------------------------------------------------------

def test_skips_are_stored_with_who_and_when_and_returned(sample):
    assert skip_pair(sample, "contact", 12, 10, 2) is True
    assert skip_pair(sample, "contact", 10, 12, 3) is False  # stored once
    assert skip_record(sample, "contact", 11, [10, 11, 12, 13], 2) == 3
    assert skip_record(sample, "contact", 11, [10, 12], 2) == 0
    skip_pair(sample, "company", 20, 22, 1)
    assert load_skips(sample, "contact") == {(10, 12), (10, 11), (11, 12), (11, 13)}
    assert load_skips(sample, "company") == {(20, 22)}
    assert load_skips(sample, "lead") == set()
    s = schema.dedup_skips
    (row,) = rows(sample, s, s.c.id_a == 10, s.c.id_b == 12)
    assert row["user_id"] == 2 and row["created_at"] > D(2025, 1, 1)
    with pytest.raises(ValueError, match="against itself"):
        skip_pair(sample, "contact", 5, 5, 1)
    with pytest.raises(ValueError, match="unknown entity type 'contacts'"):
        load_skips(sample, "contacts")


def test_link_a_lead_to_the_client_it_duplicates(sample):
    out = link_lead_to_client(sample, 601, contact_id=15, company_id=21, user_id=2)
    lead = one(sample, schema.leads, 601)
    assert (lead["contact_id"], lead["company_id"]) == (15, 21)
    h = one(sample, schema.history, out["history_id"])
    assert (h["entity_type"], h["entity_id"], h["event"]) == ("lead", 601, "link_client")
    assert h["message"] == "Linked lead #601 to the existing client contact #15 and company #21 by Мария Иванова"
    out = link_lead_to_client(sample, 600, contact_id=10, user_id=1)
    assert out["message"] == "Linked lead #600 to the existing client contact #10 (was #11) by Админ Главный"
    with pytest.raises(MergeError, match="contact #999: it does not exist"):
        link_lead_to_client(sample, 601, contact_id=999, user_id=1)
    with pytest.raises(PermissionDenied):
        link_lead_to_client(sample, 600, contact_id=10, user_id=2)  # lead 600 is Пётр Сидоров's
    with pytest.raises(MergeError, match="name the contact_id or company_id"):
        link_lead_to_client(sample, 601, user_id=1)


def test_batch_over_several_connections_without_waiting_for_the_disk(store):
    """workers > 1 (PostgreSQL; SQLite runs one writer) and durable=False give the same merges."""
    groups = load_synthetic(store, 40, seed=3, mix={"contact": 1.0})["contact"]
    before = dump_crm(store)
    plans = plan_groups(store, "contact", groups, AUTO)
    seen = []
    results = apply_batch(store, plans, 1, "par", workers=3, durable=False, on_result=seen.append)
    assert [r.primary_id for r in results] == [p.primary_id for p in plans]  # results in plan order
    assert Counter(r.status for r in results) == {"applied": len(plans)} and len(seen) == len(plans)
    assert dangling_links(store) == []
    assert Counter(r.status for r in apply_batch(store, plans, 1, "par", workers=3)) == {"already_applied": len(plans)}
    assert Counter(u.status for u in undo_batch(store, "par", 1)) == {"undone": len(plans)}
    assert dump_crm(store) == before
