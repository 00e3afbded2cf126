"""What a data steward found checking files before an import with `crm-dedup check --input`: columns of the file that
are not read were dropped without a word (a phone column the check could not read, and "no likely duplicates"); the
report wrote a row's line as "3.0"; a row whose id is another record's of the CRM was "already in the database"
without naming that record (import --update would overwrite it with the row)."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from merge_rules.testing import load_sample
from pipelines.check import ALREADY, check_new_records, summary_line
from pipelines.cli import app
from test_portal_timezone import check_here  # noqa: F401 - the fixture: `check` run in this process


@pytest.fixture
def sample(store):
    load_sample(store)
    return store


def _write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _check(store, tmp_path, f, *args):
    out = tmp_path / "check.csv"
    r = CliRunner().invoke(app, ["check", "--input", str(f), "--db", store.url, "--out", str(out), *map(str, args)])
    assert r.exit_code == 0, r.output
    return r, list(csv.DictReader(open(out, encoding="utf-8")))


def test_check_names_the_columns_of_the_file_it_does_not_read(sample, tmp_path, check_here, caplog):
    """A header only partly recognised: the phone under a name import does not know is not compared. The check found
    nothing and said nothing of the column (import lists it as ignored): a steward took it for "no duplicates". No
    row is at fault, so the column is told apart from the rows' problems (FileProblems.header), and logged."""
    f = _write(tmp_path / "new.csv", [["last_name", "first_name", "Телефон мобильный", "Отдел"],
                                      ["Smith", "Jon", "+1 212 555 0100", "IT"]])
    with caplog.at_level("WARNING", logger="pipelines.check"):
        rows, problems = check_new_records(sample.url, "contact", csv=f)
    assert problems == [] and problems.rejected == 0 and problems.cells == 0
    assert problems.ignored == ["'Телефон мобильный'", "'Отдел'"]
    assert problems.header.startswith("new.csv header: columns not read, so not checked: 'Телефон мобильный'; 'Отдел' ")
    assert "--map FIELD=COLUMN" in problems.header
    assert problems.header in caplog.messages
    assert "phone" not in " ".join(rows["explanation"])  # (what the steward was not told: the phone was not compared)
    # mapped, the phone is read and nothing is left out
    rows, problems = check_new_records(sample.url, "contact", csv=f, mapping={"phone:mobile": ["Телефон мобильный"],
                                                                               "comments": ["Отдел"]})
    assert problems == [] and problems.ignored == [] and problems.header is None
    assert "14" in set(rows["duplicate_of"]) and "phone" in " ".join(rows["explanation"])
    # the command shows the line, and its headline says the check did not read every column
    r, _ = _check(sample, tmp_path, tmp_path / "new.csv")
    assert "new.csv header: columns not read, so not checked: 'Телефон мобильный'; 'Отдел'" in r.output
    assert "2 column(s) of the file were not read (listed above)" in r.output
    # a file whose columns are all read says nothing of them
    f = _write(tmp_path / "all.csv", [["last_name", "first_name", "phone:mobile"], ["Smith", "Jon", "+1 212 555 0100"]])
    assert check_new_records(sample.url, "contact", csv=f)[1].header is None
    r, _ = _check(sample, tmp_path, f)
    assert "not read" not in r.output


def test_the_report_gives_the_files_lines_as_whole_numbers(sample, tmp_path, check_here):
    """Two rows of one new person (Cyrillic and Latin, the phone written two ways) are reported as one another's
    duplicates by their lines; the report wrote the other row's line as "3.0" (a float: the CRM's records have none)."""
    f = _write(tmp_path / "new.csv", [
        ["last_name", "first_name", "phone:mobile", "email:work"],
        ["Чрезвычайнов", "Аполлинарий", "+7 999 765-43-21", ""],
        ["Chrezvychainov", "Apollinariy", "89997654321", ""],
        ["Smith", "Jon", "", "jsmith@ACME.com"],
    ])
    r, report = _check(sample, tmp_path, f)
    inside = [x for x in report if x["existing"] == "False"]
    assert [(x["line"], x["duplicate_line"]) for x in inside] == [("2", "3")], report
    assert "surname" in inside[0]["explanation"] and "phone" in inside[0]["explanation"]
    outside = [x for x in report if x["existing"] == "True"]
    assert outside and all(x["line"] == "4" and x["duplicate_line"] == "" for x in outside), report
    assert {x["duplicate_of"] for x in outside} <= {"13", "14"} and "email" in outside[0]["explanation"]
    assert "line 2 Чрезвычайнов Аполлинарий  ~  line 3 Chrezvychainov Apollinariy: " in r.stdout, r.stdout
    assert "line 4 Smith Jon  ~  contact #1" in r.stdout, r.stdout
    # the same file checked again reports the same
    _, again = _check(sample, tmp_path, f)
    assert again == report


def test_a_row_whose_id_is_another_records_names_that_record(sample, tmp_path, check_here):
    """A file from another system, its ids those of other records here: the row was "already in the database
    (contact #15)", #15 being another person, and import --update would overwrite #15 with it."""
    f = _write(tmp_path / "ids.csv", [["id", "last_name", "first_name"], ["15", "Smith", "John"],
                                      ["13", "Smith", "Jonathan"]])
    rows, _ = check_new_records(sample.url, "contact", csv=f)
    there = rows[rows["tier"] == ALREADY].set_index("new_record")
    assert there.loc["15", "duplicate_name"] == "Петрова Анна"
    other = there.loc["15", "explanation"]
    assert other.startswith("already in the database (#15)") and "Петрова Анна" in other and "Smith John" in other
    assert "import --update would overwrite" in other
    same = there.loc["13", "explanation"]
    assert same.startswith("already in the database (#13)") and "overwrite" not in same
    lines = {r["new_record"]: summary_line(r, "contact", from_file=True) for r in rows.to_dict("records")}
    assert lines["15"].startswith("line 2 Smith John: already in the database (contact #15); ")
    assert "#15 is Петрова Анна" in lines["15"]
    assert lines["13"] == "line 3 Smith Jonathan: already in the database (contact #13)"
    r, _ = _check(sample, tmp_path, f)
    assert lines["15"] in r.stdout and lines["13"] in r.stdout, r.stdout


def test_both_rows_of_a_pair_within_the_file_count_as_alike(sample, tmp_path, check_here):
    """Two rows of one new person: the report lists the pair once, under its first row; the headline counted that row
    alone ("1 of 3 new record(s) look like other rows of the file")."""
    f = _write(tmp_path / "twice.csv", [["last_name", "first_name", "phone:mobile", "email:work"],
                                        ["Zvyagintseva", "Milena", "+7 999 765-43-21", "milena.z@example.org"],
                                        ["Звягинцева", "Милена", "89997654321", "Milena.Z@example.org"],
                                        ["Oduya", "Kwame", "+7 999 111-00-99", "kwame@example.net"]])
    r, rows = _check(sample, tmp_path, f)
    pairs = [row for row in rows if row["tier"] != ALREADY]
    assert [(row["line"], row["duplicate_line"]) for row in pairs] == [("2", "3")], rows
    assert "2 of 3 new record(s) look like other rows of the file" in r.output, r.output
