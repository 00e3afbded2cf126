"""Apply merge plans: one transaction per group that re-checks, re-links, records and can be undone.

Each merge, in one transaction:
1. lock the group's rows (SELECT ... FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite) and read
   them again; refuse the plan if any fingerprint differs (someone edited a record since);
2. check that the user may merge every record;
3. write the primary's merged fields; move every link and every kept phone/email/... to the primary,
   folding contact-company links that would collide; drop repeated communications;
4. soft-delete (or delete) the duplicates; add a history event on the primary;
5. write a dedup_merges row with the before-image of every touched row and the after-image.

A batch is idempotent: dedup_merges is unique on (batch_id, group_id), so re-running a batch after a
crash applies only what is left.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.engine import Connection

from crm import schema
from crm import sqlin
from merge_rules.codec import encode_row
from merge_rules.errors import MergeError, NotDuplicates, PermissionDenied, StalePlanError, UnresolvedConflicts
from merge_rules.permissions import check_merge, denied_records, load_user
from merge_rules.plan import PLURAL, MergePlan
from merge_rules.snapshot import LINKS, Snapshot, queue_locked_snapshot, read_users, row_key
from merge_rules.tx import Done, Executor, Raw, retrying, utcnow, write_transaction

log = logging.getLogger(__name__)

# Test hook: called with a stage name ("before_commit") inside each merge's transaction. The fault
# tests use it to slow a batch down so that a SIGKILL lands inside a transaction.
FAULT_HOOK: Callable[[str], None] | None = None

# not_approved: apply_batch(only_status=...) found the group in another status when its turn came (a
# person or another apply changed it since the batch read it); nothing was merged
STATUSES = ("applied", "already_applied", "stale", "denied", "conflicts", "not_duplicates", "failed", "not_approved")


@dataclass
class MergeResult:
    status: str  # one of STATUSES
    entity_type: str
    primary_id: int
    merged_ids: list[int]
    group_id: str | None = None
    batch_id: str | None = None
    merge_id: int | None = None
    message: str = ""
    moved: dict[str, int] = field(default_factory=dict)  # rows re-linked per table

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "already_applied")


def group_key(plan: MergePlan) -> str:
    """A stable id for a group that has no dedup_groups row, so that batches stay idempotent."""
    members = ",".join(str(i) for i in sorted(plan.member_ids))
    digest = hashlib.blake2b(members.encode(), digest_size=6).hexdigest()
    return f"{plan.entity_type}-{plan.primary_id}-{digest}"


def merge_message(entity_type: str, primary_id: int, merged_ids: Sequence[int], user: dict) -> str:
    """"Merged contact #14 into #13 by ...", "Merged contacts #11, #12 into #10 by ...": the word in its number."""
    ids = ", ".join(f"#{i}" for i in merged_ids)
    word = entity_type if len(merged_ids) == 1 else PLURAL[entity_type]
    return f"Merged {word} {ids} into #{primary_id} by {user['name']}"


# -- staleness ----------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "empty"
    return repr(v) if isinstance(v, str) else str(v)


def describe_changes(plan: MergePlan, snap: Snapshot, fresh: dict[str, str], limit: int = 12) -> list[str]:
    """What differs between the rows the plan read and the rows as they are now, in words."""
    et = plan.entity_type
    table = schema.ENTITY_TABLES[et].name
    comms_then = {c.id: c for c in plan.communications}
    comms_now = {r["id"]: r for r in snap.comms}
    links_then = {f"{m.table}:" + ",".join(str(v) for v in m.key.values()): m for m in plan.links}
    # the record each link row read now points at (rows the plan did not move pointed at the primary)
    links_now = {row_key(spec.table, r): r[spec.column] for spec in LINKS[et] for r in snap.links.get(spec.name, ())}
    out: list[str] = []
    for key in sorted(set(plan.fingerprints) | set(fresh)):
        if plan.fingerprints.get(key) == fresh.get(key):
            continue
        tname, pk = key.split(":", 1)
        if tname == table:
            rid = int(pk)
            if key not in fresh:
                out.append(f"{et} #{rid} no longer exists")
                continue
            old, new = plan.records.get(rid, {}), snap.records[rid]
            if old.get("deleted_at") is None and new.get("deleted_at") is not None:
                out.append(f"{et} #{rid} was deleted or merged into another record at {new['deleted_at']:%Y-%m-%d %H:%M:%S}")
                continue
            diffs = [f"{c} {_fmt(old.get(c))} -> {_fmt(new.get(c))}" for c in new if old.get(c) != new.get(c)]
            out.append(f"{et} #{rid} was edited: " + "; ".join(diffs))
        elif tname == "communications":
            cid = int(pk)
            then, now = comms_then.get(cid), comms_now.get(cid)
            if now is None:
                out.append(f"{then.type} {then.value!r} was removed from {et} #{then.entity_id}" if then
                           else f"communication #{cid} was removed")
            elif then is None:
                out.append(f"{et} #{now['entity_id']} gained {now['type']} {now['value']!r}")
            else:
                out.append(f"{then.type} {then.value!r} of {et} #{then.entity_id} changed to "
                           f"{now['type']} {now['value']!r} of #{now['entity_id']}")
        else:
            if key not in plan.fingerprints:
                out.append(f"{tname} row {pk} now points at {et} #{links_now[key]} and would not be moved by this plan")
            elif key not in fresh:
                m = links_then.get(key)
                out.append(f"{tname} row {pk} no longer points at {et} #{m.from_id if m else plan.primary_id}")
            else:
                out.append(f"{tname} row {pk} changed")
        if len(out) >= limit:
            out.append("...")
            break
    return out


# -- the writes ---------------------------------------------------------------------------------

class _Images:
    """Before- and after-images of touched rows, per table, JSON-safe."""

    def __init__(self) -> None:
        self.before: dict[str, list[dict]] = defaultdict(list)
        self.after: dict[str, list[dict]] = defaultdict(list)

    def touched(self, table: str, before: dict | None, after: dict | None) -> None:
        if before is not None:
            self.before[table].append(encode_row(before))
        if after is not None:
            self.after[table].append(encode_row(after))


_MERGE_COLUMNS = ["group_id", "batch_id", "entity_type", "primary_id", "merged_ids", "user_id", "merged_at",
                  "status", "summary", "before_image", "after_image"]
_HISTORY_COLUMNS = ["entity_type", "entity_id", "event", "message", "user_id", "created_at"]


class _Writes:
    """The statements of a merge of one entity type on one dialect, compiled once (merge_rules.tx.Raw);
    IN lists get a statement per length (a group's lists are short and their lengths few)."""

    def __init__(self, et: str, dialect):
        self.et, self.dialect = et, dialect
        self.pg = dialect.name == "postgresql"
        table, cc = schema.ENTITY_TABLES[et], schema.contact_companies
        self.table = table
        key = sa.and_(cc.c.contact_id == sa.bindparam("k1_"), cc.c.company_id == sa.bindparam("k2_"))
        self.cc_delete = Raw(cc.delete().where(key), dialect)
        self.cc_flag = Raw(cc.update().where(key).values(is_primary=sa.bindparam("flag_")), dialect)
        self.cc_move = {col: Raw(cc.update().where(key).values({col: sa.bindparam("to_"),
                                                                "is_primary": sa.bindparam("flag_")}), dialect)
                        for col in ("contact_id", "company_id")}
        h, m, g = schema.history, schema.dedup_merges, schema.dedup_groups
        if self.pg:
            # ids taken with the reads, so that every write of a merge goes in one round trip
            self.history = Raw(h.insert(), dialect, ["id", *_HISTORY_COLUMNS])
            self.merge = Raw(m.insert(), dialect, ["id", *_MERGE_COLUMNS])
            # the sequences' names are looked up once per connection (_Applier): pg_get_serial_sequence
            # on every merge costs the server more than the nextval
            self.next_ids = Raw(sa.select(sa.func.nextval(sa.cast(sa.bindparam("hseq_", type_=sa.String), REGCLASS)),
                                          sa.func.nextval(sa.cast(sa.bindparam("mseq_", type_=sa.String), REGCLASS))),
                                dialect)
            self.sequences = Raw(sa.select(sa.func.pg_get_serial_sequence("history", "id"),
                                           sa.func.pg_get_serial_sequence("dedup_merges", "id")), dialect)
            self.no_sync = Raw(sa.text("SET LOCAL synchronous_commit TO OFF"), dialect)
        else:
            self.history = Raw(h.insert().returning(h.c.id), dialect, _HISTORY_COLUMNS)
            self.merge = Raw(m.insert().returning(m.c.id), dialect, _MERGE_COLUMNS)
        self.group = Raw(g.update().where(g.c.id == sa.bindparam("gid_")).values(
            status="applied", merge_id=sa.bindparam("mid_"), updated_at=sa.bindparam("now_")), dialect)
        self.already = Raw(sa.select(m.c.id).where(m.c.batch_id == sa.bindparam("b_"),
                                                   m.c.group_id == sa.bindparam("g_")), dialect)
        # the group's row, locked (PostgreSQL; SQLite's BEGIN IMMEDIATE already excludes other writers)
        # before the records, so that two applies never both take one group
        self.group_state = Raw(sa.select(g.c.status, g.c.merge_id).where(g.c.id == sa.bindparam("gid_"))
                               .with_for_update(), dialect)
        self._primary: dict[tuple, Raw] = {}
        self._cache: dict[tuple, Raw] = {}
        self.specs = {spec.name: spec for spec in LINKS[et]}

    def primary(self, columns: tuple[str, ...]) -> Raw:
        """UPDATE the primary SET these columns (bound by their names) WHERE id = :pk_."""
        if columns not in self._primary:
            t = self.table
            self._primary[columns] = Raw(t.update().where(t.c.id == sa.bindparam("pk_")), self.dialect, list(columns))
        return self._primary[columns]

    def run(self, ex: Executor, kind: str, *, ids=(), dups=(), **values) -> Done:
        """Run statement ``kind`` (soft_delete, hard_delete, comm_move, comm_drop or a link table's
        name) for these ids of rows and of duplicates."""
        ni, nd = len(ids), len(dups)
        key = (kind, ni, nd)
        raw = self._cache.get(key)
        if raw is None:
            raw = self._cache[key] = Raw(self._build(kind, ni, nd), self.dialect)
        return ex.run(raw, {**sqlin.params("ids_", ids, ni), **sqlin.params("dups_", dups, nd), **values})

    def _build(self, kind: str, ni, nd):
        table, comm = self.table, schema.communications
        if kind == "soft_delete":
            return table.update().where(sqlin.in_(table.c.id, "dups_", nd)).values(deleted_at=sa.bindparam("now_"))
        if kind == "hard_delete":
            return table.delete().where(sqlin.in_(table.c.id, "dups_", nd))
        if kind in ("comm_move", "comm_drop"):
            mine = sa.and_(sqlin.in_(comm.c.id, "ids_", ni), comm.c.entity_type == self.et,
                           sqlin.in_(comm.c.entity_id, "dups_", nd))
            return (comm.update().where(mine).values(entity_id=sa.bindparam("to_")) if kind == "comm_move"
                    else comm.delete().where(mine))
        if kind == "skipped":  # pairs of the members marked "not duplicates" (ids and dups: the members)
            s = schema.dedup_skips
            return sa.select(s.c.id_a, s.c.id_b).where(s.c.entity_type == self.et, sqlin.in_(s.c.id_a, "ids_", ni),
                                                       sqlin.in_(s.c.id_b, "dups_", nd)).order_by(s.c.id_a, s.c.id_b)
        spec = self.specs[kind]
        t = spec.table
        cond = sa.and_(sqlin.in_(t.c.id, "ids_", ni), sqlin.in_(t.c[spec.column], "dups_", nd))
        if spec.polymorphic:
            cond = sa.and_(cond, t.c.entity_type == self.et)
        return t.update().where(cond).values({spec.column: sa.bindparam("to_")})


_WRITES: dict[tuple[str, str], _Writes] = {}


def _writes(et: str, dialect) -> _Writes:
    key = (dialect.name, et)
    if key not in _WRITES:
        _WRITES[key] = _Writes(et, dialect)
    return _WRITES[key]


class _Checks:
    """Row counts to verify once a pipeline's results are in: a link that is not where the plan saw
    it (moved by someone else since) makes the merge stale."""

    def __init__(self) -> None:
        self.items: list[tuple[Done, int, str]] = []

    def add(self, done: Done, expected: int, what: str) -> None:
        self.items.append((done, expected, what))

    def verify(self) -> None:
        for done, expected, what in self.items:
            if done.rowcount != expected:
                raise StalePlanError(f"{what} changed while merging ({done.rowcount} of {expected} rows as planned); "
                                     "make a new plan and try again")


def _write_merge(ex: Executor, w: _Writes, plan: MergePlan, snap: Snapshot, user: dict, now,
                 history_id: int | None, checks: _Checks) -> tuple[_Images, dict[str, int], dict]:
    """Queue the writes of one merge on ``ex``; the row counts to check go to ``checks``."""
    et, p, dups = plan.entity_type, plan.primary_id, plan.duplicate_ids
    table = w.table
    img = _Images()
    moved: dict[str, int] = defaultdict(int)

    # 1. the primary's merged fields
    old = snap.records[p]
    values = {f: d.value for f, d in plan.fields.items() if old.get(f) != d.value}
    values["modified_at"] = now
    ex.run(w.primary(tuple(values)), {"pk_": p, **values})
    img.touched(table.name, old, {**old, **values})

    # 2. communications: kept values move to the primary, repeats are dropped
    rows = {r["id"]: r for r in snap.comms}
    move = [c.id for c in plan.communications if c.action == "move"]
    drop = [c.id for c in plan.communications if c.action in ("repeat", "drop")]
    if move:
        checks.add(w.run(ex, "comm_move", ids=move, dups=dups, to_=p), len(move), "communications")
        for cid in move:
            img.touched("communications", rows[cid], {**rows[cid], "entity_id": p})
        moved["communications"] = len(move)
    if drop:
        checks.add(w.run(ex, "comm_drop", ids=drop, dups=dups), len(drop), "communications")
        for cid in drop:
            img.touched("communications", rows[cid], None)

    # 3. links
    by_table: dict[str, list] = defaultdict(list)
    for m in plan.links:
        by_table[m.table].append(m)
    for spec in LINKS[et]:
        moves = by_table.get(spec.name)
        if not moves:
            continue
        if spec.table is schema.contact_companies:
            _move_contact_companies(ex, w, snap, spec.column, moves, img, checks)
            moved[spec.name] = sum(1 for m in moves if m.action != "update")
            continue
        ids = [m.key["id"] for m in moves]
        checks.add(w.run(ex, spec.name, ids=ids, dups=dups, to_=p), len(ids),
                   f"{spec.name} linked to the group of {et} #{p}")
        for m in moves:
            img.touched(spec.name, {"id": m.key["id"], spec.column: m.from_id}, {"id": m.key["id"], spec.column: p})
        moved[spec.name] = len(ids)

    # 4. the duplicates
    for d in dups:
        img.touched(table.name, snap.records[d], None if plan.delete_mode == "hard" else
                    {**snap.records[d], "deleted_at": now})
    if plan.delete_mode == "hard":
        w.run(ex, "hard_delete", dups=dups)
    else:
        w.run(ex, "soft_delete", dups=dups, now_=now)

    # 5. the history event on the primary
    event = {"entity_type": et, "entity_id": p, "event": "merge",
             "message": merge_message(et, p, dups, user), "user_id": user["id"], "created_at": now}
    if history_id is None:  # SQLite: no round trips, the id comes back at once
        event["id"] = ex.run(w.history, event).scalar()
    else:
        event["id"] = history_id
        ex.run(w.history, event)
    img.touched("history", None, event)
    return img, dict(moved), event


def _move_contact_companies(ex: Executor, w: _Writes, snap: Snapshot, column: str, moves, img: _Images,
                            checks: _Checks) -> None:
    rows = {(r["contact_id"], r["company_id"]): r for r in snap.links.get("contact_companies", [])}
    other = "company_id" if column == "contact_id" else "contact_id"
    for m in moves:
        key = (m.key["contact_id"], m.key["company_id"])
        old, where = rows[key], {"k1_": key[0], "k2_": key[1]}
        if m.action == "move":
            checks.add(ex.run(w.cc_move[column], {**where, "to_": m.to_id, "flag_": m.is_primary}), 1,
                       "contact_companies")
            img.touched("contact_companies", old, None)
            img.touched("contact_companies", None, {**old, column: m.to_id, "is_primary": m.is_primary})
        elif m.action == "merge":
            # folded into the primary's own link to the same company (contact): the before-image keeps
            # the row, and undo brings it back
            checks.add(ex.run(w.cc_delete, where), 1, "contact_companies")
            img.touched("contact_companies", old, None)
    # the primary's own rows whose is_primary flag changes (a folded row's flag, one primary company)
    final = {m.key[other]: m.is_primary for m in moves}
    for key, old in rows.items():
        if old[column] != snap.primary_id or old[other] not in final:
            continue
        flag = final[old[other]]
        if bool(old["is_primary"]) != flag:
            checks.add(ex.run(w.cc_flag, {"k1_": key[0], "k2_": key[1], "flag_": flag}), 1, "contact_companies")
            img.touched("contact_companies", old, {**old, "is_primary": flag})


# -- applying -----------------------------------------------------------------------------------

class _Applier:
    """Applies plans on one connection, caching what a batch shares (the user)."""

    def __init__(self, conn: Connection, user_id: int | None, durable: bool = True):
        self.conn = conn
        self.durable = durable
        self.ex = Executor(conn)
        self.user = load_user(conn, user_id)
        self.sequences: dict[str, str] = {}
        if conn.dialect.name == "sqlite":
            # a batch touches pages all over the file: a 64 MB page cache (SQLite's default is 2 MB)
            # for this connection keeps most of them in memory
            conn.exec_driver_sql("PRAGMA cache_size = -65536")
        if self.ex.pg:
            hseq, mseq = self.ex.run(_writes("contact", conn.dialect).sequences, {}).rows()[0]
            self.sequences = {"hseq_": hseq, "mseq_": mseq}
        if conn.in_transaction():
            conn.commit()

    def already(self, batch_id: str, group_id: str) -> int | None:
        m = schema.dedup_merges
        return self.conn.execute(sa.select(m.c.id).where(m.c.batch_id == batch_id, m.c.group_id == group_id)).scalar()

    def apply(self, plan: MergePlan, batch_id: str | None, group_id: str | None, update_group: bool,
              check_done: bool = True, only_status: str | None = None) -> MergeResult:
        if plan.problems:
            raise MergeError(plan.summary())
        if plan.unresolved:
            fields = [c.field for c in plan.unresolved]
            details = "; ".join(f"{c.field}: " + ", ".join(f"#{rid} {v!r}" for rid, v in c.candidates)
                                for c in plan.unresolved)
            raise UnresolvedConflicts(
                f"The merge of {plan.entity_type} #{plan.primary_id} has conflicts nobody chose a value for "
                f"({details}). Choose a value for each on the review page, or merge with a conflict policy "
                "(merge.conflict_policy in the settings: keep_primary, most_common, most_recent or longest).", fields)
        return retrying(lambda: self._apply_once(plan, batch_id, group_id, update_group, check_done, only_status))

    def _apply_once(self, plan: MergePlan, batch_id, group_id, update_group, check_done,
                    only_status: str | None = None) -> MergeResult:
        conn, et = self.conn, plan.entity_type
        result = MergeResult("applied", et, plan.primary_id, list(plan.duplicate_ids), group_id, batch_id)
        try:
            with write_transaction(conn):
                # reads (on PostgreSQL one round trip): has this group been merged, the rows, locked
                ex, w = self.ex, _writes(et, conn.dialect)
                ex.begin()
                with ex.pipeline():
                    if ex.pg and not self.durable:
                        ex.run(w.no_sync, {})
                    state_q = (ex.run(w.group_state, {"gid_": group_id})
                               if only_status is not None and group_id is not None else None)
                    done_q = (ex.run(w.already, {"b_": batch_id, "g_": group_id})
                              if check_done and batch_id is not None and group_id is not None else None)
                    build = queue_locked_snapshot(ex, et, plan.primary_id, plan.member_ids)
                    skipped_q = w.run(ex, "skipped", ids=plan.member_ids, dups=plan.member_ids)
                    ids_q = ex.run(w.next_ids, self.sequences) if ex.pg else None
                if done_q is not None and (done := done_q.rows()):
                    raise _Already(done[0][0])
                if state_q is not None:
                    state = state_q.rows()
                    if not state or state[0][0] != only_status:
                        raise _NotApproved(*(state[0] if state else (None, None)))
                snap = build()
                if skipped := skipped_q.rows():
                    pairs = ", ".join(f"#{a} and #{b}" for a, b in skipped)
                    raise NotDuplicates(
                        f"The group of {et} #{plan.primary_id} is not merged: {pairs} were marked \"not duplicates\" "
                        "after it was proposed. Take one of them out of the group on the review page, or let the "
                        "next run regroup the records (it keeps them apart).")
                fresh = snap.fingerprints()
                if fresh != plan.fingerprints:
                    changes = describe_changes(plan, snap, fresh)
                    raise StalePlanError(
                        f"The plan to merge {PLURAL[et]} {', '.join(f'#{i}' for i in plan.duplicate_ids)} into "
                        f"#{plan.primary_id} is out of date: " + "; ".join(changes) + ". Make a new plan.", changes)
                if denied_records(self.user, snap.records.values()):
                    owners = read_users(conn, [r["responsible_id"] for r in snap.records.values()
                                               if r.get("responsible_id") is not None])
                    check_merge(self.user, et, snap.records.values(), owners)
                now = utcnow()
                history_id, merge_id = ids_q.rows()[0] if ids_q is not None else (None, None)
                checks = _Checks()
                # writes (on PostgreSQL one round trip), then the row counts they must have had
                with ex.pipeline():
                    img, moved, event = _write_merge(ex, w, plan, snap, self.user, now, history_id, checks)
                    row = dict(group_id=group_id, batch_id=batch_id, entity_type=et, primary_id=plan.primary_id,
                               merged_ids=list(plan.duplicate_ids), user_id=self.user["id"], merged_at=now,
                               status="applied", summary=plan.summary(),
                               before_image=dict(img.before), after_image=dict(img.after))
                    if merge_id is None:
                        merge_id = ex.run(w.merge, row).scalar()
                    else:
                        ex.run(w.merge, {"id": merge_id, **row})
                    if update_group and group_id is not None:
                        ex.run(w.group, {"gid_": group_id, "mid_": merge_id, "now_": now})
                checks.verify()
                if FAULT_HOOK is not None:
                    FAULT_HOOK("before_commit")
        except _Already as done:
            result.status, result.merge_id = "already_applied", done.merge_id
            result.message = f"group {group_id} of batch {batch_id} was merged already (merge #{done.merge_id})"
            return result
        except _NotApproved as taken:
            return taken.result(result, only_status)
        except StalePlanError:
            # another process of the same batch merged this group a moment ago: that is no staleness
            if batch_id is not None and group_id is not None:
                done = self.already(batch_id, group_id)
                self.conn.rollback()
                if done is not None:
                    result.status, result.merge_id = "already_applied", done
                    result.message = f"group {group_id} of batch {batch_id} was merged by another process (merge #{done})"
                    return result
            raise
        except sa.exc.IntegrityError:
            # another process committed the same (batch, group) first
            if batch_id is not None and group_id is not None and (done := self.already(batch_id, group_id)):
                if self.conn.in_transaction():
                    self.conn.rollback()
                result.status, result.merge_id = "already_applied", done
                result.message = f"group {group_id} of batch {batch_id} was merged by another process (merge #{done})"
                return result
            raise
        result.merge_id, result.moved, result.message = merge_id, moved, event["message"]
        log.info("%s (merge #%s)", event["message"], merge_id)
        return result


class _Already(Exception):
    def __init__(self, merge_id: int):
        self.merge_id = merge_id


class _NotApproved(Exception):
    """The group's row is not in the status the batch merges (nothing was written)."""

    def __init__(self, status: str | None, merge_id: int | None):
        self.status, self.merge_id = status, merge_id

    def result(self, result: MergeResult, wanted: str) -> MergeResult:
        gid = result.group_id
        if self.status == "applied":
            result.status, result.merge_id = "already_applied", self.merge_id
            result.message = (f"group {gid} was merged by another merge (merge #{self.merge_id}) after this batch read "
                              "it; not merged again")
        else:
            result.status = "not_approved"
            now = "no longer exists" if self.status is None else f"is {self.status} now"
            result.message = (f"group {gid} {now}, no longer {wanted} (changed by a person or another merge after "
                              "this batch read it); not merged, left as it is")
        return result


def _mark_group(conn: Connection, group_id: str | None, status: str) -> None:
    if group_id is None:
        return
    g = schema.dedup_groups
    with write_transaction(conn):
        conn.execute(g.update().where(g.c.id == group_id, g.c.status != "applied")
                     .values(status=status, updated_at=utcnow()))


def apply_plan(store, plan: MergePlan, user_id: int | None, *, batch_id: str | None = None,
               group_id: str | None = None) -> MergeResult:
    """Apply one plan in one transaction. Raises StalePlanError, PermissionDenied, UnresolvedConflicts
    (all MergeError); returns status 'already_applied' when this (batch, group) was merged before."""
    real_group = group_id or plan.group_id
    key = real_group or (group_key(plan) if batch_id else None)
    with store.engine.connect() as conn:
        applier = _Applier(conn, user_id)
        try:
            return applier.apply(plan, batch_id, key, update_group=real_group is not None)
        except StalePlanError:
            _mark_group(conn, real_group, "stale")
            raise


def _apply_reporting(applier: _Applier, plan: MergePlan, batch_id: str, done: dict,
                     only_status: str | None = None) -> MergeResult:
    """Apply one plan of a batch, turning every refusal into a result."""
    key = plan.group_id or group_key(plan)
    base = dict(entity_type=plan.entity_type, primary_id=plan.primary_id,
                merged_ids=list(plan.duplicate_ids), group_id=key, batch_id=batch_id)
    if key in done:
        return MergeResult("already_applied", merge_id=done[key],
                           message=f"merged already in this batch (merge #{done[key]})", **base)
    try:
        res = applier.apply(plan, batch_id, key, update_group=plan.group_id is not None, check_done=False,
                            only_status=only_status if plan.group_id is not None else None)
    except StalePlanError as exc:
        if only_status is None:  # (else the caller settles the group, by a compare-and-set of its own)
            _mark_group(applier.conn, plan.group_id, "stale")
        return MergeResult("stale", message=str(exc), **base)
    except PermissionDenied as exc:
        return MergeResult("denied", message=str(exc), **base)
    except UnresolvedConflicts as exc:
        return MergeResult("conflicts", message=str(exc), **base)
    except NotDuplicates as exc:
        return MergeResult("not_duplicates", message=str(exc), **base)
    except MergeError as exc:
        return MergeResult("failed", message=str(exc), **base)
    except Exception as exc:  # noqa: BLE001 - one broken group must not stop the batch
        log.exception("merging %s #%s failed", plan.entity_type, plan.primary_id)
        if applier.conn.in_transaction():
            applier.conn.rollback()
        return MergeResult("failed", message=f"{type(exc).__name__}: {exc}", **base)
    if res.status == "applied":
        done[key] = res.merge_id
    return res


def apply_batch(store, plans: Iterable[MergePlan], user_id: int | None, batch_id: str, *,
                group_ids: Sequence[str | None] | None = None,
                on_result: Callable[[MergeResult], None] | None = None,
                workers: int = 1, durable: bool = True, only_status: str | None = None) -> list[MergeResult]:
    """Apply plans one transaction each; a group that cannot be merged is reported and the rest go on.
    Re-running the same batch after a crash applies only the groups not merged yet.

    ``group_ids`` (aligned with ``plans``) name the dedup_groups rows, overriding ``plan.group_id``;
    those rows get status 'applied' (or 'stale'). ``on_result`` is called after each group (from the
    worker threads, one call at a time, when ``workers`` > 1). ``workers`` > 1 applies groups over that
    many connections at once on PostgreSQL, where a merge mostly waits for the server; row locks keep
    overlapping groups apart. SQLite has one writer at a time, so it always uses one.
    ``durable=False`` (PostgreSQL) does not wait for each commit to reach the disk: every merge stays
    all-or-nothing, but a server crash may lose the last few, which re-running the batch re-applies.

    ``only_status`` ("approved" for the apply flow): a group is merged only if its dedup_groups row
    still has this status, looked at in the merge's own transaction with the row locked (PostgreSQL:
    SELECT ... FOR UPDATE, held to the commit; SQLite: the single writer of BEGIN IMMEDIATE). So two
    applies running at once never both take a group: the second finds it 'applied' and reports
    'already_applied' (the other's merge), or 'not_approved' when a person changed it meanwhile. A
    stale plan then leaves the group's status as it is, for the caller to settle. No transient status
    is written: a process that dies leaves each group as it was or applied, never half-taken."""
    plans = list(plans)
    if group_ids is not None:
        if len(group_ids) != len(plans):
            raise ValueError(f"apply_batch: {len(group_ids)} group ids for {len(plans)} plans")
        for plan, gid in zip(plans, group_ids):
            if gid is not None:
                plan.group_id = gid
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        done = dict(conn.execute(sa.select(m.c.group_id, m.c.id).where(m.c.batch_id == batch_id)).all())
    workers = 1 if store.dialect == "sqlite" else max(1, min(int(workers), len(plans) or 1))
    results: list[MergeResult | None] = [None] * len(plans)
    lock = threading.Lock()
    todo = iter(range(len(plans)))

    def work() -> None:
        with store.engine.connect() as conn:
            applier = _Applier(conn, user_id, durable)
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                res = results[i] = _apply_reporting(applier, plans[i], batch_id, done, only_status)
                if on_result is not None:
                    with lock:
                        on_result(res)

    if workers == 1:
        work()
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="merge") as pool:
            for f in [pool.submit(work) for _ in range(workers)]:
                f.result()
    counts = Counter(r.status for r in results)
    log.info("batch %s: %s", batch_id, ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return results
