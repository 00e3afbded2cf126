"""The chaining guard cuts a chain only on evidence that two records differ, and a record a cut
leaves alone is reported, never dropped silently (probe B, item 3: a certain duplicate in no group).

Hand-made records, no database: the pairs are given as find scores them, and the clustering runs
as find_duplicates runs it (a pair no blocking rule proposed is compared and scored by the guard)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matchers.compare import comparisons_for
from matchers.prepare import prepare
from matchers.table import RoleTable
from scoring.cluster import cut_off, guard_keeps_apart
from scoring.find import _cluster, find_duplicates
from scoring.model import LogisticModel
from scoring.settings import MatchSettings

# the tester's companies: 2-3 certain (title, phone, site), 1-3 probable, 32 an old record with
# the tax id and address of 1 and 2 but no phone, e-mail or site: nothing says 3 and 32 differ
ROMASHKA = [
    dict(id=900001, company="ООО «Ромашка»", address="г. Москва, ул. Ленина, 1", tax_id="7701123451",
         phone=["+7 495 123-45-67"], email=["info@romashka.ru"]),
    dict(id=900002, company='Общество с ограниченной ответственностью "Ромашка"', address="Москва, Ленина 1",
         tax_id="7701123451", phone=["8 (495) 123-45-67"]),
    dict(id=900003, company="Romashka LLC", address="Moscow, Lenina str. 1", phone=["+74951234567"],
         email=["sales@romashka.ru"]),
    dict(id=900032, company="ЗАО «Ромашка»", address="Москва, Ленина 1", tax_id="7701123451"),
]
# the scored pairs of the tester's pairs.parquet (900003-900032 is not among them)
ROMASHKA_PAIRS = [(900001, 900002, 0.999995), (900002, 900032, 0.999964), (900002, 900003, 0.997655),
                  (900001, 900003, 0.964821), (900001, 900032, 0.9)]
PRIOR_BITS = -12.0  # a candidate pair is a duplicate about 1 time in 4,000 (the tester's model: 1 in 4,200)


def table(entity: str, rows: list[dict]) -> RoleTable:
    records, values = [], []
    for row in rows:
        row = dict(row)
        for role in ("phone", "email"):
            values += [{"id": row["id"], "role": role, "raw": v} for v in row.pop(role, [])]
        records.append(row)
    return RoleTable(entity, pd.DataFrame(records).set_index("id"), pd.DataFrame(values, columns=["id", "role", "raw"]))


def model_for(p) -> LogisticModel:
    """Weights in bits like a trained model's: the lowest level of each comparison against, the top
    ones for; a comparison that cannot be made (a value missing) weighs nothing."""
    comps = comparisons_for(p)
    coef = [np.linspace(-6.0, 10.0, len(c.levels)).round(2).tolist() for c in comps]
    return LogisticModel([c.name for c in comps], [list(c.levels) for c in comps], coef, PRIOR_BITS)


def cluster(rows: list[dict], pairs: list[tuple[int, int, float]], *, entity: str = "company",
            skips: set[tuple] = frozenset(), apart: set[tuple] = frozenset(), settings: MatchSettings | None = None):
    """{id: group label} from the clustering find_duplicates runs, over these scored pairs."""
    p = prepare(table(entity, rows))
    pos = {int(i): k for k, i in enumerate(p.ids)}
    a = np.array([pos[x] for x, _, _ in pairs])
    b = np.array([pos[y] for _, y, _ in pairs])
    prob = np.array([s for _, _, s in pairs])
    held = np.array([(x, y) in apart for x, y, _ in pairs])
    labels, strength = _cluster(p, a, b, prob, comparisons_for(p), model_for(p), settings or MatchSettings(),
                                set(skips), apart=held)
    return {int(i): int(labels[k]) for k, i in enumerate(p.ids)}, (p, a, b, prob, labels, strength)


def test_a_certain_duplicate_is_not_cut_off_for_lacking_evidence_against_a_third_member():
    groups, _ = cluster(ROMASHKA, ROMASHKA_PAIRS)
    assert groups[900003] == groups[900002]  # the certain pair stays together
    assert len({groups[i] for i in (900001, 900002, 900003, 900032)}) == 1


def test_a_fourth_record_linked_to_the_first_joins_the_same_group():
    rows = ROMASHKA + [dict(id=900034, company="Ромашка", phone=["+7 (495) 123-45-67"])]
    pairs = ROMASHKA_PAIRS + [(900001, 900034, 0.999769)]
    groups, _ = cluster(rows, pairs)
    assert len({groups[i] for i in (900001, 900002, 900003, 900032, 900034)}) == 1


def test_a_pair_scored_low_on_real_disagreement_still_cuts_the_chain():
    # 900003-900032 scored, far below the prior: what was compared says two companies
    groups, (p, a, b, prob, labels, _) = cluster(ROMASHKA, ROMASHKA_PAIRS + [(900003, 900032, 1e-7)])
    assert groups[900003] != groups[900032]
    assert groups[900001] == groups[900002]
    # ... and the record the cut left alone is reported with its strongest partner
    lone, partner, score = cut_off(labels, a, b, prob, MatchSettings().thresholds.probable)
    assert [int(p.ids[x]) for x in lone] == [900003]
    assert [int(p.ids[y]) for y in partner] == [900002]
    assert score[0] == 0.997655


def test_a_skipped_pair_never_shares_a_group_and_the_record_left_out_is_reported():
    groups, (p, a, b, prob, labels, _) = cluster(ROMASHKA, ROMASHKA_PAIRS, skips={(900003, 900032)})
    assert groups[900003] != groups[900032]
    lone, partner, _ = cut_off(labels, a, b, prob, MatchSettings().thresholds.probable)
    assert [int(p.ids[x]) for x in lone] == [900003] and [int(p.ids[y]) for y in partner] == [900002]


def test_a_scored_pair_held_apart_never_shares_a_group():
    pairs = ROMASHKA_PAIRS + [(900003, 900032, 0.5)]
    groups, _ = cluster(ROMASHKA, pairs, apart={(900003, 900032)})
    assert groups[900003] != groups[900032]


def test_an_unscored_pair_a_hold_rule_separates_never_shares_a_group():
    # А. matches both; Алексей and Андрей are two people, a pair no blocking rule proposed here
    rows = [dict(id=1, last_name="Кузьмин", first_name="А.", phone=["+7 916 111-02-24"]),
            dict(id=2, last_name="Кузьмин", first_name="Алексей", phone=["+79161110224"]),
            dict(id=3, last_name="Кузьмин", first_name="Андрей", phone=["8 (916) 111-02-24"])]
    # a threshold no score reaches: only the hold rule can keep them apart
    groups, _ = cluster(rows, [(1, 2, 0.999), (1, 3, 0.99)], entity="contact",
                        settings=MatchSettings(chain_guard_probability=0.0))
    assert groups[2] != groups[3]
    assert groups[1] == groups[2]


def test_the_guard_rule_separates_disagreement_from_missing_evidence():
    prior = PRIOR_BITS
    at_prior = 1 / (1 + 2.0 ** -prior)
    prob = np.array([at_prior, 8 * at_prior, at_prior / 8, at_prior / 8, 0.2, 0.9])
    held = np.array([False, False, False, True, False, True])
    cut = guard_keeps_apart(prob, held, 0.05, prior)
    # nothing compared / some weak agreement: kept; net disagreement: cut; held: always cut;
    # above the threshold: kept unless held
    assert cut.tolist() == [False, False, True, True, False, True]
    # a high prior: the threshold decides
    assert guard_keeps_apart(np.array([0.01, 0.1]), np.zeros(2, bool), 0.05, 0.0).tolist() == [True, False]


def test_find_duplicates_lists_the_record_left_out_on_the_group():
    """End to end with a given model: the skipped pair keeps 900003 out of the group of 900001/900002,
    and the group says so."""
    rows = [dict(id=1, company="ООО «Лютик»", phone=["+7 495 765-43-21"], email=["info@lutik.ru"]),
            dict(id=2, company="Лютик", phone=["8 495 765 43 21"], email=["info@lutik.ru"]),
            dict(id=3, company="ООО Лютик", phone=["+74957654321"])]
    t = table("company", rows)
    model = model_for(prepare(t))
    plain = find_duplicates(t, MatchSettings(), model=model)
    assert plain.groups.set_index("id")["group_id"].nunique() == 1
    assert plain.group_table["cut_off"].map(len).sum() == 0
    r = find_duplicates(table("company", rows), MatchSettings(), model=model, skips={(1, 3), (2, 3)})
    g = r.groups.set_index("id")["group_id"]
    assert g[1] == g[2] != g[3]
    assert r.group_table.set_index("group_id").loc[g[1], "cut_off"] == [3]


# company-1802 of a user's run: pairs 1.0, 1.0 and 0.9819, stored at 0.9819 "probable". A group's score is
# the weakest pair of a maximum spanning tree of its pairs (docs/run_folder.md), here 1.0, whether or not
# anything in the table is held apart or skipped.
TRIO = ROMASHKA[:3] + [dict(id=900099, company="ИП Васильков", phone=["+7 495 000-11-22"])]
TRIO_PAIRS = [(900001, 900002, 1.0), (900002, 900003, 1.0), (900001, 900003, 0.9819)]


@pytest.mark.parametrize("case", ["nothing held", "no chaining guard", "a skip", "a pair held apart"])
def test_a_groups_score_is_its_spanning_trees_weakest_pair_with_or_without_cuts(case):
    # (a pair held apart cuts a chain only inside a would-be group: there, the fourth is probable with 3)
    pairs = TRIO_PAIRS + [(900003, 900099, 0.95 if case == "a pair held apart" else 0.6)]
    kwargs = {"no chaining guard": dict(settings=MatchSettings(chain_guard=False)),
              "a skip": dict(skips={(900001, 900099)}),
              "a pair held apart": dict(apart={(900003, 900099)})}.get(case, {})
    groups, (p, *_, strength) = cluster(TRIO, pairs, **kwargs)
    assert len({groups[i] for i in (900001, 900002, 900003)}) == 1 and groups[900099] != groups[900001]
    pos = {int(i): k for k, i in enumerate(p.ids)}
    assert [strength[pos[i]] for i in (900001, 900002, 900003)] == [1.0, 1.0, 1.0]
    assert np.isnan(strength[pos[900099]])


def _trio_model(p) -> LogisticModel:
    """Bits chosen so that 1-2 and 2-3 (title, a phone, the e-mail) score exactly 1.0 and 1-3
    (title and e-mail, two other phones) about 0.97."""
    comps = comparisons_for(p)
    top = {"company": 40.0, "phone": 40.0, "email": 7.0}
    bottom = {"company": -6.0, "phone": -30.0, "email": -6.0}
    coef = [[bottom.get(c.name, 0.0)] + [0.0] * (len(c.levels) - 2) + [top.get(c.name, 0.0)] for c in comps]
    return LogisticModel([c.name for c in comps], [list(c.levels) for c in comps], coef, PRIOR_BITS)


@pytest.mark.parametrize("skips", [set(), {(3, 4)}])
def test_find_duplicates_scores_a_group_by_its_spanning_tree(skips):
    rows = [dict(id=1, company="ООО «Лютик»", phone=["+7 495 765-43-21"], email=["zakupki@lutik.ru"]),
            dict(id=2, company="Лютик", phone=["8 495 765 43 21", "+7 495 111-22-33"], email=["zakupki@lutik.ru"]),
            dict(id=3, company="ООО Лютик", phone=["+74951112233"], email=["zakupki@lutik.ru"]),
            dict(id=4, company="АО Василёк", phone=["+7 812 000-00-01"])]
    t = table("company", rows)
    r = find_duplicates(t, MatchSettings(), model=_trio_model(prepare(t)), skips=skips)
    prob = r.pairs.set_index(["id_a", "id_b"])["probability"]
    assert prob[(1, 2)] == prob[(2, 3)] == 1.0 and 0.9 < prob[(1, 3)] < MatchSettings().thresholds.certain
    assert len(r.group_table) == 1
    group = r.group_table.iloc[0]
    assert sorted(group["member_ids"]) == [1, 2, 3]
    assert group["score"] == 1.0 and group["tier"] == "certain"
