"""A person adds a record to a proposed group: a record the run left out of it (dedup_groups.left_out:
probable with a member, kept apart by the chaining guard), or any record they know is a duplicate.
The review page's "Add to this group" and `crm-dedup include` both call include_record, which also
marks the record "the same" as a member (merge_rules.together), so that later runs, which replace
the pending groups with what they find, keep it in the group; `crm-dedup include --undo`
(withdraw_include) takes the mark back."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from crm import proposals, schema
from merge_rules.errors import PermissionDenied
from merge_rules.permissions import denied_records, load_user, user_label
from merge_rules.plan import MergePlan, plan_groups
from merge_rules.settings import MergeSettings
from merge_rules.skips import check_withdraw, skipped_within
from merge_rules.together import TogetherError, drop_marks, mark_together, marks_of, missing_record_text
from merge_rules.tx import utcnow, write_transaction
from merge_rules.undo import plan_again

log = logging.getLogger(__name__)


class CannotInclude(ValueError):
    """The record cannot join the group; the message says why and what to do."""


CLI_UNDO = "`crm-dedup include --undo GROUP_ID {record_id}`, with the id of the group holding it, withdraws that"


def include_record(store, group_id: str, record_id: int, user_id: int | None,
                   settings: MergeSettings | None = None, undo_hint: str = CLI_UNDO) -> str:
    """Add ``record_id`` to the pending or approved group ``group_id``, re-planned with it (as approved:
    primary, choices, conflict policy and way of deleting). An approved group goes back to pending: its
    approval was for the group without the record. The record is marked "the same" as the member it
    was best matched with (as the run listed it left out), else as the primary: every later run puts
    them in one group. Refused (CannotInclude, PermissionDenied) where the record is missing (or of
    another entity type), deleted, of another open group, marked "not duplicates" with a member, or not
    the user's to merge. A member added after the run whose "the same" mark was withdrawn since
    (withdraw_include leaves it in the group until the next run) is marked again; a member with a mark,
    or one the run put in the group by its scores (the group's pairs hold a pair of it with a member),
    is refused: nothing to add (as the review page says for any member). ``undo_hint``: how to withdraw
    the mark, in words ({record_id} filled in). Returns what was done, in words."""
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
        with store.engine.connect() as conn:
            raise CannotInclude(missing_record_text(conn, entity, record_id)
                                + f": it cannot be added to group {group_id}.")
    if denied_records(user, [dict(record)]):
        raise PermissionDenied(f"{user_label(user)} is a manager and may add only records they are responsible "
                               f"for; {entity} #{record_id} is not theirs.")
    if record_id in members:
        return _mark_again(store, row, record_id, user_id, user, undo_hint)
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
    listed = next((int(i["partner"]) for i in row["left_out"] or []
                   if int(i.get("id", -1)) == record_id and i.get("partner") is not None), None)
    partner = listed if listed in members else int(row["primary_id"])
    # the group, its plan and the mark change in one transaction (a compare-and-set: the group as read,
    # still free; the mark refused if the pair was marked not duplicates meanwhile)
    with store.engine.connect() as conn, write_transaction(conn):
        changed = conn.execute(g.update().where(g.c.id == group_id, g.c.status == row["status"],
                                                g.c.merge_id.is_(None)).values(**values)).rowcount
        if not changed:
            raise CannotInclude(f"Group {group_id} changed while the record was added (merged, skipped or "
                                "approved by someone else); look at it again.")
        proposals.set_plan(conn, group_id, fresh.to_dict())
        try:
            mark_together(conn, entity, record_id, partner, user_id)
        except TogetherError as exc:
            raise CannotInclude(str(exc)) from exc
    log.info("%s: %s #%s added to group %s by %s (marked the same as #%s)", entity, entity, record_id, group_id,
             user_label(user), partner)
    done = f"Added {entity} #{record_id} to group {group_id}; it is pending with a plan made again"
    if row["status"] == "approved":
        done += " (its approval was for the group without the record: approve it again)"
    # (not this group's id: a run that finds the group with the record gives it a new one)
    done += (f". #{record_id} is marked the same as #{partner}: later runs keep them in one group "
             f"({undo_hint.format(record_id=record_id)})")
    if fresh.problems:
        done += ". The new plan cannot be merged as it is: " + "; ".join(fresh.problems)
    return done + "."


def _mark_again(store, row, record_id: int, user_id: int | None, user, undo_hint: str) -> str:
    """include_record of a record in the group already: mark it "the same" as a member again where it
    has no such mark (withdraw_include took it back and left it in the group until the next run). The
    group itself does not change: its plan holds the record already. A member the run scored with
    another member (the group's pairs) is in the group by the run's scores, not added by a person: it
    gets no mark and the message says so. (One added, kept by the next run for its mark and withdrawn
    after is scored in that run's group too: refused alike; the run after lists it left out again.)"""
    group_id, entity = row["id"], row["entity_type"]
    members = [int(m) for m in row["member_ids"]]
    with store.engine.connect() as conn:
        marks = marks_of(conn, entity, record_id, members)
    if marks:
        other = next(m["id_a"] if m["id_b"] == record_id else m["id_b"] for m in marks)
        raise CannotInclude(f"{entity} #{record_id} is in group {group_id} already, marked the same as #{other}: "
                            "later runs keep it there; nothing changed.")
    scored = _scored_partner(row, record_id)
    if scored is not None:
        raise CannotInclude(f"{entity} #{record_id} is in group {group_id} already (by the run's scores, best with "
                            f"#{scored[0]}: {scored[1]:.3f}; without a \"the same\" mark): nothing to add.")
    marked = [(a, b) for a, b in skipped_within(store, entity, {0: members}).get(0, []) if record_id in (a, b)]
    if marked:
        a, b = marked[0]
        raise CannotInclude(f"{entity} #{a} and #{b} are marked not duplicates, so #{record_id} is not marked the "
                            f"same as a member of group {group_id}: withdraw that mark first (`crm-dedup unskip "
                            f"{a} {b} --entity {entity}`), or take #{record_id} out of the group.")
    partner = _best_partner(row, record_id)
    g = schema.dedup_groups
    with store.engine.connect() as conn, write_transaction(conn):
        # (the group still open and holding the record: else a run, a merge or a skip came first)
        now = conn.execute(sa.select(g.c.status, g.c.member_ids, g.c.merge_id).where(g.c.id == group_id)).first()
        if now is None or now.status not in ("pending", "approved") or now.merge_id is not None \
                or record_id not in {int(m) for m in now.member_ids}:
            raise CannotInclude(f"Group {group_id} changed while #{record_id} was marked (merged, skipped or "
                                "replaced by a run); look at it again.")
        try:
            mark_together(conn, entity, record_id, partner, user_id)
        except TogetherError as exc:
            raise CannotInclude(str(exc)) from exc
    log.info("%s: #%s of group %s marked the same as #%s again by %s", entity, record_id, group_id, partner,
             user_label(user))
    return (f"{entity} #{record_id} is in group {group_id} already, with its \"the same\" mark withdrawn: "
            f"marked the same again; later runs keep it in one group with #{partner} "
            f"({undo_hint.format(record_id=record_id)}).")


def _scored_partner(row, record_id: int) -> tuple[int, float] | None:
    """(member, probability) of the run's highest pair of ``record_id`` with another member (the group's
    pairs), or None where the run's pairs hold none: the record was added to the group after the run."""
    members = [int(m) for m in row["member_ids"]]
    best, score = None, -1.0
    for p in row["pairs"] or []:
        try:
            a, b, prob = int(p["id_a"]), int(p["id_b"]), float(p.get("probability") or 0.0)
        except (KeyError, TypeError, ValueError):
            continue
        other = b if a == record_id else a if b == record_id else None
        if other is not None and other != record_id and other in members and prob > score:
            best, score = other, prob
    return None if best is None else (best, score)


def _best_partner(row, record_id: int) -> int:
    """The member to mark ``record_id`` the same as: the one the run scored it highest with (the group's
    pairs), else the primary, else the first other member."""
    scored = _scored_partner(row, record_id)
    if scored is not None:
        return scored[0]
    members, primary = [int(m) for m in row["member_ids"]], int(row["primary_id"])
    return primary if primary != record_id and primary in members else next(m for m in members if m != record_id)


def withdraw_include(store, group_id: str, record_id: int, user_id: int | None) -> str:
    """Take back the "the same" marks include_record made between ``record_id`` and the members of
    group ``group_id`` (whatever its status): later runs decide from the records alone again whether it
    belongs. The group itself stays as it is until then. Who may is the rule for withdrawing a "not
    duplicates" mark (merge_rules.skips.may_withdraw_mark): an admin any mark, a manager one between
    two records of their own; refused (CannotInclude, PermissionDenied) otherwise, or where there is
    no such mark. Returns what was done, in words."""
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        user = load_user(conn, user_id)
        row = conn.execute(sa.select(g.c.entity_type, g.c.status, g.c.member_ids).where(g.c.id == group_id)).first()
        if row is None:
            raise CannotInclude(f"There is no group {group_id!r}: a run gives a group a new id when its records "
                                f"change; `crm-dedup groups` lists the one holding #{record_id}.")
        entity, members = row.entity_type, [int(m) for m in row.member_ids]
        marks = marks_of(conn, entity, record_id, members)
        if not marks:
            raise CannotInclude(f"{entity} #{record_id} is not marked the same as any record of group {group_id}: "
                                "there is no mark to withdraw (only a record added with `crm-dedup include` or "
                                "\"Add to this group\" has one).")
        for m in marks:
            check_withdraw(conn, user, entity, m["id_a"], m["id_b"], 'a "the same" mark')
        names = dict(conn.execute(sa.select(schema.users.c.id, schema.users.c.name)).all())
    with store.engine.connect() as conn, write_transaction(conn):
        removed = drop_marks(conn, entity, [(m["id_a"], m["id_b"]) for m in marks])
    if not removed:  # (withdrawn by someone else meanwhile)
        raise CannotInclude(f"{entity} #{record_id} is not marked the same as any record of group {group_id} any "
                            "more: someone withdrew the mark meanwhile.")
    log.info("%s: the mark(s) of #%s with %s withdrawn by %s", entity, record_id,
             ", ".join(f"#{m['id_a']}-#{m['id_b']}" for m in removed), user_label(user))

    def who(m: dict) -> str:
        by = "" if m["user_id"] is None else f" by {names.get(m['user_id'], 'user')} (#{m['user_id']})"
        return f"#{m['id_a']} and #{m['id_b']} (marked{by} on {m['created_at']:%Y-%m-%d %H:%M} UTC)"

    said = "; ".join(who(m) for m in removed)
    partner = next(m["id_a"] if m["id_b"] == record_id else m["id_b"] for m in removed)
    done = (f"Withdrew the mark: {entity} {said} are no longer marked the same. The next run decides from the "
            f"records alone whether #{record_id} belongs in the group")
    if record_id in members and row.status in ("pending", "approved"):
        done += (f"; group {group_id} ({row.status}) holds it until then. To take it out now as not a duplicate: "
                 f"`crm-dedup skip {record_id} {partner} --entity {entity}` or \"Skip\" on the review page")
    return done + "."
