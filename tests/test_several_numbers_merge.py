"""A phone value holding several numbers ("+79165551207; +79165551208", one per line: stored whole by an older
import, or typed so in the CRM) is no repeat of its first number when groups merge: it was read as that number,
dropped as a repeat of the primary's, and the other numbers were lost with it. It now repeats only a value of the
same numbers. Plans alone, and merged in a store (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from crm import schema
from merge_rules.apply import apply_plan
from merge_rules.normalise import comm_key, comm_keys
from merge_rules.plan import build_plan, plan_groups
from merge_rules.settings import MergeSettings
from merge_rules.snapshot import Snapshot

WHEN = dt.datetime(2024, 2, 1, 10, 0)
SEVERAL = "+79165551207; +79165551208"


def test_a_value_of_several_numbers_has_the_key_of_all_of_them():
    assert comm_key("phone", SEVERAL) == comm_key("phone", "8 916 555-12-07\n8 (916) 555-12-08")
    assert comm_key("phone", SEVERAL) != comm_key("phone", "+79165551207")
    assert comm_keys(["phone", "phone"], [SEVERAL, "+7 916 555 12 07"]) == [comm_key("phone", SEVERAL),
                                                                          comm_key("phone", "+79165551207")]
    # an extension after a comma stays the number's, not a second number
    assert comm_key("phone", "+7 495 751-64-43, доб 802") == comm_key("phone", "+74957516443 доб. 802")


def test_a_plan_moves_a_value_of_several_numbers_that_starts_with_the_primarys():
    snap = Snapshot("contact", 1, [1, 2, 3], records={i: {"id": i, "last_name": "Иванов"} for i in (1, 2, 3)},
                    comms=[{"id": 10, "entity_id": 1, "type": "phone", "kind": "work", "value": "+79165551207"},
                           {"id": 20, "entity_id": 2, "type": "phone", "kind": "work", "value": SEVERAL},
                           {"id": 30, "entity_id": 3, "type": "phone", "kind": "mobile", "value": "8 916 555-12-07"}])
    plan = build_plan(snap, MergeSettings())
    assert [(c.id, c.action) for c in plan.communications] == [(10, "keep"), (20, "move"), (30, "repeat")]


def test_merging_keeps_every_number_of_such_a_value(store):
    with store.engine.begin() as conn:
        store.insert(schema.contacts, [dict(id=i, last_name="Иванов", first_name="Иван", created_at=WHEN,
                                            modified_at=WHEN, deleted_at=None) for i in (1, 2)], conn=conn)
        store.insert(schema.communications, [
            dict(id=10, entity_type="contact", entity_id=1, type="phone", kind="work", value="+79165551207"),
            dict(id=20, entity_type="contact", entity_id=2, type="phone", kind="work", value=SEVERAL)], conn=conn)
    [plan] = plan_groups(store, "contact", [(1, [1, 2])], MergeSettings(conflict_policy="ask"))
    assert plan.problems == [] and plan.unresolved == []
    apply_plan(store, plan, None)
    c = schema.communications
    with store.engine.connect() as conn:
        kept = sorted(conn.execute(sa.select(c.c.entity_id, c.c.value).where(c.c.entity_type == "contact")).all())
    assert kept == [(1, "+79165551207"), (1, SEVERAL)]
