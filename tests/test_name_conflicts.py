"""Two spellings of one person's name are no merge conflict (a user probe: "Andrey" against "Андрей"
asked for a choice, "Chernov" against "Чернов" did not), while different names, forms, typos and
nicknames still ask: the name key of merge_rules.normalise, alone, in a rule and in a plan made from
a store (SQLite and PostgreSQL). And `crm-dedup include` of a record the run put in the group says
so and marks nothing (it said the record's "the same" mark had been withdrawn)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from merge_rules.grouping import CannotInclude, include_record
from merge_rules.normalise import conflict_key_for
from merge_rules.plan import plan_groups
from merge_rules.rules import Candidate, RuleContext, get_rule
from merge_rules.settings import MergeSettings
from merge_rules.together import load_together
from pipelines.cli import app as cli_app
from review.testing import load_review_sample

WHEN = dt.datetime(2024, 2, 1, 10, 0)

# one name in each group: Cyrillic and its usual Latin spellings (GOST, ICAO passports, BGN, German)
ONE_NAME = [
    ("first_name", ["Андрей", "Andrey", "Andrei", "Andrej", "андрей "]),
    ("first_name", ["Сергей", "Sergey", "Sergei", "Sergej"]),
    ("first_name", ["Алексей", "Alexey", "Aleksey", "Aleksei", "Alexei"]),
    ("first_name", ["Наталья", "Natalya", "Natalia", "Natalja", "Natal'ya"]),
    ("first_name", ["Ксения", "Kseniya", "Kseniia"]),
    ("first_name", ["Юлия", "Yuliya", "Iuliia", "Julija"]),
    ("first_name", ["Дмитрий", "Dmitry", "Dmitriy", "Dmitrii", "Dmitri", "Dmitrij"]),
    ("first_name", ["Евгений", "Yevgeny", "Evgeny", "Evgeniy", "Evgenii"]),
    ("first_name", ["Пётр", "Петр", "Pyotr", "Petr"]),
    ("first_name", ["Фёдор", "Fyodor", "Fedor"]),
    ("first_name", ["Юрий", "Yuri", "Yury", "Yuriy", "Iurii", "Jurij"]),
    ("first_name", ["Ярослав", "Yaroslav", "Iaroslav", "Jaroslav"]),
    ("first_name", ["Татьяна", "Tatyana", "Tatiana", "Tatjana"]),
    ("first_name", ["Илья", "Ilya", "Ilia", "Ilja"]),
    ("first_name", ["Михаил", "Mikhail", "Mihail"]),
    ("first_name", ["Николай", "Nikolay", "Nikolai", "Nikolaj"]),
    ("first_name", ["Людмила", "Lyudmila", "Liudmila"]),
    ("first_name", ["Вячеслав", "Vyacheslav", "Viacheslav"]),
    ("first_name", ["Мария", "Mariya", "Mariia"]),
    ("first_name", ["Ольга", "Olga"]),
    ("first_name", ["Игорь", "Igor"]),
    ("middle_name", ["Алексеевич", "Alekseyevich", "Alekseevich", "Alexeevich"]),
    ("middle_name", ["Сергеевна", "Sergeyevna", "Sergeevna"]),
    ("middle_name", ["Ильич", "Ilyich", "Ilich"]),
    ("last_name", ["Чернов", "Chernov"]),
    ("last_name", ["Иванов", "Ivanov", "Ivanoff", "Iwanow"]),
    ("last_name", ["Хабибуллин", "Khabibullin", "Habibullin"]),
    ("last_name", ["Щукин", "Shchukin", "Schukin", "Shhukin"]),
    ("last_name", ["Счастливцев", "Schastlivtsev"]),
    ("last_name", ["Цветков", "Tsvetkov", "Tzvetkov"]),
    ("last_name", ["Васильев", "Vasilyev", "Vasilev", "Vasil'ev"]),
    ("last_name", ["Соловьёв", "Solovyov", "Solovyev"]),
    ("last_name", ["Зайцев", "Zaytsev", "Zaitsev"]),
    ("last_name", ["Майоров", "Mayorov"]),  # йо after a vowel, not ё
    ("last_name", ["Ильин", "Ilyin", "Ilin"]),
    ("last_name", ["Чайковский", "Chaykovskiy", "Chaikovsky"]),
    ("last_name", ["Кириенко", "Kiriyenko", "Kirienko"]),
    ("last_name", ["Белый", "Bely", "Belyy", "Belyi"]),
    ("last_name", ["Объедков", "Obyedkov", "Obedkov"]),
]

# two names (or a form, a typo, a nickname): each pair stays a conflict
TWO_NAMES = [
    ("first_name", "Ivan", "Ivanna"), ("first_name", "Иван", "Ivanna"), ("first_name", "Alexey", "Alexandr"),
    ("first_name", "Алексей", "Aleksandr"), ("first_name", "Sergey", "Sergeev"), ("last_name", "Сергей", "Sergeev"),
    ("first_name", "Marina", "Marino"), ("last_name", "Petrov", "Petrova"), ("last_name", "Петров", "Petrova"),
    ("last_name", "Иванов", "Ивановв"), ("first_name", "Иван", "Ваня"), ("first_name", "Иван", "Пётр"),
    ("first_name", "Юлия", "Юля"), ("first_name", "Юлия", "Yulia"),  # Yulia: ICAO's Юля, the и not written
    ("first_name", "Надя", "Надия"), ("first_name", "Галя", "Галия"), ("first_name", "Евгений", "Евгения"),
    ("first_name", "Valery", "Валерия"), ("first_name", "Александр", "Александра"), ("first_name", "Даниил", "Данил"),
    ("first_name", "Анна", "Ана"), ("first_name", "Jon", "Jen"), ("first_name", "Jonathan", "Jon"),
    ("first_name", "Oleg", "Olga"), ("first_name", "Наталья", "Наталия"), ("last_name", "Быков", "Биков"),
    ("last_name", "Киренко", "Кириенко"), ("last_name", "Сходнев", "Шоднев"), ("first_name", "Andrey", "Andreev"),
]


@pytest.mark.parametrize(("field", "spellings"), ONE_NAME, ids=[s[1] for _f, s in ONE_NAME])
def test_the_spellings_of_one_name_have_one_key(field, spellings):
    key = conflict_key_for("contact", field)
    assert {s: key(s) for s in spellings} == {s: key(spellings[0]) for s in spellings}
    assert conflict_key_for("lead", field)(spellings[-1]) == key(spellings[0])  # a lead's name alike


@pytest.mark.parametrize(("field", "a", "b"), TWO_NAMES,
                         ids=[f"{a}-{b}" if (a + b).isascii() else f"{f}-{i}" for i, (f, a, b) in enumerate(TWO_NAMES)])
def test_different_names_keep_different_keys(field, a, b):
    key = conflict_key_for("contact", field)
    assert key(a) != key(b)


def test_the_rule_keeps_the_primarys_spelling_without_a_conflict():
    def settle(field, *values):
        cands = [Candidate(i, v, i == 1) for i, v in enumerate(values, start=1)]
        return get_rule("fill_empty").func(cands, RuleContext("contact", field))

    out = settle("first_name", "Андрей", "Andrey", "Andrei")
    assert (out.value, out.source_id, out.conflict) == ("Андрей", 1, False)
    out = settle("middle_name", "Alekseyevich", "Алексеевич")
    assert (out.value, out.source_id, out.conflict) == ("Alekseyevich", 1, False)
    assert settle("first_name", "Андрей", "Andrey", "Andreas").conflict is True  # one other name is enough
    assert settle("last_name", None, "Petrova", "Петров").conflict is True
    assert conflict_key_for("contact", "post")("Andrey") != conflict_key_for("contact", "post")("Андрей")  # names only


# -- in a plan made from the store --------------------------------------------------------------

def _two_record_groups(store, cases: list[tuple[str, str, str]], first_id: int) -> list[tuple[int, list[int]]]:
    """A group of two contacts per case, alike but for the case's field (the primary holds the first value)."""
    rows, groups = [], []
    for i, (field, a, b) in enumerate(cases):
        ids = [first_id + 2 * i, first_id + 2 * i + 1]
        for rid, value in zip(ids, (a, b)):
            row = dict(id=rid, last_name="Чернов", first_name="Андрей", middle_name="Алексеевич", post="Инженер",
                       created_at=WHEN, modified_at=WHEN, deleted_at=None)
            rows.append(dict(row, **{field: value}))
        groups.append((ids[0], ids))
    with store.engine.begin() as conn:
        store.insert(schema.contacts, rows, conn=conn)
    return groups


def test_a_plan_asks_for_no_choice_between_spellings_of_one_name_and_does_between_names(store):
    same = [(field, spellings[0], other) for field, spellings in ONE_NAME for other in spellings[1:2]]
    same += [("first_name", "Andrey", "Андрей"), ("first_name", "Sergei", "Сергей"), ("last_name", "Chernov", "Чернов")]
    groups = _two_record_groups(store, same + TWO_NAMES, 5000)
    plans = plan_groups(store, "contact", groups, MergeSettings(conflict_policy="ask"))
    assert [p.problems for p in plans] == [[]] * len(groups)
    for (field, a, b), plan in zip(same, plans[:len(same)]):
        assert plan.conflicts == [], (a, b, plan.conflicts)
        assert (plan.fields[field].value, plan.fields[field].source_id) == (a, plan.primary_id)  # the primary's
    for (field, a, b), plan in zip(TWO_NAMES, plans[len(same):]):
        assert [(c.field, c.candidates) for c in plan.conflicts] == [(field, [(plan.primary_id, a),
                                                                             (plan.primary_id + 1, b)])], (a, b)
        assert [c.field for c in plan.unresolved] == [field]


# -- `crm-dedup include` of a record the run put in the group -----------------------------------

def _together(store) -> list[tuple[int, int]]:
    return load_together(store, "contact")


def _group(store, gid: str) -> dict:
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(g).where(g.c.id == gid)).mappings().one())


def test_including_a_member_the_run_grouped_adds_nothing_and_says_so(store, tmp_path):
    gid = load_review_sample(store, tmp_path / "run")["groups"]["contact-10"]  # the run grouped 10, 11, 12
    before = _group(store, gid)
    with pytest.raises(CannotInclude) as info:
        include_record(store, gid, 11, None)
    said = str(info.value)
    assert said == (f"contact #11 is in group {gid} already (by the run's scores, best with #10: 0.995; "
                    "without a \"the same\" mark): nothing to add.")
    assert "withdrawn" not in said and "marked the same again" not in said
    assert _together(store) == [] and _group(store, gid) == before
    # the command line says the same and fails
    out = CliRunner().invoke(cli_app, ["include", gid, "12", "--db", store.url])
    assert out.exit_code == 1, out.output
    assert f"contact #12 is in group {gid} already (by the run's scores" in out.output
    assert "nothing to add" in out.output and "marked the same again" not in out.output
    assert _together(store) == []


def test_a_record_added_after_the_run_whose_mark_was_withdrawn_is_still_marked_again(store, tmp_path):
    """The case the message was written for: no pair of the run holds it, a person added it."""
    from merge_rules.grouping import withdraw_include

    gid = load_review_sample(store, tmp_path / "run")["groups"]["contact-10"]
    assert "Added contact #15" in include_record(store, gid, 15, None)
    withdraw_include(store, gid, 15, None)
    assert _together(store) == [] and 15 in _group(store, gid)["member_ids"]
    again = include_record(store, gid, 15, None)
    assert "with its \"the same\" mark withdrawn: marked the same again" in again
    assert _together(store) == [(10, 15)]
