"""Store.read_entities and Store.read_communications read on the driver's cursor and return exactly
the frames the SQLAlchemy path returned: same columns, order, dtypes, values and missing values
(None, NaN, NaT), on SQLite (dates and datetimes stored as text) and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import warnings

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import processors

import crm.store
from crm import schema
from crm.store import communications_query, entities_query

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
TEXTS = ["Иванов", "Ёлка 🎄", "漢字かな", "e\u0301", "", " ", "O'Brien \"q\" \\ %s %(x)s ?", "x" * 1000,
         "tab\tnew\nline"]
BIRTHDATES = [None, dt.date(1980, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2000, 2, 29)]


# -- the reference: the read as it was before, through Connection.execute --------------------------

def reference_read(store, query: sa.Select, chunksize: int) -> pd.DataFrame:
    """Store.read_query + read_frame as they were: SQLAlchemy rows (its type processors applied), one
    DataFrame.from_records per chunk, pd.concat of the chunks."""
    with store.engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(query)
        columns = list(result.keys())
        chunks = []
        while rows := result.fetchmany(chunksize):
            chunks.append(pd.DataFrame.from_records(rows, columns=columns))
    if not chunks:
        return pd.DataFrame(columns=columns)
    with warnings.catch_warnings():  # pandas has deprecated how it types all-None chunks: as it was
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def assert_same(fast: pd.DataFrame, ref: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(fast, ref, check_exact=True)
    # assert_frame_equal takes None, NaN and NaT in an object column as equal, and a date as equal to
    # a datetime: compare what each cell holds, too
    for name in ref.columns:
        if ref[name].dtype == object:
            assert [type(v) for v in fast[name]] == [type(v) for v in ref[name]], name


def compare_entities(store, entity_type: str, chunksizes=(1, 4, 200_000), sinces=(None,)) -> int:
    """Every combination against the reference; returns how many rows were compared."""
    rows = 0
    for include_deleted in (False, True):
        for since in sinces:
            for chunksize in chunksizes:
                fast = store.read_entities(entity_type, include_deleted=include_deleted, since=since,
                                           chunksize=chunksize)
                assert_same(fast, reference_read(store, entities_query(entity_type, include_deleted, since),
                                                 chunksize))
                rows += len(fast)
    return rows


def compare_communications(store, entity_type: str, chunksizes=(1, 3, 500_000)) -> int:
    rows = 0
    for include_deleted in (False, True):
        for chunksize in chunksizes:
            fast = store.read_communications(entity_type, include_deleted=include_deleted, chunksize=chunksize)
            assert_same(fast, reference_read(store, communications_query(entity_type, include_deleted), chunksize))
            rows += len(fast)
    return rows


# -- data -----------------------------------------------------------------------------------------

def insert(store, table: sa.Table, rows: list[dict]) -> None:
    """Store.insert with each text cut to its column's length (PostgreSQL enforces them)."""
    limits = {c.name: c.type.length for c in table.c if getattr(c.type, "length", None)}
    store.insert(table, [{k: v[:limits[k]] if isinstance(v, str) and k in limits else v for k, v in row.items()}
                         for row in rows])


def awkward_crm(store, n: int = 40) -> None:
    """Users, contacts, companies, leads and their communications, with None in every nullable
    column, microseconds, far dates, unicode, and some records deleted (only in later rows, so that
    small chunks differ in dtype: deleted_at all None in one chunk, datetimes in another)."""
    store.insert(schema.users, [{"id": 1, "name": "Анна", "email": "a@example.com", "role": "manager"},
                                {"id": 2, "name": "Bob", "email": "b@example.com", "role": "admin"}])
    deleted = {13, 14, 27, 40}

    def stamps(i: int) -> dict:
        return {"responsible_id": None if i <= 4 or i % 4 == 0 else 1 + i % 2,
                "created_at": NOW - dt.timedelta(days=i, microseconds=i),
                "modified_at": (NOW + dt.timedelta(seconds=i)).replace(microsecond=0) if i % 3 == 0
                else NOW + dt.timedelta(seconds=i, microseconds=i),
                "deleted_at": NOW + dt.timedelta(microseconds=7 * i) if i in deleted else None}

    def text(i: int, k: int) -> str | None:
        return None if (i + k) % 2 else TEXTS[(i + k) % len(TEXTS)]

    insert(store, schema.contacts, [
        {"id": i, "last_name": None if i % 5 == 0 else TEXTS[i % len(TEXTS)],
         "first_name": None if i % 3 == 0 else f"Имя{i}", "middle_name": "Петрович" if i % 7 == 1 else None,
         "birthdate": BIRTHDATES[i % len(BIRTHDATES)], "post": text(i, 1), "address": text(i, 2),
         "comments": text(i, 3), "source": text(i, 4), "tax_id": None if i % 6 else f"77{i:08d}", **stamps(i)}
        for i in range(1, n + 1)])
    insert(store, schema.companies, [
        {"id": i, "title": TEXTS[i % len(TEXTS)] or "ООО «Ромашка»", "industry": text(i, 1),
         "address": text(i, 2), "tax_id": text(i, 3), "website": text(i, 4), "comments": text(i, 5),
         "source": None, **stamps(i)}
        for i in range(1, n + 1)])
    insert(store, schema.leads, [
        {"id": i, "title": text(i, 1), "last_name": text(i, 2), "first_name": text(i, 3), "middle_name": None,
         "company_title": text(i, 4), "status": "NEW" if i % 2 else None, "source": text(i, 5),
         "comments": text(i, 6), "contact_id": i if i % 3 == 0 else None, "company_id": i if i % 5 == 0 else None,
         **stamps(i)}
        for i in range(1, n + 1)])
    comms = []
    for entity in schema.ENTITY_TYPES:
        for i in range(1, n + 1):
            for k in range(i % 3):  # 0, 1 or 2 values
                comms.append({"entity_type": entity, "entity_id": i, "type": schema.COMM_TYPES[(i + k) % 4],
                              "kind": schema.COMM_KINDS[k], "value": f"{TEXTS[(i + k) % len(TEXTS)]}+7999{i:07d}"})
    insert(store, schema.communications, comms)


# -- tests ----------------------------------------------------------------------------------------

def test_awkward_records_read_as_before(store):
    awkward_crm(store)
    sinces = (None, NOW + dt.timedelta(seconds=10, microseconds=10),  # equal to contact 10's: strict >
              NOW + dt.timedelta(seconds=20, microseconds=5), dt.datetime(2100, 1, 1))
    for entity in schema.ENTITY_TYPES:
        assert compare_entities(store, entity, sinces=sinces) > 0
        assert compare_communications(store, entity) > 0


def test_dtypes_the_pipeline_relies_on(store):
    awkward_crm(store)
    live = store.read_entities("contact")
    assert str(live["created_at"].dtype) == "datetime64[ns]" and str(live["modified_at"].dtype) == "datetime64[ns]"
    assert live["created_at"].iloc[0] == pd.Timestamp(NOW - dt.timedelta(days=1, microseconds=1))
    assert live["deleted_at"].dtype == object and live["deleted_at"].map(lambda v: v is None).all()
    assert live["birthdate"].dtype == object
    assert set(map(type, live["birthdate"])) == {type(None), dt.date}
    assert dt.date(1, 1, 1) in set(live["birthdate"]) and dt.date(9999, 12, 31) in set(live["birthdate"])
    assert live["id"].dtype == "int64" and live["responsible_id"].dtype == "float64"  # None -> NaN
    assert live["middle_name"].map(lambda v: v is None or isinstance(v, str)).all()
    everything = store.read_entities("contact", include_deleted=True)
    assert str(everything["deleted_at"].dtype) == "datetime64[ns]" and everything["deleted_at"].notna().sum() == 4
    comms = store.read_communications("lead")
    assert list(comms.columns) == ["entity_id", "type", "kind", "value"] and comms["entity_id"].dtype == "int64"


def test_text_datetimes_in_other_forms_read_as_before(store):
    """SQLite holds whatever text was written; values SQLAlchemy did not write (other ISO forms, out
    of datetime64's range) go through its processors one by one. PostgreSQL stores them as values."""
    awkward_crm(store, n=12)
    # an ISO week date, which date.fromisoformat reads (PostgreSQL takes the same day as a plain date)
    week_date = "1980-W01-1" if store.dialect == "sqlite" else "1979-12-31"
    with store.engine.begin() as conn:
        for sql in ["UPDATE contacts SET modified_at = '2021-03-04 05:06:07' WHERE id = 2",
                    "UPDATE contacts SET modified_at = '2021-03-04T05:06:07.5' WHERE id = 5",
                    f"UPDATE contacts SET birthdate = '{week_date}' WHERE id = 7",
                    "UPDATE companies SET modified_at = '2021-03-04 05:06' WHERE id = 9",
                    # SQLite: fromisoformat makes an aware datetime of it; PostgreSQL drops the offset
                    "UPDATE leads SET created_at = '2021-03-04 05:06:07+03:00' WHERE id = 4"]:
            conn.execute(sa.text(sql))
    store.insert(schema.contacts, [  # beyond datetime64[ns]: pandas keeps these as objects
        {"id": 13, "created_at": dt.datetime(2500, 1, 1, 0, 0, 0, 1), "modified_at": dt.datetime(1000, 1, 1),
         "birthdate": None},
        {"id": 14, "created_at": NOW, "modified_at": NOW, "birthdate": dt.date(1, 1, 1)}])
    for entity in schema.ENTITY_TYPES:
        compare_entities(store, entity, chunksizes=(1, 2, 5, 100), sinces=(None, dt.datetime(2021, 3, 4)))
    frame = store.read_entities("contact")
    assert frame.loc[frame["id"] == 7, "birthdate"].item() == dt.date(1979, 12, 31)


def test_empty_tables_read_as_before(store):
    for entity in schema.ENTITY_TYPES:
        assert compare_entities(store, entity, chunksizes=(1, 200_000), sinces=(None, NOW)) == 0
        assert compare_communications(store, entity, chunksizes=(1, 500_000)) == 0
    assert list(store.read_entities("company").columns) == [c.name for c in schema.companies.c]
    # records but no communications, and communications of deleted records only
    awkward_crm(store, n=3)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().values(deleted_at=NOW))
    assert store.read_entities("contact").empty and compare_entities(store, "contact") > 0
    assert store.read_communications("contact").empty and compare_communications(store, "contact") > 0


def test_chunks_of_other_dtypes_are_joined_without_pandas_deprecation_warnings(store):
    """deleted_at None in some chunks and datetimes in others, ids None in some: joined as before (the
    reference ignores pandas' FutureWarning), and no FutureWarning from the store's own join."""
    awkward_crm(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        frames = {entity: store.read_entities(entity, include_deleted=True, chunksize=4) for entity in schema.ENTITY_TYPES}
    for entity, frame in frames.items():
        assert_same(frame, reference_read(store, entities_query(entity, True), 4))
    assert str(frames["contact"]["deleted_at"].dtype) == "datetime64[ns]"


def test_many_chunks_of_one_dtype_are_joined_directly(store, monkeypatch):
    n = 3000
    store.insert(schema.users, [{"id": 1, "name": "Анна", "email": "a@example.com", "role": "manager"}])
    insert(store, schema.contacts, [
        {"id": i, "last_name": f"Сидоров{i}", "first_name": None if i % 2 else "Иван", "birthdate": BIRTHDATES[i % 5],
         "responsible_id": 1, "created_at": NOW + dt.timedelta(microseconds=i), "modified_at": NOW,
         "deleted_at": None} for i in range(1, n + 1)])
    insert(store, schema.communications, [
        {"entity_type": "contact", "entity_id": i, "type": "email", "kind": "work", "value": f"ivan{i}@пример.рф"}
        for i in range(1, n + 1)])
    concat, converted = [], []
    real_concat, real_datetimes = pd.concat, crm.store._iso_datetimes
    monkeypatch.setattr(crm.store.pd, "concat", lambda *a, **k: concat.append(1) or real_concat(*a, **k))
    monkeypatch.setitem(crm.store._VECTORISED, processors.str_to_datetime,
                        lambda raw: converted.append(r := real_datetimes(raw)) or r)
    frame = store.read_entities("contact", chunksize=700)
    comms = store.read_communications("contact", chunksize=1000)
    assert concat == []  # every chunk has the same dtypes: no pd.concat
    # SQLite: the text datetimes are converted a column at a time (PostgreSQL returns datetimes)
    assert len(converted) == (15 if store.dialect == "sqlite" else 0)
    assert all(r is not None for r in converted)
    monkeypatch.undo()
    assert_same(frame, reference_read(store, entities_query("contact"), 700))
    assert_same(comms, reference_read(store, communications_query("contact"), 1000))
    assert compare_entities(store, "contact", chunksizes=(999, 5000)) == 4 * n


@pytest.mark.parametrize("column, value, error", [
    ("modified_at", "'2021-02-30 10:00:00'", ValueError), ("modified_at", "'NaT'", ValueError),
    ("birthdate", "'0000-01-01'", ValueError), ("modified_at", "20210304", TypeError)])
def test_an_unreadable_date_fails_as_before(store, column, value, error):
    # a second, readable row: the column's text is not all of one odd width
    store.insert(schema.contacts, [{"id": i, "created_at": NOW, "modified_at": NOW, "birthdate": dt.date(1990, 5, 6)}
                                   for i in (1, 2)])
    bad = sa.text(f"UPDATE contacts SET {column} = {value} WHERE id = 1")
    if store.dialect == "postgresql":  # PostgreSQL checks the value when it is written
        with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
            conn.execute(bad)
        return
    with store.engine.begin() as conn:
        conn.execute(bad)
    with pytest.raises(error) as before:
        reference_read(store, entities_query("contact"), 100)
    with pytest.raises(error) as now:
        store.read_entities("contact")
    assert str(now.value) == str(before.value)


def test_database_errors_are_sqlalchemy_errors_and_the_store_goes_on(store):
    awkward_crm(store, n=5)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE communications"))
    with pytest.raises(sa.exc.DBAPIError) as before:
        reference_read(store, communications_query("contact"), 10)
    with pytest.raises(sa.exc.DBAPIError) as now:
        store.read_communications("contact")
    assert type(now.value) is type(before.value) and "communications" in str(now.value)
    # the connection went back to the pool usable: reads and writes go on
    assert len(store.read_entities("contact")) == 5
    store.insert(schema.contacts, [{"id": 6, "created_at": NOW, "modified_at": NOW}])
    assert len(store.read_entities("contact")) == 6 and compare_entities(store, "contact") > 0


def test_role_table_shares_repeated_strings_and_keeps_every_value():
    """load_role_table makes repeated text one object per distinct value (a parquet read does the
    same); the values, their types and the missing ones (None, NaN) stay as they were."""
    from crm.readers import share_repeated_strings

    cities = [f"City {i % 3}" for i in range(12)]
    frame = pd.DataFrame({"city": [None if i == 4 else float("nan") if i == 5 else "".join(c) for i, c in
                                   enumerate(cities)],
                          "unique": [f"u{i}" for i in range(12)],
                          "mixed": [1, "1", 1.0, None] * 3,
                          "n": range(12), "cat": pd.Categorical(["a", "b"] * 6),
                          "text": pd.array(["x", "y", None] * 4, dtype="string")})
    before = frame.copy(deep=True)
    share_repeated_strings(frame)
    pd.testing.assert_frame_equal(frame, before)
    for col in frame.columns:
        assert [type(v) for v in frame[col]] == [type(v) for v in before[col]], col
    city = frame["city"].to_numpy()
    assert city[4] is None and city[5] != city[5]  # None and NaN kept apart
    assert city[0] is city[3] is city[6] and city[1] is not city[0]  # one object per distinct value
    assert frame["mixed"].to_numpy()[2] == 1.0 and type(frame["mixed"].to_numpy()[2]) is float  # not text: left alone


def test_load_role_table_equals_the_frames_read(store):
    from crm.readers import load_role_table
    from matchers.table import RoleTable

    people = [dict(id=i, first_name=["Иван", "Anna"][i % 2], last_name=f"Name{i}", city=["Москва", None][i % 2],
                   created_at=NOW, modified_at=NOW) for i in range(1, 21)]
    store.insert(schema.contacts, people)
    store.insert(schema.communications, [dict(entity_type="contact", entity_id=i, type="phone", kind="work",
                                              value=f"+7 916 000-00-{i:02d}") for i in range(1, 21)])
    table = load_role_table(store, "contact")
    plain = RoleTable.from_crm("contact", store.read_entities("contact"), store.read_communications("contact"))
    pd.testing.assert_frame_equal(table.records, plain.records)
    pd.testing.assert_frame_equal(table.values, plain.values)
    first = table.records["first_name"].to_numpy()
    assert first[0] is first[2]


def test_role_table_from_crm_values_takes_the_record_columns_by_role(store):
    """RoleTable.from_crm_values: the entity rows indexed by id, the columns it knows renamed to their
    roles, in their order, values and types as read (built without copying them)."""
    from matchers.table import CRM_ROLES, PASS_THROUGH, RoleTable, crm_values

    people = [dict(id=i, first_name=["Иван", "Anna"][i % 2], last_name=f"Name{i}", city=["Москва", None][i % 2],
                   created_at=NOW, modified_at=NOW) for i in range(1, 11)]
    store.insert(schema.contacts, people)
    records = store.read_entities("contact")
    table = RoleTable.from_crm_values("contact", records, crm_values(store.read_communications("contact")))
    roles = CRM_ROLES["contact"]
    keep = [c for c in roles if c in records.columns] + [c for c in PASS_THROUGH if c in records.columns]
    expected = records.set_index("id")[keep].rename(columns=roles)
    pd.testing.assert_frame_equal(table.records, expected)
    assert table.records.index.name == "id" and list(table.records.index) == list(range(1, 11))


def test_a_datetime_adapter_another_library_registers_changes_no_read(store, monkeypatch):
    """nbformat (imported by notebooks and their tools) registers a sqlite3 adapter writing datetimes
    as "2021-03-04T05:06:07"; the reads bind their dates as SQLAlchemy writes them, whatever adapter
    the sqlite3 module holds (a "since" compared "T" with the stored " " and lost records)."""
    import sqlite3

    awkward_crm(store, n=12)
    with store.engine.begin() as conn:  # the same day as "since", later that day
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 2).values(
            modified_at=dt.datetime(2021, 3, 4, 5, 6, 7)))
    since = dt.datetime(2021, 3, 4)
    before = store.read_entities("contact", since=since)
    monkeypatch.setitem(sqlite3.adapters, (dt.datetime, sqlite3.PrepareProtocol), lambda v: v.isoformat())
    after = store.read_entities("contact", since=since)
    assert_same(after, before)
    assert 2 in set(after["id"]) and len(after) == 12
