"""The two gaps the steward's probe (test_csv_probe20.py) left: files that are not CSV, and e-mail cells of several
addresses.

- Bitrix24's "Export to Excel" writes an HTML table saved as .xls. Imported, it was refused with the header "columns"
  `<meta http-equiv=...`, `<table border="1">`...: clear that it failed, not why. An HTML file (whatever its name) is
  now refused as what it is, saying what to do instead; so is a real workbook (.xlsx, a zip; an Excel 97-2003 .xls),
  which was refused as "neither UTF-8 nor Windows-1251". A zip holding CSV files is told to be unpacked. The same
  goes for `crm-dedup check --input` (check_csv_file).
- An e-mail cell of several addresses ("a@x.ru, b@x.ru", "a@x.ru; b@x.ru", one per line) was stored as one value
  and noted as not an e-mail address. Where every piece is an address it is now stored as one e-mail per address,
  and the summary says so, as for a phone cell of several numbers. A cell that is one address written with a
  comma or a space ("Ivan Petrov <ivan@mail.ru>", "ivan@mail,ru", '"Ivan, Jr"@romashka.ru') stays one value.

Store tests run on SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from crm.csv_io import CsvError, check_csv_file, import_csv
from crm.store import Store
from matchers.emails import several_addresses

SEVERAL = "an e-mail cell held several addresses; each is stored as an e-mail of its own"
NOT_AN_ADDRESS = "an e-mail is not an e-mail address; stored as written, and left out of matching"


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def comms(store: Store, entity: str = "contact") -> list[tuple]:
    """(record id, type, kind, value) in the order they were written."""
    c = schema.communications
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(c.c.entity_id, c.c.type, c.c.kind, c.c.value)
                                               .where(c.c.entity_type == entity).order_by(c.c.id))]


def count(store: Store, entity: str = "contact") -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.ENTITY_TABLES[entity])).scalar_one()


# -- files that are not CSV ---------------------------------------------------------------------------------------

# Bitrix24's "Export to Excel": a table with a meta line before it, no <html> (as the probe saw it)
BITRIX_EXCEL = ('<meta http-equiv="Content-type" content="text/html;charset=UTF-8" />\n'
                '<table border="1">\n<thead><tr><th>ID</th><th>Фамилия</th><th>Имя</th><th>Рабочий e-mail</th></tr>'
                '</thead>\n<tbody><tr><td>1</td><td>Иванов</td><td>Иван</td><td>ivan@romashka.ru</td></tr></tbody>\n'
                '</table>\n')
HTML_FILES = {
    "bitrix24 export to excel": (BITRIX_EXCEL, "utf-8"),
    "with a BOM": ("\ufeff" + BITRIX_EXCEL, "utf-8"),
    "windows-1251": (BITRIX_EXCEL.replace("UTF-8", "windows-1251"), "cp1251"),
    "blank lines first": ("\r\n\r\n  \t" + BITRIX_EXCEL, "utf-8"),
    "doctype": ("<!DOCTYPE html>\n<html><head><title>Контакты</title></head><body>" + BITRIX_EXCEL
                + "</body></html>", "utf-8"),
    "html upper case": ("<HTML>\n<BODY><TABLE><TR><TD>ID</TD></TR></TABLE></BODY></HTML>", "utf-8"),
    "a bare table": ("<table><tr><th>ID</th><th>Фамилия</th></tr><tr><td>1</td><td>Иванов</td></tr></table>", "utf-8"),
    "a comment first": ("<!-- saved from Bitrix24 -->\n" + BITRIX_EXCEL, "utf-8"),
    "utf-16 with a BOM": (BITRIX_EXCEL, "utf-16"),
}


@pytest.mark.parametrize("suffix", [".xls", ".csv"])
@pytest.mark.parametrize("name", list(HTML_FILES))
def test_an_html_file_is_refused_as_html_whatever_its_name(store, tmp_path, name, suffix):
    text, encoding = HTML_FILES[name]
    f = tmp_path / f"contacts{suffix}"
    f.write_bytes(text.encode(encoding))
    for read in (lambda: import_csv(store, f, "contact", preset="bitrix24"),
                 lambda: check_csv_file(f, "contact", preset="bitrix24")):
        with pytest.raises(CsvError) as exc:
            read()
        msg = str(exc.value)
        assert msg.startswith(f"{f} is not a CSV file: it is a web page (HTML)"), msg
        assert "Export to Excel" in msg  # what made it
        assert "export the list from Bitrix24 as CSV" in msg and "save it as CSV" in msg  # what to do
        assert "<meta" not in msg and "<table" not in msg  # no tags listed as columns
    assert count(store) == 0


def _xlsx(path: Path) -> Path:
    """A one-sheet workbook as Excel writes one (Office Open XML in a zip), with inline strings."""
    ns = "http://schemas.openxmlformats.org/"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}spreadsheetml/2006/main" '
            f'xmlns:r="{ns}officeDocument/2006/relationships"><sheets>'
            '<sheet name="Контакты" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}officeDocument/2006/relationships/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}spreadsheetml/2006/main"><sheetData>'
            '<row r="1"><c r="A1" t="inlineStr"><is><t>ID</t></is></c><c r="B1" t="inlineStr"><is><t>Фамилия</t>'
            '</is></c></row><row r="2"><c r="A2"><v>1</v></c><c r="B2" t="inlineStr"><is><t>Иванов</t></is></c>'
            '</row></sheetData></worksheet>'),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(name, text)
    return path


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_an_excel_workbook_is_refused_as_a_workbook(store, tmp_path, suffix):
    f = _xlsx(tmp_path / f"contacts{suffix}")
    assert f.read_bytes()[:2] == b"PK"
    for read in (lambda: import_csv(store, f, "contact", preset="bitrix24"),
                 lambda: check_csv_file(f, "contact", preset="bitrix24")):
        with pytest.raises(CsvError) as exc:
            read()
        msg = str(exc.value)
        assert msg.startswith(f"{f} is not a CSV file: it is an Excel workbook (.xlsx)"), msg
        assert "save it as CSV" in msg and "export the list from Bitrix24 as CSV" in msg
        assert "neither UTF-8" not in msg  # not told as an encoding problem
    assert count(store) == 0


def test_an_excel_97_workbook_and_an_opendocument_one_are_refused_as_workbooks(tmp_path):
    old = tmp_path / "contacts.xls"
    # an Excel 97-2003 workbook is an OLE2 compound file: its 8-byte signature, then 512-byte sectors
    old.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504) + bytes(range(256)) * 8)
    with pytest.raises(CsvError, match=r"is not a CSV file: it is an Excel 97-2003 workbook \(\.xls\)"):
        check_csv_file(old, "contact")
    ods = tmp_path / "contacts.ods"
    with zipfile.ZipFile(ods, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", "<office:document-content/>")
    with pytest.raises(CsvError, match=r"is not a CSV file: it is an OpenDocument spreadsheet \(\.ods\)"):
        check_csv_file(ods, "contact")


def test_a_zip_holding_csv_files_is_told_to_be_unpacked(tmp_path):
    f = tmp_path / "export.zip"
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("CONTACT_20240307.csv", "ID;Фамилия\r\n1;Иванов\r\n".encode("cp1251"))
        z.writestr("readme.txt", "x")
    with pytest.raises(CsvError) as exc:
        check_csv_file(f, "contact", preset="bitrix24")
    assert str(exc.value) == (f"{f} is not a CSV file: it is a zip archive. Unpack it and import the CSV file in it "
                              "(CONTACT_20240307.csv).")


def test_a_csv_that_mentions_html_after_its_start_imports(store, tmp_path):
    f = write_csv(tmp_path / "c.csv", [["last_name", "comments"], ["Иванов", "<table> из письма <html>"]])
    report = import_csv(store, f, "contact")
    assert (report.imported, report.rejected) == (1, 0)


def test_the_cli_says_it_for_import(tmp_path):
    from pipelines.cli import app

    runner = CliRunner()
    db = f"sqlite:///{tmp_path}/cli.db"
    assert runner.invoke(app, ["init", "--db", db]).exit_code == 0
    f = tmp_path / "contacts.xls"
    f.write_bytes(BITRIX_EXCEL.encode())
    r = runner.invoke(app, ["import", str(f), "--entity", "contact", "--preset", "bitrix24", "--db", db])
    assert r.exit_code != 0
    out = " ".join(r.output.split())
    assert "is not a CSV file: it is a web page (HTML)" in out, r.output
    assert "Traceback" not in r.output


# -- e-mail cells of several addresses ----------------------------------------------------------------------------

def test_several_addresses_are_split_where_every_piece_is_an_address():
    assert several_addresses("a@x.ru, b@x.ru") == ["a@x.ru", "b@x.ru"]
    assert several_addresses("a@x.ru;b@x.ru; ") == ["a@x.ru", "b@x.ru"]
    assert several_addresses(" a@x.ru\r\nb@x.ru\n") == ["a@x.ru", "b@x.ru"]
    assert several_addresses("a@x.ru b@x.ru\tc@x.ru") == ["a@x.ru", "b@x.ru", "c@x.ru"]
    assert several_addresses("<a@x.ru>, mailto:b@x.ru") == ["<a@x.ru>", "mailto:b@x.ru"]
    for one in ("a@x.ru", " a@x.ru, ", "Ivan Petrov <ivan@mail.ru>", "ivan@mail,ru", '"Ivan, Jr"@romashka.ru',
                '"a@b, c"@x.ru', "ivan @ mail.ru", "a@x.ru и b@x.ru", "a@x.ru; @", "a@x.ru, b@", "a@@x.ru, b@x.ru", ""):
        assert several_addresses(one) == [one], one


def test_an_email_cell_of_several_addresses_is_stored_as_several_emails(store, tmp_path):
    f = write_csv(tmp_path / "emails.csv", [
        ["last_name", "email:work", "email:home"],
        ["Comma", "a@x.ru, b@x.ru", "Ivan Petrov <ivan@mail.ru>"],
        ["Semicolon", "a@x.ru; b@x.ru;", "ivan@mail,ru"],
        ["Lines", "a@x.ru\r\nb@x.ru\nc@x.ru", '"Ivan, Jr"@romashka.ru'],
        ["Spaces", "A@X.ru  b@x.ru", "a@x.ru и b@x.ru"],
        ["One", "a@x.ru", ""],
    ])
    report = import_csv(store, f, "contact")
    assert (report.imported, report.rejected, report.communications) == (5, 0, 14)
    assert comms(store) == [
        (1, "email", "work", "a@x.ru"), (1, "email", "work", "b@x.ru"),
        (1, "email", "home", "Ivan Petrov <ivan@mail.ru>"),
        (2, "email", "work", "a@x.ru"), (2, "email", "work", "b@x.ru"), (2, "email", "home", "ivan@mail,ru"),
        (3, "email", "work", "a@x.ru"), (3, "email", "work", "b@x.ru"), (3, "email", "work", "c@x.ru"),
        (3, "email", "home", '"Ivan, Jr"@romashka.ru'),
        (4, "email", "work", "A@X.ru"), (4, "email", "work", "b@x.ru"), (4, "email", "home", "a@x.ru и b@x.ru"),
        (5, "email", "work", "a@x.ru"),
    ]
    # the addresses are no longer noted as "not an e-mail address"; a cell that is not only addresses still is (and
    # so is a quoted local part, which the matching does not take), on the row's first line
    assert report.notes == Counter({SEVERAL: 4, NOT_AN_ADDRESS: 2})
    assert report.note_lines[SEVERAL] == 2 and report.note_lines[NOT_AN_ADDRESS] == 4
    assert f"4 rows: {SEVERAL} (first at line 2)." in report.summary()


def test_the_bitrix24_preset_splits_addresses_its_join_leaves_together(store, tmp_path):
    f = write_csv(tmp_path / "contacts.csv", [
        ["ID", "Фамилия", "Рабочий e-mail", "Частный e-mail"],
        ["1", "Иванов", "a@x.ru, b@x.ru", "c@x.ru;d@x.ru"],  # the preset's ", " join; a ";" in one of its values
        ["2", "Петров", "a@x.ru, b@x.ru; c@x.ru", "e@x.ru\nf@x.ru"],
    ], delimiter=";", encoding="cp1251")
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert (report.imported, report.rejected) == (2, 0)
    assert comms(store) == [
        (1, "email", "work", "a@x.ru"), (1, "email", "work", "b@x.ru"),
        (1, "email", "home", "c@x.ru"), (1, "email", "home", "d@x.ru"),
        (2, "email", "work", "a@x.ru"), (2, "email", "work", "b@x.ru"), (2, "email", "work", "c@x.ru"),
        (2, "email", "home", "e@x.ru"), (2, "email", "home", "f@x.ru"),
    ]
    assert report.notes == Counter({SEVERAL: 2})  # (the preset's own join is its format, not a note)


def test_update_replaces_a_cell_stored_whole_by_its_addresses(store, tmp_path):
    """A record imported before, its cell of two addresses stored as one value: the same file with --update
    stores them as two e-mails."""
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.insert().values(id=1, last_name="Иванов", created_at=sa.func.now(),
                                                     modified_at=sa.func.now()))
        conn.execute(schema.communications.insert().values(entity_type="contact", entity_id=1, type="email",
                                                           kind="work", value="a@x.ru, b@x.ru"))
    f = write_csv(tmp_path / "c.csv", [["id", "last_name", "email:work"], ["1", "Иванов", "a@x.ru, b@x.ru"]])
    report = import_csv(store, f, "contact", update=True)
    assert (report.imported, report.updated, report.rejected) == (1, 1, 0)
    assert comms(store) == [(1, "email", "work", "a@x.ru"), (1, "email", "work", "b@x.ru")]
    assert report.notes[SEVERAL] == 1
