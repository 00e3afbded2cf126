"""An approved group whose plan has open conflicts (planned with conflict_policy 'ask') and a merge with
a conflict policy: the policy settles them whether the records are as planned, only links moved since
(merged in the same batch), or a record was edited since (back to a person with a fresh plan that
shows the edit, never left approved with the old one). With policy 'ask' a group whose records were
edited since goes back stale with a fresh plan too; an unchanged one goes back with its conflicts."""

from __future__ import annotations

import sqlalchemy as sa

from crm import proposals, schema
from merge_rules import MergeSettings, apply_batch, plan_groups, undo_batch
from merge_rules.plan import MergePlan
from merge_rules.testing import load_sample
from pipelines.apply import apply_approved
from test_apply_concurrency import ASK, applied_merges, assert_consistent, groups_now, live_ids, propose, settings_file

IVANOV = (10, [10, 11, 12])  # open conflicts under 'ask': post and source (#10 and #11 differ)


def approved_with_open_conflicts(store, tmp_path) -> str:
    load_sample(store)
    (plan,) = plan_groups(store, "contact", [IVANOV], ASK)
    assert {c.field for c in plan.unresolved} == {"post", "source"}
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    return gid


def deal_contact(store, deal_id: int) -> int:
    d = schema.deals
    with store.engine.connect() as conn:
        return conn.execute(sa.select(d.c.contact_id).where(d.c.id == deal_id)).scalar_one()


def test_records_as_planned_the_merges_policy_settles_the_open_conflicts(store, tmp_path):
    gid = approved_with_open_conflicts(store, tmp_path)
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "applied", res
    assert groups_now(store)[gid]["status"] == "applied"
    assert not {11, 12} & live_ids(store)
    with store.engine.connect() as conn:
        post, source = conn.execute(sa.select(schema.contacts.c.post, schema.contacts.c.source)
                                    .where(schema.contacts.c.id == 10)).one()
    assert (post, source) == ("Директор", "web")  # the primary's values: keep_primary
    assert_consistent(store, [gid])


def test_a_deal_relinked_to_a_member_since_the_plan_is_merged_with_the_policy(store, tmp_path):
    gid = approved_with_open_conflicts(store, tmp_path)
    with store.engine.begin() as conn:  # deal 105 (of #15) re-linked to #11, a member, after the plan
        conn.execute(schema.deals.update().where(schema.deals.c.id == 105).values(contact_id=11))
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "applied", res
    assert "only links of its records had moved" in res["message"]
    assert groups_now(store)[gid]["status"] == "applied"
    assert deal_contact(store, 105) == 10  # the fresh plan moved the deal it did not know of
    (merge,) = applied_merges(store)
    assert merge["group_id"] == gid and sorted(merge["merged_ids"]) == [11, 12]
    assert_consistent(store, [gid])


def test_another_groups_merge_moved_links_the_group_is_merged_with_the_policy(store, tmp_path):
    """The company group #20/#22 is merged by another merge after the contact group was approved: #12's
    link to company #22 and its deal's company move to #20; the contact group still merges."""
    gid = approved_with_open_conflicts(store, tmp_path)
    (company,) = plan_groups(store, "company", [(20, [20, 22])], MergeSettings(conflict_policy="keep_primary"))
    assert apply_batch(store, [company], 1, "other")[0].status == "applied"
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "applied", res
    assert groups_now(store)[gid]["status"] == "applied"
    assert_consistent(store, [gid])


def test_an_undo_moved_links_back_since_the_plan_the_group_is_merged_with_the_policy(store, tmp_path):
    """The tester's case: planned (open conflicts) while the company group #20/#22 was merged, that merge
    undone since (its links back on #22), approved, merged with keep_primary."""
    load_sample(store)
    (company,) = plan_groups(store, "company", [(20, [20, 22])], MergeSettings(conflict_policy="keep_primary"))
    assert apply_batch(store, [company], 1, "other")[0].status == "applied"
    (plan,) = plan_groups(store, "contact", [IVANOV], ASK)
    assert plan.unresolved
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    assert [u.status for u in undo_batch(store, "other", 1)] == ["undone"]
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "applied", res
    assert groups_now(store)[gid]["status"] == "applied"
    assert_consistent(store, [gid])


def test_settings_with_other_field_rules_leave_the_conflicts_to_a_person_saying_why(store, tmp_path):
    """Records as planned, but the merge's settings would merge otherwise than approved (another rule
    for a field): not settled by its policy, and the message says so (not only "merge with a conflict
    policy")."""
    gid = approved_with_open_conflicts(store, tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text("merge: {conflict_policy: keep_primary, fields: {contact: {comments: keep_primary}}}\n")
    (res,) = apply_approved(store.url, "b1", 1, str(other))
    assert res["status"] == "conflicts", res
    assert ("The merge's conflict policy keep_primary was not used" in res["message"]
            and "comments" in res["message"]), res["message"]
    assert groups_now(store)[gid]["status"] == "pending" and applied_merges(store) == []


def test_the_way_of_deleting_stays_the_plans_when_a_policy_settles_its_conflicts(store, tmp_path):
    """A run fixed the way of deleting in the plan; a merge with delete_mode hard in its settings
    settles the open conflicts and deletes as planned (soft), also for a group that goes back to a
    person re-planned (it came back with the merge's hard delete, approvable as such)."""
    gid = approved_with_open_conflicts(store, tmp_path)
    hard = tmp_path / "hard.yaml"
    hard.write_text("merge: {conflict_policy: keep_primary, delete_mode: hard}\n")
    (res,) = apply_approved(store.url, "b1", 1, str(hard))
    assert res["status"] == "applied", res
    assert {11, 12}.isdisjoint(live_ids(store))
    with store.engine.connect() as conn:  # soft: the rows stay, marked deleted
        kept = conn.execute(sa.select(schema.contacts.c.id).where(schema.contacts.c.id.in_([11, 12]))).scalars()
        assert sorted(kept) == [11, 12]


def test_a_group_sent_back_keeps_the_way_of_deleting_it_was_planned_with(store, tmp_path):
    gid = approved_with_open_conflicts(store, tmp_path)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(post="Исполнительный директор"))
    hard = tmp_path / "hard.yaml"
    hard.write_text("merge: {conflict_policy: keep_primary, delete_mode: hard}\n")
    (res,) = apply_approved(store.url, "b1", 1, str(hard))
    assert res["status"] == "stale", res
    assert MergePlan.from_dict(groups_now(store)[gid]["plan"]).delete_mode == "soft"


def test_a_member_edited_since_the_plan_goes_back_with_a_fresh_plan_then_merges(store, tmp_path):
    gid = approved_with_open_conflicts(store, tmp_path)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(post="Исполнительный директор"))
    settings = settings_file(tmp_path, "keep_primary")
    (res,) = apply_approved(store.url, "b1", 1, settings)
    assert res["status"] == "stale", res
    assert "contact #10 was edited: post 'Директор' -> 'Исполнительный директор'" in res["message"], res["message"]
    assert "nobody chose a value" not in res["message"]
    assert res["message"].endswith("Re-planned; the group is pending again for a person to approve.")
    g = groups_now(store)[gid]
    assert g["status"] == "pending" and g["primary_reason"].endswith("(re-planned: records changed)")
    fresh = MergePlan.from_dict(g["plan"])
    assert not fresh.unresolved and not fresh.problems
    assert fresh.fields["post"].value == "Исполнительный директор"
    assert fresh.records[10]["post"] == "Исполнительный директор"
    assert applied_merges(store) == [] and {10, 11, 12} <= live_ids(store)

    proposals.set_status(store, [gid], "approved", 1)
    (again,) = apply_approved(store.url, "b2", 1, settings)
    assert again["status"] == "applied", again
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.contacts.c.post).where(schema.contacts.c.id == 10)).scalar_one() \
            == "Исполнительный директор"
    assert_consistent(store, [gid])


def test_with_policy_ask_the_group_goes_back_saying_a_person_must_choose(store, tmp_path):
    """No policy given: the open conflicts are for a person (or a policy); only a link of a record moved
    since (no record edited), so the group is not stale: it goes back with its conflicts."""
    gid = approved_with_open_conflicts(store, tmp_path)
    with store.engine.begin() as conn:
        conn.execute(schema.deals.update().where(schema.deals.c.id == 105).values(contact_id=11))
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "ask"))
    assert res["status"] == "conflicts", res
    assert "Choose a value for each on the review page, or merge with a conflict policy" in res["message"]
    assert groups_now(store)[gid]["status"] == "pending"
    assert applied_merges(store) == []


def test_a_group_the_merging_manager_may_not_merge_stays_approved_for_an_admin(store, tmp_path):
    """A manager's merge took the admin's approvals back to pending (approved_by still set): a group
    holding another manager's records is left approved, for an admin or the scheduled apply."""
    gid = approved_with_open_conflicts(store, tmp_path)  # #10, #12 are manager 2's, #11 manager 3's
    (res,) = apply_approved(store.url, "b1", 2, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "denied" and "Left approved" in res["message"], res
    assert groups_now(store)[gid]["status"] == "approved" and applied_merges(store) == []
    (res,) = apply_approved(store.url, "b2", 1, settings_file(tmp_path, "keep_primary"))  # the admin's
    assert res["status"] == "applied", res


def test_a_group_sent_back_names_every_conflict_the_policy_settles_in_its_new_plan(store, tmp_path):
    """An edit that makes a new conflict (a typo in the primary's surname): the message named only the
    conflicts of the approved plan, not the one the policy now settles with the typo (helper-60)."""
    gid = approved_with_open_conflicts(store, tmp_path)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(last_name="Ивановв"))
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "stale", res
    assert ("In the new plan the merge's conflict policy keep_primary settles its conflicts (last_name, post, "
            "source).") in res["message"], res["message"]
    assert MergePlan.from_dict(groups_now(store)[gid]["plan"]).fields["last_name"].value == "Ивановв"


NEW_PHONE = "+7 999 000-11-22"


def change_repeated_phone(store, gid: str):
    """The operator's probe: #11's phone, a repeat of #10's in the approved plan, changed by SQL after
    the approval. Returns the phone as the plan had it."""
    approved = MergePlan.from_dict(groups_now(store)[gid]["plan"])
    (old,) = [c for c in approved.communications if c.type == "phone" and c.action == "repeat"]
    assert old.entity_id == 11
    with store.engine.begin() as conn:
        conn.execute(schema.communications.update().where(schema.communications.c.id == old.id)
                     .values(value=NEW_PHONE))
    return old


def test_with_policy_ask_a_member_edited_since_goes_back_stale_with_a_fresh_plan(store, tmp_path):
    """The operator's probe: with policy ask the group came back "conflicts" with the old plan (the old
    phone still a repeat), for a person to settle conflicts on an outdated plan. Stale first: back with
    a fresh plan, the change and the conflicts waiting for a choice named."""
    gid = approved_with_open_conflicts(store, tmp_path)
    old = change_repeated_phone(store, gid)
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "ask"))
    assert res["status"] == "stale", res
    assert (f"phone {old.value!r} of contact #11 changed to phone {NEW_PHONE!r} of #11" in res["message"]
            and "In the new plan these conflicts wait for a person to choose a value: post, source" in res["message"]
            and "nobody chose a value" not in res["message"]), res["message"]
    assert res["message"].endswith("Re-planned; the group is pending again for a person to approve.")
    g = groups_now(store)[gid]
    assert g["status"] == "pending" and g["primary_reason"].endswith("(re-planned: records changed)")
    fresh = MergePlan.from_dict(g["plan"])
    assert old.value not in {c.value for c in fresh.communications}
    (phone,) = [c for c in fresh.communications if c.id == old.id]
    assert (phone.value, phone.action) == (NEW_PHONE, "move")  # no longer a repeat of #10's phone
    assert {c.field for c in fresh.unresolved} == {"post", "source"} and not fresh.problems
    assert fresh.delete_mode == "soft" and fresh.conflict_policy == "ask"
    assert applied_merges(store) == [] and {10, 11, 12} <= live_ids(store)

    # the fresh plan is of the records as they are: approved again, a policy settles it and it merges
    proposals.set_status(store, [gid], "approved", 1)
    (again,) = apply_approved(store.url, "b2", 1, settings_file(tmp_path, "keep_primary"))
    assert again["status"] == "applied", again
    with store.engine.connect() as conn:
        c = schema.communications
        assert conn.execute(sa.select(c.c.entity_id).where(c.c.id == old.id)).scalar_one() == 10
    assert_consistent(store, [gid])


def test_with_policy_ask_a_stale_group_keeps_the_choices_a_person_made(store, tmp_path):
    """A person chose #11's post, left source open; a record edited since: the fresh plan keeps the
    choice, and the message names only the conflict still waiting."""
    load_sample(store)
    (plan,) = plan_groups(store, "contact", [IVANOV], ASK, choices={10: {"post": 11}})
    assert [c.field for c in plan.unresolved] == ["source"]
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    change_repeated_phone(store, gid)
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "ask"))
    assert res["status"] == "stale", res
    assert "these conflicts wait for a person to choose a value: source (" in res["message"], res["message"]
    fresh = MergePlan.from_dict(groups_now(store)[gid]["plan"])
    assert (fresh.fields["post"].rule, fresh.fields["post"].source_id) == ("choice", 11)
    assert fresh.fields["post"].value == "Генеральный директор"
    assert [c.field for c in fresh.unresolved] == ["source"]


def test_with_policy_ask_an_unchanged_group_goes_back_with_its_conflicts_and_its_plan(store, tmp_path):
    gid = approved_with_open_conflicts(store, tmp_path)
    before = groups_now(store)[gid]
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "ask"))
    assert res["status"] == "conflicts", res
    assert "Choose a value for each on the review page, or merge with a conflict policy" in res["message"]
    assert "out of date" not in res["message"]
    g = groups_now(store)[gid]
    assert g["status"] == "pending" and g["primary_reason"] == before["primary_reason"]
    assert g["plan"] == before["plan"]  # the approved plan: its records are as planned
    assert applied_merges(store) == []
