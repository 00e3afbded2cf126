"""E-mail normalisation: one spelling, provider rules, placeholders, fast path = email-validator."""

from __future__ import annotations

import random
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matchers.emails as emails
from matchers.emails import Email, _fast, _slow, normalize_emails, parse_email

FAST = settings(max_examples=150, deadline=None, derandomize=True)

CASES = [
    # description, raw, email, canonical, valid, placeholder
    ("lower-cased", "Ivan.Petrov@Mail.RU", "ivan.petrov@mail.ru", "ivan.petrov@mail.ru", True, False),
    ("trimmed", "  ivan@mail.ru  ", "ivan@mail.ru", "ivan@mail.ru", True, False),
    ("gmail ignores dots", "Ivan.Petrov@gmail.com", "ivan.petrov@gmail.com", "ivanpetrov@gmail.com", True, False),
    ("googlemail is gmail, +tag dropped", "ivan.petrov+crm@googlemail.com", "ivan.petrov+crm@googlemail.com",
     "ivanpetrov@gmail.com", True, False),
    ("ya.ru is yandex.ru, dot = dash", "Ivan.Petrov@ya.ru", "ivan.petrov@ya.ru", "ivan-petrov@yandex.ru", True, False),
    ("yandex.com, +tag dropped", "ivan-petrov+x@yandex.com", "ivan-petrov+x@yandex.com", "ivan-petrov@yandex.ru",
     True, False),
    ("outlook drops +tag only", "i.petrov+news@outlook.com", "i.petrov+news@outlook.com", "i.petrov@outlook.com",
     True, False),
    ("other providers keep dots and tags", "i.petrov+x@mail.ru", "i.petrov+x@mail.ru", "i.petrov+x@mail.ru",
     True, False),
    ("IDNA domain as Punycode", "user@почта.рф", "user@xn--80a1acny.xn--p1ai", "user@xn--80a1acny.xn--p1ai",
     True, False),
    ("Punycode given stays", "user@xn--80a1acny.xn--p1ai", "user@xn--80a1acny.xn--p1ai",
     "user@xn--80a1acny.xn--p1ai", True, False),
    ("Cyrillic local part", "Иван@Почта.РФ", "иван@xn--80a1acny.xn--p1ai", "иван@xn--80a1acny.xn--p1ai", True, False),
    ("mailto: prefix", "mailto:Ivan@Mail.ru", "ivan@mail.ru", "ivan@mail.ru", True, False),
    ("display name and brackets", "Ivan Petrov <ivan@mail.ru>", "ivan@mail.ru", "ivan@mail.ru", True, False),
    ("trailing dot", "ivan@mail.ru.", "ivan@mail.ru", "ivan@mail.ru", True, False),
    ("comma typed for a dot", "ivan@mail,ru", "ivan@mail.ru", "ivan@mail.ru", True, False),
    ("info@ is a real address", "info@romashka.ru", "info@romashka.ru", "info@romashka.ru", True, False),
    ("no @", "ivan.mail.ru", None, None, False, False),
    ("no dot in the domain", "ivan@mail", None, None, False, False),
    ("two dots", "ivan@mail..ru", None, None, False, False),
    ("hyphen after @", "ivan@-mail.ru", None, None, False, False),
    ("two addresses", "ivan@mail.ru; petr@mail.ru", None, None, False, False),
    ("special-use domain", "user@x.onion", None, None, False, False),
    ("test@test.ru", "test@test.ru", None, None, False, True),
    ("no@email", "no@email", None, None, False, True),
    ("noemail@", "noemail@mail.ru", None, None, False, True),
    ("none@", "none@x.ru", None, None, False, True),
    ("example.com", "user@example.com", None, None, False, True),
    ("a@a.ru", "a@a.ru", None, None, False, True),
    ("repeated letter", "aaa@mail.ru", None, None, False, True),
    ("noreply", "no-reply@romashka.ru", None, None, False, True),
    ("word нет", "нет", None, None, False, True),
    ("dash", "-", None, None, False, True),
    ("None", None, None, None, False, False),
    ("NaN", float("nan"), None, None, False, False),
    ("empty", "", None, None, False, False),
]


@pytest.mark.parametrize("desc,raw,email,canonical,valid,placeholder", CASES, ids=[c[0] for c in CASES])
def test_parse_email(desc, raw, email, canonical, valid, placeholder):
    e = parse_email(raw)
    assert (e.email, e.canonical, e.valid, e.placeholder) == (email, canonical, valid, placeholder)


def test_email_parts_and_no_provider_rules():
    e = parse_email("Ivan.Petrov+X@GoogleMail.com")
    assert e == Email("ivan.petrov+x@googlemail.com", "ivanpetrov@gmail.com", "ivan.petrov+x", "googlemail.com",
                      True, False)
    plain = parse_email("Ivan.Petrov+X@GoogleMail.com", provider_rules=False)
    assert plain.canonical == plain.email == "ivan.petrov+x@googlemail.com"


def test_fast_path_agrees_with_email_validator():
    rng = random.Random(3)
    local_chars = string.ascii_letters + string.digits + "._-+!#'"
    domain_chars = string.ascii_lowercase + string.digits + "-."
    tlds = [".ru", ".com", ".r", ".c0m", ".123", ".test", ".xn--p1ai", "", ".co.uk", ".local", ".-ru", ".ru-", ".RU"]
    answered = 0
    for _ in range(6000):
        local = "".join(rng.choice(local_chars) for _ in range(rng.randint(1, 12)))
        domain = "".join(rng.choice(domain_chars) for _ in range(rng.randint(1, 12))) + rng.choice(tlds)
        text = local + "@" + domain
        fast = _fast(text, True)
        if fast is None:
            continue
        answered += 1
        assert fast == _slow(text, True), text
    assert answered > 1000


@FAST
@given(st.text())
def test_parse_email_never_raises(s):
    e = parse_email(s)
    assert isinstance(e, Email)
    assert not (e.placeholder and e.email)
    assert (e.email is not None) == e.valid


@FAST
@given(st.emails())
def test_parse_email_idempotent(s):
    e = parse_email(s)
    if e.valid:
        again = parse_email(e.email)
        assert again.email == e.email and again.canonical == e.canonical
        assert parse_email(e.canonical).canonical == e.canonical


def test_normalize_emails_index_nan_and_agreement():
    values = pd.Series(["Ivan@Mail.ru", None, np.nan, "ivan@mail.ru", "test@test.ru", "bad@", "x.y@gmail.com"],
                       index=[5, 4, 3, 2, 1, 0, -1])
    out = normalize_emails(values)
    assert list(out.index) == list(values.index)
    assert list(out.columns) == ["email", "canonical", "local", "domain", "valid", "placeholder"]
    for idx, raw in values.items():
        e = parse_email(raw)
        assert tuple(out.loc[idx]) == (e.email, e.canonical, e.local, e.domain, e.valid, e.placeholder)
    assert out.loc[5, "email"] == out.loc[2, "email"]


def _spy(monkeypatch, name: str) -> list[str]:
    """The texts emails.<name>(text, rules) is called with, from now on."""
    calls: list[str] = []
    real = getattr(emails, name)

    def counting(text, rules):
        calls.append(text)
        return real(text, rules)

    monkeypatch.setattr(emails, name, counting)
    return calls


def test_normalize_emails_checks_each_distinct_value_once(monkeypatch):
    calls = _spy(monkeypatch, "_slow")
    out = normalize_emails(pd.Series(["иван@почта.рф"] * 100 + ["ivan@mail.ru"] * 100))
    assert calls == ["иван@почта.рф"]
    assert out["valid"].all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(), st.none(), st.floats(), st.emails()), max_size=12))
def test_normalize_emails_never_raises(values):
    out = normalize_emails(pd.Series(values, dtype=object))
    assert len(out) == len(values)


# -- normalize_emails (plain addresses in bulk) = parse_email (one value at a time) ------------------

def assert_same_as_parse_email(values: list, provider_rules: bool) -> None:
    index = pd.RangeIndex(len(values)) * 3 + 7
    out = normalize_emails(pd.Series(values, index=index, dtype=object), provider_rules=provider_rules)
    assert list(out.columns) == list(emails.EMAIL_COLUMNS)
    assert out.index.equals(index)
    assert [str(t) for t in out.dtypes] == ["object"] * 4 + ["bool"] * 2
    for raw, row in zip(values, out.itertuples(index=False, name=None)):
        e = parse_email(raw, provider_rules)
        assert row == (e.email, e.canonical, e.local, e.domain, e.valid, e.placeholder), repr(raw)
        assert all(v is None or type(v) is str for v in row[:4]), repr(raw)


@pytest.mark.parametrize("provider_rules", [True, False])
def test_normalize_emails_demo_addresses_same_as_parse_email(provider_rules):
    from crm.demo import generate_contacts_frames

    _, comms, _ = generate_contacts_frames(20000)
    values = comms.loc[comms["type"] == "email", "value"].tolist()
    assert len(values) > 10000
    assert_same_as_parse_email(values, provider_rules)


def edge_cases() -> list:
    domains = ["mail.ru", "Romashka.RU", "gmail.com", "GoogleMail.com", "ya.ru", "yandex.com", "yandex.ua",
               "outlook.com", "ICLOUD.com", "pm.me", "почта.рф", "xn--80a1acny.xn--p1ai", "example.com",
               "test.ru", "mail.mail", "x.x", "mail.test", "b.local", "b.localhost", "x.onion", "b.arpa",
               "b.invalid", "b.TEST", "b.c0m", "b.123", "a--b.ru", "ab--cd.ru", "xn--abc.ru", "-b.ru", "b-.ru",
               "b..ru", "b", "[1.2.3.4]", "münchen.de", "b_c.ru", "co.uk", "a.ru", "qwe.ru", "abc.ru", "abcd.ru",
               "x" * 63 + ".ru", "x" * 64 + ".ru", ".".join(["abcdefghi"] * 25) + ".ru"]
    locals_ = ["ivan", "Ivan.Petrov", "ivan.petrov+crm", "ivan-petrov+x", "i.v.a.n", "+tag", "+", "a+b+c",
               "a", "aa", "aaa", "AAA", "11", "a.a", "abc", "abcd", "qwe", "Test", "test+x", "no.email", "noemail",
               "no-reply", "nobody", "тест", "Иван", "üser", "a..b", ".ivan", "ivan.", "-ivan", "a'b", "a/b",
               "{x}", '"quoted"', "a,b", "xy" * 32, "xy" * 32 + "z", "xy" * 120]
    long_address = "xy" * 32 + "@" + "y" * 63 + "." + "z" * 63 + "."
    values = [local + "@" + domain for local in locals_ for domain in domains]
    values += sorted(emails._PLACEHOLDER_WORDS)
    values += [w + "@mail.ru" for w in sorted(emails._PLACEHOLDER_LOCALS)]
    values += ["user@" + w + ".com" for w in sorted(emails._PLACEHOLDER_DOMAIN_LABELS)]
    values += ["user@" + d for d in sorted(emails._PLACEHOLDER_DOMAINS)]
    values += [
        "mailto:Ivan@Mail.ru", "MAILTO:ivan@mail.ru", "mailto:", "Ivan Petrov <Ivan@Mail.ru>", "<ivan@mail.ru>",
        "<test@test.ru>", "Test <ivan@mail.ru>", "ivan @mail.ru", " ivan@mail.ru", "ivan@mail.ru ",
        "\tivan@mail.ru\n", "ivan@mail.ru\n", "\u00a0ivan@mail.ru", "ivan@mail.ru\u200b", "ivan@mail.ru.",
        "ivan@mail.ru..", ".ivan@mail.ru", "ivan@mail,ru", "ivan,petrov@mail,ru", "ivan@mail.ru,", ";ivan@mail.ru:",
        "ivan@@mail.ru", "a@b.ru@b.ru", "ivan@mail.ru; petr@mail.ru", "ivan.mail.ru", "@mail.ru", "ivan@", "@",
        "@@", "a@b", "ivan＠mail.ru", "\ud800@mail.ru", "Ivan@MAIL.RU", "IVAN@GMAIL.COM", "I.Van+News@GMail.com",
        "i.van@gmail.com", long_address + "w" * 61, long_address + "w" * 62,   # 254 and 255 characters
        "ab" * 124 + "x@b.ru", "ab" * 125 + "@b.ru", "", " ", "\t", ".", ",",
        None, np.nan, float("nan"), pd.NA, 123, 1.0, b"ivan@mail.ru", True,
    ]
    values += ["ivan@mail.ru", "ivan@mail.ru", "test@test.ru"]   # repeats
    return values


@pytest.mark.parametrize("provider_rules", [True, False])
def test_normalize_emails_edge_cases_same_as_parse_email(provider_rules):
    values = edge_cases()
    assert len(values) > 1500
    assert_same_as_parse_email(values, provider_rules)


_PIECES = ["ivan", "Ivan.Petrov", "+tag", "+", "test", "no", "aa", "a", ".", "..", "-", "--", "_", "@", "@@", ",",
           ";", ":", " ", "\t", "mailto:", "<", ">", "gmail.com", "GMAIL", "ya.ru", "yandex.ru", "outlook.com",
           "mail.ru", "example.com", "почта.рф", "xn--p1ai", "ru", ".test", ".local", "1", "Ё", "ü", "'", "x" * 70]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
                          st.text(alphabet="aAzZ09.+-_@,;:<> \tmé", max_size=30), st.emails()),
                max_size=20),
       st.booleans())
def test_normalize_emails_same_as_parse_email_property(values, provider_rules):
    assert_same_as_parse_email(values, provider_rules)


def test_normalize_emails_plain_addresses_in_bulk(monkeypatch):
    calls = _spy(monkeypatch, "_parse_text")
    plain = ["Ivan.Petrov+crm@GMail.com", "ivan-petrov@ya.ru", "test@test.ru", "aaa@mail.ru", "x@romashka.ru"]
    out = normalize_emails(pd.Series(plain + [" ivan@mail.ru", "ivan@mail,ru", "user@x.onion"]))
    assert calls == ["ivan@mail.ru", "ivan@mail,ru", "user@x.onion"]
    assert out["canonical"].tolist()[:2] == ["ivanpetrov@gmail.com", "ivan-petrov@yandex.ru"]
    assert out["placeholder"].tolist() == [False, False, True, True, False, False, False, False]
