"""Load benchmark: N contacts with their phones and emails, from SQLite and PostgreSQL into pandas.

For each size the contacts are generated once (crm.demo.generate_contacts_frames when it is
importable, else the simple generator below: 1-2 phones and 0-2 emails per contact), written into a
fresh SQLite file and into a temporary schema of the PostgreSQL ``test`` database, and then loaded by
a fresh Python process per backend that runs ``Store.read_entities('contact')`` and
``Store.read_communications('contact')``. That process's wall time (interpreter start and imports
included) and peak RSS (``ru_maxrss`` from ``wait4`` for exactly that child) are the result; the child
also reports its own breakdown. Write rates are recorded too (``Store.insert``, or psycopg COPY for
PostgreSQL above --copy-above contacts, since executemany is the slow part there).

Results are appended to bench/results/load_store.json (a JSON list, one entry per size and backend).

    python -m bench.load_store --sizes 10000,100000
    python -m bench.load_store --sizes 1000000 --backends postgresql
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("bench.load_store")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "load_store.json"
PG_URL = os.environ.get("CRM_DEDUP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------------------------------------
# data

_LAST = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов",
         "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Smith", "Johnson", "Brown",
         "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker"]
_FIRST = ["Александр", "Сергей", "Дмитрий", "Андрей", "Алексей", "Иван", "Михаил", "Наталья", "Елена",
          "Ольга", "Татьяна", "Анна", "Мария", "John", "William", "James", "Mary", "Elizabeth", "Robert"]
_MIDDLE = ["Александрович", "Сергеевич", "Иванович", "Петрович", "Андреевна", "Сергеевна", "Ивановна", None]
_LATIN = {"Иванов": "ivanov", "Петров": "petrov", "Сидоров": "sidorov", "Смирнов": "smirnov",
          "Кузнецов": "kuznetsov", "Попов": "popov", "Васильев": "vasiliev", "Соколов": "sokolov",
          "Михайлов": "mikhailov", "Новиков": "novikov", "Фёдоров": "fedorov", "Морозов": "morozov",
          "Волков": "volkov", "Алексеев": "alekseev", "Лебедев": "lebedev"}
_POSTS = ["Директор", "Менеджер", "Бухгалтер", "Инженер", "Manager", "Engineer", None]
_DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "example.com", "bk.ru", "inbox.ru"]


def simple_contacts(n: int, seed: int = 42, managers: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n contacts (ids 1..n), each with 1-2 phones and 0-2 emails; vectorised so 1,000,000 takes seconds."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    last = np.array(_LAST, dtype=object)[rng.integers(0, len(_LAST), n)]
    first = np.array(_FIRST, dtype=object)[rng.integers(0, len(_FIRST), n)]
    created = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365 * 86400, n), unit="s")
    contacts = pd.DataFrame({
        "id": ids, "last_name": last, "first_name": first,
        "middle_name": np.array(_MIDDLE, dtype=object)[rng.integers(0, len(_MIDDLE), n)],
        "birthdate": (pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 50 * 365, n), unit="D")).date,
        "post": np.array(_POSTS, dtype=object)[rng.integers(0, len(_POSTS), n)],
        "address": None, "comments": None, "source": "bench", "tax_id": None,
        "responsible_id": rng.integers(1, managers + 1, n),
        "created_at": created, "modified_at": created + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit="s"),
        "deleted_at": None,
    })
    n_phones = rng.integers(1, 3, n)
    owner = np.repeat(ids, n_phones)
    digits = rng.integers(0, 10**7, len(owner))
    phones = pd.DataFrame({"entity_id": owner, "type": "phone",
                           "kind": np.where(rng.random(len(owner)) < 0.6, "mobile", "work"),
                           "value": [f"+7 9{d % 100:02d} {d // 100:05d}" for d in digits]})
    n_emails = rng.integers(0, 3, n)
    owner = np.repeat(ids, n_emails)
    latin = pd.Series(last[owner - 1]).map(lambda s: _LATIN.get(s, s.lower()))
    emails = pd.DataFrame({"entity_id": owner, "type": "email",
                           "kind": np.where(rng.random(len(owner)) < 0.5, "work", "home"),
                           "value": latin + "." + rng.integers(1, 10**6, len(owner)).astype(str) + "@"
                           + np.array(_DOMAINS, dtype=object)[rng.integers(0, len(_DOMAINS), len(owner))]})
    comms = pd.concat([phones, emails], ignore_index=True).sort_values("entity_id", kind="stable")
    return contacts, comms.reset_index(drop=True)


def generate(n: int, which: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(contacts, communications, generator name)."""
    if which in ("auto", "demo"):
        try:
            from crm.demo import generate_contacts_frames

            contacts, comms, _truth = generate_contacts_frames(n)
            return contacts, comms[["entity_id", "type", "kind", "value"]], "crm.demo.generate_contacts_frames"
        except Exception as exc:  # noqa: BLE001 - demo.py missing or broken: say so and use ours
            if which == "demo":
                raise
            log.warning("crm.demo.generate_contacts_frames is not usable (%s: %s); using the simple generator",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    contacts, comms = simple_contacts(n)
    return contacts, comms, "bench.load_store.simple_contacts"


# ---------------------------------------------------------------------------------------------
# writing

def _users_for(contacts: pd.DataFrame) -> list[dict]:
    ids = sorted(int(i) for i in pd.unique(contacts["responsible_id"].dropna()))
    return [{"id": i, "name": f"Manager {i}", "email": f"manager{i}@bench.local", "phone": None,
             "role": "manager", "department": None, "password_hash": None} for i in ids]


def write_store(store, contacts: pd.DataFrame, comms: pd.DataFrame, writer: str) -> dict:
    """Write users, contacts, communications; returns the writer used and its timings."""
    from crm import schema

    store.insert(schema.users, _users_for(contacts))
    cols = [c.name for c in schema.contacts.c]
    contacts = contacts.reindex(columns=cols)
    comms = comms.assign(entity_type="contact")[["entity_type", "entity_id", "type", "kind", "value"]]
    t0 = time.perf_counter()
    if writer == "copy":
        _copy(store, "contacts", contacts)
    else:
        store.insert(schema.contacts, contacts)
    t1 = time.perf_counter()
    if writer == "copy":
        _copy(store, "communications", comms)
    else:
        store.insert(schema.communications, comms)
    t2 = time.perf_counter()
    store.fix_sequences()
    return {"writer": "Store.insert" if writer == "insert" else "psycopg COPY",
            "contacts_s": round(t1 - t0, 3), "contacts_per_s": round(len(contacts) / max(t1 - t0, 1e-9)),
            "communications_s": round(t2 - t1, 3),
            "communications_per_s": round(len(comms) / max(t2 - t1, 1e-9))}


def _copy(store, table: str, frame: pd.DataFrame) -> None:
    """PostgreSQL COPY FROM STDIN through psycopg: an order of magnitude faster than executemany."""
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        cols = ", ".join(frame.columns)
        values = frame.astype(object).where(frame.notna(), None)
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in values.itertuples(index=False, name=None):
                copy.write_row(row)
        conn.commit()
    finally:
        raw.close()


# ---------------------------------------------------------------------------------------------
# loading, in a fresh process

def child(url: str, out: str) -> None:
    """Runs in the measured process: load contacts and communications, write timings to ``out``."""
    t0 = time.perf_counter()
    from crm.store import Store

    t1 = time.perf_counter()
    store = Store(url)
    entities = store.read_entities("contact")
    t2 = time.perf_counter()
    comms = store.read_communications("contact")
    t3 = time.perf_counter()
    Path(out).write_text(json.dumps({
        "import_s": round(t1 - t0, 3), "read_entities_s": round(t2 - t1, 3),
        "read_communications_s": round(t3 - t2, 3), "contacts": len(entities), "communications": len(comms),
        "frames_mb": round((entities.memory_usage(deep=True).sum() + comms.memory_usage(deep=True).sum()) / 2**20, 1),
        "self_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def measure_load(url: str) -> dict:
    """Wall time and peak RSS of a fresh interpreter loading the contacts (wait4 gives that child's rusage)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        args = [sys.executable, "-m", "bench.load_store", "--child", url, "--child-out", out]
        t0 = time.perf_counter()
        pid = os.posix_spawn(sys.executable, args, {**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the load process for {url} failed (exit {os.waitstatus_to_exitcode(status)})")
        inner = json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **inner}


# ---------------------------------------------------------------------------------------------
# backends

class SqliteTarget:
    name = "sqlite"

    def __init__(self, workdir: Path):
        self.path = workdir / f"bench_{uuid.uuid4().hex[:8]}.db"
        self.url = f"sqlite:///{self.path}"

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class PostgresTarget:
    name = "postgresql"

    def __init__(self, admin_url: str):
        import sqlalchemy as sa

        self.admin_url, self.schema = admin_url, f"bench_{uuid.uuid4().hex[:10]}"
        eng = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            self.server = conn.execute(sa.text("SHOW server_version")).scalar()
        eng.dispose()
        self.url = f"{admin_url}?options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        import sqlalchemy as sa

        eng = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        eng.dispose()


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "memory_gb": round(mem / 2**30, 1) if mem else None,
            "python": platform.python_version()}


def versions(pg_server: str | None) -> dict:
    import psycopg
    import sqlalchemy

    return {"pandas": pd.__version__, "numpy": np.__version__, "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__, "sqlite": sqlite3.sqlite_version, "postgresql_server": pg_server}


def append_results(entries: list[dict], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
    path.write_text(json.dumps(old + entries, indent=2, ensure_ascii=False) + "\n")


def run(sizes: list[int], backends: list[str], generator: str, copy_above: int, keep: bool,
        workdir: Path) -> list[dict]:
    from crm.store import Store

    entries = []
    for n in sizes:
        t0 = time.perf_counter()
        contacts, comms, gen_name = generate(n, generator)
        gen_s = time.perf_counter() - t0
        log.info("%s: %d contacts, %d communications generated in %.1f s", gen_name, len(contacts), len(comms), gen_s)
        for backend in backends:
            target = SqliteTarget(workdir) if backend == "sqlite" else PostgresTarget(PG_URL)
            try:
                store = Store(target.url)
                store.migrate()
                writer = "copy" if backend == "postgresql" and n > copy_above else "insert"
                write = write_store(store, contacts, comms, writer)
                store.dispose()
                log.info("%s: wrote with %s: %s contacts/s, %s communications/s", backend, write["writer"],
                         f"{write['contacts_per_s']:,}", f"{write['communications_per_s']:,}")
                load = measure_load(target.url)
                if load["contacts"] != len(contacts) or load["communications"] != len(comms):
                    raise RuntimeError(f"{backend}: loaded {load['contacts']} contacts / {load['communications']} "
                                       f"communications, wrote {len(contacts)} / {len(comms)}")
                log.info("%s: load %s contacts: %.2f s wall, %.0f MB peak RSS", backend, f"{n:,}",
                         load["wall_s"], load["peak_rss_mb"])
                entries.append({
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "bench": "load_store", "size": n, "backend": backend, "generator": gen_name,
                    "generate_s": round(gen_s, 2), "contacts": len(contacts), "communications": len(comms),
                    "write": write, "load": load, "machine": machine(),
                    "versions": versions(getattr(target, "server", None)),
                })
            finally:
                if not keep:
                    target.drop()
    return entries


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated contact counts")
    p.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql or both")
    p.add_argument("--generator", choices=["auto", "demo", "simple"], default="auto",
                   help="auto: crm.demo.generate_contacts_frames if it works, else the simple one")
    p.add_argument("--copy-above", type=int, default=200_000,
                   help="PostgreSQL: write with COPY instead of Store.insert above this many contacts")
    p.add_argument("--workdir", type=Path, default=None, help="where the SQLite files go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases (SQLite file, PostgreSQL schema)")
    p.add_argument("--no-save", action="store_true", help="print the results, do not append them to the file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.child_out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sizes = [int(s.replace("_", "")) for s in a.sizes.split(",") if s.strip()]
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    bad = set(backends) - {"sqlite", "postgresql"}
    if bad:
        p.error(f"unknown backend(s) {', '.join(sorted(bad))}: use sqlite and/or postgresql")
    with tempfile.TemporaryDirectory(prefix="crm_bench_") as tmp:
        entries = run(sizes, backends, a.generator, a.copy_above, a.keep, a.workdir or Path(tmp))
    for e in entries:
        print(f"{e['backend']:<10} {e['size']:>9,} contacts {e['communications']:>9,} comms | write "
              f"{e['write']['writer']:<12} {e['write']['contacts_per_s']:>8,}/s {e['write']['communications_per_s']:>8,}/s"
              f" | load {e['load']['wall_s']:>7.2f} s  peak {e['load']['peak_rss_mb']:>7.0f} MB")
    if not a.no_save:
        append_results(entries)
        print(f"appended {len(entries)} results to {RESULTS}")


if __name__ == "__main__":
    main()
