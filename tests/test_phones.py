"""Phone normalisation: formats, extensions, placeholders, and the fast path agreeing with phonenumbers."""

from __future__ import annotations

import dataclasses
import random
from unittest import mock

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matchers.phones as phones
from crm.demo import generate_contacts_frames
from matchers.phones import FALLBACK_REGIONS, Phone, _fast, _slow, _validity_regex, normalize_phones, parse_phone

FAST = settings(max_examples=150, deadline=None, derandomize=True)
MOSCOW = "+74951234567"

CASES = [
    # description, raw, e164, ext, valid, placeholder
    ("trunk prefix 8 with spaces", "8 495 1234567", MOSCOW, None, True, False),
    ("trunk prefix 8, digits only", "84951234567", MOSCOW, None, True, False),
    ("country code 7 without plus", "74951234567", MOSCOW, None, True, False),
    ("ten digits, no prefix", "4951234567", MOSCOW, None, True, False),
    ("brackets and dashes", "+7 (495) 123-45-67", MOSCOW, None, True, False),
    ("Russian extension доб.", "+7 (495) 123-45-67 доб. 123", MOSCOW, "123", True, False),
    ("Russian extension добавочный", "+7 495 123 45 67 добавочный 12", MOSCOW, "12", True, False),
    ("Russian extension вн.", "8 495 123-45-67 вн. 5", MOSCOW, "5", True, False),
    ("English extension ext", "+7 495 123 45 67 ext 12", MOSCOW, "12", True, False),
    ("extension x", "+7 495 123 45 67 x12", MOSCOW, "12", True, False),
    ("text before the number", "тел: 8-916-123-45-67", "+79161234567", None, True, False),
    ("mobile", "8 (916) 123-45-67", "+79161234567", None, True, False),
    ("toll free 8-800", "8 (800) 555-35-35", "+78005553535", None, True, False),
    ("Kazakhstan shares +7", "+7 7172 123456", "+77172123456", None, True, False),
    ("United Kingdom", "+44 20 7946 0958", "+442079460958", None, True, False),
    ("00 international prefix", "00 49 30 1234567", "+49301234567", None, True, False),
    ("Russian international prefix 8-10", "8-10-49-30-1234567", "+49301234567", None, True, False),
    ("USA", "+1 212 555 0123", "+12125550123", None, True, False),
    ("pandas float", 84951234567.0, MOSCOW, None, True, False),
    ("integer", 89161234567, "+79161234567", None, True, False),
    ("possible but not valid keeps e164", "+7 (601) 123-45-67", "+76011234567", None, False, False),
    ("international without +", "1-617-755-8484", "+16177558484", None, True, False),
    ("international without +, extension", "1-617-755-8484 ext. 12", "+16177558484", "12", True, False),
    ("US domestic in a Russian CRM", "(617) 755-8484", "+16177558484", None, True, False),
    # (read first as international without "+", it was +64 68256475, a valid number of New Zealand)
    ("US domestic with dashes", "646-825-6475", "+16468256475", None, True, False),
    ("Belarus without +", "375 29 123 45 67", "+375291234567", None, True, False),
    ("US dotted", "617.755.8484", "+16177558484", None, True, False),
    ("UK domestic with trunk 0", "020 7946 0958", "+442079460958", None, True, False),
    ("UK with (0)", "+44 (0)20 7946 0958", "+442079460958", None, True, False),
    ("a valid Russian reading wins over others", "9175551234", "+79175551234", None, True, False),
    ("invalid everywhere stays the Russian reading", "8 (601) 123-45-67", "+76011234567", None, False, False),
    ("too short", "12345", None, None, False, False),
    ("local number without area code", "5551234", None, None, False, False),
    # a cell of two numbers: its first (crm-dedup import stores each as a phone of its own)
    ("two numbers in one field", "+7 916 123 45 67, +7 916 765 43 21", "+79161234567", None, True, False),
    ("two numbers after a semicolon", "+79165551207; +79165551208", "+79165551207", None, True, False),
    ("a note after the number", "8-916-555-12-05 (после 18:00)", "+79165551205", None, True, False),
    ("a messenger in brackets", "+7 (916) 555-12-05 (WhatsApp)", "+79165551205", None, True, False),
    ("a name after the number", "+7 916 555 12 05 Иван", "+79165551205", None, True, False),
    ("a US number with a word", "(212) 555-0199 office", "+12125550199", None, True, False),
    ("a note with a time and no number", "звонить после 18:00", None, None, False, False),
    ("letters only", "abc", None, None, False, False),
    ("zeros with country code", "+7 (000) 000-00-00", None, None, False, True),
    ("repeated ones", "1111111", None, None, False, True),
    ("zeros", "0000000", None, None, False, True),
    ("repeated nines", "+7 999 999 99 99", None, None, False, True),
    ("ascending digits", "123456", None, None, False, True),
    ("ascending digits with code", "+7 (123) 456-78-90", None, None, False, True),
    ("zeros after the area code", "+7 (495) 000-00-00", None, None, False, True),
    ("word нет", "нет", None, None, False, True),
    ("dash", "-", None, None, False, True),
    ("n/a", "n/a", None, None, False, True),
    ("None", None, None, None, False, False),
    ("NaN", float("nan"), None, None, False, False),
    ("empty", "", None, None, False, False),
    ("blank", "   ", None, None, False, False),
]


@pytest.mark.parametrize("desc,raw,e164,ext,valid,placeholder", CASES, ids=[c[0] for c in CASES])
def test_parse_phone(desc, raw, e164, ext, valid, placeholder):
    p = parse_phone(raw)
    assert (p.e164, p.ext, p.valid, p.placeholder) == (e164, ext, valid, placeholder)
    if e164:
        assert p.national == phonenumbers.national_significant_number(phonenumbers.parse(e164))


def test_phone_fields():
    assert parse_phone("+7 (495) 123-45-67 доб. 123") == Phone(MOSCOW, "4951234567", "123", True, False)
    assert parse_phone(None) == Phone(None, None, None, False, False)
    assert parse_phone("нет") == Phone(None, None, None, False, True)


def test_other_default_region_and_no_fallbacks():
    assert parse_phone("020 7946 0958", region="GB").e164 == "+442079460958"
    assert parse_phone("(212) 555-0123", region="US").e164 == "+12125550123"
    assert parse_phone("(617) 755-8484", fallback_regions=()).e164 == "+76177558484"   # possible, not valid


def _formats(nat: str) -> list[str]:
    return [nat, "8" + nat, "7" + nat, "+7" + nat, f"+7 ({nat[:3]}) {nat[3:6]}-{nat[6:8]}-{nat[8:]}",
            f"8 {nat[:3]} {nat[3:]}", f"8-{nat[:3]}-{nat[3:6]}-{nat[6:]}", f"+7.{nat[:3]}.{nat[3:]}",
            f"8 ({nat[:4]}) {nat[4:]}", f"({nat[:3]}) {nat[3:]}", f"+8{nat}", f"7 {nat}", f"{nat[0]}",
            f"8 ({nat[:3]}) {nat[3:6]}-{nat[6:8]}-{nat[8:]} доб. {nat[:2]}", f"+7{nat} ext 5", f"{nat} x1234567",
            f"+7 {nat} (вн. 12)", f"тел. 8{nat}", f"8{nat} #"]


def test_fast_path_agrees_with_phonenumbers():
    """Every answer of the fast path equals the phonenumbers path on generated numbers of every
    leading digit, in many written shapes, including placeholders."""
    rng = random.Random(7)
    answered = compared = 0
    nationals = ["".join(rng.choice("0123456789") for _ in range(10)) for _ in range(700)]
    nationals += ["9" + "".join(rng.choice("0123456789") for _ in range(9)) for _ in range(200)]
    nationals += ["4950000000", "9999999999", "3456789012", "9876543210", "8101234567", "8001234567"]
    for nat in nationals:
        for text in _formats(nat):
            compared += 1
            fast = _fast(text, "RU", FALLBACK_REGIONS)
            if fast is None:
                continue
            answered += 1
            assert fast == _slow(text, "RU", FALLBACK_REGIONS), text
    assert compared > 12000 and answered > compared // 5


def _foreign_formats(rng: random.Random, cc: int, nat: str) -> list[str]:
    spaced = f"{nat[:2]} {nat[2:5]} {nat[5:]}"
    return [f"+{cc}{nat}", f"+{cc} {spaced}", f"+{cc} (0){nat}", f"00{cc} {nat}", f"810{cc}{nat}",
            f"8-10-{cc}-{nat}", f"{cc}{nat}", f"0{nat}", f"1{nat}", nat, f"({nat[:3]}) {nat[3:6]}-{nat[6:]}",
            f"{nat[:3]}.{nat[3:6]}.{nat[6:]}", f"+{cc}-{nat} ext. {rng.randint(1, 999)}", f"+0{nat}", f"+{nat}"]


def test_fast_path_agrees_with_phonenumbers_abroad():
    """Numbers of every country code, in the ways people write them, read in several default
    regions: wherever the fast path answers, it answers as the phonenumbers path does."""
    rng = random.Random(5)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    answered = compared = 0
    for _ in range(900):
        cc = rng.choice(codes + [1, 1, 44, 44, 49, 7, 7])
        nat = rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(rng.choice([6, 8, 9, 9, 10, 11])))
        region = rng.choice(["RU", "RU", "US", "GB", "DE", "KZ", "FR", "AR"])
        for text in _foreign_formats(rng, cc, nat):
            compared += 1
            fast = _fast(text, region, FALLBACK_REGIONS)
            if fast is None:
                continue
            answered += 1
            assert fast == _slow(text, region, FALLBACK_REGIONS), (text, region)
    assert compared > 13000 and answered > compared * 0.7


def test_validity_regex_equals_is_valid_number():
    rng = random.Random(11)
    for _ in range(4000):
        nat = rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 9, 9, 6, 13])))
        num = phonenumbers.PhoneNumber(country_code=7, national_number=int(nat))
        assert (_validity_regex(7).match(nat) is not None) == phonenumbers.is_valid_number(num), nat


@FAST
@given(st.text())
def test_parse_phone_never_raises(s):
    p = parse_phone(s)
    assert isinstance(p, Phone)
    assert not (p.placeholder and (p.e164 or p.valid))


@FAST
@given(st.from_regex(r"\+?[78]?[ (]?[3-9][0-9]{2}[) -]?[0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{2}", fullmatch=True))
def test_parse_phone_idempotent_on_its_e164(s):
    p = parse_phone(s)
    if p.e164:
        again = parse_phone(p.e164)
        assert (again.e164, again.national, again.valid) == (p.e164, p.national, p.valid)


def test_normalize_phones_index_nan_and_agreement():
    values = pd.Series(["8 495 1234567", None, np.nan, "+7 (495) 123-45-67", "нет", "12345", 84951234567.0,
                        "+44 20 7946 0958", ""], index=[f"r{i}" for i in range(9)])
    out = normalize_phones(values)
    assert list(out.index) == list(values.index)
    assert list(out.columns) == ["e164", "national", "ext", "valid", "placeholder"]
    assert out["valid"].dtype == bool and out["placeholder"].dtype == bool
    for idx, raw in values.items():
        p = parse_phone(raw)
        assert tuple(out.loc[idx]) == (p.e164, p.national, p.ext, p.valid, p.placeholder)
    assert out.loc["r0", "e164"] == out.loc["r3", "e164"] == out.loc["r6", "e164"] == MOSCOW


def test_normalize_phones_parses_each_distinct_value_once(monkeypatch):
    calls = []
    real = phones._slow

    def counting(text, region, fallback_regions=()):
        calls.append(text)
        return real(text, region, fallback_regions)

    monkeypatch.setattr(phones, "_slow", counting)
    values = pd.Series(["+44 20 7946 0958", "8 800 CALL NOW"] * 50 + ["8 916 123 45 67"] * 50)
    out = normalize_phones(values)
    assert sorted(calls) == ["8 800 CALL NOW"]   # the others took the fast path
    assert out["e164"].iloc[0] == "+442079460958" and out["e164"].iloc[-1] == "+79161234567"


def test_normalize_phones_empty_series():
    out = normalize_phones(pd.Series([], dtype=object))
    assert len(out) == 0 and list(out.columns) == ["e164", "national", "ext", "valid", "placeholder"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.none(), st.floats(), st.integers()), max_size=12))
def test_normalize_phones_never_raises(values):
    out = normalize_phones(pd.Series(values, dtype=object))
    assert len(out) == len(values)


# -- normalize_phones in bulk gives parse_phone's answer, value by value ------------------------


def _assert_same_as_parse_phone(values: list, region: str = "RU", fallback_regions=FALLBACK_REGIONS) -> pd.DataFrame:
    out = normalize_phones(pd.Series(values, dtype=object), region, fallback_regions)
    got = list(out.itertuples(index=False, name=None))
    want = [dataclasses.astuple(parse_phone(v, region, fallback_regions)) for v in values]
    wrong = [(v, g, w) for v, g, w in zip(values, got, want) if g != w]
    assert not wrong, f"{len(wrong)} of {len(values)} differ, e.g. (value, bulk, parse_phone): {wrong[:5]}"
    return out


def _count_per_value(monkeypatch) -> list:
    """Records the values normalize_phones leaves to the one-at-a-time path."""
    calls = []
    real = phones._parse_unique

    def counting(raw, region, fallback_regions):
        calls.append(raw)
        return real(raw, region, fallback_regions)

    monkeypatch.setattr(phones, "_parse_unique", counting)
    return calls


def test_normalize_phones_demo_phones_equal_parse_phone(monkeypatch):
    _contacts, comms, _truth = generate_contacts_frames(20000)
    values = comms.loc[comms["type"] == "phone", "value"].drop_duplicates().tolist()
    assert len(values) > 20000
    per_value = _count_per_value(monkeypatch)
    out = _assert_same_as_parse_phone(values)
    assert out["valid"].mean() > 0.8 and out["ext"].notna().sum() > 500 and out["placeholder"].sum() >= 5
    assert len(per_value) < len(values) * 0.01  # nearly all answered in bulk


def _edge_cases() -> list:
    """Every written shape of Russian numbers with every two-digit prefix, placeholders, international
    prefixes (810, 00), extensions, foreign and non-geographic numbers, lengths 5..16, and junk."""
    rng = random.Random(2024)

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    nationals = [f"{p:02d}{digits(8)}" for p in range(100) for _ in range(3)]
    nationals += [f"{p:02d}{digits(rng.choice([7, 9]))}" for p in range(100)]   # 9 and 11 digits
    nationals += ["9161234567", "4951234567", "8121234567", "8005553535", "7172123456", "8101234567", "1012345678"]
    values = []
    for nat in nationals:
        a, s = nat[:3], nat[3:]
        values += [nat, "+7" + nat, "8" + nat, "7" + nat, f"+7 ({a}) {s[:3]}-{s[3:5]}-{s[5:]}", f"8 ({a}) {s}",
                   f"8-{a}-{s}", f"7 {a} {s}", f"({a}) {s[:3]}-{s[3:]}", f"{a}.{s[:3]}.{s[3:]}", f"  +7 {nat}  ",
                   f"+7{nat[:6]}", f"0{nat}", f"00{nat}", f"0 0{nat}", f"+{nat}", f"+8{nat}", f"810{nat}",
                   f"8-10-7-{nat}", f"8 {nat} доб. {s[:3]}", f"+7 {nat} ext {s[:2]}", f"{nat} x{s[:4]}", f"8{nat} #",
                   f"+7{nat}, доб {s[:1]}", f"+7 ({a}) {s} (доб. 12)", f"тел. 8{nat}", f"8{nat}\t", f"\t8{nat}",
                   f"+7\u00a0{a}\u00a0{s}", f"++7{nat}", f"8+{nat}", f"8 {nat} д. 5", f"{nat[:2]} {nat[2:]} доп. 77"]
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(700):
        cc = rng.choice(codes + [1, 1, 44, 44, 49, 33, 7, 54, 61])
        nat = rng.choice("123456789") + digits(rng.choice([6, 8, 9, 9, 10, 11]))
        values += [f"+{cc}{nat}", f"+{cc} {nat[:3]} {nat[3:]}", f"+{cc} (0){nat}", f"00{cc} {nat}", f"810{cc}{nat}",
                   f"8-10-{cc}-{nat}", f"{cc}{nat}", f"0{nat}", f"1{nat}", f"({nat[:3]}) {nat[3:6]}-{nat[6:]}",
                   f"+{cc}-{nat} ext. {rng.randint(1, 999)}", f"+0{nat}"]
    for n in range(5, 17):
        for prefix in ("", "+", "00", "8", "810", "7", "+7", "1", "+44 "):
            values += [prefix + digits(n) for _ in range(8)]
    values += ["+7 (000) 000-00-00", "1111111", "89999999999", "+7 999 999 99 99", "79999999999", "0000000",
               "123456", "1234567890", "+7 (123) 456-78-90", "9876543210", "+7 (495) 000-00-00", "84950000000",
               "8 800 000 00 00", "+7 (000) 000-00-00 доб. 5", "1111111 ext 2", "12345678901234", "01234567890",
               "нет", "-", "--", "0", "8", "+7", "+", "n/a", "x", "ext 5", "доб. 12", "12 доб. 3", "+800 1234 5678",
               "+882 1234 5678", "+1 800 555 0199", "+44 (0)20 7946 0958", "020 7946 0958", "1-617-755-8484", "646-825-6475", "375 29 123 45 67",
               "", "   ", " \u00a0 ", None, float("nan"), 84951234567.0, 89161234567, 7.5, "8 916 123 45 67\n",
               "71111111111", "72222222222", "70123456789", "8 1111111111", "+7 111 111 11 11", "+12", "+1 2", "+123",
               "0012", "00 7", "81012", "8 10 1", "+44", "+0", "+00", "12", "+07 916 123 45 67", "8100 123 45 67"]
    return values


EDGE_CASES = _edge_cases()


@pytest.mark.parametrize("few", [phones._FEW, 0], ids=["default", "all-re2"])
def test_normalize_phones_edge_cases_equal_parse_phone(monkeypatch, few):
    """With the default threshold most metadata patterns run in re; with 0 every plain one runs in RE2."""
    monkeypatch.setattr(phones, "_FEW", few)
    assert len(EDGE_CASES) > 20000
    per_value = _count_per_value(monkeypatch)
    _assert_same_as_parse_phone(EDGE_CASES)
    assert len(per_value) < len(EDGE_CASES) * 0.2


def test_normalize_phones_other_default_regions_equal_parse_phone():
    values = EDGE_CASES[::4]
    for region, fallbacks in (("US", ()), ("GB", ("US",)), ("KZ", FALLBACK_REGIONS), ("DE", ("RU",)), ("AR", ()),
                              ("AU", ("GB",)), ("XX", FALLBACK_REGIONS)):
        _assert_same_as_parse_phone(values, region, fallbacks)


def test_normalize_phones_without_region_takes_the_slow_path():
    _assert_same_as_parse_phone(["8 916 123 45 67", "+44 20 7946 0958", "нет", None], region="")


def _near(example: str, rng: random.Random) -> list[str]:
    """An example number, with a digit changed, added or dropped."""
    i = rng.randrange(len(example))
    return [example, example[:i] + rng.choice("0123456789") + example[i + 1:], example + rng.choice("0123456789"),
            example[:-1], rng.choice("0123456789") + example[1:]]


def test_bulk_validity_equals_validity_regex(monkeypatch):
    """_valid_in splits _validity_regex into RE2 patterns: the same answer for every country code, on
    random numbers and on every region's example numbers and numbers near them."""
    monkeypatch.setattr(phones, "_FEW", 0)
    rng = random.Random(17)
    checked_valid = 0
    for cc in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        nationals = [rng.choice("0123456789") + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16)))
                     for _ in range(300)]
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]:
            md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
            for name in phones._TYPE_DESCS if md is not None else ():
                desc = getattr(md, name)
                if desc is not None and desc.example_number:
                    nationals += _near(desc.example_number, rng)
        got = phones._valid_many(np.full(len(nationals), cc), pa.array(nationals, pa.string()))
        match = _validity_regex(cc).match
        assert got.tolist() == [match(x) is not None for x in nationals], cc
        checked_valid += got.sum()
    assert checked_valid > 2000


@FAST
@given(st.lists(st.text(alphabet="0123456789 ()-.+\u00a0\t", max_size=22), min_size=1, max_size=40))
def test_normalize_phones_digits_and_separators_equal_parse_phone(values):
    with mock.patch.object(phones, "_FEW", 0):
        _assert_same_as_parse_phone(values)


@FAST
@given(st.lists(st.tuples(st.from_regex(r"[+0-9][0-9 ()\-.]{4,16}", fullmatch=True),
                          st.sampled_from(["", " доб. 12", " ext 5", " x7", " #3", ", доб 45", " (доб. 1)", " д. 9"])),
                min_size=1, max_size=30))
def test_normalize_phones_with_extensions_equal_parse_phone(pairs):
    _assert_same_as_parse_phone([number + ext for number, ext in pairs])


def test_bulk_viable_equals_rules_viable(monkeypatch):
    """Each region's general pattern, in RE2 where plain, answers as _Rules.viable (re)."""
    monkeypatch.setattr(phones, "_FEW", 0)
    rng = random.Random(23)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        rules = phones._rules(region)
        if rules is None:
            continue
        md = phonenumbers.PhoneMetadata.metadata_for_region(region)
        numbers = ["".join(rng.choice("0123456789") for _ in range(rng.randint(2, 17))) for _ in range(200)]
        numbers += [x for name in phones._TYPE_DESCS if getattr(md, name) is not None and getattr(md, name).example_number
                    for x in _near(getattr(md, name).example_number, rng) if len(x) >= 2]
        digits = phones._clean(numbers)[3]
        assert len(digits) == len(numbers)  # all taken: digits only, two or more
        got = phones._viable(rules, digits, np.arange(len(numbers)), np.zeros(len(numbers), np.int64))
        assert got.tolist() == [rules.viable(x) for x in numbers], region
