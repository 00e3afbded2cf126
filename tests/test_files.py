"""File mode input: CSV in UTF-8 or Windows-1251, comma or semicolon, and parquet; only the columns asked for."""

import pandas as pd
import pytest

from matchers.table import MappingError
from scoring.files import FileError, find_in_file, read_table
from scoring.find import _criteria

ROWS = [("1", "Иванов", "Иван", "+7 916 123-45-67", "примечание"), ("2", "Иванов", "Иван", "8 916 1234567", ""),
        ("3", "Smith", "John", "+44 20 7946 0958", "note")]
COLUMNS = ["id", "Фамилия", "Имя", "Телефон", "Комментарий"]


def _write_csv(path, encoding, sep):
    lines = [sep.join(COLUMNS)] + [sep.join(r) for r in ROWS]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.mark.parametrize("encoding,sep", [("utf-8-sig", ","), ("utf-8", ";"), ("cp1251", ";"), ("cp1251", ",")])
def test_read_table_encodings_and_separators(tmp_path, encoding, sep):
    frame = read_table(_write_csv(tmp_path / "in.csv", encoding, sep))
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
    assert groups["1"] == groups["2"] != groups["3"]


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("  \n")
    with pytest.raises(FileError, match="empty"):
        read_table(tmp_path / "empty.csv")
    with pytest.raises(FileError, match="no file"):
        read_table(tmp_path / "nope.csv")


def test_criteria_words_count_the_pairs_inside_each_group():
    group_table = pd.DataFrame({"member_ids": [[1, 2, 3], [4, 5], [6, 7], [8, 9]]})
    pairs = pd.DataFrame({"id_a": [1, 1, 2, 4, 6, 8], "id_b": [2, 3, 3, 5, 7, 10],
                          "criteria": ["phone,email", "phone", "", "phone", "phone", "email"]})
    assert _criteria(group_table, pairs) == ["2 matches by phone, 1 match by email", "1 match by phone",
                                             "1 match by phone", "similar records"]
