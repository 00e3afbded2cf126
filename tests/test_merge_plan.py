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
from merge_rules.plan import (AccessWarning, CommDecision, Conflict, FieldDecision, LinkMove, MergePlan,
                              build_plan, plan_groups)
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
        "Merge contacts #11, #12 into #10; 2 fields change (birthdate, comments); "
        "2 conflicts, to choose: post, source; 3 contact details move, 2 repeated contact details dropped; "
        "linked records move: 1 activity, 3 company links, 2 deals, 2 history events, 2 invoices, 1 lead, "
        "1 quote; 1 manager loses access")


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
    ("most_common", ("Директор", 10), ("web", 10)),  # each value once: the primary's
])
def test_conflict_policies(sample, policy, post, source):
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), MergeSettings(conflict_policy=policy))
    assert (plan.fields["post"].value, plan.fields["post"].source_id) == post
    assert (plan.fields["source"].value, plan.fields["source"].source_id) == source
    assert plan.unresolved == [] and {c.resolved_by for c in plan.conflicts} == {f"policy:{policy}"}


def test_most_common_policy_takes_the_spelling_most_records_share():
    """A typo in the primary's surname, its duplicates spelled right: most_common keeps theirs (written
    as the first of them wrote it; case and spacing do not count); a tie keeps the primary's."""
    from merge_rules.snapshot import Snapshot

    names = {1: "Jenhkins", 2: "Jenkins", 3: "jenkins ", 4: "Jenkins"}
    snap = Snapshot("contact", 1, [1, 2, 3, 4], records={i: {"id": i, "last_name": n, "first_name": "Lisa"}
                                                         for i, n in names.items()})
    plan = build_plan(snap, MergeSettings(conflict_policy="most_common"))
    d = plan.fields["last_name"]
    assert (d.value, d.source_id, d.resolved_by) == ("Jenkins", 2, "policy:most_common") and plan.unresolved == []
    tie = Snapshot("contact", 1, [1, 2], records={1: {"id": 1, "last_name": "Jenhkins"}, 2: {"id": 2, "last_name": "Jenkins"}})
    assert build_plan(tie, MergeSettings(conflict_policy="most_common")).fields["last_name"].source_id == 1


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
    assert f["title"] == ("ООО «Ромашка»", 20, False)      # one name written two ways: the primary's
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
            criteria="1 match by phone", updated_at=now))
        conn.execute(schema.dedup_plans.insert().values(group_id="contact-10", run_id="r1", plan=data))
    with sample.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.dedup_plans.c.plan)).scalar_one()
    back = MergePlan.from_dict(stored)
    assert back.fields["birthdate"].value == dt.date(1980, 5, 17)
    assert back.records[11]["modified_at"] == D(2024, 4, 15, 16, 45, 30, 123456)
    assert back.fingerprints == plan.fingerprints and back.group_id == "contact-10"
    assert back.summary() == plan.summary()


def test_plan_json_text_is_the_json_of_its_dict(sample):
    # to_json writes plans.jsonl in one pass of orjson; it must say exactly what to_dict says
    for entity, groups in SAMPLE_GROUPS.items():
        for plan in plan_groups(sample, entity, groups, MergeSettings()):
            assert json.loads(plan.to_json()) == json.loads(json.dumps(plan.to_dict()))
            assert MergePlan.from_dict(json.loads(plan.to_json())).to_dict() == plan.to_dict()
    plan = plan_of(sample, "contact", (10, [10, 11, 12]))
    assert "Иванов" in plan.to_json()  # names as written, not escaped
    plan.records[10]["note"] = object()
    with pytest.raises(TypeError, match="cannot store a object value"):
        plan.to_json()


@pytest.mark.parametrize("policy", ["ask", "most_recent"])
def test_skipping_unanimous_rules_changes_no_plan(sample, monkeypatch, policy):
    # where every record holds one value the planner does not call a rule flagged unanimous; the plans
    # must be those of calling every rule (with each rule tried on each kind of field it fits)
    from merge_rules import rules

    variants = [MergeSettings(conflict_policy=policy),
                MergeSettings(conflict_policy=policy, fields={
                    "contact": {"post": "longest", "source": "most_common", "birthdate": "max", "created_at": "max",
                                "address": "keep_primary", "middle_name": "concat"},
                    "company": {"title": "longest", "industry": "most_common", "created_at": "max"},
                    "lead": {"title": "most_common", "status": "fill_empty", "source": "longest"}})]

    def plans():
        return [[p.to_dict() | {"planned_at": None} for p in plan_groups(sample, entity, groups, settings)]
                for settings in variants for entity, groups in SAMPLE_GROUPS.items()]

    shortcut = plans()
    for name, rule in rules.RULES.items():
        monkeypatch.setitem(rules.RULES, name, dataclasses.replace(rule, unanimous=False))
    assert plans() == shortcut


def test_equal_values_of_other_types_are_left_to_the_rule():
    # 1 == True, but "longest" measures str(value): the rule, not the shortcut, decides
    from merge_rules.snapshot import Snapshot

    snap = Snapshot("contact", 1, [1, 2], records={1: {"id": 1, "post": 1}, 2: {"id": 2, "post": True}})
    plan = build_plan(snap, MergeSettings(fields={"contact": {"post": "longest"}}))
    assert (plan.fields["post"].value, plan.fields["post"].source_id) == (True, 2)


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


def _compact(plan: MergePlan) -> dict:
    """The stored form worked out the slow, obvious way: the full asdict(), then every key of an inner
    object at its field's default and every None column of a row left out."""
    def defaults(cls):
        return {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}

    def strip(obj) -> dict:
        dflt = defaults(type(obj))
        return {k: v for k, v in dataclasses.asdict(obj).items() if k not in dflt or v != dflt[k]}

    full = dataclasses.asdict(plan)
    full["fields"] = {k: strip(v) for k, v in plan.fields.items()}
    for name in ("communications", "links", "conflicts", "access_warnings"):
        full[name] = [strip(x) for x in getattr(plan, name)]
    full["records"] = {k: {c: v for c, v in row.items() if v is not None} for k, row in full["records"].items()}
    return encode(full)


def test_plan_dict_and_json_hold_every_field_in_order(sample):
    # to_dict/to_json read the dataclasses' fields without vars(): nothing may be left out but defaults
    # and None columns, nothing reordered, and from_dict puts back what was left out
    for entity, groups in SAMPLE_GROUPS.items():
        for plan in plan_groups(sample, entity, groups, MergeSettings(conflict_policy="most_recent")):
            compact = _compact(plan)
            assert plan.to_dict() == compact
            assert plan.to_json() == json.dumps(compact, ensure_ascii=False, separators=(",", ":"))
            assert list(plan.to_dict()) == [f.name for f in dataclasses.fields(MergePlan)]  # every top-level key
            assert MergePlan.from_dict(json.loads(plan.to_json())) == plan


# -- the stored form: compact, and the full form of earlier versions still read ---------------------

def test_compact_plan_json_round_trips_every_kind_of_decision(sample):
    # conflicts open and settled, a note, repeats and dropped values, contact-company links with their
    # is_primary (True and False), an "update" link, an access warning, rows with None columns
    settings = MergeSettings(fields={"contact": {"web": "keep_primary"}})
    plan = plan_of(sample, "contact", (10, [10, 11, 12]), settings, choices={10: {"post": 11}},
                   group_ids={10: "contact-10"})
    plan.links.append(LinkMove("contact_companies", {"contact_id": 10, "company_id": 20}, "contact_id", 10, 10,
                               "update", False))
    assert [(c.field, c.resolved_by) for c in plan.conflicts] == [("post", "choice"), ("source", None)]
    assert plan.fields["tax_id"].note and {c.action for c in plan.communications} == {"keep", "move", "repeat", "drop"}
    assert {m.is_primary for m in plan.links} == {True, False, None} and plan.access_warnings
    assert plan.records[10]["birthdate"] is None and plan.records[11]["middle_name"] is None

    text = plan.to_json()
    assert text == json.dumps(plan.to_dict(), ensure_ascii=False, separators=(",", ":"))
    back = MergePlan.from_dict(json.loads(text))
    assert back == plan
    assert back.records[10]["birthdate"] is None and list(back.records[10]) == list(plan.records[10])
    assert MergePlan.from_dict(plan.to_dict()) == plan
    assert back.summary() == plan.summary() and back.changes() == plan.changes()

    # what was left out, and what was not
    data = json.loads(text)
    assert data["fields"]["address"] == {"value": "Москва, ул. Ленина, 1", "source_id": 10, "rule": "fill_empty"}
    assert data["fields"]["post"]["resolved_by"] == "choice" and data["fields"]["post"]["conflict"] is True
    assert "resolved_by" not in data["conflicts"][1] and "note" in data["fields"]["tax_id"]
    assert [c.get("repeat_of") for c in data["communications"]] == [c.repeat_of for c in plan.communications]
    assert sum("repeat_of" in c for c in data["communications"]) == 2
    cc = [m for m in data["links"] if m["table"] == "contact_companies"]
    assert [(m.get("action"), m["is_primary"]) for m in cc] == [("merge", True), (None, False), (None, False),
                                                                 ("update", False)]
    assert all("is_primary" not in m and "action" not in m for m in data["links"] if m["table"] != "contact_companies")
    assert "birthdate" not in data["records"]["10"] and "middle_name" not in data["records"]["11"]
    assert all("deleted_at" not in row for row in data["records"].values())
    assert data["records"]["11"]["birthdate"] == {"$d": "1980-05-17"}
    assert set(data) == {f.name for f in dataclasses.fields(MergePlan)}
    assert data["access_warnings"][0]["record_ids"] == [11]


# A plan as earlier versions stored it in dedup_groups.plan: every key of every object, every column
OLD_FULL_PLAN = """{"entity_type": "contact", "primary_id": 13, "duplicate_ids": [14], "fields": {
 "first_name": {"value": "Jonathan", "source_id": 13, "rule": "fill_empty", "conflict": true,
   "candidates": [[13, "Jonathan"], [14, "Jon"]], "resolved_by": "policy:keep_primary", "note": ""},
 "post": {"value": "CTO", "source_id": 14, "rule": "fill_empty", "conflict": false, "candidates": [],
   "resolved_by": null, "note": ""},
 "tax_id": {"value": null, "source_id": 13, "rule": "prefer_valid", "conflict": false, "candidates": [],
   "resolved_by": null, "note": "no valid value"},
 "created_at": {"value": {"$dt": "2021-03-01T10:00:00"}, "source_id": 14, "rule": "min", "conflict": false,
   "candidates": [], "resolved_by": null, "note": ""}},
 "communications": [
  {"id": 8, "entity_id": 13, "type": "email", "kind": "work", "value": "jon@acme.com", "key": "email:jon@acme.com",
   "action": "keep", "repeat_of": null},
  {"id": 9, "entity_id": 14, "type": "email", "kind": "work", "value": "JON@acme.com", "key": "email:jon@acme.com",
   "action": "repeat", "repeat_of": 8}],
 "links": [
  {"table": "deals", "key": {"id": 103}, "column": "contact_id", "from_id": 14, "to_id": 13, "action": "move",
   "is_primary": null},
  {"table": "contact_companies", "key": {"contact_id": 14, "company_id": 23}, "column": "contact_id",
   "from_id": 14, "to_id": 13, "action": "move", "is_primary": false}],
 "conflicts": [{"field": "first_name", "candidates": [[13, "Jonathan"], [14, "Jon"]], "value": "Jonathan",
   "source_id": 13, "resolved_by": "policy:keep_primary"}],
 "access_warnings": [{"user_id": 5, "name": "Jane Roe", "record_ids": [14],
   "message": "Jane Roe (#5) is responsible for contact #14 but not for the merged #13"}],
 "fingerprints": {"contacts:13": "0123456789abcdef0123", "contacts:14": "fedcba98765432100123"},
 "records": {
  "13": {"id": 13, "last_name": "Smith", "first_name": "Jonathan", "middle_name": null, "birthdate": null,
    "post": null, "address": null, "comments": null, "source": "web", "tax_id": null, "responsible_id": 4,
    "created_at": {"$dt": "2022-01-01T09:00:00"}, "modified_at": {"$dt": "2024-02-01T12:30:00.250000"},
    "deleted_at": null},
  "14": {"id": 14, "last_name": "Smith", "first_name": "Jon", "middle_name": "Paul", "birthdate": {"$d": "1979-12-31"},
    "post": "CTO", "address": null, "comments": null, "source": null, "tax_id": null, "responsible_id": 5,
    "created_at": {"$dt": "2021-03-01T10:00:00"}, "modified_at": {"$dt": "2023-06-01T08:00:00"},
    "deleted_at": null}},
 "delete_mode": "soft", "conflict_policy": "keep_primary", "group_id": "contact-13", "problems": [],
 "planned_at": {"$dt": "2024-05-01T10:00:00.123456"}}"""


def test_a_plan_stored_in_the_old_full_form_is_read_as_the_same_plan():
    row = {"id": None, "last_name": None, "first_name": None, "middle_name": None, "birthdate": None, "post": None,
           "address": None, "comments": None, "source": None, "tax_id": None, "responsible_id": None,
           "created_at": None, "modified_at": None, "deleted_at": None}
    expected = MergePlan(
        "contact", 13, [14],
        fields={"first_name": FieldDecision("Jonathan", 13, "fill_empty", True, [(13, "Jonathan"), (14, "Jon")],
                                            "policy:keep_primary"),
                "post": FieldDecision("CTO", 14, "fill_empty"),
                "tax_id": FieldDecision(None, 13, "prefer_valid", note="no valid value"),
                "created_at": FieldDecision(D(2021, 3, 1, 10), 14, "min")},
        communications=[CommDecision(8, 13, "email", "work", "jon@acme.com", "email:jon@acme.com", "keep"),
                        CommDecision(9, 14, "email", "work", "JON@acme.com", "email:jon@acme.com", "repeat", 8)],
        links=[LinkMove("deals", {"id": 103}, "contact_id", 14, 13),
               LinkMove("contact_companies", {"contact_id": 14, "company_id": 23}, "contact_id", 14, 13,
                        is_primary=False)],
        conflicts=[Conflict("first_name", [(13, "Jonathan"), (14, "Jon")], "Jonathan", 13, "policy:keep_primary")],
        access_warnings=[AccessWarning(5, "Jane Roe", [14],
                                       "Jane Roe (#5) is responsible for contact #14 but not for the merged #13")],
        fingerprints={"contacts:13": "0123456789abcdef0123", "contacts:14": "fedcba98765432100123"},
        records={13: {**row, "id": 13, "last_name": "Smith", "first_name": "Jonathan", "source": "web",
                      "responsible_id": 4, "created_at": D(2022, 1, 1, 9),
                      "modified_at": D(2024, 2, 1, 12, 30, 0, 250000)},
                 14: {**row, "id": 14, "last_name": "Smith", "first_name": "Jon", "middle_name": "Paul",
                      "birthdate": dt.date(1979, 12, 31), "post": "CTO", "responsible_id": 5,
                      "created_at": D(2021, 3, 1, 10), "modified_at": D(2023, 6, 1, 8)}},
        conflict_policy="keep_primary", group_id="contact-13", planned_at=D(2024, 5, 1, 10, 0, 0, 123456))
    old = json.loads(OLD_FULL_PLAN)
    assert MergePlan.from_dict(old) == expected
    # the same plan stored now: compact, and read back the same
    assert MergePlan.from_dict(json.loads(expected.to_json())) == expected
    assert len(expected.to_json()) < 0.85 * len(json.dumps(old, ensure_ascii=False))
    # stored old and read, it is stored again in the new form
    assert MergePlan.from_dict(old).to_json() == expected.to_json()
    with pytest.raises(ValueError, match="the merge plan of #13 has entity_type 'deal'"):
        MergePlan.from_dict({**old, "entity_type": "deal"})


def test_compact_plan_json_is_clearly_smaller(sample):
    for entity, groups in SAMPLE_GROUPS.items():
        for plan in plan_groups(sample, entity, groups, MergeSettings()):
            full = json.dumps(encode(dataclasses.asdict(plan)), ensure_ascii=False)  # as earlier versions stored it
            assert len(plan.to_json()) < 0.85 * len(full), (entity, plan.primary_id)
            assert MergePlan.from_dict(json.loads(full)) == plan


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


@pytest.mark.parametrize("entity", ["contact", "company", "lead"])
def test_snapshots_read_in_bulk_equal_snapshots_read_one_by_one(store, entity):
    """Long id lists (an array parameter on PostgreSQL, an expanding IN on SQLite) read the rows that
    short ones (a parameter per id) read, group by group."""
    from crm.demo import DemoSizes, generate_demo
    from crm import sqlin
    from merge_rules.snapshot import read_snapshots

    generate_demo(store, DemoSizes(contacts=150, companies=60, leads=60, managers=4), seed=3)
    ids = store.read_entities(entity)["id"].tolist()
    groups = [(ids[i], ids[i:i + 3]) for i in range(0, len(ids) - 2, 3)]
    assert len({i for _p, m in groups for i in m}) > sqlin.SMALL
    assert sqlin.size(ids, store.dialect) == (sqlin.ARRAY if store.dialect == "postgresql" else None)
    with store.engine.connect() as conn:
        bulk = read_snapshots(conn, entity, groups)
        links = 0
        for snap, (primary, members) in zip(bulk, groups, strict=True):
            alone = read_snapshot(conn, entity, primary, members)
            assert (snap.records, snap.comms, snap.links, snap.users) == (alone.records, alone.comms, alone.links,
                                                                          alone.users)
            assert snap.fingerprints() == alone.fingerprints()
            links += sum(map(len, snap.links.values())) + len(snap.comms)
    assert links > 0
