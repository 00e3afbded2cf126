"""Review page benchmark: the groups list with 100,000 pending groups, rendered through the ASGI app.

A SQLite CRM is filled with N pending contact groups (2-3 contacts each, 20 managers, about one group
in ten mixing two managers), each with a real merge plan (merge_rules.plan.plan_groups) and its pairs'
explanations, as a dedup run stores them. The file is kept in bench/work/ and reused while it holds
the same number of groups (--rebuild makes it again). Then, signed in as the admin and as a manager,
the groups list is fetched through FastAPI's TestClient (the whole app: session cookie, queries,
Jinja2 rendering) several times per page: the first page, a middle page (the keyset cursor at group
N/2), the last page, filtered pages (by tier, by manager, by run), and a manager's own first page.

The list's search box (``?q=``, as its form sends it) is timed too: a search reads every record's
names, phones and e-mails with LIKE (review.queries.search_records), then keeps the groups whose
member_ids hold one of the records found (members_any, up to SEARCH_LIMIT records). The searches are
read from the built database (search_terms), not fixed, since the build is random: the admin
searching the most common Cyrillic last name (more records than SEARCH_LIMIT: the capped case), the
rarest Cyrillic "Фамилия Имя" of a record, the most common Latin last name (when the data has Latin
names; the search does not transliterate, so this is Latin text finding Latin names), the phone of
the middle group's primary record typed as people type it ("+7 (916) 123-45-67"), that record's id
("#123"), and a manager searching the most common last name among her own records. Each search page's
result says whether the page showed the "more records than SEARCH_LIMIT" warning (``capped``).

The median, min and max milliseconds per page are appended to bench/results/review_pages.json (one
entry per page: ``page``, ``path``, and for a search ``q`` and ``capped``) with the date, the machine
and its load average (other work on the machine skews the figures).

Each run measures two variants: the schema as it is, and with the index the review page asks for
(PROPOSED_INDEX below: the list's columns in one covering index, so that the counts per tier and the
filters read the index alone instead of 100,000 wide rows, each carrying its plan JSON). The bench
creates that index on its own database file for the second variant and drops it after. Target: under
300 ms per page.

    python -m bench.review_pages                 # 100,000 groups, 7 timed fetches per page
    python -m bench.review_pages --groups 20000 --repeat 5 --no-save
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import re
import sqlite3
import statistics
import time
import warnings
import zlib
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

log = logging.getLogger("bench.review_pages")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "review_pages.json"
WORK = Path(__file__).resolve().parent / "work"
PASSWORD = "bench password 1"
MANAGERS = 20
MANAGER_ID = 7  # the manager signed in (users 2..MANAGERS+1 are managers)
RUN_ID = "20261126T170000-bench"
TARGET_MS = 300.0
# What the review page needs from crm/schema.py (a migration): on SQLite every column the list filters
# and counts on; PostgreSQL keeps big JSON out of line (TOAST), and takes responsible_ids as INCLUDE.
PROPOSED_INDEX = ("CREATE INDEX IF NOT EXISTS ix_dedup_groups_review ON dedup_groups "
                  "(entity_type, status, score, tier, run_id, responsible_ids)")

_LAST = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Smith", "Johnson", "Brown"]
_FIRST = ["Александр", "Сергей", "Иван", "Наталья", "Елена", "Ольга", "John", "Mary", "James", None]
_POST = ["Директор", "Менеджер", "Manager", "Engineer", None]


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "memory_gb": round(mem / 2**30, 1) if mem else None,
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def set_index(db_path: Path, present: bool) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(PROPOSED_INDEX if present else "DROP INDEX IF EXISTS ix_dedup_groups_review")
        conn.execute("ANALYZE")


def append_results(entries: list[dict], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
    path.write_text(json.dumps(old + entries, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# data

def _tier(score: float) -> str:
    return "certain" if score >= 0.95 else "probable" if score >= 0.8 else "possible"


def build(db_path: Path, n_groups: int, seed: int = 1) -> dict:
    """A fresh SQLite CRM with ``n_groups`` pending contact groups and their records and plans."""
    from crm import proposals, schema
    from crm.store import Store
    from merge_rules.plan import plan_groups
    from merge_rules.settings import MergeSettings
    from review.auth import hash_password

    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = Store(f"sqlite:///{db_path}")
    store.migrate()
    rng = random.Random(seed)
    digest = hash_password(PASSWORD)
    users = [dict(id=1, name="Админ", email="admin@bench", role="admin", password_hash=digest)] + [
        dict(id=i, name=f"Менеджер {i}", email=f"m{i}@bench", phone=f"+7 900 000-00-{i:02d}", role="manager",
             password_hash=digest) for i in range(2, MANAGERS + 2)]
    store.insert(schema.users, users)
    base = dt.datetime(2020, 1, 1)
    contacts, comms, groups = [], [], []
    next_id = 1
    for _g in range(n_groups):
        owner = rng.randint(2, MANAGERS + 1)
        members = []
        for _ in range(rng.choice((2, 2, 3))):
            resp = owner if rng.random() < 0.95 else rng.randint(2, MANAGERS + 1)
            created = base + dt.timedelta(seconds=rng.randrange(4 * 365 * 86400))
            contacts.append(dict(id=next_id, last_name=rng.choice(_LAST), first_name=rng.choice(_FIRST),
                                 middle_name=None, post=rng.choice(_POST), responsible_id=resp,
                                 created_at=created, modified_at=created, deleted_at=None))
            comms.append(dict(id=next_id, entity_type="contact", entity_id=next_id, type="phone", kind="mobile",
                              value=f"+7 9{rng.randrange(10**8, 10**9)}"))
            members.append(next_id)
            next_id += 1
        groups.append(members)
    store.insert(schema.contacts, contacts, batch_size=20_000)
    store.insert(schema.communications, comms, batch_size=20_000)
    t_records = time.perf_counter() - t0
    log.info("%s contacts in %.1f s", f"{len(contacts):,}", t_records)

    proposals.start_run(store, RUN_ID, ["contact"], str(WORK / RUN_ID))
    settings = MergeSettings.load()
    owners = {c["id"]: c["responsible_id"] for c in contacts}
    rows = []
    chunk = 5000
    for start in range(0, n_groups, chunk):
        part = groups[start:start + chunk]
        plans = plan_groups(store, "contact", [(m[0], m) for m in part], settings)
        for members, plan in zip(part, plans):
            score = round(min(0.9999, 0.5 + rng.random() ** 0.5 / 2), 4)  # skewed to certain; many ties
            gid = f"contact-{members[0]}-{zlib.crc32(','.join(map(str, sorted(members))).encode()) & 0xFFFFFF:06x}"
            pairs = [{"id_a": a, "id_b": b, "probability": score, "tier": _tier(score), "criteria": "phone,name",
                      "explanation": "same phone (+11.8); same full name (+6.2). Against: different post (-1.4)",
                      "contributions": json.dumps({"prior": -9.97, "phone": 11.8, "name": 6.2, "email": 0.0,
                                                   "post": -1.4})}
                     for i, a in enumerate(members) for b in members[i + 1:]]
            plan.group_id = gid
            rows.append({"id": gid, "entity_type": "contact", "tier": _tier(score), "score": score,
                         "primary_id": members[0], "member_ids": members,
                         "responsible_ids": sorted({owners[m] for m in members}),
                         "primary_reason": "more linked deals", "criteria": f"{len(pairs)} matches by phone",
                         "plan": plan.to_dict(), "pairs": pairs})
    t_plans = time.perf_counter() - t0 - t_records
    counts = proposals.replace_pending(store, RUN_ID, ["contact"], rows)
    proposals.finish_run(store, RUN_ID, "completed", {"groups": len(rows)})
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    store.dispose()
    total = time.perf_counter() - t0
    log.info("%s groups stored (plans %.1f s), database %.0f MB, built in %.1f s", f"{counts['inserted']:,}",
             t_plans, db_path.stat().st_size / 2**20, total)
    return {"contacts": len(contacts), "groups": counts["inserted"], "build_s": round(total, 1),
            "db_mb": round(db_path.stat().st_size / 2**20, 1)}


def pending_groups(db_url: str) -> int:
    from crm import schema

    eng = sa.create_engine(db_url)
    try:
        with eng.connect() as conn:
            g = schema.dedup_groups
            return conn.execute(sa.select(sa.func.count()).select_from(g).where(
                g.c.entity_type == "contact", g.c.status == "pending")).scalar_one()
    except sa.exc.SQLAlchemyError:
        return -1
    finally:
        eng.dispose()


# ---------------------------------------------------------------------------------------------
# timing

def _signed_in(app, email: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/signin").text).group(1)
    r = c.post("/signin", data={"email": email, "password": PASSWORD, "csrf_token": token})
    if r.status_code != 303:
        raise RuntimeError(f"cannot sign in as {email}: HTTP {r.status_code}")
    return c


def middle_cursor(db_url: str, n: int) -> str:
    """The keyset cursor of the page that starts at group n/2 (what Next links lead to)."""
    from crm import schema
    from review.queries import encode_cursor

    g = schema.dedup_groups
    eng = sa.create_engine(db_url)
    with eng.connect() as conn:
        score, gid = conn.execute(sa.select(g.c.score, g.c.id).where(g.c.entity_type == "contact",
                                                                      g.c.status == "pending")
                                  .order_by(g.c.score.desc(), g.c.id).offset(n // 2 - 1).limit(1)).one()
    eng.dispose()
    return encode_cursor(score, gid)


_CYRILLIC = re.compile(r"[А-Яа-яЁё][А-Яа-яЁё' -]*")
_LATIN = re.compile(r"[A-Za-z][A-Za-z' -]*")


def typed_phone(value: str) -> str:
    """A stored phone as people type it into the search box: a Russian number (11 digits starting with
    7 or 8, or 10 digits) as "+7 (916) 123-45-67", any other in groups of three digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    if len(digits) == 10:
        return f"+7 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"
    if not digits:
        raise ValueError(f"phone {value!r} has no digits")
    return " ".join(digits[i:i + 3] for i in range(0, len(digits), 3))


def search_terms(db_url: str, n: int, manager_id: int) -> dict[str, str]:
    """What to type into the list's search box, read from the database (the build is random): the most
    common Cyrillic last name ("surname"), the rarest Cyrillic "Фамилия Имя" ("full_name"), the most
    common Latin last name ("latin"), the phone ("phone", as typed) and id ("id", "#123") of the
    primary record of the group at position n/2 of the list, and the most common Cyrillic last name
    among ``manager_id``'s own records ("own_surname"). A kind the data has nothing for is left out."""
    from crm import schema

    c, comm, g = schema.contacts, schema.communications, schema.dedup_groups
    live = [c.c.deleted_at.is_(None), c.c.last_name.is_not(None)]
    count = sa.func.count().label("n")
    eng = sa.create_engine(db_url)
    try:
        with eng.connect() as conn:
            surnames = conn.execute(sa.select(c.c.last_name, count).where(*live).group_by(c.c.last_name)
                                    .order_by(count.desc(), c.c.last_name)).all()
            own = conn.execute(sa.select(c.c.last_name, count).where(*live, c.c.responsible_id == manager_id)
                               .group_by(c.c.last_name).order_by(count.desc(), c.c.last_name)).all()
            full = conn.execute(sa.select(c.c.last_name, c.c.first_name, count)
                                .where(*live, c.c.first_name.is_not(None))
                                .group_by(c.c.last_name, c.c.first_name)
                                .order_by(count, c.c.last_name, c.c.first_name)).all()
            primary = conn.execute(sa.select(g.c.primary_id).where(g.c.entity_type == "contact",
                                                                  g.c.status == "pending")
                                   .order_by(g.c.score.desc(), g.c.id).offset(max(0, n // 2 - 1)).limit(1)
                                   ).scalar_one_or_none()
            phone = None if primary is None else conn.execute(
                sa.select(comm.c.value).where(comm.c.entity_type == "contact", comm.c.entity_id == primary,
                                              comm.c.type == "phone").order_by(comm.c.id).limit(1)).scalar()
    finally:
        eng.dispose()
    terms = {
        "surname": next((name for name, _ in surnames if _CYRILLIC.fullmatch(name)), None),
        "full_name": next((f"{last} {first}" for last, first, _ in full
                           if _CYRILLIC.fullmatch(last) and _CYRILLIC.fullmatch(first)), None),
        "latin": next((name for name, _ in surnames if _LATIN.fullmatch(name)), None),
        "phone": typed_phone(phone) if phone else None,
        "id": f"#{primary}" if primary is not None else None,
        "own_surname": next((name for name, _ in own if _CYRILLIC.fullmatch(name)), None),
    }
    missing = [k for k, v in terms.items() if v is None]
    if missing:
        log.warning("no search of these kinds in the data, not timed: %s", ", ".join(missing))
    return {k: v for k, v in terms.items() if v is not None}


def time_pages(db_url: str, n: int, repeat: int) -> list[dict]:
    from review.app import create_app

    app = create_app(db_url, "bench-secret")
    admin = _signed_in(app, "admin@bench")
    manager = _signed_in(app, f"m{MANAGER_ID}@bench")
    cursor = middle_cursor(db_url, n)
    pages = [
        ("first page", admin, "/groups/contact"),
        ("middle page", admin, f"/groups/contact?after={cursor}&page={n // 100}"),
        ("last page", admin, "/groups/contact?last=1"),
        ("filtered: tier=possible", admin, "/groups/contact?tier=possible"),
        ("filtered: manager=7", admin, "/groups/contact?manager=7"),
        ("filtered: run + tier=probable", admin, f"/groups/contact?run={RUN_ID}&tier=probable"),
        ("manager's own first page", manager, "/groups/contact"),
        ("manager's middle page", manager, f"/groups/contact?after={cursor}"),
    ]
    terms = search_terms(db_url, n, MANAGER_ID)
    searches = [("search: common surname", admin, "surname"), ("search: full name", admin, "full_name"),
                ("search: Latin surname", admin, "latin"), ("search: phone as typed", admin, "phone"),
                ("search: record id", admin, "id"), ("manager's search: own surname", manager, "own_surname")]
    # (the form's GET: the text url-encoded in q, spaces as "+")
    pages += [(name, client, "/groups/contact?" + urlencode({"q": terms[kind]}), terms[kind])
              for name, client, kind in searches if kind in terms]
    out = []
    for name, client, path, *search in pages:
        first = client.get(path)  # warm: the page's rows in SQLite's cache, templates compiled
        if first.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {first.status_code} for {path}")
        rows = first.text.count('class="group-row"')
        ms = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = client.get(path)
            ms.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        med = statistics.median(ms)
        log.info("%-32s %6.1f ms median (min %.1f, max %.1f), %d rows", name, med, min(ms), max(ms), rows)
        entry = {"page": name, "path": path.split("?after=")[0] + ("?after=<middle>" if "after=" in path else ""),
                 "rows": rows, "median_ms": round(med, 1), "min_ms": round(min(ms), 1),
                 "max_ms": round(max(ms), 1), "under_target": med < TARGET_MS}
        if search:  # (the path readable; q as typed; capped: the page said more records than SEARCH_LIMIT match)
            entry.update(path="/groups/contact?q=<q>", q=search[0], capped='id="search-too-many"' in first.text)
        out.append(entry)
    app.state.store.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=100_000, help="pending groups to fill the list with")
    p.add_argument("--repeat", type=int, default=7, help="timed fetches per page (after one warm-up)")
    p.add_argument("--db", type=Path, default=None, help="SQLite file (default: bench/work/review_pages_N.db)")
    p.add_argument("--rebuild", action="store_true", help="build the database again even if it exists")
    p.add_argument("--variant", choices=["both", "as-is", "index"], default="both",
                   help="measure the schema as is, with the proposed index, or both")
    p.add_argument("--no-save", action="store_true", help="print the results, do not append them to the file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("merge_rules").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    db = a.db or WORK / f"review_pages_{a.groups}.db"
    url = f"sqlite:///{db}"
    built = None
    if a.rebuild or not db.exists() or pending_groups(url) != a.groups:
        built = build(db, a.groups)
    else:
        log.info("reusing %s (%s pending groups)", db, f"{a.groups:,}")
    entries = []
    for variant, with_index in (("schema as is", False), ("with the proposed index", True)):
        if a.variant not in ("both", "as-is" if not with_index else "index"):
            continue
        set_index(db, with_index)
        log.info("-- %s", variant)
        pages = time_pages(url, a.groups, a.repeat)
        entries.append({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "bench": "review_pages",
                        "variant": variant, "index": PROPOSED_INDEX if with_index else None, "backend": "sqlite",
                        "groups": a.groups, "repeat": a.repeat, "target_ms": TARGET_MS, "build": built,
                        "db_mb": round(db.stat().st_size / 2**20, 1), "pages": pages, "machine": machine()})
    set_index(db, False)
    for e in entries:
        worst = max(e["pages"], key=lambda x: x["median_ms"])
        print(f"{e['variant']}: {a.groups:,} pending groups; slowest page: {worst['page']} {worst['median_ms']} ms "
              f"median (target {TARGET_MS:.0f} ms): {'OK' if worst['under_target'] else 'TOO SLOW'}")
    if not a.no_save:
        append_results(entries)
        print(f"appended the results to {RESULTS}")


if __name__ == "__main__":
    main()
