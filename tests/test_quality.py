"""Data-quality report: per field, shared values, per record, per source; parquet; summary."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.quality import REPORT_KEYS, is_placeholder_text, quality_report, quality_summary, write_quality
from matchers.table import RoleTable


@pytest.fixture
def contacts() -> RoleTable:
    frame = pd.DataFrame({
        "last": ["Иванов", "Петров", "-", None, "Сидоров2", "Smith"],
        "first": ["Иван", "Пётр", "нет", "Анна", None, "Bill"],
        "phone1": ["8 495 123-45-67", "+7 (000) 000-00-00", "12345", "+7 (495) 123-45-67", None, "+1 212 555 0123"],
        "phone2": [None, "8 916 111 22 33", None, "84951234567", "нет", None],
        "email": ["info@romashka.ru", "INFO@romashka.ru", "test@test.ru", "ivan@mail", None, "bill@example.com"],
        "inn": ["7707083893", "7707083894", None, "0000000000", None, None],
        "bd": ["1985-03-07", "junk", None, "07.03.1985", "1900-01-01", None],
        "source": ["web", "import", "import", "web", None, "web"],
        "note": ["x", "важный клиент", None, "", "-", "ok"],
    })
    mapping = {"last_name": "last", "first_name": "first", "phone": ["phone1", "phone2"], "email": "email",
               "tax_id": "inn", "birthdate": "bd", "text": ["note"]}
    return RoleTable.from_frame("contact", frame, mapping)


def _field(report, role):
    return report["fields"].set_index("role").loc[role]


def test_report_keys_and_fields(contacts):
    report = quality_report(contacts, shared_threshold=2)
    assert tuple(report) == REPORT_KEYS
    fields = report["fields"]
    assert list(fields["role"]) == ["first_name", "last_name", "birthdate", "tax_id", "text:note", "phone", "email"]
    assert (fields["records"] == 6).all()

    phone = _field(report, "phone")
    # 8 non-empty phone values; usable in records 0, 1 (8 916...), 3 and 5; "12345" invalid; two placeholders
    assert (phone["values"], phone["filled"], phone["invalid"], phone["placeholder"]) == (8, 4, 1, 2)
    assert phone["share_empty"] == pytest.approx(2 / 6)
    assert phone["examples"] == "12345"

    email = _field(report, "email")
    assert (email["values"], email["filled"], email["invalid"], email["placeholder"]) == (5, 2, 1, 2)
    assert email["examples"] == "ivan@mail"

    last = _field(report, "last_name")
    assert (last["invalid"], last["placeholder"], last["examples"]) == (1, 1, "Сидоров2")
    first = _field(report, "first_name")
    assert (first["filled"], first["placeholder"]) == (4, 1)

    inn = _field(report, "tax_id")
    assert (inn["filled"], inn["invalid"], inn["placeholder"], inn["examples"]) == (1, 1, 1, "7707083894")
    bd = _field(report, "birthdate")
    assert (bd["filled"], bd["invalid"], bd["placeholder"], bd["examples"]) == (2, 1, 1, "junk")
    note = _field(report, "text:note")
    assert (note["values"], note["filled"], note["placeholder"]) == (4, 2, 2)


def test_shared_values(contacts):
    shared = quality_report(contacts, shared_threshold=2)["shared"]
    assert list(shared.columns) == ["role", "value", "records"]
    rows = set(map(tuple, shared.itertuples(index=False)))
    # the switchboard counts records, not values: record 3 holds it twice
    assert rows == {("phone", "+74951234567", 2), ("email", "info@romashka.ru", 2)}
    assert quality_report(contacts, shared_threshold=3)["shared"].empty


def test_records(contacts):
    records = quality_report(contacts)["records"]
    assert list(records.index) == list(contacts.records.index)
    assert list(records.columns) == ["completeness", "invalid", "placeholder"]
    # record 0 has usable values for 6 of the 7 roles (its note "x" is a placeholder)
    assert records.loc[0, "completeness"] == pytest.approx(6 / 7)
    assert records.loc[0, "invalid"] == 0 and records.loc[0, "placeholder"] == 1
    assert records.loc[4, "completeness"] == 0
    assert records.loc[1, "invalid"] == 2   # wrong INN checksum, junk birthdate
    assert records["completeness"].between(0, 1).all()


def test_sources(contacts):
    sources = quality_report(contacts)["sources"]
    web_phone = sources[(sources["source"] == "web") & (sources["role"] == "phone")].iloc[0]
    assert (web_phone["records"], web_phone["values"], web_phone["invalid"]) == (3, 4, 0)
    import_phone = sources[(sources["source"] == "import") & (sources["role"] == "phone")].iloc[0]
    assert import_phone["share_invalid"] == pytest.approx(1 / 3)
    assert import_phone["share_placeholder"] == pytest.approx(1 / 3)
    assert "(none)" in set(sources["source"])


def test_no_source_column_gives_empty_sources():
    table = RoleTable.from_frame("company", pd.DataFrame({"t": ["ООО Ромашка", "Romashka LLC"],
                                                          "site": ["romashka.ru", "http://www.romashka.ru"]}),
                                 {"company": "t", "website": "site"})
    report = quality_report(table, shared_threshold=2)
    assert report["sources"].empty
    assert report["shared"].to_dict("records") == [{"role": "website", "value": "romashka.ru", "records": 2}]
    assert (report["records"]["completeness"] == 1).all()


def test_write_quality_round_trip(contacts, tmp_path):
    report = quality_report(contacts, shared_threshold=2)
    paths = write_quality(report, tmp_path / "q")
    assert [p.name for p in paths] == [f"quality_{k}.parquet" for k in REPORT_KEYS]
    fields = pd.read_parquet(paths[0])
    assert fields["role"].tolist() == report["fields"]["role"].tolist()
    records = pd.read_parquet(tmp_path / "q" / "quality_records.parquet")
    assert records["completeness"].tolist() == pytest.approx(report["records"]["completeness"].tolist())
    assert pd.read_parquet(tmp_path / "q" / "quality_shared.parquet")["records"].tolist() == [2, 2]


def test_summary(contacts):
    text = quality_summary(quality_report(contacts, shared_threshold=2), "contact")
    lines = text.splitlines()
    assert 3 <= len(lines) <= 6
    assert lines[0].startswith("contact: 6 records")
    assert "+74951234567" in text and "info@romashka.ru" in text and ">= 2" in text
    assert "12345" in text  # an invalid phone shown as an example


def test_placeholder_text():
    for value in ["-", "нет", "Не указано", "TEST", "xxx", " ??? "]:
        assert is_placeholder_text(value), value
    for value in ["Иванов", "ok", None, ""]:
        assert not is_placeholder_text(value), value


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.one_of(st.text(max_size=12), st.none()), st.one_of(st.text(max_size=15), st.none()),
                          st.one_of(st.text(max_size=15), st.none())), min_size=1, max_size=8))
def test_report_on_any_text(rows):
    frame = pd.DataFrame(rows, columns=["name", "phone", "email"])
    table = RoleTable.from_frame("lead", frame, {"full_name": "name", "phone": "phone", "email": "email"})
    report = quality_report(table, shared_threshold=1)
    assert report["records"]["completeness"].between(0, 1).all()
    assert (report["fields"]["filled"] <= len(rows)).all()
    quality_summary(report, "lead")
