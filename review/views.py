"""The group page's model: records side by side, the merge plan per field, conflicts, pairs explained.

Who sees what (Bitrix24's rule, enforced here and again by the merge engine): an admin plans with every
record of the group; a manager plans only with the records they are responsible for, and sees the
other managers' records read-only, last. With fewer than two of their own records there is nothing
they may merge.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from crm import schema
from merge_rules.plan import MergePlan, plan_groups
from merge_rules.rules import MULTI
from merge_rules.settings import MergeSettings, field_kinds
from merge_rules.skips import may_withdraw_mark, skipped_within
from merge_rules.undo import person_choices
from review import queries
from review.queries import is_admin

log = logging.getLogger(__name__)

ACTIONABLE = ("pending", "approved", "stale")  # statuses a group can still be merged from
FIELD_LABELS = {
    "last_name": "Last name", "first_name": "First name", "middle_name": "Middle name", "birthdate": "Birthdate",
    "post": "Post", "address": "Address", "comments": "Comments", "source": "Source", "tax_id": "Tax id (INN)",
    "responsible_id": "Responsible", "created_at": "Created", "modified_at": "Modified", "title": "Title",
    "industry": "Industry", "website": "Website", "company_title": "Company", "status": "Status",
    "contact_id": "Contact", "company_id": "Company record", "phone": "Phones", "email": "Emails",
    "web": "Websites", "im": "Messengers",
}
RULE_WORDS = {
    "keep_primary": "primary's value", "fill_empty": "fill empty", "most_recent": "most recent",
    "oldest": "oldest", "longest": "longest", "most_common": "most common", "max": "largest", "min": "smallest",
    "sum": "sum", "concat": "joined", "prefer_valid": "valid value first", "union": "united", "choice": "your choice",
}


def fmt(value: Any) -> str:
    """A value as shown on the page (the template escapes it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


@dataclass
class Column:
    """One record of the group, as a column of the side-by-side table."""
    id: int
    row: dict | None
    name: str
    owner: dict | None
    editable: bool  # in the plan: the signed-in user may merge it
    is_primary: bool
    deleted: bool
    links: dict[str, int] = field(default_factory=dict)


@dataclass
class FieldRow:
    name: str
    label: str
    values: list[str]  # per column
    result: str | None = None
    source_id: int | None = None
    rule: str = ""
    conflict: bool = False
    resolved_by: str | None = None
    candidates: list[tuple[int, str]] = field(default_factory=list)
    chosen: int | None = None
    differs: bool = False


@dataclass
class CommRow:
    type: str
    label: str
    values: list[list[dict]]  # per column: [{value, kind, action}]
    result: list[str] = field(default_factory=list)


@dataclass
class PairView:
    id_a: int
    id_b: int
    probability: float
    tier: str
    criteria: str
    explanation: str
    bars: list[dict]  # {name, bits, width, sign}
    redacted: bool = False  # the explanation quotes a record the user may not see: not shown


@dataclass
class MarkView:
    """A pair of records marked "not duplicates" (dedup_skips), as shown with its withdraw button."""
    id_a: int
    id_b: int
    label_a: str
    label_b: str
    by: str  # who marked it
    when: str
    can_withdraw: bool
    why_not: str = ""  # why this user may not withdraw it (instead of the button)


@dataclass
class SameMarkView:
    """A record a person added to the group ("Add to this group", `crm-dedup include`): its "the same"
    mark with a member (dedup_together), as shown with its withdraw button."""
    added: int  # the record added (the one the withdraw button takes the marks of)
    partner: int  # the member it was marked the same as
    label_added: str
    label_partner: str
    by: str
    when: str  # date and time
    day: str  # the date alone, for the members table
    can_withdraw: bool
    why_not: str = ""


@dataclass
class LeftOutView:
    """A record the run left out of the group although probable with a member (dedup_groups.left_out)."""
    id: int
    name: str
    partner: int | None
    probability: float | None
    tier: str
    explanation: str
    reason: str
    mine: bool  # the user may open it (an admin, or the manager responsible for it)
    marked: bool = False  # still marked "not duplicates" with a member (the run's reason may be older)


@dataclass
class GroupView:
    group: dict
    entity: str
    columns: list[Column]
    primary_id: int | None
    plan: MergePlan | None
    fields: list[FieldRow]
    comms: list[CommRow]
    pairs: list[PairView]
    warnings: list[str]
    blockers: list[str]  # why this user cannot merge (shown instead of the merge button)
    choices: dict[str, int]
    users: dict[int, dict]
    left_out: list[LeftOutView] = field(default_factory=list)
    stored: MergePlan | None = None  # the plan stored with the group (approved, or merged by before an undo)
    marks: list[MarkView] = field(default_factory=list)  # pairs of it marked "not duplicates"
    approve_blocker: str = ""  # why this user may not approve (instead of the button: it would be refused)
    same_marks: list[SameMarkView] = field(default_factory=list)  # records of it a person added

    def added_note(self, record_id: int) -> str:
        """ "added by Анна on 2026-12-07" for a member a person added (the members table), else ""."""
        m = next((m for m in self.same_marks if m.added == record_id), None)
        return f"added by {m.by} on {m.day}" if m else ""

    @property
    def can_act(self) -> bool:
        return self.group["status"] in ACTIONABLE

    @property
    def can_merge(self) -> bool:
        return self.can_act and self.plan is not None and not self.blockers and not self.plan.problems

    def take_all(self, record_id: int) -> dict[str, int]:
        """The person's choices with every conflict this record holds a value for taken from it (one click
        instead of one per field); {} where it holds none, or where that is already so."""
        rows = [fr for fr in self.fields if fr.conflict and any(rid == record_id for rid, _v in fr.candidates)]
        if all(fr.chosen == record_id for fr in rows):
            return {}
        return {**self.choices, **{fr.name: record_id for fr in rows}}

    def skip_takes_only(self, user: dict) -> list[int]:
        """The user's records, where "Not duplicates" on the whole group takes only them out of it (a
        manager, with two or more records of others: a pair of those is not hers to mark, actions.skip);
        [] where it skips the whole group."""
        if is_admin(user):
            return []
        mine = [c.id for c in self.columns if (c.row or {}).get("responsible_id") == user["id"]]
        return mine if len(self.columns) - len(mine) >= 2 else []

    def column(self, record_id: int) -> Column | None:
        return next((c for c in self.columns if c.id == record_id), None)

    @property
    def approver(self) -> str | None:
        """Who approved the group (an approved group), by name."""
        uid = self.group.get("approved_by")
        if self.group["status"] != "approved" or uid is None:
            return None
        return (self.users.get(uid) or {}).get("name") or f"user #{uid}"

    @property
    def stored_choices(self) -> list[tuple[str, int]]:
        """The values a person chose in the stored plan: (field label, record id)."""
        return [(FIELD_LABELS.get(f, f), r) for f, r in person_choices(self.stored).items()] if self.stored else []


def decision_state(group: Mapping[str, Any]) -> dict:
    """The group's approval as a page shows it, signed with the page's plan (review.security.PlanSigner):
    a merge or approval from the page is refused when another approval was made since (actions)."""
    at = group.get("approved_at")
    approved = group.get("status") == "approved"
    return {"status": group.get("status"), "approved_by": group.get("approved_by") if approved else None,
            "approved_at": at.isoformat() if approved and isinstance(at, dt.datetime) else None}


def parse_choices(items: Mapping[str, Any], entity: str) -> dict[str, int]:
    """``c.<field>=<record id>`` parameters (form or query) as build_plan choices; junk is ignored."""
    kinds = field_kinds(entity)
    out = {}
    for key, value in items.items():
        if not key.startswith("c."):
            continue
        name = key[2:]
        if kinds.get(name) in (None, MULTI):
            continue
        try:
            out[name] = int(value)
        except (TypeError, ValueError):
            continue
    return out


def split_members(group: dict, records: dict[int, dict], user: dict) -> tuple[list[int], list[int]]:
    """(records the user may merge, records shown read-only): the group's order, the user's first."""
    members = [int(m) for m in group["member_ids"]]
    if is_admin(user):
        return members, []
    mine = [m for m in members if (records.get(m) or {}).get("responsible_id") == user["id"]]
    return mine, [m for m in members if m not in mine]


def stored_plan(conn, group: dict) -> MergePlan | None:
    """The plan stored with the group (proposals.set_plan: the run's, the one approved, or the one it was
    merged by), None where it has none or it cannot be read."""
    p = schema.dedup_plans
    data = conn.execute(sa.select(p.c.plan).where(p.c.group_id == group["id"], p.c.run_id == group["run_id"])).scalar()
    if not data:
        return None
    try:
        return MergePlan.from_dict(data)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        log.warning("group %s: its stored plan cannot be read (%s: %s)", group["id"], type(exc).__name__, exc)
        return None


def marked_pairs(store, entity: str, ids: list[int]) -> list[tuple[int, int]]:
    """The pairs of these records marked "not duplicates" (a skip): a group holding one is neither
    merged (the merge engine refuses it) nor approved (as `crm-dedup approve`)."""
    return skipped_within(store, entity, {0: ids}).get(0, [])


def plan_for(store, group: dict, user: dict, settings: MergeSettings, primary: int | None,
             choices: Mapping[str, int], records: dict[int, dict]) -> tuple[MergePlan | None, int | None, list[str]]:
    """The plan this user may apply: (plan or None, its primary, blockers). Deleted records stay out."""
    entity = group["entity_type"]
    mine, _others = split_members(group, records, user)
    live = [m for m in mine if m in records and records[m].get("deleted_at") is None]
    blockers: list[str] = []
    if len(live) < 2:
        if not is_admin(user) and len(mine) < len(group["member_ids"]):
            blockers.append(f"You are responsible for {len(live)} live record(s) of this group; merging needs at "
                            "least two. Records of other managers are shown read-only: ask an admin or "
                            "their manager to merge them.")
        else:
            blockers.append("Fewer than two records of this group are still live: nothing to merge.")
        return None, (live[0] if live else None), blockers
    if primary not in live:
        primary = int(group["primary_id"]) if int(group["primary_id"]) in live else live[0]
    plan = plan_groups(store, entity, [(primary, live)], settings, choices={primary: dict(choices)},
                       group_ids={primary: group["id"]})[0]
    if marked := marked_pairs(store, entity, plan.member_ids):
        blockers.append(", ".join(f"{entity} #{a} and #{b}" for a, b in marked)
                        + " are marked \"not duplicates\" (since this group was proposed), so it can be neither merged "
                        "nor approved as it is: take one of them out of it (Not a duplicate), or withdraw the mark "
                        "(below, under Marked \"not duplicates\", where you may; or "
                        f"`crm-dedup unskip --entity {entity} {marked[0][0]} {marked[0][1]}`).")
    return plan, primary, blockers


def owner_name(users: Mapping[int, dict], row: Mapping[str, Any] | None) -> str:
    rid = (row or {}).get("responsible_id")
    if rid is None:
        return "nobody"
    return (users.get(rid) or {}).get("name") or f"user #{rid}"


def approve_blocker(entity: str, others: list[int], records: dict[int, dict], users: Mapping[int, dict],
                    user: dict) -> str:
    """Why a manager may not approve a group that holds live records of other managers (actions.approve
    refuses it: the scheduled merge would leave them out), naming whose they are; "" when they may."""
    if is_admin(user):
        return ""
    theirs: dict[str, list[int]] = {}
    for m in others:
        row = records.get(m)
        if row is not None and row.get("deleted_at") is None:
            theirs.setdefault(owner_name(users, row), []).append(m)
    if not theirs:
        return ""
    held = "; ".join(f"{', '.join(f'#{m}' for m in ids)} of {name}" for name, ids in theirs.items())
    return (f"Approving for the scheduled merge is for groups whose records are all yours: this group also holds "
            f"{entity} {held}, which that merge would leave out. Merge your records now, skip them, or ask an admin "
            "to approve the whole group.")


def _may_withdraw(user: dict, people: Mapping[int, dict], records: Mapping[int, dict], a: int, b: int
                  ) -> tuple[bool, str]:
    """Whether ``user`` may withdraw a mark between records ``a`` and ``b`` (merge_rules.skips.
    may_withdraw_mark), and if not, why, naming whose records they are."""
    if may_withdraw_mark(user, [records.get(a), records.get(b)]):
        return True, ""
    theirs = [f"#{i} is {owner_name(people, records.get(i))}'s" for i in (a, b)
              if not queries.may_see_record(user, records.get(i))]
    return False, f"Only an admin may withdraw this mark: {' and '.join(theirs)}."


def mark_views(conn, entity: str, marks: list[dict], records: dict[int, dict], user: dict,
               labels: Mapping[int, str]) -> list[MarkView]:
    """Marks as shown to ``user``: who marked them and when, and whether they may withdraw each (an admin,
    or the manager of both records: merge_rules.skips.may_withdraw_mark), else why not."""
    people = queries.users_by_id(conn, {m["user_id"] for m in marks}
                                 | {r.get("responsible_id") for r in records.values()})
    out = []
    for m in marks:
        a, b = int(m["id_a"]), int(m["id_b"])
        ok, why = _may_withdraw(user, people, records, a, b)
        by = (people.get(m["user_id"]) or {}).get("name") or (f"user #{m['user_id']}" if m["user_id"] else "the system")
        out.append(MarkView(a, b, labels.get(a, f"#{a}"), labels.get(b, f"#{b}"), by, fmt(m["created_at"]), ok, why))
    return out


def _bars(contributions: Any) -> list[dict]:
    """Bits per comparison as bars: width in steps of 5% of the largest, sign for the direction."""
    if isinstance(contributions, str):
        try:
            contributions = json.loads(contributions)
        except ValueError:
            return []
    if not isinstance(contributions, Mapping):
        return []
    items = [(str(k), float(v)) for k, v in contributions.items() if isinstance(v, (int, float))]
    top = max((abs(v) for _k, v in items), default=0.0) or 1.0
    return [{"name": k, "bits": v, "width": int(round(abs(v) / top * 20)) * 5, "sign": "pos" if v >= 0 else "neg"}
            for k, v in items]


def pair_views(group: dict) -> list[PairView]:
    out = []
    for p in group.get("pairs") or []:
        try:
            out.append(PairView(int(p["id_a"]), int(p["id_b"]), float(p.get("probability") or 0.0),
                                str(p.get("tier") or ""), str(p.get("criteria") or ""),
                                str(p.get("explanation") or ""), _bars(p.get("contributions"))))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("group %s: a pair cannot be shown (%s): %r", group["id"], exc, p)
    return out


def build(store, conn, group: dict, user: dict, settings: MergeSettings, *, primary: int | None = None,
          choices: Mapping[str, int] | None = None) -> GroupView:
    entity = group["entity_type"]
    members = [int(m) for m in group["member_ids"]]
    records = queries.read_records(conn, entity, members)
    choices = dict(choices or {})
    plan, primary_id, blockers, stored = None, None, [], None
    mine, others = split_members(group, records, user)
    if group["status"] in ACTIONABLE:
        # the page opens on the stored plan's primary and choices (those approved, or those it was merged
        # by before an undo), those of this user's live records; the person's own come on top
        stored = stored_plan(conn, group)
        if stored is not None:
            primary = stored.primary_id if primary is None else primary
            choices = {**{f: r for f, r in person_choices(stored).items() if r in mine and r in records
                          and records[r].get("deleted_at") is None}, **choices}
        plan, primary_id, blockers = plan_for(store, group, user, settings, primary, choices, records)
    else:
        primary_id = int(group["primary_id"])
    order = ([primary_id] if primary_id in mine else []) + [m for m in mine if m != primary_id] + others
    in_plan = set(plan.member_ids) if plan else set()
    comms = queries.read_comms(conn, entity, members)
    links = queries.link_counts(conn, entity, members)
    users = queries.users_by_id(conn, {r.get("responsible_id") for r in records.values()}
                                | {user["id"], group.get("approved_by")})
    # a manager sees only their own records: another manager's is shown as there, and whose, not what
    hidden = set() if is_admin(user) else set(others)
    columns = []
    for m in order:
        row = records.get(m)
        owner = users.get(row.get("responsible_id")) if row else None
        name = queries.display_name(entity, row) if row else "(missing)"
        if m in hidden and row is not None:
            row = {k: row.get(k) for k in ("id", "responsible_id", "deleted_at")}
            name = f"#{m}: another manager's record"
        columns.append(Column(m, row, name, owner, m in in_plan, m == primary_id,
                              bool(row is None or row.get("deleted_at")), {} if m in hidden else links.get(m, {})))

    def shown(name: str, value: Any) -> str:
        if name == "responsible_id" and value is not None:
            u = users.get(value)
            return f"{u['name']} (#{value})" if u else f"user #{value}"
        if name in ("contact_id", "company_id") and value is not None:
            return f"#{value}"
        return fmt(value)

    fields = []
    for name, kind in field_kinds(entity).items():
        if kind == MULTI:
            continue
        values = [shown(name, (c.row or {}).get(name)) for c in columns]
        fr = FieldRow(name, FIELD_LABELS.get(name, name), values, differs=len({v for v in values if v}) > 1)
        d = plan.fields.get(name) if plan else None
        if d is not None:
            fr.result, fr.source_id, fr.rule = shown(name, d.value), d.source_id, d.rule
            fr.conflict, fr.resolved_by = d.conflict, d.resolved_by
            fr.candidates = [(rid, shown(name, v)) for rid, v in d.candidates]
            fr.chosen = choices.get(name, d.source_id if d.resolved_by else None)
        fields.append(fr)
    fields.append(FieldRow("modified_at", FIELD_LABELS["modified_at"],
                           [fmt((c.row or {}).get("modified_at")) for c in columns], rule="set by the merge"))

    actions = {c.id: c.action for c in plan.communications} if plan else {}
    comm_rows = []
    for ctype in ("phone", "email", "web", "im"):
        per = [[{"value": r["value"], "kind": r["kind"], "action": actions.get(r["id"], "")}
                for r in comms.get(c.id, []) if r["type"] == ctype and c.id not in hidden] for c in columns]
        if not any(per):
            continue
        result = [c.value for c in plan.communications if c.type == ctype and c.action in ("keep", "move")] if plan else []
        comm_rows.append(CommRow(ctype, FIELD_LABELS[ctype], per, result))

    warnings = [w.message for w in plan.access_warnings] if plan else []
    for c in columns if group["status"] in ACTIONABLE else []:  # (a merged group's records are gone: no news)
        if not c.editable and not c.deleted and c.id in others:
            owner = c.owner["name"] if c.owner else "nobody"
            warnings.append(f"{entity} #{c.id} is the responsibility of {owner}: it is not part of your merge, "
                            "and its details are theirs to see.")
        if c.deleted and c.row is not None:
            warnings.append(f"{entity} #{c.id} was deleted on {fmt(c.row.get('deleted_at'))} (merged or removed "
                            "since the run); it is left out of the plan.")
        if c.row is None:
            warnings.append(f"{entity} #{c.id} no longer exists; it is left out of the plan.")
    # (a pair of two records of other managers is theirs to see: its explanation names their values; one
    # naming a record a manager's merge took stays with the group, for an undo, but is not shown)
    pairs = [p for p in pair_views(group) if not (p.id_a in hidden and p.id_b in hidden)
             and p.id_a in members and p.id_b in members]
    # one of another manager's: its explanation quotes that record's values (its name, phone, e-mail),
    # which the page does not show her; the bits per comparison name no value and stay
    for p in pairs:
        if hidden & {p.id_a, p.id_b}:
            p.redacted = True
            theirs = min(hidden & {p.id_a, p.id_b})
            p.explanation = (f"The explanation is not shown: it quotes the values of #{theirs}, another manager's "
                             "record, which are theirs to see. The bits below show what counted.")
    left_out = left_out_views(conn, group, user)
    blocker = approve_blocker(entity, others, records, users, user) if plan is not None else ""
    return GroupView(group, entity, columns, primary_id, plan, fields, comm_rows, pairs, warnings,
                     blockers, choices, users, left_out, stored,
                     group_marks(conn, group, user, records, columns, left_out), blocker,
                     same_marks(conn, group, user, records, columns))


def same_marks(conn, group: dict, user: dict, records: dict[int, dict], columns: list[Column]) -> list[SameMarkView]:
    """The "the same" marks between the group's records: who added which record, with which member, when,
    and whether this user may withdraw it (merge_rules.skips.may_withdraw_mark, as withdraw_include
    checks). A manager does not see those between two records of other managers."""
    entity = group["entity_type"]
    members = [int(m) for m in group["member_ids"]]
    marks = [m for m in queries.marks_within(conn, entity, members, schema.dedup_together)
             if any(queries.may_see_record(user, records.get(i)) for i in (m["id_a"], m["id_b"]))]
    if not marks:
        return []
    # the mark does not say which of the two was added: the one that is not the primary, else the one
    # with fewer marks (a record is added to a member; several may be added to one)
    count: dict[int, int] = {}
    for m in marks:
        for i in (m["id_a"], m["id_b"]):
            count[i] = count.get(i, 0) + 1
    primary = int(group["primary_id"])
    people = queries.users_by_id(conn, {m["user_id"] for m in marks}
                                 | {r.get("responsible_id") for r in records.values()})
    names = {c.id: c.name for c in columns}

    def label(i: int) -> str:
        if not queries.may_see_record(user, records.get(i)):
            return f"#{i} (another manager's record)"
        return f"#{i} {names.get(i) or '(no name)'}"

    out = []
    for m in marks:
        a, b = int(m["id_a"]), int(m["id_b"])
        if primary in (a, b):
            added = b if a == primary else a
        else:
            added = a if (count[a], -a) < (count[b], -b) else b
        partner = b if added == a else a
        ok, why = _may_withdraw(user, people, records, a, b)
        uid = m["user_id"]
        by = (people.get(uid) or {}).get("name") or (f"user #{uid}" if uid else "the system")
        at = m["created_at"]
        out.append(SameMarkView(added, partner, label(added), label(partner), by, fmt(at),
                                at.date().isoformat() if isinstance(at, dt.datetime) else fmt(at), ok, why))
    return sorted(out, key=lambda v: (v.added, v.partner))


def group_marks(conn, group: dict, user: dict, records: dict[int, dict], columns: list[Column],
                left_out: list[LeftOutView]) -> list[MarkView]:
    """The "not duplicates" marks between the group's records, or between one of them and a record left
    out of it; a manager does not see those between two records of other managers."""
    entity = group["entity_type"]
    members = {int(m) for m in group["member_ids"]}
    outside = {r.id for r in left_out}
    marks = [m for m in queries.marks_within(conn, entity, members | outside)
             if {m["id_a"], m["id_b"]} & members]
    if not marks:
        return []
    rows = {**records, **queries.read_records(conn, entity, sorted(outside - set(records)))} if outside else records
    marks = [m for m in marks if any(queries.may_see_record(user, rows.get(i)) for i in (m["id_a"], m["id_b"]))]
    names = {c.id: c.name for c in columns} | {r.id: r.name for r in left_out}
    labels = {i: f"#{i} {names.get(i) or '(no name)'}" if queries.may_see_record(user, rows.get(i))
              else f"#{i} (another manager's record)" for m in marks for i in (m["id_a"], m["id_b"])}
    return mark_views(conn, entity, marks, rows, user, labels)


def left_out_views(conn, group: dict, user: dict) -> list[LeftOutView]:
    """The records left out of the group, as this user may see them: a manager sees another manager's
    record only as its id (its name and the explanation, which quotes its values, are theirs)."""
    items = [i for i in group.get("left_out") or [] if isinstance(i, Mapping) and "id" in i]
    if not items:
        return []
    entity = group["entity_type"]
    partners = [int(i["partner"]) for i in items if isinstance(i.get("partner"), int)]
    records = queries.read_records(conn, entity, [int(i["id"]) for i in items] + partners)
    members, lone = {int(m) for m in group["member_ids"]}, {int(i["id"]) for i in items}
    marked = {x for m in queries.marks_within(conn, entity, members | lone) for x, y in
              ((m["id_a"], m["id_b"]), (m["id_b"], m["id_a"])) if x in lone and y in members}
    out = []
    for i in items:
        row = records.get(int(i["id"]))
        mine = queries.may_see_record(user, row)
        if row is not None and row.get("deleted_at") is not None:
            continue  # merged or removed since the run: nothing is left behind any more
        # the explanation quotes both records' values: shown where the user may see both
        partner = records.get(int(i["partner"])) if isinstance(i.get("partner"), int) else None
        readable = mine and (i.get("partner") is None or queries.may_see_record(user, partner))
        prob = i.get("probability")
        out.append(LeftOutView(int(i["id"]), (queries.display_name(entity, row) or "(no name)") if mine and row
                               else "another manager's record" if row else "(missing)",
                               i.get("partner"), float(prob) if prob is not None else None,
                               str(i.get("tier") or ""), str(i.get("explanation") or "") if readable else "",
                               str(i.get("reason") or ""), mine, int(i["id"]) in marked))
    return out


def record_marks(conn, entity: str, row: dict, user: dict) -> list[MarkView]:
    """The record page's "not duplicates" marks: every pair this record is marked in, the other record
    named where the user may see it."""
    marks = queries.marks_of(conn, entity, row["id"])
    if not marks:
        return []
    others = {m["id_b"] if m["id_a"] == row["id"] else m["id_a"] for m in marks}
    records = {**queries.read_records(conn, entity, sorted(others)), row["id"]: row}
    labels = {}
    for i in others:
        other = records.get(i)
        if other is None:
            labels[i] = f"#{i} (no longer exists)"
        elif queries.may_see_record(user, other):
            labels[i] = f"#{i} {queries.display_name(entity, other) or '(no name)'}"
        else:
            labels[i] = f"#{i} (another manager's record)"
    labels[row["id"]] = f"#{row['id']}"
    return mark_views(conn, entity, marks, records, user, labels)


def merged_note(conn, entity: str, merge: dict, user: dict) -> dict[str, Any]:
    """Where a merged record went, for its page (queries.merged_into's merge): the primary it was merged
    into, its page linked where the user may see it, and the merge's group, linked likewise; when and
    by whom."""
    pid = int(merge["primary_id"])
    primary = queries.read_records(conn, entity, [pid]).get(pid)
    see = primary is not None and queries.may_see_record(user, primary)
    group = queries.get_group(conn, merge["group_id"]) if merge.get("group_id") else None
    return {"id": merge["id"], "primary_id": pid, "who": merge["who"], "when": f"{fmt(merge['merged_at'])} UTC",
            "primary_name": queries.display_name(entity, primary) if see else "",
            "record_href": f"/record/{entity}/{pid}" if see else None,
            "group_id": group["id"] if group else None,
            "group_href": f"/group/{quote(group['id'], safe='')}"
            if group is not None and queries.can_see_group(user, group) else None}


def merge_lost_access(conn, group: dict, merge: dict | None) -> list[str]:
    """Who lost access to records when this group was merged: the access warnings of the plan stored with
    it (the one the page or the scheduled apply merged), said in the past. Empty when it is not that plan."""
    if merge is None or merge.get("status") != "applied":
        return []
    plan = stored_plan(conn, group)
    if plan is None or plan.primary_id != merge.get("primary_id") \
            or sorted(plan.duplicate_ids) != sorted(int(i) for i in merge.get("merged_ids") or []):
        return []
    return lost_access(plan)


def lost_access(plan: MergePlan | None) -> list[str]:
    """The plan's access warnings as said once it is merged: who lost access to which records."""
    if plan is None:
        return []
    return [w.message.replace("; they will lose access to it", "; they lost access to it")
            for w in plan.access_warnings]


def criteria_words(pairs: list[dict], members: Iterable[int] | None = None) -> str:
    """Bitrix24-style words from the pairs' criteria: "2 matches by phone, 1 match by email", counted as
    the run counts them (scoring.find._criteria): records matched, not pairs (three records sharing one
    phone are 2 matches, not 3). Only pairs between two of ``members`` count, when given (a group keeps
    the pairs of records a merge took, for an undo)."""
    inside = None if members is None else {int(m) for m in members}
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(x: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for p in pairs:
        a, b = int(p["id_a"]), int(p["id_b"])
        if inside is not None and not (a in inside and b in inside):
            continue
        for c in filter(None, str(p.get("criteria") or "").split(",")):
            parent[root((c, a))] = root((c, b))
    # per criterion: the records its pairs join less the sets they form
    counts: dict[str, int] = {}
    for c, _rid in parent:
        counts[c] = counts.get(c, 0) + 1
    for node in list(parent):
        if root(node) == node:
            counts[node[0]] -= 1
    parts = sorted(((c, n) for c, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {'match' if n == 1 else 'matches'} by {what}" for what, n in parts) or "similar records"
