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
    # Latin -ia, -iya, -iia after a consonant is ия and ья alike (Maria, Natalia), so Наталия is Наталья
    ("first_name", ["Наталья", "Natalya", "Natalia", "Natalja", "Natal'ya", "Наталия", "Nataliya"]),
    ("first_name", ["Ксения", "Kseniya", "Kseniia", "Ksenia", "Xenia", "Ksenija"]),
    ("first_name", ["Юлия", "Yuliya", "Iuliia", "Julija", "Yulia", "Julia"]),
    ("first_name", ["Дарья", "Daria", "Darya", "Dar'ya", "Darja"]),
    ("first_name", ["Анастасия", "Anastasia", "Anastasiya", "Anastasiia"]),
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
    ("first_name", ["Людмила", "Lyudmila", "Liudmila", "Ludmila", "Ljudmila"]),
    ("first_name", ["Любовь", "Lyubov", "Lubov", "Liubov", "Lyubov'"]),
    ("first_name", ["Вячеслав", "Vyacheslav", "Viacheslav"]),
    ("first_name", ["Мария", "Mariya", "Mariia", "Maria", "Marija"]),
    ("first_name", ["Артём", "Artem", "Артем", "Artyom", "Artiom", "Artjom", "Artëm"]),
    ("first_name", ["Семён", "Semyon", "Semion", "Semen"]),
    ("first_name", ["Алёна", "Alyona", "Aliona", "Alena"]),
    ("first_name", ["Ольга", "Olga"]),
    ("first_name", ["Игорь", "Igor"]),
    ("middle_name", ["Алексеевич", "Alekseyevich", "Alekseevich", "Alexeevich"]),
    ("middle_name", ["Сергеевна", "Sergeyevna", "Sergeevna"]),
    ("middle_name", ["Ильич", "Ilyich", "Ilich"]),
    ("middle_name", ["Юрьевич", "Yuryevich", "Yurievich", "Iurevich", "Jur'evich"]),
    ("middle_name", ["Дмитриевна", "Dmitriyevna", "Dmitrievna"]),
    ("last_name", ["Чернов", "Chernov"]),
    ("last_name", ["Иванов", "Ivanov", "Ivanoff", "Iwanow"]),
    ("last_name", ["Хабибуллин", "Khabibullin", "Habibullin"]),
    ("last_name", ["Щукин", "Shchukin", "Schukin", "Shhukin"]),
    ("last_name", ["Счастливцев", "Schastlivtsev"]),
    ("last_name", ["Цветков", "Tsvetkov", "Tzvetkov", "Tcvetkov", "Czvetkov"]),
    ("last_name", ["Васильев", "Vasilyev", "Vasilev", "Vasil'ev", "Vasiliev", "Vasiljev"]),
    ("last_name", ["Васильева", "Vasilyeva", "Vasileva", "Vasilieva"]),
    ("last_name", ["Григорьев", "Grigoryev", "Grigorev", "Grigoriev"]),
    ("last_name", ["Дмитриев", "Dmitriyev", "Dmitriev"]),
    ("last_name", ["Соловьёв", "Solovyov", "Solovyev", "Soloviev", "Soloviov", "Solov'ëv"]),
    ("last_name", ["Зайцев", "Zaytsev", "Zaitsev", "Zaitcev"]),
    ("last_name", ["Жуков", "Zhukov", "Žukov"]),
    ("last_name", ["Клюев", "Klyuev", "Kliuev", "Kluev"]),
    ("last_name", ["Майоров", "Mayorov"]),  # йо after a vowel, not ё
    ("last_name", ["Ильин", "Ilyin", "Ilin"]),
    ("last_name", ["Чайковский", "Chaykovskiy", "Chaikovsky"]),
    ("last_name", ["Кириенко", "Kiriyenko", "Kirienko"]),
    ("last_name", ["Белый", "Bely", "Belyy", "Belyi"]),
    ("last_name", ["Объедков", "Obyedkov", "Obedkov"]),
    # Latin io after d, r, v is ио (Greek and Latin names), not ё; -ёв after any consonant is ё
    ("first_name", ["Дионис", "Dionis"]),
    ("first_name", ["Родион", "Rodion"]),
    ("first_name", ["Диомид", "Diomid"]),
    ("first_name", ["Виолетта", "Violetta"]),
    ("last_name", ["Ларионов", "Larionov"]),
    ("last_name", ["Пономарёв", "Ponomarev", "Ponomaryov", "Ponomariov", "Ponomarëv"]),
    ("first_name", ["Ян", "Yan", "Ian", "Jan"]),  # Ian: Ян in ICAO passports
    # a word's first yo: ё (Ёлкин, Ёжиков), but йо, ио before s (no Russian word starts with ёс)
    ("last_name", ["Ёлкин", "Елкин", "Elkin", "Yolkin", "Yëlkin", "Yelkin"]),
    ("last_name", ["Ёжиков", "Ежиков", "Ezhikov", "Yozhikov"]),
    ("first_name", ["Иосиф", "Iosif", "Йосиф", "Yosif"]),
    ("last_name", ["Иосифов", "Iosifov", "Yosifov"]),
    # io after r before z, zh, g, m and in -trion- is ё; the Latin Prior-, Patriot- keep ио
    ("first_name", ["Серёжа", "Сережа", "Seryozha", "Serezha", "Seriozha"]),
    ("last_name", ["Берёзкин", "Beryozkin", "Berezkin", "Beriozkin"]),
    ("last_name", ["Серёгин", "Seryogin", "Seregin", "Seriogin"]),
    ("last_name", ["Черёмушкин", "Cheryomushkin", "Cheremushkin", "Cheriomushkin"]),
    ("first_name", ["Матрёна", "Матрена", "Matryona", "Matrena", "Matriona"]),
    ("last_name", ["Приоров", "Priorov"]),
    ("last_name", ["Патриотов", "Patriotov"]),
]

# two names (or a form, a typo, a nickname): each pair stays a conflict
TWO_NAMES = [
    ("first_name", "Ivan", "Ivanna"), ("first_name", "Иван", "Ivanna"), ("first_name", "Alexey", "Alexandr"),
    ("first_name", "Алексей", "Aleksandr"), ("first_name", "Sergey", "Sergeev"), ("last_name", "Сергей", "Sergeev"),
    ("first_name", "Marina", "Marino"), ("last_name", "Petrov", "Petrova"), ("last_name", "Петров", "Petrova"),
    ("last_name", "Иванов", "Ивановв"), ("first_name", "Иван", "Ваня"), ("first_name", "Иван", "Пётр"),
    ("first_name", "Юлия", "Юля"), ("first_name", "Дарья", "Даря"), ("first_name", "Мария", "Маря"),  # short forms
    ("first_name", "Даря", "Darya"), ("first_name", "Юля", "Yulia"),  # Latin -ya, -ia: the full name
    ("first_name", "Надя", "Надия"), ("first_name", "Галя", "Галия"), ("first_name", "Евгений", "Евгения"),
    ("first_name", "Valery", "Валерия"), ("first_name", "Александр", "Александра"), ("first_name", "Даниил", "Данил"),
    ("first_name", "Анна", "Ана"), ("first_name", "Jon", "Jen"), ("first_name", "Jonathan", "Jon"),
    ("first_name", "Oleg", "Olga"), ("last_name", "Быков", "Биков"),
    ("last_name", "Киренко", "Кириенко"), ("last_name", "Сходнев", "Шоднев"), ("first_name", "Andrey", "Andreev"),
    ("first_name", "Alexander", "Alexandra"), ("first_name", "Александр", "Alexandra"),
    ("first_name", "Evgeny", "Evgenia"), ("first_name", "Евгений", "Evgenia"),
    ("first_name", "Evgeniy", "Евгения"), ("first_name", "Иван", "Иванна"), ("last_name", "Петров", "Петрова"),
    ("first_name", "Денис", "Дионис"), ("last_name", "Алиев", "Alieva"),
    # Latin io read as ё made these one name (Dionis was Denis, not Дионис)
    ("first_name", "Dionis", "Denis"), ("first_name", "Dion", "Den"), ("first_name", "Marion", "Maren"),
    ("first_name", "Dionis", "Денис"), ("first_name", "Diomid", "Demid"), ("first_name", "Диомид", "Demid"),
    ("first_name", "Leon", "Lena"), ("first_name", "Леон", "Lena"),
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


# -- a broader sample: every name spelt as passports and maps spell it, and no two names meet ------------

# Two romanisations from their letter tables, apart from the key's rules: ICAO 9303 (Russian foreign
# passports) and BGN/PCGN (ye, yë after a vowel or ь and at a word's start; ʹ for ь left out, as typed).
_ICAO = dict(zip("абвгдеёжзийклмнопрстуфхцчшщыэюя",
                 "a b v g d e e zh z i i k l m n o p r s t u f kh ts ch sh shch y e iu ia".split()), ь="")
_BGN = dict(zip("абвгджзийклмнопрстуфхцчшщыэюя",
                "a b v g d zh z i y k l m n o p r s t u f kh ts ch sh shch y e yu ya".split()), ь="")


def _icao(name: str) -> str:
    return "".join(_ICAO[c] for c in name.lower()).capitalize()


def _bgn(name: str, yo: str = "ë") -> str:
    out, prev = [], ""
    for c in name.lower():
        if c in "её":
            vowel = {"е": "e", "ё": yo}[c]
            out.append("y" + vowel if (not prev or prev in "аеёиоуыэюяьъй") and vowel[0] != "y" else vowel)
        else:
            out.append(_BGN[c])
        prev = c
    return "".join(out).capitalize()


# Russian full names, near ones side by side (forms for him and her, names a letter apart), with informal
# spellings besides ICAO's and BGN's ("Artiom" for Артём, "Ksenia" for Ксения).
SAMPLE = {
    "first_name": """Александр Александра Алексей Алёна:Aliona Алина Елена Анатолий Андрей Анна Яна Антон Артём:Artiom
        Борис Вадим Валентин Валентина Валерий Валерия:Valeria Вера Вероника Виктор Виктория:Viktoria Виталий
        Владимир Владислав Вячеслав Галина Галия Геннадий Георгий Григорий Даниил Данил Дарья:Daria Диана Дина
        Денис Дмитрий:Dmitri Евгений:Evgeny Евгения:Evgenia Егор Екатерина Елизавета Жанна Зоя Иван Иванна Игорь
        Илья:Ilia Инна Нина Ирина Карина Кирилл Кира Константин Ксения:Ksenia,Xenia Лариса Лидия:Lidia
        Любовь:Lubov Людмила:Ludmila Максим:Maxim Маргарита Марина Мария:Maria Марьяна Михаил:Mihail Надежда
        Надия Наталья:Natalia Никита Николай Оксана:Oxana Олег Ольга Павел Полина Пётр:Piotr Раиса Роман
        Руслан Светлана Семён:Semion Сергей София:Sofia Станислав Таисия:Taisia Тамара Татьяна:Tatiana
        Ульяна:Uliana Фёдор:Fiodor Юлия:Yulia,Julia Юлиан Юрий:Yuri Ярослав""",
    "last_name": """Иванов:Ivanoff Иванова Смирнов Кузнецов Кузнецова Попов Васильев:Vasiliev Васильева:Vasilieva
        Петров Петрова Соколов Михайлов Новиков Фёдоров Морозов Волков Алексеев Лебедев Семёнов Егоров Павлов
        Козлов Степанов Николаев Орлов Андреев Макаров Никитин Захаров Зайцев Соловьёв:Soloviev,Soloviov Борисов
        Яковлев Григорьев:Grigoriev Романов Воробьёв Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев
        Киселёв Ильин Максимов Поляков Сорокин Белов Беляев Медведев Жуков Давыдов Матвеев Крылов Афанасьев:Afanasiev
        Савельев Тимофеев Чернов Черных Щербаков Чернышёв Быков Пономарёв Журавлёв Емельянов Лукьянов Дьяконов
        Майоров Кириенко Киренко Алиев Валиев Хабибуллин Шевченко Щукин Цветков Кудрявцев Клюев Лукин""",
    "middle_name": """Александрович Алексеевич Андреевич Васильевич Геннадьевич:Gennadievich Дмитриевич Евгеньевич
        Юрьевич:Yurievich Сергеевич Анатольевич Ильич:Ilyich Кузьмич Александровна Алексеевна Сергеевна Юрьевна
        Дмитриевна Васильевна Евгеньевна Ильинична Валерьевна:Valerievna""",
}


def _sample(field, sample=SAMPLE):
    for entry in sample[field].split():
        name, _, informal = entry.partition(":")
        yield name, [_icao(name), _bgn(name), _bgn(name, "yo"), _bgn(name, "e"), *filter(None, informal.split(","))]


@pytest.mark.parametrize("field", list(SAMPLE))
def test_a_broad_sample_of_names_meets_its_spellings_and_no_other_name(field):
    key = conflict_key_for("contact", field)
    names = dict(_sample(field))
    assert len(names) >= 20
    apart = {name: {s: key(s) for s in spellings if key(s) != key(name)} for name, spellings in names.items()}
    assert {name: a for name, a in apart.items() if a} == {}
    owners = {}
    for name in names:
        owners.setdefault(key(name), []).append(name)
    assert {k: n for k, n in owners.items() if len(n) > 1} == {}  # different names never one key


# Latin io after a consonant is ё (Artiom: Артём) or ио (Dionis: Дионис); names of both kinds side by side,
# with the io spellings besides ICAO's and BGN's, and the names a reading of io as ё would meet.
IO_SAMPLE = {
    "first_name": """Дионис:Dionis Денис Дион:Dion Ден Марион:Marion Марен Родион:Rodion Ларион:Larion
        Илларион:Illarion Диомид:Diomid Демид Виола:Viola Виолетта:Violetta Орион:Orion Артём:Artiom
        Семён:Semion Алёна:Aliona Фёдор:Fiodor Фёкла:Fiokla Пётр:Piotr Лев Лёва:Liova Леон Лена
        Ян:Ian,Jan Матрёна:Matriona Марена Серёжа:Seriozha Иосиф:Yosif""",
    "last_name": """Родионов:Rodionov Ларионов:Larionov Денисов Дионисов:Dionisov Семёнов:Semionov
        Соловьёв:Soloviov Воробьёв:Vorobiov Королёв:Koroliov Пономарёв:Ponomariov Зверёв:Zveriov
        Зверёва:Zveriova Киселёв:Kiseliov Потёмкин:Potiomkin Дёмин Диомидов:Diomidov Демидов
        Берёзкин:Beriozkin Серёгин:Seriogin Черёмушкин:Cheriomushkin Приоров:Priorov Ёлкин:Yolkin
        Ёжиков:Yozhikov Иосифов:Yosifov""",
}


def _one_key_per_name(key, names: dict[str, list[str]]) -> None:
    """Every spelling meets its own name, and no two names (so no spellings of two names) share a key."""
    apart = {name: {s: key(s) for s in spellings if key(s) != key(name)} for name, spellings in names.items()}
    assert {name: a for name, a in apart.items() if a} == {}
    owners = {}
    for name in names:
        owners.setdefault(key(name), []).append(name)
    assert {k: n for k, n in owners.items() if len(n) > 1} == {}


@pytest.mark.parametrize("field", list(IO_SAMPLE))
def test_latin_io_is_yo_or_io_and_never_makes_two_names_one(field):
    names = dict(_sample(field, IO_SAMPLE))
    assert len(names) >= 15
    _one_key_per_name(conflict_key_for("contact", field), names)


@pytest.mark.parametrize(("latin", "cyrillic", "near"), [("Dionis", "Дионис", "Denis"), ("Dion", "Дион", "Den"),
                                                         ("Marion", "Марион", "Maren")], ids=["Dionis", "Dion", "Marion"])
def test_the_reported_latin_pairs_stay_apart_in_both_scripts(latin, cyrillic, near):
    """Dionis met Denis (Latin io read as ё) while Дионис did not meet Денис, nor Dionis its own Дионис."""
    key = conflict_key_for("contact", "first_name")
    near_cyrillic = {"Denis": "Денис", "Den": "Ден", "Maren": "Марен"}[near]
    assert key(latin) == key(cyrillic)  # one name
    assert key(near) == key(near_cyrillic)
    for a, b in [(latin, near), (cyrillic, near_cyrillic), (latin, near_cyrillic), (cyrillic, near)]:
        assert key(a) != key(b), (a, b, key(a))


def test_the_rule_reads_the_reported_names_in_both_scripts():
    def conflict(field, *values):
        cands = [Candidate(i, v, i == 1) for i, v in enumerate(values, start=1)]
        return get_rule("fill_empty").func(cands, RuleContext("contact", field)).conflict

    assert not conflict("first_name", "Мария", "Maria", "Mariya", "Mariia")
    assert not conflict("first_name", "Ksenia", "Ксения", "Kseniya", "Xenia")
    assert not conflict("last_name", "Васильев", "Vasiliev", "Vasilyev", "Vasilev")
    assert not conflict("first_name", "Людмила", "Ludmila", "Lyudmila", "Liudmila")
    assert not conflict("first_name", "Artiom", "Artem", "Артём", "Артем", "Artyom")
    assert conflict("first_name", "Дарья", "Daria", "Даря")  # Даря: a short form of Дарья
    for field, a, b in [("first_name", "Ivan", "Ivanna"), ("first_name", "Иван", "Иванна"),
                        ("last_name", "Petrov", "Petrova"), ("last_name", "Петров", "Петрова"),
                        ("first_name", "Alexander", "Alexandra"), ("first_name", "Александр", "Александра"),
                        ("first_name", "Evgeny", "Evgenia"), ("first_name", "Евгений", "Евгения")]:
        assert conflict(field, a, b) and conflict(field, b, a), (a, b)


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
    same += [("first_name", "Andrey", "Андрей"), ("first_name", "Sergei", "Сергей"), ("last_name", "Chernov", "Чернов"),
             ("first_name", "Maria", "Мария"), ("first_name", "Ksenia", "Ксения"),
             ("last_name", "Vasiliev", "Васильев"), ("first_name", "Ludmila", "Людмила"),
             ("first_name", "Lyudmila", "Людмила"), ("first_name", "Artiom", "Артём"),
             ("first_name", "Artem", "Артём"), ("first_name", "Артем", "Artiom")]
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
