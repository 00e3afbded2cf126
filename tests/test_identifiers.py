"""INN checksums, registered domains (offline), birthdates."""

from __future__ import annotations

import datetime as dt
import random
import socket

import idna
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matchers.identifiers as identifiers
from matchers.identifiers import (
    FREE_MAIL_DOMAINS,
    inn_checksum_ok,
    normalize_birthdates,
    normalize_domains,
    normalize_inns,
    parse_birthdate,
    parse_inn,
    parse_kpp,
    registered_domain,
)

FAST = settings(max_examples=150, deadline=None, derandomize=True)

INN_CASES = [
    ("company INN (Sberbank)", "7707083893", ("7707083893", True)),
    ("person INN", "500100732259", ("500100732259", True)),
    ("company INN, wrong control digit", "7707083894", ("7707083894", False)),
    ("person INN, wrong 11th digit", "500100732269", ("500100732269", False)),
    ("with a label and dashes", "ИНН 7707-083-893", ("7707083893", True)),
    ("read as a float by pandas", 7707083893.0, ("7707083893", True)),
    ("read as an int", 7707083893, ("7707083893", True)),
    ("wrong length", "123", ("123", False)),
    ("INN/KPP in one field (1C, Bitrix24)", "7707083893/695002001", ("7707083893", True)),
    ("INN and KPP labelled", "ИНН 7707083893 КПП 695002001", ("7707083893", True)),
    ("labels first", "ИНН/КПП 7707083893/773601001", ("7707083893", True)),
    ("KPP after a comma", "7707083893, КПП 773601001", ("7707083893", True)),
    ("KPP after a space", "7707083893 695002001", ("7707083893", True)),
    ("KPP glued to its label", "ИНН 7707083893 КПП695002001", ("7707083893", True)),
    ("KPP first", "КПП 773601001 ИНН 7707083893", ("7707083893", True)),
    ("spaced slash", "7707083893 / 773601001", ("7707083893", True)),
    ("labels glued to both", "ИНН7707083893КПП773601001", ("7707083893", True)),
    ("KPP first, unlabelled", "773601001/7707083893", ("7707083893", True)),
    ("an OGRN beside it", "ИНН 7707083893 ОГРН 1027700132195", ("7707083893", True)),
    ("the same INN twice", "7707083893; 7707083893", ("7707083893", True)),
    # two firms' (or a firm's and a person's) INNs: no guess, the value is reported as it is
    ("two different INNs: neither", "500100732259; 7707083893", ("5001007322597707083893", False)),
    ("two different INNs after a space", "7707083893 500100732259", ("7707083893500100732259", False)),
    ("a wrong INN beside a KPP stays itself", "7707083894/695002001", ("7707083894", False)),
    ("a wrong INN beside a valid one", "7707083894, 7707083893", ("7707083893", True)),
    ("an OGRN is no INN", "1027700132195", ("1027700132195", False)),
    ("all zeros pass the sums but are not an INN", "0000000000", ("0000000000", False)),
    ("no digits", "нет", (None, False)),
    ("None", None, (None, False)),
    ("NaN", float("nan"), (None, False)),
]


@pytest.mark.parametrize("desc,raw,expected", INN_CASES, ids=[c[0] for c in INN_CASES])
def test_parse_inn(desc, raw, expected):
    assert parse_inn(raw) == expected


def _with_checksum(body: str) -> str:
    """A valid INN from its first 9 (company) or 10 (person) digits, computed independently."""
    def digit(ds, ws):
        return str(sum(int(d) * w for d, w in zip(ds, ws)) % 11 % 10)
    if len(body) == 9:
        return body + digit(body, [2, 4, 10, 3, 5, 9, 4, 6, 8])
    first = body + digit(body, [7, 2, 4, 10, 3, 5, 9, 4, 6, 8])
    return first + digit(first, [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8])


def test_leading_zero_restored():
    inn = _with_checksum("027012974")
    assert inn.startswith("0") and parse_inn(inn[1:]) == (inn, True)
    assert parse_inn(int(inn)) == (inn, True)
    person = _with_checksum("0123456789")
    assert parse_inn(person[1:]) == (person, True)


def test_checksums_on_generated_inns():
    rng = random.Random(5)
    for _ in range(2000):
        body = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 10])))
        inn = _with_checksum(body)
        if inn.count("0") == len(inn):
            continue
        assert inn_checksum_ok(inn), inn
        last = str((int(inn[-1]) + rng.randint(1, 9)) % 10)
        assert not inn_checksum_ok(inn[:-1] + last), inn


def test_an_inn_beside_a_kpp_is_found_wherever_it_stands():
    """Generated INNs with a KPP around them, in the ways 1C and Bitrix24 exports write them."""
    rng = random.Random(11)
    for _ in range(300):
        inn = _with_checksum("".join(rng.choice("123456789") for _ in range(9)))
        kpp = "".join(rng.choice("0123456789") for _ in range(9))
        for text in (f"{inn}/{kpp}", f"ИНН {inn} КПП {kpp}", f"ИНН {inn} КПП{kpp}", f"КПП {kpp} ИНН {inn}",
                     f"{kpp} / {inn}", f"ИНН/КПП: {inn} / {kpp}"):
            assert parse_inn(text) == (inn, True), text
        other = _with_checksum("".join(rng.choice("123456789") for _ in range(9)))
        if other != inn:
            assert parse_inn(f"ИНН {inn}, ИНН {other}")[1] is False


KPP_CASES = [
    ("INN/KPP in one field", "7707083893/770701001", "770701001"),
    ("labelled", "ИНН 7707083893 КПП 784243001", "784243001"),
    ("KPP first", "КПП 773601001 ИНН 7707083893", "773601001"),
    ("labels glued to both", "ИНН7707083893КПП773601001", "773601001"),
    ("after a space", "7707083893 695002001", "695002001"),
    ("after a comma", "7707083893, КПП 773601001", "773601001"),
    ("the same KPP twice", "7707083893/770701001, КПП 770701001", "770701001"),
    ("an INN alone", "7707083893", None),
    ("an INN as a number", 7707083893.0, None),
    ("an INN that lost its leading zero is no KPP", _with_checksum("027012974")[1:], None),
    ("a wrong INN: no KPP to trust", "7707083894/695002001", None),
    ("a sole trader has no KPP", "500100732259/695002001", None),
    ("two different KPPs: no guess", "7707083893/770701001/784243001", None),
    ("zeros are no KPP", "7707083893/000000000", None),
    ("an OGRN is no KPP", "ИНН 7707083893 ОГРН 1027700132195", None),
    ("the letter form is not read", "7707083893/7707AB001", None),
    ("two INNs", "7707083893; 500100732259/695002001", None),
    ("digits of another script are no KPP", "7707083893/٧٧٠٧٠١٠٠١", None),
    ("None", None, None),
    ("NaN", float("nan"), None),
]


@pytest.mark.parametrize("desc,raw,expected", KPP_CASES, ids=[c[0] for c in KPP_CASES])
def test_parse_kpp(desc, raw, expected):
    assert parse_kpp(raw) == expected


def test_a_kpp_beside_an_inn_is_found_wherever_it_stands():
    rng = random.Random(12)
    for _ in range(300):
        inn = _with_checksum("".join(rng.choice("123456789") for _ in range(9)))
        kpp = "".join(rng.choice("0123456789") for _ in range(4)) + "01001"
        for text in (f"{inn}/{kpp}", f"ИНН {inn} КПП {kpp}", f"ИНН {inn} КПП{kpp}", f"КПП {kpp} ИНН {inn}",
                     f"{kpp} / {inn}", f"ИНН/КПП: {inn} / {kpp}", f"{inn} {kpp}"):
            assert parse_inn(text) == (inn, True) and parse_kpp(text) == kpp, text


def test_prepare_keeps_the_kpp_beside_the_inn():
    from matchers.prepare import prepare
    from matchers.table import RoleTable

    raw = ["ПАО Сбербанк", "7707083893"], ["Сбербанк", "7707083893/770701001"], \
        ["Сбербанк, филиал", "ИНН 7707083893 КПП 784243001"], ["ИП Иванов", "500100732259"], ["Нет", None]
    records = pd.DataFrame(raw, columns=["company", "tax_id"], index=pd.Index([1, 2, 3, 4, 5], name="id"))
    p = prepare(RoleTable("company", records, pd.DataFrame(columns=["id", "role", "raw"])))
    assert p.records["tax_id"].tolist() == ["7707083893"] * 3 + ["500100732259", None]
    assert p.records["kpp"].tolist() == [None, "770701001", "784243001", None, None]


def test_normalize_inns():
    out = normalize_inns(pd.Series(["7707083893", None, "7707083894", 7707083893.0], index=list("wxyz")))
    assert list(out.index) == list("wxyz")
    assert out["inn"].tolist() == ["7707083893", None, "7707083894", "7707083893"]
    assert out["valid"].tolist() == [True, False, False, True]


DOMAIN_CASES = [
    ("URL with path and www", "https://www.Romashka.ru/about", "romashka.ru"),
    ("two-level public suffix", "shop.example.co.uk", "example.co.uk"),
    ("e-mail address", "ivan@Romashka.ru", "romashka.ru"),
    ("IDNA domain from an address", "ivan@почта.рф", "xn--80a1acny.xn--p1ai"),
    ("Cyrillic URL with port", "HTTP://WWW.Ромашка.РФ:8080/x?y=1", idna.encode("ромашка.рф").decode()),
    ("Punycode stays", "xn--80a1acny.xn--p1ai", "xn--80a1acny.xn--p1ai"),
    ("regional subdomain", "http://a.b.c.msk.ru", "msk.ru"),
    ("trailing dot", "romashka.ru.", "romashka.ru"),
    ("free mail is still returned", "user@gmail.com", "gmail.com"),
    ("IP address", "192.168.0.1", None),
    ("localhost", "localhost", None),
    ("bare word", "romashka", None),
    ("None", None, None),
    ("empty", "", None),
    ("a site builder's subdomain is the firm's", "https://lutik.tilda.ws/about", "lutik.tilda.ws"),
    ("another firm on the same builder", "fialka.tilda.ws", "fialka.tilda.ws"),
    ("a site builder alone is no firm's", "www.tilda.ws", None),
    ("a social page is the firm's", "https://vk.com/romashka_msk?w=wall-1", "vk.com/romashka_msk"),
    ("a company page under a prefix", "www.linkedin.com/company/acme-ltd/", "linkedin.com/acme-ltd"),
    ("a social site alone is no firm's", "instagram.com", None),
    # (review: the first word of the path made one key of every firm's group, profile or post)
    ("a group by its number", "https://ok.ru/group/52365378486421", "ok.ru/group/52365378486421"),
    ("a profile by its id", "https://www.facebook.com/profile.php?id=100012345678",
     "facebook.com/profile.php?id=100012345678"),
    ("a channel's preview is the channel", "https://t.me/s/romashka", "t.me/romashka"),
    ("a post is no firm's address", "https://instagram.com/p/CxYz123/", None),
    ("a video is no firm's address", "https://youtube.com/watch?v=abc", None),
    ("www only as a whole label", "wwwexpert.tilda.ws", "wwwexpert.tilda.ws"),
    ("www before a builder's subdomain", "www.lutik.tilda.ws", "lutik.tilda.ws"),
]


@pytest.mark.parametrize("desc,value,expected", DOMAIN_CASES, ids=[c[0] for c in DOMAIN_CASES])
def test_registered_domain(desc, value, expected):
    assert registered_domain(value) == expected


def test_free_mail_domains():
    assert {"gmail.com", "mail.ru", "yandex.ru", "ya.ru", "rambler.ru"} <= FREE_MAIL_DOMAINS
    assert registered_domain("ivan@mail.ru") in FREE_MAIL_DOMAINS
    assert registered_domain("https://romashka.ru") not in FREE_MAIL_DOMAINS


def test_registered_domain_needs_no_network(monkeypatch):
    """A fresh extractor answers with every socket connection refused: the bundled suffix list."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    identifiers._extractor.cache_clear()
    identifiers._registered.cache_clear()
    assert registered_domain("https://www.shop.example.co.uk/path") == "example.co.uk"
    assert registered_domain("ivan@почта.рф") == "xn--80a1acny.xn--p1ai"


def test_normalize_domains():
    out = normalize_domains(pd.Series(["https://romashka.ru", None, "bad", "ivan@romashka.ru"], index=[3, 2, 1, 0]))
    assert list(out.index) == [3, 2, 1, 0]
    assert out.tolist() == ["romashka.ru", None, None, "romashka.ru"]


MARCH_7 = dt.date(1985, 3, 7)
DATE_CASES = [
    ("ISO", "1985-03-07", MARCH_7),
    ("ISO with time", "1985-03-07 00:00:00", MARCH_7),
    ("Russian dotted", "07.03.1985", MARCH_7),
    ("slashes are day first", "7/3/1985", MARCH_7),
    ("two-digit year", "07.03.85", MARCH_7),
    ("compact number", 19850307, MARCH_7),
    ("Russian month name", "7 марта 1985", MARCH_7),
    ("Russian month with г.", "7 марта 1985 г.", MARCH_7),
    ("English month name", "March 7, 1985", MARCH_7),
    ("date object", MARCH_7, MARCH_7),
    ("datetime object", dt.datetime(1985, 3, 7, 10, 5), MARCH_7),
    ("pandas Timestamp", pd.Timestamp("1985-03-07 12:00"), MARCH_7),
    ("numpy datetime64", np.datetime64("1985-03-07"), MARCH_7),
    ("no such day", "31.02.1985", None),
    ("before 1900", "1800-01-01", None),
    ("in the future", "2999-01-01", None),
    ("junk", "junk", None),
    ("None", None, None),
    ("NaT", pd.NaT, None),
    ("NaN", float("nan"), None),
]


@pytest.mark.parametrize("desc,raw,expected", DATE_CASES, ids=[c[0] for c in DATE_CASES])
def test_parse_birthdate(desc, raw, expected):
    assert parse_birthdate(raw) == expected


def test_normalize_birthdates():
    values = pd.Series(["1985-03-07", "07.03.1985", None, "junk", MARCH_7, np.nan], index=list("abcdef"))
    out = normalize_birthdates(values)
    assert list(out.index) == list("abcdef")
    assert str(out.dtype) == "datetime64[ns]"
    assert out["a"] == out["b"] == out["e"] == pd.Timestamp("1985-03-07")
    assert out[["c", "d", "f"]].isna().all()


@FAST
@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.dates(), st.datetimes()))
def test_identifiers_never_raise(value):
    digits, ok = parse_inn(value)
    assert digits is None or digits.isdigit()
    assert ok is False or len(digits) in (10, 12)
    domain = registered_domain(value)
    assert domain is None or (domain.isascii() and "." in domain)
    parse_birthdate(value)
    kpp = parse_kpp(value)
    assert kpp is None or (len(kpp) == 9 and kpp.isascii() and kpp.isdigit())


@FAST
@given(st.text(alphabet="0123456789٣/ ,;ИНКП", max_size=40))
def test_a_kpp_is_nine_ascii_digits_beside_a_valid_company_inn(text):
    kpp = parse_kpp(text)
    if kpp is not None:
        inn, ok = parse_inn(text)
        assert ok and len(inn) == 10 and len(kpp) == 9 and kpp.isascii() and kpp.isdigit(), text


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.none(), st.floats(), st.dates()), max_size=10))
def test_vectorised_identifiers_never_raise(values):
    s = pd.Series(values, dtype=object)
    assert len(normalize_birthdates(s)) == len(normalize_inns(s)) == len(normalize_domains(s)) == len(values)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,8}){0,2}\.(ru|com|co\.uk|рф|org)", fullmatch=True))
def test_registered_domain_idempotent(host):
    domain = registered_domain(host)
    assert domain is None or registered_domain(domain) == domain
