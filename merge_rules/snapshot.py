"""A group's rows as read from the store: the records, their communications, every row linking to them.

The same code reads one group (when applying, with locks) and thousands at once (when planning, in
bulk: a few queries per chunk of ids, never one per group), so fingerprints computed from either agree.
"""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import schema
from crm import sqlin
from merge_rules.codec import fingerprint
from merge_rules.tx import Executor, Raw

CHUNK = 2000  # ids per IN (...) list: far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class LinkSpec:
    """Rows of ``table`` point at an entity through ``column`` (and ``entity_type`` when polymorphic)."""
    table: sa.Table
    column: str
    polymorphic: bool = False  # activities/history: (entity_type, entity_id)

    @functools.cached_property
    def name(self) -> str:
        return self.table.name

    @functools.cached_property
    def key_columns(self) -> tuple[str, ...]:
        return PK[self.table.name]



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


PK = {t.name: tuple(c.name for c in t.primary_key.columns) for t in schema.metadata.sorted_tables}


def row_key(table: sa.Table, row: dict[str, Any]) -> str:
    """``table:pk`` (``contact_companies:12,5``): how rows are named in fingerprints and images."""
    pk = PK[table.name]
    if len(pk) == 1:
        return f"{table.name}:{row[pk[0]]}"
    return table.name + ":" + ",".join(str(row[c]) for c in pk)


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
        # entity and communication rows are keyed by their id: row_key() without its lookups
        name, comm = self.table.name, schema.communications.name
        out = {f"{name}:{r['id']}": fingerprint(r) for r in self.records.values()}
        out.update((f"{comm}:{r['id']}", fingerprint(r)) for r in self.comms)
        for spec in LINKS[self.entity_type]:
            out.update((row_key(spec.table, r), fingerprint(r)) for r in self.links.get(spec.name, ()))
        return out


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


class _Queries:
    """The reads of one entity type, built once: SQLAlchemy then reuses their compiled form, which
    matters when thousands of merges run one after another."""

    def __init__(self, entity_type: str):
        self.entity_type = entity_type
        self.specs = {spec.name: spec for spec in LINKS[entity_type]}
        self._records: dict[tuple, Any] = {}
        self._links: dict[tuple, Any] = {}
        self._raw: dict[tuple, Raw] = {}

    def records(self, n: int | str | None, lock: bool):
        key = (n, lock)
        if key not in self._records:
            table = schema.ENTITY_TABLES[self.entity_type]
            q = sa.select(table).where(sqlin.in_(table.c.id, "ids", n)).order_by(table.c.id)
            self._records[key] = q.with_for_update() if lock else q
        return self._records[key]

    def links(self, n_members: int | str | None, n_dups: int | str | None):
        """The communications and every link table in one UNION ALL of
        (table, key1, key2, pointing column, flag, comm type, comm kind, comm value)."""
        key = (n_members, n_dups)
        if key in self._links:
            return self._links[key]
        et, comm = self.entity_type, schema.communications
        text, num = sa.cast(sa.null(), sa.String(1000)), sa.cast(sa.null(), sa.Integer)

        def label(name: str):
            return sa.cast(sa.literal(name), sa.String(32)).label("tbl")

        parts = [sa.select(label("communications"), comm.c.id.label("k1"), num.label("k2"),
                           comm.c.entity_id.label("ref"), num.label("flag"), comm.c.type.label("ctype"),
                           comm.c.kind.label("ckind"), comm.c.value.label("cvalue"))
                 .where(comm.c.entity_type == et, sqlin.in_(comm.c.entity_id, "members", n_members))]
        for spec in LINKS[et]:
            t = spec.table
            if t is schema.contact_companies:
                # the primary's own rows too: they decide whether a moved row collides
                q = sa.select(label(spec.name), t.c.contact_id.label("k1"), t.c.company_id.label("k2"),
                              t.c[spec.column].label("ref"), sa.cast(t.c.is_primary, sa.Integer).label("flag"),
                              text.label("ctype"), text.label("ckind"), text.label("cvalue")
                              ).where(sqlin.in_(t.c[spec.column], "members", n_members))
            else:  # only rows that move: those of the duplicates
                q = sa.select(label(spec.name), t.c.id.label("k1"), num.label("k2"), t.c[spec.column].label("ref"),
                              num.label("flag"), text.label("ctype"), text.label("ckind"), text.label("cvalue")
                              ).where(sqlin.in_(t.c[spec.column], "dups", n_dups))
                if spec.polymorphic:
                    q = q.where(t.c.entity_type == et)
            parts.append(q)
        self._links[key] = sa.union_all(*parts)
        return self._links[key]

    def add_link_rows(self, rows, comms: dict[int, list], links: dict[str, dict[int, list]]) -> None:
        """Sort the rows of the links query (tuples, or Rows) into communications and link rows."""
        et = self.entity_type
        for tbl, k1, k2, ref, flag, ctype, ckind, cvalue in rows:
            if tbl == "communications":
                comms[ref].append({"id": k1, "entity_type": et, "entity_id": ref, "type": ctype,
                                   "kind": ckind, "value": cvalue})
                continue
            spec = self.specs[tbl]
            if spec.table is schema.contact_companies:
                links[tbl][ref].append({"contact_id": k1, "company_id": k2, "is_primary": bool(flag)})
            else:
                links[tbl][ref].append({"id": k1, spec.column: ref})

    def raw(self, dialect, kind: str, n: int, nd: int = 0) -> Raw:
        """The locked reads of one group (records, links), compiled for ``dialect`` (merge_rules.tx.Raw)."""
        key = (dialect.name, kind, n, nd)
        if key not in self._raw:
            stmt = self.records(n, True) if kind == "records" else self.links(n, nd)
            self._raw[key] = Raw(stmt, dialect)
        return self._raw[key]


_QUERIES: dict[str, _Queries] = {}


def queries(entity_type: str) -> _Queries:
    if entity_type not in schema.ENTITY_TABLES:
        raise ValueError(f"unknown entity type {entity_type!r}; use one of {', '.join(schema.ENTITY_TYPES)}")
    if entity_type not in _QUERIES:
        _QUERIES[entity_type] = _Queries(entity_type)
    return _QUERIES[entity_type]


def read_snapshots(conn: Connection, entity_type: str, groups: Sequence[tuple[int, Sequence[int]]], *,
                   lock: bool = False, with_users: bool = True) -> list[Snapshot]:
    """Snapshots of many groups with two queries per chunk of ids. ``lock``: SELECT ... FOR UPDATE
    on the entity rows (in id order, so concurrent merges cannot deadlock on them)."""
    qs = queries(entity_type)
    all_ids = sorted({int(i) for _p, members in groups for i in members} | {int(p) for p, _m in groups})
    primaries = {int(p) for p, _m in groups}

    records: dict[int, dict[str, Any]] = {}
    comms: dict[int, list[dict[str, Any]]] = defaultdict(list)
    links: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: defaultdict(list) for s in LINKS[entity_type]}
    for ids in _chunks(all_ids):
        n = sqlin.size(ids, conn.dialect.name)
        # .all(): the rows fetched in one call to the driver, not one call per row
        result = conn.execute(qs.records(n, lock), sqlin.params("ids", ids, n))
        names = list(result.keys())
        for row in result.all():
            r = dict(zip(names, row))
            records[r["id"]] = r
        dups = [i for i in ids if i not in primaries]
        nd = sqlin.size(dups, conn.dialect.name)
        qs.add_link_rows(conn.execute(qs.links(n, nd), {**sqlin.params("members", ids, n),
                                                         **sqlin.params("dups", dups, nd)}).all(), comms, links)

    users: dict[int, dict[str, Any]] = {}
    if with_users:
        responsible = sorted({r["responsible_id"] for r in records.values() if r.get("responsible_id") is not None})
        users = read_users(conn, responsible)
    return _assemble(entity_type, groups, records, comms, links, users)


def _assemble(entity_type: str, groups, records, comms, links, users) -> list[Snapshot]:
    by_id = operator.itemgetter("id")
    # (name, rows by entity id, sort key) of each link table; most groups have no links at all
    tables = [(spec.name, links[spec.name], operator.itemgetter(*spec.key_columns)) for spec in LINKS[entity_type]]
    out = []
    for primary, members in groups:
        order = [int(primary)] + [int(m) for m in members if int(m) != int(primary)]
        order = list(dict.fromkeys(order))
        snap = Snapshot(entity_type, int(primary), order)
        snap.records = {i: records[i] for i in order if i in records}
        snap.comms = [r for i in order for r in sorted(comms.get(i, ()), key=by_id)]
        for name, table, key in tables:
            rows = [r for i in order for r in table.get(i, ())] if table else []
            rows.sort(key=key)
            snap.links[name] = rows
        snap.users = {rid: users[rid] for rid in {r.get("responsible_id") for r in snap.records.values()}
                      if rid in users}
        out.append(snap)
    return out


def read_users(conn: Connection, user_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    u = schema.users
    out = {}
    for ids in _chunks(sorted(set(user_ids))):
        for r in conn.execute(sa.select(u.c.id, u.c.name, u.c.role).where(u.c.id.in_(ids))).mappings():
            out[r["id"]] = dict(r)
    return out


def read_snapshot(conn: Connection, entity_type: str, primary_id: int, member_ids: Sequence[int], *,
                  lock: bool = False, with_users: bool = True) -> Snapshot:
    return read_snapshots(conn, entity_type, [(primary_id, member_ids)], lock=lock, with_users=with_users)[0]


def queue_locked_snapshot(ex: Executor, entity_type: str, primary_id: int,
                          member_ids: Sequence[int]) -> Callable[[], Snapshot]:
    """Queue the reads of one group with its entity rows locked (as read_snapshot(lock=True), on the
    driver's cursor: inside ``ex.pipeline()`` on PostgreSQL they go in one round trip). Returns the
    function that builds the Snapshot once the results are in."""
    qs = queries(entity_type)
    primary = int(primary_id)
    ids = sorted({int(i) for i in member_ids} | {primary})
    dups = [i for i in ids if i != primary]
    n, nd = len(ids), len(dups)
    rec_raw = qs.raw(ex.dialect, "records", n)
    recs = ex.run(rec_raw, sqlin.params("ids", ids, n))
    lnk = ex.run(qs.raw(ex.dialect, "links", n, nd), {**sqlin.params("members", ids, n), **sqlin.params("dups", dups, nd)})
    names = [c.key for c in rec_raw.stmt.selected_columns]

    def build() -> Snapshot:
        records = {r["id"]: r for r in (dict(zip(names, row)) for row in recs.rows())}
        comms: dict[int, list[dict[str, Any]]] = defaultdict(list)
        links: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: defaultdict(list) for s in LINKS[entity_type]}
        qs.add_link_rows(lnk.rows(), comms, links)
        return _assemble(entity_type, [(primary, member_ids)], records, comms, links, {})[0]
    return build
