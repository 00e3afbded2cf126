"""A firm's branches share its INN and differ in their KPP (the user's probe: ПАО Сбербанк and three
branches were one "probable" group, lifted by the same-tax-id rule, and merging it gave one branch
another's address and dropped both KPPs).

Same INN and two different KPPs: held at "possible" as branches, never lifted, never in one group.
Same INN and the same KPP, or a KPP on one record only: as before (the rule lifts them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm.demo import DemoSizes, generate_demo
from crm.readers import load_role_table
from crm.store import Store
from matchers.prepare import prepare
from scoring.find import APART, HELD_AT, HELD_REASONS, find_duplicates
from scoring.settings import MatchSettings
from test_chain_guard import cluster, model_for, table
from test_scoring_cases import group_of, pair, with_cases

BRANCHES = "same INN, different KPP: branches of one firm"
# the probe: the head office without a KPP, the Moscow bank, and two records of the North-West bank
PROBE = [
    dict(id=900301, company="ПАО Сбербанк", tax_id="7707083893", address="Москва, ул. Вавилова, 19",
         phone=["+7 495 500-55-50"]),
    dict(id=900302, company="Московский банк ПАО Сбербанк", tax_id="7707083893/770701001",
         address="Москва, ул. Большая Андроньевская, 6", phone=["+7 495 957-57-31"]),
    dict(id=900303, company="Северо-Западный банк ПАО Сбербанк", tax_id="ИНН 7707083893 КПП 784243001",
         address="Санкт-Петербург, ул. Красного Текстильщика, 2", phone=["+7 812 329-87-00"]),
    dict(id=900304, company="Сбербанк, Калининградское отделение", tax_id="ИНН 7707083893 КПП 784243001",
         address="Калининград, ул. Леонова, 12", phone=["+7 4012 59-61-00"]),
]
OTHER_BRANCH = [(900302, 900303), (900302, 900304)]


def test_the_branch_hold_is_one_that_keeps_records_apart():
    assert HELD_REASONS.index(BRANCHES) in APART


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """The probe among a small demo CRM's companies, with the model trained on them."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('branches') / 'crm.db'}")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=50, companies=400, leads=10), seed=7)
    try:
        base = load_role_table(store, "company")
    finally:
        store.dispose()
    return find_duplicates(with_cases(base, PROBE), MatchSettings())


def test_branches_of_one_firm_are_not_grouped(found):
    assert group_of(found, 900302) != group_of(found, 900303)
    assert group_of(found, 900302) != group_of(found, 900304)
    for x, y in OTHER_BRANCH:
        row = pair(found, x, y)
        if row is not None:  # listed at all: held, and not lifted by the same tax id
            assert row["tier"] == "possible", row
            assert row["explanation"].endswith(HELD_AT + BRANCHES), row["explanation"]
            assert "Rule: same tax id" not in row["explanation"]


def test_the_same_kpp_or_a_kpp_on_one_record_only_is_lifted_as_before(found):
    same = pair(found, 900303, 900304)
    assert same is not None and same["tier"] in ("certain", "probable"), same
    assert group_of(found, 900303) == group_of(found, 900304)
    if "Rule: same tax id" in same["explanation"]:
        assert same["explanation"].endswith("Rule: same tax id and KPP")
    for other in (900302, 900303, 900304):  # the head office has no KPP
        row = pair(found, 900301, other)
        assert row is not None and row["tier"] in ("certain", "probable"), row
        assert "Held at possible" not in row["explanation"]
        if "Rule: same tax id" in row["explanation"]:
            assert "a KPP on both records would tell them apart" in row["explanation"]
    # the head office links all three, but the chain through it is cut between two branches
    assert group_of(found, 900301) in (group_of(found, 900302), group_of(found, 900303))


def test_no_group_holds_two_kpps_of_one_inn(found):
    p = found.prepared
    kpp = pd.Series(p.records["kpp"].to_numpy(), index=p.ids)
    inn = pd.Series(p.records["tax_id"].to_numpy(), index=p.ids)
    members = found.groups[found.groups["tier"] != ""]
    for _, ids in members.groupby("group_id")["id"]:
        for one in inn[ids].dropna().unique():
            assert kpp[ids][inn[ids] == one].dropna().nunique() <= 1, ids.tolist()


def scored(rows, **settings):
    """find_duplicates with weights fixed by hand (test_chain_guard.model_for): the scores do not
    depend on training, so that the rule, not the model, is what is tested."""
    t = table("company", rows)
    return find_duplicates(table("company", rows), MatchSettings(**settings), model=model_for(prepare(t)))


def test_branches_are_held_and_the_same_tax_id_does_not_lift_them():
    r = scored(PROBE)
    for x, y in OTHER_BRANCH:
        row = pair(r, x, y)  # (titles, phones and addresses differ: below "possible", not listed)
        assert row is None or (row["tier"] == "possible" and row["explanation"].endswith(HELD_AT + BRANCHES)
                               and "Rule: same tax id" not in row["explanation"]), row
        assert group_of(r, x) != group_of(r, y)
    row = pair(r, 900303, 900304)
    assert row["tier"] == "probable" and row["explanation"].endswith("Rule: same tax id and KPP"), row
    row = pair(r, 900301, 900302)
    assert row["tier"] == "probable", row
    assert row["explanation"].endswith(
        "Rule: same tax id (a company's branches share it: a KPP on both records would tell them apart)")


def test_branches_that_share_title_phone_and_site_are_still_held():
    """All the rest agreeing is no evidence against the KPPs: a firm's branches share its title, its
    federal phone line and its site. Held however high the score."""
    rows = [dict(id=1, company="ПАО Сбербанк", tax_id="7707083893/770701001", address="Москва, ул. Вавилова, 19",
                 phone=["8 800 555-55-50"], email=["sberbank@sberbank.ru"]),
            dict(id=2, company="ПАО Сбербанк", tax_id="7707083893/784243001",
                 address="Санкт-Петербург, ул. Красного Текстильщика, 2", phone=["+7 800 555 55 50"],
                 email=["sberbank@sberbank.ru"])]
    r = scored(rows)
    row = pair(r, 1, 2)
    assert row is not None and row["tier"] == "possible", row
    assert row["explanation"].endswith(HELD_AT + BRANCHES)
    assert r.group_table.empty
    same_kpp = [dict(rows[0]), dict(rows[1], tax_id="ИНН 7707083893 КПП 770701001")]
    assert pair(scored(same_kpp), 1, 2)["tier"] in ("certain", "probable")


def test_without_hold_rules_the_same_tax_id_still_does_not_lift_branches():
    r = scored(PROBE, hold_rules=False)
    for x, y in OTHER_BRANCH:
        row = pair(r, x, y)
        assert row is None or (row["tier"] == "possible" and "Rule: same tax id" not in row["explanation"]
                               and "Held at possible" not in row["explanation"]), row
    assert pair(r, 900303, 900304)["tier"] == "probable"


def test_the_chaining_guard_keeps_apart_branches_no_rule_paired():
    """Only the pairs with the head office (no KPP) and of the two North-West records are scored:
    the guard compares the branch pairs itself, and the hold rule keeps them out of one group."""
    pairs = [(900301, 900302, 0.95), (900301, 900303, 0.97), (900301, 900304, 0.96), (900303, 900304, 0.99)]
    groups, _ = cluster(PROBE, pairs, settings=MatchSettings(chain_guard_probability=0.0))
    assert groups[900302] != groups[900303] and groups[900303] == groups[900304]
    assert groups[900301] == groups[900303]  # joined where its pairs are strongest; the Moscow bank left out
    off, _ = cluster(PROBE, pairs, settings=MatchSettings(chain_guard_probability=0.0, hold_rules=False))
    assert len({off[i] for i in off}) == 1


def test_a_kpp_needs_the_same_valid_inn():
    rows = [dict(id=1, company="Ромашка", tax_id="7707083893/770701001"),
            dict(id=2, company="Ромашка", tax_id="7707083894/784243001"),  # a wrong INN: no KPP kept
            dict(id=3, company="Ромашка", tax_id="500100732259")]
    p = prepare(table("company", rows))
    assert p.records["kpp"].tolist() == ["770701001", None, None]
    assert np.asarray(p.records["tax_id"].isna()).tolist() == [False, True, False]
