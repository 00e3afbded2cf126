"""What the dedup pipeline reads from the CRM: records as a RoleTable, and per-record facts used to
rank the primary (citation index, responsible manager)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm import schema
from crm.store import Store
from matchers.table import RoleTable

# linked tables counted in the citation index, per entity type: (name, table, column)
CITING = {
    "contact": [("deals", schema.deals, "contact_id"), ("invoices", schema.invoices, "contact_id"),
                ("quotes", schema.quotes, "contact_id")],
    "company": [("deals", schema.deals, "company_id"), ("invoices", schema.invoices, "company_id"),
                ("quotes", schema.quotes, "company_id")],
    "lead": [("deals", schema.deals, "lead_id")],
}


def load_role_table(store: Store, entity_type: str, since=None) -> RoleTable:
    records = store.read_entities(entity_type, since=since)
    comms = store.read_communications(entity_type)
    if since is not None:
        comms = comms[comms["entity_id"].isin(records["id"])]
    table = RoleTable.from_crm(entity_type, records, comms)
    del records, comms
    for frame in (table.records, table.values):
        share_repeated_strings(frame)
    return table


def share_repeated_strings(frame: pd.DataFrame) -> None:
    """Text columns whose values repeat (cities, sources, first names) made to hold one str object per
    distinct value, as a parquet read does: the database driver makes a new object for every cell,
    which at a million records costs hundreds of megabytes. The values stay what they were."""
    for col in frame.columns:
        if frame[col].dtype != object:  # numbers, datetimes, categories and string dtypes stay as they are
            continue
        values = frame[col].to_numpy()
        if pd.api.types.infer_dtype(values, skipna=True) != "string":
            continue
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        if not len(uniques) or len(uniques) > len(values) // 2:
            continue
        missing = codes < 0
        shared = np.asarray(uniques, dtype=object).take(np.where(missing, 0, codes))
        shared[missing] = values[missing]  # None stays None, NaN stays NaN
        frame[col] = shared


def citation_counts(store: Store, entity_type: str) -> pd.DataFrame:
    """Per live record: how many deals, invoices, quotes, activities, tasks and history events cite it."""
    table = schema.ENTITY_TABLES[entity_type]
    out = pd.DataFrame(index=pd.Index([], name="id"))
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(table.c.id).where(table.c.deleted_at.is_(None)))]
        out = pd.DataFrame(index=pd.Index(ids, name="id"))
        for name, t, col in CITING[entity_type]:
            rows = conn.execute(sa.select(t.c[col], sa.func.count()).where(t.c[col].is_not(None)).group_by(t.c[col]))
            out[name] = pd.Series(dict(rows.all()), dtype="float64")
        act = schema.activities
        rows = conn.execute(
            sa.select(act.c.entity_id, sa.case((act.c.kind == "task", "tasks"), else_="activities"), sa.func.count())
            .where(act.c.entity_type == entity_type).group_by(act.c.entity_id, act.c.kind)).all()
        acts = pd.DataFrame(rows, columns=["id", "kind", "n"]).pivot_table(
            index="id", columns="kind", values="n", aggfunc="sum") if rows else pd.DataFrame()
        for kind in ("activities", "tasks"):
            out[kind] = acts[kind] if kind in acts.columns else 0.0
        h = schema.history
        rows = conn.execute(sa.select(h.c.entity_id, sa.func.count()).where(h.c.entity_type == entity_type)
                            .group_by(h.c.entity_id))
        out["history"] = pd.Series(dict(rows.all()), dtype="float64")
    return out.fillna(0.0)


def responsible_ids(store: Store, entity_type: str) -> dict[int, int | None]:
    """Live record id -> its responsible manager's id (None when nobody is responsible)."""
    table = schema.ENTITY_TABLES[entity_type]
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.id, table.c.responsible_id)
                                 .where(table.c.deleted_at.is_(None))).all())


def record_info(store: Store, entity_type: str, weights: dict[str, float],
                editor: dict | None = None) -> pd.DataFrame:
    """Columns for primary ranking: citations (weighted index), editable (for ``editor``, a user row with
    id and role; everyone can "edit" in an unattended run), responsible_id."""
    counts = citation_counts(store, entity_type)
    index = sum(counts[k] * w for k, w in weights.items() if k in counts.columns)
    info = pd.DataFrame({"citations": index if len(counts) else pd.Series(dtype=float)}, index=counts.index)
    info["responsible_id"] = pd.Series(responsible_ids(store, entity_type))
    if editor is None or editor.get("role") == "admin":
        info["editable"] = True
    else:
        info["editable"] = info["responsible_id"] == editor["id"]
    return info
