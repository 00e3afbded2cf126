"""Dates and timestamps on `crm-dedup import` (crm/csv_io.py), as a data steward meets them.

- Read: ISO with or without zero padding (1985-5-5), Russian day-first dotted (5.5.1985, with or without a time),
  ISO timestamps with T or a space, with or without seconds, fraction or UTC offset (converted to UTC).
- A slash date is read only where one reading exists (13/05/1985); 05/06/1985 is refused, not guessed, with the
  row's line and id, the column and the forms read. A date that does not exist is refused, a birthdate in the
  future is stored and noted, as before. A refused cell costs its field, never the row or the rest of the file.
- A timestamp without an offset is read as UTC (there is no setting for the portal's time zone): the summary
  says so once.

Tests run on SQLite and PostgreSQL (the ``store`` / ``db_url`` fixtures).
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from crm.csv_io import import_csv
from crm.store import Store
from pipelines.cli import app

NAIVE_LINE = "created_at/modified_at written without a UTC offset were read as UTC"


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def contacts(store: Store) -> dict[int, dict]:
    t = schema.contacts
    with store.engine.connect() as conn:
        return {r.id: r._asdict() for r in conn.execute(sa.select(t))}


def test_dates_people_type_and_bitrix24_writes_are_read(store, tmp_path):
    f = write_csv(tmp_path / "typed.csv", [
        ["id", "last_name", "birthdate", "created_at", "modified_at"],
        ["1", "Padded", "1985-05-05", "2021-05-05 14:30:00", "2021-05-05T14:30:00"],
        ["2", "Unpadded", "1985-5-5", "2021-5-5 9:05", "2021-5-5T9:05:07"],
        ["3", "Dotted", "05.05.1985", "05.05.2021 14:30:00", "05.05.2021 14:30"],
        ["4", "DottedShort", "5.5.1985", "5.5.2021 9:05", "5.5.2021"],
        ["5", "Midnight", "05.05.1985 00:00:00", "2021-05-05 14:30:15.25", "2021-05-05T14:30:15,123456789"],
        ["6", "Offsets", "1985-05-05T00:00:00+03:00", "2021-05-05T14:30:00Z", "2021-05-05T17:30:00+03:00"],
        ["7", "OffsetsShort", "", "2021-05-05 17:30+0300", "2021-05-05T09:30-05"],
    ])
    report = import_csv(store, f, "contact")
    assert (report.imported, report.rejected, report.cell_problems) == (7, 0, [])
    got = {rid: (r["birthdate"], r["created_at"], r["modified_at"]) for rid, r in contacts(store).items()}
    born = date(1985, 5, 5)
    assert got == {
        1: (born, datetime(2021, 5, 5, 14, 30), datetime(2021, 5, 5, 14, 30)),
        2: (born, datetime(2021, 5, 5, 9, 5), datetime(2021, 5, 5, 9, 5, 7)),
        3: (born, datetime(2021, 5, 5, 14, 30), datetime(2021, 5, 5, 14, 30)),
        4: (born, datetime(2021, 5, 5, 9, 5), datetime(2021, 5, 5)),
        5: (born, datetime(2021, 5, 5, 14, 30, 15, 250000), datetime(2021, 5, 5, 14, 30, 15, 123456)),
        # offsets given in the file are converted to UTC
        6: (born, datetime(2021, 5, 5, 14, 30), datetime(2021, 5, 5, 14, 30)),
        7: (None, datetime(2021, 5, 5, 14, 30), datetime(2021, 5, 5, 14, 30)),
    }


def test_a_slash_date_is_read_only_where_one_reading_exists(store, tmp_path):
    """A Bitrix24 export (cp1251, ';', Russian headers) with dates a person typed with '/': 05/06/1985 is 5 June in
    Moscow and May 6 in New York, so it is refused with what to write instead; the row and the file go in."""
    f = write_csv(tmp_path / "contacts.csv", [
        ["ID", "Фамилия", "Имя", "Дата рождения", "Дата создания", "Дата изменения"],
        ["11", "Иванов", "Иван", "05/06/1985", "05/06/2021 10:00", "2021-07-01 12:00:00"],
        ["12", "Петров", "Пётр", "13/05/1985", "13/05/2021 10:00:00", ""],
        ["13", "Smith", "John", "12/25/1985", "", "12/25/2021 10:00"],
        ["14", "Сидоров", "Олег", "07/07/1985", "", ""],
    ], delimiter=";", encoding="cp1251")
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert (report.rows_read, report.imported, report.rejected) == (4, 4, 0)
    got = contacts(store)
    assert got[11]["birthdate"] is None and got[11]["last_name"] == "Иванов"
    # the created_at refused: the row takes its modified_at, as with any created_at cell left empty
    assert got[11]["created_at"] == got[11]["modified_at"] == datetime(2021, 7, 1, 12)
    assert (got[12]["birthdate"], got[12]["created_at"]) == (date(1985, 5, 13), datetime(2021, 5, 13, 10))
    assert (got[13]["birthdate"], got[13]["modified_at"]) == (date(1985, 12, 25), datetime(2021, 12, 25, 10))
    assert got[14]["birthdate"] == date(1985, 7, 7)
    born, created = report.cell_problems
    assert (born.line, born.record, born.column, born.value) == (2, "11", "Дата рождения", "05/06/1985")
    assert str(born) == (
        "contacts.csv line 2 (id 11), column 'Дата рождения': '05/06/1985' could be 1985-06-05 (day first) or "
        "1985-05-06 (month first): a date with '/' is read only where one of the two is possible; write dd.mm.yyyy "
        "(as Bitrix24 does) or yyyy-mm-dd, zero padding optional (5.5.1985, 1985-5-5); the row is imported with "
        "its birthdate left empty")
    assert (created.line, created.record, created.column) == (2, "11", "Дата создания")
    assert created.reason.startswith(
        "'05/06/2021 10:00' could be 2021-06-05 (day first) or 2021-05-06 (month first): a date with '/' is read only "
        "where one of the two is possible; write dd.mm.yyyy hh:mm[:ss] (as Bitrix24 does) or yyyy-mm-dd hh:mm[:ss]")
    assert created.reason.endswith("the row is imported as if this cell were empty (created_at is its modified_at, "
                                   "else now)")
    assert "2 cells could not be stored" in report.summary()


def test_impossible_dates_are_refused_and_future_birthdates_stored_and_noted(store, tmp_path):
    """Unpadded or dotted, a date that does not exist costs its cell (listed with line, id, column and why); a
    birthdate in the future is stored and left out of matching, as a padded one always was."""
    f = write_csv(tmp_path / "bad.csv", [
        ["id", "last_name", "birthdate", "created_at", "modified_at"],
        ["21", "Feb", "1985-2-30", "2021-2-30 10:00", "2021-03-01 10:00"],
        ["22", "Dots", "30.2.1985", "", ""],
        ["23", "Future", "2099-1-1", "", ""],
        ["24", "Month", "1985-13-1", "2021-03-01 25:00", "2021-03-02"],
        ["25", "Fine", "1985-3-1", "", ""],
    ])
    report = import_csv(store, f, "contact")
    assert (report.imported, report.rejected) == (5, 0)
    cells = [(p.line, p.record, p.column, p.value) for p in report.cell_problems]
    assert cells == [(2, "21", "birthdate", "1985-2-30"), (2, "21", "created_at", "2021-2-30 10:00"),
                     (3, "22", "birthdate", "30.2.1985"), (5, "24", "birthdate", "1985-13-1"),
                     (5, "24", "created_at", "2021-03-01 25:00")]
    reasons = [p.reason for p in report.cell_problems]
    assert reasons[0] == ("'1985-2-30' is written as a date but there is no such date (day is out of range for "
                          "month); the row is imported with its birthdate left empty")
    assert reasons[1].startswith("'2021-2-30 10:00' is written as a date and time but there is no such date or time")
    assert "no such date (month must be in 1..12)" in reasons[3]
    assert "no such date or time (hour must be in 0..23)" in reasons[4]
    got = contacts(store)
    assert [got[i]["birthdate"] for i in (21, 22, 24)] == [None, None, None]
    assert got[21]["created_at"] == datetime(2021, 3, 1, 10)  # (its modified_at, as for an empty created_at)
    assert (got[23]["birthdate"], got[25]["birthdate"]) == (date(2099, 1, 1), date(1985, 3, 1))
    assert report.notes == {"birthdate is in the future or before 1900; stored, and left out of matching": 1}
    assert report.note_lines["birthdate is in the future or before 1900; stored, and left out of matching"] == 4


def test_timestamps_without_an_offset_are_read_as_utc_and_the_summary_says_so_once(store, tmp_path):
    f = write_csv(tmp_path / "times.csv", [
        ["id", "last_name", "created_at", "modified_at"],
        ["31", "Offset", "2021-05-05T17:30:00+03:00", "2021-05-05T17:30:00+03:00"],
        ["32", "Naive", "05.05.2021 17:30:00", "2021-05-05 17:30"],
        ["33", "NoDates", "", ""],
        ["34", "OneNaive", "2021-05-05T17:30:00+03:00", "2021-05-06 09:00"],
    ])
    report = import_csv(store, f, "contact")
    got = contacts(store)
    assert got[31]["created_at"] == datetime(2021, 5, 5, 14, 30)  # converted
    assert got[32]["created_at"] == got[32]["modified_at"] == datetime(2021, 5, 5, 17, 30)  # taken as UTC
    assert (got[34]["created_at"], got[34]["modified_at"]) == (datetime(2021, 5, 5, 14, 30), datetime(2021, 5, 6, 9))
    assert (report.naive_times, report.naive_line) == (2, 3)  # rows 32 and 34 (33 has no dates at all)
    summary = report.summary()
    assert summary.count("read as UTC") == 1
    assert (f"2 rows: {NAIVE_LINE} (first at line 3). A Bitrix24 export writes the portal's local time: such times "
            "are stored off by the portal's UTC offset (3 hours for Moscow); times written with their offset "
            "(2021-03-15 10:15+03:00) are stored exactly.") in summary

    # a file whose every time gives its offset: nothing to say
    store.truncate_crm()
    g = write_csv(tmp_path / "aware.csv", [["last_name", "created_at"], ["A", "2021-05-05T17:30:00+03:00"],
                                           ["B", "2021-05-05T14:30:00Z"]])
    report = import_csv(store, g, "contact")
    assert (report.imported, report.naive_times, report.naive_line) == (2, 0, None)
    assert "UTC" not in report.summary()


def test_cli_import_reads_typed_dates_lists_the_refused_one_and_says_naive_times_once(db_url, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", db_url]).exit_code == 0
    f = write_csv(tmp_path / "steward.csv", [
        ["id", "last_name", "birthdate", "modified_at"],
        ["41", "Орлова", "1985-5-5", "5.5.2021 14:30"],
        ["42", "Зайцев", "05/06/1985", "2021-5-6 9:00"],
    ])
    r = runner.invoke(app, ["import", str(f), "--entity", "contact", "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "2 contact rows read" in r.stdout and "2 imported" in r.stdout and "0 rejected" in r.stdout
    assert "steward.csv line 3 (id 42), column 'birthdate': '05/06/1985' could be 1985-06-05" in r.stderr
    assert r.stdout.count("read as UTC") == 1 and f"2 rows: {NAIVE_LINE} (first at line 2)" in r.stdout
    store = Store(db_url)
    try:
        got = contacts(store)
        assert (got[41]["birthdate"], got[41]["modified_at"]) == (date(1985, 5, 5), datetime(2021, 5, 5, 14, 30))
        assert (got[42]["birthdate"], got[42]["modified_at"]) == (None, datetime(2021, 5, 6, 9))
    finally:
        store.dispose()
