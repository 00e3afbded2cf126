"""Skips: pairs a person marked "not duplicates", with who and when; later runs leave them apart.
A skip replaces a "the same" mark of the pair (merge_rules.together)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa

from crm import schema
from merge_rules.together import drop_marks
from merge_rules.tx import utcnow, write_transaction

log = logging.getLogger(__name__)


def _check(entity_type: str, ids: Iterable[int]) -> None:
    if entity_type not in schema.ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}; use one of {', '.join(schema.ENTITY_TYPES)}")
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"record ids must be integers, got {i!r}")


def _store_pairs(store, entity_type: str, pairs: set[tuple[int, int]], user_id: int | None) -> int:
    """Insert the pairs not stored yet; returns how many were new."""
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
    return len(new)


def skip_pair(store, entity_type: str, id_a: int, id_b: int, user_id: int | None) -> bool:
    """Mark two records "not duplicates". True when the pair is new, False when it was marked before."""
    _check(entity_type, (id_a, id_b))
    if id_a == id_b:
        raise ValueError(f"cannot skip {entity_type} #{id_a} against itself")
    return _store_pairs(store, entity_type, {(min(id_a, id_b), max(id_a, id_b))}, user_id) == 1


def skip_record(store, entity_type: str, record_id: int, group_member_ids: Iterable[int],
                user_id: int | None) -> int:
    """Mark a record "not a duplicate" of every other member of its group; returns the new pairs."""
    members = [int(m) for m in group_member_ids]
    _check(entity_type, [record_id, *members])
    pairs = {(min(record_id, m), max(record_id, m)) for m in members if m != record_id}
    return _store_pairs(store, entity_type, pairs, user_id)


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


def unskip_pair(store, entity_type: str, id_a: int, id_b: int) -> dict | None:
    """Withdraw a "not duplicates" mark: the removed skip (user_id, created_at), None when the pair
    was not marked. Later runs may group the two again."""
    _check(entity_type, (id_a, id_b))
    a, b = min(id_a, id_b), max(id_a, id_b)
    s = schema.dedup_skips
    where = (s.c.entity_type == entity_type, s.c.id_a == a, s.c.id_b == b)
    with store.engine.connect() as conn, write_transaction(conn):
        row = conn.execute(sa.select(s.c.user_id, s.c.created_at).where(*where).with_for_update()).mappings().first()
        if row is None:
            return None
        conn.execute(s.delete().where(*where))
    log.info("%s skip pair (%d, %d) removed (it was marked by user %s)", entity_type, a, b, row["user_id"])
    return dict(row)
