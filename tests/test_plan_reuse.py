"""A run takes the last run's plan of a group whose rows have not changed (instead of making it again),
and the plans it stores are those it would have made: a changed record, a new linked deal, a user who
became an admin (no longer losing access) and other merge settings all make the plan again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from merge_rules.plan import plan_groups
from pipelines import steps
from pipelines.settings import Settings

pytestmark = pytest.mark.slow


def _settings(tmp_path: Path, **merge) -> str:
    path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*')))}.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 50_000}, "merge": merge,
                                    "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    return str(path)


def _run(store, settings_path: str) -> tuple[Path, dict]:
    run_id, folder = steps.new_run(store.url, ["contact"], Settings.load(settings_path).pipeline.runs_dir)
    steps.find_step(store.url, "contact", folder, settings_path)
    counts = steps.propose_step(store.url, run_id, folder, ["contact"], settings_path)
    proposals.finish_run(store, run_id, "completed", {})
    return Path(folder) / "contact", counts


def _plans(out: Path) -> dict[str, dict]:
    lines = (out / "plans.jsonl").read_text(encoding="utf-8").splitlines()
    return {d["group_id"]: d["plan"] for d in map(json.loads, lines)}


def _stored_plans(store, gids) -> dict[str, dict]:
    g, p = schema.dedup_groups, schema.dedup_plans
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(g.c.id, p.c.plan).join(p, (p.c.group_id == g.c.id) & (p.c.run_id == g.c.run_id))
                            .where(g.c.id.in_(list(gids)))).all()
    return {gid: plan if isinstance(plan, dict) else json.loads(plan) for gid, plan in rows}


def _made_now(store, plan: dict, settings_path: str) -> dict:
    made = plan_groups(store, "contact", [(plan["primary_id"], [plan["primary_id"], *plan["duplicate_ids"]])],
                       Settings.load(settings_path).merge)[0]
    return json.loads(made.to_json())


def _without_time(plan: dict) -> dict:
    return {k: v for k, v in plan.items() if k != "planned_at"}


def test_a_run_takes_the_last_runs_plans_of_unchanged_groups_and_makes_the_others_again(store, tmp_path):
    generate_demo(store, DemoSizes(contacts=800, companies=30, leads=30, managers=4), seed=5)
    settings = _settings(tmp_path)
    first_out, first_counts = _run(store, settings)
    first = _plans(first_out)
    assert first_counts["plans_reused"] == 0 and len(first) > 40
    ok = {gid: p for gid, p in first.items() if not p["problems"]}
    # three groups changed three ways: a record's field, a deal linked to a duplicate, a user's role
    warned = [(gid, p) for gid, p in ok.items() if p["access_warnings"]]
    assert warned, "the demo has groups where a manager loses access"
    promoted, warned_plan = warned[0]
    others = [gid for gid in ok if gid != promoted]
    edited, linked = others[0], others[1]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    c, d, u = schema.contacts, schema.deals, schema.users
    with store.engine.begin() as conn:
        # (the primary's: more recent, it stays the primary and the group keeps its id)
        conn.execute(c.update().where(c.c.id == ok[edited]["primary_id"]).values(post="Changed post", modified_at=now))
        conn.execute(d.insert().values(title="New deal", contact_id=ok[linked]["duplicate_ids"][0], stage="NEW",
                                       amount=10, currency="RUB", created_at=now))
        conn.execute(u.update().where(u.c.id == warned_plan["access_warnings"][0]["user_id"]).values(role="admin"))
    store.fix_sequences()

    second_out, counts = _run(store, settings)
    second = _plans(second_out)
    assert 0 < counts["plans_reused"] < len(second)
    # every plan is what planning the group now gives, taken or made
    for gid, plan in second.items():
        assert _without_time(plan) == _without_time(_made_now(store, plan, settings)), gid
    # the stored plans are the file's
    stored = _stored_plans(store, second)
    assert {gid: _without_time(p) for gid, p in stored.items()} == {gid: _without_time(p) for gid, p in second.items()}
    taken = {gid for gid, plan in second.items() if gid in first and plan["planned_at"] == first[gid]["planned_at"]}
    assert len(taken) == counts["plans_reused"]
    # the changed groups (found by their records: a new deal may make another record the primary)
    by_members = {frozenset([p["primary_id"], *p["duplicate_ids"]]): gid for gid, p in second.items()}
    dealt = ok[linked]["duplicate_ids"][0]
    edited, linked, promoted = (by_members[frozenset([ok[g]["primary_id"], *ok[g]["duplicate_ids"]])]
                                for g in (edited, linked, promoted))
    assert not {edited, linked, promoted} & taken  # made again
    assert edited in first  # (the same group: its earlier plan was there to take)
    assert any(r.get("post") == "Changed post" for r in second[edited]["records"].values())
    assert second[linked]["primary_id"] == dealt or any(
        m["table"] == "deals" and m["from_id"] == dealt for m in second[linked]["links"])
    assert not any(w["user_id"] == warned_plan["access_warnings"][0]["user_id"]
                   for w in second[promoted]["access_warnings"])


def test_plans_made_under_other_merge_settings_are_made_again(store, tmp_path):
    generate_demo(store, DemoSizes(contacts=500, companies=20, leads=20, managers=3), seed=8)
    _run(store, _settings(tmp_path))
    again_out, again = _run(store, _settings(tmp_path))
    assert again["plans_reused"] > 0
    other = _settings(tmp_path, conflict_policy="keep_primary")
    out, counts = _run(store, other)
    assert counts["plans_reused"] == 0
    plans = _plans(out)
    assert plans and all(p["conflict_policy"] == "keep_primary" for p in plans.values())
    for gid, plan in list(plans.items())[:20]:
        assert _without_time(plan) == _without_time(_made_now(store, plan, other)), gid


def test_a_broken_line_in_the_last_runs_plans_is_made_again(store, tmp_path):
    generate_demo(store, DemoSizes(contacts=500, companies=20, leads=20, managers=3), seed=8)
    settings = _settings(tmp_path)
    first_out, _ = _run(store, settings)
    lines = (first_out / "plans.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    broken = json.loads(lines[0])["group_id"]
    lines[0] = lines[0][:len(lines[0]) // 2] + "}\n"  # cut in the middle: not JSON
    (first_out / "plans.jsonl").write_text("".join(lines), encoding="utf-8")
    out, counts = _run(store, settings)
    plans = _plans(out)
    assert counts["plans_reused"] == len(plans) - 1
    assert _without_time(plans[broken]) == _without_time(_made_now(store, plans[broken], settings))
