"""Apply approved groups (plain function; the apply flow and `crm-dedup merge` call it)."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from crm import proposals, schema
from crm.store import Store
from merge_rules.undo import person_choices, plan_again
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def new_batch_id() -> str:
    """The id of a new batch of merges (what `crm-dedup undo --all` takes)."""
    import uuid

    return "batch-" + uuid.uuid4().hex[:10]


def only_links_moved(approved, fresh, open_fields=frozenset()) -> bool:
    """Whether ``fresh`` (planned again now) merges what ``approved`` did: the same records, field values
    (but those of ``open_fields``: conflicts ``approved`` left open, settled in ``fresh``), conflicts and
    phones/e-mails, no problem, and only rows of the link tables differ (another group's merge moved a
    contact-company link, a deal...). Such a plan needs no person again."""
    own = {schema.ENTITY_TABLES[approved.entity_type].name, schema.communications.name}
    changed = {k for k in approved.fingerprints.keys() | fresh.fingerprints.keys()
               if approved.fingerprints.get(k) != fresh.fingerprints.get(k)}
    return (not fresh.problems and not any(k.split(":", 1)[0] in own for k in changed)
            and not _differences(approved, fresh, open_fields))


def _conflicts_settled(store, plans: list, settings: Settings) -> tuple[list, dict[str, str], list]:
    """The plans with conflicts left open (planned with conflict_policy 'ask') planned again with the
    merge's own conflict policy (and the values a person chose): what a person approved with open
    conflicts cannot merge otherwise. Returns (the plans to merge, a note per group on how its open
    conflicts were or were not settled, the groups to send back to a person: (group id, fresh plan,
    message)). A fresh plan replaces the approved one where it merges the same (all but the open
    conflicts) and the records are as planned, or only links of them moved since (other merges, an
    undo). Where the records themselves changed, the group goes back to a person with the fresh plan
    (never merged, nor left approved, with a plan of the records as they were), whatever the policy:
    with 'ask' too, so that a person settles the conflicts of the records as they are now. Where the
    merge's settings would merge otherwise (other rules, another way of deleting), the approved plan
    stays (reported as having conflicts, with a note saying why the policy was not used); with 'ask'
    the approved plan of unchanged records stays too (its merge reports the conflicts)."""
    from merge_rules.plan import plan_groups

    policy = settings.merge.conflict_policy
    out, notes, back = list(plans), {}, []
    # the way of deleting is the approved plan's (a run fixed it; a group that goes back to a person
    # must not come back with the merge's own): planned in batches of one entity type and one way
    for entity, deleting in sorted({(plan.entity_type, plan.delete_mode) for _gid, plan in plans}):
        open_ = [i for i, (_gid, plan) in enumerate(plans)
                 if plan.entity_type == entity and plan.delete_mode == deleting and plan.unresolved]
        groups = [(plans[i][1].primary_id, plans[i][1].member_ids) for i in open_]
        choices = {plans[i][1].primary_id: person_choices(plans[i][1]) for i in open_}
        merge = settings.merge.model_copy(update={"delete_mode": deleting})
        outdated = []
        for i, fresh in zip(open_, plan_groups(store, entity, groups, merge, choices=choices) if groups else []):
            gid, approved = plans[i]
            fresh.group_id = approved.group_id
            open_fields = {c.field for c in approved.unresolved}
            if policy == "ask":  # a person must choose (the merge's message says so), in a plan of the records
                # as they are: one whose records changed goes back stale with the fresh plan, whatever the policy
                if fresh.fingerprints != approved.fingerprints and not only_links_moved(approved, fresh, open_fields):
                    outdated.append((i, fresh))
                continue
            settled = (f"its open conflicts ({', '.join(sorted(open_fields))}) settled by the merge's conflict "
                       f"policy {policy}")
            if fresh.fingerprints == approved.fingerprints:
                # only the open conflicts may change: the merge's settings may name other rules or a hard delete
                differ = _differences(approved, fresh, open_fields) + (["open conflicts"] if fresh.unresolved else [])
                if not differ and not fresh.problems:
                    out[i] = (gid, fresh)
                    notes[gid] = f" ({settled})"
                else:
                    notes[gid] = (f" The merge's conflict policy {policy} was not used: planned with the merge's "
                                  f"settings, the merge would differ from the approved plan in more than the open "
                                  f"conflicts ({', '.join(differ) or '; '.join(fresh.problems)}).")
            elif not fresh.unresolved and only_links_moved(approved, fresh, open_fields):
                out[i] = (gid, fresh)
                notes[gid] = (f" (re-planned first: only links of its records had moved since the plan was made, "
                              f"e.g. by the merges of other groups; {settled}; the rest it merges is as approved)")
            else:
                outdated.append((i, fresh))
        if outdated:
            back += _outdated(store, entity, [(plans[i][0], plans[i][1], fresh) for i, fresh in outdated], policy)
    gone = {gid for gid, _fresh, _message in back}
    return [p for p in out if p[0] not in gone], notes, back


def _outdated(store, entity: str, groups: list, policy: str) -> list:
    """(group id, fresh plan, message) of approved plans with open conflicts whose records changed
    since: the message says what changed, as a stale merge's does, and how the conflicts of the fresh
    plan stand (settled by the policy, or waiting for a person's choice)."""
    from merge_rules.apply import describe_changes
    from merge_rules.plan import PLURAL
    from merge_rules.snapshot import read_snapshots

    with store.engine.connect() as conn:
        snaps = read_snapshots(conn, entity, [(a.primary_id, a.member_ids) for _g, a, _f in groups], with_users=False)
    out = []
    for (gid, approved, fresh), snap in zip(groups, snaps):
        changes = describe_changes(approved, snap, snap.fingerprints()) or ["its records changed"]
        message = (f"The plan to merge {PLURAL[entity]} {', '.join(f'#{i}' for i in approved.duplicate_ids)} into "
                   f"#{approved.primary_id} is out of date: " + "; ".join(changes) + ".")
        settled = sorted(c.field for c in fresh.conflicts if c.resolved_by == f"policy:{policy}")
        if settled and not fresh.problems and not fresh.unresolved:  # (a conflict the edit made counts too)
            message += (f" In the new plan the merge's conflict policy {policy} settles its conflicts ("
                        + ", ".join(settled) + ").")
        elif waiting := sorted(c.field for c in fresh.unresolved):
            message += (" In the new plan these conflicts wait for a person to choose a value: " + ", ".join(waiting)
                        + " (on the review page, or merge with a conflict policy).")
        out.append((gid, fresh, message))
    return out


def _differences(approved, fresh, open_fields=frozenset()) -> list[str]:
    """How ``fresh`` merges otherwise than ``approved`` (the records, field values but those of
    ``open_fields``, phones/e-mails, access warnings, way of deleting), in words; empty when alike."""
    def fields(plan):
        return {k: (d.value, d.source_id, d.conflict, d.resolved_by) for k, d in plan.fields.items()
                if k not in open_fields}
    then, now = fields(approved), fields(fresh)
    out = [f"field {k}" for k in sorted(then.keys() | now.keys()) if then.get(k) != now.get(k)]
    if [(c.id, c.action, c.repeat_of) for c in approved.communications] != \
            [(c.id, c.action, c.repeat_of) for c in fresh.communications]:
        out.append("phones/e-mails")
    if [(w.user_id, w.record_ids) for w in approved.access_warnings] != \
            [(w.user_id, w.record_ids) for w in fresh.access_warnings]:
        out.append("access warnings")
    if (approved.primary_id, approved.duplicate_ids) != (fresh.primary_id, fresh.duplicate_ids):
        out.append("records merged")
    if approved.delete_mode != fresh.delete_mode:
        out.append(f"way of deleting ({approved.delete_mode} -> {fresh.delete_mode})")
    return out


def apply_approved(db: str | None, batch_id: str, user_id: int | None, settings_path: str | None = None,
                   group_ids: list[str] | None = None) -> list[dict]:
    """Merge every approved group (or the given ones, if approved), each in its own transaction.
    A group that cannot be merged goes back to a person (pending, planned again from the records as
    they are now, with a note): stale (records edited since), conflicts, denied, not duplicates,
    an unreadable plan, and a merge that failed (an error: reported, never retried every hour).

    Safe with another apply (or a person) at work on the same database at once: a group is merged
    only while it is still 'approved', looked at under a lock in the merge's own transaction
    (apply_batch(only_status=...)), and every status this function sets afterwards is a
    compare-and-set from 'approved' (proposals.send_back). A group another apply took meanwhile is
    reported 'already_applied' (its merge) or 'not_approved', and left as that apply left it. No
    transient status is written, so a process killed at any point leaves nothing to recover: each
    group is approved (merged by the next apply) or applied."""
    from merge_rules.apply import apply_batch
    from merge_rules.plan import MergePlan, plan_groups

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    store.check_schema()
    groups = proposals.read_groups(store, status="approved")
    if group_ids is not None:
        groups = groups[groups["id"].isin(group_ids)]
    # a batch re-run after a crash: its applied groups are already 'applied' and are not read again
    plans, unreadable = [], []
    for row in groups.itertuples(index=False):
        if not row.plan:
            plan = plan_groups(store, row.entity_type, [(row.primary_id, list(row.member_ids))], settings.merge)[0]
        else:
            try:
                plan = MergePlan.from_dict(row.plan)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:  # the rest of the batch goes on
                unreadable.append((row, exc))
                continue
        plans.append((row.id, plan))
    plans, notes, outdated = _conflicts_settled(store, plans, settings)
    results = apply_batch(store, [p for _, p in plans], user_id, batch_id, group_ids=[g for g, _ in plans],
                          only_status="approved")
    out = []
    for gid, fresh, message in outdated:  # open conflicts, records changed since: stale (whatever the policy),
        # not merged, back to a person with a plan of the records as they are now
        out.append(_sent_back(store, gid, "stale", message, fresh.to_dict(), " (re-planned: records changed)"))
    for row, exc in unreadable:
        log.warning("group %s: its stored plan could not be read (%s: %s)", row.id, type(exc).__name__, exc)
        message = (f"The stored plan of group {row.id} could not be read ({type(exc).__name__}: {exc}); nothing "
                   "was merged.")
        # not guessed at: planned again from the records as they are now, back to a person to approve
        fresh = plan_groups(store, row.entity_type, [(row.primary_id, list(row.member_ids))], settings.merge)[0]
        out.append(_sent_back(store, row.id, "unreadable", message, fresh.to_dict()))
    for (gid, plan), res in zip(plans, results):
        status, message = res.status, res.message
        if status in ("stale", "failed"):
            # planned again as approved (its choices, conflict policy and way of deleting); a failed
            # merge's plan may say records are gone that are live again (an undone merge)
            try:
                fresh = plan_again(store, plan, settings.merge)
            except Exception as exc:  # noqa: BLE001 - the database may be what failed: stays approved
                log.exception("group %s: could not plan it again after its merge was %s", gid, status)
                out.append({"group_id": gid, "status": status, "merge_id": None,
                            "message": f"{message} It could not be planned again ({type(exc).__name__}: {exc}); "
                                       "the group stays approved."})
                continue
        if status == "stale":
            again = apply_batch(store, [fresh], user_id, batch_id, group_ids=[gid], only_status="approved")[0] \
                if only_links_moved(plan, fresh) else None
            if again is not None and again.status in ("applied", "already_applied", "not_approved"):
                # merged; or another apply, or a person, took the group meanwhile: left as they left it
                status, res, message = again.status, again, again.message
                if status == "applied":
                    message += (" (re-planned first: only links of its records had moved since the plan was made, "
                                "e.g. by the merges of other groups; what it merges is as approved)")
            else:
                out.append(_sent_back(store, gid, "stale", message, fresh.to_dict(), " (re-planned: records changed)"))
                continue
        elif status == "failed":  # an error, not for a scheduler to retry every hour: back to a person
            out.append(_sent_back(store, gid, status, message, fresh.to_dict(), " (re-planned: its merge failed)"))
            continue
        elif status == "denied":  # another user may merge it (an admin, the hourly apply): left approved
            out.append({"group_id": gid, "status": status, "merge_id": None,
                        "message": f"{message} Left approved, for a user who may merge it (an admin, or the "
                                   "scheduled apply)."})
            continue
        elif status in ("conflicts", "not_duplicates"):
            # not for a scheduler to retry every hour: back to a person, with the plan as it is
            if status == "conflicts":  # (why the merge's conflict policy did not settle them, if one was given)
                message += notes.get(gid, "")
            out.append(_sent_back(store, gid, status, message, None))
            continue
        elif status == "applied" and gid in notes:
            message += notes[gid]
        out.append({"group_id": gid, "status": status, "merge_id": getattr(res, "merge_id", None),
                    "message": message})
    return out


def _sent_back(store, gid: str, status: str, message: str, plan: dict | None, note: str | None = None) -> dict:
    """The result of a group that goes back to a person (pending; with ``plan``, made again, or the
    plan it has when None), if it is still approved: a compare-and-set, as another apply may have
    merged it meanwhile, or a person skipped it. Else the result says what the group is now."""
    if plan is None:
        sent = proposals.set_status(store, [gid], "pending", from_statuses=("approved",)) > 0
    else:
        sent = proposals.send_back(store, gid, plan, note)
    if sent:
        # a plan that cannot merge (a member deleted or merged away since) waits for the next run, not for an
        # approval that would only fail again
        blocked = ""
        if plan is not None and plan.get("problems"):
            told = [p for p in plan["problems"] if p not in message]  # (not said twice)
            blocked = (" The new plan cannot be merged as it is" + (f" ({'; '.join(told)})" if told else " either")
                       + ": the next `crm-dedup run` regroups its records.")
        return {"group_id": gid, "status": status, "merge_id": None,
                "message": f"{_sentence(message)}{' Re-planned; the group' if plan is not None else ' The group'} is "
                           f"pending again for a person to approve.{blocked}"}
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        now = conn.execute(sa.select(g.c.status, g.c.merge_id).where(g.c.id == gid)).first()
    if now is not None and now.status == "applied":
        return {"group_id": gid, "status": "already_applied", "merge_id": now.merge_id,
                "message": f"group {gid} was merged by another merge (merge #{now.merge_id}) while this one ran; "
                           "not merged again, left as it is"}
    return {"group_id": gid, "status": "not_approved", "merge_id": None,
            "message": f"group {gid} is {now.status if now is not None else 'gone'} now, no longer approved (changed "
                       f"while this merge ran: {status}: {message}); left as it is"}


def _sentence(message: str) -> str:
    """``message`` ending as a sentence, for the one that follows it ("... removed already) Re-planned" else)."""
    message = message.rstrip()
    return message if message.endswith((".", "!", "?")) else message + "."
