"""Two applies at once on one database, and what the apply flow does to a group's status: each group
merged once, no applied merge whose group is pending again, no plan that says live records are
deleted; undo gives a person groups they can approve and merge again; `crm-dedup merge`'s exit status."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import merge_rules.apply as merge_apply
from crm import proposals, schema
from merge_rules import MergeSettings, apply_batch, plan_groups, undo_batch
from merge_rules.plan import MergePlan
from merge_rules.testing import dangling_links, dump_crm, load_sample, load_synthetic
from pipelines.apply import apply_approved
from pipelines.cli import app

ASK = MergeSettings()  # conflicts left open, as a run plans them; the merge's policy settles them
AUTO = MergeSettings(conflict_policy="keep_primary")


def propose(store, tmp_path, plans: list[MergePlan], run_id: str = "r1") -> list[str]:
    """Store ``plans`` as a run's pending groups (ids g-<primary>); returns the group ids."""
    proposals.start_run(store, run_id, sorted({p.entity_type for p in plans}), str(tmp_path))
    proposals.replace_pending(store, run_id, sorted({p.entity_type for p in plans}), [
        {"id": f"g-{p.primary_id}", "entity_type": p.entity_type, "tier": "certain", "score": 0.99,
         "primary_id": p.primary_id, "member_ids": p.member_ids, "responsible_ids": [], "primary_reason": "x",
         "criteria": "phone", "pairs": [], "plan": p.to_dict()} for p in plans])
    proposals.finish_run(store, run_id, "completed")
    return [f"g-{p.primary_id}" for p in plans]


def settings_file(tmp_path, policy: str = "most_common") -> str:
    path = tmp_path / f"{policy}.yaml"
    path.write_text(f"merge: {{conflict_policy: {policy}}}\n")
    return str(path)


def groups_now(store) -> dict[str, dict]:
    return {r["id"]: r for r in proposals.read_groups(store).to_dict("records")}


def applied_merges(store) -> list[dict]:
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(m).where(m.c.status == "applied")).mappings()]


def live_ids(store, entity: str = "contact") -> set[int]:
    t = schema.ENTITY_TABLES[entity]
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.id).where(t.c.deleted_at.is_(None))).scalars())


def assert_consistent(store, group_ids: list[str]) -> None:
    """Every group: applied by exactly one applied merge that is its merge_id, or not applied and not
    merged at all; a group not applied has a plan that makes no problem of live records."""
    groups = groups_now(store)
    by_group = defaultdict(list)
    for m in applied_merges(store):
        by_group[m["group_id"]].append(m)
    live = live_ids(store)
    for gid in group_ids:
        g = groups[gid]
        merges = by_group.get(gid, [])
        if g["status"] == "applied":
            assert len(merges) == 1 and g["merge_id"] == merges[0]["id"], (gid, g["status"], merges)
        else:
            assert merges == [], f"group {gid} is {g['status']} although merge #{merges[0]['id']} applied it"
            plan = MergePlan.from_dict(g["plan"])
            assert set(plan.member_ids) <= live
            assert not plan.problems, (gid, plan.summary())
    merged = Counter(i for ms in by_group.values() for m in ms for i in m["merged_ids"])
    assert set(merged.values()) <= {1}, "no record is merged twice"
    assert dangling_links(store) == []


@pytest.mark.parametrize("delay", [0.0, 0.003])
def test_two_applies_at_once_merge_each_group_once_and_undo_leaves_groups_to_approve_again(
        store, tmp_path, monkeypatch, delay):
    """The tester's case: every certain group approved, two `crm-dedup merge` at once (most_common
    settles the conflicts left open). Both read the same approved groups before either merges (a
    barrier after the read), then merge at once, one transaction per group interleaving with the
    other's (a short sleep before each commit). Each group is merged by one of them and reported
    'already_applied' by the other; none goes back to pending with an applied merge. Undoing both
    batches gives every record back, the groups pending with plans of the live records; approved
    again, they merge."""
    groups = load_synthetic(store, 24, seed=3, mix={"contact": 1.0})["contact"]
    ids = propose(store, tmp_path, plan_groups(store, "contact", groups, ASK))
    assert any(MergePlan.from_dict(g["plan"]).unresolved for g in groups_now(store).values()), "open conflicts"
    before = dump_crm(store)
    proposals.set_status(store, ids, "approved", 1)

    barrier = threading.Barrier(2, timeout=60)
    read = proposals.read_groups

    def read_then_wait(*args, **kwargs):
        out = read(*args, **kwargs)
        barrier.wait()  # both applies hold the same list of approved groups
        return out

    monkeypatch.setattr(proposals, "read_groups", read_then_wait)
    if delay:
        monkeypatch.setattr(merge_apply, "FAULT_HOOK", lambda stage: __import__("time").sleep(delay))
    settings = settings_file(tmp_path)
    results, errors = {}, []

    def run(batch):
        try:
            results[batch] = apply_approved(store.url, batch, 1, settings)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(b,)) for b in ("b1", "b2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    monkeypatch.setattr(proposals, "read_groups", read)
    monkeypatch.setattr(merge_apply, "FAULT_HOOK", None)
    assert not errors, errors

    per_group = defaultdict(list)
    for batch, rs in results.items():
        for r in rs:
            per_group[r["group_id"]].append(r["status"])
    assert set(per_group) == set(ids)
    for gid, statuses in per_group.items():
        assert sorted(statuses) == ["already_applied", "applied"], (gid, statuses)
    assert {g["status"] for g in groups_now(store).values()} == {"applied"}
    assert len(applied_merges(store)) == len(ids)
    assert_consistent(store, ids)

    undone = [u for b in ("b2", "b1") for u in undo_batch(store, b, 1)]
    assert Counter(u.status for u in undone) == {"undone": len(ids)}
    assert dump_crm(store) == before
    from merge_rules.undo import replan_undone  # (what `crm-dedup undo` and the review page run after undoing)

    replan_undone(store, [u.merge_id for u in undone])
    assert {g["status"] for g in groups_now(store).values()} == {"pending"}
    assert_consistent(store, ids)

    proposals.set_status(store, ids, "approved", 1)
    again = apply_approved(store.url, "b3", 1, settings)
    assert Counter(r["status"] for r in again) == {"applied": len(ids)}
    assert_consistent(store, ids)


def test_a_group_a_person_skips_after_the_apply_read_it_is_not_merged(store, tmp_path, monkeypatch):
    """Between the apply's read of the approved groups and its merge, a person skips one and sends
    another back to pending: neither is merged nor changed, the rest are."""
    load_sample(store)
    plans = [plan_groups(store, "contact", [g], AUTO)[0] for g in [(10, [10, 11, 12]), (13, [13, 14])]]
    skipped, reopened = propose(store, tmp_path, plans)
    proposals.set_status(store, [skipped, reopened], "approved", 1)
    read = proposals.read_groups

    def read_then_a_person_acts(*args, **kwargs):
        out = read(*args, **kwargs)
        proposals.set_status(store, [skipped], "skipped", 2, from_statuses=("approved",))
        proposals.set_status(store, [reopened], "pending", 2, from_statuses=("approved",))
        return out

    monkeypatch.setattr(proposals, "read_groups", read_then_a_person_acts)
    before = dump_crm(store)
    results = {r["group_id"]: r for r in apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))}
    assert {gid: r["status"] for gid, r in results.items()} == {skipped: "not_approved", reopened: "not_approved"}
    assert f"group {skipped} is skipped now, no longer approved" in results[skipped]["message"]
    assert dump_crm(store) == before and applied_merges(store) == []
    now = groups_now(store)
    assert (now[skipped]["status"], now[reopened]["status"]) == ("skipped", "pending")


def test_a_failed_merge_goes_back_to_a_person_with_a_plan_of_the_live_records(store, tmp_path):
    """The damage two merges at once used to leave: a group approved with a plan made while its
    records were merged (it says they are deleted), the merge undone since. Its merge fails; the group
    does not stay approved (retried every hour for ever) but goes back to pending, planned again from
    the live records, and then merges."""
    load_sample(store)
    plan = plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO)[0]
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    settings = settings_file(tmp_path, "keep_primary")
    (first,) = apply_approved(store.url, "b1", 1, settings)
    assert first["status"] == "applied"
    # what the second merge did: planned again from the merged records, pending, approved again
    bad = plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO)[0]
    assert bad.problems and "deleted" in bad.summary()
    with store.engine.begin() as conn:
        proposals.set_plan(conn, gid, bad.to_dict())
    assert [u.status for u in undo_batch(store, "b1", 1)] == ["undone"]
    assert groups_now(store)[gid]["status"] == "pending"
    proposals.set_status(store, [gid], "approved", 1)

    (failed,) = apply_approved(store.url, "b2", 1, settings)
    assert failed["status"] == "failed" and "deleted" in failed["message"]
    assert failed["message"].endswith("Re-planned; the group is pending again for a person to approve.")
    g = groups_now(store)[gid]
    assert g["status"] == "pending" and g["primary_reason"] == "x (re-planned: its merge failed)"
    assert not MergePlan.from_dict(g["plan"]).problems
    assert {10, 11, 12} <= live_ids(store)
    proposals.set_status(store, [gid], "approved", 1)
    (merged,) = apply_approved(store.url, "b3", 1, settings)
    assert merged["status"] == "applied" and 11 not in live_ids(store)


def test_a_stale_group_another_apply_merged_meanwhile_stays_applied(store, tmp_path, monkeypatch):
    """Interleaved step by step through the apply's seams: apply A reads the approved group; apply B
    merges it; A's turn: its merge finds the group applied (not stale), and A's settling of a
    group that went stale on its own (records edited) is a compare-and-set: B merging that one after
    A's merge found it stale leaves it applied, not pending again."""
    load_sample(store)
    plans = [plan_groups(store, "contact", [g], AUTO)[0] for g in [(10, [10, 11, 12]), (13, [13, 14])]]
    taken, edited = propose(store, tmp_path, plans)
    proposals.set_status(store, [taken, edited], "approved", 1)
    settings = settings_file(tmp_path, "keep_primary")
    with store.engine.begin() as conn:  # a person edits #14: group `edited` is stale as planned
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 14).values(post="edited"))
    read = proposals.read_groups
    real_apply = merge_apply.apply_batch
    steps = []

    def read_then_b_merges_taken(*args, **kwargs):
        out = read(*args, **kwargs)
        if not steps:
            steps.append("reading")  # (B's own read and apply come through these hooks too)
            (b,) = apply_approved(store.url, "bB", 1, settings, group_ids=[taken])
            assert b["status"] == "applied"
            steps[0] = "B"
        return out

    def apply_then_b_merges_edited(*args, **kwargs):
        out = real_apply(*args, **kwargs)
        if steps == ["B"]:
            steps.append("B2")
            # a person re-plans `edited` meanwhile and B merges it, before A settles it
            fresh = plan_groups(store, "contact", [(13, [13, 14])], AUTO)[0]
            with store.engine.begin() as conn:
                proposals.set_plan(conn, edited, fresh.to_dict())
            assert real_apply(store, [fresh], 1, "bB", group_ids=[edited], only_status="approved")[0].status == "applied"
        return out

    monkeypatch.setattr(proposals, "read_groups", read_then_b_merges_taken)
    monkeypatch.setattr(merge_apply, "apply_batch", apply_then_b_merges_edited)
    results = {r["group_id"]: r for r in apply_approved(store.url, "bA", 1, settings)}
    assert steps == ["B", "B2"]
    assert results[taken]["status"] == "already_applied" and "was merged by another merge" in results[taken]["message"]
    assert results[edited]["status"] == "already_applied"
    now = groups_now(store)
    assert now[taken]["status"] == now[edited]["status"] == "applied"
    assert len(applied_merges(store)) == 2
    assert_consistent(store, [taken, edited])


# -- the command line ---------------------------------------------------------------------------

def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_undo_names_its_force_option_and_gives_groups_plans_of_the_live_records(store, tmp_path):
    load_sample(store)
    plan = plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO)[0]
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(post="edited since"))
        # the plan a second merge at once used to store: made from the merged records
        proposals.set_plan(conn, gid, plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO)[0].to_dict())
    refused = cli("undo", res["merge_id"], "--db", store.url)
    assert refused.exit_code == 1
    assert f"Run `crm-dedup undo {res['merge_id']} --force` to overwrite them." in refused.output, refused.output
    assert "Undo with force" not in refused.output
    batch = cli("undo", "--all", "b1", "--db", store.url)
    assert batch.exit_code == 1 and f"crm-dedup undo {res['merge_id']} --force" in batch.output, batch.output

    forced = cli("undo", "--all", "b1", "--force", "--db", store.url)
    assert forced.exit_code == 0 and "Batch b1: 1 undone" in forced.output, forced.output
    # what the forced undo overwrote is said, as for one merge
    assert f"merge #{res['merge_id']}: undone: " in forced.output and "overwrote 1 change(s)" in forced.output
    assert "edited since" in forced.output, forced.output
    g = groups_now(store)[gid]
    assert g["status"] == "pending" and g["merge_id"] is None
    fresh = MergePlan.from_dict(g["plan"])
    assert not fresh.problems and set(fresh.member_ids) <= live_ids(store)
    proposals.set_status(store, [gid], "approved", 1)
    (merged,) = apply_approved(store.url, "b2", 1, settings_file(tmp_path, "keep_primary"))
    assert merged["status"] == "applied"


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def merge_cli(*args):
    """`crm-dedup merge` in a process of its own, as cron runs it (here on the harness's Prefect server)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import prefect.settings

    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    return subprocess.run([str(Path(sys.executable).with_name("crm-dedup")), "merge", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.slow
def test_merge_exits_1_when_a_merge_failed_and_3_when_groups_went_back_to_a_person(store, tmp_path, prefect_server):
    load_sample(store)
    ok = plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO)[0]
    edited = plan_groups(store, "contact", [(13, [13, 14])], AUTO)[0]
    ids = propose(store, tmp_path, [ok, edited])
    proposals.set_status(store, ids, "approved", 1)
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 14).values(post="edited"))
    settings = settings_file(tmp_path, "keep_primary")
    back = merge_cli("--db", store.url, "--settings", settings)
    assert back.returncode == 3, back.stdout + back.stderr[-3000:]
    assert "Merge results: 1 applied, 1 stale" in back.stdout

    broken = plan_groups(store, "contact", [(15, [15, 999])], AUTO)[0]  # #999 does not exist
    assert broken.problems
    (gid,) = propose(store, tmp_path, [broken], run_id="r2")
    proposals.set_status(store, [gid], "approved", 1)
    failed = merge_cli("--db", store.url, "--settings", settings)
    assert failed.returncode == 1, failed.stdout + failed.stderr[-3000:]
    assert "Merge results: 1 failed" in failed.stdout and "contact #999 does not exist" in failed.stdout
    assert "error: 1 merge(s) failed" in failed.stderr
    assert groups_now(store)[gid]["status"] == "pending"  # not retried every hour

    nothing = merge_cli("--db", store.url, "--settings", settings)
    assert nothing.returncode == 0 and "Merge results: nothing approved" in nothing.stdout, nothing.stderr[-3000:]
    helped = " ".join(cli("merge", "--help").output.split())
    assert "Exit status: 0 every approved group merged" in helped and "1 some merge failed" in helped, helped
