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


# -- the report's content on awkward inputs, checked value by value against the per-value parsers --

def _awkward() -> RoleTable:
    """Numbers, padding, blanks, placeholders and junk in every column; a value shared by many."""
    frame = pd.DataFrame({
        "name": ["Иван", " Пётр ", "-", "Сидоров2", None, "test", "Анна", "", "x", "Ann", "Bob", "Иван", "O'Neil",
                 "нет"],
        "phone1": ["8 (495) 123-45-67", "+7 495 123 45 67", " 84951234567 ", "74951234567", "+7 (495) 123-45-67",
                   "8-495-123-45-67", "12345", "12345", "  ", "нет", "+7 (000) 000-00-00", "8 916 111 22 33 доб. 12",
                   None, "+1 212 555 0123"],
        # a number among the texts: the values are read as multi() reads them
        "phone2": [None, "8 495 1234567", None, None, None, None, None, "12345", None, None, "", None, None,
                   79161112233],
        "email": ["info@romashka.ru", " INFO@romashka.ru", "info@Romashka.ru", "test@test.ru", "test@test.ru",
                  "ivan@mail", "Ivan <ivan.p@yandex.ru>", "ivan-p@ya.ru", "", None, "a@a.ru", "мама@почта.рф",
                  "no-reply@x.ru", "ivan@mail"],
        "inn": ["7707083893", "7707083894", "0000000000", "500100732259", "1111111111", "770708389",
                "ИНН 7707-083-893", 7707083893, None, "", "12", "500100732250", "7707083893", " 7707083893 "],
        "addr": ["Москва, ул. Ленина, д. 1, кв. 2", "-", "не указано", "Не  Указано!!", "ﬁrst name", "тeст", "SPb",
                 "Санкт-Петербург, Невский проспект 1", None, "", "xxx", "unknown", "12345", "Moscow, Tverskaya st. 7"],
        "source": ["web", "web ", None, "", "import", "import", 5, "web", "web", "import", None, "web", "web",
                   "import"],
    })
    mapping = {"full_name": "name", "phone": ["phone1", "phone2"], "email": "email", "tax_id": "inn",
               "address": "addr"}
    return RoleTable.from_frame("contact", frame, mapping)


def _per_value(table: RoleTable, region: str = "RU") -> dict[str, list[tuple[int, str, bool, bool, str | None]]]:
    """(record position, text, invalid, placeholder, shared key) of every non-empty value of every role,
    from the per-value parsers, in the order of the values."""
    from matchers.emails import parse_email
    from matchers.identifiers import parse_inn
    from matchers.names import as_text, clean_text
    from matchers.phones import parse_phone

    out: dict[str, list] = {}
    pos = {record_id: i for i, record_id in enumerate(table.records.index)}
    for role in ("full_name", "tax_id", "address"):
        rows = []
        for i, raw in enumerate(table.records[role]):
            text = as_text(raw)
            if text is None:
                continue
            if role == "full_name":
                clean = clean_text(text)
                placeholder = is_placeholder_text(text)
                rows.append((i, text, not placeholder and any(c.isdigit() for c in clean), placeholder, None))
            elif role == "tax_id":
                digits, ok = parse_inn(raw)
                placeholder = digits is None or len(set(digits)) == 1
                rows.append((i, text, not ok and not placeholder, placeholder, digits if ok else None))
            else:
                rows.append((i, text, False, is_placeholder_text(text), None))
        out[role] = rows
    for role in ("phone", "email"):
        rows = []
        for record_id, raw in table.multi(role).itertuples(index=False):
            if role == "phone":
                p = parse_phone(raw, region=region)
                key = (p.e164 or p.national) if p.valid and not p.placeholder else None
                rows.append((pos[record_id], raw, not p.valid and not p.placeholder, p.placeholder, key))
            else:
                e = parse_email(raw)
                key = e.canonical if e.valid and not e.placeholder else None
                rows.append((pos[record_id], raw, not e.valid and not e.placeholder, e.placeholder, key))
        out[role] = rows
    return out


@pytest.mark.parametrize("region", ["RU", "US"])
def test_report_agrees_with_per_value_parsers(region):
    table = _awkward()
    report = quality_report(table, region=region, shared_threshold=3)
    expected = _per_value(table, region)
    n = len(table.records)
    fields = report["fields"].set_index("role")
    assert list(fields.index) == ["full_name", "address", "tax_id", "phone", "email"]
    usable_roles = [0] * n
    invalid_per_record, placeholder_per_record = [0] * n, [0] * n
    shared_rows = []
    for role, rows in expected.items():
        usable = {i for i, _, bad, ph, _ in rows if not bad and not ph}
        for i in usable:
            usable_roles[i] += 1
        for i, _, bad, ph, _ in rows:
            invalid_per_record[i] += bad
            placeholder_per_record[i] += ph
        examples = []
        for _, text, bad, _, _ in rows:
            if bad and text not in examples:
                examples.append(text)
        row = fields.loc[role]
        assert (row["values"], row["filled"], row["invalid"], row["placeholder"]) == (
            len(rows), len(usable), sum(r[2] for r in rows), sum(r[3] for r in rows)), role
        assert row["examples"] == " | ".join(examples[:5]), role
        holders: dict[str, set[int]] = {}
        for i, _, _, _, key in rows:
            if key is not None:
                holders.setdefault(key, set()).add(i)
        shared_rows += [(role, key, len(held)) for key, held in holders.items() if len(held) >= 3]
    records = report["records"]
    assert records["completeness"].tolist() == pytest.approx([u / 5 for u in usable_roles])
    assert records["invalid"].tolist() == invalid_per_record
    assert records["placeholder"].tolist() == placeholder_per_record
    shared_rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    assert list(report["shared"].itertuples(index=False, name=None)) == shared_rows
    # the INN on five records (as a number too), info@ on three; in Russia the switchboard in six spellings
    # on six records, one of them holding it twice (elsewhere "8 495 ..." is another number)
    assert ("tax_id", "7707083893", 5) in shared_rows and ("email", "info@romashka.ru", 3) in shared_rows
    assert (("phone", "+74951234567", 6) in shared_rows) == (region == "RU")


def test_awkward_report_tables_are_typed_and_ordered(tmp_path):
    report = quality_report(_awkward(), shared_threshold=3)
    assert report["shared"].dtypes.astype(str).tolist() == ["object", "object", "int64"]
    assert report["shared"]["records"].is_monotonic_decreasing
    assert report["records"].dtypes.astype(str).tolist() == ["float64", "int64", "int64"]
    sources = report["sources"]
    # "web" and "web " are one source; the number 5 is the source "5"; empty and missing are "(none)"
    assert sorted(set(sources["source"])) == ["(none)", "5", "import", "web"]
    assert list(sources.itertuples(index=False, name=None)) == sorted(sources.itertuples(index=False, name=None),
                                                                       key=lambda r: (r[0], r[1]))
    web = sources[(sources["source"] == "web") & (sources["role"] == "full_name")].iloc[0]
    assert web["records"] == 6
    paths = write_quality(report, tmp_path)
    for path, key in zip(paths, REPORT_KEYS):
        back = pd.read_parquet(path)
        assert back.shape == report[key].shape


def test_empty_table(tmp_path):
    frame = pd.DataFrame({"name": pd.Series(dtype=object), "phone": pd.Series(dtype=object),
                          "source": pd.Series(dtype=object)})
    report = quality_report(RoleTable.from_frame("contact", frame, {"full_name": "name", "phone": "phone"}))
    assert all(report[k].empty for k in REPORT_KEYS)
    assert list(report["fields"].columns)[:3] == ["role", "records", "values"]
    assert report["shared"].dtypes.astype(str).tolist() == ["object", "object", "int64"]
    assert list(report["records"].columns) == ["completeness", "invalid", "placeholder"]
    assert len(write_quality(report, tmp_path)) == 4
    assert quality_summary(report, "contact").startswith("contact: 0 records")


def test_records_without_phones():
    # a phone column with only blanks: the role is there, with no values; nobody has a usable phone
    frame = pd.DataFrame({"name": ["Иван", "Пётр", "Анна"], "phone": ["", "   ", None]})
    report = quality_report(RoleTable.from_frame("contact", frame, {"full_name": "name", "phone": "phone"}))
    phone = _field(report, "phone")
    assert (phone["values"], phone["filled"], phone["invalid"], phone["share_empty"], phone["examples"]) == (
        0, 0, 0, 1.0, "")
    assert report["records"]["completeness"].tolist() == [0.5, 0.5, 0.5]
    # no phone column at all: the role is not reported
    report = quality_report(RoleTable.from_frame("contact", frame[["name"]], {"full_name": "name"}))
    assert report["fields"]["role"].tolist() == ["full_name"]
    assert (report["records"]["completeness"] == 1).all()


def test_value_of_no_record_is_left_out(caplog):
    records = pd.DataFrame({"full_name": ["Иван", "Пётр"]}, index=pd.Index([10, 20], name="id"))
    values = pd.DataFrame({"id": [10, 99, 20], "role": "phone",
                           "raw": ["+7 495 123-45-67", "+7 495 123-45-67", "12345"]})
    report = quality_report(RoleTable("contact", records, values), shared_threshold=2)
    phone = _field(report, "phone")
    assert (phone["values"], phone["filled"], phone["invalid"]) == (2, 1, 1)
    assert report["shared"].empty
    assert "belong to no record" in caplog.text and "99" in caplog.text


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.text(alphabet=st.sampled_from(list("abcXYZ019 .,-'`\t\nнеткстНЕТёЁй№ﬁßİ\u0301\u200b")),
                        max_size=16), min_size=1, max_size=20))
def test_free_text_placeholders_as_is_placeholder_text(texts):
    """Long plain free text skips clean_text: the verdicts must be is_placeholder_text's all the same."""
    table = RoleTable.from_frame("contact", pd.DataFrame({"n": "Иван", "a": texts, "t": texts}),
                                 {"full_name": "n", "address": "a", "text": ["t"]})
    fields = quality_report(table)["fields"].set_index("role")
    for role in ("address", "text:t"):
        if role in fields.index:
            assert fields.loc[role, "placeholder"] == sum(is_placeholder_text(t) for t in texts)
            assert fields.loc[role, "invalid"] == 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.from_regex(r"[0-9]{10}|[0-9]{12}", fullmatch=True),
                          st.sampled_from(["7707083893", "500100732259", "0000000000", "1111111111",
                                           "222222222222", "770708389", " 7707083893", "٧٧٠٧٠٨٣٨٩٣"])),
                min_size=1, max_size=20))
def test_inn_verdicts_as_parse_inn(inns):
    from matchers.identifiers import parse_inn

    table = RoleTable.from_frame("company", pd.DataFrame({"c": "ООО Ромашка", "inn": inns}),
                                 {"company": "c", "tax_id": "inn"})
    report = quality_report(table, shared_threshold=1)
    parsed = [parse_inn(v) for v in inns]
    placeholder = [len(set(d)) == 1 for d, _ in parsed]
    inn = _field(report, "tax_id")
    assert inn["placeholder"] == sum(placeholder)
    assert inn["invalid"] == sum(not ok and not ph for (_, ok), ph in zip(parsed, placeholder))
    shared = report["shared"]
    assert set(shared.loc[shared["role"] == "tax_id", "value"]) == {
        d for (d, ok), ph in zip(parsed, placeholder) if ok and not ph}


def test_report_with_helper_processes_is_the_same(monkeypatch):
    """On a large table phones and e-mails are normalised in helper processes, in chunks: same report."""
    import matchers.prepare as prep

    table = _awkward()
    one = quality_report(table, shared_threshold=3)
    monkeypatch.setattr(prep, "PARALLEL_MIN_VALUES", 1)
    monkeypatch.setattr(prep, "CHUNK_VALUES", 2)
    two = quality_report(table, shared_threshold=3, workers=2)
    for key in ("fields", "shared", "records", "sources"):
        pd.testing.assert_frame_equal(one[key], two[key])
    assert one["fields"]["invalid"].sum() > 0 and len(one["shared"]) > 0  # the table exercises both verdicts


def test_the_find_takes_the_phones_and_emails_the_check_normalised():
    """quality_report(normalised=...) hands its normalised phones and e-mails to prepare(known=...):
    the records prepared with them equal those prepared from scratch, also when some values are
    missing from them (normalised there) or they were made with other arguments (not used)."""
    from matchers.prepare import prepare

    table = _awkward()
    normalised: dict = {}
    quality_report(table, shared_threshold=3, normalised=normalised)
    assert set(normalised) == {"phone", "email"}
    assert normalised["phone"]["value"].is_unique and len(normalised["email"]) > 0
    fresh = prepare(table)
    partial = {"phone": normalised["phone"].iloc[::2], "email": normalised["email"].iloc[1:]}
    for role in partial:
        partial[role].attrs = normalised[role].attrs
    other_region = normalised["phone"].copy()
    other_region.attrs["normaliser"] = ("normalize_phone_values", ("DE", ("US", "GB")))
    other_region["e164"] = "+490000000"  # would show if it were used
    for known in (normalised, partial, {"phone": other_region}):
        reused = prepare(table, known=known)
        for name in ("records", "phones", "emails", "sites"):
            pd.testing.assert_frame_equal(getattr(fresh, name), getattr(reused, name))
