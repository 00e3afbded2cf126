"""`crm-dedup check`: records about to be imported, or added since the last run, that duplicate
existing ones are reported before they multiply."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm import proposals, schema
from crm.csv_io import export_csv
from crm.demo import DemoSizes, generate_demo
from crm.store import Store
from crm.readers import load_role_table
from pipelines.check import check_new_records

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=500, companies=40, leads=40, managers=2), seed=9)
    return store


def test_csv_rows_that_exist_already_are_reported(demo, tmp_path):
    export_csv(demo, tmp_path / "all.csv", "contact")
    frame = pd.read_csv(tmp_path / "all.csv", dtype=str)
    sample = frame.head(15).drop(columns=["id"])
    stranger = {c: None for c in sample.columns}
    stranger.update({"last_name": "Чрезвычайнов", "first_name": "Аполлинарий", "created_at": "2024-01-01T00:00:00",
                     "modified_at": "2024-01-01T00:00:00"})
    pd.concat([sample, pd.DataFrame([stranger])]).to_csv(tmp_path / "new.csv", index=False)
    rows, problems = check_new_records(demo.url, "contact", csv=tmp_path / "new.csv")
    assert problems == []
    found = rows[rows["existing"]]
    # each copied row finds the record it was copied from
    originals = frame.head(15)["id"].astype(str).tolist()
    matched = {(r.new_record, r.duplicate_of) for r in found.itertuples()}
    hits = sum(any(d == orig for (_, d) in matched) for orig in originals)
    assert hits >= 13, rows
    assert "Чрезвычайнов" not in " ".join(rows["explanation"])
    # each side named as a person finds it: the file's row and the CRM's record
    named = frame.set_index("id")
    for r in found.itertuples():
        crm = named.loc[r.duplicate_of]
        assert r.duplicate_name == " ".join(v for v in crm[["last_name", "first_name", "middle_name"]] if isinstance(v, str))
        row = sample.iloc[int(r.new_record) - 1]  # rows without ids are numbered in the file's order
        assert r.new_name == " ".join(v for v in row[["last_name", "first_name", "middle_name"]] if isinstance(v, str))
        assert r.line == int(r.new_record) + 1  # its line in the file, after the header (no value spans lines)
    assert rows.loc[~rows["existing"], "duplicate_line"].notna().all() and found["duplicate_line"].isna().all()
    assert rows["probability"].between(0, 1).all()
    # the same file in Windows-1251, its encoding given (as `crm-dedup check --encoding cp1251` gives it)
    (tmp_path / "new_cp1251.csv").write_bytes((tmp_path / "new.csv").read_text(encoding="utf-8").encode("cp1251"))
    again, _ = check_new_records(demo.url, "contact", csv=tmp_path / "new_cp1251.csv", encoding="cp1251")
    assert again.drop(columns=["explanation"]).equals(rows.drop(columns=["explanation"]))


def test_records_added_since_the_last_run_whatever_their_created_at(demo, tmp_path):
    _completed_run(demo, tmp_path)
    c, comm = schema.contacts, schema.communications
    with demo.engine.begin() as conn:
        base = conn.execute(sa.select(c).order_by(c.c.id).limit(1)).first()._mapping
        phone = conn.execute(sa.select(comm.c.value).where(comm.c.entity_type == "contact", comm.c.type == "phone",
                                                           comm.c.entity_id == base["id"])).scalar()
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        # one created now, one imported with the date of the file it came from (years before the run)
        for k, created in enumerate([dt.datetime.now(dt.UTC).replace(tzinfo=None), dt.datetime(2019, 3, 1)], start=1):
            conn.execute(c.insert().values(id=top + k, last_name=base["last_name"], first_name=base["first_name"],
                                           middle_name=base["middle_name"], created_at=created, modified_at=created))
            conn.execute(comm.insert().values(entity_type="contact", entity_id=top + k, type="phone", kind="work",
                                              value=phone))
    rows, _ = check_new_records(demo.url, "contact")
    assert set(rows["new_record"]) == {str(top + 1), str(top + 2)}
    for k in (1, 2):
        assert str(base["id"]) in set(rows.loc[rows["new_record"] == str(top + k), "duplicate_of"])
    # a run of other records does not count: the contacts' run is the one compared with
    proposals.start_run(demo, "companies-only", ["company"], str(tmp_path / "elsewhere"))
    proposals.finish_run(demo, "companies-only", "completed", {})
    again, _ = check_new_records(demo.url, "contact")
    pd.testing.assert_frame_equal(again, rows)


def test_no_run_yet_is_a_clear_error(demo):
    with pytest.raises(ValueError, match="no completed dedup run of the contact records"):
        check_new_records(demo.url, "contact")


def _completed_run(store, tmp_path) -> None:
    """A real dedup run of the contacts (its folder holds their normalised records and model)."""
    import yaml

    from pipelines import steps

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000}, "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    run_id, folder = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    steps.find_step(store.url, "contact", folder, str(settings))
    proposals.finish_run(store, run_id, "completed", {})


@pytest.mark.parametrize("mode", ["csv", "since the last run"])
def test_a_check_reusing_the_last_runs_normalised_records_finds_what_a_full_check_finds(store, tmp_path, mode,
                                                                                          monkeypatch):
    import scoring.find

    demo = store
    generate_demo(demo, DemoSizes(contacts=500, companies=40, leads=40, managers=2), seed=9)
    _completed_run(demo, tmp_path)
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=5)
    c = schema.contacts
    with demo.engine.begin() as conn:  # edited since the run: normalised again, not taken from it
        conn.execute(c.update().where(c.c.id.in_([2, 3])).values(first_name="Зинаида", modified_at=later))
    csv = None
    if mode == "csv":
        export_csv(demo, tmp_path / "all.csv", "contact")
        pd.read_csv(tmp_path / "all.csv", dtype=str).iloc[:12].drop(columns=["id"]).to_csv(tmp_path / "new.csv", index=False)
        csv = tmp_path / "new.csv"
    else:
        with demo.engine.begin() as conn:
            rows = conn.execute(sa.select(c).where(c.c.id.in_([5, 6, 7]))).mappings().all()
            top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
            for k, r in enumerate(rows, start=1):
                conn.execute(c.insert().values({**r, "id": top + k, "created_at": later, "modified_at": later}))
    given = []
    real = scoring.find.find_duplicates
    monkeypatch.setattr(scoring.find, "find_duplicates", lambda *a, **k: given.append(k.get("prepared")) or real(*a, **k))
    reused, _ = check_new_records(demo.url, "contact", csv=csv)
    full, _ = check_new_records(demo.url, "contact", csv=csv, reuse=False)
    assert given[0] is not None and given[-1] is None
    assert len(reused) >= 3
    pd.testing.assert_frame_equal(reused, full)


def test_records_of_a_merge_undone_since_the_last_run_are_normalised_again(store, tmp_path):
    """An undo puts a record's old modified_at back with its old values: the run after the merge
    normalised the merged primary, with the duplicate's phone. The records of merges applied or undone
    since a run are normalised again, not taken from it."""
    from merge_rules import MergeSettings, apply_batch, plan_groups, undo_merge
    from pipelines import steps
    from pipelines.settings import Settings

    generate_demo(store, DemoSizes(contacts=200, companies=20, leads=20, managers=2), seed=9)
    comm = schema.communications
    with store.engine.begin() as conn:
        conn.execute(comm.insert().values(entity_type="contact", entity_id=2, type="phone", kind="work",
                                          value="+7 903 111-22-33"))
    plan = plan_groups(store, "contact", [(1, [1, 2])], MergeSettings(conflict_policy="keep_primary"))[0]
    [merged] = apply_batch(store, [plan], 1, "b1")
    _completed_run(store, tmp_path)  # normalises #1 with #2's phone
    undo_merge(store, merged.merge_id, 1)
    last = steps._last_entity_run(store, "contact", None, Settings())
    table = load_role_table(store, "contact")
    reused, changed = steps.reuse_normalised(table, last, Settings())
    assert {1, 2} <= set(changed)
    phones = reused.phones.assign(id=reused.ids[reused.phones["pos"].to_numpy()])
    assert "+79031112233" not in set(phones.loc[phones["id"] == 1, "e164"])
    assert "+79031112233" in set(phones.loc[phones["id"] == 2, "e164"])


def test_a_birthdate_dropped_as_future_is_normalised_again_once_its_day_has_come(store, tmp_path, monkeypatch):
    """A birthdate later than the day of the run is dropped (a typo, until that day comes): such a
    record's normalised form depends on the day, so a later run does not take it from the last one."""
    import types

    from matchers import identifiers
    from matchers.prepare import prepare
    from pipelines import steps
    from pipelines.settings import Settings

    generate_demo(store, DemoSizes(contacts=200, companies=20, leads=20, managers=2), seed=5)
    soon = dt.date.today() + dt.timedelta(days=10)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 3).values(birthdate=soon))
    _completed_run(store, tmp_path)

    class MonthLater(dt.date):
        @classmethod
        def today(cls):
            return dt.date.today() + dt.timedelta(days=30)

    monkeypatch.setattr(identifiers, "dt", types.SimpleNamespace(date=MonthLater, datetime=dt.datetime))
    table = load_role_table(store, "contact")
    last = steps._last_entity_run(store, "contact", None, Settings())
    reused, changed = steps.reuse_normalised(table, last, Settings())
    assert changed == [3]
    full = prepare(load_role_table(store, "contact"))

    def birthdate(p):
        return p.records.loc[p.records["id"] == 3, "birthdate"].iat[0]

    assert birthdate(reused) == birthdate(full) == pd.Timestamp(soon)


def test_a_check_scores_with_the_model_the_settings_name(demo, tmp_path):
    import json

    import yaml

    _completed_run(demo, tmp_path)
    c, comm = schema.contacts, schema.communications
    with demo.engine.begin() as conn:  # a copy of #5, its phones and e-mails too
        row = conn.execute(sa.select(c).where(c.c.id == 5)).mappings().one()
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        conn.execute(c.insert().values({**row, "id": top + 1}))
        for r in conn.execute(sa.select(comm).where(comm.c.entity_type == "contact", comm.c.entity_id == 5)).mappings().all():
            conn.execute(comm.insert().values({**r, "id": None, "entity_id": top + 1}))
    last = proposals.latest_run(demo)
    named = json.loads((Path(last["folder"]) / "contact" / "model.json").read_text())
    named["prior"] = 1e-12  # a model that believes in almost no duplicates
    (tmp_path / "named.json").write_text(json.dumps(named))
    settings = tmp_path / "named.yaml"
    settings.write_text(yaml.safe_dump({"match": {"model_path": str(tmp_path / "named.json")}}))
    usual, _ = check_new_records(demo.url, "contact")
    sceptic, _ = check_new_records(demo.url, "contact", settings_path=str(settings))
    pair = (str(top + 1), "5")
    prob = {name: rows.set_index(["new_record", "duplicate_of"])["probability"].get(pair)
            for name, rows in (("usual", usual), ("sceptic", sceptic))}
    assert prob["usual"] is not None and (prob["sceptic"] is None or prob["sceptic"] < prob["usual"]), prob
