"""An English name written by ear in the other script is no merge conflict, as two romanisations of a Russian
name are none (tests/test_name_conflicts.py): Mary / Мэри, John / Джон, Smith / Смит, Johnson / Джонсон.
On the demo CRM of a million contacts a fifth of the groups asked a person to choose between such spellings
(10,795 first names, 9,949 surnames, of 123,059 plans). Different names still ask (Anna / Инна, Smith / Браун,
a surname too short to tell by ear: Hall / Холл could be Хилл), and so does a name in a field that is not a
person's name. A German patronymic (Alexandrowitsch) is the Russian one (Александрович).

The rule (fill_empty) alone, and plans made from a store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from merge_rules.normalise import conflict_key_for
from merge_rules.plan import plan_groups
from merge_rules.rules import Candidate, RuleContext, get_rule
from merge_rules.settings import MergeSettings
from test_name_conflicts import _two_record_groups

BY_EAR = [("first_name", "Mary", "Мэри"), ("first_name", "John", "Джон"), ("first_name", "Sarah", "Сара"),
          ("first_name", "Patricia", "Патриция"), ("first_name", "Jennifer", "Дженнифер"),
          ("first_name", "Джеймс", "James"), ("last_name", "Smith", "Смит"), ("last_name", "Brown", "Браун"),
          ("last_name", "Johnson", "Джонсон"), ("last_name", "Williams", "Уильямс"), ("last_name", "Davis", "Дэвис"),
          ("last_name", "Миллер", "Miller"), ("last_name", "Anderson", "Андерсон")]
STILL_ASK = [("first_name", "Anna", "Инна"), ("first_name", "Mary", "Мария"), ("last_name", "Smith", "Браун"),
             ("last_name", "Hall", "Холл"), ("last_name", "Hall", "Хилл"), ("first_name", "John", "Джек"),
             ("post", "Smith", "Смит"), ("last_name", "Sergeev", "Сергей"), ("last_name", "Иванов", "Ivana")]


def fill_empty(field: str, *values: str):
    cands = [Candidate(i, v, i == 1) for i, v in enumerate(values, 1)]
    return get_rule("fill_empty").func(cands, RuleContext("contact", field))


@pytest.mark.parametrize(("field", "a", "b"), BY_EAR, ids=[a for _f, a, _b in BY_EAR])
def test_a_name_written_by_ear_in_the_other_script_is_no_conflict(field, a, b):
    out = fill_empty(field, a, b)
    assert (out.value, out.source_id, out.conflict) == (a, 1, False)
    assert fill_empty(field, b, a).conflict is False  # whichever is the primary's
    assert get_rule("fill_empty").func([Candidate(1, a, True), Candidate(2, b, False)],
                                       RuleContext("lead", field)).conflict is False  # a lead's name alike


@pytest.mark.parametrize(("field", "a", "b"), STILL_ASK, ids=[f"{f}-{i}" for i, (f, _a, _b) in enumerate(STILL_ASK)])
def test_other_names_still_ask(field, a, b):
    assert fill_empty(field, a, b).conflict is True


def test_a_third_name_among_spellings_by_ear_asks():
    assert fill_empty("last_name", "Smith", "Смит", "SMITH").conflict is False
    assert fill_empty("last_name", "Smith", "Смит", "Браун").conflict is True


def test_a_german_patronymic_is_the_russian_one():
    key = conflict_key_for("contact", "middle_name")
    for german, russian in [("Alexandrowitsch", "Александрович"), ("Dmitriewitsch", "Дмитриевич"),
                            ("Walerewitsch", "Валерьевич"), ("Sergeewitsch", "Сергеевич")]:
        assert key(german) == key(russian), german
    assert conflict_key_for("contact", "last_name")("Tschernow") == conflict_key_for("contact", "last_name")("Чернов")
    assert key("Alexandrowitsch") != key("Алексеевич")


def test_a_plan_asks_for_no_choice_between_a_name_and_its_spelling_by_ear(store):
    groups = _two_record_groups(store, BY_EAR + STILL_ASK, 7000)
    plans = plan_groups(store, "contact", groups, MergeSettings(conflict_policy="ask"))
    assert [p.problems for p in plans] == [[]] * len(groups)
    for (field, a, _b), plan in zip(BY_EAR, plans):
        assert plan.conflicts == [], (a, plan.conflicts)
        assert (plan.fields[field].value, plan.fields[field].source_id) == (a, plan.primary_id)
    for (field, a, b), plan in zip(STILL_ASK, plans[len(BY_EAR):]):
        assert [(c.field, c.candidates) for c in plan.conflicts] == [(field, [(plan.primary_id, a),
                                                                             (plan.primary_id + 1, b)])], (a, b)
