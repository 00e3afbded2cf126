"""Together marks: pairs of records a person said are the same ("Add to this group", `crm-dedup
include`), with who and when. Every later run puts the two in one group whatever the score or the
chaining guard says (scoring.cluster.force_links): the counterpart of a skip (merge_rules.skips).

A pair is never marked both ways. Marking "together" a pair marked "not duplicates" is refused
(the person withdraws the skip first, knowingly: `crm-dedup unskip`), while a skip of a pair marked
together replaces the mark (merge_rules.skips), because skipping a record out of its group is how a
person takes an added record out again: the newer decision wins without a second step. Two people
racing could still leave both; the find then keeps the pair apart (load_together leaves it out):
when two decisions contradict, nothing is merged that a person said differs."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import schema
from merge_rules.tx import utcnow

log = logging.getLogger(__name__)


class TogetherError(ValueError):
    """A pair cannot be marked (or unmarked) "the same"; the message names the records and why."""


def _check(entity_type: str, ids: Iterable[int]) -> None:
    if entity_type not in schema.ENTITY_TYPES:
        raise TogetherError(f"unknown entity type {entity_type!r}; use one of {', '.join(schema.ENTITY_TYPES)}")
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool):
            raise TogetherError(f"record ids must be integers, got {i!r}")


def missing_record_text(conn: Connection, entity_type: str, record_id: int) -> str:
    """Why ``record_id`` is no live record of ``entity_type``, in words: none such (perhaps one of
    another entity type has that id), or deleted."""
    table = schema.ENTITY_TABLES[entity_type]
    row = conn.execute(sa.select(table.c.deleted_at).where(table.c.id == record_id)).first()
    if row is not None:
        return f"{entity_type} #{record_id} was deleted (merged or removed)"
    elsewhere = [et for et, t in schema.ENTITY_TABLES.items() if et != entity_type and conn.execute(
        sa.select(t.c.id).where(t.c.id == record_id, t.c.deleted_at.is_(None))).first() is not None]
    hint = (f" (#{record_id} is a {' and a '.join(elsewhere)}: records of different types are never the same)"
            if elsewhere else "")
    return f"there is no {entity_type} #{record_id}{hint}"


def mark_together(conn: Connection, entity_type: str, id_a: int, id_b: int, user_id: int | None) -> bool:
    """Mark two live records of ``entity_type`` "the same", on ``conn`` inside the caller's write
    transaction (include_record's, so that the group and the mark change together). True when the
    mark is new, False when the pair was marked before. TogetherError names the record that is
    missing, deleted or of another type, or the "not duplicates" mark in the way."""
    _check(entity_type, (id_a, id_b))
    if id_a == id_b:
        raise TogetherError(f"{entity_type} #{id_a} cannot be marked the same as itself")
    for i in (id_a, id_b):
        table = schema.ENTITY_TABLES[entity_type]
        if conn.execute(sa.select(table.c.id).where(table.c.id == i, table.c.deleted_at.is_(None))).first() is None:
            raise TogetherError(missing_record_text(conn, entity_type, i) + ": it cannot be marked the same as "
                                f"#{id_b if i == id_a else id_a}.")
    a, b = min(id_a, id_b), max(id_a, id_b)
    s, t = schema.dedup_skips, schema.dedup_together
    if conn.execute(sa.select(s.c.id).where(s.c.entity_type == entity_type, s.c.id_a == a, s.c.id_b == b)).first():
        raise TogetherError(f"{entity_type} #{a} and #{b} are marked not duplicates: withdraw the mark first "
                            f"(`crm-dedup unskip {a} {b} --entity {entity_type}`), then mark them the same.")
    where = (t.c.entity_type == entity_type, t.c.id_a == a, t.c.id_b == b)
    if conn.execute(sa.select(t.c.id).where(*where)).first() is not None:
        return False
    conn.execute(t.insert().values(entity_type=entity_type, id_a=a, id_b=b, user_id=user_id, created_at=utcnow()))
    log.info("%s #%d and #%d marked the same by user %s", entity_type, a, b, user_id)
    return True


def load_together(store, entity_type: str) -> list[tuple[int, int]]:
    """Every pair of an entity type marked "the same", as (a, b) with a < b, newest first (where
    marks contradict each other through a skip, the newer ones are joined first), without the pairs
    marked "not duplicates" too (see the module docstring)."""
    _check(entity_type, ())
    t, s = schema.dedup_together, schema.dedup_skips
    skipped = sa.select(s.c.id).where(s.c.entity_type == t.c.entity_type, s.c.id_a == t.c.id_a,
                                      s.c.id_b == t.c.id_b).exists()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.id_a, t.c.id_b).where(t.c.entity_type == entity_type, ~skipped)
                            .order_by(t.c.created_at.desc(), t.c.id.desc())).all()
    return [(int(a), int(b)) for a, b in rows]


def marks_of(conn: Connection, entity_type: str, record_id: int, others: Iterable[int]) -> list[dict]:
    """The together marks between ``record_id`` and any of ``others``: id, id_a, id_b, user_id, created_at."""
    t = schema.dedup_together
    others = sorted({int(o) for o in others} - {record_id})
    if not others:
        return []
    rows = conn.execute(sa.select(t.c.id, t.c.id_a, t.c.id_b, t.c.user_id, t.c.created_at).where(
        t.c.entity_type == entity_type,
        sa.or_(sa.and_(t.c.id_a == record_id, t.c.id_b.in_(others)),
               sa.and_(t.c.id_b == record_id, t.c.id_a.in_(others)))).order_by(t.c.id)).mappings().all()
    return [dict(r) for r in rows]


def drop_marks(conn: Connection, entity_type: str, pairs: Iterable[tuple[int, int]]) -> list[dict]:
    """Remove the together marks of these pairs (a < b), on ``conn`` inside the caller's transaction;
    returns the marks removed (id_a, id_b, user_id, created_at)."""
    t = schema.dedup_together
    pairs = set(pairs)
    firsts = sorted({a for a, _b in pairs})
    found = []
    for i in range(0, len(firsts), 2000):
        found += [dict(r) for r in conn.execute(sa.select(t.c.id, t.c.id_a, t.c.id_b, t.c.user_id, t.c.created_at)
                                                .where(t.c.entity_type == entity_type,
                                                       t.c.id_a.in_(firsts[i:i + 2000]))).mappings()
                  if (r["id_a"], r["id_b"]) in pairs]
    ids = [r["id"] for r in found]
    for i in range(0, len(ids), 2000):
        conn.execute(t.delete().where(t.c.id.in_(ids[i:i + 2000])))
    return found
