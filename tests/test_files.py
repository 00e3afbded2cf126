"""File mode input: CSV in UTF-8, Windows-1251 or UTF-16, comma, semicolon or tab, and parquet; only the columns
asked for; repeated column names; ids as numbers."""

from datetime import datetime

import pandas as pd
import pytest

from crm import schema
from crm.csv_io import export_csv
from crm.readers import load_role_table
from matchers.table import MappingError
from scoring.files import FileError, find_in_file, read_table
from scoring.find import _criteria, find_duplicates
from scoring.settings import MatchSettings

ROWS = [("1", "Иванов", "Иван", "+7 916 123-45-67", "примечание"), ("2", "Иванов", "Иван", "8 916 1234567", ""),
        ("3", "Smith", "John", "+44 20 7946 0958", "note")]
COLUMNS = ["id", "Фамилия", "Имя", "Телефон", "Комментарий"]


def _write_csv(path, encoding, sep, excel_sep_line=False):
    lines = ([f"sep={sep}"] if excel_sep_line else []) + [sep.join(COLUMNS)] + [sep.join(r) for r in ROWS]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))  # ("utf-16" writes a BOM)
    return path


@pytest.mark.parametrize("encoding,sep,excel_sep_line", [
    ("utf-8-sig", ",", False), ("utf-8", ";", False), ("cp1251", ";", False), ("cp1251", ",", False),
    ("utf-8", "\t", False), ("utf-16", "\t", False),  # Excel's "Unicode text": UTF-16 with a BOM, tabs
    ("utf-8-sig", ";", True), ("cp1251", ",", True), ("utf-16", ";", True)])  # Excel's "sep=;" first line
def test_read_table_encodings_and_separators(tmp_path, encoding, sep, excel_sep_line):
    frame = read_table(_write_csv(tmp_path / "in.csv", encoding, sep, excel_sep_line))
    assert list(frame.columns) == COLUMNS
    assert frame["Фамилия"].tolist() == ["Иванов", "Иванов", "Smith"]
    assert frame["Комментарий"].isna().tolist() == [False, True, False]   # an empty cell is missing


def test_read_table_reads_only_the_columns_asked_for(tmp_path):
    csv = _write_csv(tmp_path / "in.csv", "cp1251", ";")
    assert list(read_table(csv, columns=["id", "Телефон", "нет такой"]).columns) == ["id", "Телефон"]
    pq = tmp_path / "in.parquet"
    read_table(csv).to_parquet(pq, index=False)
    assert list(read_table(pq, columns=["Телефон", "id", "нет такой"]).columns) == ["Телефон", "id"]


def test_a_missing_mapped_column_is_named(tmp_path):
    csv = _write_csv(tmp_path / "in.csv", "utf-8", ",")
    with pytest.raises(MappingError, match="Отчество"):
        find_in_file(csv, "contact", {"last_name": ["Фамилия"], "middle_name": ["Отчество"]}, "id")


def test_find_in_file_groups_the_same_person(tmp_path):
    csv = _write_csv(tmp_path / "in.csv", "cp1251", ";")
    result = find_in_file(csv, "contact", {"last_name": ["Фамилия"], "first_name": ["Имя"], "phone": ["Телефон"]}, "id")
    groups = result.groups.set_index("id")["group_id"]
    assert groups[1] == groups[2] != groups[3]  # whole-number ids are read as numbers


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("  \n")
    with pytest.raises(FileError, match="empty"):
        read_table(tmp_path / "empty.csv")
    with pytest.raises(FileError, match="no file"):
        read_table(tmp_path / "nope.csv")


def test_criteria_words_count_the_records_matched_inside_each_group():
    group_table = pd.DataFrame({"member_ids": [[1, 2, 3], [4, 5], [6, 7], [8, 9]]})
    pairs = pd.DataFrame({"id_a": [1, 1, 2, 4, 6, 8], "id_b": [2, 3, 3, 5, 7, 10],
                          "criteria": ["phone,email", "phone", "", "phone", "phone", "email"]})
    assert _criteria(group_table, pairs) == ["2 matches by phone, 1 match by email", "1 match by phone",
                                             "1 match by phone", "similar records"]
    # four records sharing one phone are three matches (a primary and three duplicates), not six pairs;
    # two separate pairs by e-mail are two
    group_table = pd.DataFrame({"member_ids": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    pairs = pd.DataFrame({"id_a": [1, 1, 1, 2, 2, 3, 5, 7, 5], "id_b": [2, 3, 4, 3, 4, 4, 6, 8, 7],
                          "criteria": ["phone"] * 6 + ["email", "email", "name"]})
    assert _criteria(group_table, pairs) == ["3 matches by phone", "2 matches by email, 1 match by name"]


# -- ids: numbers when every id is a whole number, else text ------------------------------------------------

def _people(ids):
    """Two people written twice each (same name and phone), under the ids given, in this order."""
    people = [("Иванов", "Иван", "+7 916 123-45-67"), ("Smith", "John", "+44 20 7946 0958")]
    return pd.DataFrame([(i, *people[n % 2]) for n, i in enumerate(ids)], columns=["id", "last", "first", "phone"])


MAP = {"last_name": ["last"], "first_name": ["first"], "phone": ["phone"]}


def test_whole_number_ids_are_compared_ordered_and_written_as_numbers(tmp_path):
    # as text "50" < "7" and "312" < "4": the pairs must still read 7,50 and 4,312 as the database's do
    _people(["50", "312", "7", "4"]).to_csv(tmp_path / "in.csv", index=False)
    result = find_in_file(tmp_path / "in.csv", "contact", MAP, "id")
    assert sorted(zip(result.pairs["id_a"], result.pairs["id_b"])) == [(4, 312), (7, 50)]
    assert result.pairs["id_a"].dtype == "int64" and result.groups["id"].dtype == "int64"
    out = result.write(tmp_path / "out")
    written = pd.read_csv(out["pairs"], dtype=str)
    assert sorted(zip(written["id_a"], written["id_b"])) == [("4", "312"), ("7", "50")]


@pytest.mark.parametrize("ids", [["50", "312", "7", "0004"],  # a leading zero: "0004" would be written "4"
                                 ["50", "312", "7", "x4"], ["50", "312", "7", "+4"]])
def test_other_ids_stay_text_as_written_and_are_ordered_as_text(tmp_path, ids):
    _people(ids).to_csv(tmp_path / "in.csv", index=False)
    result = find_in_file(tmp_path / "in.csv", "contact", MAP, "id")
    # text order, by character codes: "312" < "x4", "50" < "7"
    assert sorted(zip(result.pairs["id_a"], result.pairs["id_b"])) == sorted([tuple(sorted((ids[1], ids[3]))),
                                                                             ("50", "7")])
    assert set(result.groups["id"]) == set(ids)


# -- repeated column names: `crm-dedup export` repeats email:work for a record with several -----------------

NOW = datetime(2024, 5, 6, 7, 8, 9)


def test_an_export_with_repeated_columns_finds_what_the_database_run_finds(store, tmp_path):
    store.insert(schema.contacts, [
        dict(id=i, last_name=last, first_name=first, created_at=NOW, modified_at=NOW)
        for i, last, first in [(4, "Петров", "Иван"), (7, "Петров", "Иван"), (50, "Смирнова", "Анна"),
                               (312, "Смирнова", "Анна"), (9, "Кузнецов", "Олег"), (11, "García", "Lucía")]])
    comms = [(4, "email", "ivan@mail.ru"), (4, "email", "ip@firma.ru"), (4, "email", "petrov@yandex.ru"),
             (7, "email", "petrov@yandex.ru"),  # only the third of 4's e-mails joins them
             (50, "phone", "+7 903 555-00-00"), (50, "phone", "+7 495 111-22-33"),
             (312, "phone", "8 (495) 111-22-33"),  # only the second of 50's phones
             (9, "email", "oleg@rambler.ru"), (11, "phone", "+34 91 123 45 67")]
    store.insert(schema.communications, [dict(entity_type="contact", entity_id=i, type=t, kind="work", value=v)
                                         for i, t, v in comms])
    export_csv(store, tmp_path / "export.csv", "contact")
    frame = read_table(tmp_path / "export.csv", columns=["id", "email:work", "phone:work"], repeated_names=True)
    assert list(frame.columns) == ["id", "phone:work", "phone:work", "email:work", "email:work", "email:work"]
    assert frame["email:work"].loc[0].tolist() == ["ivan@mail.ru", "ip@firma.ru", "petrov@yandex.ru"]

    mapping = {"last_name": "last_name", "first_name": "first_name", "phone": ["phone:work"], "email": ["email:work"]}
    settings = MatchSettings()
    in_file = find_in_file(tmp_path / "export.csv", "contact", mapping, "id", settings)
    in_db = find_duplicates(load_role_table(store, "contact"), settings)
    cols = ["id_a", "id_b", "probability", "criteria", "explanation"]
    assert {(4, 7), (50, 312)} <= set(zip(in_file.pairs["id_a"], in_file.pairs["id_b"]))
    pd.testing.assert_frame_equal(in_file.pairs[cols], in_db.pairs[cols])


def test_a_repeated_name_for_a_one_column_role_is_refused(tmp_path):
    (tmp_path / "in.csv").write_text("id,name,name,phone\n1,Иван,Ваня,+79161234567\n", encoding="utf-8")
    with pytest.raises(MappingError, match="role 'first_name' takes one column.*2 columns named 'name'"):
        find_in_file(tmp_path / "in.csv", "contact", {"first_name": ["name"], "phone": ["phone"]}, "id")


# -- a file read otherwise than it is written: the error shows what was read --------------------------------

def test_a_missing_column_error_lists_the_file_columns_and_how_it_was_read(tmp_path):
    # a pipe-separated file reads as one column: the error shows it, and how to name the delimiter
    csv = tmp_path / "in.csv"
    csv.write_text("id|Фамилия|Телефон|Город\n1|Иванов|+79161234567|Москва\n", encoding="utf-8")
    with pytest.raises(MappingError) as err:
        find_in_file(csv, "contact", {"last_name": ["Фамилия"]}, "id")
    message = str(err.value)
    assert "no columns 'Фамилия', 'id'" in message and "'id|Фамилия|Телефон|Город'" in message
    assert "read as UTF-8, comma-separated" in message and "sep=X" in message
    # an unmapped column is listed too (only the mapped ones are read)
    csv.write_text("id,Фамилия,Телефон,Город\n1,Иванов,+79161234567,Москва\n", encoding="cp1251")
    with pytest.raises(MappingError, match="no column 'Имя'.*Windows-1251, comma-separated: 'id', 'Фамилия', "
                                           "'Телефон', 'Город'"):
        find_in_file(csv, "contact", {"last_name": ["Фамилия"], "first_name": ["Имя"]}, "id")
    # a parquet file's columns are listed the same way
    read_table(csv).to_parquet(tmp_path / "in.parquet", index=False)
    with pytest.raises(MappingError, match=r"no column 'Имя'.*read as parquet: 'id', 'Фамилия', 'Телефон', 'Город'\.$"):
        find_in_file(tmp_path / "in.parquet", "contact", {"last_name": ["Фамилия"], "first_name": ["Имя"]}, "id")
    # and the file is read as its sep= line says
    csv.write_text("sep=|\nid|Фамилия|Телефон\n1|Иванов|+79161234567\n2|Иванов|89161234567\n", encoding="utf-8")
    result = find_in_file(csv, "contact", {"last_name": ["Фамилия"], "phone": ["Телефон"]}, "id")
    assert list(zip(result.pairs["id_a"], result.pairs["id_b"])) == [(1, 2)]
