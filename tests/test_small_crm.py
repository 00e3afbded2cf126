"""A small CRM (a few dozen records): the Fellegi-Sunter model is trained on a handful of candidate
pairs, too few for EM to see every agreement level among the matches. It must still find exact
copies, and never count an agreement against a match: the level weights of every comparison (levels
weakest first) never decrease from one level to the next stronger one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matchers.table import RoleTable
from scoring.find import find_duplicates
from scoring.model import monotone_m
from scoring.settings import MatchSettings

SURNAMES = ["Иванов", "Петров", "Сидоров", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
            "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв",
            "Борисов", "Яковлев", "Григорьев", "Романов", "Воробьёв", "Сергеев", "Кузьмин", "Фролов",
            "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв"]
FIRST = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья", "Кирилл", "Михаил"]
MIDDLE = ["Иванович", "Петрович", "Сергеевич", "Андреевич", "Викторович", "Олегович", "Юрьевич", "Павлович"]
LATIN = {"Александр": "alex", "Дмитрий": "dima", "Максим": "max", "Сергей": "serg", "Андрей": "andr",
         "Алексей": "alexey", "Артём": "artem", "Илья": "ilya", "Кирилл": "kir", "Михаил": "misha"}

# the CRM's own duplicates, which the model is trained on: calls logged twice (same name and phone, no
# e-mail, no patronymic) and a nickname with the same e-mail. No match among them agrees on a
# patronymic, so EM alone takes an equal patronymic for evidence against a match.
OWN = [(301, 11), (302, 13), (303, 15), (304, 17)]
NICKNAME = (311, 6, "Лёша")
# new records checked against the CRM with its model, as `crm-dedup check` does: exact copies (same
# name, patronymic and e-mail, no phone, so no deterministic rule lifts them: the model decides) and
# a copy with a typo in the surname
EXACT = [(101, 1), (102, 2), (103, 4)]
TYPO = (111, 9, "Навиков")


def people() -> list[dict]:
    """40 different people; every other one has a phone."""
    rows = []
    for i, last in enumerate(SURNAMES):
        first, middle = FIRST[i % len(FIRST)], MIDDLE[i * 3 % len(MIDDLE)]
        row = dict(id=i + 1, last_name=last, first_name=first, middle_name=middle,
                   email=[f"{LATIN[first]}.{i + 1}.client@mail.ru"])
        if i % 2 == 0:
            row["phone"] = [f"+7 916 {200 + i:03d}-{10 + i:02d}-{30 + i:02d}"]
        rows.append(row)
    return rows


def crm_rows() -> list[dict]:
    rows = people()
    by = {r["id"]: r for r in rows}
    own = [dict(id=new, last_name=by[of]["last_name"], first_name=by[of]["first_name"], phone=list(by[of]["phone"]))
           for new, of in OWN]
    new, of, first = NICKNAME
    own.append(dict(id=new, last_name=by[of]["last_name"], first_name=first, email=list(by[of]["email"])))
    return rows + own


def new_rows() -> list[dict]:
    by = {r["id"]: r for r in people()}
    rows = [dict(id=new, last_name=by[of]["last_name"], first_name=by[of]["first_name"],
                 middle_name=by[of]["middle_name"], email=list(by[of]["email"])) for new, of in EXACT]
    new, of, last = TYPO
    rows.append(dict(id=new, last_name=last, first_name=by[of]["first_name"], email=list(by[of]["email"])))
    return rows


def build(rows: list[dict]) -> RoleTable:
    records, values = [], []
    for row in rows:
        row = dict(row)
        for role in ("phone", "email"):
            values += [{"id": row["id"], "role": role, "raw": v} for v in row.pop(role, [])]
        records.append(row)
    frame = pd.DataFrame(records).set_index("id").reindex(columns=["last_name", "first_name", "middle_name"])
    return RoleTable("contact", frame.astype(object), pd.DataFrame(values, columns=["id", "role", "raw"]))


@pytest.fixture(scope="module")
def crm():
    return find_duplicates(build(crm_rows()), MatchSettings())


@pytest.fixture(scope="module")
def checked(crm):
    return find_duplicates(build(crm_rows() + new_rows()), MatchSettings(), model=crm.model,
                           changed_ids=[r["id"] for r in new_rows()])


def tier(result, x, y) -> str | None:
    p = result.pairs
    rows = p[(p["id_a"] == min(x, y)) & (p["id_b"] == max(x, y))]
    return rows.iloc[0]["tier"] if len(rows) else None


def test_the_model_is_trained_on_few_pairs(crm):
    # the situation under test: no blocking rule has the 50 pairs an EM session needs
    assert crm.model.kind == "fellegi-sunter" and crm.model.training["sessions"] == []
    assert crm.model.training["candidate_pairs"] < 50


def test_the_crms_own_duplicates_are_found(crm):
    for new, of in OWN:
        assert tier(crm, new, of) in ("certain", "probable")
    assert tier(crm, NICKNAME[0], NICKNAME[1]) in ("certain", "probable", "possible")


@pytest.mark.parametrize("new,of", EXACT)
def test_exact_copies_are_at_least_probable(checked, new, of):
    assert tier(checked, new, of) in ("certain", "probable"), checked.pairs[["id_a", "id_b", "probability",
                                                                              "explanation"]]
    groups = checked.groups.set_index("id")["group_id"]
    assert groups[new] == groups[of]


def test_a_copy_with_a_typo_is_shown(checked):
    assert tier(checked, TYPO[0], TYPO[1]) in ("certain", "probable", "possible")


def test_level_weights_never_fall_towards_the_stronger_level(crm):
    """Every comparison's weights (levels weakest first, 'different' first) are non-decreasing:
    in particular no agreement level weighs less than its comparison's disagreement level."""
    for name, levels, w in zip(crm.model.comparisons, crm.model.levels, crm.model.level_weights()):
        drops = [(levels[k], round(float(w[k]), 2), levels[k + 1], round(float(w[k + 1]), 2))
                 for k in range(len(w) - 1) if w[k + 1] < w[k] - 1e-9]
        assert not drops, (name, drops)
        assert (w[1:] >= w[0] - 1e-9).all(), (name, list(zip(levels, w)))


@pytest.mark.parametrize("which", ["crm", "checked"])
def test_no_explanation_counts_an_agreement_against_a_match(request, which):
    result = request.getfixturevalue(which)
    against = result.pairs["explanation"].str.extract(r"Against: ([^.]*)")[0].dropna()
    for text in against:
        for part in text.split("; "):  # only disagreements may stand against a match
            assert "different" in part, text


def test_monotone_m_pools_only_the_violating_levels_and_keeps_the_total():
    m = np.array([0.1, 1e-6, 0.3, 0.6])
    u = np.array([0.8, 0.1, 0.05, 0.05])
    out = monotone_m(m, u)
    assert (np.diff(out / u) >= -1e-12).all()
    assert out.sum() == pytest.approx(m.sum())
    assert out[2:] == pytest.approx(m[2:])  # the levels above the pooled ones keep their m
    ordered = np.array([0.05, 0.15, 0.8])
    assert monotone_m(ordered, np.array([0.9, 0.08, 0.02])) == pytest.approx(ordered)
