"""A group's rows as read from the store: the records, their communications, every row linking to them.

The same code reads one group (when applying, with locks) and thousands at once (when planning, in
bulk: a few queries per chunk of ids, never one per group), so fingerprints computed from either agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import schema
from merge_rules.codec import fingerprint

CHUNK = 2000  # ids per IN (...) list: far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class LinkSpec:
    """Rows of ``table`` point at an entity through ``column`` (and ``entity_type`` when polymorphic)."""
    table: sa.Table
    column: str
    polymorphic: bool = False  # activities/history: (entity_type, entity_id)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.table.primary_key.columns)

    @property
    def read_columns(self) -> tuple[str, ...]:
        """What is read, stored in images and fingerprinted: the key and the pointing column
        (whole rows for contact_companies, whose key itself moves)."""
        if self.table is schema.contact_companies:
            return tuple(c.name for c in self.table.columns)
        return self.key_columns + (self.column,)


def _links() -> dict[str, list[LinkSpec]]:
    s = schema
    poly = [LinkSpec(s.activities, "entity_id", True), LinkSpec(s.history, "entity_id", True)]
    return {
        "contact": [LinkSpec(s.deals, "contact_id"), LinkSpec(s.invoices, "contact_id"),
                    LinkSpec(s.quotes, "contact_id"), *poly, LinkSpec(s.leads, "contact_id"),
                    LinkSpec(s.contact_companies, "contact_id")],
        "company": [LinkSpec(s.deals, "company_id"), LinkSpec(s.invoices, "company_id"),
                    LinkSpec(s.quotes, "company_id"), *poly, LinkSpec(s.leads, "company_id"),
                    LinkSpec(s.contact_companies, "company_id")],
        "lead": [LinkSpec(s.deals, "lead_id"), *poly],
    }


LINKS: dict[str, list[LinkSpec]] = _links()


def row_key(table: sa.Table, row: dict[str, Any]) -> str:
    """``table:pk`` (``contact_companies:12,5``): how rows are named in fingerprints and images."""
    return table.name + ":" + ",".join(str(row[c.name]) for c in table.primary_key.columns)


@dataclass
class Snapshot:
    entity_type: str
    primary_id: int
    member_ids: list[int]  # the primary first, then the duplicates in group order
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    comms: list[dict[str, Any]] = field(default_factory=list)  # in member order, then by id
    links: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table -> rows, by key
    users: dict[int, dict[str, Any]] = field(default_factory=dict)  # responsible users: id, name, role

    @property
    def duplicate_ids(self) -> list[int]:
        return [i for i in self.member_ids if i != self.primary_id]

    @property
    def table(self) -> sa.Table:
        return schema.ENTITY_TABLES[self.entity_type]

    def fingerprints(self) -> dict[str, str]:
        """One hash per row read: entity rows, their communications, the link rows."""
        out = {row_key(self.table, r): fingerprint(r) for r in self.records.values()}
        out.update((row_key(schema.communications, r), fingerprint(r)) for r in self.comms)
        for spec in LINKS[self.entity_type]:
            out.update((row_key(spec.table, r), fingerprint(r)) for r in self.links.get(spec.name, ()))
        return out


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


def _rows(conn: Connection, query) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(query).mappings()]


def read_snapshots(conn: Connection, entity_type: str, groups: Sequence[tuple[int, Sequence[int]]], *,
                   lock: bool = False) -> list[Snapshot]:
    """Snapshots of many groups with a few queries per chunk of ids. ``lock``: SELECT ... FOR UPDATE
    on the entity rows (in id order, so concurrent merges cannot deadlock on them)."""
    if entity_type not in schema.ENTITY_TABLES:
        raise ValueError(f"unknown entity type {entity_type!r}; use one of {', '.join(schema.ENTITY_TYPES)}")
    table = schema.ENTITY_TABLES[entity_type]
    comm = schema.communications
    all_ids = sorted({int(i) for _p, members in groups for i in members} | {int(p) for p, _m in groups})
    primaries = {int(p) for p, _m in groups}

    records: dict[int, dict[str, Any]] = {}
    comms: dict[int, list[dict[str, Any]]] = defaultdict(list)
    links: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: defaultdict(list) for s in LINKS[entity_type]}
    for ids in _chunks(all_ids):
        q = sa.select(table).where(table.c.id.in_(ids)).order_by(table.c.id)
        if lock:
            q = q.with_for_update()
        for r in _rows(conn, q):
            records[r["id"]] = r
        q = (sa.select(comm).where(comm.c.entity_type == entity_type, comm.c.entity_id.in_(ids))
             .order_by(comm.c.id))
        for r in _rows(conn, q):
            comms[r["entity_id"]].append(r)
        dup_ids = [i for i in ids if i not in primaries]
        for spec in LINKS[entity_type]:
            # Only rows that move are read, except contact_companies, where the primary's own rows
            # decide whether a moved row collides.
            wanted = ids if spec.table is schema.contact_companies else dup_ids
            if not wanted:
                continue
            t = spec.table
            q = sa.select(*(t.c[c] for c in spec.read_columns)).where(t.c[spec.column].in_(wanted))
            if spec.polymorphic:
                q = q.where(t.c.entity_type == entity_type)
            for r in _rows(conn, q.order_by(*t.primary_key.columns)):
                links[spec.name][r[spec.column]].append(r)

    responsible = sorted({r["responsible_id"] for r in records.values() if r.get("responsible_id") is not None})
    users: dict[int, dict[str, Any]] = {}
    u = schema.users
    for ids in _chunks(responsible):
        for r in _rows(conn, sa.select(u.c.id, u.c.name, u.c.role).where(u.c.id.in_(ids))):
            users[r["id"]] = r

    out = []
    for primary, members in groups:
        order = [int(primary)] + [int(m) for m in members if int(m) != int(primary)]
        order = list(dict.fromkeys(order))
        snap = Snapshot(entity_type, int(primary), order)
        snap.records = {i: records[i] for i in order if i in records}
        snap.comms = [r for i in order for r in comms.get(i, ())]
        for spec in LINKS[entity_type]:
            rows = [r for i in order for r in links[spec.name].get(i, ())]
            rows.sort(key=lambda r: tuple(r[c] for c in spec.key_columns))
            snap.links[spec.name] = rows
        snap.users = {rid: users[rid] for rid in {r.get("responsible_id") for r in snap.records.values()}
                      if rid in users}
        out.append(snap)
    return out


def read_snapshot(conn: Connection, entity_type: str, primary_id: int, member_ids: Sequence[int], *,
                  lock: bool = False) -> Snapshot:
    return read_snapshots(conn, entity_type, [(primary_id, member_ids)], lock=lock)[0]
