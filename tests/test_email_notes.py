"""An address with a note after a comma ("ivan@mail.ru, нет", "ivan@mail.ru, старый") is that address: the
repair of a comma typed for a dot ("ivan@mail,ru") read the note as the address's last domain label, and
"a@x.ru, нет" came out a valid a@x.ru.нет (an internationalised domain), which matched nobody's."""

from __future__ import annotations

import pandas as pd
import pytest

from matchers.emails import normalize_emails, parse_email

CASES = [("ivan@mail.ru, нет", "ivan@mail.ru"), ("ivan@mail.ru, старый", "ivan@mail.ru"),
         ("ivan@mail.ru,", "ivan@mail.ru"), ("ivan@mail,ru", "ivan@mail.ru"), ("ivan@yandex, ru", "ivan@yandex.ru"),
         ("ivan@mail.ru,com", "ivan@mail.ru.com")]


@pytest.mark.parametrize(("text", "address"), CASES, ids=[c[0] for c in CASES])
def test_a_note_after_a_comma_is_no_part_of_the_address(text, address):
    one = parse_email(text)
    assert (one.email, one.valid) == (address, True)
    bulk = normalize_emails(pd.Series(["someone@example.org", text]))
    assert bulk.loc[1, "email"] == address


def test_what_is_no_address_stays_none():
    assert parse_email("ivan@mail,ru,нет").valid is False
    assert parse_email("a@x.ru, b@y.ru").valid is False  # (several addresses: the import splits them)
