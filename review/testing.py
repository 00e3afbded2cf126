"""A small CRM with proposed groups for the review page's tests (TestClient and browser).

Built on merge_rules.testing's sample (an admin and three managers, Russian and English records) plus
a pair of contacts whose names are HTML and script, a completed run whose folder holds a
lead_clients.parquet, and dedup_groups rows whose plans come from merge_rules.plan.plan_groups.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from crm import proposals, schema
from merge_rules.plan import plan_groups
from merge_rules.testing import SAMPLE_GROUPS, load_sample
from review.auth import hash_password

PASSWORD = "correct horse battery"
ADMIN, MARIA, PETR, JOHN = "admin@example.ru", "maria@example.ru", "petr@example.ru", "john@example.com"
USER_IDS = {ADMIN: 1, MARIA: 2, PETR: 3, JOHN: 4}
XSS_NAME = "<script>alert(1)</script>"
XSS_OTHER = '<img src=x onerror="alert(2)">'
RUN_ID = "20261126T160000-review"


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def group_id(entity: str, primary: int, members: list[int]) -> str:
    digest = zlib.crc32(",".join(sorted(map(str, members))).encode()) & 0xFFFFFF
    return f"{entity}-{primary}-{digest:06x}"


def _xss_rows() -> dict[str, list[dict[str, Any]]]:
    when = dt.datetime(2024, 6, 1, 10, 0)
    base = dict(middle_name=None, birthdate=None, post=None, address=None, source=None, tax_id=None,
                responsible_id=4, created_at=when, modified_at=when, deleted_at=None)
    return {
        "contacts": [dict(base, id=16, last_name=XSS_NAME, first_name="Mallory", comments="</td><b>bold?</b>"),
                     dict(base, id=17, last_name=XSS_NAME, first_name=XSS_OTHER, comments="javascript:alert(3)")],
        "communications": [
            dict(id=90, entity_type="contact", entity_id=16, type="email", kind="work", value="mallory@evil.test"),
            dict(id=91, entity_type="contact", entity_id=17, type="email", kind="work",
                 value='"><script>alert(4)</script>@x.test')],
    }


def _pairs(members: list[int]) -> list[dict[str, Any]]:
    out = []
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            out.append({"id_a": min(a, b), "id_b": max(a, b), "probability": 0.995, "tier": "certain",
                        "criteria": "phone,name",
                        "explanation": "same phone +7 916 123-45-67 (+11.8); same full name (+6.2). Against: "
                                       "different post (-1.4)",
                        "contributions": json.dumps({"prior": -9.97, "phone": 11.8, "name": 6.2, "email": 0.0,
                                                     "post": -1.4})})
    return out


def load_review_sample(store, folder: str | Path) -> dict[str, Any]:
    """Fill an empty, migrated store; ``folder`` receives the run's lead_clients.parquet.
    Returns {"groups": {name: group id}, "run_id": ...}."""
    load_sample(store)
    extra = _xss_rows()
    with store.engine.begin() as conn:
        store.insert(schema.contacts, extra["contacts"], conn=conn)
        store.insert(schema.communications, extra["communications"], conn=conn)
        store.fix_sequences(conn)
    digest = _password_hash()  # one argon2 hash (0.4 s each) shared by the sample users
    with store.engine.begin() as conn:
        conn.execute(schema.users.update().values(password_hash=digest))
    with store.engine.begin() as conn:  # phones for the mailto/tel links
        conn.execute(schema.users.update().where(schema.users.c.id == 2).values(phone="+7 (495) 000-00-02"))

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"lead_id": 600, "client_type": "contact", "client_id": 11, "probability": 0.97,
                   "tier": "certain", "explanation": "same full name Иванов Иван (+7.1)"}]
                 ).to_parquet(folder / "lead_clients.parquet", index=False)
    proposals.start_run(store, RUN_ID, schema.ENTITY_TYPES, str(folder))

    groups = {et: list(gs) for et, gs in SAMPLE_GROUPS.items()}
    groups["contact"].append((16, [16, 17]))
    rows, names = [], {}
    scores = iter([0.999, 0.97, 0.95, 0.9, 0.8, 0.7, 0.6])
    for et, gs in groups.items():
        plans = plan_groups(store, et, gs)
        table = schema.ENTITY_TABLES[et]
        for (primary, members), plan in zip(gs, plans):
            with store.engine.connect() as conn:
                resp = sorted({r for (r,) in conn.execute(sa.select(table.c.responsible_id)
                                                          .where(table.c.id.in_(members))) if r is not None})
            gid = group_id(et, primary, members)
            plan.group_id = gid
            score = next(scores)
            rows.append({"id": gid, "entity_type": et, "tier": "certain" if score > 0.9 else "probable",
                         "score": score, "primary_id": primary, "member_ids": members, "responsible_ids": resp,
                         "primary_reason": "more linked deals and activities", "criteria": "1 match by phone, 1 match by name",
                         "plan": plan.to_dict(), "pairs": _pairs(members)})
            names[f"{et}-{primary}"] = gid
    proposals.replace_pending(store, RUN_ID, schema.ENTITY_TYPES, rows)
    proposals.finish_run(store, RUN_ID, "completed", {"groups": len(rows)})
    return {"groups": names, "run_id": RUN_ID}
