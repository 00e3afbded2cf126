"""The dedup and apply flows under Prefect's test harness, end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from crm.store import Store
from merge_rules.skips import skip_pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def _settings(tmp_path: Path, **pipeline) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000},
                                    "pipeline": {"runs_dir": str(tmp_path / "runs"), **pipeline}}))
    return str(path)


@pytest.fixture
def demo_store(store):
    generate_demo(store, DemoSizes(contacts=600, companies=200, leads=200, managers=3), seed=7)
    return store


def test_dedup_flow_stores_proposals_and_a_run_folder(demo_store, tmp_path):
    from prefect.client.orchestration import get_client

    from pipelines.flows import dedup_flow

    summary = dedup_flow(db=demo_store.url, settings_path=_settings(tmp_path))
    folder = Path(summary["folder"])
    for entity in ("contact", "company", "lead"):
        for name in ("pairs.parquet", "groups.parquet", "group_table.parquet", "model.json", "plans.jsonl",
                     "quality_fields.parquet"):
            assert (folder / entity / name).exists(), f"{entity}/{name} missing"
        assert summary["entities"][entity]["groups"] > 0
    assert (folder / "lead_clients.parquet").exists()
    groups = proposals.read_groups(demo_store, status="pending")
    assert len(groups) == sum(s["groups"] for s in summary["entities"].values())
    assert groups["plan"].map(lambda p: p is not None and p["primary_id"] is not None).all()
    run = proposals.latest_run(demo_store)
    assert run["id"] == summary["run_id"] and run["status"] == "completed"
    # every record appears in groups.parquet exactly once
    contacts = pd.read_parquet(folder / "contact" / "groups.parquet")
    live = demo_store.read_entities("contact")
    assert sorted(contacts["id"]) == sorted(live["id"])

    import asyncio

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # no event loop there, whatever ran before in this worker
        keys = {a.key for a in pool.submit(asyncio.run, artifacts()).result()}
    assert {"dedup-summary", "dedup-groups-per-tier"} <= keys


def test_rerun_replaces_pending_but_keeps_decided_groups(demo_store, tmp_path):
    from pipelines.flows import dedup_flow

    settings = _settings(tmp_path)
    dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=settings)
    first = proposals.read_groups(demo_store, status="pending")
    approved, skipped = first["id"].iloc[0], first["id"].iloc[1]
    proposals.set_status(demo_store, [approved], "approved", 1)
    proposals.set_status(demo_store, [skipped], "skipped", 1)
    summary = dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=settings)
    after = proposals.read_groups(demo_store)
    assert after.set_index("id").loc[approved, "status"] == "approved"
    assert after.set_index("id").loc[skipped, "status"] == "skipped"
    assert after.set_index("id").loc[approved, "run_id"] != summary["run_id"]  # untouched
    pending = after[after["status"] == "pending"]
    assert (pending["run_id"] == summary["run_id"]).all()
    # same data, same seed: the same groups are proposed again (stable ids)
    assert set(pending["id"]) == set(first["id"]) - {approved, skipped}


def test_approve_then_apply_flow_merges_and_relinks(demo_store, tmp_path):
    from pipelines.flows import apply_flow, dedup_flow

    settings = _settings(tmp_path)
    dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=settings)
    pending = proposals.read_groups(demo_store, status="pending", tiers=["certain"])
    clean = pending[pending["plan"].map(lambda p: not p["conflicts"])]
    conflicted = pending[pending["plan"].map(lambda p: bool(p["conflicts"]))].head(1)
    chosen, unwanted = clean.head(5), clean.iloc[5]
    assert len(chosen) == 5 and len(conflicted) == 1
    proposals.set_status(demo_store, list(chosen["id"]) + list(conflicted["id"]) + [unwanted["id"]], "approved", 1)
    # approved, then two of its records marked "not duplicates" (`crm-dedup skip`): not merged, back to a person
    skip_pair(demo_store, "contact", *unwanted["member_ids"][:2], 1)
    with demo_store.engine.connect() as conn:
        deals_before = conn.execute(sa.select(sa.func.count()).select_from(schema.deals)).scalar_one()
    results = {r["group_id"]: r for r in apply_flow(db=demo_store.url, batch_id="b1", user_id=1, settings_path=settings)}
    assert [results[g]["status"] for g in chosen["id"]] == ["applied"] * len(chosen)
    # a conflict nobody resolved is not guessed at: the group waits for a person
    left = results[conflicted["id"].iloc[0]]
    assert left["status"] == "conflicts" and left["message"]
    assert results[unwanted["id"]]["status"] == "not_duplicates"
    assert 'were marked "not duplicates"' in results[unwanted["id"]]["message"]
    with demo_store.engine.connect() as conn:
        c = schema.contacts
        for row in chosen.itertuples():
            dups = [m for m in row.member_ids if m != row.primary_id]
            live = conn.execute(sa.select(c.c.id).where(c.c.id.in_(dups), c.c.deleted_at.is_(None))).all()
            assert live == []
            orphan = conn.execute(sa.select(sa.func.count()).select_from(schema.deals)
                                  .where(schema.deals.c.contact_id.in_(dups))).scalar_one()
            assert orphan == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.deals)).scalar_one() == deals_before
    applied = proposals.read_groups(demo_store, status="applied")
    assert set(applied["id"]) == set(chosen["id"])
    # the same batch again applies nothing twice
    assert apply_flow(db=demo_store.url, batch_id="b1", user_id=1, settings_path=settings) == []
    after = proposals.read_groups(demo_store).set_index("id")
    assert after.loc[conflicted["id"].iloc[0], "status"] == after.loc[unwanted["id"], "status"] == "pending"


def test_auto_merge_policy_approves_only_safe_groups(demo_store, tmp_path):
    from pipelines.flows import dedup_flow

    settings = _settings(tmp_path, auto_merge={"enabled": True})
    summary = dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=settings)
    approved = proposals.read_groups(demo_store, status="approved")
    assert summary["auto_approved"] == len(approved) > 0
    for g in approved.itertuples():
        assert g.tier == "certain" and len(g.responsible_ids) == 1
        assert not g.plan["conflicts"] and not g.plan["access_warnings"]


def test_database_gone_mid_run_fails_clearly_and_leaves_no_partial_proposals(tmp_path, monkeypatch):
    from pipelines import steps
    from pipelines.flows import dedup_flow

    url = f"sqlite:///{tmp_path}/crm.db"
    store = Store(url)
    store.migrate()
    generate_demo(store, DemoSizes(contacts=300, companies=100, leads=100, managers=2), seed=3)
    settings = _settings(tmp_path)
    real_propose = steps.propose_step

    def vanish(db, run_id, folder, entity_types, settings_path, **kwargs):
        # the database is gone by the time the plans are built (moving a live SQLite file would
        # corrupt it, so this step is pointed at where nothing is any more)
        return real_propose(f"sqlite:///{tmp_path}/gone/crm.db", run_id, folder, entity_types, settings_path,
                            **kwargs)

    monkeypatch.setattr(steps, "propose_step", vanish)
    with pytest.raises(Exception) as err:
        dedup_flow(db=url, entity_types=["contact"], settings_path=settings)
    assert "There is no database at" in str(err.value)
    assert proposals.read_groups(store).empty and _stored_plans(store) == 0  # nothing half-stored
    # the planners the find started are stopped, and what they planned is gone with them
    assert not multiprocessing.active_children() and not steps._BESIDE
    assert not list(Path(proposals.latest_run(store, status="failed")["folder"]).glob("*/plans*"))
    assert proposals.latest_run(store, status="failed") is not None  # the failure is on record
    monkeypatch.setattr(steps, "propose_step", real_propose)
    summary = dedup_flow(db=url, entity_types=["contact"], settings_path=settings)
    assert len(proposals.read_groups(store, status="pending")) == summary["entities"]["contact"]["groups"]
    assert json.loads((Path(summary["folder"]) / "summary.json").read_text())["run_id"] == summary["run_id"]


def test_run_table_reads_the_database_once_and_gives_back_the_same_table(demo_store, tmp_path):
    """The quality check and the find share one read per run: the copy in the run folder equals what
    the database gave, column types included."""
    from crm.readers import load_role_table
    from pipelines.steps import run_table

    for entity in ("contact", "company", "lead"):
        read_here = run_table(demo_store, entity, str(tmp_path / "one"))
        # with a helper process reading the communications (and writing their copy) meanwhile
        first = run_table(demo_store, entity, str(tmp_path), workers=2)
        assert (tmp_path / entity / "table_records.parquet").exists()
        plain = load_role_table(demo_store, entity)
        for table in (read_here, first):
            pd.testing.assert_frame_equal(table.records, plain.records)
            pd.testing.assert_frame_equal(table.values, plain.values)
        again = run_table(demo_store, entity, str(tmp_path))
        pd.testing.assert_frame_equal(again.records, load_role_table(demo_store, entity).records)
        pd.testing.assert_frame_equal(again.values, first.values)
        pd.testing.assert_frame_equal(again.records, first.records)
        # kept in memory for the next step of the run, which takes it once; then the copy is read again
        kept = run_table(demo_store, entity, str(tmp_path), keep=True)
        assert run_table(demo_store, entity, str(tmp_path)) is kept
        after = run_table(demo_store, entity, str(tmp_path))
        assert after is not kept
        pd.testing.assert_frame_equal(after.records, kept.records)


def test_the_find_gets_the_table_the_quality_check_read_unchanged(demo_store, tmp_path):
    """The quality step keeps its table in memory for the find: it must hand it over as read."""
    from pipelines import steps

    folder = tmp_path / "run"
    settings = _settings(tmp_path)
    steps.quality_step(demo_store.url, "contact", str(folder), settings)
    kept = steps._KEPT[str(folder / "contact")]
    pd.testing.assert_frame_equal(kept.records, pd.read_parquet(folder / "contact" / "table_records.parquet"))
    pd.testing.assert_frame_equal(kept.values, pd.read_parquet(folder / "contact" / "table_values.parquet"))
    # with the phones and e-mails it normalised, which the find takes instead of normalising them again
    normalised = steps._KEPT[f"{folder / 'contact'}:normalised"]
    assert set(normalised) == {"phone", "email"} and len(normalised["phone"]) > 0
    steps.find_step(demo_store.url, "contact", str(folder), settings)
    assert not steps._KEPT  # taken by the find, not held on
    # the same groups as a find that normalised everything itself (a run folder of its own)
    alone = tmp_path / "alone"
    steps.find_step(demo_store.url, "contact", str(alone), settings)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "contact" / "group_table.parquet"),
                                  pd.read_parquet(alone / "contact" / "group_table.parquet"))


def test_a_run_failing_before_its_find_leaves_no_table_in_memory(demo_store, tmp_path, monkeypatch):
    from pipelines import steps
    from pipelines.flows import dedup_flow

    def broken_find(*args, **kwargs):
        raise RuntimeError("the find broke")

    monkeypatch.setattr(steps, "find_step", broken_find)
    with pytest.raises(RuntimeError, match="the find broke"):
        dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=_settings(tmp_path))
    assert not steps._KEPT  # the quality step's table is not held on for a find that never came


def test_plans_built_in_helper_processes_equal_plans_built_here(demo_store, tmp_path, monkeypatch, caplog):
    """A large table's groups are planned in chunks by forked helper processes: same plans, same order."""
    import logging

    from pipelines import steps
    from pipelines.flows import dedup_flow

    summary = dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=_settings(tmp_path))
    folder = Path(summary["folder"])
    settings = str(folder / "settings.yaml")

    def plans() -> list[tuple[str, dict]]:
        out = []
        for line in (folder / "contact" / "plans.jsonl").read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            d["plan"].pop("planned_at")
            out.append((d["group_id"], d["plan"]))
        return out

    here = plans()  # a few dozen groups: one chunk, planned in this process
    assert len(here) > 20
    monkeypatch.setattr(steps, "PLAN_CHUNK", 7)
    monkeypatch.setattr(steps.os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.INFO, logger="pipelines.steps"):
        steps.propose_step(demo_store.url, summary["run_id"], str(folder), ["contact"], settings)
    assert "planning in one process" not in caplog.text
    assert plans() == here
    stored = proposals.read_groups(demo_store, status="pending", entity_type="contact").set_index("id")
    for group_id, plan in here:  # the plans stored are those of the file, group by group
        stored_plan = dict(stored.loc[group_id, "plan"])
        stored_plan.pop("planned_at")
        assert stored_plan == plan


def test_a_plan_that_is_not_json_is_refused_and_the_pending_proposals_stay(store):
    """Plans go in as JSON text: the database checks it, and a bad one rolls the whole swap back."""
    proposals.start_run(store, "run-bad-plan", ["contact"], "/tmp")

    def row(i: int, plan) -> dict:
        return {"id": f"contact-{i}", "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": i,
                "member_ids": [i, i + 1], "responsible_ids": [], "primary_reason": "oldest", "criteria": "phone",
                "plan": plan, "pairs": []}

    assert proposals.replace_pending(store, "run-bad-plan", ["contact"], [row(1, {"x": 1}), row(3, '{"y": 2}')])[
        "inserted"] == 2
    with pytest.raises(sa.exc.SQLAlchemyError):
        proposals.replace_pending(store, "run-bad-plan", ["contact"], [row(5, {"x": 1}), row(7, "NaN-not-json}")])
    kept = proposals.read_groups(store, status="pending").set_index("id")["plan"].to_dict()
    assert kept == {"contact-1": {"x": 1}, "contact-3": {"y": 2}}


def _stored_plans(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.dedup_plans)).scalar_one()


def test_staged_plans_become_the_groups_plans_and_no_plan_is_left_without_its_group(store):
    """A run stores its plans as they are made (stage_plans), then its groups (replace_pending): each
    new group gets the plan staged for it; a group kept (approved before) keeps its own plan; the
    plans of the groups replaced, and those a failed run staged, go; those of a run still running
    stay. A staged text that is not JSON is refused and nothing of its chunk is stored."""
    def row(i: int) -> dict:
        return {"id": f"contact-{i}", "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": i,
                "member_ids": [i, i + 1], "responsible_ids": [], "primary_reason": "oldest", "criteria": "phone",
                "pairs": []}

    proposals.start_run(store, "r1", ["contact"], "/tmp")
    proposals.replace_pending(store, "r1", ["contact"], [{**row(1), "plan": {"run": 1}}, {**row(3), "plan": {"run": 1}}])
    proposals.set_status(store, ["contact-1"], "approved")
    proposals.finish_run(store, "r1", "completed")
    proposals.start_run(store, "failed", ["contact"], "/tmp")
    proposals.stage_plans(store, "failed", [("contact-9", {"run": "failed"})])
    proposals.finish_run(store, "failed", "failed")
    proposals.start_run(store, "other", ["lead"], "/tmp")
    proposals.stage_plans(store, "other", [("lead-4", {"run": "other"})])  # still running
    proposals.start_run(store, "r2", ["contact"], "/tmp")
    with pytest.raises(sa.exc.SQLAlchemyError):
        proposals.stage_plans(store, "r2", [("contact-5", '{"run": 2}'), ("contact-7", "NaN-not-json}")])
    assert proposals.stage_plans(store, "r2", [(f"contact-{i}", '{"run": 2}') for i in (1, 3, 5)]) == 3
    counts = proposals.replace_pending(store, "r2", ["contact"], [row(1), row(3), row(5)])
    assert counts == {"removed": 1, "inserted": 2, "kept": 1, "waiting": 0, "same_as_before": 1}
    groups = proposals.read_groups(store).set_index("id")
    assert groups["plan"].to_dict() == {"contact-1": {"run": 1}, "contact-3": {"run": 2}, "contact-5": {"run": 2}}
    with store.engine.connect() as conn:
        left = set(conn.execute(sa.select(schema.dedup_plans.c.group_id, schema.dedup_plans.c.run_id)).all())
    assert left == {("contact-1", "r1"), ("contact-3", "r2"), ("contact-5", "r2"), ("lead-4", "other")}
    # the run planning again (a retried step) leaves the plan of a group a person approved meanwhile
    proposals.set_status(store, ["contact-3"], "approved")
    assert proposals.stage_plans(store, "r2", [("contact-3", '{"run": "again"}'), ("contact-5", '{"run": "again"}')]) == 1
    assert proposals.read_groups(store).set_index("id")["plan"].to_dict()["contact-3"] == {"run": 2}
    with pytest.raises(ValueError, match="contact-7.*without a plan"):  # neither given nor staged
        proposals.replace_pending(store, "r2", ["contact"], [row(5), row(7)])
    assert proposals.drop_staged_plans(store, "other") == 1 and _stored_plans(store) == 3
    # a chunk staged again (planned again) replaces what it staged before
    proposals.start_run(store, "r3", ["contact"], "/tmp")
    for text in ('{"try": 1}', proposals.EncodedJson('{"try":2}')):
        assert proposals.stage_plans(store, "r3", [("contact-11", text)]) == 1
    proposals.replace_pending(store, "r3", ["contact"], [row(11)])
    assert proposals.read_groups(store, run_id="r3")["plan"].tolist() == [{"try": 2}]


def test_a_plan_encodes_to_json_that_needs_no_check(tmp_path):
    """Plans a run encodes itself are stored without SQLite checking them again: their encoder writes
    JSON only (a NaN, which JSON cannot hold, is written as null), without spaces as json() stored it."""
    from merge_rules.plan import MergePlan

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    plan = MergePlan("contact", 1, [2], records={1: {"id": 1, "post": "Директор", "rating": 4.5}})
    text = plan.to_json()
    assert strict(text) == plan.to_dict() and ", " not in text and "Директор" in text
    plan.records[1]["rating"] = float("nan")
    assert strict(plan.to_json())["records"]["1"]["rating"] is None


def _plan_chunk_failing_at_the_third(chunk):
    """A planning that breaks at its third chunk (module level: the helper processes get it by name)."""
    if chunk[-1].endswith("plans.00002.part"):
        raise RuntimeError("planning broke")
    return _MEANWHILE["plan_chunk"](chunk)


@pytest.mark.parametrize("workers,planners", [(1, False), (2, False), (2, True)])
def test_a_planning_that_fails_leaves_no_plans_file(demo_store, tmp_path, monkeypatch, workers, planners):
    """Plans go to plans.jsonl only once every chunk is planned: a planning that fails (in this process,
    in helpers propose started, or in the planners the find handed its groups to) leaves neither a
    plans.jsonl that looks whole nor part files; the next try writes them all."""

    from pipelines import steps

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": workers}}))
    run_id, folder = steps.new_run(demo_store.url, ["contact"], str(tmp_path / "runs"))
    monkeypatch.setattr(steps, "PLAN_CHUNK", 7)
    monkeypatch.setitem(_MEANWHILE, "plan_chunk", steps._plan_chunk)
    with monkeypatch.context() as m:
        m.setattr(steps, "_plan_chunk", _plan_chunk_failing_at_the_third)  # (before the planners fork)
        if planners:
            steps.start_planners(str(settings))
        steps.quality_step(demo_store.url, "contact", folder, str(settings))
        steps.find_step(demo_store.url, "contact", folder, str(settings))
        assert (f"plans:{Path(folder) / 'contact'}" in steps._BESIDE) == planners
        with pytest.raises(RuntimeError, match="planning broke"):
            steps.propose_step(demo_store.url, run_id, folder, ["contact"], str(settings))
    assert not steps._BESIDE and not multiprocessing.active_children()
    out = Path(folder) / "contact"
    assert not list(out.glob("plans*")), list(out.glob("plans*"))
    assert proposals.read_groups(demo_store, status="pending").empty
    assert _stored_plans(demo_store) == 0  # the chunks stored before the failure went too
    counts = steps.propose_step(demo_store.url, run_id, folder, ["contact"], str(settings))
    groups = len(pd.read_parquet(out / "group_table.parquet"))
    assert counts["inserted"] == groups > 14 and _stored_plans(demo_store) == groups
    assert len((out / "plans.jsonl").read_text(encoding="utf-8").splitlines()) == groups
    assert [p.name for p in out.glob("plans*")] == ["plans.jsonl"]


_MEANWHILE: dict = {}


def _plan_chunk_and_write_meanwhile(chunk):
    """A chunk planned after an approval and a CRM write on another connection, each in its own
    transaction (module level: the helper processes get it by name)."""
    url, approved, plan_chunk = _MEANWHILE["write"]
    other = Store(url)
    try:
        proposals.set_status(other, [approved], "approved")
        with other.engine.begin() as conn:
            conn.execute(schema.users.update().where(schema.users.c.id == 1).values(department="Meanwhile"))
    finally:
        other.dispose()
    return plan_chunk(chunk)


@pytest.mark.parametrize("workers", [1, 2])
def test_planning_the_proposals_locks_no_one_out(demo_store, tmp_path, monkeypatch, workers):
    """While a run plans its merges (the longest step at scale), a person can approve a pending group
    and the CRM can be written to: the pending proposals are swapped only once every group is planned,
    in one transaction, and what was approved meanwhile is kept as it is."""
    from pipelines import steps
    from pipelines.flows import dedup_flow

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": workers},
                                        "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=str(settings))
    approved = proposals.read_groups(demo_store, status="pending")["id"].iloc[0]
    monkeypatch.setitem(_MEANWHILE, "write", (demo_store.url, approved, steps._plan_chunk))
    monkeypatch.setattr(steps, "_plan_chunk", _plan_chunk_and_write_meanwhile)
    monkeypatch.setattr(steps, "PLAN_CHUNK", 7)
    summary = dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=str(settings))
    groups = proposals.read_groups(demo_store).set_index("id")
    assert groups.loc[approved, "status"] == "approved"
    assert (groups["status"] == "pending").sum() == summary["entities"]["contact"]["groups"] - 1
    # the approved group keeps the plan of its own run; the plan this run made for it is gone
    assert groups.loc[approved, "run_id"] != summary["run_id"]
    assert groups.loc[approved, "plan"]["primary_id"] == groups.loc[approved, "primary_id"]
    assert groups["plan"].notna().all() and _stored_plans(demo_store) == len(groups)


def test_steps_with_helper_processes_find_what_one_process_finds(demo_store, tmp_path):
    """match.workers > 1: helpers read the communications and the citation index while this process
    works; the run folder holds the same tables, groups and primaries as with one process."""
    from pipelines import steps

    folders = {}
    for workers in (1, 2):
        path = tmp_path / f"settings{workers}.yaml"
        path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": workers}}))
        folder = tmp_path / f"run{workers}"
        steps.quality_step(demo_store.url, "contact", str(folder), str(path))
        steps.find_step(demo_store.url, "contact", str(folder), str(path))
        folders[workers] = folder / "contact"
    for name in ("table_records", "table_values", "group_table", "groups", "pairs", "quality_records"):
        one, two = (pd.read_parquet(folders[w] / f"{name}.parquet") for w in (1, 2))
        pd.testing.assert_frame_equal(one, two)
    assert len(pd.read_parquet(folders[2] / "group_table.parquet")) > 20


def test_a_task_retries_on_database_trouble_only(tmp_path):
    """The tasks that talk to the database retry when it cannot be reached, not on a bug or bad data
    (those would fail the same way again, minutes later at scale)."""
    from prefect import flow, task

    from crm.store import StoreError
    from pipelines.flows import DB_RETRIES

    calls = {"bug": 0, "database": 0}

    @task(**{**DB_RETRIES, "retry_delay_seconds": 0})
    def failing(kind: str) -> None:
        calls[kind] += 1
        raise StoreError("There is no database at /nowhere") if kind == "database" else ValueError("a bug")

    @flow
    def run(kind: str) -> None:
        failing(kind)

    for kind in calls:
        with pytest.raises((StoreError, ValueError)):
            run(kind)
    assert calls == {"bug": 1, "database": 3}


def _running(pid: int) -> bool:
    """Whether a process is alive (a zombie, ended and waiting to be reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_helper_for_one_result_stops_once_the_result_is_in():
    """A forked helper kept waiting would hold a copy of every page this process changes meanwhile
    (~1 GB at a million records by the end of the find): it ends as soon as its result arrives."""
    import os
    import time

    from pipelines import steps

    pool = steps._helper_pool(1, "a test")
    assert pool is not None
    try:
        helper_pid = steps._one_result(pool, os.getpid).result(timeout=60)
        assert helper_pid != os.getpid()
        deadline = time.monotonic() + 30
        while _running(helper_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(helper_pid), "the helper process still runs after its only result came back"
    finally:
        pool.shutdown()


def test_the_report_is_written_while_the_proposals_are_stored(demo_store, tmp_path):
    """propose_step(report_beside=True) starts the report once the plans are made (a helper process
    writes it while the proposals are stored); report_step collects it: the same page as one written
    by report_step alone, and the same when the helper died without it."""
    from pipelines import steps

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 2}}))
    run_id, folder = steps.new_run(demo_store.url, ["contact"], str(tmp_path / "runs"))
    try:
        steps.quality_step(demo_store.url, "contact", folder, str(settings))
        steps.find_step(demo_store.url, "contact", folder, str(settings))
        steps.propose_step(demo_store.url, run_id, folder, ["contact"], str(settings), report_beside=True)
        started = steps._BESIDE[f"report:{folder}"]
        steps.start_report(folder, demo_store.url, str(settings))  # a retry keeps the report started
        assert steps._BESIDE[f"report:{folder}"] is started
        path = Path(steps.report_step(folder, demo_store.url))
        assert not steps._BESIDE and path == Path(folder) / "report.html"
        beside = path.read_text(encoding="utf-8")
        path.unlink()
        assert Path(steps.report_step(folder, demo_store.url)) == path  # written here this time
        assert len(beside) > 10_000 and beside.count("<table") == path.read_text(encoding="utf-8").count("<table")
        path.unlink()
        steps.start_report(folder, demo_store.url, str(settings))
        steps._BESIDE[f"report:{folder}"]._child.kill()  # the helper dies: the report is written here
        assert Path(steps.report_step(folder, demo_store.url)) == path and path.exists()
    finally:
        steps.forget_kept()


def _exit_at_once() -> None:
    import os

    os._exit(3)


def test_a_step_run_in_a_forked_process_gives_back_its_result_or_its_error():
    """ForkedCall: the child starts with this process's memory (no copy of its arguments is made) and
    hands back its result, its error as raised (with the child's traceback), or a clear error when it
    dies without one or its result cannot be sent; cancel() stops it; from another thread than the
    main one nothing is forked (a fork there can leave the child waiting on an import lock forever)."""
    import os
    import threading
    import time

    from pipelines import steps

    big = list(range(1_000_000))
    pid, total = steps.ForkedCall("a test", lambda xs: (os.getpid(), sum(xs)), big).result()
    assert pid != os.getpid() and total == sum(big)
    with pytest.raises(KeyError, match="no such field") as err:
        steps.ForkedCall("a test", lambda: {}["no such field"]).result()
    assert "in the helper process" in "".join(getattr(err.value, "__notes__", []))
    with pytest.raises(steps.HelperDied, match=r"the helper process dying on purpose ended without a result "
                                               r"\(exit code 3\)"):
        steps.ForkedCall("dying on purpose", _exit_at_once).result()
    with pytest.raises(RuntimeError, match="could not send its result back"):
        steps.ForkedCall("a test", lambda: threading.Lock()).result()
    slow = steps.ForkedCall("a slow test", time.sleep, 60)
    child = slow._child
    slow.cancel()
    assert not child.is_alive()
    here = []
    thread = threading.Thread(target=lambda: here.append(steps.ForkedCall("a test", os.getpid).result()))
    thread.start()
    thread.join()
    assert here == [os.getpid()]


def test_a_run_failing_after_the_report_was_started_stops_it(demo_store, tmp_path, monkeypatch):
    """The report starts beside the storing; when the run fails before it is collected, its helper
    process is stopped with the run (nothing left running, nothing left registered)."""

    from pipelines import steps
    from pipelines.flows import dedup_flow

    def broken(*args, **kwargs):
        raise RuntimeError("auto-approval broke")

    monkeypatch.setattr(steps, "auto_approve_step", broken)
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 2},
                                        "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    started = []
    real_start = steps.start_report
    monkeypatch.setattr(steps, "start_report", lambda *a: (real_start(*a), started.extend(steps._BESIDE.values())))
    with pytest.raises(RuntimeError, match="auto-approval broke"):
        dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=str(settings))
    assert len(started) == 1 and started[0]._child is None  # it was started, then stopped
    assert not steps._BESIDE and not multiprocessing.active_children()


def test_a_stored_plan_that_cannot_be_read_is_reported_and_the_batch_goes_on(demo_store, tmp_path):
    """One approved group whose stored plan cannot be read (damaged, or written by a version that
    knew another entity type) is reported with the problem, planned again and sent back to a person;
    the other approved groups of the batch are merged."""
    from pipelines.flows import apply_flow, dedup_flow

    settings = _settings(tmp_path)
    dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=settings)
    pending = proposals.read_groups(demo_store, status="pending", tiers=["certain"])
    clean = pending[pending["plan"].map(lambda p: not p["conflicts"])].head(3)
    broken_id = clean["id"].iloc[0]
    damaged = {**clean["plan"].iloc[0], "entity_type": "spaceship"}
    with demo_store.engine.begin() as conn:
        proposals.set_plan(conn, broken_id, damaged)
    proposals.set_status(demo_store, list(clean["id"]), "approved", 1)
    results = {r["group_id"]: r for r in apply_flow(db=demo_store.url, batch_id="b2", user_id=1, settings_path=settings)}
    assert results[broken_id]["status"] == "unreadable"
    assert broken_id in results[broken_id]["message"] and "spaceship" in results[broken_id]["message"]
    assert [results[gid]["status"] for gid in clean["id"].iloc[1:]] == ["applied", "applied"]
    after = proposals.read_groups(demo_store).set_index("id").loc[broken_id]
    assert after["status"] == "pending" and after["plan"]["entity_type"] == "contact"  # planned again


def _plans(folder: Path, entity: str = "contact") -> dict[str, dict]:
    """The run folder's plans by group id, without the moment each was made."""
    from merge_rules.plan import MergePlan

    out = {}
    for line in (folder / entity / "plans.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        plan = MergePlan.from_dict(row["plan"]).to_dict()
        plan.pop("planned_at")
        out[row["group_id"]] = plan
    return out


def test_groups_planned_beside_the_find_are_those_the_propose_step_plans(demo_store, tmp_path, monkeypatch):
    """With planners started (forked while the process is small), the find hands its groups to them
    before it writes its files; the propose step collects their plans. Same plans, same proposals
    as planning in the propose step; the planners are gone afterwards and no part file is left."""

    from crm import proposals
    from pipelines import steps

    monkeypatch.setattr(steps, "PLAN_CHUNK", 7)  # several chunks
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 2}}))
    run_beside, beside = steps.new_run(demo_store.url, ["contact"], str(tmp_path / "runs"))
    beside = Path(beside)
    steps.start_planners(str(settings))
    assert "planners" in steps._BESIDE
    steps.quality_step(demo_store.url, "contact", str(beside), str(settings))
    steps.find_step(demo_store.url, "contact", str(beside), str(settings))
    assert len(steps._BESIDE[f"plans:{beside / 'contact'}"].futures) > 1  # handed over, in chunks
    counts = steps.propose_step(demo_store.url, run_beside, str(beside), ["contact"], str(settings))
    assert not steps._BESIDE and not multiprocessing.active_children()
    assert not list((beside / "contact").glob("*.part"))
    stored = proposals.read_groups(demo_store, status="pending")
    proposals.finish_run(demo_store, run_beside, "completed", {})  # (one run at a time on a database)
    run_alone, alone = steps.new_run(demo_store.url, ["contact"], str(tmp_path / "runs"))
    alone = Path(alone)
    steps.find_step(demo_store.url, "contact", str(alone), str(settings))
    assert not steps._BESIDE  # no planners: nothing handed over
    steps.propose_step(demo_store.url, run_alone, str(alone), ["contact"], str(settings))
    assert _plans(beside) == _plans(alone) and len(_plans(beside)) == counts["inserted"] > 7
    again = proposals.read_groups(demo_store, status="pending")
    assert sorted(stored["id"]) == sorted(again["id"])


def test_a_run_failing_after_planning_began_stops_the_planners(demo_store, tmp_path, monkeypatch):
    """A run failing between the find (which handed its groups to the planners) and the propose step
    leaves no planner running and nothing registered."""

    from pipelines import steps
    from pipelines.flows import dedup_flow

    handed = []
    real_find = steps.find_step

    def find_then_fail(*args, **kwargs):
        real_find(*args, **kwargs)
        handed.extend(k for k in steps._BESIDE if k.startswith("plans:"))
        raise RuntimeError("the find broke after handing over its groups")

    monkeypatch.setattr(steps, "find_step", find_then_fail)
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 2},
                                        "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    with pytest.raises(RuntimeError, match="the find broke"):
        dedup_flow(db=demo_store.url, entity_types=["contact"], settings_path=str(settings))
    assert handed  # the planners had begun
    assert not steps._BESIDE and not multiprocessing.active_children()


def test_a_planner_killed_mid_run_leaves_the_planning_to_the_step(demo_store, tmp_path, caplog):
    """A planning helper killed (e.g. out of memory) breaks their pool: the find reads the citation
    index itself, and the propose step plans without them; the proposals are all there."""
    import signal
    import time

    from pipelines import steps

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 2}}))
    run_id, folder = steps.new_run(demo_store.url, ["contact"], str(tmp_path / "runs"))
    steps.start_planners(str(settings))
    pool = steps._BESIDE["planners"].pool
    os.kill(next(iter(pool._processes)), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not pool._broken and time.monotonic() < deadline:  # the pool notices the death on its own thread
        time.sleep(0.05)
    steps.quality_step(demo_store.url, "contact", folder, str(settings))
    steps.find_step(demo_store.url, "contact", folder, str(settings))
    assert "planners" not in steps._BESIDE and "planning without them" in caplog.text
    counts = steps.propose_step(demo_store.url, run_id, folder, ["contact"], str(settings))
    groups = pd.read_parquet(Path(folder) / "contact" / "group_table.parquet")
    assert counts["inserted"] == len(groups) > 0
    assert not steps._BESIDE


def _left_alive_after_a_kill(script: list[str], out: Path) -> tuple[list[int], list[int]]:
    """Run ``script`` (which prints the pids of the processes it started, then kills itself with
    SIGKILL) in a process of its own; the pids it printed, and those of them still alive 30 s later
    (then killed, not left behind by a failing test)."""
    import signal
    import subprocess
    import sys
    import time

    with out.open("w") as stdout:  # (a file: a child left alive would hold a pipe open, and the run with it)
        done = subprocess.run([sys.executable, "-c", "\n".join(script)], stdout=stdout, stderr=subprocess.STDOUT,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == -signal.SIGKILL, out.read_text()
    pids = [int(p) for p in out.read_text().split()]

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")

    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return pids, left


@pytest.mark.parametrize("slow_start", [False, True])
def test_planners_end_with_the_process_that_forked_them(tmp_path, slow_start):
    """A flow process killed outright (SIGKILL) leaves no planner waiting for work forever, also a
    planner slow to start (slow_start: the second helper sets its death signal only after the flow
    process has gone; the pool's start waits for one helper, not for both)."""
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"workers": 2}}))
    script = ["import os, signal, time", "from pipelines import steps, libc"]
    if slow_start:
        script += ["def slow(parent):",
                   f"    try: os.close(os.open({str(tmp_path / 'first')!r}, os.O_CREAT | os.O_EXCL))",
                   "    except FileExistsError: time.sleep(2)",
                   "    libc.end_with_parent(parent)",
                   "steps.end_with_parent = slow"]
    script += [f"steps.start_planners({str(settings)!r})",
               "print(' '.join(map(str, steps._BESIDE['planners'].pool._processes)), flush=True)",
               "os.kill(os.getpid(), signal.SIGKILL)"]
    pids, left = _left_alive_after_a_kill(script, tmp_path / "out.txt")
    assert len(pids) == 2 and not left


def test_work_forked_beside_a_step_ends_with_the_process_that_forked_it(tmp_path):
    """A step's work forked beside the next steps (ForkedCall: the HTML report...) of a flow process
    killed outright stops too, instead of working on for nobody."""
    pids, left = _left_alive_after_a_kill(["import os, signal, time", "from pipelines import steps",
                                           "call = steps.ForkedCall('sleeping', time.sleep, 120)",
                                           "print(call._child.pid, flush=True)",
                                           "os.kill(os.getpid(), signal.SIGKILL)"], tmp_path / "out.txt")
    assert len(pids) == 1 and not left


def test_every_entity_planned_beside_gives_the_plans_of_a_run_without_helpers(demo_store, tmp_path):
    """Contacts, companies and leads with planners (each entity's groups planned while the next one
    is checked and found, the citation index read by a planner or a helper) against the same run with
    one process: the same plans for every entity."""
    from pipelines.flows import dedup_flow

    folders = {}
    for workers in (2, 1):
        settings = tmp_path / f"settings{workers}.yaml"
        settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": workers},
                                            "pipeline": {"runs_dir": str(tmp_path / f"runs{workers}")}}))
        folders[workers] = Path(dedup_flow(db=demo_store.url, settings_path=str(settings))["folder"])
    for entity in ("contact", "company", "lead"):
        beside, alone = (_plans(folders[w], entity) for w in (2, 1))
        assert beside == alone and len(beside) > 0, entity


def test_cli_runs_incremental_after_a_full_run_then_checks_records_added_since(tmp_path):
    """`crm-dedup run --incremental`: a full run when there is no last run, then one built on it that
    says so; --incremental with a file (--input) is refused; `crm-dedup check` reports a record added
    since that duplicates one; `approve`, `merge` (which prints its batch id) and `undo --all` that
    batch. Run as a user runs it (a process of its own, here on the harness's Prefect server)."""
    import subprocess
    import sys

    import prefect.settings

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=300, companies=20, leads=20, managers=2), seed=4)
    cli = str(Path(sys.executable).with_name("crm-dedup"))
    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    args = [cli, "run", "--db", store.url, "--entity", "contact", "--settings", _settings(tmp_path), "--incremental"]

    def run(cmd):
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              cwd=Path(__file__).resolve().parents[1])

    first = run(args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "incremental," not in first.stdout and "Proposals stored" in first.stdout
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id <= 3).values(
            first_name="Зинаида", modified_at=sa.func.current_timestamp()))
        conn.execute(schema.users.update().where(schema.users.c.id == 1).values(email="steward@firm.example"))
    second = run(args)
    assert second.returncode == 0, second.stderr[-3000:]
    # the review page's hint names this database's admin, and the database the run was given
    assert (f"Review page:  crm-dedup review --db {store.url}   (then open http://127.0.0.1:8000; set a password "
            f"first with `crm-dedup users set-password steward@firm.example --db {store.url}`)") in second.stdout
    assert "contact: incremental, 3 new or changed records re-normalised (built on run " in second.stdout
    # the plans of groups whose rows did not change are the first run's, and the summary says how many
    assert "merge plans taken from the last run, their rows unchanged" not in first.stdout
    assert re.search(r"; [1-9][\d,]* merge plans taken from the last run, their rows unchanged", second.stdout)
    summary = json.loads((Path(proposals.latest_run(store)["folder"]) / "contact" / "summary.json").read_text())
    assert summary["incremental"] and summary["changed_records"] == 3
    # a demo CRM knows its duplicates: the summary says how to measure the run against them, and that works
    folder = proposals.latest_run(store)["folder"]
    assert f"Evaluate:     crm-dedup evaluate --groups {folder} --db {store.url}   (precision and recall" in second.stdout
    measured = run([cli, "evaluate", "--groups", folder, "--db", store.url])
    assert measured.returncode == 0, measured.stderr[-3000:]
    assert "contact (the demo truth of the run's database):" in measured.stdout
    assert re.search(r"pairwise  precision 0\.\d{4}|pairwise  precision 1\.0000", measured.stdout), measured.stdout
    refused = run([cli, "find", "--input", str(tmp_path / "x.csv"), "--incremental"])
    assert refused.returncode == 2 and "--incremental works on the CRM database" in refused.stderr
    # `crm-dedup check` with no record added since the last run says so
    nothing = run([cli, "check", "--db", store.url, "--entity", "contact", "--settings", _settings(tmp_path),
                   "--out", str(tmp_path / "none.csv")])
    assert nothing.returncode == 0, nothing.stderr[-3000:]
    assert "No contact record was added since the last run: nothing to check." in nothing.stdout, nothing.stdout
    # then `crm-dedup check`: a record added since (imported with its file's old date) that copies one
    c, comm = schema.contacts, schema.communications
    with store.engine.begin() as conn:
        base = conn.execute(sa.select(c).where(c.c.id == 5)).first()._mapping
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        conn.execute(c.insert().values({**base, "id": top + 1, "created_at": dt.datetime(2019, 3, 1)}))
        for r in conn.execute(sa.select(comm).where(comm.c.entity_type == "contact", comm.c.entity_id == 5)).mappings():
            conn.execute(comm.insert().values({**r, "id": None, "entity_id": top + 1}))
    out = tmp_path / "check.csv"
    checked = run([cli, "check", "--db", store.url, "--entity", "contact", "--settings", _settings(tmp_path),
                   "--out", str(out)])
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert f"1 of 1 new record(s) look like existing ones" in checked.stdout, checked.stdout
    found = pd.read_csv(out, dtype=str)
    assert set(found["new_record"]) == {str(top + 1)} and "5" in set(found["duplicate_of"]), found
    name = " ".join(str(base[k]) for k in ("last_name", "first_name", "middle_name") if base[k])
    # the terminal names both records of the most likely pairs, as the CSV does
    assert f"new contact #{top + 1} {name}  ~  contact #5 {name}: " in checked.stdout, checked.stdout
    assert set(found.loc[found["duplicate_of"] == "5", "duplicate_name"]) == {name}
    # a file none of whose rows can be read is no all-clear (ids that are not numbers: every row refused)
    (tmp_path / "bad_ids.csv").write_text("id,last_name,first_name\nn1,Иванов,Иван\nn2,Петров,Пётр\n", encoding="utf-8")
    unread = run([cli, "check", "--db", store.url, "--entity", "contact", "--settings", _settings(tmp_path),
                  "--input", str(tmp_path / "bad_ids.csv"), "--out", str(tmp_path / "bad.csv")])
    assert unread.returncode == 1, unread.stdout + unread.stderr[-2000:]
    assert "none of the rows of" in unread.stderr and "so nothing was checked" in unread.stderr, unread.stderr
    assert "bad_ids.csv line 2 (id n1), column 'id': 'n1' is not a record id" in unread.stderr, unread.stderr
    # then approve one group, merge it and undo the batch by the id `merge` prints, as a user does
    pending = proposals.read_groups(store, status="pending", tiers=["certain"]).sort_values("id")
    gid = pending[pending["plan"].map(lambda p: not p["conflicts"])]["id"].iloc[0]
    approved = run([cli, "approve", gid, "--db", store.url])
    assert approved.returncode == 0 and "Approved 1 group(s)" in approved.stdout, approved.stderr[-2000:]
    merged = run([cli, "merge", "--db", store.url, "--settings", _settings(tmp_path)])
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "Merge results: 1 applied" in merged.stdout
    batch = merged.stdout.split("`crm-dedup undo --all ")[1].split("`")[0]
    undone = run([cli, "undo", "--all", batch, "--db", store.url])
    assert undone.returncode == 0 and f"Batch {batch}: 1 undone" in undone.stdout, undone.stdout + undone.stderr[-2000:]


# -- the CLI's checks before a flow starts; Dask ------------------------------------------------

def _cli(*args: str):
    """`crm-dedup ARGS` as a user runs it (a process of its own, on the harness's Prefect server)."""
    import subprocess
    import sys

    import prefect.settings

    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    return subprocess.run([str(Path(sys.executable).with_name("crm-dedup")), *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])


def _one_error_line(done) -> str:
    """The command was refused (exit 2) with one `error:` line and nothing else."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stdout + done.stderr
    return lines[0]


def test_find_refuses_a_database_that_is_down_in_one_line_as_run_does():
    down = "postgresql+psycopg://postgres@127.0.0.1:5999/x"  # (nothing listens there)
    for command in ("find", "run"):
        assert "Cannot connect to the database" in _one_error_line(_cli(command, "--entity", "contact", "--db", down))


def test_a_dask_scheduler_that_is_down_stops_the_run_before_it_starts(tmp_path):
    from pipelines.dask_runs import SchedulerUnreachable
    from pipelines.flows import dedup_flow

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=100, companies=20, leads=20, managers=2), seed=2)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"runs_dir": str(tmp_path / "runs"),
                                                 "dask": {"enabled": True, "address": "tcp://127.0.0.1:1"}}}))
    for command in ("run", "find"):
        line = _one_error_line(_cli(command, "--entity", "contact", "--db", store.url, "--settings", str(path)))
        assert "Dask scheduler at tcp://127.0.0.1:1" in line and "pipeline.dask.address" in line
    # a served or deployed run fails as fast, with the same message, and opens no run
    with pytest.raises(SchedulerUnreachable, match="cannot be reached"):
        dedup_flow(db=store.url, entity_types=["contact"], settings_path=str(path))
    assert proposals.list_runs(store)[0] == []


def test_the_local_dask_cluster_of_a_run_is_quiet_and_binds_no_fixed_port(tmp_path):
    """No INFO lines from Dask's scheduler and workers in the terminal (the Makefile set
    DASK_LOGGING__DISTRIBUTED; a terminal does not), and no HTTP server on 8787 (taken by a second
    run or another program): a free port of 127.0.0.1."""
    import subprocess
    import sys

    script = ("from pipelines.flows import _dask_runner\n"
              "from pipelines.settings import DaskSettings\n"
              "if __name__ == '__main__':\n"
              "    runner = _dask_runner(DaskSettings(enabled=True, workers=1))\n"
              "    with runner:\n"
              "        print('port', runner.client.scheduler_info()['services'].get('dashboard'), flush=True)\n")
    (tmp_path / "probe.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run([sys.executable, str(tmp_path / "probe.py")], cwd=Path(__file__).resolve().parents[1],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    port = int(done.stdout.split("port ")[1].split()[0])
    assert port != 8787
    assert not [line for line in done.stderr.splitlines() if "| distributed." in line], done.stderr


def test_ctrl_c_stops_a_step_where_it_is_and_waits_outside_steps_for_the_next_one():
    """A Ctrl-C inside Prefect's engine (between a task run's creation and its first state) made
    Prefect's own crash handling fail with tracebacks. The dedup run's handler raises only inside a
    step's body; elsewhere the run stops before its next step. After the run, Ctrl-C raises again."""
    import signal
    import threading
    import time

    from pipelines import flows

    before = signal.getsignal(signal.SIGINT)
    reached = []

    def step():
        with flows._step():
            reached.append("step")
            for _ in range(500):  # (a handler runs between two bytecodes: the loop gives it a place)
                time.sleep(0.01)
            reached.append("step finished")

    with flows._ctrl_c_stops_steps():
        os.kill(os.getpid(), signal.SIGINT)  # outside a step: noted, nothing raised here
        time.sleep(0.05)
        assert flows._INTERRUPTED.is_set()
        with pytest.raises(KeyboardInterrupt):
            step()  # the next step does not start
        assert reached == []
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops it wherever it is
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        flows._INTERRUPTED.clear()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # a Ctrl-C mid-step
        with pytest.raises(KeyboardInterrupt):
            step()
        assert reached == ["step"] and not flows._IN_STEP.is_set()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_crm_without_companies_or_leads_yet_runs(store, tmp_path):
    """A new CRM holding a few contacts and no companies or leads: the run went down on the empty
    tables (no random pair to draw, no comparison to explain) instead of finding the contacts' duplicates."""
    from crm.csv_io import import_csv
    from pipelines.flows import dedup_flow

    csv = tmp_path / "contacts.csv"
    csv.write_text("id,last_name,first_name,middle_name,phone,email\n"
                   "1,Громов,Степан,Ильич,+7 921 444-55-66,gromov.s@mail.ru\n"
                   "2,Громов,Степан,Ильич,89214445566,gromov.s@mail.ru\n"
                   "3,Ершова,Лилия,Петровна,+7 921 000-99-88,liliya.ershova@gmail.com\n", encoding="utf-8")
    import_csv(store, csv, "contact")
    summary = dedup_flow(db=store.url, settings_path=_settings(tmp_path))
    assert proposals.latest_run(store)["status"] == "completed"
    assert summary["entities"]["company"]["groups"] == summary["entities"]["lead"]["groups"] == 0
    groups = proposals.read_groups(store, status="pending")
    assert [sorted(m) for m in groups["member_ids"]] == [[1, 2]]
