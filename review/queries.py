"""What the review pages read: one page of groups, their counts, one group, records, users.

Everything is SQLAlchemy Core with bound parameters. The groups list is built for 100,000 pending
groups: it walks the ix_dedup_groups_list index (entity_type, status, score) with a keyset cursor
(score, id), reads names for just the page's records, and counts with one GROUP BY tier (plus one
count of the groups before a page, so that its label names the rows it shows).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from crm import schema
from merge_rules.codec import decode_row
from merge_rules.snapshot import LINKS

log = logging.getLogger(__name__)

PAGE_SIZE = 50
TIERS = ("certain", "probable", "possible")
STATUSES = ("pending", "approved", "applied", "skipped", "stale")
# the lists the groups page offers; "lead_clients" is read from the latest run's lead_clients.parquet
LISTS = {"contact": "Contacts", "company": "Companies", "lead": "Leads",
         "lead_clients": "Leads matching clients"}
CHUNK = 2000  # ids per IN (...) list


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message names it."""


# Every id and number the pages take from a URL or form ends up compared with an Integer column:
# 32 bits on PostgreSQL, 64 on SQLite. A larger one made the database raise (OverflowError,
# "integer out of range"): a bare 500. So each is checked here, the one place, before any query.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def check_int(value: int | None) -> int | None:
    """``value`` when the database's integer columns can hold it (None passes); else ValueError."""
    if value is not None and not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{value} is out of range: ids and numbers here go from {INT_MIN} to {INT_MAX}")
    return value


def parse_int(raw: str | None, name: str, what: str = "a number") -> int | None:
    """A query or form value as an int (None when empty); BadRequest naming ``name`` when it is not
    ``what`` or is out of range."""
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be {what}, not {raw!r}") from None
    try:
        return check_int(value)
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


# -- who sees what ----------------------------------------------------------------------------

def is_admin(user: dict) -> bool:
    return user["role"] == "admin"


def responsible_contains(conn: Connection, column, user_id: int):
    """SQL: the JSON list in ``column`` holds ``user_id`` (bound), on SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return sa.cast(column, postgresql.JSONB).contains(
            sa.func.jsonb_build_array(sa.bindparam(None, user_id, type_=sa.Integer)))
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == user_id))


def can_see_group(user: dict, group: dict) -> bool:
    return is_admin(user) or user["id"] in (group.get("responsible_ids") or [])


def may_see_record(user: dict, row: dict | None) -> bool:
    """An admin sees every record; a manager those they are responsible for."""
    return is_admin(user) or (row is not None and row.get("responsible_id") == user["id"])


# -- the groups list --------------------------------------------------------------------------

@dataclass
class Filters:
    entity: str
    tier: str | None = None
    manager: int | None = None
    run: str | None = None
    status: str | None = "pending"  # None: every status
    q: str | None = None  # a search: a record id (1234, #1234), or text in the records (search_records)
    # the records the search matched, read once per request (search_records); None: not read yet
    matched: list[int] | None = field(default=None, compare=False, repr=False)
    too_many: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def parse(cls, entity: str, tier: str | None, manager: str | None, run: str | None,
              status: str | None, q: str | None = None) -> "Filters":
        if entity not in LISTS:
            raise BadRequest(f"unknown list {entity!r}; use one of {', '.join(LISTS)}")
        if tier in ("", "all"):
            tier = None
        if tier is not None and tier not in TIERS:
            raise BadRequest(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
        if status in (None, ""):
            status = "pending"
        if status == "all":
            status = None
        if status is not None and status not in STATUSES:
            raise BadRequest(f"unknown status {status!r}; use one of {', '.join(STATUSES)} or all")
        mid = parse_int(manager, "manager", "a user id")
        q = " ".join((q or "").split())[:SEARCH_MAX] or None
        if q is not None and q.startswith("#") and ID_SEARCH.fullmatch(q):
            parse_int(q[1:], "q", "a record id")  # (range-checked: a 400 naming it)
        return cls(entity, tier, mid, run or None, status, q)

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (for links), with some changed."""
        d = {"tier": self.tier, "manager": self.manager, "run": self.run,
             "status": self.status if self.status is not None else "all", "q": self.q}
        d.update(changes)
        return {k: str(v) for k, v in d.items() if v not in (None, "")}


def encode_cursor(score: float, group_id: str) -> str:
    raw = json.dumps([float(score), str(group_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        score, gid = json.loads(raw)
        return float(score), str(gid)
    except (ValueError, TypeError) as exc:
        raise BadRequest("the page link is damaged (bad cursor); start from the first page") from exc


def _group_where(conn: Connection, f: Filters, user: dict, *, with_tier: bool = True) -> list:
    g = schema.dedup_groups
    where = [g.c.entity_type == f.entity]
    if f.status is not None:
        where.append(g.c.status == f.status)
    if with_tier and f.tier is not None:
        where.append(g.c.tier == f.tier)
    if f.run is not None:
        where.append(g.c.run_id == f.run)
    if f.manager is not None:
        where.append(responsible_contains(conn, g.c.responsible_ids, f.manager))
    if not is_admin(user) and f.manager != user["id"]:
        where.append(responsible_contains(conn, g.c.responsible_ids, user["id"]))
    if f.q is not None:
        if f.matched is None:
            f.matched, f.too_many = search_records(conn, f.entity, f.q, user)
        where.append(members_any(conn, g.c.member_ids, f.matched))
    return where


# -- searching the lists -----------------------------------------------------------------------

ID_SEARCH = re.compile(r"#?\d+")
SEARCH_MAX = 100  # characters of a search kept
SEARCH_LIMIT = 1000  # records a text search takes (the first by id): more asks for a longer text
PHONE_DIGITS = 6  # a number this long (or longer) is also looked for in phones


def members_any(conn: Connection, column, ids: Sequence[int]):
    """SQL: the JSON list of record ids in ``column`` holds one of ``ids`` (bound), on SQLite and
    PostgreSQL. (Evaluated per group of the rows the other filters leave: there is no index of the
    members; a text search is capped at SEARCH_LIMIT records.)"""
    if not ids:
        return sa.false()
    if conn.dialect.name == "postgresql":
        each = sa.func.jsonb_array_elements_text(sa.cast(column, postgresql.JSONB)).table_valued("value")
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value.in_([str(i) for i in ids])))
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value.in_(list(ids))))


def _variants(text: str) -> list[str]:
    """The text as typed and in the usual cases: SQLite's LIKE and lower() fold only ASCII, so "иванов"
    finds "Иванов" through its capitalised form."""
    return list(dict.fromkeys([text, text.lower(), text.upper(), text.capitalize(), text.title()]))


def _digits(expr):
    """SQL: a phone with its usual separators removed."""
    for ch in (" ", "-", "(", ")", "+", "."):
        expr = sa.func.replace(expr, ch, "")
    return expr


def search_records(conn: Connection, entity: str, q: str, user: dict) -> tuple[list[int], bool]:
    """The records of ``entity`` a list search means, and whether there were more than SEARCH_LIMIT.
    "1234" or "#1234": that record (its id is shown on every page, so any group holding it). Else the
    text in a record's name (full name, company title, lead title) or in one of its phones or e-mails
    (a number of PHONE_DIGITS or more digits also in phones written with separators); a manager's text
    matches only her own records (another's values are not hers to see, nor to find a group by)."""
    table, comm = schema.ENTITY_TABLES[entity], schema.communications
    ids: set[int] = set()
    if ID_SEARCH.fullmatch(q):
        if INT_MIN <= int(q.lstrip("#")) <= INT_MAX:  # (a long number is a phone, not an id)
            ids.add(int(q.lstrip("#")))
        if q.startswith("#") or len(q) < PHONE_DIGITS:
            return sorted(ids), False
    owned = [] if is_admin(user) else [table.c.responsible_id == user["id"]]
    names = [table.c[c] for c in NAME_COLUMNS[entity] if c not in ("last_name", "first_name", "middle_name")]
    if "last_name" in table.c:  # (a person's full name, as the lists show it)
        names.append(sa.func.coalesce(table.c.last_name, "") + " " + sa.func.coalesce(table.c.first_name, "")
                     + " " + sa.func.coalesce(table.c.middle_name, ""))
    texts = _variants(q)
    by_name = sa.select(table.c.id).where(sa.or_(*[n.icontains(t, autoescape=True) for n in names for t in texts]),
                                          *owned)
    in_comms = [comm.c.value.icontains(t, autoescape=True) for t in texts]
    digits = re.sub(r"\D", "", q)
    if len(digits) >= PHONE_DIGITS and not re.search(r"[^\d\s()+.-]", q):
        # the last 10 digits: 8 916... and +7 916... are one number
        in_comms.append(sa.and_(comm.c.type == "phone", _digits(comm.c.value).contains(digits[-10:], autoescape=True)))
    by_comm = sa.select(comm.c.entity_id).where(comm.c.entity_type == entity, comm.c.type.in_(("phone", "email")),
                                                sa.or_(*in_comms))
    if owned:
        by_comm = by_comm.where(comm.c.entity_id.in_(sa.select(table.c.id).where(*owned)))
    found = sa.union(by_name, by_comm).subquery()
    rid = list(found.c)[0]
    rows = conn.execute(sa.select(rid).order_by(rid).limit(SEARCH_LIMIT + 1)).scalars().all()
    ids.update(int(i) for i in rows[:SEARCH_LIMIT])
    return sorted(ids), len(rows) > SEARCH_LIMIT


LIST_COLUMNS = ("id", "entity_type", "run_id", "status", "tier", "score", "primary_id", "member_ids",
                "responsible_ids", "criteria", "primary_reason")


def _before_row(score: float, group_id: str) -> list:
    """SQL: the groups listed before the row (score, id) in the list's order (score desc, id asc)."""
    g = schema.dedup_groups
    return [g.c.score >= score, sa.not_(sa.and_(g.c.score == score, g.c.id >= group_id))]


def _after_row(score: float, group_id: str) -> list:
    """SQL: the groups listed after the row (score, id)."""
    g = schema.dedup_groups
    return [g.c.score <= score, sa.not_(sa.and_(g.c.score == score, g.c.id <= group_id))]


def list_groups(conn: Connection, f: Filters, user: dict, *, after: str | None = None,
                before: str | None = None, last: bool = False, page: int | None = None,
                limit: int = PAGE_SIZE, bounds: tuple[float, float] | None = None,
                position: bool = True) -> dict[str, Any]:
    """One page of groups, most certain first (score descending, then id), and whether there are
    pages before and after it. ``after``/``before`` are cursors of the row next to the page.
    ``last``: the last page, which holds what is left after the full pages (1 to ``limit`` rows), so
    that "Previous" from it steps back over the same pages "Next" walks. ``page``: page N counted from
    the start (an OFFSET walk, for a typed page number; the links use cursors).
    ``bounds``: the lowest and highest score of the filtered groups (from :func:`tier_counts`), so
    that the walk down the score index starts and stops where those groups are.
    ``first`` in the result is the 1-based position of the page's first row in the whole list, so
    the page can be labelled with the rows it really shows (0 when ``position`` is False: not counted)."""
    g = schema.dedup_groups
    cols = [g.c[c] for c in LIST_COLUMNS]
    where = _group_where(conn, f, user)
    if bounds is not None:
        where += [g.c.score >= bounds[0], g.c.score <= bounds[1]]

    def count(*extra) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(g).where(*where, *extra)).scalar())

    backwards = last or before is not None
    size, offset = limit, 0
    if after is not None:
        rest = _after_row(*decode_cursor(after))
    elif before is not None:
        rest = _before_row(*decode_cursor(before))
    else:
        rest = []
    if last:
        total = count()
        size = total - (max(1, -(-total // limit)) - 1) * limit or limit  # the rows after the full pages
    elif page is not None and after is None and before is None:
        offset = (max(1, page) - 1) * limit
    order = [g.c.score.asc(), g.c.id.desc()] if backwards else [g.c.score.desc(), g.c.id.asc()]
    q = sa.select(*cols).where(*where, *rest).order_by(*order).limit(size + 1)
    if offset:
        q = q.offset(offset)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        has_prev, has_next = more, not last
    else:
        has_prev, has_next = after is not None or offset > 0, more
    if not rows or not position:
        first = 0
    elif last:
        first = total - len(rows) + 1
    elif after is None and before is None:
        first = offset + 1
    else:
        first = count(*_before_row(rows[0]["score"], rows[0]["id"])) + 1
    return {"rows": rows, "has_prev": has_prev and bool(rows), "has_next": has_next and bool(rows),
            "first": first, "size": limit,
            "prev": encode_cursor(rows[0]["score"], rows[0]["id"]) if rows else None,
            "next": encode_cursor(rows[-1]["score"], rows[-1]["id"]) if rows else None}


@dataclass
class Counts:
    """Groups per tier under every filter but the tier, with each tier's lowest and highest score."""
    per_tier: dict[str, int]
    low: dict[str, float]
    high: dict[str, float]

    def total(self, tier: str | None = None) -> int:
        return self.per_tier.get(tier, 0) if tier else sum(self.per_tier.values())

    def bounds(self, tier: str | None = None) -> tuple[float, float] | None:
        """The score range holding the groups of ``tier`` (or all): None when there are none."""
        tiers = [tier] if tier else list(self.low)
        lows = [self.low[t] for t in tiers if t in self.low]
        return (min(lows), max(self.high[t] for t in tiers if t in self.high)) if lows else None


def tier_counts(conn: Connection, f: Filters, user: dict) -> Counts:
    """One GROUP BY over the filtered groups: the counts per tier and their score ranges."""
    g = schema.dedup_groups
    q = (sa.select(g.c.tier, sa.func.count(), sa.func.min(g.c.score), sa.func.max(g.c.score))
         .where(*_group_where(conn, f, user, with_tier=False)).group_by(g.c.tier))
    counts = Counts({t: 0 for t in TIERS}, {}, {})
    for tier, n, low, high in conn.execute(q):
        counts.per_tier[tier] = counts.per_tier.get(tier, 0) + int(n)
        counts.low[tier], counts.high[tier] = float(low), float(high)
    return counts


def next_group(conn: Connection, group: dict, user: dict, f: Filters | None = None) -> tuple[str, int] | None:
    """The group after this one in its list, for "leave for later": its id and its 1-based position in
    the list (so that the list's page it is on can be kept), None at the end. The list ``f`` (the filters
    the person came with: tier, manager, run, status, search), else the group's entity and status."""
    f = f or Filters(group["entity_type"], status=group["status"])
    page = list_groups(conn, f, user, after=encode_cursor(group["score"], group["id"]), limit=1)
    return (page["rows"][0]["id"], page["first"]) if page["rows"] else None


def page_of(position: int, size: int = PAGE_SIZE) -> int:
    """The page of the list (of ``size`` rows) holding the row at this 1-based position."""
    return max(1, (position - 1) // size + 1)


# -- records, names, users --------------------------------------------------------------------

def _chunks(ids: Sequence, size: int = CHUNK) -> Iterable[list]:
    ids = list(ids)
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


NAME_COLUMNS = {
    "contact": ("last_name", "first_name", "middle_name"),
    "company": ("title",),
    "lead": ("title", "last_name", "first_name", "middle_name", "company_title"),
}


def display_name(entity: str, row: dict | None) -> str:
    """How a record is named in lists: a person's full name, a company's title, a lead's title."""
    if row is None:
        return ""
    if entity == "company":
        return (row.get("title") or "").strip()
    person = " ".join(p.strip() for p in (row.get("last_name"), row.get("first_name"), row.get("middle_name"))
                      if p and p.strip())
    if entity == "lead":
        title = (row.get("title") or "").strip()
        company = (row.get("company_title") or "").strip()
        return title or person or company
    return person


def record_names(conn: Connection, entity: str, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """id -> {name, responsible_id, deleted} for just these records."""
    table = schema.ENTITY_TABLES[entity]
    cols = [table.c.id, table.c.responsible_id, table.c.deleted_at] + [table.c[c] for c in NAME_COLUMNS[entity]]
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted({int(i) for i in ids})):
        for r in conn.execute(sa.select(*cols).where(table.c.id.in_(chunk))).mappings():
            out[r["id"]] = {"id": r["id"], "name": display_name(entity, dict(r)),
                            "responsible_id": r["responsible_id"], "deleted": r["deleted_at"] is not None}
    return out


def users_by_id(conn: Connection, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """id -> {id, name, email, phone, role, department}; every user when ``ids`` is None."""
    u = schema.users
    cols = [u.c.id, u.c.name, u.c.email, u.c.phone, u.c.role, u.c.department]
    if ids is None:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(*cols).order_by(u.c.name)).mappings()}
    out = {}
    for chunk in _chunks(sorted({int(i) for i in ids if i is not None})):
        out.update({r["id"]: dict(r) for r in conn.execute(sa.select(*cols).where(u.c.id.in_(chunk))).mappings()})
    return out


def load_user(conn: Connection, user_id: int) -> dict[str, Any] | None:
    u = schema.users
    row = conn.execute(sa.select(u.c.id, u.c.name, u.c.email, u.c.role, u.c.password_hash, u.c.signed_out_at)
                       .where(u.c.id == user_id)).mappings().first()
    return dict(row) if row else None


def managers(conn: Connection) -> list[dict[str, Any]]:
    return list(users_by_id(conn).values())


def runs(conn: Connection, limit: int = 30) -> list[dict[str, Any]]:
    r = schema.dedup_runs
    q = sa.select(r.c.id, r.c.started_at, r.c.status, r.c.entity_types, r.c.folder).order_by(
        r.c.started_at.desc()).limit(limit)
    return [dict(x) for x in conn.execute(q).mappings()]


def get_group(conn: Connection, group_id: str) -> dict[str, Any] | None:
    g = schema.dedup_groups
    row = conn.execute(sa.select(g).where(g.c.id == group_id)).mappings().first()
    return dict(row) if row else None


def read_records(conn: Connection, entity: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Whole rows of these records (deleted ones included)."""
    table = schema.ENTITY_TABLES[entity]
    out = {}
    for chunk in _chunks(sorted({int(i) for i in ids})):
        out.update({r["id"]: dict(r) for r in conn.execute(sa.select(table).where(table.c.id.in_(chunk))).mappings()})
    return out


def read_comms(conn: Connection, entity: str, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    comm = schema.communications
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in _chunks(sorted({int(i) for i in ids})):
        q = (sa.select(comm.c.id, comm.c.entity_id, comm.c.type, comm.c.kind, comm.c.value)
             .where(comm.c.entity_type == entity, comm.c.entity_id.in_(chunk)).order_by(comm.c.id))
        for r in conn.execute(q).mappings():
            out[r["entity_id"]].append(dict(r))
    return out


def link_counts(conn: Connection, entity: str, ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Rows linked to each record per table (deals, activities, ...): the record's citation index."""
    out: dict[int, dict[str, int]] = {int(i): {} for i in ids}
    ids = sorted(out)
    for spec in LINKS[entity]:
        t = spec.table
        col = t.c[spec.column]
        q = sa.select(col, sa.func.count()).where(col.in_(ids))
        if spec.polymorphic:
            q = q.where(t.c.entity_type == entity)
        for rid, n in conn.execute(q.group_by(col)):
            out[rid][spec.name] = int(n)
    return out


# -- leads matching existing clients ----------------------------------------------------------

_LEAD_CLIENTS_CACHE: dict[tuple[str, float], pd.DataFrame] = {}


def _lead_clients_path(run: dict) -> Path | None:
    return Path(run["folder"]) / "lead_clients.parquet" if run.get("folder") else None


def lead_clients_frame(run: dict | None) -> tuple[pd.DataFrame | None, str]:
    """The run's lead_clients.parquet (cached while the file is unchanged), and a note when missing.
    (Managers read the note: it names no server path; the page shows admins the run's folder.)"""
    if run is None:
        return None, ("No completed run has matched leads to existing clients yet: run `crm-dedup run` "
                      "with leads first.")
    path = _lead_clients_path(run)
    if path is None:
        return None, f"Run {run['id']} has no folder recorded."
    if not path.exists():
        return None, (f"Run {run['id']} did not match leads to existing clients (it ran for: "
                      f"{run.get('entity_types') or 'nothing'}). Choose another run.")
    key = (str(path.resolve()), path.stat().st_mtime)
    frame = _LEAD_CLIENTS_CACHE.get(key)
    if frame is None:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - a broken file is reported on the page, not a crash
            log.warning("cannot read %s: %s", path, exc)
            return None, f"Run {run['id']}'s leads matching clients cannot be read (the server log says why)."
        frame = frame.sort_values(["probability", "lead_id"], ascending=[False, True], ignore_index=True)
        _LEAD_CLIENTS_CACHE.clear()
        _LEAD_CLIENTS_CACHE[key] = frame
    return frame, ""


def lead_clients_run(conn: Connection, run_id: str | None) -> dict | None:
    """The given run, else the latest completed one that matched leads to clients: a later partial
    run (`crm-dedup run --entity contact`) wrote no lead_clients.parquet and must not blank the page."""
    r = schema.dedup_runs
    if run_id:
        row = conn.execute(sa.select(r).where(r.c.id == run_id)).mappings().first()
        return dict(row) if row else None
    q = (sa.select(r).where(r.c.status == "completed", r.c.entity_types.like("%lead%"))
         .order_by(r.c.started_at.desc()))
    for row in conn.execute(q).mappings():  # newest first; the file tells (match_leads_to_clients may be off)
        path = _lead_clients_path(row)
        if path is not None and path.exists():
            return dict(row)
    return None


def lead_clients_page(conn: Connection, f: Filters, user: dict, page: int, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of lead-client pairs; ``total`` counts the pairs and ``leads`` the leads in them (a lead
    may match several clients)."""
    run = lead_clients_run(conn, f.run)
    frame, note = lead_clients_frame(run)
    empty = {"rows": [], "counts": {t: 0 for t in TIERS}, "total": 0, "leads": 0, "page": 1, "pages": 1,
             "note": note, "run": run}
    if frame is None or frame.empty:
        return {**empty, "note": note or "No lead matches an existing client in this run."}
    # a manager sees the rows where they are responsible for the lead or the client
    required = {u for u in (f.manager, None if is_admin(user) else user["id"]) if u is not None}
    if required:
        frame = _lead_clients_for(conn, frame, required)
    counts = {t: 0 for t in TIERS}
    counts.update({str(k): int(v) for k, v in frame["tier"].value_counts().items()})
    if f.tier:
        frame = frame[frame["tier"] == f.tier]
    total = len(frame)
    leads_total = int(frame["lead_id"].nunique())
    pages = max(1, -(-total // limit))
    page = min(max(1, page), pages)
    part = frame.iloc[(page - 1) * limit: page * limit]
    leads = record_names(conn, "lead", part["lead_id"])
    clients = {c: record_names(conn, c, part.loc[part["client_type"] == c, "client_id"]) for c in ("contact", "company")}
    rows = []
    for r in part.itertuples(index=False):
        lead, client = leads.get(int(r.lead_id)), clients[r.client_type].get(int(r.client_id))
        # the explanation quotes both records' values: a manager reads it only where both are theirs
        both = may_see_record(user, lead) and may_see_record(user, client)
        rows.append({"lead_id": int(r.lead_id), "lead": lead, "client_type": r.client_type,
                     "client_id": int(r.client_id), "client": client,
                     "probability": float(r.probability), "tier": r.tier,
                     "explanation": r.explanation if both else "", "redacted": not both})
    return {"rows": rows, "counts": counts, "total": total, "leads": leads_total, "page": page, "pages": pages,
            "note": "", "run": run}


def _lead_clients_for(conn: Connection, frame: pd.DataFrame, user_ids: set[int]) -> pd.DataFrame:
    """Rows whose lead or client every one of ``user_ids`` is responsible for (either side)."""
    owner: dict[tuple[str, int], Any] = {}
    for entity, ids in (("lead", frame["lead_id"]),
                        ("contact", frame.loc[frame["client_type"] == "contact", "client_id"]),
                        ("company", frame.loc[frame["client_type"] == "company", "client_id"])):
        table = schema.ENTITY_TABLES[entity]
        for chunk in _chunks(sorted({int(i) for i in ids})):
            for rid, resp in conn.execute(sa.select(table.c.id, table.c.responsible_id).where(table.c.id.in_(chunk))):
                owner[(entity, rid)] = resp
    keep = []
    for lead_id, ctype, cid in zip(frame["lead_id"], frame["client_type"], frame["client_id"]):
        sides = {owner.get(("lead", int(lead_id))), owner.get((ctype, int(cid)))}
        keep.append(all(u in sides for u in user_ids))
    return frame[keep]


@dataclass
class GroupPage:
    """Everything the list template needs about one group row."""
    group: dict
    primary: dict | None
    duplicates: list[dict] = field(default_factory=list)
    managers: list[dict] = field(default_factory=list)


def decorate(conn: Connection, entity: str, rows: list[dict]) -> list[GroupPage]:
    """Names of the page's records and their managers, read for just these rows."""
    ids = {int(i) for r in rows for i in (r["member_ids"] or [])} | {int(r["primary_id"]) for r in rows}
    names = record_names(conn, entity, ids) if ids else {}
    users = users_by_id(conn, {u for r in rows for u in (r["responsible_ids"] or [])})
    out = []
    for r in rows:
        pid = int(r["primary_id"])
        missing = {"name": "", "deleted": True, "responsible_id": None}
        primary = {**names.get(pid, missing), "id": pid}
        dups = [{**names.get(int(i), missing), "id": int(i)} for i in r["member_ids"] if int(i) != pid]
        out.append(GroupPage(r, primary, dups, [users[u] for u in r["responsible_ids"] or [] if u in users]))
    return out


# -- "not duplicates" marks --------------------------------------------------------------------

def marks_within(conn: Connection, entity: str, ids: Iterable[int], table: sa.Table = schema.dedup_skips
                 ) -> list[dict[str, Any]]:
    """A person's marks between two of these records: {id_a, id_b, user_id, created_at}, a < b, in the
    order of the ids. ``table``: dedup_skips ("not duplicates") or dedup_together ("the same": a person
    added a record to a group)."""
    wanted = sorted({int(i) for i in ids})
    inside = set(wanted)
    out = []
    for chunk in _chunks(wanted):  # (the unique index on entity_type, id_a serves this)
        q = sa.select(table.c.id_a, table.c.id_b, table.c.user_id, table.c.created_at).where(
            table.c.entity_type == entity, table.c.id_a.in_(chunk))
        out += [dict(r) for r in conn.execute(q).mappings() if r["id_b"] in inside]
    return sorted(out, key=lambda r: (r["id_a"], r["id_b"]))


def marks_of(conn: Connection, entity: str, record_id: int) -> list[dict[str, Any]]:
    """Every "not duplicates" mark of one record: {id_a, id_b, user_id, created_at}, newest first."""
    s = schema.dedup_skips
    q = (sa.select(s.c.id_a, s.c.id_b, s.c.user_id, s.c.created_at)
         .where(s.c.entity_type == entity, sa.or_(s.c.id_a == record_id, s.c.id_b == record_id))
         .order_by(s.c.created_at.desc(), s.c.id.desc()))
    return [dict(r) for r in conn.execute(q).mappings()]


# -- merges -----------------------------------------------------------------------------------

def merge_users(conn: Connection, merge_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """merge id -> {user_id, undone_by, undone_by_name}: what merge_history does not return."""
    m, u = schema.dedup_merges, schema.users
    undoer = u.alias("undoer")
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted({int(i) for i in merge_ids})):
        q = (sa.select(m.c.id, m.c.user_id, m.c.undone_by, undoer.c.name.label("undone_by_name"))
             .select_from(m.outerjoin(undoer, undoer.c.id == m.c.undone_by)).where(m.c.id.in_(chunk)))
        out.update({r["id"]: dict(r) for r in conn.execute(q).mappings()})
    return out


def merge_brief(conn: Connection, merge_id: int) -> dict[str, Any] | None:
    """One merge for the group page: when, who, status, summary, primary and merged ids, its group."""
    m, u = schema.dedup_merges, schema.users
    q = (sa.select(m.c.id, m.c.merged_at, m.c.status, m.c.summary, m.c.undone_at, m.c.user_id, m.c.primary_id,
                   m.c.merged_ids, m.c.group_id, sa.func.coalesce(u.c.name, "system").label("who"))
         .select_from(m.outerjoin(u, u.c.id == m.c.user_id)).where(m.c.id == merge_id))
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def merged_into(conn: Connection, entity: str, record_id: int, deleted_at: Any = None) -> dict[str, Any] | None:
    """The applied merge that took this record into a primary: id, merged_at, who, user_id, primary_id,
    group_id, and the record as the merge found it (``before``) with its communications (``comms``),
    which is all that is left of a record deleted outright. None when no applied merge took it (an
    undone one put it back).

    ``deleted_at``: the record's, when it is soft-deleted. A merge soft-deletes its duplicates at its
    own merged_at (one timestamp), so the merges made at that moment are read first and their
    merged_ids checked here, instead of unpacking the merged_ids of every merge of the entity. Only a
    record deleted outright, or whose deleted_at is not its merge's (deleted by the CRM, rewritten by
    an import since), falls back to that scan. (The first read uses the index on entity_type and
    merged_at, migration 0013; the merged records themselves have none.)"""
    m = schema.dedup_merges
    applied = [m.c.entity_type == entity, m.c.status == "applied"]
    merge_id = None
    if deleted_at is not None:
        q = sa.select(m.c.id, m.c.merged_ids).where(*applied, m.c.merged_at == deleted_at)
        took = [int(i) for i, merged in conn.execute(q) if record_id in {int(x) for x in merged or []}]
        merge_id = max(took, default=None)
    if merge_id is None:
        q = (sa.select(m.c.id).where(*applied, members_any(conn, m.c.merged_ids, [record_id]))
             .order_by(m.c.id.desc()).limit(1))
        merge_id = conn.execute(q).scalar()
        if merge_id is None:
            return None
    u = schema.users
    q = (sa.select(m.c.id, m.c.merged_at, m.c.user_id, m.c.primary_id, m.c.group_id, m.c.before_image,
                   sa.func.coalesce(u.c.name, "system").label("who"))
         .select_from(m.outerjoin(u, u.c.id == m.c.user_id)).where(m.c.id == merge_id))
    out = dict(conn.execute(q).mappings().one())
    image = out.pop("before_image") or {}
    mine = [decode_row(r) for r in image.get(schema.ENTITY_TABLES[entity].name, []) if r.get("id") == record_id]
    out["before"] = mine[0] if mine else None
    out["comms"] = sorted((decode_row(r) for r in image.get("communications", [])
                           if r.get("entity_type") == entity and r.get("entity_id") == record_id),
                          key=lambda c: c["id"])
    return out


def group_merge_since(conn: Connection, group: dict, since: Any) -> dict[str, Any] | None:
    """The merge that took this group (or, for a group still open, the latest merge of part of it
    made at or after ``since``), as merge_brief gives it plus its entity, primary and merged ids;
    None when there is none. Only applied merges count (an undone one put the records back)."""
    m, u = schema.dedup_merges, schema.users
    q = (sa.select(m.c.id, m.c.merged_at, m.c.status, m.c.summary, m.c.user_id, m.c.entity_type, m.c.primary_id,
                   m.c.merged_ids, sa.func.coalesce(u.c.name, "system").label("who"))
         .select_from(m.outerjoin(u, u.c.id == m.c.user_id)).where(m.c.status == "applied"))
    if group.get("merge_id") is not None:
        q = q.where(m.c.id == group["merge_id"])
    elif since is not None:
        q = q.where(m.c.group_id == group["id"], m.c.merged_at >= since).order_by(m.c.id.desc()).limit(1)
    else:
        return None
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def merge_links(conn: Connection, merges: Sequence[dict], user: dict) -> dict[int, dict[str, Any]]:
    """merge id -> where its history row may link, so that the link is never a dead one.

    A run replaces a pending group (an undone merge's, one a manager merged in part) under a new id
    when its members change, keeping the primary. So: {"group": id} the merge's group while it exists
    and the user may see it; else {"moved": id}, a group the user may see that now has the merge's
    primary as its primary; else {"record": True}, the primary's own page; else none of those. Each
    but the first carries "why" (in words) the merge's group is not linked."""
    g = schema.dedup_groups
    cols = (g.c.id, g.c.entity_type, g.c.primary_id, g.c.responsible_ids, g.c.status, g.c.updated_at)
    wanted = [m for m in merges if m.get("group_id")]
    found: dict[str, dict] = {}
    for chunk in _chunks(sorted({m["group_id"] for m in wanted})):
        found.update({r["id"]: dict(r) for r in conn.execute(sa.select(*cols).where(g.c.id.in_(chunk))).mappings()})
    out: dict[int, dict[str, Any]] = {}
    lost: dict[str, list[dict]] = defaultdict(list)
    for m in wanted:
        group = found.get(m["group_id"])
        if group is not None and can_see_group(user, group):
            out[int(m["id"])] = {"group": group["id"]}
        else:
            lost[m["entity_type"]].append(m)
            out[int(m["id"])] = {"why": "not one of yours now" if group is not None
                                 else "no longer exists: a later run replaced it"}
    for entity, ms in lost.items():
        primaries = sorted({int(m["primary_id"]) for m in ms})
        holders: dict[int, list[dict]] = defaultdict(list)
        for chunk in _chunks(primaries):
            q = sa.select(*cols).where(g.c.entity_type == entity, g.c.primary_id.in_(chunk))
            for r in conn.execute(q).mappings():
                if can_see_group(user, r):
                    holders[r["primary_id"]].append(dict(r))
        owners = record_names(conn, entity, primaries)
        for m in ms:
            pid, link = int(m["primary_id"]), out[int(m["id"])]
            # an open group first (that is where the primary's duplicates are now), then the newest
            best = sorted(holders.get(pid, []), key=lambda r: (r["status"] in ("pending", "approved", "stale"),
                                                               r["updated_at"]), reverse=True)
            if best:
                link["moved"] = best[0]["id"]
            elif pid in owners and (is_admin(user) or owners[pid]["responsible_id"] == user["id"]):
                link["record"] = True
    return out
