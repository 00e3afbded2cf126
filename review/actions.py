"""What the review page's buttons do: merge now, approve, skip (a record or the group), withdraw a
"not duplicates" mark or a "the same" one (a record a person added), undo.

The merge itself is the merge engine's (merge_rules.apply.apply_plan): it re-reads and locks the rows,
re-checks the user's rights and refuses a plan whose rows changed. On top of that the page refuses a
plan that differs from the one the person was shown: the page carries a signed copy of that plan,
and the merge goes ahead only if the rows still have the fingerprints it was built from, and no
approval was made since with other choices (another person's decision is not overridden unseen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from crm import proposals, schema
from crm.proposals import now
from merge_rules.apply import apply_plan, describe_changes
from merge_rules.errors import MergeError, PermissionDenied, StalePlanError, UndoConflict, UnresolvedConflicts
from merge_rules.permissions import may_mark_pair
from merge_rules.plan import PLURAL, MergePlan, plan_groups
from merge_rules.settings import MergeSettings
from merge_rules.skips import dropped_words, may_withdraw_mark, skip_pair, skip_record, unskip_pair
from merge_rules.snapshot import read_snapshot
from merge_rules.undo import person_choices, plan_again, replan_undone, undo_merge
from review import queries, views

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    ok: bool
    message: str
    details: list[str] | None = None
    status: int = 200  # the HTTP status a refusal deserves (403 for a permission)
    link: tuple[str, str] | None = None  # (href, words): where to see what the message speaks of
    fresh: bool = False  # show the page afresh (the person's primary and choices are of no use now)


def records_words(entity: str, ids: list[int]) -> str:
    """ "contact #14" or "contacts #14, #15": the word in its right number."""
    return f"{entity if len(ids) == 1 else PLURAL[entity]} {', '.join(f'#{i}' for i in ids)}"


def _taken(store, group: dict, user: dict, seen: MergePlan | None, verb: str) -> Outcome | None:
    """When a merge took this group (or part of it) after the person opened its page: says who merged
    what and when, with a link to the result. None when no merge explains the refusal."""
    with store.engine.connect() as conn:
        fresh = queries.get_group(conn, group["id"]) or group
        merge = queries.group_merge_since(conn, fresh, seen.planned_at if seen is not None else None)
        if merge is None:
            return None
        primary = queries.read_records(conn, merge["entity_type"], [merge["primary_id"]]).get(merge["primary_id"])
    by = "you" if merge["user_id"] is not None and merge["user_id"] == user["id"] else merge["who"]
    when = f"{views.fmt(merge['merged_at'])} UTC"
    what = (f"{records_words(merge['entity_type'], list(merge['merged_ids']))} into #{merge['primary_id']} "
            f"(merge #{merge['id']})")
    if queries.may_see_record(user, primary):
        link = (f"/record/{merge['entity_type']}/{merge['primary_id']}", f"Open the merged {merge['entity_type']} "
                f"#{merge['primary_id']}")
    else:
        link = (f"/group/{quote(group['id'], safe='')}#merged-note", "See the merge")
    if fresh.get("merge_id") == merge["id"]:
        return Outcome(False, f"Not {verb}: this group was just merged by {by} at {when}: {what}.", link=link,
                       fresh=True)
    return Outcome(False, f"Not {verb}: this group changed since you opened it: {by} merged {what} at {when}. "
                   "Here is the plan for the records left in it; check it and try again.", link=link, fresh=True)


def _latest_mark(store, entity: str, ids: list[int], user: dict) -> str:
    """ "Анна marked contact #3 and #4 "not duplicates" at 2026-12-07 15:30 UTC": the latest "not
    duplicates" mark between these records, in words ("" when there is none)."""
    with store.engine.connect() as conn:
        marks = queries.marks_within(conn, entity, ids)
        if not marks:
            return ""
        m = max(marks, key=lambda m: (m["created_at"], m["id_a"], m["id_b"]))
        people = queries.users_by_id(conn, [m["user_id"]]) if m["user_id"] is not None else {}
    uid = m["user_id"]
    who = "you" if uid == user["id"] else (people.get(uid) or {}).get("name") or (
        f"user #{uid}" if uid is not None else "the system")
    return (f"{who} marked {entity} #{m['id_a']} and #{m['id_b']} \"not duplicates\" at "
            f"{views.fmt(m['created_at'])} UTC")


def _closed(store, group: dict, user: dict, verb: str) -> Outcome:
    """Why a group no longer open (skipped since the page was shown, say) is not acted on: in the words
    of what the person did ("Not approved"), and who closed it and when where a mark says so."""
    why = _latest_mark(store, group["entity_type"], [int(m) for m in group["member_ids"]], user) \
        if group["status"] == "skipped" else ""
    return Outcome(False, f"Not {verb}: this group is {group['status']}" + (f" ({why})" if why else "")
                   + "; there is nothing left to do on it.", fresh=True)


def stale_changes(store, seen: MergePlan, fresh: MergePlan, user: dict) -> list[str]:
    """What changed between the plan the person saw and the rows now (empty: nothing changed)."""
    if seen.fingerprints == fresh.fingerprints and seen.member_ids == fresh.member_ids:
        return []
    with store.engine.connect() as conn:
        snap = read_snapshot(conn, seen.entity_type, seen.primary_id, seen.member_ids)
    changes = describe_changes(seen, snap, snap.fingerprints())
    if set(fresh.member_ids) != set(seen.member_ids):
        # which records left or came, and why where a mark says (not only the records left)
        gone = [i for i in seen.member_ids if i not in fresh.member_ids]
        came = [i for i in fresh.member_ids if i not in seen.member_ids]
        words = [f"{', '.join(f'#{i}' for i in gone)} left it" if gone else "",
                 f"{', '.join(f'#{i}' for i in came)} came into it" if came else ""]
        why = _latest_mark(store, seen.entity_type, [*gone, *fresh.member_ids], user) if gone else ""
        changes.append("the records you may merge in this group changed: " + "; ".join(w for w in words if w)
                       + (f" ({why})" if why else "") + "; now " + ", ".join(f"#{i}" for i in fresh.member_ids))
    return changes or ["the records changed since the page was shown"]


def _fresh_plan(store, group: dict, user: dict, settings: MergeSettings, seen: MergePlan,
                choices: dict[str, int]) -> tuple[MergePlan | None, list[str]]:
    with store.engine.connect() as conn:
        records = queries.read_records(conn, group["entity_type"], group["member_ids"])
    plan, _primary, blockers = views.plan_for(store, group, user, settings, seen.primary_id, choices, records)
    return plan, blockers


def _approval(state: dict | None) -> tuple | None:
    """The approval part of views.decision_state: (by, at), None when not approved."""
    if not state or state.get("status") != "approved":
        return None
    return state.get("approved_by"), state.get("approved_at")


def _approved_since(store, group: dict, user: dict, plan: MergePlan, seen_state: dict | None,
                    verb: str) -> Outcome | None:
    """Refuses ``plan`` when the group was approved since the page was shown (``seen_state``), by anyone,
    with another primary or other choices: merging or approving over it would drop that decision
    unseen. The same choices (say, the person's own approval from another tab) go through. None: no
    such approval (a token from before the approval was signed with the plan is not checked)."""
    if seen_state is None or group["status"] != "approved":
        return None
    now = _approval(views.decision_state(group))
    if now == _approval(seen_state):
        return None
    with store.engine.connect() as conn:
        approved = views.stored_plan(conn, group)
        people = queries.users_by_id(conn, [group["approved_by"]]) if group["approved_by"] is not None else {}
    differs: list[str] = []
    if approved is not None:
        if approved.primary_id != plan.primary_id:
            differs.append(f"primary #{approved.primary_id}")
        theirs, mine = person_choices(approved), person_choices(plan)
        order = list(approved.fields) + [f for f in plan.fields if f not in approved.fields]
        for name in [f for f in order if f in theirs or f in mine]:
            if theirs.get(name) != mine.get(name):
                label = views.FIELD_LABELS.get(name, name)  # (words the page uses, not column names)
                differs.append(f"{label} from #{theirs[name]}" if name in theirs else f"{label} as the rules settle it")
        if not differs:
            return None
    uid = group["approved_by"]
    who = ("you" if uid == user["id"] else (people.get(uid) or {}).get("name") or f"user #{uid}") if uid is not None \
        else "the system"
    when = f"{views.fmt(group['approved_at'])} UTC" if group.get("approved_at") else "a moment ago"
    what = f"other choices ({', '.join(differs)})" if differs else "choices of its own"
    log.info("group %s: %s by user #%s refused: approved by user #%s at %s since the page was shown",
             group["id"], verb, user["id"], uid, group.get("approved_at"))
    return Outcome(False, f"Not {verb}: this group was approved by {who} at {when} with {what}; look at the plan "
                   "now.", fresh=True)


def _check_seen(store, group, user, settings, seen: MergePlan, choices,
                verb: str = "merged", seen_state: dict | None = None) -> tuple[MergePlan | None, Outcome | None]:
    """The fresh plan with the person's choices, or why it cannot be used. (Someone else's merge since the
    page was shown is named as such, before the refusal it causes: _taken.)"""
    if group["status"] not in views.ACTIONABLE:
        return None, _taken(store, group, user, seen, verb) or _closed(store, group, user, verb)
    plan, blockers = _fresh_plan(store, group, user, settings, seen, choices)
    if plan is None:
        return None, _taken(store, group, user, seen, verb) or Outcome(False, " ".join(blockers), status=403)
    if blockers:  # (records marked "not duplicates")
        return None, Outcome(False, " ".join(blockers))
    changes = stale_changes(store, seen, plan, user)
    if changes:
        return None, _taken(store, group, user, seen, verb) or Outcome(
            False, f"Not {verb}: the records changed since this page was shown, so the plan you "
            "saw is out of date. Here is the plan as the records are now; check it and try again.", changes)
    if approved := _approved_since(store, group, user, plan, seen_state, verb):
        return None, approved
    if plan.problems:
        return None, Outcome(False, "Not merged: " + plan.summary())
    if plan.unresolved:
        return None, Outcome(False, "Choose a value for every conflict first: "
                             + ", ".join(views.FIELD_LABELS.get(c.field, c.field) for c in plan.unresolved) + ".")
    return plan, None


def merge_now(store, group: dict, user: dict, settings: MergeSettings, seen: MergePlan,
              choices: dict[str, int], seen_state: dict | None = None) -> Outcome:
    """Merge the plan as shown, with the person's choices. ``seen_state``: the group's approval when the
    page was shown (views.decision_state), None not to check it."""
    plan, refusal = _check_seen(store, group, user, settings, seen, choices, seen_state=seen_state)
    if refusal:
        return refusal
    others = _others_live(store, group, plan)
    try:
        result = apply_plan(store, plan, user["id"], group_id=group["id"])
    except StalePlanError as exc:
        # (another person's merge of this group, a moment before this one: say so, not the rows it changed)
        return _taken(store, group, user, seen, "merged") or Outcome(
            False, "Not merged: the records changed while merging. " + str(exc), exc.changes)
    except PermissionDenied as exc:
        return Outcome(False, "Not merged: " + str(exc), status=403)
    except UnresolvedConflicts as exc:
        return Outcome(False, "Not merged: " + str(exc))
    except MergeError as exc:
        return Outcome(False, "Not merged: " + str(exc))
    # (the engine's own words, merge_message, say "contacts" for one record too)
    done = (f"Merged {records_words(plan.entity_type, plan.duplicate_ids)} into #{plan.primary_id} "
            f"(merge #{result.merge_id}), which can be undone from the history page")
    lost = views.lost_access(plan)
    if lost:
        n = len(lost)
        note = (f" {n} {'manager' if n == 1 else 'managers'} lost access to merged records, listed below: "
                "pass it on.")
    else:
        note = ""
    if not others:
        # the group keeps the plan it merged by (primary, choices), as an approved one does: an undo
        # reopens it with that plan made again, not with the run's
        with store.engine.begin() as conn:
            proposals.set_plan(conn, group["id"], plan.to_dict())
        return Outcome(True, done + "." + note, lost or None)
    # a manager merged their own records: the group stays open for the other managers' ones
    with store.engine.connect() as conn:
        records = queries.read_records(conn, group["entity_type"], [plan.primary_id, *others])
    outcome = _leave(store, {**group, "primary_id": plan.primary_id}, [plan.primary_id, *others],
                     records, settings, f"{done}; the group stays open for the records of other managers ("
                     + ", ".join(f"#{m}" for m in others) + ")", taken=plan)
    outcome.message += note
    outcome.details = lost or None
    return outcome


def _others_live(store, group: dict, plan: MergePlan) -> list[int]:
    """The live records of the group that ``plan`` leaves out (those of other managers)."""
    rest = [int(m) for m in group["member_ids"] if int(m) not in plan.member_ids]
    if not rest:
        return []
    with store.engine.connect() as conn:
        records = queries.read_records(conn, group["entity_type"], rest)
    return [m for m in rest if m in records and records[m].get("deleted_at") is None]


def approve(store, group: dict, user: dict, settings: MergeSettings, seen: MergePlan,
            choices: dict[str, int], seen_state: dict | None = None) -> Outcome:
    """Store the plan as shown (with the choices and primary) for the scheduled apply (``seen_state``:
    as merge_now's)."""
    plan, refusal = _check_seen(store, group, user, settings, seen, choices, "approved", seen_state)
    if refusal:
        return refusal
    if others := _others_live(store, group, plan):
        # the scheduled apply merges the stored plan and closes the group: theirs would be left out
        return Outcome(False, "Not approved: this group also holds records of other managers ("
                       + ", ".join(f"#{m}" for m in others) + "), which the scheduled merge would leave out. "
                       "Merge your records now, skip them, or ask an admin to approve the whole group.", status=403)
    g = schema.dedup_groups
    # a compare-and-set on the approval checked above: one made a moment ago is not overwritten unseen
    same = [g.c.approved_by.is_(None) if group["approved_by"] is None else g.c.approved_by == group["approved_by"],
            g.c.approved_at.is_(None) if group["approved_at"] is None else g.c.approved_at == group["approved_at"]]
    with store.engine.begin() as conn:  # (an approved group is approved again, with the plan as shown now)
        n = conn.execute(g.update().where(g.c.id == group["id"], g.c.status.in_(views.ACTIONABLE), *same).values(
            status="approved", primary_id=plan.primary_id, approved_by=user["id"],
            approved_at=now(), updated_at=now())).rowcount
        if n:
            proposals.set_plan(conn, group["id"], plan.to_dict())
    if n == 0:
        with store.engine.connect() as conn:
            fresh = queries.get_group(conn, group["id"])
        if fresh is not None and fresh["status"] in views.ACTIONABLE:
            return _approved_since(store, fresh, user, plan, views.decision_state(group), "approved") or Outcome(
                False, "Not approved: this group changed while approving; look at the plan now.", fresh=True)
        return Outcome(False, "This group is no longer pending or approved (merged or skipped meanwhile); "
                       "it was not approved.")
    again = " again" if group["status"] == "approved" else ""
    return Outcome(True, f"Approved{again}: {plan.summary()}. The scheduled apply will merge it.")


def unapprove(store, group: dict, user: dict, settings: MergeSettings, seen_by: int | None,
              seen_at: str | None) -> Outcome:
    """Withdraw the group's approval: pending again, approved_by/approved_at cleared. An admin may, or
    the manager who approved. ``seen_by``/``seen_at``: the approval the page showed (views.decision_state's
    approved_by, approved_at); a newer one (approved again since) is not withdrawn unseen.

    The stored plan is replaced by a plan of the run for the live records: the run's primary (the
    first live member: a run stores the members ranked, primary first) and no person's choices. The
    approver's plan is not kept: a pending group's stored plan is what the page opens on and what
    `crm-dedup approve` (and auto-approve) approve as it is, so a withdrawn decision would come back
    unseen under another person's name."""
    if group["status"] != "approved":
        return Outcome(False, f"Not withdrawn: this group is {group['status']}, not approved; there is no "
                       "approval to withdraw.", fresh=True)
    uid = group["approved_by"]
    with store.engine.connect() as conn:
        people = queries.users_by_id(conn, [uid]) if uid is not None else {}
    who = ("you" if uid == user["id"] else (people.get(uid) or {}).get("name") or f"user #{uid}") \
        if uid is not None else "the system"
    if not queries.is_admin(user) and uid != user["id"]:
        return Outcome(False, f"Not withdrawn: this group was approved by {who}; only they or an admin may "
                       "withdraw that approval.", status=403)
    if _approval(views.decision_state(group)) != (seen_by, seen_at):
        when = f"{views.fmt(group['approved_at'])} UTC" if group.get("approved_at") else "a moment ago"
        return Outcome(False, f"Not withdrawn: this group was approved again by {who} at {when}, after the page "
                       "you withdrew from was shown; look at the approval now.", fresh=True)
    entity = group["entity_type"]
    members = [int(m) for m in group["member_ids"]]
    with store.engine.connect() as conn:
        records = queries.read_records(conn, entity, members)
    live = [m for m in members if m in records and records[m].get("deleted_at") is None]
    plan = plan_groups(store, entity, [(live[0], live)], settings, group_ids={live[0]: group["id"]})[0] \
        if len(live) >= 2 else None
    g = schema.dedup_groups
    # a compare-and-set on the approval checked above (approve's): one made a moment ago stays
    same = [g.c.approved_by.is_(None) if uid is None else g.c.approved_by == uid,
            g.c.approved_at.is_(None) if group["approved_at"] is None else g.c.approved_at == group["approved_at"]]
    values = {"status": "pending", "approved_by": None, "approved_at": None, "updated_at": now()}
    if plan is not None:
        values["primary_id"] = plan.primary_id
    with store.engine.begin() as conn:
        n = conn.execute(g.update().where(g.c.id == group["id"], g.c.status == "approved", *same)
                         .values(**values)).rowcount
        if n:
            proposals.set_plan(conn, group["id"], plan.to_dict() if plan else None)
    if n == 0:
        return Outcome(False, "Not withdrawn: this group changed while withdrawing (approved again, merged or "
                       "skipped meanwhile); look at it now.", fresh=True)
    log.info("group %s: approval by user #%s withdrawn on the review page by user #%s", group["id"], uid, user["id"])
    if plan is None:
        return Outcome(True, f"Withdrew the approval by {who}: the group is pending again (fewer than two of its "
                       "records are live: nothing to merge).")
    return Outcome(True, f"Withdrew the approval by {who}: the group is pending again, with the run's plan for its "
                   f"records (primary #{plan.primary_id}, none of the approved choices): {plan.summary()}.")


def include(store, group: dict, user: dict, settings: MergeSettings, record_id: int | None) -> Outcome:
    """Add a record the run left out to the group (merge_rules.grouping, as `crm-dedup include`)."""
    from merge_rules.grouping import CannotInclude, include_record

    if record_id is None:
        return Outcome(False, "Say which record to add to the group.")
    if record_id in {int(m) for m in group["member_ids"]}:
        # (include_record would mark a member "the same" as the primary, as if re-adding a record whose
        # mark was withdrawn: not what a person typing a member's id on the page means)
        return Outcome(False, f"{group['entity_type']} #{record_id} is in this group already: nothing to add.")
    try:
        return Outcome(True, include_record(store, group["id"], record_id, user["id"], settings,
                                            undo_hint=PAGE_UNDO))
    except PermissionDenied as exc:
        return Outcome(False, str(exc), status=403)
    except CannotInclude as exc:
        return Outcome(False, str(exc))


PAGE_UNDO = "\"Withdraw\" under Added by a person on the group page withdraws that"


def withdraw_include(store, group: dict, user: dict, record_id: int) -> Outcome:
    """Withdraw the "the same" marks of a record a person added to the group (merge_rules.grouping, as
    `crm-dedup include --undo`, which checks who may: merge_rules.skips.may_withdraw_mark)."""
    from merge_rules.grouping import CannotInclude, withdraw_include as withdraw

    try:
        return Outcome(True, withdraw(store, group["id"], record_id, user["id"]))
    except PermissionDenied as exc:
        return Outcome(False, f"Not withdrawn: {exc}", status=403)
    except CannotInclude as exc:
        return Outcome(False, str(exc))


def _dropped(store, dropped: list[dict]) -> str:
    """"; the 'same' mark by ... is withdrawn" where a skip replaced marks (merge_rules.skips), else ""."""
    said = dropped_words(store, dropped)
    return f"; {said}" if said else ""


def skip(store, group: dict, user: dict, settings: MergeSettings, record_id: int | None) -> Outcome:
    """Skip the whole group (every pair the user may skip; the group becomes 'skipped'), or one record
    (not a duplicate of the others: it leaves the group, which is re-planned without it)."""
    entity = group["entity_type"]
    members = [int(m) for m in group["member_ids"]]
    if group["status"] not in views.ACTIONABLE:
        return _taken(store, group, user, None, "skipped") or _closed(store, group, user, "skipped")
    with store.engine.connect() as conn:
        records = queries.read_records(conn, entity, members)
    g = schema.dedup_groups
    pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
    if record_id is None and all(may_mark_pair(user, [records.get(a) or {}, records.get(b) or {}]) for a, b in pairs):
        dropped: list[dict] = []
        new = sum(skip_pair(store, entity, a, b, user["id"], dropped) for a, b in pairs)
        with store.engine.begin() as conn:
            conn.execute(g.update().where(g.c.id == group["id"]).values(status="skipped", updated_at=now()))
        return Outcome(True, f"Skipped the group: {len(pairs)} pair(s) marked as not duplicates ({new} new)"
                       f"{_dropped(store, dropped)}; later runs keep them apart.")
    if record_id is None:
        # a manager skips what is theirs: their records leave the group, which stays for the others'
        mine = [m for m in members if (records.get(m) or {}).get("responsible_id") == user["id"]]
        if not mine:
            return Outcome(False, "None of the records of this group is yours; you cannot skip it.", status=403)
        dropped: list[dict] = []
        new = sum(skip_record(store, entity, m, members, user["id"], dropped) for m in mine)
        return _leave(store, group, [m for m in members if m not in mine], records, settings,
                      f"Skipped your record(s) {', '.join(f'#{m}' for m in mine)}: marked as not duplicates of "
                      f"the others ({new} new pair(s)){_dropped(store, dropped)}; the group stays for their managers")
    if record_id not in members:
        return Outcome(False, f"{entity} #{record_id} is not in this group.")
    if not queries.is_admin(user) and (records.get(record_id) or {}).get("responsible_id") != user["id"]:
        return Outcome(False, f"You are not responsible for {entity} #{record_id}; you cannot skip it.", status=403)
    dropped: list[dict] = []
    new = skip_record(store, entity, record_id, members, user["id"], dropped)
    rest = [m for m in members if m != record_id]
    return _leave(store, group, rest, records, settings,
                  f"Skipped {entity} #{record_id}: marked as not a duplicate of "
                  f"{', '.join(f'#{m}' for m in rest)} ({new} new pair(s)){_dropped(store, dropped)}")


def _leave(store, group: dict, rest: list[int], records: dict[int, dict], settings: MergeSettings,
           done: str, taken: MergePlan | None = None) -> Outcome:
    """The group with only ``rest`` left in it, planned again (closed as skipped below two records)."""
    g = schema.dedup_groups
    values, became = _regroup(store, group, rest, records, settings, taken)
    plan = values.pop("plan")
    with store.engine.begin() as conn:
        if conn.execute(g.update().where(g.c.id == group["id"]).values(**values)).rowcount:
            proposals.set_plan(conn, group["id"], plan)  # (a run may have just replaced the group)
    return Outcome(True, f"{done}{became}.")


def _regroup(store, group: dict, rest: list[int], records: dict[int, dict], settings: MergeSettings,
             taken: MergePlan | None) -> tuple[dict, str]:
    """The group row's new values once records have left it (skipped, or merged by ``taken``: a
    manager's merge of their own records), its new plan (under "plan"), and what became of it, in
    words. An approved group stays approved with the approved plan made again for the records left,
    where that can be done (_approval_kept); else it goes back to a person, with a note saying why."""
    values = {"member_ids": rest, "updated_at": now(), "merge_id": None,  # (the row is applied after a merge)
              "responsible_ids": sorted({r for m in rest if (r := (records.get(m) or {}).get("responsible_id"))
                                         is not None})}
    # the pairs of the records a merge took stay with the group, for an undo (the page shows the members')
    kept = set(rest) | set(taken.duplicate_ids if taken else ())
    pairs = [p for p in group.get("pairs") or [] if int(p["id_a"]) in kept and int(p["id_b"]) in kept]
    values["pairs"] = pairs
    values["criteria"] = views.criteria_words(pairs, rest)
    if len(rest) < 2:
        values.update(status="skipped", plan=None)
        return values, "; the group has one record left and is closed as skipped"
    live = [m for m in rest if m in records and records[m].get("deleted_at") is None]
    why, who = "", ""
    if group["status"] == "approved":
        with store.engine.connect() as conn:
            approver = queries.users_by_id(conn, [group["approved_by"]]).get(group["approved_by"])
        who = approver["name"] if approver else "the system"
        approved, why = _approval_kept(store, group, live, settings, taken)
        if approved is not None:
            values.update(status="approved", primary_id=approved.primary_id, plan=approved.to_dict())
            left = ", ".join(f"#{m}" for m in approved.member_ids)
            return values, f"; the group stays approved by {who} for {left}, with the approved primary and choices"
    primary = int(group["primary_id"]) if int(group["primary_id"]) in rest else rest[0]
    if primary != int(group["primary_id"]):
        values["primary_reason"] = f"#{primary}: the previous primary #{group['primary_id']} was skipped"
    plan = plan_groups(store, group["entity_type"], [(primary, live)], settings, group_ids={primary: group["id"]})[0] \
        if primary in live and len(live) >= 2 else None
    # approved (but see above), applied in part (a manager's merge), stale: pending, for a person
    values.update(primary_id=primary, plan=plan.to_dict() if plan else None, status="pending", approved_by=None,
                  approved_at=None)
    if not why:
        return values, ""
    values["primary_reason"] = (values.get("primary_reason") or group["primary_reason"] or "") \
        + f" (approval by {who} withdrawn: {why}; approve it again)"
    return values, f"; the approval by {who} is withdrawn ({why}): the group is pending again for a person"


def _approval_kept(store, group: dict, live: list[int], settings: MergeSettings,
                   taken: MergePlan | None) -> tuple[MergePlan | None, str]:
    """The approved plan made again for the ``live`` records left in the group: its primary, the values
    chosen (one chosen from a record ``taken`` merged, and merged into its primary, is the primary's
    now), its conflict policy and way of deleting. Or None and why it cannot be made."""
    with store.engine.connect() as conn:
        approved = views.stored_plan(conn, group)
    if approved is None:
        return None, "its approved plan cannot be read"
    if approved.primary_id not in live:
        return None, f"its approved primary #{approved.primary_id} left the group"
    choices = {}
    for name, rid in person_choices(approved).items():
        d = taken.fields.get(name) if taken else None
        if rid not in live and d is not None and d.source_id == rid:
            rid = taken.primary_id
        if rid not in live:
            return None, f"the approved {views.FIELD_LABELS.get(name, name)} came from #{rid}, which left the group"
        choices[name] = rid
    plan = plan_again(store, approved, settings, choices=choices,
                      members=[approved.primary_id, *(m for m in live if m != approved.primary_id)])
    plan.group_id = group["id"]
    if plan.problems:
        return None, "; ".join(plan.problems)
    new = [c.field for c in plan.unresolved if c.field not in {u.field for u in approved.unresolved}]
    if new:
        return None, ("the records left have new conflicts to choose: "
                      + ", ".join(views.FIELD_LABELS.get(f, f) for f in new))
    return plan, ""


def unskip(store, entity: str, id_a: int, id_b: int, user: dict) -> Outcome:
    """Withdraw a "not duplicates" mark (as `crm-dedup unskip`): an admin any, a manager one between
    two records of their own (merge_rules.skips.may_withdraw_mark, which unskip_pair checks again)."""
    a, b = min(id_a, id_b), max(id_a, id_b)
    if a == b:
        return Outcome(False, f"{entity} #{a} cannot be marked against itself: there is no mark to withdraw.")
    with store.engine.connect() as conn:
        records = queries.read_records(conn, entity, [a, b])
        people = queries.users_by_id(conn, {r.get("responsible_id") for r in records.values()})
    if not may_withdraw_mark(user, [records.get(a), records.get(b)]):
        theirs = [f"#{i} is {views.owner_name(people, records.get(i))}'s" for i in (a, b)
                  if not queries.may_see_record(user, records.get(i))]
        return Outcome(False, f"Not withdrawn: a manager may withdraw a \"not duplicates\" mark only between two "
                       f"records of their own, and {entity} {' and '.join(theirs)}. Ask an admin.", status=403)
    try:
        removed = unskip_pair(store, entity, a, b, user["id"])
    except PermissionDenied as exc:  # (a record changed hands since it was read above)
        return Outcome(False, f"Not withdrawn: {exc}", status=403)
    if removed is None:
        return Outcome(False, f"{entity} #{a} and #{b} are not marked \"not duplicates\" (any more); nothing changed.")
    with store.engine.connect() as conn:
        marker = queries.users_by_id(conn, [removed["user_id"]]).get(removed["user_id"]) if removed["user_id"] else None
    who = marker["name"] if marker else (f"user #{removed['user_id']}" if removed["user_id"] else "the system")
    log.info("%s skip pair (%d, %d) withdrawn on the review page by user #%s", entity, a, b, user["id"])
    return Outcome(True, f"Withdrew the mark: {entity} #{a} and #{b} are no longer marked \"not duplicates\" "
                   f"(marked by {who} on {views.fmt(removed['created_at'])} UTC). The next run may propose them "
                   "as duplicates again.")


def undo(store, merge_id: int, user: dict, force: bool, settings: MergeSettings) -> Outcome:
    """Undo one merge; its group is pending again with a plan made from the records as they are now
    (as `crm-dedup undo` leaves it)."""
    try:
        result = undo_merge(store, merge_id, user["id"], force=force)
    except UndoConflict as exc:
        if exc.later:  # (no "undo anyway": force does not go past a later merge)
            return Outcome(False, str(exc))
        return Outcome(False, str(exc), exc.changes)
    except PermissionDenied as exc:
        return Outcome(False, str(exc), status=403)
    except MergeError as exc:
        return Outcome(False, str(exc))
    if result.status == "already_undone":
        return Outcome(False, result.message)
    replan_undone(store, [merge_id], settings)
    return Outcome(True, result.message, result.overwritten or None, link=_group_link(store, merge_id, user))


def _group_link(store, merge_id: int, user: dict) -> tuple[str, str] | None:
    """(href, words) of the page of the merge's group, which the undo's message names by its id (the page
    links those words in place); None when there is no such group or it is not the user's to see."""
    with store.engine.connect() as conn:
        merge = queries.merge_brief(conn, merge_id)
        group = queries.get_group(conn, merge["group_id"]) if merge and merge["group_id"] else None
    if group is None or not queries.can_see_group(user, group):
        return None
    return f"/group/{quote(group['id'], safe='')}", group["id"]
