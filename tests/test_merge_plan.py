"""Golden tests of merge plans on the hand-written Russian and English sample CRM, on both backends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings as hsettings, strategies as st

from crm import schema
from merge_rules.codec import encode, fingerprint
from merge_rules.plan import MergePlan, build_plan, plan_groups
from merge_rules.settings import MergeSettings
from merge_rules.snapshot import read_snapshot
from merge_rules.testing import SAMPLE_GROUPS, load_sample

D = dt.datetime


@pytest.fixture
def sample(store):
    load_sample(store)
    return store


def plan_of(store, entity, group, settings=None, **kw):
    return plan_groups(store, entity, [group], settings or MergeSettings(), **kw)[0]


def test_russian_contact_plan_fields_with_sources_and_conflicts(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    assert plan.problems == []
    f = {name: (d.value, d.source_id, d.rule) for name, d in plan.fields.items()}
    assert f["last_name"] == ("Иванов", 10, "fill_empty")          # "иванов " is the same name
    assert f["middle_name"] == ("Иванович", 10, "fill_empty")
    assert f["birthdate"] == (dt.date(1980, 5, 17), 11, "fill_empty")  # filled from the duplicate
    assert f["address"] == ("Москва, ул. Ленина, 1", 10, "fill_empty")
    assert f["tax_id"] == ("500100732259", 10, "prefer_valid")       # 11's "123" is no INN
    assert f["responsible_id"] == (2, 10, "keep_primary")
    assert f["created_at"] == (D(2022, 11, 5, 8, 30), 11, "min")
    assert f["comments"] == ("Звонить после 15:00\n\n--- from contact #11 (2024-04-15) ---\nПросил КП до пятницы",
                             None, "concat")
    # two different filled values: conflicts for a person (policy "ask"), the primary's value meanwhile
    assert [(c.field, c.candidates, c.resolved_by) for c in plan.conflicts] == [
        ("post", [(10, "Директор"), (11, "Генеральный директор")], None),
        ("source", [(10, "web"), (11, "phone")], None),
    ]
    assert f["post"] == ("Директор", 10, "fill_empty") and plan.fields["post"].conflict
    assert [c.field for c in plan.unresolved] == ["post", "source"]
    assert plan.changes() == {"birthdate": (None, dt.date(1980, 5, 17)),
                              "comments": ("Звонить после 15:00", f["comments"][0]),
                              "created_at": (D(2023, 1, 10, 9, 0), D(2022, 11, 5, 8, 30))}


def test_russian_contact_plan_communications_united_without_repeats(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    got = [(c.id, c.value, c.action, c.repeat_of) for c in plan.communications]
    assert got == [
        (1, "+7 (916) 123-45-67", "keep", None),
        (2, "ivanov@mail.ru", "keep", None),
        (3, "8 916 123 45 67", "repeat", 1),
        (4, "+7 495 765-43-21 доб. 12", "move", None),
        (5, " IVANOV@mail.ru", "repeat", 2),
        (6, "i.ivanov@yandex.ru", "move", None),
        (7, "ivanov.ru", "move", None),
    ]


def test_russian_contact_plan_lists_every_link(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    got = sorted((m.table, tuple(m.key.values()), m.column, m.from_id, m.to_id, m.action, m.is_primary)
                 for m in plan.links)
    assert got == sorted([
        ("deals", (101,), "contact_id", 11, 10, "move", None),
        ("deals", (102,), "contact_id", 12, 10, "move", None),
        ("invoices", (200,), "contact_id", 11, 10, "move", None),
        ("invoices", (201,), "contact_id", 12, 10, "move", None),
        ("quotes", (300,), "contact_id", 12, 10, "move", None),
        ("activities", (400,), "entity_id", 11, 10, "move", None),
        ("history", (500,), "entity_id", 11, 10, "move", None),
        ("history", (501,), "entity_id", 12, 10, "move", None),
        ("leads", (600,), "contact_id", 11, 10, "move", None),
        # (11, 20) collides with the primary's own (10, 20): folded into it, not deleted silently
        ("contact_companies", (11, 20), "contact_id", 11, 10, "merge", True),
        # 11's primary company 21 moves, but 10 keeps its own primary company (20)
        ("contact_companies", (11, 21), "contact_id", 11, 10, "move", False),
        ("contact_companies", (12, 22), "contact_id", 12, 10, "move", False),
    ])
    assert plan.link_counts() == {"deals": 2, "invoices": 2, "quotes": 1, "activities": 1, "history": 2,
                                  "leads": 1, "contact_companies": 3}


def test_access_warning_for_a_manager_losing_a_record(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    assert [(w.user_id, w.record_ids) for w in plan.access_warnings] == [(3, [11])]
    assert plan.access_warnings[0].message == (
        "Пётр Сидоров (#3) is responsible for contact #11 but not for the merged #10 "
        "(responsible: Мария Иванова); they will lose access to it")
    # the English group belongs to one manager: nobody loses anything
    assert plan_of(sample, "contact", (13, [13, 14])).access_warnings == []


def test_summary_says_what_will_happen(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    assert plan.summary() == (
        "Merge contacts #11, #12 into #10; 2 field(s) change (birthdate, comments); "
        "2 conflict(s), to choose: post, source; 3 phone/email/web/im value(s) move, 2 repeat(s) dropped; "
        "links move: 1 activities, 3 contact_companies, 2 deals, 2 history, 2 invoices, 1 leads, 1 quotes; "
        "1 manager(s) lose access")


def test_a_persons_choice_settles_a_conflict(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), choices={10: {"post": 11, "source": 10}})
    assert (plan.fields["post"].value, plan.fields["post"].source_id, plan.fields["post"].rule) == \
        ("Генеральный директор", 11, "choice")
    assert [(c.field, c.resolved_by) for c in plan.conflicts] == [("post", "choice"), ("source", "choice")]
    assert plan.unresolved == []
    # a choice can also override a field that had no conflict, even to an empty value
    snap_plan = plan_of(sample, "contact", (10, [10, 11, 12]), choices={10: {"address": 11}})
    assert (snap_plan.fields["address"].value, snap_plan.fields["address"].source_id) == (None, 11)


@pytest.mark.parametrize("policy, post, source", [
    ("keep_primary", ("Директор", 10), ("web", 10)),
    ("most_recent", ("Генеральный директор", 11), ("phone", 11)),   # 11 was modified last
    ("longest", ("Генеральный директор", 11), ("phone", 11)),
])
def test_conflict_policies(sample, policy, post, source):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), MergeSettings(conflict_policy=policy))
    assert (plan.fields["post"].value, plan.fields["post"].source_id) == post
    assert (plan.fields["source"].value, plan.fields["source"].source_id) == source
    assert plan.unresolved == [] and {c.resolved_by for c in plan.conflicts} == {f"policy:{policy}"}


def test_bad_choices_are_problems_naming_field_and_record(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), choices={10: {"post": 99, "phone": 11, "nope": 10}})
    assert "the choice for 'post' names record #99, which is not in the group (#10, #11, #12)" in plan.problems
    assert any("'phone', which is not a single-value field" in p for p in plan.problems)
    assert any("'nope'" in p for p in plan.problems)


def test_english_contact_plan(sample):
    plan = plan_of(sample, "contact", (13, [13, 14]))
    f = {name: (d.value, d.source_id) for name, d in plan.fields.items()}
    assert f["first_name"] == ("Jonathan", 13) and plan.fields["first_name"].conflict  # Jon / Jonathan
    assert f["middle_name"] == ("Paul", 14)
    assert f["post"] == ("CTO", 14)
    assert f["address"] == ("1 Main St, Springfield", 14)
    assert f["comments"] == ("Met at the expo", 14)
    assert [(c.id, c.action, c.repeat_of) for c in plan.communications] == [
        (8, "keep", None), (9, "repeat", 8), (10, "move", None)]


def test_company_plan_prefers_valid_inn_and_sees_one_website(sample):
    plan = plan_of(sample, "company", (20, [20, 22]))
    f = {name: (d.value, d.source_id, d.conflict) for name, d in plan.fields.items()}
    assert f["tax_id"] == ("7707083893", 22, False)        # 20's INN fails its check digit
    assert f["website"] == ("romashka.ru", 20, False)      # https://www.romashka.ru/ is the same site
    assert f["industry"] == ("Торговля", 22, False)
    assert f["title"] == ("ООО «Ромашка»", 20, True)       # two spellings: for a person to choose
    assert sorted((m.table, tuple(m.key.values()), m.action) for m in plan.links) == [
        ("activities", (402,), "move"), ("contact_companies", (12, 22), "move"), ("deals", (102,), "move"),
        ("history", (502,), "move"), ("invoices", (201,), "move"), ("quotes", (300,), "move")]
    assert [(w.user_id, w.record_ids) for w in plan.access_warnings] == [(3, [22])]


def test_lead_plan_moves_deals_activities_history(sample):
    plan = plan_of(sample, "lead", (601, [601, 602]))
    assert sorted((m.table, m.key["id"], m.column) for m in plan.links) == [
        ("activities", 404, "entity_id"), ("deals", 104, "lead_id"), ("history", 504, "entity_id")]
    assert (plan.fields["company_id"].value, plan.fields["company_id"].source_id) == (21, 602)
    assert plan.fields["status"].value == "NEW"  # keep_primary
    assert [(c.id, c.action) for c in plan.communications] == [(14, "keep"), (15, "repeat")]


def test_plans_cover_every_link_of_every_sample_group(sample):
    for entity, groups in SAMPLE_GROUPS.items():
        plans = plan_groups(sample, entity, groups, MergeSettings())
        assert [p.primary_id for p in plans] == [g[0] for g in groups]
        assert all(not p.problems for p in plans)


def test_plan_json_round_trip_through_dedup_groups(sample):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), group_ids={10: "contact-10"})
    data = plan.to_dict()
    text = json.dumps(data)  # JSON-safe
    assert MergePlan.from_dict(json.loads(text)).to_dict() == data
    now = D(2024, 1, 1)
    with sample.engine.begin() as conn:
        conn.execute(schema.dedup_runs.insert().values(id="r1", started_at=now, status="completed",
                                                       entity_types="contact"))
        conn.execute(schema.dedup_groups.insert().values(
            id="contact-10", entity_type="contact", run_id="r1", status="pending", tier="high", score=0.9,
            primary_id=10, member_ids=[10, 11, 12], responsible_ids=[2, 3], primary_reason="most links",
            criteria="1 match by phone", plan=data, updated_at=now))
    with sample.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.dedup_groups.c.plan)).scalar_one()
    back = MergePlan.from_dict(stored)
    assert back.fields["birthdate"].value == dt.date(1980, 5, 17)
    assert back.records[11]["modified_at"] == D(2024, 4, 15, 16, 45, 30, 123456)
    assert back.fingerprints == plan.fingerprints and back.group_id == "contact-10"
    assert back.summary() == plan.summary()


def test_plan_json_text_is_the_json_of_its_dict(sample):
    # to_json writes plans.jsonl in one pass of the C encoder; it must say exactly what to_dict says
    for entity, groups in SAMPLE_GROUPS.items():
        for plan in plan_groups(sample, entity, groups, MergeSettings()):
            assert json.loads(plan.to_json()) == json.loads(json.dumps(plan.to_dict()))
            assert MergePlan.from_dict(json.loads(plan.to_json())).to_dict() == plan.to_dict()
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    assert "Иванов" in plan.to_json()  # names as written, not escaped
    plan.records[10]["note"] = object()
    with pytest.raises(TypeError, match="cannot store a object value"):
        plan.to_json()


def test_bulk_plans_equal_single_group_plans(sample):
    bulk = plan_groups(sample, "contact", SAMPLE_GROUPS["contact"], MergeSettings())
    with sample.engine.connect() as conn:
        for plan, (primary, members) in zip(bulk, SAMPLE_GROUPS["contact"]):
            single = build_plan(read_snapshot(conn, "contact", primary, members, lock=True), MergeSettings())
            assert single.fingerprints == plan.fingerprints
            assert [c.action for c in single.communications] == [c.action for c in plan.communications]
            assert single.links == plan.links


def test_groups_that_cannot_merge_get_problems_and_the_rest_are_planned(sample):
    with sample.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 15).values(deleted_at=D(2024, 1, 1)))
    groups = [(10, [10, 11, 999]), (13, [13, 14]), (15, [15, 14]), (12, [12])]
    plans = plan_groups(sample, "contact", groups, MergeSettings())
    assert plans[0].problems == ["contact #999 does not exist"]
    assert plans[0].summary().startswith("Cannot merge contacts #11, #999 into #10: contact #999 does not exist")
    assert plans[1].problems == []
    assert "contact #15 was deleted on 2024-01-01 00:00 (merged or removed already)" in plans[2].problems
    assert "contact #14 is also in the group of #13; a record merges into one primary" in plans[2].problems
    assert plans[3].problems == ["contact #12 has no duplicates to merge"]


# -- planning fast, with the same result ---------------------------------------------------------

def test_fingerprints_stay_what_databases_hold():
    # fingerprints are stored with plans and compared when applying: these values must never change
    row = {"id": 11, "last_name": "иванов ", "birthdate": dt.date(1980, 5, 17),
           "modified_at": D(2024, 4, 15, 16, 45, 30, 123456), "deleted_at": None, "amount": Decimal("250000.50"),
           "is_primary": True, "score": 0.1, "note": "50% 'off' %s"}
    assert fingerprint(row) == "0941ac040c76836dbf85"
    assert fingerprint({"id": 1, "entity_type": "contact", "entity_id": 10, "type": "phone", "kind": "work",
                        "value": "+7 (916) 123-45-67"}) == "ed4a9edd094e6c316efb"


@hsettings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.dates(),
    st.datetimes(), st.decimals(allow_nan=False, allow_infinity=False), st.tuples(st.integers())), max_size=8))
def test_fingerprint_is_the_hash_of_the_sorted_pairs(row):
    # codec.fingerprint writes the text through a template per set of columns: it must be this text
    assert fingerprint(row) == hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=10).hexdigest()
    assert fingerprint(dict(reversed(row.items()))) == fingerprint(row)


def test_plan_dict_and_json_hold_every_field_in_order(sample):
    # to_dict/to_json read the dataclasses' fields without vars(): nothing may be left out or reordered
    for entity, groups in SAMPLE_GROUPS.items():
        for plan in plan_groups(sample, entity, groups, MergeSettings(conflict_policy="most_recent")):
            full = encode(dataclasses.asdict(plan))
            assert plan.to_dict() == full
            assert plan.to_json() == json.dumps(full, ensure_ascii=False)


def test_planning_leaves_the_cycle_collector_as_it_was(sample):
    assert gc.isenabled()
    plan_groups(sample, "contact", SAMPLE_GROUPS["contact"], MergeSettings())
    assert gc.isenabled()
    gc.disable()
    try:
        plan_groups(sample, "contact", SAMPLE_GROUPS["contact"], MergeSettings())
        assert not gc.isenabled()
    finally:
        gc.enable()
