"""Leads that duplicate an existing client are linked to it, not merged into it (merges stay within
one entity type)."""

from __future__ import annotations

import sqlalchemy as sa

from crm import schema
from merge_rules.errors import MergeError
from merge_rules.permissions import check_merge, load_user
from merge_rules.tx import utcnow, write_transaction


def link_lead_to_client(store, lead_id: int, contact_id: int | None = None, company_id: int | None = None,
                        user_id: int | None = None) -> dict:
    """Set the lead's contact_id and/or company_id to the client it duplicates, with a history event on
    the lead. Returns {"lead_id", "contact_id", "company_id", "history_id", "message"}."""
    if contact_id is None and company_id is None:
        raise MergeError(f"Linking lead #{lead_id}: name the contact_id or company_id it duplicates.")
    leads = schema.leads
    with store.engine.connect() as conn:
        user = load_user(conn, user_id)
        conn.commit()
        with write_transaction(conn):
            lead = conn.execute(sa.select(leads).where(leads.c.id == lead_id).with_for_update()).mappings().first()
            if lead is None or lead["deleted_at"] is not None:
                raise MergeError(f"Lead #{lead_id} does not exist or was deleted; nothing to link.")
            check_merge(user, "lead", [lead])
            values, parts = {}, []
            for col, target, entity in (("contact_id", contact_id, "contact"), ("company_id", company_id, "company")):
                if target is None:
                    continue
                t = schema.ENTITY_TABLES[entity]
                row = conn.execute(sa.select(t.c.id, t.c.deleted_at).where(t.c.id == target)).first()
                if row is None or row.deleted_at is not None:
                    raise MergeError(f"Cannot link lead #{lead_id} to {entity} #{target}: it does not exist or was deleted.")
                was = lead[col]
                values[col] = target
                parts.append(f"{entity} #{target}" + (f" (was #{was})" if was not in (None, target) else ""))
            now = utcnow()
            conn.execute(leads.update().where(leads.c.id == lead_id).values(**values, modified_at=now))
            message = f"Linked lead #{lead_id} to the existing client {' and '.join(parts)} by {user['name']}"
            h = schema.history
            hid = conn.execute(h.insert().values(entity_type="lead", entity_id=lead_id, event="link_client",
                                                 message=message, user_id=user["id"], created_at=now)
                               .returning(h.c.id)).scalar_one()
    return {"lead_id": lead_id, "contact_id": values.get("contact_id", lead["contact_id"]),
            "company_id": values.get("company_id", lead["company_id"]), "history_id": hid, "message": message}
