"""What the `crm-dedup` commands print: `merge` sums up the groups it sent back (by reason, conflicts by
field) and lists the first 20, names the managers who lost access and says when the settings'
delete_mode is not how the plans deleted; `groups` warns of lost access before; `find --input` reads
the whole settings file as `run` does; `history` is a readable table; `find --help` shows its default.

`merge` runs its apply flow's function (pipelines.apply.apply_approved, the real merge) without
Prefect around it: what is tested is the command's output, and test_apply_concurrency runs it with
Prefect."""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from crm import proposals, schema
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.testing import SAMPLE_GROUPS, load_sample, load_synthetic
from pipelines.cli import MERGE_SHOWN, app
from review.testing import load_review_sample


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def merges(monkeypatch):
    """`crm-dedup merge` in this process without a Prefect server: its flow is the apply function."""
    from pipelines import apply, flows, prefect_api

    def apply_flow(db=None, batch_id=None, user_id=None, settings_path=None):
        return apply.apply_approved(db, batch_id, user_id, settings_path)

    @contextlib.contextmanager
    def no_server():
        yield lambda: None

    monkeypatch.setattr(flows, "apply_flow", apply_flow)
    monkeypatch.setattr(prefect_api, "early_server", no_server)


def propose(store, tmp_path, plans) -> list[str]:
    """Store ``plans`` as a run's pending groups (ids g-<entity>-<primary>); returns the group ids."""
    entities = sorted({p.entity_type for p in plans})
    proposals.start_run(store, "r1", entities, str(tmp_path))
    rows = [{"id": f"g-{p.entity_type}-{p.primary_id}", "entity_type": p.entity_type, "tier": "certain",
             "score": 0.99, "primary_id": p.primary_id, "member_ids": p.member_ids, "responsible_ids": [],
             "primary_reason": "x", "criteria": "phone", "pairs": [], "plan": p.to_dict()} for p in plans]
    proposals.replace_pending(store, "r1", entities, rows)
    proposals.finish_run(store, "r1", "completed")
    return [r["id"] for r in rows]


def settings_file(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- merge: groups sent back, summed up by reason --------------------------------------------------

def test_merge_sums_up_the_groups_with_conflicts_and_lists_only_the_first(store, tmp_path, merges):
    groups = load_synthetic(store, 40, seed=3)
    plans = [p for et, gs in groups.items() for p in plan_groups(store, et, gs)]  # conflict_policy ask
    ids = propose(store, tmp_path, plans)
    proposals.set_status(store, ids, "approved", 1)
    open_ = [p for p in plans if p.unresolved]
    assert len(open_) > MERGE_SHOWN + 5  # (the sample must have more than the terminal lists)
    fields = Counter(c.field for p in open_ for c in p.unresolved)

    result = invoke("merge", "--db", store.url)
    assert result.exit_code == 3, result.output
    out = result.output
    per_field = ", ".join(f"{f} {n:,}" for f, n in fields.most_common())
    assert f"{len(open_):,} group(s) have open conflicts: {per_field}; pending again: choose values on the review " \
           "page, or merge with a conflict policy (merge.conflict_policy: keep_primary | most_common | most_recent " \
           "| longest)." in out, out
    listed = [line for line in out.splitlines() if line.startswith("  g-")]
    assert len(listed) == MERGE_SHOWN and all(": conflicts: " in line for line in listed), out
    assert f"  ... and {len(open_) - MERGE_SHOWN:,} more (`crm-dedup merge --details FILE` writes" in out
    applied = len(plans) - len(open_)
    assert f"Merge results: {applied:,} applied, {len(open_):,} conflicts" in out, out
    # the summary comes before the examples
    assert out.index("have open conflicts") < out.index(listed[0])

    # approved again, merged with --details: every group's result in the CSV
    proposals.set_status(store, [f"g-{p.entity_type}-{p.primary_id}" for p in open_], "approved", 1)
    report = tmp_path / "out" / "merge.csv"
    again = invoke("merge", "--db", store.url, "--details", report)
    assert again.exit_code == 3, again.output
    assert f"more (every group's result is in {report})" in again.output
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert len(rows) == len(open_) and {r["status"] for r in rows} == {"conflicts"}
    by_id = {r["group_id"]: r for r in rows}
    for p in open_:
        row = by_id[f"g-{p.entity_type}-{p.primary_id}"]
        assert row["open_conflicts"].split() == [c.field for c in p.unresolved]
        assert row["primary_id"] == str(p.primary_id) and "has conflicts nobody chose a value for" in row["message"]


def test_merge_says_a_conflict_policy_given_did_not_settle_the_conflicts(store, tmp_path, merges):
    load_sample(store)
    (plan,) = plan_groups(store, "contact", [(10, [10, 11, 12])])
    assert plan.unresolved
    ids = propose(store, tmp_path, [plan])
    proposals.set_status(store, ids, "approved", 1)
    # another rule for a field than the approved plan's: the policy is not used (the message says why)
    s = settings_file(tmp_path, "merge: {conflict_policy: keep_primary, fields: {contact: {comments: keep_primary}}}\n")
    result = invoke("merge", "--db", store.url, "--settings", s)
    assert result.exit_code == 3, result.output
    assert "1 group(s) have open conflicts: " in result.output
    assert "the conflict policy keep_primary of these settings did not settle them" in result.output
    assert "merge.conflict_policy: keep_primary |" not in result.output  # (no advice to set what was set)


# -- access: warned of in `groups`, listed after the merge ----------------------------------------

def test_groups_and_merge_name_the_managers_who_lose_access(store, tmp_path, merges):
    info = load_review_sample(store, tmp_path / "run")
    gid = info["groups"]["contact-10"]  # Мария's #10 and #12, Пётр's #11
    warning = "Пётр Сидоров (#3) is responsible for contact #11 but not for the merged #10"
    listed = invoke("groups", "--db", store.url)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(gid))
    assert lines[at + 1] == "    #10 Иванов Иван Иванович; #11 иванов Иван; #12 Иванов Иван Иванович", listed.output
    assert lines[at + 2].startswith(f"    access warning: {warning}"), listed.output
    assert lines[at + 2].endswith("(responsible: Мария Иванова); they will lose access to it")
    # company-20 (Мария's #20, Пётр's #22) too; the other groups take nobody's access
    warned = [line for line in lines if "access warning" in line]
    assert len(warned) == 2 and "Пётр Сидоров (#3) is responsible for company #22" in warned[1], listed.output

    assert invoke("approve", gid, "--db", store.url).exit_code == 0
    s = settings_file(tmp_path, "merge: {conflict_policy: keep_primary}\n")
    merged = invoke("merge", "--db", store.url, "--settings", s)
    assert merged.exit_code == 0, merged.output
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        merge_id = conn.execute(sa.select(m.c.id).where(m.c.group_id == gid)).scalar_one()
    out = merged.output
    assert "1 manager(s) lost access to records merged into a record another manager is responsible for" in out
    assert f"  Пётр Сидоров (#3): contact #11 (merged into #10, merge #{merge_id})" in out, out
    assert out.index("Merge results: 1 applied") < out.index("lost access")
    helped = " ".join(invoke("merge", "--help").output.split())
    assert "managers who lost access" in helped and "only notification" in helped, helped
    # the merged group's listing tells it as done, not as a warning (found by helper-60)
    done = invoke("groups", "--status", "applied", "--db", store.url).output.splitlines()
    at = next(i for i, line in enumerate(done) if line.startswith(gid))
    assert done[at + 2].startswith(f"    access lost: {warning}") and done[at + 2].endswith("they lost access to it")


# -- delete_mode: the plans' way of deleting, said where the settings name another ---------------------

def test_merge_says_when_the_settings_delete_mode_is_not_the_plans(store, tmp_path, merges):
    load_sample(store)
    plans = plan_groups(store, "contact", SAMPLE_GROUPS["contact"], MergeSettings(conflict_policy="keep_primary"))
    assert {p.delete_mode for p in plans} == {"soft"}
    ids = propose(store, tmp_path, plans)
    proposals.set_status(store, ids, "approved", 1)
    hard = settings_file(tmp_path, "merge: {conflict_policy: keep_primary, delete_mode: hard}\n")
    result = invoke("merge", "--db", store.url, "--settings", hard)
    assert result.exit_code == 0, result.output
    assert (f"Note: {hard} sets merge.delete_mode hard, but 2 group(s) were planned with delete_mode soft: "
            "merged so. Each plan fixes its way of deleting") in result.output, result.output
    assert f"`crm-dedup run --settings {hard}`" in result.output
    c = schema.contacts
    with store.engine.connect() as conn:  # what the note says: soft deleted, the rows are there
        gone = dict(conn.execute(sa.select(c.c.id, c.c.deleted_at).where(c.c.id.in_([11, 12, 14]))).all())
    assert set(gone) == {11, 12, 14} and all(v is not None for v in gone.values())

    # settings naming the plans' own delete_mode, or none: no note
    keep = MergeSettings(conflict_policy="keep_primary")
    texts = ("merge: {conflict_policy: keep_primary, delete_mode: soft}\n", "merge: {conflict_policy: keep_primary}\n")
    for n, text in enumerate(texts):
        (plan,) = plan_groups(store, "company", SAMPLE_GROUPS["company"][:1], keep)
        run_id, gid = f"r-quiet-{n}", f"g-company-quiet-{n}"
        proposals.start_run(store, run_id, ["company"], str(tmp_path))
        proposals.replace_pending(store, run_id, ["company"], [
            {"id": gid, "entity_type": "company", "tier": "certain", "score": 0.99, "primary_id": 20,
             "member_ids": [20, 22], "responsible_ids": [], "primary_reason": "x", "criteria": "x", "pairs": [],
             "plan": plan.to_dict()}])
        proposals.set_status(store, [gid], "approved", 1)
        quiet = invoke("merge", "--db", store.url, "--settings", settings_file(tmp_path, text, f"quiet{n}.yaml"))
        assert quiet.exit_code == 0 and "Merge results: 1 applied" in quiet.output, quiet.output
        assert "delete_mode" not in quiet.output
        with store.engine.connect() as conn:
            merge_id = conn.execute(sa.select(schema.dedup_merges.c.id)
                                    .where(schema.dedup_merges.c.group_id == gid)).scalar_one()
        undone = invoke("undo", merge_id, "--db", store.url)  # (companies #20, #22 back for the next round)
        assert undone.exit_code == 0, undone.output


def test_merge_says_records_were_deleted_hard_also_without_settings(store, tmp_path, merges):
    """Plans a run made with delete_mode hard, merged without a settings file (the default says
    soft): the rows went from the tables without a word."""
    load_sample(store)
    hard = MergeSettings(conflict_policy="keep_primary", delete_mode="hard")
    (plan,) = plan_groups(store, "contact", SAMPLE_GROUPS["contact"][:1], hard)
    ids = propose(store, tmp_path, [plan])
    proposals.set_status(store, ids, "approved", 1)
    result = invoke("merge", "--db", store.url)
    assert result.exit_code == 0, result.output
    assert ("Note: the settings (default) say merge.delete_mode soft, but 1 group(s) were planned with delete_mode "
            "hard: merged so (their duplicates deleted from the tables; `crm-dedup undo` brings them back)"
            in result.output), result.output


# -- find --input reads the settings file as run does ------------------------------------------------

PEOPLE = ("id,first_name,last_name,phone\n1,Иван,Петров,+79161234567\n2,Иван,Петров,89161234567\n"
          "3,Анна,Смирнова,+79035550000\n")


def find_file(tmp_path, settings):
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    return invoke("find", "--input", tmp_path / "people.csv", "--id-column", "id", "--map", "first_name=first_name",
                  "--map", "last_name=last_name", "--map", "phone=phone", "--out", tmp_path / "out",
                  "--settings", settings)


def test_find_in_a_file_reads_the_whole_settings_file(tmp_path):
    only_pipeline = settings_file(tmp_path, f"pipeline: {{runs_dir: {tmp_path / 'runs'}}}\n", "p.yaml")
    result = find_file(tmp_path, only_pipeline)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "groups.csv").exists() and "1 groups" in result.output.replace(",", ""), result.output
    assert "(the default --out" not in result.output  # --out was given
    only_merge = settings_file(tmp_path, "merge: {conflict_policy: most_common}\n", "m.yaml")
    assert find_file(tmp_path, only_merge).exit_code == 0
    # misspelt keys named with their section, as `run` names them
    typo = find_file(tmp_path, settings_file(tmp_path, "merge: {conflict_polcy: ask}\n", "t.yaml"))
    assert typo.exit_code == 2 and "merge.conflict_polcy: Extra inputs are not permitted" in typo.output, typo.output
    typo = find_file(tmp_path, settings_file(tmp_path, "match: {treshold: 1}\n", "t2.yaml"))
    assert typo.exit_code == 2 and "match.treshold: Extra inputs are not permitted" in typo.output, typo.output
    assert "Traceback" not in typo.output
    # the match section is what the file is matched with (written beside the groups)
    region = settings_file(tmp_path, "match: {region: KZ, block_cap: 7}\npipeline: {runs_dir: x}\n", "kz.yaml")
    result = find_file(tmp_path, region)
    assert result.exit_code == 0, result.output
    used = yaml.safe_load((tmp_path / "out" / "settings.yaml").read_text(encoding="utf-8"))["match"]
    assert (used["region"], used["block_cap"]) == ("KZ", 7)


def test_find_in_a_file_says_it_runs_without_dask(tmp_path):
    dask = settings_file(tmp_path, "pipeline: {dask: {enabled: true, address: 'tcp://127.0.0.1:1'}}\n", "d.yaml")
    result = find_file(tmp_path, dask)
    assert result.exit_code == 0, result.output
    assert f"Note: {dask} enables pipeline.dask, but a file (--input) is matched in this process, without Dask" \
        in result.output
    quiet = find_file(tmp_path, settings_file(tmp_path, "pipeline: {dask: {enabled: false}}\n", "nd.yaml"))
    assert quiet.exit_code == 0 and "Dask" not in quiet.output, quiet.output


def test_find_help_shows_its_default_folder():
    help_text = " ".join(invoke("find", "--help").output.split())
    assert "[default: ./out]" in help_text and "(./out)" not in help_text, help_text


# -- history: a readable table ------------------------------------------------------------------

def test_history_prints_a_readable_table(store):
    load_sample(store)
    results = []
    for entity in ("contact", "company"):
        plans = plan_groups(store, entity, SAMPLE_GROUPS[entity], MergeSettings(conflict_policy="keep_primary"))
        results += apply_batch(store, plans, 1, "b1")
    assert [r.status for r in results] == ["applied"] * 4
    first = results[-1].merge_id  # (the last: an earlier merge's links moved since, by the later ones)
    undo = invoke("undo", first, "--user", "admin@example.ru", "--db", store.url)
    assert undo.exit_code == 0, undo.output

    shown = invoke("history", "--db", store.url)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.rstrip().splitlines()
    assert lines[0].split() == ["merge", "when", "(UTC)", "entity", "primary", "merged", "who", "status", "batch",
                                "undone", "(UTC)"]
    assert len(lines) == 1 + 4 + 1 and lines[-1].startswith("4 merge(s), newest first. `crm-dedup undo MERGE_ID`")
    for bad in ("NaT", "None", "NaN", "nan"):
        assert bad not in shown.output, shown.output
    assert not re.search(r"\d\d:\d\d:\d\d", shown.output), shown.output  # to the minute
    minute = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    undone = next(line for line in lines if line.startswith(f"#{first} "))
    assert re.search(rf"#{first}\s+{minute}\s+company\s+#23\s+#24\s+Админ Главный\s+undone\s+b1\s+"
                     rf"{minute} by Админ Главный$", undone), undone
    applied = next(line for line in lines if line.startswith(f"#{results[0].merge_id} "))
    assert re.search(rf"\s+{minute}\s+contact\s+#10\s+#11, #12\s+Админ Главный\s+applied\s+b1\s+-$", applied), \
        applied
    assert lines[1].startswith(f"#{results[-1].merge_id} ")  # newest first
    limited = invoke("history", "--limit", 2, "--db", store.url)
    assert limited.output.rstrip().splitlines()[-1].startswith("2 merge(s), newest first; `--limit 4` lists more")
    exact = invoke("history", "--limit", 4, "--db", store.url)
    assert exact.output.rstrip().splitlines()[-1].startswith("4 merge(s), newest first. "), exact.output
