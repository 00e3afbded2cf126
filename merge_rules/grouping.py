"""A person adds a record to a proposed group: a record the run left out of it (dedup_groups.left_out:
probable with a member, kept apart by the chaining guard), or any record they know is a duplicate.
The review page's "Add to this group" and `crm-dedup include` both call include_record."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from crm import proposals, schema
from merge_rules.errors import PermissionDenied
from merge_rules.permissions import denied_records, load_user, user_label
from merge_rules.plan import MergePlan, plan_groups
from merge_rules.settings import MergeSettings
from merge_rules.skips import skipped_within
from merge_rules.tx import utcnow
from merge_rules.undo import plan_again

log = logging.getLogger(__name__)


class CannotInclude(ValueError):
    """The record cannot join the group; the message says why and what to do."""


def include_record(store, group_id: str, record_id: int, user_id: int | None,
                   settings: MergeSettings | None = None) -> str:
    """Add ``record_id`` to the pending or approved group ``group_id``, re-planned with it (as approved:
    primary, choices, conflict policy and way of deleting). An approved group goes back to pending: its
    approval was for the group without the record. Refused (CannotInclude, PermissionDenied) where
    the record is missing, deleted, a member already or of another open group, marked "not
    duplicates" with a member, or not the user's to merge. Returns what was done, in words."""
    settings = settings or MergeSettings.load()
    g, p = schema.dedup_groups, schema.dedup_plans
    with store.engine.connect() as conn:
        user = load_user(conn, user_id)
        row = conn.execute(sa.select(g, p.c.plan).select_from(
            g.outerjoin(p, (p.c.group_id == g.c.id) & (p.c.run_id == g.c.run_id))).where(g.c.id == group_id)
        ).mappings().first()
        if row is None:
            raise CannotInclude(f"There is no group {group_id!r} (`crm-dedup groups` lists them).")
        entity, members = row["entity_type"], [int(m) for m in row["member_ids"]]
        table = schema.ENTITY_TABLES[entity]
        record = conn.execute(sa.select(table.c.id, table.c.responsible_id, table.c.deleted_at)
                              .where(table.c.id == record_id)).mappings().first()
        others = conn.execute(sa.select(g.c.id, g.c.member_ids).where(
            g.c.entity_type == entity, g.c.status.in_(("pending", "approved")), g.c.id != group_id)).all()
    if row["status"] not in ("pending", "approved") or row["merge_id"] is not None:
        raise CannotInclude(f"Group {group_id} is {row['status']}: only a pending or approved group takes a record.")
    if record is None or record["deleted_at"] is not None:
        raise CannotInclude(f"{entity} #{record_id} does not exist or was deleted (merged or removed).")
    if record_id in members:
        raise CannotInclude(f"{entity} #{record_id} is in group {group_id} already.")
    if denied_records(user, [dict(record)]):
        raise PermissionDenied(f"{user_label(user)} is a manager and may add only records they are responsible "
                               f"for; {entity} #{record_id} is not theirs.")
    held = next((gid for gid, ms in others if record_id in {int(m) for m in ms}), None)
    if held is not None:
        raise CannotInclude(f"{entity} #{record_id} is in group {held}, which is open too: a record merges into "
                            f"one primary. Skip it out of {held} first, or add the records of {group_id} there.")
    marked = skipped_within(store, entity, {0: [*members, record_id]}).get(0, [])
    marked = [(a, b) for a, b in marked if record_id in (a, b)]
    if marked:
        pairs = ", ".join(f"#{a} and #{b}" for a, b in marked)
        a, b = marked[0]
        raise CannotInclude(f"{pairs} are marked not duplicates: withdraw the mark first (`crm-dedup unskip {a} {b} "
                            f"--entity {entity}`), then add the record.")
    stored = MergePlan.from_dict(row["plan"]) if row["plan"] else None
    grown = [*members, record_id]
    fresh = (plan_again(store, stored, settings, members=[*stored.member_ids, record_id]) if stored is not None
             else plan_groups(store, entity, [(int(row["primary_id"]), grown)], settings)[0])
    owners = {r["responsible_id"] for r in fresh.records.values() if r.get("responsible_id") is not None}
    values: dict[str, Any] = {
        "member_ids": grown, "responsible_ids": sorted(owners | set(row["responsible_ids"] or [])),
        "left_out": [i for i in row["left_out"] or [] if int(i.get("id", -1)) != record_id] or None,
        "status": "pending", "approved_by": None, "approved_at": None, "updated_at": utcnow()}
    if row["status"] == "approved":
        values["primary_reason"] = (f"{row['primary_reason'] or ''} (approval withdrawn: #{record_id} was added "
                                    f"by {user_label(user)})")
    with store.engine.begin() as conn:  # (a compare-and-set: the group as read, still free)
        changed = conn.execute(g.update().where(g.c.id == group_id, g.c.status == row["status"],
                                                g.c.merge_id.is_(None)).values(**values)).rowcount
        if not changed:
            raise CannotInclude(f"Group {group_id} changed while the record was added (merged, skipped or "
                                "approved by someone else); look at it again.")
        proposals.set_plan(conn, group_id, fresh.to_dict())
    log.info("%s: %s #%s added to group %s by %s", entity, entity, record_id, group_id, user_label(user))
    done = f"Added {entity} #{record_id} to group {group_id}; it is pending with a plan made again"
    if row["status"] == "approved":
        done += " (its approval was for the group without the record: approve it again)"
    # (a run replaces the pending groups with what it finds, which would leave the record out again)
    done += "; approve it before the next run, which regroups the pending groups from the records"
    if fresh.problems:
        done += ". The new plan cannot be merged as it is: " + "; ".join(fresh.problems)
    return done + "."
