"""Gaps a user probe found in `crm-dedup import` and the file commands (find --input, evaluate).

- A cell the database cannot take (a date that does not exist, a tax id too long for its column, a lead's
  contact id that is no number) costs its field, not the row: the row goes in and the cell is listed with
  the problems (line, id, column, value, why). Cells of the fields a record is known by (id, names, title,
  phone, e-mail) still reject the row.
- Bitrix24's ", " between several values of one cell splits only the multi-value columns.
- `evaluate` refuses a repeated --id-column / --truth-column instead of keeping one silently.
- `find --input` takes --encoding and --delimiter as `import` does.

Tests that write the store run on SQLite and PostgreSQL (the ``store`` / ``db_url`` fixtures).
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from crm.csv_io import export_csv, import_csv
from crm.store import Store
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.testing import load_sample
from pipelines.cli import app
from scoring.files import FileError, find_in_file, read_table


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def record(store: Store, entity: str, rid: int) -> dict | None:
    t = schema.ENTITY_TABLES[entity]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == rid)).one_or_none()
    return row._asdict() if row else None


def comms(store: Store, entity: str) -> Counter:
    c = schema.communications
    with store.engine.connect() as conn:
        return Counter(tuple(r) for r in conn.execute(
            sa.select(c.c.entity_id, c.c.type, c.c.kind, c.c.value).where(c.c.entity_type == entity)))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *phrases: str) -> str:
    """One `error:` line holding every phrase, exit code 2, no traceback."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and [line.startswith("error: ") for line in out.splitlines()].count(True) == 1, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    return out


# -- 1. a bad cell costs its field, not the row ------------------------------------------------------------

def test_a_birthdate_that_does_not_exist_leaves_the_field_empty_and_the_row_goes_in(store, tmp_path):
    f = write_csv(tmp_path / "people.csv", [
        ["id", "last_name", "first_name", "birthdate", "tax_id", "phone:work"],
        ["11", "Иванов", "Иван", "1985-02-30", "7707083893", "+7 916 123-45-67"],
        ["12", "Петров", "Пётр", "31.04.1990", "1234", ""],  # (a bad INN: stored with a note, as before)
        ["13", "Сидоров", "Олег", "05.01.1990", "", ""]])
    report = import_csv(store, f, "contact")
    assert (report.rows_read, report.imported, report.rejected, report.problems) == (3, 3, 0, [])
    assert record(store, "contact", 11)["birthdate"] is None and record(store, "contact", 12)["birthdate"] is None
    assert record(store, "contact", 13)["birthdate"] == date(1990, 1, 5)
    # the rest of each row is there, phones included
    assert record(store, "contact", 11)["tax_id"] == "7707083893" and record(store, "contact", 12)["tax_id"] == "1234"
    assert comms(store, "contact") == Counter({(11, "phone", "work", "+7 916 123-45-67"): 1})
    # each cell left out is listed: line, the record's id, column, value and why
    got = [(p.line, p.record, p.column, p.value) for p in report.cell_problems]
    assert got == [(2, "11", "birthdate", "1985-02-30"), (3, "12", "birthdate", "31.04.1990")]
    assert str(report.cell_problems[0]) == (
        "people.csv line 2 (id 11), column 'birthdate': '1985-02-30' is written as a date but there is no such date "
        "(day is out of range for month); the row is imported with its birthdate left empty")
    assert "'31.04.1990' is written as a date but there is no such date" in report.cell_problems[1].reason
    assert ("2 cells could not be stored and were left out of rows imported (birthdate 2): listed with the "
            "problems") in report.summary()
    assert "tax id is not a valid INN" in report.summary()  # (the bad INN's note, unchanged)
    report.write_problems(tmp_path / "problems.csv")
    lines = list(csv.reader(open(tmp_path / "problems.csv", encoding="utf-8-sig")))
    assert [r[:4] for r in lines] == [["line", "id", "column", "value"], ["2", "11", "birthdate", "1985-02-30"],
                                      ["3", "12", "birthdate", "31.04.1990"]]
    assert lines[1][4].endswith("no such date (day is out of range for month); the row is imported with its "
                                "birthdate left empty")

    # imported again, the rows are rejected for their ids: their cells are not listed as well
    again = import_csv(store, f, "contact")
    assert (again.imported, again.rejected, again.cell_problems) == (0, 3, [])
    assert "already in the database" in again.problems[0].reason


def test_a_bitrix24_file_without_ids_names_the_record_each_row_became(store, tmp_path):
    f = write_csv(tmp_path / "bx.csv", [
        ["Фамилия", "Имя", "Дата рождения", "Рабочий телефон"],
        ["Орлова", "Анна", "29.02.1991", "+7 903 555-00-00"],   # 1991 is no leap year
        ["Козлов", "Илья", "12.03.1988", ""]], delimiter=";", encoding="cp1251")
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert (report.imported, report.rejected) == (2, 0)
    (p,) = report.cell_problems
    anna = next(i for i in (1, 2) if record(store, "contact", i)["last_name"] == "Орлова")
    assert (p.line, p.record, p.column, p.value) == (2, str(anna), "Дата рождения", "29.02.1991")
    assert "no such date" in p.reason and p.reason.endswith("the row is imported with its birthdate left empty")
    assert record(store, "contact", anna)["birthdate"] is None
    assert comms(store, "contact") == Counter({(anna, "phone", "work", "+7 903 555-00-00"): 1})


def test_other_single_cell_problems_cost_only_their_field_but_a_broken_name_or_phone_still_rejects(store, tmp_path):
    f = write_csv(tmp_path / "c.csv", [
        ["id", "last_name", "tax_id", "created_at", "modified_at", "post", "web:work", "phone:work"],
        ["1", "Антонов", "ИНН 7707083893 КПП 770701001 ОГРН 1027700132195", "2021-03-01 10:00:00", "", "", "", ""],
        ["2", "Борисов", "", "вчера", "2022-05-06 07:08:09", "Инженер\x00", "a.ru, b\x00.ru", ""],
        ["3", "В" * 201, "", "", "", "", "", ""],                           # a name too long: the row
        ["4", "Громов", "", "", "", "", "", "+7 916 000\x00"]])             # a broken phone: the row
    report = import_csv(store, f, "contact")
    assert (report.imported, report.rejected) == (2, 2)
    assert [(p.line, p.column) for p in report.problems] == [(4, "last_name"), (5, "phone:work")]
    one, two = record(store, "contact", 1), record(store, "contact", 2)
    assert one["tax_id"] is None and one["created_at"] == datetime(2021, 3, 1, 10, 0)
    # created_at unreadable: as if empty, so it is the row's modified_at (not the time of the import)
    assert two["created_at"] == two["modified_at"] == datetime(2022, 5, 6, 7, 8, 9) and two["post"] is None
    assert record(store, "contact", 3) is None and record(store, "contact", 4) is None
    got = {(p.line, p.record, p.column): p.reason for p in report.cell_problems}
    assert set(got) == {(2, "1", "tax_id"), (3, "2", "created_at"), (3, "2", "post"), (3, "2", "web:work")}
    assert "is 47 characters long; contact tax_id holds at most 32" in got[(2, "1", "tax_id")]
    assert "'вчера' is not a date and time" in got[(3, "2", "created_at")]
    assert "as if this cell were empty (created_at is its modified_at, else now)" in got[(3, "2", "created_at")]
    assert "NUL character" in got[(3, "2", "post")] and "NUL character" in got[(3, "2", "web:work")]
    assert got[(3, "2", "web:work")].endswith("the row is imported without this web value")
    # (our own format writes one value a cell: "a.ru, b\x00.ru" is one site, left out whole)
    assert comms(store, "contact") == Counter()

    # a lead's contact and company ids that are no numbers: left empty, the lead goes in
    lead = write_csv(tmp_path / "l.csv", [["id", "title", "contact_id", "company_id"], ["5", "Заявка", "abc", "12x"]])
    report = import_csv(store, lead, "lead")
    assert (report.imported, report.rejected) == (1, 0)
    assert record(store, "lead", 5)["contact_id"] is None and record(store, "lead", 5)["company_id"] is None
    assert [(p.column, p.value) for p in report.cell_problems] == [("contact_id", "abc"), ("company_id", "12x")]
    assert report.cell_problems[0].reason.startswith("'abc' is not a record id")


def test_a_bitrix24_cell_of_several_sites_loses_only_the_bad_one(store, tmp_path):
    f = write_csv(tmp_path / "bx.csv", [["ID", "Название компании", "Корпоративный сайт"],
                                        ["7", "Лютик", "lutik.ru, " + "x" * 1001 + ".ru, lutik.com"]],
                  delimiter=";", encoding="cp1251")
    report = import_csv(store, f, "company", preset="bitrix24")
    assert (report.imported, report.rejected) == (1, 0)
    assert comms(store, "company") == Counter({(7, "web", "work", "lutik.ru"): 1, (7, "web", "work", "lutik.com"): 1})
    (p,) = report.cell_problems
    assert (p.record, p.column) == ("7", "Корпоративный сайт")
    assert "1,004 characters long" in p.reason and p.reason.endswith("the row is imported without this web value")


def test_an_update_keeps_what_the_record_has_where_the_file_has_a_bad_cell(store, tmp_path):
    first = write_csv(tmp_path / "first.csv", [
        ["id", "last_name", "birthdate", "post", "modified_at"],
        ["1", "Иванов", "1980-05-17", "Инженер", "2024-01-01 00:00:00"],
        ["2", "Петров", "1975-03-03", "Техник", "2024-01-01 00:00:00"]])
    assert import_csv(store, first, "contact").imported == 2
    newer = write_csv(tmp_path / "newer.csv", [
        ["id", "last_name", "birthdate", "post", "modified_at"],
        ["1", "Иванов", "30.02.1985", "Главный инженер", "2024-02-01 00:00:00"],  # a typo: the stored date stays
        ["2", "Петров", "31.04.1975", "Техник", "2024-01-01 00:00:00"],          # nothing else differs
        ["3", "Сидоров", "1985-13-01", "", ""]])                                 # a new record: left empty
    report = import_csv(store, newer, "contact", update=True)
    assert (report.updated, report.unchanged, report.imported, report.rejected) == (1, 1, 3, 0), report.summary()
    one = record(store, "contact", 1)
    assert one["birthdate"] == date(1980, 5, 17) and one["post"] == "Главный инженер"
    assert record(store, "contact", 2)["birthdate"] == date(1975, 3, 3)
    assert record(store, "contact", 3)["birthdate"] is None and record(store, "contact", 3)["last_name"] == "Сидоров"
    got = [(p.line, p.record, p.column, p.value) for p in report.cell_problems]
    assert got == [(2, "1", "birthdate", "30.02.1985"), (3, "2", "birthdate", "31.04.1975"),
                   (4, "3", "birthdate", "1985-13-01")]
    assert report.cell_problems[0].reason.endswith(
        "no such date (day is out of range for month); contact #1 keeps the birthdate it has (the rest of the row "
        "is applied)")
    assert report.cell_problems[2].reason.endswith("the row is imported with its birthdate left empty")


def test_an_update_row_of_a_merge_primary_whose_date_is_no_date_is_still_refused(store, tmp_path):
    """A merge's primary is updated only from a row dated after the merge: a modified_at that is no date shows
    nothing, so the row is refused as one without a date is (said as such), not applied as if it were empty."""
    load_sample(store)
    old = tmp_path / "before.csv"
    export_csv(store, old, "contact", preset="bitrix24", encoding="cp1251", delimiter=";")
    (result,) = apply_batch(store, plan_groups(store, "contact", [(10, [10, 11])],
                                               MergeSettings(conflict_policy="keep_primary")), 1, "b-gaps")
    assert result.status == "applied", result.message
    with open(old, encoding="cp1251", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    at, ten = rows[0].index("Дата изменения"), next(i for i, r in enumerate(rows) if r[0] == "10")
    rows[ten][at] = "31.02.2025 10:00:00"
    f = write_csv(tmp_path / "after.csv", [rows[0], rows[ten]], delimiter=";", encoding="cp1251")
    report = import_csv(store, f, "contact", preset="bitrix24", update=True)
    assert (report.updated, report.rejected, report.cell_problems) == (0, 1, [])
    (p,) = report.problems
    assert (p.line, p.column, p.value, p.record) == (2, "Дата изменения", "31.02.2025 10:00:00", "10")
    assert f"primary of merge #{result.merge_id}" in p.reason
    assert "and this row's 'Дата изменения' cell is not a date: nothing shows it was written after it" in p.reason


def test_cli_import_lists_the_cells_left_out_and_writes_them_with_errors(db_url, tmp_path):
    assert invoke("init", "--db", db_url).exit_code == 0
    f = write_csv(tmp_path / "in.csv", [["id", "last_name", "birthdate"], ["21", "Смирнова", "30.02.1985"],
                                        ["22", "", ""]])
    errors = tmp_path / "errors.csv"
    r = invoke("import", f, "--entity", "contact", "--db", db_url, "--errors", errors)
    assert r.exit_code == 0, r.output
    assert ("in.csv line 2 (id 21), column 'birthdate': '30.02.1985' is written as a date but there is no such date "
            "(day is out of range for month); the row is imported with its birthdate left empty") in r.stderr
    assert "in.csv line 3 (id 22): lacks a name, phone or email" in r.stderr
    assert "2 contact rows read" in r.stdout and "1 imported" in r.stdout and "1 rejected" in r.stdout
    assert "1 cell could not be stored and was left out of rows imported (birthdate 1)" in r.stdout
    rows = list(csv.reader(open(errors, encoding="utf-8-sig")))
    assert [row[:4] for row in rows[1:]] == [["2", "21", "birthdate", "30.02.1985"], ["3", "22", "", ""]]
    store = Store(db_url)
    try:
        smirnova = record(store, "contact", 21)
        assert smirnova["last_name"] == "Смирнова" and smirnova["birthdate"] is None
    finally:
        store.dispose()


# -- 2. Bitrix24's ", " splits the multi-value columns only --------------------------------------------------

def test_bitrix24_splits_phones_and_emails_but_not_a_title_or_address_with_a_comma(store, tmp_path):
    company = write_csv(tmp_path / "companies.csv", [
        ["ID", "Название компании", "Адрес", "Комментарий", "Рабочий телефон", "Рабочий e-mail"],
        ["1", "Ромашка, ООО", "г. Москва, ул. Ленина, д. 1", "звонить утром, до 10",
         "+7 495 751-64-43, доб 802, +7 916 123-45-67", "info@romashka.ru, sales@romashka.ru"]],
        delimiter=";", encoding="cp1251")
    contact = write_csv(tmp_path / "contacts.csv", [
        ["ID", "Фамилия", "Имя", "Должность", "Адрес", "Мобильный телефон"],
        ["2", "Иванов", "Иван", "Директор, учредитель", "г. Казань, ул. Баумана, 5", "+7 903 111-22-33"]],
        delimiter=";", encoding="cp1251")
    lead = write_csv(tmp_path / "leads.csv", [
        ["ID", "Название лида", "Название компании", "Рабочий e-mail"],
        ["3", "Заявка с сайта, срочно", "Ромашка, ООО", "a@romashka.ru, b@romashka.ru"]],
        delimiter=";", encoding="cp1251")
    for path, entity in ((company, "company"), (contact, "contact"), (lead, "lead")):
        report = import_csv(store, path, entity, preset="bitrix24")
        assert (report.imported, report.rejected, report.cell_problems) == (1, 0, []), report.summary()
    firm = record(store, "company", 1)
    assert (firm["title"], firm["address"], firm["comments"]) == ("Ромашка, ООО", "г. Москва, ул. Ленина, д. 1",
                                                                  "звонить утром, до 10")
    person = record(store, "contact", 2)
    assert (person["post"], person["address"]) == ("Директор, учредитель", "г. Казань, ул. Баумана, 5")
    assert (record(store, "lead", 3)["title"], record(store, "lead", 3)["company_title"]) == (
        "Заявка с сайта, срочно", "Ромашка, ООО")
    # the multi-value cells split at ", ", an extension staying with its phone
    assert comms(store, "company") == Counter({
        (1, "phone", "work", "+7 495 751-64-43, доб 802"): 1, (1, "phone", "work", "+7 916 123-45-67"): 1,
        (1, "email", "work", "info@romashka.ru"): 1, (1, "email", "work", "sales@romashka.ru"): 1})
    assert comms(store, "lead") == Counter({(3, "email", "work", "a@romashka.ru"): 1,
                                            (3, "email", "work", "b@romashka.ru"): 1})
    # an export in Bitrix24's format read back with --update finds every record as it is: nothing was split
    for entity in ("company", "contact", "lead"):
        out = tmp_path / f"{entity}_export.csv"
        export_csv(store, out, entity, preset="bitrix24", encoding="cp1251", delimiter=";")
        again = import_csv(store, out, entity, preset="bitrix24", update=True)
        assert (again.unchanged, again.updated, again.rejected) == (1, 0, 0), again.summary()
    assert record(store, "company", 1)["title"] == "Ромашка, ООО"


# -- 3. evaluate: one id column, one truth column ------------------------------------------------------------

def _evaluation_files(tmp_path: Path) -> tuple[Path, Path]:
    groups = tmp_path / "groups.csv"
    groups.write_text("id,group_id\n1,a\n2,a\n3,b\n", encoding="utf-8")
    truth = tmp_path / "truth.csv"
    truth.write_text("id,rid,person,household\n1,x,p,h\n2,y,p,h\n3,z,q,h\n", encoding="utf-8")
    return groups, truth


def test_evaluate_refuses_a_repeated_id_or_truth_column(tmp_path):
    groups, truth = _evaluation_files(tmp_path)
    base = ("evaluate", "--groups", groups, "--truth", truth)
    refused(invoke(*base, "--truth-column", "person", "--id-column", "rid", "--id-column", "id"),
            "--id-column was given 2 times ('rid', 'id')", "give it once")
    refused(invoke(*base, "--truth-column", "person", "--truth-column", "household"),
            "--truth-column was given 2 times ('person', 'household')")
    for args in ((), ("--id-column", "id")):  # once, or the default id
        ok = invoke(*base, "--truth-column", "person", *args)
        assert ok.exit_code == 0, ok.output
        assert "pairwise  precision 1.0000  recall 1.0000  F1 1.0000" in ok.output
    missing = invoke(*base)
    assert missing.exit_code == 2 and "Missing option '--truth-column'" in missing.output


# -- 4. find --input --encoding --delimiter ------------------------------------------------------------------

ROWS = [["id", "Фамилия", "Имя", "Телефон"], ["1", "Иванов", "Иван", "+7 916 123-45-67"],
        ["2", "Иванов", "Иван", "8 916 1234567"], ["3", "Smith", "John", "+44 20 7946 0958"]]
MAP = {"last_name": ["Фамилия"], "first_name": ["Имя"], "phone": ["Телефон"]}


def test_read_table_takes_the_encoding_and_delimiter_given(tmp_path):
    # UTF-16 without a BOM and pipes: neither is guessed
    raw = tmp_path / "in.txt"
    raw.write_bytes("\n".join("|".join(r) for r in ROWS).encode("utf-16-le"))
    frame = read_table(raw, encoding="utf-16-le", delimiter="|")
    assert list(frame.columns) == ROWS[0] and frame["Фамилия"].tolist() == ["Иванов", "Иванов", "Smith"]
    # tab by name, as import takes it; the delimiter given wins over an Excel sep= line
    tabbed = tmp_path / "tab.csv"
    tabbed.write_text("sep=,\n" + "\n".join("\t".join(r) for r in ROWS) + "\n", encoding="cp1251")
    frame = read_table(tabbed, encoding="cp1251", delimiter="tab")
    assert list(frame.columns) == ROWS[0] and frame.attrs["read_as"] == "Windows-1251, tab-separated"
    result = find_in_file(raw, "contact", MAP, "id", encoding="utf-16-le", delimiter="|")
    groups = result.groups.set_index("id")["group_id"]
    assert groups[1] == groups[2] != groups[3]


def test_read_table_refuses_an_encoding_or_delimiter_that_cannot_be(tmp_path):
    utf8 = write_csv(tmp_path / "u.csv", ROWS)
    for encoding, phrase in (("cp1251", "is UTF-8 (all its text decodes as UTF-8), not cp1251"),
                             ("klingon", "Unknown encoding 'klingon'")):
        try:
            read_table(utf8, encoding=encoding)
        except FileError as exc:
            assert phrase in str(exc)
        else:
            raise AssertionError(f"--encoding {encoding} was taken")
    cp = write_csv(tmp_path / "c.csv", ROWS, encoding="cp1251")
    for kwargs, phrase in (({"encoding": "utf-8"}, "is not utf-8 text"),
                           ({"delimiter": ";;"}, "must be one character")):
        try:
            read_table(cp, **kwargs)
        except FileError as exc:
            assert phrase in str(exc) and str(cp) in str(exc)
        else:
            raise AssertionError(f"{kwargs} was taken")


def test_cli_find_input_with_encoding_and_delimiter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "people.csv").write_bytes("\n".join("|".join(r) for r in ROWS).encode("cp1251"))
    args = ["find", "--input", "people.csv", "--id-column", "id", "--map", "last_name=Фамилия",
            "--map", "first_name=Имя", "--map", "phone=Телефон", "--out", "out"]
    # guessed, the pipes read as one column: the error says how to say how it is written
    refused(invoke(*args), "has no columns", "Windows-1251, comma-separated", "--encoding", "--delimiter")
    ok = invoke(*args, "--encoding", "cp1251", "--delimiter", "|")
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("3 records, ")
    groups = pd.read_csv(tmp_path / "out" / "groups.csv").set_index("id")["group_id"]
    assert groups[1] == groups[2] != groups[3]
    refused(invoke(*args, "--encoding", "utf-8", "--delimiter", "|"), "is not utf-8 text", "--encoding")
    refused(invoke(*args, "--delimiter", "||"), "must be one character")
    refused(invoke(*args, "--id-column", "Фамилия"), "--id-column was given 2 times ('id', 'Фамилия')")
    # on the database there is no file to read
    refused(invoke("find", "--encoding", "cp1251", "--db", f"sqlite:///{tmp_path}/none.db"),
            "--encoding and --delimiter say how to read the file of --input")
