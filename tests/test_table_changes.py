"""RoleTable.changed_since: which records an incremental run normalises again, found by content."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm.demo import DemoSizes, generate_demo
from crm.readers import load_role_table
from matchers.table import RoleTable

D = dt.datetime


def _table(**changes) -> RoleTable:
    records = pd.DataFrame({"last_name": ["Иванов", "Smith", "Петров"], "first_name": ["Иван", "John", None],
                            "birthdate": [dt.date(1980, 5, 17), None, None], "responsible_id": [1, 2, 3],
                            "modified_at": [D(2024, 1, 1), D(2024, 2, 1), D(2024, 3, 1)]},
                           index=pd.Index([10, 20, 30], name="id"))
    values = pd.DataFrame({"id": [10, 10, 20, 30], "role": ["phone", "email", "phone", "phone"],
                           "raw": ["+7 916 123-45-67", "ivanov@mail.ru", "+1 212 555 0100", "8 495 111 22 33"]})
    for name, change in changes.items():
        change(records if name == "records" else values)
    return RoleTable("contact", records, values)


def test_the_same_rows_have_not_changed_whatever_the_order_of_the_records():
    before = _table()

    def records_reversed(v):  # each record's values in their order, the records the other way round
        v.loc[:] = pd.concat([v[v["id"] == i] for i in (30, 20, 10)]).to_numpy()

    now = _table(values=records_reversed)
    assert now.values["id"].tolist() == [30, 20, 10, 10]
    assert now.changed_since(before) == []


def test_the_order_of_a_records_values_counts():
    # the first of a record's websites is the one compared: their order is part of the record
    before = _table()

    def swapped(v):
        v.loc[[0, 1]] = v.loc[[1, 0]].to_numpy()

    assert _table(values=swapped).changed_since(before) == [10]


def test_an_edited_field_or_value_is_a_change_with_modified_at_left_alone():
    before = _table()

    def name(r):
        r.loc[20, "first_name"] = "Jon"

    def phone(v):
        v.loc[3, "raw"] = "8 495 111 22 34"

    def drop_email(v):
        v.drop(index=1, inplace=True)

    def moved(v):  # the same value on another record
        v.loc[1, "id"] = 20

    assert _table(records=name).changed_since(before) == [20]
    assert _table(values=phone).changed_since(before) == [30]
    assert _table(values=drop_email).changed_since(before) == [10]
    assert _table(values=moved).changed_since(before) == [10, 20]


def test_new_records_are_changes_and_gone_ones_are_not_asked_about():
    before = _table()
    now = _table()
    now.records.loc[40] = ["Сидоров", "Пётр", None, 1, D(2024, 4, 1)]
    now.records = now.records.drop(index=10)
    assert now.changed_since(before) == [40]


def test_hashes_do_not_depend_on_how_pandas_typed_a_column():
    before = _table()

    def floats(r):  # as a column of ints read with a gap comes back
        r["responsible_id"] = r["responsible_id"].astype("float64")

    def micro(r):
        r["modified_at"] = r["modified_at"].astype("datetime64[us]")

    def strings(r):
        r["last_name"] = r["last_name"].astype("string")

    for change in (floats, micro, strings):
        assert _table(records=change).changed_since(before) == [], change.__name__
    # a gap in the numbers of one record changes that record only
    now = _table(records=floats)
    now.records.loc[30, "responsible_id"] = np.nan
    assert now.changed_since(before) == [30]


def test_another_set_of_columns_changes_every_record():
    before = _table()
    now = _table(records=lambda r: r.insert(0, "middle_name", None))
    assert now.changed_since(before) == [10, 20, 30]


def test_a_table_read_from_the_store_hashes_as_its_parquet_copy(store, tmp_path):
    # what an incremental run compares: this run's read of the database with the last run's copy
    generate_demo(store, DemoSizes(contacts=300, companies=30, leads=30, managers=2), seed=5)
    for entity in ("contact", "company", "lead"):
        table = load_role_table(store, entity)
        (tmp_path / entity).mkdir()
        saved = _saved(table, tmp_path / entity)
        copy = RoleTable(entity, pd.read_parquet(saved[0]), pd.read_parquet(saved[1]))
        again = load_role_table(store, entity)
        assert len(table) > 0 and again.changed_since(copy) == again.changed_since_saved(*saved) == [], entity


def test_records_without_values_and_an_empty_last_table():
    before = _table(values=lambda v: v.drop(index=v.index, inplace=True))
    assert len(before.values) == 0
    now = _table(values=lambda v: v.drop(index=v.index, inplace=True))
    assert now.changed_since(before) == []
    empty = RoleTable("contact", before.records.iloc[:0], before.values)
    assert now.changed_since(empty) == [10, 20, 30]


def test_dates_past_2262_hash_alike_as_read_and_from_parquet(tmp_path):
    # pandas holds them as Python datetimes when read, in microseconds when read back from parquet
    late = _table(records=lambda r: r.__setitem__("modified_at", [D(2999, 12, 31), D(2024, 2, 1), None]))
    assert late.records["modified_at"].dtype == object
    late.records.to_parquet(tmp_path / "records.parquet")
    back = RoleTable("contact", pd.read_parquet(tmp_path / "records.parquet"), late.values)
    assert back.records["modified_at"].dtype == "datetime64[us]"
    assert back.changed_since(late) == [] and late.changed_since(back) == []
    assert _table().changed_since(late) == [10, 30]


def _saved(table: RoleTable, folder) -> tuple:
    """The table's copy as a run folder keeps it (find_step's run_table writes it so)."""
    records, values = folder / "table_records.parquet", folder / "table_values.parquet"
    table.records.to_parquet(records)
    table.values.to_parquet(values, index=False)
    return records, values


def test_comparing_with_a_saved_copy_gives_what_comparing_with_the_table_gives(tmp_path):
    def name(r):
        r.loc[20, "first_name"] = "Jon"

    def phone(v):
        v.loc[3, "raw"] = "8 495 111 22 34"

    def swapped(v):
        v.loc[[0, 1]] = v.loc[[1, 0]].to_numpy()

    def floats(r):
        r["responsible_id"] = r["responsible_id"].astype("float64")

    def extra_column(r):
        r.insert(0, "middle_name", None)

    before = _table()
    saved = _saved(before, tmp_path)
    for now in (_table(), _table(records=name), _table(values=phone), _table(values=swapped), _table(records=floats),
                _table(records=extra_column), _table(values=lambda v: v.drop(index=v.index, inplace=True))):
        assert now.changed_since_saved(*saved) == now.changed_since(before)
    assert _table(records=name).changed_since_saved(*saved) == [20]
    # the copy's hashes kept beside it (an incremental run keeps them for the next): the same answers,
    # without reading the copy's values (made unreadable here)
    RoleTable.save_hashes(before.content_hashes(), saved[0])
    saved[1].write_text("not parquet")
    for now in (_table(), _table(records=name), _table(values=phone), _table(values=swapped), _table(records=floats),
                _table(records=extra_column), _table(values=lambda v: v.drop(index=v.index, inplace=True))):
        expected = now.changed_since(before)
        assert now.changed_since_saved(*saved) == now.changed_since_saved(*saved, now.content_hashes()) == expected


def test_any_reordering_of_a_records_values_is_a_change():
    # summing the values' hashes must not let two swapped values cancel out (a pair that once did)
    def site_table(sites):
        return RoleTable("company", pd.DataFrame({"company": ["Acme"]}, index=pd.Index([1], name="id")),
                         pd.DataFrame({"id": [1] * len(sites), "role": "website", "raw": sites}))

    assert site_table(["ggflha-beta.ru", "fkaflm-alpha.ru"]).changed_since(
        site_table(["fkaflm-alpha.ru", "ggflha-beta.ru"])) == [1]
    rng = np.random.default_rng(7)
    for _ in range(300):
        sites = [f"{rng.integers(10**9)}.ru" for _ in range(rng.integers(2, 5))]
        shuffled = list(rng.permutation(sites))
        assert site_table(shuffled).changed_since(site_table(sites)) == ([] if shuffled == sites else [1])
