"""A data steward's probe of `crm-dedup import` (crm/csv_io.py) with Bitrix24 exports as they come.

- A time written day first with dots and a UTC offset (07.03.2024 10:15:00 +03:00, 07.03.2024 10:15+0300) is read
  with its offset, as the ISO form with one is (before, it was refused and the row went in without it); the portal
  time zone applies only to times without an offset, in either form.
- A header ending in empty columns (a trailing ";") takes rows that end where its named columns end (before,
  every such row was refused for its number of cells); a quote left open in such a file is still caught as before.
- Two columns of the file for one field (Bitrix24's "Адрес" and "Фактический адрес", a header repeated) both filled
  with different values: the first is stored, and the summary now says the other was left out (before, silently).

What was already right is pinned as well: a Windows-1251 or UTF-8-with-BOM export, ';', Russian headers, a comment
with line breaks, quotes and delimiters in it, a phone column with several numbers and an extension.

Tests run on SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import schema
from crm.csv_io import import_csv
from crm.store import Store


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ";", encoding: str = "cp1251") -> Path:
    """By default as a Bitrix24 export writes it (Windows-1251, ';')."""
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def records(store: Store, entity: str = "contact") -> dict[int, dict]:
    t = schema.ENTITY_TABLES[entity]
    with store.engine.connect() as conn:
        return {r.id: r._asdict() for r in conn.execute(sa.select(t))}


def comms(store: Store, entity: str = "contact") -> Counter:
    c = schema.communications
    with store.engine.connect() as conn:
        return Counter(tuple(r) for r in conn.execute(
            sa.select(c.c.entity_id, c.c.type, c.c.kind, c.c.value).where(c.c.entity_type == entity)))


# -- a dotted date-time with a UTC offset ---------------------------------------------------------------------------

@pytest.mark.parametrize("zone", [None, "Asia/Yekaterinburg"])
def test_a_dotted_time_with_an_offset_is_read_as_the_iso_one_is(store, tmp_path, zone):
    f = write_csv(tmp_path / "offsets.csv", [
        ["id", "last_name", "birthdate", "created_at", "modified_at"],
        ["1", "Iso", "1985-03-07T00:00:00+03:00", "2024-03-07 10:15:00 +03:00", "2024-03-07T10:15+0300"],
        ["2", "Dotted", "07.03.1985 00:00:00 +03:00", "07.03.2024 10:15:00 +03:00", "07.03.2024 10:15+0300"],
        ["3", "DottedTight", "", "07.03.2024 10:15:00+03:00", "7.3.2024T10:15+03"],
        ["4", "DottedZ", "", "07.03.2024 07:15Z", "07.03.2024 02:15:00 -05:00"],
        ["5", "Slash", "", "13/03/2024 10:15 +03:00", "03/13/2024 10:15:00+0300"],
        ["6", "Naive", "", "07.03.2024 10:15:00", "2024-03-07 10:15:00"],
        ["7", "BadOffset", "", "07.03.2024 10:15 +25:00", "2024-03-07 10:15 +25:00"],
    ], delimiter=",", encoding="utf-8")
    report = import_csv(store, f, "contact", portal_timezone=zone)
    assert (report.imported, report.rejected) == (7, 0)
    got = {rid: (r["birthdate"], r["created_at"], r["modified_at"]) for rid, r in records(store).items()}
    exact = datetime(2024, 3, 7, 7, 15)  # 10:15 at +03:00, in UTC
    assert got[1] == (date(1985, 3, 7), exact, exact)
    assert got[2] == got[1]
    for rid in (3, 4):
        assert got[rid] == (None, exact, exact), rid
    assert got[5] == (None, exact + timedelta(days=6), exact + timedelta(days=6))  # (13 March, read one way only)
    # a time without an offset, in either form, is read in the portal's zone (Yekaterinburg is +05:00), else as UTC
    local = datetime(2024, 3, 7, 5, 15) if zone else datetime(2024, 3, 7, 10, 15)
    assert got[6] == (None, local, local)
    assert report.naive_times == 1 and report.naive_line == 7  # (only the row without offsets)
    # an offset no clock has is refused the same way in both forms, naming the line, id, column and value
    bad = [(p.line, p.record, p.column, p.value) for p in report.cell_problems]
    assert bad == [(8, "7", "created_at", "07.03.2024 10:15 +25:00"),
                   (8, "7", "modified_at", "2024-03-07 10:15 +25:00")]
    assert all("no such date or time" in p.reason for p in report.cell_problems)


# -- a header ending in empty columns -----------------------------------------------------------------------------

def test_rows_ending_where_the_headers_named_columns_end_are_read(store, tmp_path):
    f = tmp_path / "trailing.csv"
    f.write_bytes("\r\n".join([
        "ID;Фамилия;Имя;Рабочий телефон;;;",
        "1;Иванов;Иван;+79165551201",
        "2;Петрова;Анна;;;",
        "3;Сидоров;Олег",  # its phone cell missing too: one cell short of the named columns
        "4;Орлов;Юрий;+79165551204;;;;;x",  # a value past the header's end
    ]).encode("cp1251") + b"\r\n")
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert (report.rows_read, report.imported, report.rejected) == (4, 2, 2)
    assert {rid: r["last_name"] for rid, r in records(store).items()} == {1: "Иванов", 2: "Петрова"}
    assert comms(store) == Counter({(1, "phone", "work", "+79165551201"): 1})
    assert [(p.line, p.record) for p in report.problems] == [(4, "3"), (5, "4")]
    assert "has 3 cells where the header has 7" in report.problems[0].reason
    assert "has 9 cells where the header has 7" in report.problems[1].reason


def test_a_quote_left_open_is_still_caught_when_the_header_ends_in_empty_columns(store, tmp_path):
    """Rows as long as the named columns are rows: a quote left open that would take them into one value is the
    bad row of its line, and the rows after it go in."""
    f = tmp_path / "open_quote.csv"
    f.write_bytes("\r\n".join([
        "ID;Фамилия;Комментарий;;",
        '1;Иванов;"открыта',
        "2;Петрова;x",
        '3;Сидоров;"закрыта"',
        "4;Орлов;y;;",
    ]).encode("cp1251") + b"\r\n")
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert {rid: r["comments"] for rid, r in records(store).items()} == {2: "x", 3: "закрыта", 4: "y"}
    assert [(p.line, p.column) for p in report.problems] == [(2, None)]
    assert "a quote opened in this row is not closed on its line" in report.problems[0].reason


# -- two columns for one field ------------------------------------------------------------------------------------

def test_a_second_column_for_a_field_holding_another_value_is_said_to_be_left_out(store, tmp_path):
    f = write_csv(tmp_path / "companies.csv", [
        ["ID", "Название компании", "Адрес", "Фактический адрес", "Комментарий", "Комментарий"],
        ["1", "Ромашка, ООО", "Москва, ул. Ленина 1", "Москва, ул. Мира 2", "первый", "второй"],
        ["2", "Лютик", "Тверь", " Тверь ", "", "только второй"],  # the same address; one comment
        ["3", "Василёк", "", "Казань", "первый", "первый"],
    ])
    report = import_csv(store, f, "company", preset="bitrix24")
    assert (report.imported, report.rejected) == (3, 0)
    got = {rid: (r["address"], r["comments"]) for rid, r in records(store, "company").items()}
    assert got == {1: ("Москва, ул. Ленина 1", "первый"), 2: ("Тверь", "только второй"), 3: ("Казань", "первый")}
    assert report.notes == Counter({
        "address: the columns 'Адрес' and 'Фактический адрес' hold different values; the first is stored, "
        "the other left out": 1,
        "comments: the columns 'Комментарий' and 'Комментарий' (column 6) hold different values; the first is "
        "stored, the other left out": 1,
    })
    summary = report.summary()
    assert ("1 row: address: the columns 'Адрес' and 'Фактический адрес' hold different values; the first is stored, "
            "the other left out (first at line 2).") in summary


# -- what was right already ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["cp1251", "utf-8-sig"])
def test_a_bitrix24_export_goes_in_whole(store, tmp_path, encoding):
    f = write_csv(tmp_path / "contacts.csv", [
        ["ID", "Фамилия", "Имя", "Отчество", "Рабочий телефон", "Рабочий e-mail", "Комментарий", "Дата создания"],
        ["10", "Иванов", "Иван", "Иванович", "+7 (495) 751-64-43, доб 802, +7 999 111-22-33", "a@x.ru, b@x.ru",
         'строка 1\r\nстрока 2; с ";", запятой и "кавычками"', "07.03.2024 10:15:00"],
        ["11", "Петрова", "Анна", "", "", "", "", ""],
    ], encoding=encoding)
    report = import_csv(store, f, "contact", preset="bitrix24", portal_timezone="Europe/Moscow")
    assert (report.encoding, report.delimiter, report.imported, report.rejected) == (encoding, ";", 2, 0)
    got = records(store)
    assert (got[10]["middle_name"], got[10]["comments"], got[10]["created_at"]) == (
        "Иванович", 'строка 1\r\nстрока 2; с ";", запятой и "кавычками"', datetime(2024, 3, 7, 7, 15))
    assert comms(store) == Counter({
        (10, "phone", "work", "+7 (495) 751-64-43, доб 802"): 1, (10, "phone", "work", "+7 999 111-22-33"): 1,
        (10, "email", "work", "a@x.ru"): 1, (10, "email", "work", "b@x.ru"): 1})
