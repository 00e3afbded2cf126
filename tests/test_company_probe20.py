"""A Russian data steward's probe of company titles (helper probe 20): legal forms spelled out or
abbreviated, sole traders, quotes, numbers, ё/е and city notes, through parse_company, the title
comparison and find_duplicates.

Defects found and pinned here:
- a sole trader whose initial is О ("ИП Сидоров О.П.") was no person: the initial's key "o" is that of
  ООО, so the name read as holding a legal form ("sidorov op" against "sidorov o p");
- a city note after the title ("Ёлочка (Москва)", "ООО «Гранит» г. Москва") made the title "different"
  from the bare one;
- the insurers' forms СПАО and САО, and public institutions' (ГАУ, МКУ, МБДОУ...) were no legal form;
- "N1" / "No. 1" for "№1" made "Филиал N1" another title than "Филиал №1";
- "+" was dropped: "Лютик+" was the same title as "Лютик" and another than "Лютик Плюс"."""

from __future__ import annotations

import pytest

from matchers.companies import parse_company
from matchers.prepare import prepare
from scoring.find import find_duplicates
from scoring.settings import MatchSettings
from test_chain_guard import model_for, table
from test_companies import _company_levels
from test_scoring_cases import group_of, pair

SAME = "same without legal form"


# -- sole traders ---------------------------------------------------------------------------------

SIDOROV = ["ИП Сидоров Олег Павлович", "ИП Сидоров О.П.", "Сидоров О.П. ИП", "ИП Сидоров О. П.",
           "Индивидуальный предприниматель Сидоров О.П.", "ИП О.П. Сидоров"]


@pytest.mark.parametrize("title", SIDOROV)
def test_a_sole_traders_initial_o_is_an_initial_not_a_legal_form(title):
    c = parse_company(title)
    assert (c.key, c.person, c.legal_form) == ("sidorov o p", "sidorov o p", "ip")


def test_sole_traders_with_an_initial_o_compare_as_one():
    assert _company_levels([(SIDOROV[0], t) for t in SIDOROV[1:]]) == [SAME] * (len(SIDOROV) - 1)
    # the same surname and another initial, or a woman's surname: another trader, never the same title
    # (the comparison still calls them "similar" / "nearly the same": see the report of probe 20)
    assert SAME not in _company_levels([("ИП Сидоров О.П.", "ИП Сидоров А.П."),
                                        ("ИП Сидоров О.П.", "ИП Сидорова О.П.")])


def test_two_sole_traders_of_one_surname_are_different_titles():
    assert _company_levels([("ИП Иванов Иван Иванович", "ИП Иванов Пётр Сергеевич"),
                            ("ИП Иванов И. И.", "ИП Иванов П.С."),
                            ("Индивидуальный предприниматель Иванов И.И.", "ИП Иванов Пётр Сергеевич")]) == [
        "different"] * 3


# -- city notes -----------------------------------------------------------------------------------

CITY_NOTES = [
    # title, key, clean (the note stays in clean: a merge still asks which of two titles to keep)
    ("Ёлочка (Москва)", "elochka", "елочка москва"),
    ("ООО «Ёлочка» (Москва)", "elochka", "елочка москва"),
    ("ООО «Ёлочка» (г. Москва)", "elochka", "елочка г москва"),
    ("ООО «Гранит» г. Москва", "granit", "гранит г москва"),
    ("ООО Гранит, г.Санкт-Петербург", "granit", "гранит г санкт петербург"),
    ("Гранит г. Нижний Новгород", "granit", "гранит г нижний новгород"),
    ("Romashka LLC (Moscow)", "romashka", "romashka moscow"),
    ("Ромашка (Ростов-на-Дону)", "romashka", "ромашка ростов на дону"),
    ("ООО РОМАШКА (МОСКВА)", "romashka", "ромашка москва"),
    ("ИП Иванов И.И. (Москва)", "ivanov i i", "иванов ии москва"),
]


@pytest.mark.parametrize("title,key,clean", CITY_NOTES, ids=[c[0] for c in CITY_NOTES])
def test_a_city_note_after_the_title_is_no_part_of_its_key(title, key, clean):
    c = parse_company(title)
    assert (c.key, c.clean, c.tokens) == (key, clean, tuple(sorted(set(key.split()))))


def test_a_title_with_a_city_note_is_the_same_title():
    assert _company_levels([("Ёлочка (Москва)", "Ёлочка"), ("ООО «Ёлочка» (Москва)", "Ёлочка, ООО"),
                            ("ООО «Гранит» г. Москва", "Гранит"), ("Ромашка (Москва)", "Romashka LLC")]) == [SAME] * 4


@pytest.mark.parametrize("title,key", [
    ("Ромашка (1)", "romashka 1"),                                 # a number tells two firms apart
    ("Ромашка (филиал в Казани)", "romashka filial v kazani"),     # a branch is a record of its own
    ("Ромашка (Филиал Казань)", "romashka filial kazan"),
    ("ПАО Сбербанк (Северо-Западный банк)", "sberbank severo zapadni bank"),  # no city: a lower-case word
    ("ООО «Альфа» (бывш. «Бета»)", "alfa bivsh beta"),
    ("Ромашка (ИП Иванов)", "romashka ip ivanov"),                 # a legal form: someone's firm
    ("Ромашка (ООО)", "romashka"),                                 # a legal form alone is stripped as such
    ("(Ромашка)", "romashka"),                                     # never an empty title
    ("Ромашка (Москва) Плюс", "romashka moskva plus"),             # a note only at the end
    ("ООО «Гранит» г. Москва, ул. Ленина, 1", "granit g moskva ul lenina 1"),  # an address is no city note
])
def test_notes_that_stay_in_the_key(title, key):
    assert parse_company(title).key == key


# -- legal forms ----------------------------------------------------------------------------------

@pytest.mark.parametrize("title,key,form", [
    ("СПАО «Ингосстрах»", "ingostrah", "spao"),
    ("Ингосстрах, СПАО", "ingostrah", "spao"),
    ("Страховое публичное акционерное общество «Ингосстрах»", "ingostrah", "spao"),
    ("САО «ВСК»", "vsk", "sao"),
    ("Страховое акционерное общество «ВСК»", "vsk", "sao"),
    ("ТСЖ «Радуга»", "raduga", "tszh"),
    ("СНТ «Берёзка»", "berezka", "snt"),
    ("МБДОУ «Детский сад №2»", "detski sad 2", "mbdou"),
    ("ГАУЗ «Городская поликлиника №3»", "gorodskaia poliklinika 3", "gauz"),
    ("МКУ «Центр закупок»", "tsentr zakupok", "mku"),
])
def test_more_russian_legal_forms(title, key, form):
    c = parse_company(title)
    assert (c.key, c.legal_form) == (key, form)


def test_spelled_out_and_abbreviated_forms_are_one_title():
    assert _company_levels([
        ("Общество с ограниченной ответственностью «Ромашка»", "Ромашка, ООО"),
        ("Публичное акционерное общество «Сбербанк»", "ПАО Сбербанк"),
        ("ЗАО «Альфа-Трейд»", "НАО Альфа-Трейд"),
        ("Акционерное общество «Альфа-Трейд»", "АО «Альфа-Трейд»"),
        ("СПАО «Ингосстрах»", "Ингосстрах"),
        ("САО «ВСК»", "ВСК"),
    ]) == [SAME] * 6


# -- numbers, plus, quotes, ё, case ---------------------------------------------------------------

@pytest.mark.parametrize("title", ["Филиал №1", "Филиал № 1", "Филиал N1", "Филиал N 1", "Филиал No1", "Филиал No. 1",
                                   "Филиал Nº1", "Филиал N°1"])
def test_the_number_sign_written_in_latin(title):
    assert parse_company(title).key == "filial 1"


def test_a_latin_n_that_is_no_number_sign_stays():
    assert parse_company("Ромашка N").key == "romashka n"
    assert parse_company("NN1 Group").key == "n1 grup"
    assert parse_company("Nord1").key == "nord1"


def test_titles_that_differ_only_by_a_number_are_not_the_same_title():
    pairs = [("Филиал №1", "Филиал №2"), ("Филиал N1", "Филиал №2"), ("Ромашка-1", "Ромашка-2"),
             ("ООО «Ромашка-1»", "ООО «Ромашка-2»"), ("Аптека 1", "Аптека 11")]
    assert SAME not in _company_levels(pairs)


@pytest.mark.parametrize("title", ["Лютик+", "Лютик +", "Лютик Плюс", "Лютик-Плюс", "ООО «Лютик+»", "Lyutik Plus"])
def test_a_plus_sign_is_the_word_plus(title):
    assert parse_company(title).key == "lutik plus"


def test_a_plus_title_is_not_the_bare_title():
    assert _company_levels([("Лютик", "Лютик+"), ("Лютик+", "Лютик Плюс"), ("Romashka+", "Romashka Plus")]) == [
        "different", SAME, SAME]


def test_quotes_hyphens_yo_spaces_and_case():
    variants = ["«Ёлочка»", '"Ёлочка"', "„Ёлочка“", "'Ёлочка'", "Елочка", "  ЕЛОЧКА  ", "ООО ,,Ёлочка''"]
    assert {parse_company(t).key for t in variants} == {"elochka"}
    assert parse_company("Ромашка-М").key == parse_company("Ромашка М").key == "romashka m"


# -- through find_duplicates ----------------------------------------------------------------------

# pairs sharing one phone each: the title decides whether they are one firm
SAME_FIRM = [("Ёлочка (Москва)", "ООО «Ёлочка»"), ("ООО «Гранит» г. Москва", "Гранит"),
             ("ИП Сидоров О.П.", "ИП Сидоров Олег Павлович"), ("СПАО «Ингосстрах»", "Ингосстрах"),
             ("Лютик+", "Лютик Плюс"), ("Филиал N1", "Филиал №1"),
             ("Общество с ограниченной ответственностью «Ромашка»", "Romashka LLC")]
TWO_FIRMS = [("Филиал №1", "Филиал №2"), ("Василёк-1", "Василёк-2"),
             ("ИП Иванов Иван Иванович", "ИП Иванов Пётр Сергеевич"), ("Лютик", "Лютик+")]


def test_find_duplicates_on_the_probe():
    rows = []
    for k, (x, y) in enumerate(SAME_FIRM + TWO_FIRMS):
        phone = f"+7 495 {100 + k:03d}-{k:02d}-{k:02d}"
        rows += [dict(id=2 * k + 1, company=x, phone=[phone]), dict(id=2 * k + 2, company=y, phone=[phone])]
    t = table("company", rows)
    r = find_duplicates(t, MatchSettings(), model=model_for(prepare(t)))
    for k, titles in enumerate(SAME_FIRM):
        row = pair(r, 2 * k + 1, 2 * k + 2)
        assert row is not None and row["tier"] == "certain", (titles, row)
        assert group_of(r, 2 * k + 1) == group_of(r, 2 * k + 2) != "", titles
    for k, titles in enumerate(TWO_FIRMS, start=len(SAME_FIRM)):
        row = pair(r, 2 * k + 1, 2 * k + 2)
        assert row is None or row["tier"] == "possible", (titles, row)
        assert group_of(r, 2 * k + 1) != group_of(r, 2 * k + 2), titles


# -- numbers (found by the probe through find_duplicates with the trained model: grouped as probable) -----------

def test_titles_whose_numbers_differ_are_different_titles():
    assert _company_levels([("Филиал №1", "Филиал №2"), ("Василёк-1", "Василёк-2"), ("Аптека 1", "Аптека 11"),
                            ("ООО «Ромашка-1»", "ООО «Ромашка-2»"), ("Аптека №1 на Ленина", "Аптека №2 на Ленина")]) == [
        "different"] * 5
    # the same numbers, or numbers on one side only, as before: the letters decide
    levels = _company_levels([("Филиал N1", "Филиал №1"), ("Аптека №1 на Ленина", "Аптека 1 Ленина"),
                              ("Ромашка 1", "Ромашка")])
    assert levels[0] == SAME and "different" not in levels


def test_titles_whose_single_letters_differ_are_different_titles():
    assert _company_levels([("ИП Сидоров О.П.", "ИП Сидоров А.П."), ("ИП Сидоров О.П.", "ИП Сидорова О.П."),
                            ("ИП Ковальский А.А.", "ИП Ковальская А.А."), ("Ромашка-М", "Ромашка-К")]) == [
        "different"] * 4
    assert _company_levels([("ИП Сидоров О.П.", "ИП Сидоров Олег Павлович"), ("ООО «Ромашка-М»", "Ромашка М"),
                            ("ИП Сидорова О.П.", "Сидорова О. П. ИП")]) == [SAME] * 3
