"""Phones typed one per line in a cell (Alt+Enter in Excel, a Bitrix24 export opened and saved again): each
is a number of its own, as with ";" or "," between them. Before, the cell was one phone that was no number:
stored as written and left out of matching."""

from __future__ import annotations

import csv
from collections import Counter

import sqlalchemy as sa

from crm import schema
from crm.csv_io import import_csv
from matchers.phones import normalize_phones, several_numbers
import pandas as pd


def test_numbers_on_lines_of_their_own_are_several():
    assert several_numbers("8 916 555-12-07\n8 916 555-12-08") == ["8 916 555-12-07", "8 916 555-12-08"]
    assert several_numbers("+79165551207\r\n+79165551208\n") == ["+79165551207", "+79165551208"]
    # a line that is no number (a note under it) keeps the cell whole, as a note after ";" does
    assert several_numbers("8 916 555-12-07\nпосле 18:00") == ["8 916 555-12-07\nпосле 18:00"]


def test_a_cell_of_numbers_on_lines_reads_as_its_first_number():
    out = normalize_phones(pd.Series(["8 916 555-12-07\n8 916 555-12-08"]), region="RU")
    assert out.loc[0, "e164"] == "+79165551207" and bool(out.loc[0, "valid"])


def test_import_stores_each_number_of_a_cell_written_one_per_line(store, tmp_path):
    path = tmp_path / "lines.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows([
            ["id", "last_name", "first_name", "phone"],
            ["1", "Иванов", "Иван", "8 916 555-12-07\n8 916 555-12-08"],
            ["2", "Петров", "Пётр", "+7 495 123-45-67"],
        ])
    report = import_csv(store, path, "contact")
    assert report.imported == 2 and not report.problems and not report.cell_problems
    c = schema.communications
    with store.engine.connect() as conn:
        stored = Counter((r.entity_id, r.value) for r in conn.execute(
            sa.select(c.c.entity_id, c.c.value).where(c.c.entity_type == "contact", c.c.type == "phone")))
    assert stored == Counter({(1, "8 916 555-12-07"): 1, (1, "8 916 555-12-08"): 1, (2, "+7 495 123-45-67"): 1})
