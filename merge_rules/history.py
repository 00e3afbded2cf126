"""The list of merges, newest first (`crm-dedup history`)."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm import schema

COLUMNS = ["id", "when", "who", "entity_type", "primary_id", "merged_ids", "status", "batch_id",
           "group_id", "undone_at", "summary"]


def merge_history(store, limit: int = 100, entity_type: str | None = None, batch_id: str | None = None, *,
                  user_id: int | None = None, offset: int = 0) -> pd.DataFrame:
    """Merges, newest first: ``limit`` of them after the first ``offset``; ``user_id``: those that user made."""
    m, u = schema.dedup_merges, schema.users
    q = (sa.select(m.c.id, m.c.merged_at.label("when"), sa.func.coalesce(u.c.name, "system").label("who"),
                   m.c.entity_type, m.c.primary_id, m.c.merged_ids, m.c.status, m.c.batch_id, m.c.group_id,
                   m.c.undone_at, m.c.summary)
         .select_from(m.outerjoin(u, u.c.id == m.c.user_id))
         .order_by(m.c.id.desc()).limit(limit).offset(offset))
    if entity_type is not None:
        q = q.where(m.c.entity_type == entity_type)
    if batch_id is not None:
        q = q.where(m.c.batch_id == batch_id)
    if user_id is not None:
        q = q.where(m.c.user_id == user_id)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)
