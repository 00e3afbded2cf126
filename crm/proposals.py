"""Dedup runs and the groups they propose, as stored in the CRM database.

A group moves pending -> approved -> applied, or to skipped; "stale" when its records changed
under the plan. A new run replaces the pending proposals of its entity types in one transaction
and never touches approved, applied, skipped or stale ones.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crm import schema
from crm.store import Store

STATUSES = ("pending", "approved", "applied", "skipped", "stale")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def start_run(store: Store, run_id: str, entity_types: Iterable[str], folder: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_runs.insert().values(
            id=run_id, started_at=now(), status="running", entity_types=",".join(entity_types), folder=folder))


def finish_run(store: Store, run_id: str, status: str, summary: dict | None = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_runs.update().where(schema.dedup_runs.c.id == run_id).values(
            finished_at=now(), status=status, summary=json.loads(json.dumps(summary or {}, default=str))))


def latest_run(store: Store, status: str = "completed") -> dict | None:
    r = schema.dedup_runs
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(r).where(r.c.status == status).order_by(r.c.started_at.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def replace_pending(store: Store, run_id: str, entity_types: Iterable[str], groups: Iterable[dict[str, Any]]) -> dict:
    """Swap the pending groups of ``entity_types`` for ``groups`` in one transaction.

    A group's ``plan``, ``member_ids``, ``responsible_ids`` and ``pairs`` are values or their JSON
    text (a run's plans and pairs go in as text, encoded once). A proposed group whose id already
    exists with another status (approved, applied, skipped, stale) is left as it is. Returns counts:
    removed, inserted, kept."""
    g = schema.dedup_groups
    entity_types = list(entity_types)
    stamp = now()
    counts = {"removed": 0, "inserted": 0, "kept": 0}
    with store.engine.begin() as conn:
        # the texts are checked as JSON by the database: PostgreSQL's cast to json, SQLite's json()
        def as_json(column: str):
            text = sa.bindparam(column + "_json", type_=sa.Text)
            return sa.cast(text, g.c[column].type) if conn.dialect.name == "postgresql" else sa.func.json(text)

        insert = g.insert().values({c: as_json(c) for c in JSON_COLUMNS})
        counts["removed"] = conn.execute(g.delete().where(g.c.entity_type.in_(entity_types),
                                                          g.c.status == "pending")).rowcount
        existing = {row[0] for row in conn.execute(sa.select(g.c.id).where(g.c.entity_type.in_(entity_types)))}

        def fresh():
            for row in groups:
                if row["id"] in existing:
                    counts["kept"] += 1
                    continue
                out = {k: v for k, v in row.items() if k not in JSON_COLUMNS}
                out.update({c + "_json": _json_text(row.get(c)) for c in JSON_COLUMNS})
                out.update(run_id=run_id, status="pending", updated_at=stamp)
                yield out

        counts["inserted"] = store.insert(g, fresh(), conn=conn, batch_size=2000, statement=insert)
    return counts


JSON_COLUMNS = ("member_ids", "responsible_ids", "plan", "pairs")


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


def read_groups(store: Store, *, status: str | None = None, entity_type: str | None = None,
                run_id: str | None = None, tiers: Iterable[str] | None = None) -> pd.DataFrame:
    g = schema.dedup_groups
    q = sa.select(g)
    if status:
        q = q.where(g.c.status == status)
    if entity_type:
        q = q.where(g.c.entity_type == entity_type)
    if run_id:
        q = q.where(g.c.run_id == run_id)
    if tiers:
        q = q.where(g.c.tier.in_(list(tiers)))
    return store.read_frame(q.order_by(g.c.score.desc(), g.c.id))
