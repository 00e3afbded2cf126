"""Skips: pairs a person marked "not duplicates", with who and when; later runs leave them apart.
A skip replaces a "the same" mark of the pair (merge_rules.together).

Who may withdraw a mark, "not duplicates" here or "the same" (merge_rules.grouping.withdraw_include),
is one rule, may_withdraw_mark, which the command line, the review page and the engine all use."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import schema
from merge_rules.errors import PermissionDenied
from merge_rules.permissions import denied_records, load_user, user_label
from merge_rules.together import drop_marks
from merge_rules.tx import utcnow, write_transaction

log = logging.getLogger(__name__)


def _check(entity_type: str, ids: Iterable[int]) -> None:
    if entity_type not in schema.ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}; use one of {', '.join(schema.ENTITY_TYPES)}")
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"record ids must be integers, got {i!r}")


def _store_pairs(store, entity_type: str, pairs: set[tuple[int, int]], user_id: int | None,
                 dropped: list[dict] | None = None) -> int:
    """Insert the pairs not stored yet; returns how many were new. The "the same" marks of these pairs
    it drops (id_a, id_b, user_id, created_at) are added to ``dropped`` where given."""
    if not pairs:
        return 0
    s = schema.dedup_skips
    with store.engine.connect() as conn, write_transaction(conn):
        firsts = sorted({a for a, _b in pairs})
        have = set()
        for i in range(0, len(firsts), 2000):
            have |= set(map(tuple, conn.execute(sa.select(s.c.id_a, s.c.id_b).where(
                s.c.entity_type == entity_type, s.c.id_a.in_(firsts[i:i + 2000]))).all()))
        new = sorted(pairs - have)
        if new:
            now = utcnow()
            conn.execute(s.insert(), [{"entity_type": entity_type, "id_a": a, "id_b": b, "user_id": user_id,
                                       "created_at": now} for a, b in new])
        # the newer decision wins: a "same" mark of these pairs goes (skipping an added record out of its
        # group is how a person takes it out again; see merge_rules.together)
        replaced = drop_marks(conn, entity_type, pairs)
    for m in replaced:
        log.info("%s #%d and #%d are no longer marked the same (marked by user %s on %s): marked not "
                 "duplicates by user %s", entity_type, m["id_a"], m["id_b"], m["user_id"], m["created_at"], user_id)
    log.info("%d new %s skip pair(s) by user %s", len(new), entity_type, user_id)
    if dropped is not None:
        dropped.extend(replaced)
    return len(new)


def skip_pair(store, entity_type: str, id_a: int, id_b: int, user_id: int | None,
              dropped: list[dict] | None = None) -> bool:
    """Mark two records "not duplicates". True when the pair is new, False when it was marked before.
    ``dropped`` receives the "the same" mark of the pair this replaces, if any (dropped_words says it)."""
    _check(entity_type, (id_a, id_b))
    if id_a == id_b:
        raise ValueError(f"cannot skip {entity_type} #{id_a} against itself")
    return _store_pairs(store, entity_type, {(min(id_a, id_b), max(id_a, id_b))}, user_id, dropped) == 1


def skip_record(store, entity_type: str, record_id: int, group_member_ids: Iterable[int],
                user_id: int | None, dropped: list[dict] | None = None) -> int:
    """Mark a record "not a duplicate" of every other member of its group; returns the new pairs.
    ``dropped`` receives the "the same" marks this replaces (as skip_pair's)."""
    members = [int(m) for m in group_member_ids]
    _check(entity_type, [record_id, *members])
    pairs = {(min(record_id, m), max(record_id, m)) for m in members if m != record_id}
    return _store_pairs(store, entity_type, pairs, user_id, dropped)


def dropped_words(store, dropped: Iterable[Mapping[str, Any]]) -> str:
    """The "the same" marks a skip replaced, in words: "the 'same' mark by Анна (#12 and #15, made on
    2026-12-07 10:00 UTC) is withdrawn"; "" for none."""
    dropped = sorted(dropped, key=lambda m: (m["id_a"], m["id_b"]))
    if not dropped:
        return ""
    ids = {m["user_id"] for m in dropped if m["user_id"] is not None}
    u = schema.users
    with store.engine.connect() as conn:
        names = dict(conn.execute(sa.select(u.c.id, u.c.name).where(u.c.id.in_(ids))).all()) if ids else {}

    def one(m) -> str:
        uid = m["user_id"]
        who = "the system" if uid is None else (names.get(uid) or f"user #{uid}")
        return (f"the 'same' mark by {who} (#{m['id_a']} and #{m['id_b']}, made on "
                f"{m['created_at']:%Y-%m-%d %H:%M} UTC) is withdrawn")
    return "; ".join(one(m) for m in dropped)


def load_skips(store, entity_type: str) -> set[tuple[int, int]]:
    """Every skipped pair of an entity type, as (a, b) with a < b."""
    _check(entity_type, ())
    s = schema.dedup_skips
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(s.c.id_a, s.c.id_b).where(s.c.entity_type == entity_type)).all()
    return {(a, b) for a, b in rows}


def skipped_within(store, entity_type: str, groups: dict) -> dict:
    """key -> the pairs (a, b), a < b, of that group's record ids marked "not duplicates", for the
    groups holding any (``groups``: key -> ids). A group holding one is neither approved nor merged.
    Reads only the marks on these records."""
    _check(entity_type, ())
    ids = sorted({int(i) for members in groups.values() for i in members})
    s = schema.dedup_skips
    marked: set[tuple[int, int]] = set()
    with store.engine.connect() as conn:
        for i in range(0, len(ids), 2000):
            marked |= set(map(tuple, conn.execute(sa.select(s.c.id_a, s.c.id_b).where(
                s.c.entity_type == entity_type, s.c.id_a.in_(ids[i:i + 2000]))).all()))
    out = {}
    for key, members in groups.items():
        members = sorted({int(m) for m in members})
        pairs = [(a, b) for n, a in enumerate(members) for b in members[n + 1:] if (a, b) in marked]
        if pairs:
            out[key] = pairs
    return out


def may_withdraw_mark(user: Mapping[str, Any], records: Iterable[Mapping[str, Any] | None]) -> bool:
    """Whether ``user`` may withdraw a person's mark about two records ("not duplicates", or "the
    same"): an admin any; a manager only one between two records that are both theirs (a record not
    found is nobody's). Marking takes one record of theirs (permissions.may_mark_pair), withdrawing
    both: marks are shared by every user (unlike Bitrix24's skips, kept per user), so withdrawing one
    undoes a decision about both records, and a manager does not undo one about another's record."""
    return not denied_records(user, [r or {} for r in records])


def check_withdraw(conn: Connection, user: Mapping[str, Any], entity_type: str, id_a: int, id_b: int,
                   mark: str = 'a "not duplicates" mark') -> None:
    """Raise PermissionDenied, naming the records that are not the user's and their managers, unless
    ``user`` may withdraw ``mark`` between ``id_a`` and ``id_b`` (may_withdraw_mark). Deleted records
    count as they were: their manager is still the one who decides."""
    table = schema.ENTITY_TABLES[entity_type]
    found = {r["id"]: dict(r) for r in conn.execute(sa.select(table.c.id, table.c.responsible_id).where(
        table.c.id.in_((id_a, id_b)))).mappings()}
    records = [found.get(i, {"id": i, "responsible_id": None, "missing": True}) for i in sorted({id_a, id_b})]
    others = denied_records(user, records)
    if not others:
        return
    owners = {r["responsible_id"] for r in others if r["responsible_id"] is not None}
    u = schema.users
    names = dict(conn.execute(sa.select(u.c.id, u.c.name).where(u.c.id.in_(owners))).all()) if owners else {}

    def owner(r):
        if r.get("missing"):
            return "no such record"
        rid = r["responsible_id"]
        return "nobody" if rid is None else names.get(rid, f"user #{rid}")

    listed = ", ".join(f"#{r['id']} ({owner(r)})" for r in others)
    raise PermissionDenied(f"{user_label(user)} is a manager and may withdraw {mark} only between two records "
                           f"of their own; not {entity_type} {listed}. Ask an admin, or the manager of both records.")


def unskip_pair(store, entity_type: str, id_a: int, id_b: int, user_id: int | None) -> dict | None:
    """Withdraw a "not duplicates" mark as user ``user_id`` (None: the pipeline itself, as an admin):
    the removed skip (user_id, created_at), None when the pair was not marked. PermissionDenied unless
    the user may (may_withdraw_mark), checked with the mark locked. Later runs may group the two again."""
    _check(entity_type, (id_a, id_b))
    a, b = min(id_a, id_b), max(id_a, id_b)
    s = schema.dedup_skips
    where = (s.c.entity_type == entity_type, s.c.id_a == a, s.c.id_b == b)
    with store.engine.connect() as conn, write_transaction(conn):
        user = load_user(conn, user_id)
        row = conn.execute(sa.select(s.c.user_id, s.c.created_at).where(*where).with_for_update()).mappings().first()
        if row is None:
            return None
        check_withdraw(conn, user, entity_type, a, b)
        conn.execute(s.delete().where(*where))
    log.info("%s skip pair (%d, %d) removed by %s (it was marked by user %s)", entity_type, a, b,
             user_label(user), row["user_id"])
    return dict(row)
