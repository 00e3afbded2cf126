"""Dedup runs and the groups they propose, as stored in the CRM database.

A group moves pending -> approved -> applied, or to skipped; "stale" when its records changed
under the plan. A new run replaces the pending proposals of its entity types in one transaction
and never touches approved, applied, skipped or stale ones (nor proposes their records again while
an approved group holding them waits for its merge). One dedup run at a time: a run's row
records where it runs, and a new one closes the runs whose process is gone or refuses (start_run).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import psutil
import sqlalchemy as sa

from crm import schema, sqlin
from crm.store import Store

log = logging.getLogger(__name__)

STATUSES = ("pending", "approved", "applied", "skipped", "stale")
# A run of another host cannot be checked from here: unfinished this long after its start, it is taken
# as abandoned (the longest runs, a million contacts, take a few hours)
ABANDONED_AFTER = dt.timedelta(hours=24)
_UNRECORDED_ENDS: dict[str, str] = {}  # runs this process ended whose end the database failed to take: status


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class RunStillRunning(RuntimeError):
    """Another dedup run is running on the database: a second one at once would replace its pending
    groups when it stores its own."""


def start_run(store: Store, run_id: str, entity_types: Iterable[str], folder: str, *,
              exclusive: bool = False) -> None:
    """Record run ``run_id`` as running, with where it runs (this process: its summary's "process"
    until it finishes). ``exclusive`` (a dedup run, steps.new_run): in the same transaction the runs
    left running by a process that is gone are closed first (settle_runs), and one still running
    makes this one refuse (RunStillRunning) instead."""
    row = {"id": run_id, "started_at": now(), "status": "running", "entity_types": ",".join(entity_types),
           "folder": folder, "summary": {"process": this_process()}}
    with store.engine.connect() as conn, _runs_locked(conn):
        others = settle_runs(conn) if exclusive else []
        if not others:
            conn.execute(schema.dedup_runs.insert().values(**row))
    if others:  # (the runs closed meanwhile stay closed)
        raise _still_running(others[0])


def refuse_if_running(store: Store) -> None:
    """Before a command starts a dedup run: close the runs that ended without finishing, and refuse
    (RunStillRunning, saying which and what to do) while one still runs. start_run checks again."""
    running = close_ended_runs(store)
    if running:
        raise _still_running(running[0])


def _still_running(run: dict) -> RunStillRunning:
    alive, close = _ended(run)[1], ""
    if "cannot be checked" in alive:  # (another machine's, or a row from before runs said where)
        close = f" If it is not running, `crm-dedup runs --close {run['id']}` closes it."
    return RunStillRunning(f"run {run['id']} is still running on this database ({_where(run)}): {alive}. A "
                           "second run at once would replace its pending groups when it stores its own: wait for "
                           f"it, or stop it.{close}")


def this_process() -> dict:
    """Where the calling process runs, as a run's row records it: host, pid and the process's start,
    as a time to read and in seconds since the host booted to compare (a pid taken later by another
    process has a later start; unlike the time, it does not move when the clock is set)."""
    process = psutil.Process()
    created = process.create_time()
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": dt.datetime.fromtimestamp(created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "since_boot": round(created - psutil.boot_time(), 2)}


def settle_runs(conn: sa.Connection) -> list[dict]:
    """Close the runs left "running" that nothing will finish, in the caller's transaction (taken with
    _runs_locked); returns those still running, the oldest first. The rule is _ended's. A run closed
    is marked failed, with why, and leaves none of the plans it staged."""
    r = schema.dedup_runs
    rows = conn.execute(sa.select(r).where(r.c.status == "running").order_by(r.c.started_at, r.c.id)).all()
    still = []
    for run in (dict(row._mapping) for row in rows):
        ended, why = _ended(run)
        if not ended:
            still.append(run)
            continue
        error = f"{why} ({_where(run)})"
        log.warning("run %s: %s; marked failed", run["id"], error)
        process = _process_of(run)
        summary = {"error": error, **({"process": process} if process else {})}
        conn.execute(r.update().where(r.c.id == run["id"], r.c.status == "running").values(
            finished_at=now(), status="failed", summary=summary))
        _drop_staged(conn, run["id"])
    return still


def close_run(store: Store, run_id: str, who: str) -> str:
    """A person closes a run left "running" that cannot be checked from here (another machine's, or one
    recorded before runs said where they run): marked failed, its staged plans dropped. Refused
    (RunStillRunning) when its process runs on this host; ValueError when there is no such running run.
    Returns why it was closed, as recorded."""
    r = schema.dedup_runs
    with store.engine.connect() as conn, _runs_locked(conn):
        row = conn.execute(sa.select(r).where(r.c.id == run_id)).first()
        if row is None or row.status != "running":
            raise ValueError(f"there is no run {run_id!r} running" + (f" (it is {row.status})" if row else "")
                             + " (`crm-dedup runs` lists them)")
        run = dict(row._mapping)
        process = _process_of(run)
        if process and process.get("host") == socket.gethostname() and _alive(process):
            raise RunStillRunning(f"run {run_id} is still running ({_where(run)}): stop its process first")
        error = f"closed by {who} as not running ({_where(run)})"
        conn.execute(r.update().where(r.c.id == run_id, r.c.status == "running").values(
            finished_at=now(), status="failed", summary={"error": error, **({"process": process} if process else {})}))
        _drop_staged(conn, run_id)
    log.warning("run %s: %s; marked failed", run_id, error)
    return error


def close_ended_runs(store: Store) -> list[dict]:
    """settle_runs in a transaction of its own; returns the runs still running. The write lock is taken
    only when there is a run to close: a listing does not wait for a run storing its proposals."""
    r = schema.dedup_runs
    with store.engine.connect() as conn:
        running = [dict(row._mapping) for row in conn.execute(sa.select(r).where(r.c.status == "running"))]
    if not any(_ended(run)[0] for run in running):
        return running
    with store.engine.connect() as conn, _runs_locked(conn):
        return settle_runs(conn)


def _ended(run: dict) -> tuple[bool, str]:
    """Whether a run recorded as running has ended without finishing, and why (or why it may still run).

    On this host, its process is looked up: gone (or its pid taken by a process started at another
    time): ended, killed or crashed. A run of another host cannot be checked from here (nor one whose
    row does not say where it runs, from before this was recorded): it counts as running until
    ABANDONED_AFTER after its start, then as abandoned. A run this process ended while the database
    failed to record it (finish_run) has ended too, whatever its row says."""
    if run["id"] in _UNRECORDED_ENDS:
        status = _UNRECORDED_ENDS[run["id"]]
        return True, f"its process ended it ({status}) but could not record that: the database failed"
    here = socket.gethostname()
    process = _process_of(run)
    if process and process.get("host") == here:
        alive = _alive(process)
        if alive is False:
            return True, "its process ended without finishing: killed or crashed"
        if alive:
            return False, "its process is alive"
    hours = f"{ABANDONED_AFTER.total_seconds() / 3600:g}"
    if run["started_at"] <= now() - ABANDONED_AFTER:
        return True, f"abandoned: not finished {hours} hours after its start, its process cannot be checked from {here}"
    return False, (f"its process cannot be checked from {here}, and it started less than {hours} hours ago "
                   f"(a run is taken as abandoned {hours} hours after its start)")


def _alive(process: dict) -> bool | None:
    """Whether the process a run's row names (on this host) still runs: its pid is taken, not by a
    process that ended (zombie) nor by one started at another time. None: it cannot be told."""
    try:
        found = psutil.Process(int(process["pid"]))
        if found.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(found.create_time() - psutil.boot_time() - float(process["since_boot"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, KeyError, TypeError, ValueError):  # another user's process; a record not ours
        return None


def _process_of(run: dict) -> dict | None:
    summary = run.get("summary")
    process = summary.get("process") if isinstance(summary, dict) else None
    return process if isinstance(process, dict) else None


def _where(run: dict) -> str:
    process = _process_of(run)
    if not process:
        return f"started {run['started_at']:%Y-%m-%d %H:%M:%S} UTC, where not recorded"
    return f"pid {process.get('pid')} on host {process.get('host')}, process started {process.get('started')}"


@contextmanager
def _runs_locked(conn: sa.Connection) -> Iterator[sa.Connection]:
    """A transaction in which no other process starts or closes a run (so two runs starting at once do
    not both find none running): SQLite's write lock taken at its start (BEGIN IMMEDIATE); PostgreSQL's
    dedup_runs locked against other writers, readers go on (and so do the foreign key checks of the
    groups and plans a run stores)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        table = conn.dialect.identifier_preparer.format_table(schema.dedup_runs)
        conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def finish_run(store: Store, run_id: str, status: str, summary: dict | None = None) -> None:
    """Record how a run ended; one that did not complete leaves none of the plans it staged."""
    try:
        with store.engine.begin() as conn:
            conn.execute(schema.dedup_runs.update().where(schema.dedup_runs.c.id == run_id).values(
                finished_at=now(), status=status, summary=json.loads(json.dumps(summary or {}, default=str))))
            if status != "completed":
                _drop_staged(conn, run_id)
    except BaseException:
        _UNRECORDED_ENDS[run_id] = status  # (this process knows the run is over: see _ended)
        raise
    _UNRECORDED_ENDS.pop(run_id, None)


def completed_runs(store: Store) -> list[dict]:
    """Every completed run, the newest first."""
    r = schema.dedup_runs
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(r).where(r.c.status == "completed").order_by(r.c.started_at.desc())).all()
    return [dict(row._mapping) for row in rows]


def list_runs(store: Store, limit: int | None = None) -> tuple[list[dict], int]:
    """Runs of every status (running, completed, failed...), the newest first, at most ``limit``; and
    how many there are in all. Runs left "running" that nothing will finish are closed first, by
    the rule a new run applies (close_ended_runs), and so listed as failed."""
    close_ended_runs(store)
    r = schema.dedup_runs
    q = sa.select(r).order_by(r.c.started_at.desc(), r.c.id.desc())
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(r)).scalar_one()
        rows = conn.execute(q.limit(limit) if limit else q).all()
    return [dict(row._mapping) for row in rows], total


def latest_run(store: Store, status: str = "completed") -> dict | None:
    r = schema.dedup_runs
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(r).where(r.c.status == status).order_by(r.c.started_at.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def replace_pending(store: Store, run_id: str, entity_types: Iterable[str], groups: Iterable[dict[str, Any]]) -> dict:
    """Swap the pending groups of ``entity_types`` for ``groups`` in one transaction.

    A group's ``member_ids``, ``responsible_ids``, ``pairs`` and ``plan`` are values or their JSON
    text (a run's pairs go in as text, encoded once). A group without a ``plan`` key takes the plan
    staged for it under ``run_id`` (stage_plans); one with neither is refused. A proposed group
    whose id already exists with another status (approved, applied, skipped, stale) is left as it
    is, with its plan. A proposed group holding a record of an APPROVED group of its entity type
    (under another id: the approved group grew by a new record, or by one a person added with
    `include`) is not stored either: the approved group is merged first, then a run proposes what is
    left (its primary and the new records); withdrawn (pending again), it is replaced as pending
    groups are. Any shared record holds a group back, whether it holds all the approved group's
    records or some (a partial overlap: the two plans would merge a record twice). The records are
    the run's, so live ones. Plans no group uses any more (those of the groups removed, staged ones
    of groups kept or held back) go too. Returns counts: removed, inserted, kept, waiting (held
    back), same_as_before (of those inserted, how many replace a removed pending group of the same
    id: the same primary and members)."""
    g = schema.dedup_groups
    entity_types = list(entity_types)
    stamp = now()
    counts = {"removed": 0, "inserted": 0, "kept": 0, "waiting": 0, "same_as_before": 0}
    given_plans: list[tuple[str, Any]] = []
    with store.engine.begin() as conn:
        r = schema.dedup_runs
        ended = conn.execute(sa.select(r.c.status, r.c.summary).where(r.c.id == run_id)).first()
        if ended is not None and ended.status in ("failed", "cancelled"):  # e.g. closed by another run as abandoned
            why = ended.summary.get("error") if isinstance(ended.summary, dict) else None
            raise ValueError(f"run {run_id} is recorded as {ended.status}" + (f" ({why})" if why else "")
                             + ": it stores no proposals; start a new run")
        insert = g.insert().values({c: _checked_json(conn, g, c) for c in JSON_COLUMNS})
        # the pending groups gone, by id (an id stands for its primary and members): what a run finds
        # again is told apart from what is new
        before = set(conn.execute(g.delete().where(g.c.entity_type.in_(entity_types), g.c.status == "pending")
                                  .returning(g.c.id)).scalars())
        counts["removed"] = len(before)
        existing = {row[0] for row in conn.execute(sa.select(g.c.id).where(g.c.entity_type.in_(entity_types)))}
        # (entity type, record) -> the approved group holding it, which a person means to merge first
        approved = {(et, int(m)): gid for et, gid, members in conn.execute(
            sa.select(g.c.entity_type, g.c.id, g.c.member_ids).where(g.c.entity_type.in_(entity_types),
                                                                     g.c.status == "approved"))
            for m in _json_value(members)}
        waits_for: set[str] = set()

        def fresh():
            for row in groups:
                if row["id"] in existing:
                    counts["kept"] += 1
                    continue
                if approved:
                    held = {approved.get((row["entity_type"], int(m))) for m in _json_value(row["member_ids"])} - {None}
                    if held:
                        counts["waiting"] += 1
                        waits_for.update(held)
                        continue
                out = {k: v for k, v in row.items() if k not in JSON_COLUMNS and k != "plan"}
                out.update({c + "_json": _json_text(row.get(c)) for c in JSON_COLUMNS})
                out.update(run_id=run_id, status="pending", updated_at=stamp)
                if row.get("plan") is not None:
                    given_plans.append((row["id"], row["plan"]))
                counts["same_as_before"] += row["id"] in before
                yield out

        counts["inserted"] = store.insert(g, fresh(), conn=conn, batch_size=2000, statement=insert)
        _insert_plans(store, conn, run_id, given_plans)
        p = schema.dedup_plans
        planless = conn.execute(sa.select(g.c.id).where(g.c.run_id == run_id, g.c.status == "pending",
                                                        ~_same_group(p, g)).limit(5)).scalars().all()
        if planless:  # (a group's plan is given with it or staged before, not both: that is refused too)
            raise ValueError(f"run {run_id} stores group(s) {', '.join(planless)} without a plan: none was given "
                             "with them and none staged (stage_plans)")
        _drop_unused_plans(conn, run_id)
    if counts["waiting"]:
        shown = sorted(waits_for)
        log.info("run %s: %d group(s) not stored: their records wait in approved group(s) %s%s", run_id,
                 counts["waiting"], ", ".join(shown[:5]), f" and {len(shown) - 5} more" if len(shown) > 5 else "")
    return counts


JSON_COLUMNS = ("member_ids", "responsible_ids", "pairs", "left_out")


class EncodedJson(str):
    """JSON text this process has just encoded itself (a merge plan's to_json(): the json module's
    encoder, NaN and infinities refused): SQLite stores it as it is. Any other text is checked by
    the database first (SQLite's json() took ~3 CPU-s for the plans of a million contacts)."""

    __slots__ = ()


def stage_plans(store: Store, run_id: str, plans: Iterable[tuple[str, Any]]) -> int:
    """Store plans (group id, plan value or its JSON text) made by run ``run_id`` before its groups
    are stored (replace_pending), replacing what the run staged for those groups before (a chunk
    planned again). A group this run stored already and a person has decided on (approved,
    skipped...) keeps its plan. Each call is a short transaction of its own, so a person may
    approve a pending group meanwhile. Returns how many were stored."""
    p, g = schema.dedup_plans, schema.dedup_groups
    plans = list(plans)
    ids = [gid for gid, _ in plans]
    with store.engine.begin() as conn:
        n = sqlin.size(ids, conn.dialect.name)
        # the run's stored groups locked (PostgreSQL): an approval cannot come between this look and
        # the replacing below; it waits, then sets its plan after this one
        stored = conn.execute(sa.select(g.c.id, g.c.status).where(g.c.run_id == run_id, sqlin.in_(g.c.id, "ids", n))
                              .with_for_update(), sqlin.params("ids", ids, n)).all()
        decided = {gid for gid, status in stored if status != "pending"}
        if decided:
            plans = [(gid, plan) for gid, plan in plans if gid not in decided]
            ids = [gid for gid, _ in plans]
            n = sqlin.size(ids, conn.dialect.name)
        conn.execute(p.delete().where(p.c.run_id == run_id, sqlin.in_(p.c.group_id, "ids", n)),
                     sqlin.params("ids", ids, n))
        return _insert_plans(store, conn, run_id, plans)


def drop_staged_plans(store: Store, run_id: str) -> int:
    """Remove the plans run ``run_id`` staged for groups it has not stored (a failed or repeated try)."""
    with store.engine.begin() as conn:
        return _drop_staged(conn, run_id)


def _drop_staged(conn: sa.Connection, run_id: str) -> int:
    p, g = schema.dedup_plans, schema.dedup_groups
    return conn.execute(p.delete().where(p.c.run_id == run_id, ~_same_group(p, g))).rowcount


def set_plan(conn: sa.Connection, group_id: str, plan: dict[str, Any] | None) -> None:
    """Replace the plan of a stored group (None: it has none), inside the caller's transaction."""
    p, g = schema.dedup_plans, schema.dedup_groups
    run_id = conn.execute(sa.select(g.c.run_id).where(g.c.id == group_id)).scalar_one()
    conn.execute(p.delete().where(p.c.group_id == group_id, p.c.run_id == run_id))
    if plan is not None:
        conn.execute(p.insert().values(group_id=group_id, run_id=run_id, plan=plan))


def _insert_plans(store: Store, conn: sa.Connection, run_id: str, plans: Iterable[tuple[str, Any]]) -> int:
    p = schema.dedup_plans
    rows = [{"group_id": gid, "run_id": run_id, "plan_json": _json_text(plan)} for gid, plan in plans]
    # PostgreSQL's cast to json is its own check, on the server: kept for every text
    trusted = conn.dialect.name == "sqlite" and all(type(r["plan_json"]) is EncodedJson for r in rows)
    plan = sa.bindparam("plan_json", type_=sa.Text) if trusted else _checked_json(conn, p, "plan")
    return store.insert(p, rows, conn=conn, batch_size=2000, statement=p.insert().values(plan=plan))


def _checked_json(conn: sa.Connection, table: sa.Table, column: str):
    """The value of ``column`` from the parameter ``<column>_json``, a JSON text the database checks:
    PostgreSQL by its cast to json, SQLite by json() (which also stores it without spaces)."""
    text = sa.bindparam(column + "_json", type_=sa.Text)
    return sa.cast(text, table.c[column].type) if conn.dialect.name == "postgresql" else sa.func.json(text)


def _same_group(p: sa.Table, g: sa.Table):
    """A plan row and a group row of the same group and run (correlated to whichever the query reads)."""
    return sa.exists().where(g.c.id == p.c.group_id, g.c.run_id == p.c.run_id)


def _drop_unused_plans(conn: sa.Connection, run_id: str) -> int:
    """Plans of no stored group: this run's staged for groups it kept, those of groups removed, and
    those staged by runs that failed or were killed. Those of another run still running stay (one
    started in the last day: a run of another host is closed as abandoned only a day after its start,
    settle_runs)."""
    p, g, r = schema.dedup_plans, schema.dedup_groups, schema.dedup_runs
    running = sa.select(r.c.id).where(r.c.status == "running", r.c.id != run_id,
                                      r.c.started_at > now() - dt.timedelta(days=1))
    return conn.execute(p.delete().where(~_same_group(p, g), p.c.run_id.not_in(running))).rowcount


def _json_value(value: Any) -> Any:
    """A JSON column's value, or the value of its JSON text (a group's member_ids come in as either)."""
    return json.loads(value) if isinstance(value, str) else value


def _json_text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value)


def set_status(store: Store, group_ids: Iterable[str], status: str, user_id: int | None = None,
               from_statuses: tuple[str, ...] = ("pending",)) -> int:
    if status not in STATUSES:
        raise ValueError(f"unknown group status {status!r}; use one of {', '.join(STATUSES)}")
    g = schema.dedup_groups
    values: dict[str, Any] = {"status": status, "updated_at": now()}
    if status == "approved":
        values.update(approved_by=user_id, approved_at=now())
    ids = list(dict.fromkeys(group_ids))
    changed = 0
    with store.engine.begin() as conn:
        # in parts: `approve --tier certain` names every certain group (120,000 at a million contacts),
        # and PostgreSQL takes at most 65,535 parameters a statement
        for at in range(0, len(ids), 2000):
            changed += conn.execute(g.update().where(g.c.id.in_(ids[at:at + 2000]), g.c.status.in_(from_statuses))
                                    .values(**values)).rowcount
    return changed


def send_back(store: Store, group_id: str, plan: dict[str, Any] | None, note: str | None = None,
              from_statuses: tuple[str, ...] = ("approved",)) -> bool:
    """Send a group back to a person: status pending with ``plan`` (made again from the records as
    they are now), ``note`` added once to its primary_reason, in one transaction. A compare-and-set:
    only while the group's status is one of ``from_statuses``; False (nothing written) when another
    process or a person changed it first (another apply merged it, a person skipped it...)."""
    g = schema.dedup_groups
    values: dict[str, Any] = {"status": "pending", "updated_at": now()}
    if note:
        values["primary_reason"] = sa.case((g.c.primary_reason.endswith(note), g.c.primary_reason),
                                           else_=sa.func.coalesce(g.c.primary_reason, "") + note)
    with store.engine.begin() as conn:
        changed = conn.execute(g.update().where(g.c.id == group_id, g.c.status.in_(from_statuses))
                               .values(**values)).rowcount
        if changed:
            set_plan(conn, group_id, plan)
    return bool(changed)


def group_page(store: Store, *, status: str | None = None, entity_type: str | None = None,
               tiers: Iterable[str] | None = None, limit: int = 20) -> tuple[pd.DataFrame, int]:
    """The first ``limit`` groups (most certain first), each with its plan, and how many match in all:
    read_groups for a list that shows a page (it reads the plans of the page only)."""
    g, p = schema.dedup_groups, schema.dedup_plans
    where = [c for c in (g.c.status == status if status else None, g.c.entity_type == entity_type if entity_type
                         else None, g.c.tier.in_(list(tiers)) if tiers else None) if c is not None]
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(g).where(*where)).scalar_one()
    page = sa.select(g).where(*where).order_by(g.c.score.desc(), g.c.id).limit(limit).subquery()
    q = sa.select(page, p.c.plan).select_from(
        page.outerjoin(p, (p.c.group_id == page.c.id) & (p.c.run_id == page.c.run_id))).order_by(
        page.c.score.desc(), page.c.id)
    return store.read_frame(q), total


def read_groups(store: Store, *, status: str | None = None, entity_type: str | None = None,
                run_id: str | None = None, tiers: Iterable[str] | None = None) -> pd.DataFrame:
    """The stored groups, each with its plan (column ``plan``, None where it has none)."""
    g, p = schema.dedup_groups, schema.dedup_plans
    q = sa.select(g, p.c.plan).select_from(g.outerjoin(p, (p.c.group_id == g.c.id) & (p.c.run_id == g.c.run_id)))
    if status:
        q = q.where(g.c.status == status)
    if entity_type:
        q = q.where(g.c.entity_type == entity_type)
    if run_id:
        q = q.where(g.c.run_id == run_id)
    if tiers:
        q = q.where(g.c.tier.in_(list(tiers)))
    return store.read_frame(q.order_by(g.c.score.desc(), g.c.id))
