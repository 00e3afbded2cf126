"""Blocking rules, comparison levels and their words, on small hand-made tables; properties."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchers.blocking import KeyBlock, KeyNeighbourhood, block_pairs, blocking_recall, find_candidates
from matchers.compare import NULL, compare, comparisons_for, describe_pair
import matchers.prepare as prep
from matchers.prepare import _LongValues, prepare
from matchers.table import MappingError, RoleTable

PEOPLE = pd.DataFrame([
    # id, last, first, middle, phone, email
    (1, "Иванов", "Александр", "Петрович", "+7 (495) 123-45-67", "a.ivanov@mail.ru"),
    (2, "Ivanoff", "Sasha", None, "8 495 1234567", "A.Ivanov@MAIL.RU"),
    (3, "Петров", "Иван", "Сергеевич", "+7 495 123 45 67 доб. 12", "info@romashka.ru"),
    (4, "Smith", "William", None, "+44 20 7946 0958", "bill.smith@gmail.com"),
    (5, "Smith", "Bill", None, "020 7946 0958", "billsmith+crm@gmail.com"),
    (6, "Сидорова", "Мария", "Ивановна", "+7 (000) 000-00-00", "test@test.ru"),
], columns=["id", "last", "first", "middle", "phone", "email"])
MAPPING = {"last_name": "last", "first_name": "first", "middle_name": "middle", "phone": "phone", "email": "email"}


def _prepared(frame=PEOPLE):
    return prepare(RoleTable.from_frame("contact", frame, MAPPING, "id"))


def _levels(p, x, y):
    pos = {i: k for k, i in enumerate(p.ids)}
    cv = compare(p, np.array([pos[x]]), np.array([pos[y]]))
    return {c.name: c.levels[lv] if lv != NULL else None for c, lv in zip(cv.comparisons, cv.levels[0])}, cv


@pytest.mark.parametrize("x, y, expected, why", [
    (1, 2, {"last_name": "same", "first_name": "same after nicknames", "phone": "same number", "email": "same address"},
     "translit surname, diminutive, phone formats, email case"),
    (4, 5, {"last_name": "same", "first_name": "same after nicknames", "phone": "same number", "email": "same address"},
     "Bill/William, national UK number, gmail dots and plus tag"),
    (1, 3, {"last_name": "different", "first_name": "different", "middle_name": "different", "phone": "same number"},
     "colleagues on one switchboard (the extension is not the number)"),
])
def test_comparison_levels(x, y, expected, why):
    got, _ = _levels(_prepared(), x, y)
    for name, level in expected.items():
        assert got[name] == level, f"{why}: {name} was {got[name]!r}"


def _pair_levels(rows):
    """Levels of each pair of (last, first, middle) name triples, the two records of a pair sharing a
    phone."""
    frame = pd.DataFrame([(2 * k + side, *names, f"+7 495 200 00 {k:02d}")
                          for k, pair in enumerate(rows) for side, names in enumerate(pair)],
                         columns=["id", "last", "first", "middle", "phone"])
    p = prepare(RoleTable.from_frame("contact", frame, {"last_name": "last", "first_name": "first",
                                                        "middle_name": "middle", "phone": "phone"}, "id"))
    a = np.arange(0, len(frame), 2)
    cv = compare(p, a, a + 1)
    return [{c.name: c.levels[lv] if lv != NULL else None for c, lv in zip(cv.comparisons, row)} for row in cv.levels]


NAME_PAIRS = [
    # a man and a woman sharing a phone: husband and wife, brother and sister
    ("male and female form of a first name", ("Сидоренко", "Валерий", None), ("Сидоренко", "Валерия", None),
     {"first_name": "different", "last_name": "same"}),
    ("Евгений / Евгения", ("Кравченко", "Евгений", None), ("Кравченко", "Евгения", None), {"first_name": "different"}),
    ("Александр / Александра", ("Петров", "Александр", None), ("Петрова", "Александра", None),
     {"first_name": "different", "last_name": "different"}),
    ("a unisex diminutive takes the surname's gender", ("Петров", "Саша", None), ("Петрова", "Александра", None),
     {"first_name": "different", "last_name": "different"}),
    ("one unisex diminutive, surnames of two genders", ("Лазарев", "Саша", None), ("Лазарева", "Саша", None),
     {"first_name": "different", "last_name": "different"}),
    ("Женя / Евгений", ("Морозова", "Женя", None), ("Морозов", "Евгений", None),
     {"first_name": "different", "last_name": "different"}),
    ("Latin surname forms", ("Petrov", "Sasha", None), ("Petrova", "Sasha", None), {"first_name": "different"}),
    # what stays the same person
    ("a unisex diminutive with one surname", ("Иванова", "Саша", None), ("Иванова", "Александра", None),
     {"first_name": "same after nicknames", "last_name": "same"}),
    ("Саша / Александр", ("Иванов", "Саша", None), ("Иванов", "Александр", None), {"first_name": "same after nicknames"}),
    ("a woman's name with the male form of the surname is a typo of the form", ("Петров", "Мария", None),
     ("Петрова", "Мария", None), {"first_name": "same", "last_name": "one typo apart"}),
    ("a real typo in a surname", ("Петров", "Иван", None), ("Петрав", "Иван", None),
     {"first_name": "same", "last_name": "similar"}),
    ("Oliver / Olivia", ("Brown", "Oliver", None), ("Brown", "Olivia", None), {"first_name": "different"}),
    # initials
    ("initials of first name and patronymic", ("Иванова", "А.", "В."), ("Иванова", "Анна", "Викторовна"),
     {"first_name": "same initial", "middle_name": "same initial"}),
    ("initials typed into the surname field", ("Иванов И.И.", None, None), ("Иванов", "Иван", "Иванович"),
     {"last_name": "same", "first_name": "same initial", "middle_name": "same initial"}),
    ("an initial of two letters as a key", ("Иванов Ю.А.", None, None), ("Иванов", "Юрий", "Алексеевич"),
     {"first_name": "same initial", "middle_name": "same initial"}),
    ("another initial is another patronymic", ("Иванова", "А.", "П."), ("Иванова", "Анна", "Викторовна"),
     {"middle_name": "different"}),
    ("Ю. is not И.", ("Иванов", "Ю.", None), ("Иванов", "Иван", None), {"first_name": "different"}),
    ("full patronymics still compared", ("Иванов", "Иван", "Петрович"), ("Иванов", "Иван", "Сергеевич"),
     {"middle_name": "different"}),
    # double surnames
    ("a part of a double surname", ("Римская-Корсакова", "Анна", None), ("Корсакова", "Анна", None),
     {"last_name": "similar"}),
    ("the other part", ("Иванова-Петрова", "Мария", None), ("Петрова", "Мария", None), {"last_name": "similar"}),
    # English names written in Cyrillic by ear
    ("Hall / Холл", ("Hall", "Emily", None), ("Холл", "Эмили", None), {"last_name": "sounds alike", "first_name": "same"}),
    ("Brown / Браун", ("Brown", "Abigail", None), ("Браун", "Эбигейл", None),
     {"last_name": "sounds alike", "first_name": "sounds alike"}),
    ("Hayes / Хейз", ("Hayes", "Mark", None), ("Хейз", "Марк", None), {"last_name": "sounds alike"}),
    ("Andrew / Эндрю", ("Lee", "Andrew", None), ("Ли", "Эндрю", None), {"first_name": "sounds alike"}),
    ("vowels count within one script", ("Holl", "Anna", None), ("Hall", "Inna", None),
     {"last_name": "different", "first_name": "different"}),
    ("one consonant is too little for a first name", ("Smith", "Anna", None), ("Смит", "Инна", None),
     {"first_name": "different"}),
    # a letter dropped between two equal ones, which the key collapses: only "similar", as the keys
    # of Брова and Боброва, two surnames, are the same two
    ("Боброва / Бброва", ("Бброва", "Анна", None), ("Боброва", "Анна", None), {"last_name": "similar"}),
    ("two letters dropped", ("Бброва", "Анна", None), ("Бобровская", "Анна", None), {"last_name": "different"}),
]


@pytest.mark.parametrize("desc, a, b, expected", NAME_PAIRS, ids=[c[0] for c in NAME_PAIRS])
def test_name_levels(desc, a, b, expected):
    got = _pair_levels([(a, b)])[0]
    assert {k: got[k] for k in expected} == expected, desc


def test_name_levels_are_symmetric():
    rows = [(a, b) for _, a, b, _ in NAME_PAIRS]
    assert _pair_levels(rows) == _pair_levels([(b, a) for a, b in rows])


def test_placeholders_are_missing_not_shared():
    got, _ = _levels(_prepared(), 3, 6)
    assert got["phone"] is None and got["email"] is None


def test_explanations_name_the_shared_value():
    p = _prepared()
    _, cv = _levels(p, 1, 2)
    words = describe_pair(cv, 0)
    assert "phone +74951234567 same number" in words
    assert "surname same" in words


def test_blocking_finds_pairs_through_each_rule_and_caps_common_keys():
    p = _prepared()
    c = find_candidates(p, cap=50)
    pairs = {(p.ids[a], p.ids[b]) for a, b in zip(c.a, c.b)}
    assert {(1, 2), (4, 5), (1, 3)} <= pairs
    names = {tuple(sorted((p.ids[a], p.ids[b]))): c.rules_of(i) for i, (a, b) in enumerate(zip(c.a, c.b))}
    assert "phone" in names[(1, 2)] and "name" in names[(1, 2)] and "email" in names[(1, 2)]
    # a phone held by three records is skipped when the cap is two, and reported
    c2 = find_candidates(p, cap=2)
    assert "+74951234567" in set(c2.skipped["key"])
    assert "phone" not in names.get((1, 3), []) or not any(
        set(c2.rules_of(i)) == {"phone"} for i in range(len(c2)) if {p.ids[c2.a[i]], p.ids[c2.b[i]]} == {1, 3})


def test_blocking_recall_report():
    p = _prepared()
    c = find_candidates(p)
    truth = np.array(["a", "a", "b", "c", "c", "d"])
    report = blocking_recall(c, truth).set_index("rule")
    assert report.loc["(all rules)", "true_pairs"] == 2
    assert report.loc["(all rules)", "true_pairs_found"] == 2 and report.loc["(all rules)", "recall"] == 1.0


def test_block_pairs_is_all_pairs_within_keys():
    a, b, skipped = block_pairs(np.arange(7), np.array(list("xxyxzzz"), dtype=object), cap=3)
    assert set(zip(a.tolist(), b.tolist())) == {(0, 1), (0, 3), (1, 3), (4, 5), (4, 6), (5, 6)}
    a, b, skipped = block_pairs(np.arange(7), np.array(list("xxyxzzz"), dtype=object), cap=2)
    assert set(skipped["key"]) == {"x", "z"} and len(a) == 0


def test_indexers_plug_into_recordlinkage():
    import recordlinkage

    frame = pd.DataFrame({"k": ["a", "a", "b", None, "a"], "s": ["ab", "ac", "zz", "ad", "b"]}, index=[10, 11, 12, 13, 14])
    idx = recordlinkage.Index()
    idx.add(KeyBlock("k", cap=5))
    pairs = idx.index(frame)
    assert {tuple(sorted(p)) for p in pairs} == {(10, 11), (10, 14), (11, 14)}
    near = KeyNeighbourhood("s", window=2).index(frame)
    assert len(near) == 4


def test_mapping_errors_name_the_problem():
    with pytest.raises(MappingError, match="column 'nope'"):
        RoleTable.from_frame("contact", PEOPLE, {"last_name": "nope"}, "id")
    with pytest.raises(MappingError, match="unknown role 'surname'"):
        RoleTable.from_frame("contact", PEOPLE, {"surname": "last"}, "id")
    with pytest.raises(MappingError, match="repeats the id"):
        RoleTable.from_frame("contact", PEOPLE.assign(id=1), MAPPING, "id")
    with pytest.raises(MappingError, match="takes one column"):
        RoleTable.from_frame("contact", PEOPLE, {"last_name": ["last", "first"]}, "id")


names = st.text(max_size=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(names, names, names, st.text(max_size=16), st.text(max_size=16)), min_size=2, max_size=8))
def test_comparisons_are_symmetric_and_never_fail(rows):
    frame = pd.DataFrame(rows, columns=["last", "first", "middle", "phone", "email"]).assign(id=range(len(rows)))
    p = prepare(RoleTable.from_frame("contact", frame, MAPPING, "id"))
    n = len(p)
    a, b = np.triu_indices(n, k=1)
    comps = comparisons_for(p)
    forward = compare(p, a, b, comps).levels
    backward = compare(p, b, a, comps).levels
    assert np.array_equal(forward, backward)
    c = find_candidates(p)
    assert np.all(c.a < c.b)


# -- prepare's shortcuts give what the plain way gives --------------------------------------------

def test_role_table_keeps_filled_cells_column_after_column():
    frame = pd.DataFrame({"id": [1, 2, 3], "last": ["A", "B", "C"], "phone": [74951234567, 2, 3],
                          "phone2": [np.nan] * 3, "email": ["a@x.ru", None, "c@x.ru"]})
    values = RoleTable.from_frame("contact", frame, {"last_name": "last", "phone": ["phone", "phone2"],
                                                     "email": "email"}, "id").values
    assert values.to_dict("list") == {"id": [1, 2, 3, 1, 3], "role": ["phone"] * 3 + ["email"] * 2,
                                      "raw": [74951234567, 2, 3, "a@x.ru", "c@x.ru"]}
    assert values.index.tolist() == list(range(5))


def test_prepare_keeps_each_number_and_address_once_per_record():
    frame = pd.DataFrame({"id": [1, 2, 3], "last": ["A", "B", "C"],
                          "phone": ["+7 495 123-45-67", "+7 (000) 000-00-00", "8 495 123 4567"],
                          "phone2": ["8 (495) 123 45 67", " ", None],
                          "email": ["A.B@mail.ru", "x", None], "email2": ["a.b@mail.ru", None, "c@mail.ru"]})
    p = prepare(RoleTable.from_frame("contact", frame, {"last_name": "last", "phone": ["phone", "phone2"],
                                                        "email": ["email", "email2"]}, "id"))
    assert p.phones.to_dict("list") == {"pos": [0, 2], "e164": ["+74951234567"] * 2,
                                        "national": ["4951234567"] * 2, "valid": [True, True]}
    assert p.emails.to_dict("list") == {"pos": [0, 2], "email": ["a.b@mail.ru", "c@mail.ru"],
                                        "canonical": ["a.b@mail.ru", "c@mail.ru"], "local": ["a.b", "c"],
                                        "domain": ["mail.ru", "mail.ru"]}
    assert p.phones.dtypes.tolist() == [np.int64, object, object, bool]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), max_size=40),
       st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.booleans()), min_size=7, max_size=7))
def test_long_values_kept_is_the_frame_filtered_once_per_key(rows, per_value):
    long = _LongValues(np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64),
                       np.array([f"raw{i}" for i in range(7)], dtype=object))
    values = pd.DataFrame({"key": [k for k, _ in per_value], "other": [f"o{i}" for i in range(7)],
                           "placeholder": [flag for _, flag in per_value]})
    got = long.kept(values, values["key"].notna() & ~values["placeholder"], "key", ["key", "other"])
    whole = long.frame(values)
    want = whole[whole["key"].notna() & ~whole["placeholder"]][["pos", "key", "other"]].drop_duplicates(["pos", "key"])
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))


def test_prepare_with_helper_processes_gives_the_same_and_restores_the_interpreter(monkeypatch):
    monkeypatch.setattr(prep, "PARALLEL_MIN_VALUES", 1)
    monkeypatch.setattr(prep, "CHUNK_VALUES", 2)
    table = RoleTable.from_frame("contact", PEOPLE, MAPPING, "id")
    switch = sys.getswitchinterval()
    one, two = prepare(table), prepare(table, workers=2)
    for name in ("records", "phones", "emails", "sites"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))
    assert sys.getswitchinterval() == switch

    def broken(records):
        raise RuntimeError("names failed")

    monkeypatch.setattr(prep, "normalize_persons", broken)
    with pytest.raises(RuntimeError, match="names failed"):
        prepare(table, workers=2)
    assert sys.getswitchinterval() == switch


def test_comparing_again_after_dropping_the_caches_gives_the_same_vectors():
    frame = PEOPLE.assign(birth=["1980-01-02", "1980-02-01", None, "1975-05-05", "1975-05-05", "1990-12-31"])
    p = prepare(RoleTable.from_frame("contact", frame, {**MAPPING, "birthdate": "birth"}, "id"))
    a, b = np.array([0, 0, 3, 1, 4]), np.array([1, 2, 4, 5, 5])
    first = compare(p, a, b)
    assert {"_codes", "_frame_codes", "_slots", "_dates"} <= set(vars(p))
    p.drop_caches()
    assert not {"_codes", "_frame_codes", "_slots", "_dates"} & set(vars(p))
    again = compare(p, a, b)
    assert np.array_equal(first.levels, again.levels) and np.array_equal(first.tf, again.tf)
    assert first.shown.keys() == again.shown.keys()
    assert all(np.array_equal(first.shown[k], again.shown[k]) for k in first.shown)


def test_a_nickname_behind_a_typo_or_across_scripts_is_similar_not_different():
    """Влдимир / Вова (a typo of Владимир, then its diminutive), Эндрю / Andy and Рэймонд / Ray (an
    English name written in Cyrillic by ear against its nickname) are "similar": "different" would
    keep them apart as two people. Two typos, three-letter names and same-script pairs whose
    loose keys meet (Анна / Инна) stay different."""
    from matchers.compare import FirstNameComparison
    from matchers.prepare import prepare
    from matchers.table import RoleTable

    cases = {("Влдимир", "Вова"): "similar", ("Эндрю", "Andy"): "similar", ("Рэймонд", "Ray"): "similar",
             ("Jenniefr", "Jen"): "different", ("Tfm", "Thomas"): "different",
             ("Анна", "Инна"): "different", ("Влдимир", "Валерий"): "different", ("Vera", "Ира"): "different"}
    rows = [{"id": k, "first_name": name, "last_name": "Smith" if name.isascii() else "Смит"}
            for k, name in enumerate(n for pair in cases for n in pair)]
    p = prepare(RoleTable("contact", pd.DataFrame(rows).set_index("id"), pd.DataFrame(columns=["id", "role", "raw"])))
    a = np.arange(0, len(rows), 2)
    level = FirstNameComparison().compute(p, a, a + 1).level
    assert dict(zip(cases, (FirstNameComparison.levels[v] for v in level))) == cases


def test_distinct_common_names_stay_different():
    """A typo is mended on one side only, into the one known name it is near, and a loose key only
    meets a full name's: Carol / Karen, Dawn / Diana, Ethan / Sean, Dale / David, Keith / Kenneth
    stay "different" (a household's two people)."""
    from matchers.compare import FirstNameComparison
    from matchers.prepare import prepare
    from matchers.table import RoleTable

    pairs = [("Carol", "Karen"), ("Dawn", "Diana"), ("Ethan", "Sean"), ("Dale", "David"), ("Keith", "Kenneth"),
             ("Anthony", "Troy"), ("Bruce", "Russell"), ("Holly", "Mary"), ("Dale", "Александр"), ("Ethan", "Ваня")]
    rows = [{"id": k, "first_name": name, "last_name": "Smith" if name.isascii() else "Смит"}
            for k, name in enumerate(n for pair in pairs for n in pair)]
    p = prepare(RoleTable("contact", pd.DataFrame(rows).set_index("id"), pd.DataFrame(columns=["id", "role", "raw"])))
    a = np.arange(0, len(rows), 2)
    level = FirstNameComparison().compute(p, a, a + 1).level
    assert {pair: FirstNameComparison.levels[v] for pair, v in zip(pairs, level)} == {pair: "different" for pair in pairs}


def _words(cv) -> list[dict]:
    return [{c.name: c.levels[lv] if lv != NULL else None for c, lv in zip(cv.comparisons, row)} for row in cv.levels]


def _first_name_levels(pairs: list[tuple[str, str]]) -> dict:
    """FirstNameComparison's word for each pair of first names (one table, one surname per script)."""
    from matchers.compare import FirstNameComparison

    rows = [{"id": k, "first_name": name, "last_name": "Smith" if name.isascii() else "Смит"}
            for k, name in enumerate(n for pair in pairs for n in pair)]
    p = prepare(RoleTable("contact", pd.DataFrame(rows).set_index("id"), pd.DataFrame(columns=["id", "role", "raw"])))
    a = np.arange(0, len(rows), 2)
    level = FirstNameComparison().compute(p, a, a + 1).level
    return {pair: FirstNameComparison.levels[v] for pair, v in zip(pairs, level)}


def test_one_typo_in_a_cyrillic_first_name_is_similar():
    """A typo is one letter as typed: Ирица is one from Ирина, though its key "iritsa" is two from
    "irina" (ц, ш, ч, ж, я are two or three Latin letters). A name of three letters takes a typo
    only against a name the tables know (Яна / Яза)."""
    pairs = [("Ирина", "Ирица"), ("Ольга", "Ольша"), ("Никита", "Ниуита"), ("Татьяна", "Татьчна"),
             ("Наталья", "Наьалья"), ("Евгений", "Евгегий"), ("Сергей", "Серге"), ("Антонина", "Антонниа"),
             ("Яна", "Яза"), ("Зоя", "Зя")]
    assert _first_name_levels(pairs) == {pair: "similar" for pair in pairs}
    # the letters are found in a whole name typed into one field too
    frame = pd.DataFrame({"id": [1, 2, 3], "full_name": ["Давыдова Ирина Владимировна", "Ирица Владимировна Давыдова",
                                                         "Давыдова Ирица Владимировна"]})
    p = prepare(RoleTable.from_frame("contact", frame, {"full_name": "full_name"}, "id"))
    cv = compare(p, np.array([0, 0]), np.array([1, 2]))
    assert [row["first_name"] for row in _words(cv)] == ["similar", "similar"]


def test_two_cyrillic_names_one_letter_apart_stay_different():
    """Two names the tables know are two names, however alike they are written or sound (sisters,
    a mother and a daughter sharing a phone): Маша / Даша, Инна / Нина, Лена / Лина, Валентин /
    Валерий, Елена / Алена; so are short names one letter apart (Оля / Юля, Яна / Аня), and a
    typo of another name (Мрина, Марина's, is not Мария)."""
    pairs = [("Алексей", "Андрей"), ("Ирина", "Марина"), ("Мария", "Марина"), ("Маша", "Даша"), ("Инна", "Нина"),
             ("Анна", "Инна"), ("Лена", "Лина"), ("Саня", "Соня"), ("Валентин", "Валерий"), ("Елена", "Алена"),
             ("Оля", "Юля"), ("Яна", "Аня"), ("Аля", "Уля"), ("Ира", "Юра"), ("Мария", "Мрина")]
    assert _first_name_levels(pairs) == {pair: "different" for pair in pairs}


def test_typos_are_measured_on_letters_only_within_cyrillic():
    """Latin and cross-script pairs keep the keys: nicknames and the sex of a name still decide."""
    assert _first_name_levels([("Ирина", "Irina"), ("Саша", "Александр"), ("Александр", "Александра"),
                               ("Ирица", "Iritsa"), ("Irina", "Iryna")]) == {
        ("Ирина", "Irina"): "same", ("Саша", "Александр"): "same after nicknames",
        ("Александр", "Александра"): "different", ("Ирица", "Iritsa"): "same", ("Irina", "Iryna"): "same"}


def test_english_names_written_in_cyrillic_sound_alike():
    """Дж is j and a leading у before a vowel is w: Уолтер is Walter, Джессика Jessica, Джим James's
    nickname; names English spelling does not give away (George's g, Heather's th) are read from the
    table of their usual Cyrillic spellings (matchers/data/en_names_cyrillic.csv). Across scripts only."""
    alike = [("Walter", "Уолтер"), ("Walt", "Уолтер"), ("Jessica", "Джессика"), ("James", "Джим"), ("Jerry", "Джерри"),
             ("Jess", "Джессика"), ("George", "Джордж"), ("Heather", "Хизер")]
    apart = [("Alan", "Уолтер"), ("Anna", "Джанна")]
    assert _first_name_levels(alike + apart) == {**{pair: "sounds alike" for pair in alike},
                                                 **{pair: "different" for pair in apart}}
