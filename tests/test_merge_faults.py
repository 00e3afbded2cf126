"""Faults: a batch killed with SIGKILL mid-way, and two processes merging overlapping groups at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import drop_pg_schema, pg_schema_url
from crm import schema
from crm.store import Store
from merge_rules import MergeSettings, apply_batch, plan_groups, undo_batch
from merge_rules.testing import dangling_links, dump_crm, load_synthetic

ROOT = Path(__file__).resolve().parents[1]
AUTO = MergeSettings(conflict_policy="keep_primary")

# Applies batches of plans read from a JSON file. FAULT_HOOK sleeps inside each merge's transaction
# (just before its commit), so a kill lands inside a transaction and two processes overlap.
WORKER = r'''
import json, os, sys, time
from pathlib import Path
import merge_rules.apply as A
from crm.store import Store
from merge_rules.plan import MergePlan

url, jobs_file, go_file, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
jobs = json.loads(Path(jobs_file).read_text())
if delay:
    A.FAULT_HOOK = lambda stage: time.sleep(delay)
store = Store(url)
while go_file != "-" and not os.path.exists(go_file):
    time.sleep(0.002)
out = []
for job in jobs:
    plans = [MergePlan.from_dict(p) for p in job["plans"]]
    res = A.apply_batch(store, plans, None, job["batch"], on_result=lambda r: print(r.status, r.primary_id, flush=True))
    out += [[r.status, r.primary_id, r.batch_id, r.message] for r in res]
print("RESULTS " + json.dumps(out), flush=True)
'''


def start_worker(tmp_path: Path, name: str, url: str, jobs: list[dict], go: str = "-", delay: float = 0.0):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    jobs_file = tmp_path / f"{name}.json"
    jobs_file.write_text(json.dumps([{"batch": j["batch"], "plans": [p.to_dict() for p in j["plans"]]} for j in jobs]))
    return subprocess.Popen([sys.executable, str(script), url, str(jobs_file), go, str(delay)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results_of(proc, timeout: float = 300) -> list[list]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


def applied_merges(store) -> list[dict]:
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(m).where(m.c.status == "applied")).mappings()]


def merge_events(store) -> Counter:
    h = schema.history
    with store.engine.connect() as conn:
        return Counter(conn.execute(sa.select(h.c.entity_id).where(h.c.event == "merge")).scalars())


def test_a_batch_killed_mid_way_leaves_whole_merges_and_the_rerun_finishes_it(db_url, tmp_path):
    store = Store(db_url)
    store.migrate()
    groups = load_synthetic(store, 150, seed=11, mix={"contact": 1.0})["contact"]
    plans = plan_groups(store, "contact", groups, AUTO)
    before = dump_crm(store)

    proc = start_worker(tmp_path, "crash", db_url, [{"batch": "crash", "plans": plans}], delay=0.02)
    deadline = time.time() + 120
    while len(applied_merges(store)) < 25:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "the worker made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # every merge is either complete or absent
    done = {m["primary_id"]: m for m in applied_merges(store)}
    assert 25 <= len(done) < len(plans), "the kill should land mid-batch"
    events = merge_events(store)
    c, comm = schema.contacts, schema.communications
    with store.engine.connect() as conn:
        deleted = set(conn.execute(sa.select(c.c.id).where(c.c.deleted_at.is_not(None))).scalars())
        comm_owner = dict(conn.execute(sa.select(comm.c.id, comm.c.entity_id)).all())
        deal_owner = dict(conn.execute(sa.select(schema.deals.c.id, schema.deals.c.contact_id)).all())
    for plan in plans:
        dups = set(plan.duplicate_ids)
        if plan.primary_id in done:
            assert dups <= deleted and events[plan.primary_id] == 1
            assert not dups & set(comm_owner.values())
            assert all(deal_owner[m.key["id"]] == plan.primary_id for m in plan.links if m.table == "deals")
        else:
            assert not dups & deleted and events[plan.primary_id] == 0
            assert all(comm_owner[x.id] == x.entity_id for x in plan.communications)
            assert all(deal_owner[m.key["id"]] == m.from_id for m in plan.links if m.table == "deals")
    assert dangling_links(store) == []

    # the re-run applies what is left and nothing twice
    rerun = apply_batch(store, plans, None, "crash")
    assert Counter(r.status for r in rerun) == {"already_applied": len(done), "applied": len(plans) - len(done)}
    assert len(applied_merges(store)) == len(plans)
    assert set(merge_events(store).values()) == {1}
    assert dangling_links(store) == []
    assert Counter(u.status for u in undo_batch(store, "crash", None)) == {"undone": len(plans)}
    assert dump_crm(store) == before
    store.dispose()


@pytest.fixture
def pg_url():
    url, name = pg_schema_url()
    yield url
    drop_pg_schema(name)


@pytest.mark.pg
def test_two_processes_merging_overlapping_groups_lose_nothing(pg_url, tmp_path):
    store = Store(pg_url)
    store.migrate()
    groups = load_synthetic(store, 120, seed=5, mix={"contact": 1.0})["contact"]
    # B overlaps A: a duplicate of group i with the primary of group i+1
    a_groups = groups[:100]
    b_groups = [(g[1][1], [g[1][1], h[0]]) for g, h in zip(a_groups, a_groups[1:])][::2]
    shared = groups[100:]  # both processes run these in the same batch
    plans_a = plan_groups(store, "contact", a_groups, AUTO)
    plans_b = plan_groups(store, "contact", b_groups, AUTO)
    plans_s = plan_groups(store, "contact", shared, AUTO)
    before = dump_crm(store)
    with store.engine.connect() as conn:
        links_before = {t: dict(conn.execute(sa.select(t.c.id, t.c.contact_id)).all())
                        for t in (schema.deals, schema.invoices, schema.quotes)}
        act = schema.activities
        acts_before = dict(conn.execute(sa.select(act.c.id, act.c.entity_id).where(act.c.entity_type == "contact")).all())

    go = tmp_path / "go"
    p1 = start_worker(tmp_path, "p1", pg_url, [{"batch": "same", "plans": plans_s}, {"batch": "a", "plans": plans_a}],
                      go=str(go), delay=0.003)
    p2 = start_worker(tmp_path, "p2", pg_url, [{"batch": "same", "plans": plans_s}, {"batch": "b", "plans": plans_b}],
                      go=str(go), delay=0.003)
    time.sleep(1.0)  # both are waiting at the start line
    go.write_text("go")
    r1, r2 = results_of(p1), results_of(p2)

    statuses = Counter(r[0] for r in r1 + r2)
    assert set(statuses) <= {"applied", "already_applied", "stale"}, [r for r in r1 + r2 if r[0] not in
                                                                      ("applied", "already_applied", "stale")]
    # the shared batch: each group applied exactly once, by one process or the other
    same = [r for r in r1 + r2 if r[2] == "same"]
    assert Counter(r[0] for r in same) == {"applied": len(shared), "already_applied": len(shared)}
    assert statuses["stale"] >= 1 and statuses["applied"] >= len(shared) + 1

    merges = applied_merges(store)
    merged = Counter(i for m in merges for i in m["merged_ids"])
    assert set(merged.values()) == {1}, "no record is merged twice"
    members = [i for m in merges for i in (m["primary_id"], *m["merged_ids"])]
    assert len(members) == len(set(members)), "applied merges never share a record"
    winner = {i: m["primary_id"] for m in merges for i in m["merged_ids"]}
    with store.engine.connect() as conn:
        live = set(conn.execute(sa.select(schema.contacts.c.id).where(schema.contacts.c.deleted_at.is_(None))).scalars())
        assert {m["primary_id"] for m in merges} <= live
        for t, owners in links_before.items():  # no link lost: each points where its record went
            now = dict(conn.execute(sa.select(t.c.id, t.c.contact_id)).all())
            assert now == {i: winner.get(c, c) for i, c in owners.items()}, t.name
        now = dict(conn.execute(sa.select(act.c.id, act.c.entity_id).where(act.c.entity_type == "contact")).all())
        assert now == {i: winner.get(c, c) for i, c in acts_before.items()}
    assert dangling_links(store) == []
    assert sum(merge_events(store).values()) == len(merges)

    for batch in ("b", "a", "same"):
        assert {u.status for u in undo_batch(store, batch, None)} <= {"undone"}
    assert dump_crm(store) == before
    store.dispose()
