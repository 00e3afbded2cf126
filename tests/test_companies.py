"""Company titles: legal forms and quotes stripped in Russian and English, one transliterated key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.companies import Company, normalize_companies, parse_company

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
    ("sole trader with initials", "ИП Иванов И.И.", "иванов ии", "ivanov i", "ip"),
    ("dotted L.L.C.", "Romashka, L.L.C.", "romashka", "romashka", "llc"),
    ("apostrophe inside a word stays", "McDonald's Corp.", "mcdonalds", "mkdonalds", "corp"),
    ("two forms at the end", "Acme Co., Ltd.", "acme", "akme", "ltd"),
    ("German", "Siemens AG", "siemens", "semens", "ag"),
    ("trading house word kept, digits kept", "ООО ТД «Ромашка-2000»", "тд ромашка 2000", "td romashka 2000", "ooo"),
    ("form only in the middle is kept", "Ромашка ООО Плюс", "ромашка ооо плюс", "romashka o plus", None),
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


def test_normalize_companies():
    values = pd.Series(["ООО «Ромашка»", None, np.nan, "Romashka LLC", ""], index=["a", "b", "c", "d", "e"])
    out = normalize_companies(values)
    assert list(out.index) == list(values.index)
    assert list(out.columns) == ["clean", "key", "legal_form", "tokens"]
    assert out.loc["a", "key"] == out.loc["d", "key"] == "romashka"
    assert out.loc["b"].tolist() == ["", "", None, ""]
    assert out.loc["a", "legal_form"] == "ooo" and out.loc["d", "legal_form"] == "llc"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.none(), st.floats()), max_size=12))
def test_normalize_companies_never_raises(values):
    out = normalize_companies(pd.Series(values, dtype=object))
    assert len(out) == len(values)
