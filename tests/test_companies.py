"""Company titles: legal forms and quotes stripped in Russian and English, one transliterated key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.companies import Company, normalize_companies, parse_company
from matchers.compare import NULL, compare
from matchers.prepare import prepare
from matchers.table import RoleTable

FAST = settings(max_examples=150, deadline=None, derandomize=True)

ROMASHKA = [
    "ООО «Ромашка»", "Romashka LLC", '"ROMASHKA, OOO"', 'Общество с ограниченной ответственностью "Ромашка"',
    "ЗАО „Ромашка“", "ОАО 'Ромашка'", "ПАО “Ромашка”", "АО Ромашка", "Ромашка, АО", "Romashka, L.L.C.",
    "Romashka Inc.", "ROMASHKA Ltd", "Romashka Limited", "Romashka GmbH", "Romashka Corp.", "Romashka Co.",
    "Romashka PLC", "Romashka LLP", "Romashka S.A.", "Romashka AG", "Romashka B.V.", "ООО ‘Ромашка’",
    "OOO Romashka", "ZAO Romashka", "НКО Ромашка", "АНО «Ромашка»", "ГУП Ромашка", "МУП «Ромашка»",
    "ФГУП «Ромашка»", "Ромашка и Ко", "Romashka & Co", "Ромашка ООО", "  ооо   ромашка  ", "Romashka Incorporated",
    "Romashka Corporation", "«Ромашка» Ltd.", "Romashka JSC", "Romashka CJSC", "Romashka PJSC",
    "Romashka Sole Proprietor", "«Ромашка» Инк.", "Ромашка ЛЛС", "Ромашка Лтд", "Ромашка Корп.",
    "Romashka Joint Stock Company", "Romashka SUE",
]


@pytest.mark.parametrize("title", ROMASHKA)
def test_same_key_for_every_legal_form_and_quote(title):
    assert parse_company(title).key == "romashka"


CASES = [
    # description, title, clean, key, legal_form
    ("Russian LLC with guillemets", "ООО «Ромашка»", "ромашка", "romashka", "ooo"),
    ("English LLC", "Romashka LLC", "romashka", "romashka", "llc"),
    ("form after a comma, in quotes", '"ROMASHKA, OOO"', "romashka", "romashka", "ooo"),
    ("full Russian phrase", 'Общество с ограниченной ответственностью "Ромашка"', "ромашка", "romashka", "ooo"),
    ("closed joint-stock", "ЗАО „Ромашка“", "ромашка", "romashka", "zao"),
    ("public joint-stock at the end", "Сбербанк России ПАО", "сбербанк россии", "sberbank rosi", "pao"),
    ("sole trader with initials", "ИП Иванов И.И.", "иванов ии", "ivanov i i", "ip"),
    ("dotted L.L.C.", "Romashka, L.L.C.", "romashka", "romashka", "llc"),
    ("apostrophe inside a word stays", "McDonald's Corp.", "mcdonalds", "mkdonalds", "corp"),
    ("two forms at the end", "Acme Co., Ltd.", "acme", "akme", "ltd"),
    ("German", "Siemens AG", "siemens", "semens", "ag"),
    ("trading house word kept, digits kept", "ООО ТД «Ромашка-2000»", "тд ромашка 2000", "td romashka 2000", "ooo"),
    ("form only in the middle is kept", "Ромашка ООО Плюс", "ромашка ооо плюс", "romashka o plus", None),
    # a form after a branch word is the parent's; the branch words stay (a branch is often its own record)
    ("form after a branch word", "Филиал ПАО Сбербанк", "филиал сбербанк", "filial sberbank", "pao"),
    ("qualified branch, form and quotes", "Московский филиал ООО «Ромашка»", "московский филиал ромашка",
     "moskovski filial romashka", "ooo"),
    ("branch named after the parent", "ПАО Сбербанк, Северо-Западный филиал", "сбербанк северо западный филиал",
     "sberbank severo zapadni filial", "pao"),
    ("representative office, genitive", "Представительство АО «Альфа» в Казани", "представительство альфа в казани",
     "predstavitelstvo alfa v kazani", "ao"),
    ("English branch of", "Moscow Branch of PJSC Sberbank", "moscow branch of sberbank", "mostsov branch ov sberbank",
     "pao"),
    ("a form after an ordinary word stays", "Отдел ООО Ромашка", "отдел ооо ромашка", "otdel o romashka", None),
    # a sole trader's title is his surname and initials
    ("sole trader, full name", "ИП Иванов Иван Иванович", "иванов иван иванович", "ivanov i i", "ip"),
    ("sole trader, form after the name", "Иванов И.И. ИП", "иванов ии", "ivanov i i", "ip"),
    ("sole trader, one initial", "ИП Иванов И.", "иванов и", "ivanov i", "ip"),
    ("sole trader, patronymic with a typo", "ИП Петров Андрей Виктрвич", "петров андрей виктрвич", "petrov a v", "ip"),
    ("sole trader named first name first", "Иван Иванович Иванов ИП", "иван иванович иванов", "ivanov i i", "ip"),
    ("a person's name without a form", "Иванов Иван Иванович", "иванов иван иванович", "ivanov i i", None),
    ("a sole trader's brand stays a title", "ИП Цветочный мир Плюс", "цветочный мир плюс", "tsvetochni mir plus", "ip"),
    ("two words without initials stay a title", "ИП Цветочный мир", "цветочный мир", "tsvetochni mir", "ip"),
    ("initials before a word stay a title", "ООО Т.Д. Ромашка", "тд ромашка", "td romashka", "ooo"),
    ("nothing but a form", "ООО", "ооо", "o", "ooo"),
    ("Latin script kept in clean", "ООО Romashka", "romashka", "romashka", "ooo"),
    ("mixed-script typo repaired", "ООО «Poмашка»", "ромашка", "romashka", "ooo"),
    ("no form", "Beauty SPA", "beauty spa", "beauti spa", None),
    ("emoji and zero-width", "Ромашка 🌼\u200b", "ромашка", "romashka", None),
    ("None", None, "", "", None),
    ("blank", "   ", "", "", None),
    ("NaN", float("nan"), "", "", None),
]


@pytest.mark.parametrize("desc,title,clean,key,form", CASES, ids=[c[0] for c in CASES])
def test_parse_company(desc, title, clean, key, form):
    c = parse_company(title)
    assert (c.clean, c.key, c.legal_form) == (clean, key, form)


def test_tokens_sorted_without_repeats():
    assert parse_company("ООО «Север Юг Север»").tokens == ("iug", "sever")
    assert parse_company(None) == Company("", "", None, ())


SOLE_TRADER = ["ИП Иванов Иван Иванович", "Индивидуальный предприниматель Иванов И.И.", "Иванов И.И. ИП",
               "IP Ivanov I.I.", "ИП Иванов И. И.", "Ivanov Ivan Ivanovich, Sole Proprietor", "ИП Иванов Иван Иваныч",
               "Иванов И.И."]


@pytest.mark.parametrize("title", SOLE_TRADER)
def test_a_sole_trader_is_his_surname_and_initials(title):
    c = parse_company(title)
    assert (c.key, c.person, c.tokens) == ("ivanov i i", "ivanov i i", ("i", "ivanov"))


def test_other_sole_traders_and_titles_are_no_person():
    assert parse_company("ИП Иванова А.П.").key == "ivanova a p"
    assert parse_company("ИП Иванов Иван Петрович").key == "ivanov i p"
    assert parse_company("ООО «Ромашка»").person == parse_company("ИП Ромашка").person == ""


def _company_levels(pairs: list[tuple[str, str]]) -> list[str | None]:
    """The company-title comparison's level of each pair of titles, as find compares them."""
    titles = [t for pair in pairs for t in pair]
    frame = pd.DataFrame({"id": range(len(titles)), "company": titles})
    p = prepare(RoleTable.from_frame("company", frame, {"company": "company"}, "id"))
    a = np.arange(0, len(titles), 2)
    cv = compare(p, a, a + 1)
    j = cv.names.index("company")
    comparison = cv.comparisons[j]
    return [comparison.levels[lv] if lv != NULL else None for lv in cv.levels[:, j]]


def test_comparison_of_sole_traders_and_branches():
    pairs = [(SOLE_TRADER[0], t) for t in SOLE_TRADER[1:]]
    assert set(_company_levels(pairs)) == {"same without legal form"}
    assert _company_levels([
        ("ИП Иванов И.И.", "ИП Иванова А.П."),       # another trader of the family
        ("Филиал ПАО Сбербанк", "ПАО Сбербанк"),       # a branch against its parent: their own records
        ("Филиал ПАО Сбербанк", "Сбербанк, ПАО"),
    ]) == ["different"] * 3
    assert _company_levels([("Филиал ПАО Сбербанк", "филиал Сбербанк ПАО"),
                            ("Московский филиал ООО «Ромашка»", "Московский филиал Ромашка")]) == [
        "same without legal form"] * 2


def test_transliterated_titles_meet():
    assert parse_company("ООО «Хабибуллин и партнёры»").key == parse_company("Khabibullin i partnery LLC").key


@FAST
@given(st.text())
def test_key_is_a_fixed_point(s):
    c = parse_company(s)
    assert parse_company(c.key).key == c.key


@FAST
@given(st.lists(st.sampled_from(["ООО", "LLC", "«", "»", "Ромашка", "Romashka", "и", "Ко", "Co.", "АО", "Inc",
                                 "2000", "'", '"', "Ltd.", "L.L.C.", "Плюс"]), max_size=8))
def test_key_is_a_fixed_point_on_title_like_text(words):
    c = parse_company(" ".join(words))
    assert parse_company(c.key).key == c.key
    assert c.tokens == tuple(sorted(set(c.key.split())))


@FAST
@given(st.lists(st.sampled_from(["ИП", "IP", "Индивидуальный предприниматель", "Иванов", "Ivanov", "Иван", "Иванович",
                                 "И.", "И.И.", "I.I.", "Ч.", "Ю.А.", "Петрова", "Андрей", "Виктрвич", "Филиал", "ПАО",
                                 "branch", "of", "LLC", "Ромашка", ",", "2000"]), max_size=6))
def test_key_is_a_fixed_point_on_sole_trader_and_branch_like_text(words):
    c = parse_company(" ".join(words))
    assert parse_company(c.key).key == c.key
    assert c.tokens == tuple(sorted(set(c.key.split())))
    assert c.person in ("", c.key)


def test_normalize_companies():
    values = pd.Series(["ООО «Ромашка»", None, np.nan, "Romashka LLC", "", "ИП Иванов Иван Иванович"],
                       index=["a", "b", "c", "d", "e", "f"])
    out = normalize_companies(values)
    assert list(out.index) == list(values.index)
    assert list(out.columns) == ["clean", "key", "legal_form", "tokens", "person"]
    assert out.loc["a", "key"] == out.loc["d", "key"] == "romashka"
    assert out.loc["b"].tolist() == ["", "", None, "", ""]
    assert out.loc["a", "legal_form"] == "ooo" and out.loc["d", "legal_form"] == "llc"
    assert out.loc["f"].tolist() == ["иванов иван иванович", "ivanov i i", "ip", "i ivanov", "ivanov i i"]
    assert out.loc["a", "person"] == ""


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.none(), st.floats()), max_size=12))
def test_normalize_companies_never_raises(values):
    out = normalize_companies(pd.Series(values, dtype=object))
    assert len(out) == len(values)
