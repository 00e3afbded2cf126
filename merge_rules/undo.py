"""Undo merges: put back every row a merge touched, exactly as it was before.

The merge's before-image holds every touched row as it was, the after-image as the merge left it.
Undo compares the rows as they are now with the after-image: if any changed since (someone edited the
merged record), it stops and lists them, unless forced, in which case it restores anyway and reports
what it overwrote. Rows the merge deleted are inserted back with their ids, rows it changed get their
old values, rows it added (the history event) are deleted.

A later merge still applied that touched some of these rows (A into B, then B into C) always stops the
undo, forced or not: its before-image holds the rows as this merge left them, so undoing this merge
first and that one after would interleave the two images and leave wrong data. Those merges are named,
to be undone first, newest first (``undo_batch`` already goes newest first within a batch).
"""

from __future__ import annotations

import functools
import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import proposals, schema
from merge_rules.codec import decode_row
from merge_rules.errors import MergeError, PermissionDenied, UndoConflict
from merge_rules.permissions import check_undo, load_user, user_label
from merge_rules.plan import PLURAL, MergePlan, plan_groups
from merge_rules.settings import MergeSettings
from crm import sqlin
from merge_rules.snapshot import PK, row_key
from merge_rules.tx import retrying, utcnow, write_transaction

log = logging.getLogger(__name__)

TABLES = {t.name: t for t in schema.metadata.sorted_tables}
ORDER = [t.name for t in schema.metadata.sorted_tables]  # parents before children


@dataclass
class UndoResult:
    merge_id: int
    status: str  # undone, already_undone, conflict, denied, failed
    message: str = ""
    restored: dict[str, int] = field(default_factory=dict)  # rows put back per table
    overwritten: list[str] = field(default_factory=list)   # with force: what changed since and was overwritten


def _fmt(v: Any) -> str:
    return "empty" if v is None else (repr(v) if isinstance(v, str) else str(v))


def _images(merge: dict) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, dict]]]:
    def index(image):
        out: dict[str, dict[str, dict]] = {}
        for tname, rows in (image or {}).items():
            table = TABLES[tname]
            out[tname] = {row_key(table, r): r for r in (decode_row(x) for x in rows)}
        return out
    return index(merge["before_image"]), index(merge["after_image"])


def _current(conn: Connection, tname: str, rows: list[dict]) -> dict[str, dict]:
    """The rows with these keys as they are now (whole rows), by key."""
    table = TABLES[tname]
    pk = [c.name for c in table.primary_key.columns]
    first = pk[0]
    values = sorted({r[first] for r in rows})
    wanted = {row_key(table, r) for r in rows}
    out = {}
    for i in range(0, len(values), 2000):
        chunk = values[i:i + 2000]
        n = sqlin.size(chunk, conn.dialect.name)
        for r in conn.execute(_select_stmt(tname, n), sqlin.params("keys", chunk, n)).mappings():
            k = row_key(table, r)
            if k in wanted:
                out[k] = dict(r)
    return out


def _label(tname: str, row: dict) -> str:
    key = row_key(TABLES[tname], row).split(":", 1)[1]
    return f"{tname} #{key}"


class _LaterMerges:
    """Finds the applied merges made after a merge that touched some of its rows (by key), for one undo
    call. The rows a merge touched never change once written, and an undone merge stays undone, so
    each merge's keys are read once per call, and the merges this call undid (a batch's, newest first)
    are left out of the scan by id ranges: undoing a batch of thousands stays linear. Which other
    merges are still applied is read afresh, in the undo's own transaction."""

    MAX_RANGES = 100  # merges undone here, in runs of consecutive ids, left out of the scan

    def __init__(self) -> None:
        self.touched: dict[int, frozenset[str]] = {}  # merge id -> keys of the rows in its before-image
        self.runs: dict[int, int] = {}  # merges undone here: first id of a run of consecutive ids -> last
        self._run_of_last: dict[int, int] = {}  # last -> first
        self._seen: set[int] = set()

    def undone(self, merge_id: int) -> None:
        """``merge_id`` was undone (for good): joined to the runs next to it."""
        if merge_id in self._seen:
            return
        self._seen.add(merge_id)
        first = last = merge_id
        if merge_id - 1 in self._run_of_last:
            first = self._run_of_last.pop(merge_id - 1)
        if merge_id + 1 in self.runs:
            last = self.runs.pop(merge_id + 1)
        self.runs[first], self._run_of_last[last] = last, first

    def find(self, conn: Connection, merge_id: int, keys: set[str]) -> list[int]:
        m = schema.dedup_merges
        ids = conn.execute(sa.select(m.c.id).where(m.c.status == "applied", self._scan(merge_id))
                           .order_by(m.c.id)).scalars().all()
        missing = [i for i in ids if i not in self.touched]
        for at in range(0, len(missing), 500):
            q = sa.select(m.c.id, m.c.before_image).where(m.c.id.in_(missing[at:at + 500]))
            for mid, image in conn.execute(q):
                # key columns are plain ints in the JSON: no need to decode the whole rows
                self.touched[mid] = frozenset(row_key(TABLES[t], r) for t, rows in (image or {}).items()
                                              for r in rows)
        return [i for i in ids if not keys.isdisjoint(self.touched[i])]

    def _scan(self, merge_id: int):
        """ids above ``merge_id``, but for the longest runs of consecutive ids all undone here (no
        other merge can hold an id inside such a run)."""
        above = ((max(first, merge_id + 1), last) for first, last in self.runs.items() if last > merge_id)
        runs = sorted(heapq.nlargest(self.MAX_RANGES, above, key=lambda r: r[1] - r[0]))
        col, parts, low = schema.dedup_merges.c.id, [], merge_id
        for first, last in runs:
            if first > low + 1:
                parts.append(sa.and_(col > low, col < first))
            low = last
        parts.append(col > low)
        return sa.or_(*parts)


@functools.lru_cache(maxsize=None)
def _select_stmt(tname: str, n: int | None):
    """Whole rows by the first key column (statements are built once per shape: undo runs by the
    thousand in a batch)."""
    table = TABLES[tname]
    return sa.select(table).where(sqlin.in_(table.c[table.primary_key.columns[0].name], "keys", n))


@functools.lru_cache(maxsize=None)
def _delete_stmt(tname: str):
    table = TABLES[tname]
    return table.delete().where(*(c == sa.bindparam(f"v_{c.name}") for c in table.primary_key.columns))


@functools.lru_cache(maxsize=None)
def _lock_stmt(entity_type: str, n: int | None):
    entity = schema.ENTITY_TABLES[entity_type]
    return sa.select(entity.c.id).where(sqlin.in_(entity.c.id, "ids", n)).order_by(entity.c.id).with_for_update()


_M, _G = schema.dedup_merges, schema.dedup_groups
_MERGE_ROW = sa.select(_M).where(_M.c.id == sa.bindparam("mid")).with_for_update()
_MARK_UNDONE = _M.update().where(_M.c.id == sa.bindparam("mid")).values(
    status="undone", undone_at=sa.bindparam("when"), undone_by=sa.bindparam("who"))
# the group goes back to pending, if this merge is the one that applied it: its approval was for that merge
_GROUP_PENDING = _G.update().where(_G.c.id == sa.bindparam("gid"), _G.c.merge_id == sa.bindparam("mid")).values(
    status="pending", merge_id=None, approved_by=None, approved_at=None, updated_at=sa.bindparam("when"))


@functools.lru_cache(maxsize=None)
def _update_stmt(tname: str, cols: tuple[str, ...]):
    """UPDATE table SET <non-key cols> WHERE <key cols>, all from parameters named v_<column>."""
    table = TABLES[tname]
    pk = {c.name for c in table.primary_key.columns}
    return (table.update().where(*(table.c[c] == sa.bindparam(f"v_{c}") for c in cols if c in pk))
            .values({c: sa.bindparam(f"v_{c}") for c in cols if c not in pk}))


def _undo_once(conn: Connection, merge_id: int, user: dict, force: bool,
               later_merges: _LaterMerges) -> UndoResult:
    with write_transaction(conn):
        merge = conn.execute(_MERGE_ROW, {"mid": merge_id}).mappings().first()
        if merge is None:
            raise MergeError(f"There is no merge #{merge_id}; `crm-dedup history` lists the merges.")
        merge = dict(merge)
        if merge["status"] == "undone":
            return UndoResult(merge_id, "already_undone", f"merge #{merge_id} was undone already "
                              f"on {merge['undone_at']:%Y-%m-%d %H:%M}")
        check_undo(user, merge)
        et = merge["entity_type"]
        # lock the records first, in id order, as a merge does
        ids = sorted({merge["primary_id"], *merge["merged_ids"]})
        n = sqlin.size(ids, conn.dialect.name)
        conn.execute(_lock_stmt(et, n), sqlin.params("ids", ids, n)).all()

        before, after = _images(merge)
        changes: list[str] = []
        current: dict[str, dict[str, dict]] = {}
        for tname in ORDER:
            rows = list(before.get(tname, {}).values()) + list(after.get(tname, {}).values())
            if not rows:
                continue
            now = current[tname] = _current(conn, tname, rows)
            for key, row in after.get(tname, {}).items():
                cur = now.get(key)
                if cur is None:
                    changes.append(f"{_label(tname, row)} was deleted since the merge")
                    continue
                diffs = [f"{c} {_fmt(row[c])} -> {_fmt(cur[c])}" for c in row if cur[c] != row[c]]
                if diffs:
                    changes.append(f"{_label(tname, row)} changed since the merge: " + "; ".join(diffs))
            for key, row in before.get(tname, {}).items():
                if key not in after.get(tname, {}) and key in now:
                    changes.append(f"{_label(tname, row)} exists again since the merge")
        # a later merge still holding these rows stops the undo even when forced (see the module's notes)
        keys = {k for image in (before, after) for rows in image.values() for k in rows}
        later = later_merges.find(conn, merge_id, keys)
        if later or (changes and not force):
            if later:
                names = ", ".join(f"#{i}" for i in reversed(later))
                hint = (f" Merge(s) {', '.join(f'#{i}' for i in later)} touched these records later: undo them "
                        f"first, newest first ({names}), then this one; not even a forced undo may go past "
                        "them, as it would mix up the rows of the two merges.")
            else:
                hint = " Undo with force to overwrite them."
            what = ("; ".join(changes[:12]) + ("; ..." if len(changes) > 12 else "") + "."
                    if changes else "later merges hold its records.")
            raise UndoConflict(f"Cannot undo merge #{merge_id} of {PLURAL[et]} into #{merge['primary_id']}: "
                               + what + hint, changes, later)

        restored: dict[str, int] = defaultdict(int)
        notes: list[str] = []
        full = {t: {c.name for c in TABLES[t].columns} for t in TABLES}
        # 1. rows the merge deleted (and rows it changed that have disappeared since): insert
        for tname in ORDER:
            now = current.get(tname, {})
            batch = []
            for key, row in before.get(tname, {}).items():
                if key in now:
                    continue
                if set(row) != full[tname]:
                    notes.append(f"{_label(tname, row)} no longer exists and cannot be restored")
                    continue
                batch.append(row)
            if batch:
                conn.execute(TABLES[tname].insert(), batch)
                restored[tname] += len(batch)
        # 2. rows the merge changed: the old values back (one executemany per table and column set)
        for tname in ORDER:
            now = current.get(tname, {})
            by_cols: dict[tuple, list[dict]] = defaultdict(list)
            for key, row in before.get(tname, {}).items():
                if key in now and any(now[key][c] != v for c, v in row.items()):
                    by_cols[tuple(sorted(row))].append(row)
            for cols, batch in by_cols.items():
                conn.execute(_update_stmt(tname, cols), [{f"v_{c}": r[c] for c in cols} for r in batch])
                restored[tname] += len(batch)
        # 3. rows the merge added: delete (children before parents)
        for tname in reversed(ORDER):
            now = current.get(tname, {})
            batch = [row for key, row in after.get(tname, {}).items()
                     if key not in before.get(tname, {}) and key in now]
            if batch:
                pk = PK[tname]
                conn.execute(_delete_stmt(tname), [{f"v_{c}": r[c] for c in pk} for r in batch])
                restored[tname] += len(batch)

        when = utcnow()
        conn.execute(_MARK_UNDONE, {"mid": merge_id, "when": when, "who": user["id"]})
        group = ""
        if merge["group_id"] is not None:
            gid = merge["group_id"]
            if conn.execute(_GROUP_PENDING, {"gid": gid, "mid": merge_id, "when": when}).rowcount:
                group = f"; group {gid} is pending again (to approve again)"
            else:  # (another merge applied it: a manager merged only their own records of it)
                status = conn.execute(sa.select(_G.c.status).where(_G.c.id == gid)).scalar()
                group = f"; group {gid} stays {status}" if status else ""
    later_merges.undone(merge_id)
    overwritten = changes + notes
    msg = f"Undid merge #{merge_id} ({merge['summary']}) by {user_label(user)}{group}"
    if overwritten:
        msg += f"; overwrote {len(overwritten)} change(s) made since: " + "; ".join(overwritten[:12])
    log.info(msg)
    return UndoResult(merge_id, "undone", msg, dict(restored), overwritten)


def undo_merge(store, merge_id: int, user_id: int | None, *, force: bool = False) -> UndoResult:
    """Restore every row merge ``merge_id`` touched. Raises UndoConflict (listing what changed since)
    unless ``force``; with force the result's ``overwritten`` says what was overwritten. A later merge
    still applied that touched these rows raises UndoConflict naming it, even with ``force``."""
    with store.engine.connect() as conn:
        user = load_user(conn, user_id)
        conn.commit()
        later = _LaterMerges()
        return retrying(lambda: _undo_once(conn, int(merge_id), user, force, later))


def undo_batch(store, batch_id: str, user_id: int | None, force: bool = False) -> list[UndoResult]:
    """Undo every applied merge of a batch, the latest first (so a chain within the batch comes undone in
    the right order); each reported, none stops the rest. A merge that a later merge still applied
    (another batch's, or one of this batch that could not be undone) touched is reported as a conflict."""
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        user = load_user(conn, user_id)
        ids = conn.execute(sa.select(m.c.id).where(m.c.batch_id == batch_id, m.c.status == "applied")
                           .order_by(m.c.id.desc())).scalars().all()
        conn.commit()
        if not ids:
            log.warning("batch %s has no applied merges to undo", batch_id)
        results = []
        later = _LaterMerges()
        for merge_id in ids:
            try:
                results.append(retrying(lambda: _undo_once(conn, merge_id, user, force, later)))
            except UndoConflict as exc:
                results.append(UndoResult(merge_id, "conflict", str(exc), overwritten=[]))
            except PermissionDenied as exc:
                results.append(UndoResult(merge_id, "denied", str(exc)))
            except MergeError as exc:
                results.append(UndoResult(merge_id, "failed", str(exc)))
            except Exception as exc:  # noqa: BLE001 - report and go on with the rest of the batch
                log.exception("undoing merge #%s failed", merge_id)
                results.append(UndoResult(merge_id, "failed", f"{type(exc).__name__}: {exc}"))
    return results


def person_choices(plan: MergePlan) -> dict[str, int]:
    """The values a person chose in ``plan`` (field -> record), to keep in a plan made again."""
    return {f: d.source_id for f, d in plan.fields.items() if d.rule == "choice"}


def plan_again(store, plan: MergePlan, settings: MergeSettings, *, members: list[int] | None = None,
               choices: dict[str, int] | None = None) -> MergePlan:
    """``plan`` made again from the records as they are now, as approved: the same members (or
    ``members``, the primary among them), a person's choices (or ``choices``), conflict policy and
    way of deleting."""
    merge = settings.model_copy(update={"delete_mode": plan.delete_mode, "conflict_policy": plan.conflict_policy})
    members = list(members) if members is not None else plan.member_ids
    choices = person_choices(plan) if choices is None else choices
    return plan_groups(store, plan.entity_type, [(plan.primary_id, members)], merge,
                       choices={plan.primary_id: choices})[0]


def replan_undone(store, merge_ids: list[int], settings: MergeSettings | None = None) -> int:
    """After undo: the groups these (undone) merges applied are pending again; each gets a plan made
    again from the records as they are now (live again), as it was approved (members, choices,
    conflict policy, way of deleting), so that a person sees what a merge would do now and may
    approve it again. Its stored plan may be older than the undo: one planned while its records were
    merged says they are deleted, and its merge would fail. A group that stayed open after the merge
    (a manager merged only their own records of it, review.actions) takes the records the merge took
    back as members, and is pending again if it was approved since (that approval was for the group
    without them). Only a group still pending (or approved) and free is changed (a compare-and-set);
    a broken group is logged and the rest go on. Returns how many groups were planned again.
    `crm-dedup undo` and the review page's undo both call it."""
    if not merge_ids:
        return 0
    settings = settings or MergeSettings.load()
    m, g, p = schema.dedup_merges, schema.dedup_groups, schema.dedup_plans
    q = (sa.select(g.c.id, g.c.entity_type, g.c.status, g.c.primary_id, g.c.member_ids, g.c.responsible_ids,
                   g.c.primary_reason, p.c.plan,
                   m.c.id.label("merge"), m.c.primary_id.label("into"), m.c.merged_ids)
         .select_from(m.join(g, g.c.id == m.c.group_id)
                      .outerjoin(p, (p.c.group_id == g.c.id) & (p.c.run_id == g.c.run_id)))
         .where(g.c.status.in_(("pending", "approved")), g.c.merge_id.is_(None), m.c.status == "undone"))
    rows = []
    with store.engine.connect() as conn:
        for at in range(0, len(merge_ids), 2000):  # PostgreSQL takes at most 65,535 parameters a statement
            rows += conn.execute(q.where(m.c.id.in_(merge_ids[at:at + 2000]))).all()
    by_group: dict[str, list] = defaultdict(list)
    for r in rows:
        by_group[r.id].append(r)
    done = 0
    for gid, merges in by_group.items():
        row = merges[0]
        members = [int(i) for i in row.member_ids]
        # the records a merge took that are no longer members: the group shrank after a partial merge
        back = list(dict.fromkeys(int(i) for r in merges for i in (r.into, *r.merged_ids) if int(i) not in members))
        if row.status == "approved" and not back:
            continue  # approved since the undo, as it is: a person's decision
        members += back
        try:
            if row.plan:
                stored = MergePlan.from_dict(row.plan)
                fresh = plan_again(store, stored, settings,
                                   members=[*stored.member_ids, *(i for i in back if i not in stored.member_ids)])
            else:
                fresh = plan_groups(store, row.entity_type, [(row.primary_id, members)], settings)[0]
        except Exception:  # noqa: BLE001 - one group's plan must not stop the rest
            log.exception("group %s: could not plan it again after its merge was undone", gid)
            continue
        values: dict[str, Any] = {"status": "pending", "updated_at": utcnow()}
        if back:
            owners = {r["responsible_id"] for r in fresh.records.values() if r.get("responsible_id") is not None}
            values.update(member_ids=members, approved_by=None, approved_at=None,
                          responsible_ids=sorted(owners | set(row.responsible_ids or [])))
        if row.status == "approved":
            merged = ", ".join(f"#{r.merge}" for r in merges)
            values["primary_reason"] = (f"{row.primary_reason or ''} (approval withdrawn: merge {merged} was undone "
                                        f"and {', '.join(f'#{i}' for i in back)} came back to the group)")
        with store.engine.begin() as conn:  # (a compare-and-set: as read, and still free)
            changed = conn.execute(g.update().where(g.c.id == gid, g.c.status == row.status, g.c.merge_id.is_(None))
                                   .values(**values)).rowcount
            if changed:
                proposals.set_plan(conn, gid, fresh.to_dict())
        done += changed
    return done
