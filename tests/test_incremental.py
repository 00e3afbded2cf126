"""Incremental runs give the groups of a full run (with the same model); Dask gives the groups of a
local run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from crm.store import Store
from pipelines import steps
from pipelines.settings import Settings

pytestmark = pytest.mark.slow


def _settings(tmp_path: Path, **match) -> str:
    path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*')))}.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, **match},
                                    "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    return str(path)


def _run(store: Store, settings_path: str, incremental: bool = False) -> Path:
    run_id, folder = steps.new_run(store.url, ["contact"], Settings.load(settings_path).pipeline.runs_dir)
    out = Path(steps.find_step(store.url, "contact", folder, settings_path, incremental=incremental))
    proposals.finish_run(store, run_id, "completed", {})
    return out


def _groups(folder: Path) -> pd.DataFrame:
    g = pd.read_parquet(folder / "group_table.parquet")
    return g[["group_id", "primary_id", "member_ids", "tier"]].assign(
        member_ids=g["member_ids"].map(lambda x: tuple(sorted(x)))).sort_values("group_id", ignore_index=True)


def _change_one_percent(store: Store, stamp: str = "now") -> list[int]:
    """Edit 1% of the contacts (names, phones), reorder the values of a few, add a few, soft-delete a
    few. ``stamp``: the edited
    records' modified_at; "now", "kept" (left as it was: a script, an import) or "behind" (a day ago:
    a portal whose clock is behind the server's)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
    stamped = {"now": {"modified_at": now}, "kept": {}, "behind": {"modified_at": now - dt.timedelta(days=1)}}[stamp]
    c, comm = schema.contacts, schema.communications
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(c.c.id).order_by(c.c.id))]
        edited = ids[5::100]
        for i in edited[: len(edited) // 2]:
            conn.execute(c.update().where(c.c.id == i).values(first_name="Zinaida", **stamped))
        for i in edited[len(edited) // 2:]:
            conn.execute(comm.update().where(comm.c.entity_type == "contact", comm.c.entity_id == i,
                                             comm.c.type == "phone").values(value="+7 999 000 00 00"))
            if stamped:
                conn.execute(c.update().where(c.c.id == i).values(**stamped))
        conn.execute(c.update().where(c.c.id.in_(ids[7:9])).values(deleted_at=now))
        # the first value of records with several taken out and put back (it comes last now)
        firsts = conn.execute(sa.select(sa.func.min(comm.c.id)).where(comm.c.entity_type == "contact")
                              .group_by(comm.c.entity_id).having(sa.func.count() > 1).limit(10)).scalars().all()
        for row in conn.execute(sa.select(comm).where(comm.c.id.in_(firsts))).mappings().all():
            conn.execute(comm.delete().where(comm.c.id == row["id"]))
            conn.execute(comm.insert().values({**row, "id": None}))
        top = max(ids)
        # two new records duplicating an existing one, and one stranger
        base = conn.execute(sa.select(c).where(c.c.id == ids[20])).first()._mapping
        phones = conn.execute(sa.select(comm.c.value).where(comm.c.entity_type == "contact",
                                                            comm.c.entity_id == ids[20])).scalars().all()
        for k, last in enumerate([base["last_name"], base["last_name"], "Незнакомцев"], start=1):
            conn.execute(c.insert().values(id=top + k, last_name=last, first_name=base["first_name"] if k < 3 else "Пётр",
                                           created_at=now, modified_at=now))
            if k < 3 and phones:
                conn.execute(comm.insert().values(entity_type="contact", entity_id=top + k, type="phone",
                                                  kind="work", value=phones[0]))
    store.fix_sequences()
    return edited


@pytest.mark.parametrize("stamp", ["now", "kept", "behind"])
def test_incremental_run_equals_full_run_with_the_same_model(tmp_path, stamp):
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=1500, companies=50, leads=50, managers=3), seed=11)
    first = _run(store, _settings(tmp_path))
    edited = _change_one_percent(store, stamp)
    incremental = _run(store, _settings(tmp_path), incremental=True)
    full = _run(store, _settings(tmp_path, model_path=str(first / "model.json")))

    summary = json.loads((incremental / "summary.json").read_text())
    assert summary["incremental"] and 0 < summary["changed_records"] < 100 and edited
    a, b = _groups(incremental), _groups(full)
    assert len(a) > 50
    pd.testing.assert_frame_equal(a, b)
    ga = pd.read_parquet(incremental / "groups.parquet").sort_values("id", ignore_index=True)
    gb = pd.read_parquet(full / "groups.parquet").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(ga, gb)
    # the pairs too, those taken from the last run written as this one writes its own
    pa, pb = (pd.read_parquet(f / "pairs.parquet").sort_values(["id_a", "id_b"], ignore_index=True)
              for f in (incremental, full))
    pd.testing.assert_frame_equal(pa, pb)


def test_an_incremental_run_on_an_incremental_run_takes_the_hashes_it_kept(tmp_path):
    """An incremental run keeps the content hashes of its copy of the table (the next one compares
    the records with them instead of reading that copy); the run after it sees just what changed since
    and still gives the groups of a full run."""
    from matchers.table import hashes_path

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=1500, companies=50, leads=50, managers=3), seed=11)
    first = _run(store, _settings(tmp_path))
    assert not hashes_path(first / "table_records.parquet").exists()  # (a full run has no use for them)
    _change_one_percent(store)
    second = _run(store, _settings(tmp_path), incremental=True)
    assert hashes_path(second / "table_records.parquet").exists()
    c = schema.contacts
    with store.engine.begin() as conn:
        renamed = conn.execute(sa.select(c.c.id).where(c.c.deleted_at.is_(None)).order_by(c.c.id.desc())
                               .limit(3)).scalars().all()
        conn.execute(c.update().where(c.c.id.in_(renamed)).values(last_name="Тридцатипятов"))
    third = _run(store, _settings(tmp_path), incremental=True)
    full = _run(store, _settings(tmp_path, model_path=str(first / "model.json")))
    summary = json.loads((third / "summary.json").read_text())
    assert summary["based_on_run"] == second.parent.name and summary["changed_records"] == len(renamed) == 3
    pd.testing.assert_frame_equal(_groups(third), _groups(full))
    pa, pb = (pd.read_parquet(f / "pairs.parquet").sort_values(["id_a", "id_b"], ignore_index=True)
              for f in (third, full))
    pd.testing.assert_frame_equal(pa, pb)


@pytest.mark.parametrize("change", ["older normalisers", "another phonenumbers", "other normaliser code", "other region"])
def test_a_last_run_normalised_otherwise_is_not_reused(tmp_path, change, caplog):
    """Records normalised by an older version of the normalisers (a key rule has changed since), other
    name tables or phone library, or other settings, would not meet the records normalised now: the
    incremental run is a full one."""
    import logging

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=300, companies=20, leads=20, managers=3), seed=5)
    first = _run(store, _settings(tmp_path))
    meta = json.loads((first / "prepared.json").read_text())
    assert meta["normalisation"]["region"] == "RU" and len(meta["normalisation"]["code"]) == 16
    if change == "older normalisers":  # as saved before the normalisers had a version
        del meta["normalisation"]
    elif change == "another phonenumbers":  # a release that reads some phones otherwise
        meta["normalisation"]["libraries"]["phonenumbers"] = "8.0.0"
    elif change == "other normaliser code":  # a key rule changed (matchers' modules or name tables)
        meta["normalisation"]["code"] = "0" * 16
    (first / "prepared.json").write_text(json.dumps(meta))
    settings = _settings(tmp_path, region="KZ") if change == "other region" else _settings(tmp_path)
    with caplog.at_level(logging.INFO, logger="pipelines.steps"):
        again = _run(store, settings, incremental=True)
    summary = json.loads((again / "summary.json").read_text())
    assert summary["incremental"] is False and "normalised its records otherwise" in caplog.text
    saved = json.loads((again / "prepared.json").read_text())["normalisation"]
    assert saved["region"] == ("KZ" if change == "other region" else "RU")
    # with nothing changed, a next incremental run reuses this one
    third = _run(store, settings, incremental=True)
    assert json.loads((third / "summary.json").read_text())["incremental"] is True


def test_dask_run_equals_local_run_full_and_incremental(tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.flows import dedup_flow

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=1500, companies=50, leads=50, managers=2), seed=5)
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000},
                                     "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    dask = tmp_path / "dask.yaml"
    dask.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000},
                                    "pipeline": {"runs_dir": str(tmp_path / "runs"),
                                                 "dask": {"enabled": True, "workers": 2, "chunk_pairs": 1000}}}))
    with prefect_test_harness(server_startup_timeout=90):
        s1 = dedup_flow(db=store.url, entity_types=["contact"], settings_path=str(local))
        s2 = dedup_flow(db=store.url, entity_types=["contact"], settings_path=str(dask))
        chunks = list((Path(s2["folder"]) / "contact" / "work").glob("chunk_*.cv.pkl"))
        assert len(chunks) > 1  # the work really was split
        for name in ("group_table.parquet", "groups.parquet", "pairs.parquet"):
            a = pd.read_parquet(Path(s1["folder"]) / "contact" / name)
            b = pd.read_parquet(Path(s2["folder"]) / "contact" / name)
            pd.testing.assert_frame_equal(a, b)
        # an incremental run on Dask gives the groups of a local full run with the same model
        _change_one_percent(store, "kept")
        s3 = dedup_flow(db=store.url, entity_types=["contact"], settings_path=str(dask), incremental=True)
        full = tmp_path / "full.yaml"
        full.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000,
                                                  "model_path": str(Path(s2["folder"]) / "contact" / "model.json")},
                                        "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
        s4 = dedup_flow(db=store.url, entity_types=["contact"], settings_path=str(full))
    assert s3["entities"]["contact"]["incremental"] and 0 < s3["entities"]["contact"]["changed_records"] < 100
    pd.testing.assert_frame_equal(_groups(Path(s3["folder"]) / "contact"), _groups(Path(s4["folder"]) / "contact"))
    pd.testing.assert_frame_equal(*(pd.read_parquet(Path(s["folder"]) / "contact" / "pairs.parquet")
                                    .sort_values(["id_a", "id_b"], ignore_index=True) for s in (s3, s4)))


def test_an_incremental_run_goes_in_full_when_the_records_hold_another_role(tmp_path):
    # the first website on any contact: the normalised records get a column, the model a comparison
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=400, companies=20, leads=20, managers=2), seed=3)
    comm = schema.communications
    with store.engine.begin() as conn:
        conn.execute(comm.delete().where(comm.c.entity_type == "contact", comm.c.type == "web"))
    _run(store, _settings(tmp_path))
    with store.engine.begin() as conn:
        for i in (1, 2):
            conn.execute(comm.insert().values(entity_type="contact", entity_id=i, type="web", kind="work",
                                              value="https://alpha-example.ru"))
    incremental = _run(store, _settings(tmp_path), incremental=True)
    full = _run(store, _settings(tmp_path))
    assert not json.loads((incremental / "summary.json").read_text())["incremental"]
    assert "website" in json.loads((incremental / "model.json").read_text())["comparisons"]
    pd.testing.assert_frame_equal(_groups(incremental), _groups(full))


def test_an_incremental_run_scores_with_the_model_the_settings_name(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=400, companies=20, leads=20, managers=2), seed=3)
    first = _run(store, _settings(tmp_path))
    named = json.loads((first / "model.json").read_text())
    named["prior"] = 0.01234
    (tmp_path / "named.json").write_text(json.dumps(named))
    incremental = _run(store, _settings(tmp_path, model_path=str(tmp_path / "named.json")), incremental=True)
    assert json.loads((incremental / "summary.json").read_text())["incremental"]
    assert json.loads((incremental / "model.json").read_text())["prior"] == 0.01234


def test_values_put_back_in_another_order_are_a_change(tmp_path):
    # the first of a record's websites is the one compared: A's websites alpha, beta and B's beta;
    # alpha deleted and written again (a new row, now after beta) makes A's first website B's
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=300, companies=20, leads=20, managers=2), seed=3)
    c, comm = schema.contacts, schema.communications
    with store.engine.begin() as conn:
        a, b = conn.execute(sa.select(c.c.id).where(c.c.deleted_at.is_(None)).order_by(c.c.id).limit(2)).scalars()
        conn.execute(comm.delete().where(comm.c.entity_type == "contact", comm.c.entity_id.in_([a, b]),
                                         comm.c.type == "web"))
        for i, site in ((a, "alpha-example.ru"), (a, "beta-example.ru"), (b, "beta-example.ru")):
            conn.execute(comm.insert().values(entity_type="contact", entity_id=i, type="web", kind="work", value=site))
        conn.execute(c.update().where(c.c.id.in_([a, b])).values(
            last_name="Чрезвычайнов", first_name="Аполлинарий", middle_name="Саввич", birthdate=dt.date(1970, 1, 2),
            address="Тверь, ул. Новая, 5"))
    last = _run(store, _settings(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(comm.delete().where(comm.c.entity_id == a, comm.c.value == "alpha-example.ru"))
        conn.execute(comm.insert().values(entity_type="contact", entity_id=a, type="web", kind="work",
                                          value="alpha-example.ru"))
    incremental = _run(store, _settings(tmp_path), incremental=True)
    full = _run(store, _settings(tmp_path, model_path=str(last / "model.json")))
    assert json.loads((incremental / "summary.json").read_text())["changed_records"] == 1
    pairs = [pd.read_parquet(f / "pairs.parquet").sort_values(["id_a", "id_b"], ignore_index=True)
             for f in (incremental, full)]
    pd.testing.assert_frame_equal(*pairs)
    ab = pairs[1][(pairs[1]["id_a"] == a) & (pairs[1]["id_b"] == b)]
    assert "website beta-example.ru same" in ab["explanation"].iloc[0]
