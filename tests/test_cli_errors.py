"""Bad input to the `crm-dedup` commands: one clear error line naming the value and the problem,
exit code 2 (1 where an undo could not go ahead), never a traceback, nothing silently accepted.
Every refusal here comes before any Prefect flow starts, so these tests need no flow run."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.testing import SAMPLE_GROUPS, load_sample
from pipelines.cli import app

NOW = dt.datetime(2026, 1, 1)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *phrases: str, code: int = 2) -> str:
    """Assert the command was refused with one `error:` line holding every phrase, and no traceback."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and not isinstance(result.exception, (KeyError, ValueError, TypeError)), out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    return out


@pytest.fixture
def sample(store):
    """The small sample CRM of merge_rules.testing (users 1-4, user 1 the admin)."""
    load_sample(store)
    return store


def _groups(store, statuses: dict[str, str]) -> None:
    store.insert(schema.dedup_runs, [{"id": "r1", "started_at": NOW, "status": "completed", "entity_types": "contact"}])
    store.insert(schema.dedup_groups, [
        {"id": gid, "entity_type": "contact", "run_id": "r1", "status": status, "tier": "certain", "score": 0.99,
         "primary_id": 10 + i, "member_ids": [10 + i, 20 + i], "responsible_ids": [], "primary_reason": "",
         "criteria": "", "updated_at": NOW} for i, (gid, status) in enumerate(statuses.items())])


def _status(store, gid: str) -> str:
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        return conn.execute(sa.select(g.c.status).where(g.c.id == gid)).scalar_one()


# -- errors instead of tracebacks -----------------------------------------------------------

def test_unknown_entity_types_are_refused_with_the_valid_ones(tmp_path):
    db = f"sqlite:///{tmp_path}/none.db"  # each refusal comes before the database is opened
    refused(invoke("run", "--entity", "bogus", "--db", db), "unknown entity type 'bogus'",
            "use contact, company, lead or all")
    refused(invoke("find", "--entity", "bogus", "--db", db), "unknown entity type 'bogus'")
    refused(invoke("check", "--entity", "bogus", "--db", db), "unknown entity type 'bogus'",
            "use contact, company or lead")
    refused(invoke("skip", 5, 6, "--entity", "bogus", "--db", db), "unknown entity type 'bogus'")
    refused(invoke("history", "--entity", "bogus", "--db", db), "unknown entity type 'bogus'")
    refused(invoke("approve", "--tier", "certain", "--entity", "bogus", "--db", db), "unknown entity type 'bogus'")
    refused(invoke("import", tmp_path / "x.csv", "--entity", "deals", "--db", db), "unknown entity type 'deals'")


def test_plural_entity_types_are_accepted_as_import_accepts_them(tmp_path):
    # "contacts" passes the entity check: what stops the command next is the settings file
    bad = tmp_path / "bad.yaml"
    bad.write_text("match: {blok_cap: 3}\n")
    for cmd in ("run", "find", "check"):
        refused(invoke(cmd, "--entity", "contacts", "--settings", bad, "--db", f"sqlite:///{tmp_path}/x.db"),
                "blok_cap: Extra inputs are not permitted")


def test_a_runs_dir_that_cannot_be_written_is_refused_before_the_flow(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    bad = tmp_path / "runs.yaml"
    bad.write_text(f"pipeline: {{runs_dir: {tmp_path / 'a_file' / 'runs'}}}\n")
    for cmd in ("run", "find", "serve"):
        refused(invoke(cmd, "--settings", bad, "--db", f"sqlite:///{tmp_path}/x.db"), "pipeline.runs_dir",
                "cannot hold run folders (Not a directory)", "to a folder you may write in")


def test_settings_problems_are_shown_without_a_traceback(tmp_path):
    db = f"sqlite:///{tmp_path}/none.db"
    misspelled, reversed_ = tmp_path / "misspelled.yaml", tmp_path / "reversed.yaml"
    misspelled.write_text("match: {blok_cap: 3}\npipeline: {runs_dir: /tmp/x}\n")
    reversed_.write_text("match: {thresholds: {certain: 0.5, probable: 0.9}}\n")
    refused(invoke("run", "--settings", tmp_path / "nope.yaml", "--db", db), "Cannot read settings from",
            "nope.yaml", "No such file")
    refused(invoke("run", "--settings", misspelled, "--db", db), "match.blok_cap: Extra inputs are not permitted")
    # every section's problems at once, each named by its section
    several = tmp_path / "several.yaml"
    several.write_text("merge: {conflict_policy: bogus}\npipeline: {auto_merge: {tiers: [certain, sure]}}\n"
                       "match: {blok_cap: 3}\n")
    refused(invoke("run", "--settings", several, "--db", db), "has 3 problem(s)", "match.blok_cap: Extra inputs",
            "merge.conflict_policy: Input should be", "pipeline.auto_merge.tiers.1: Input should be")
    refused(invoke("run", "--settings", reversed_, "--db", db), "possible <= probable <= certain")
    refused(invoke("check", "--settings", reversed_, "--db", db), "possible <= probable <= certain")
    refused(invoke("merge", "--settings", tmp_path / "nope.yaml", "--db", db), "nope.yaml")
    # find over the database reads the whole file, as run does: a pipeline section is no error
    refused(invoke("find", "--settings", reversed_, "--db", db), "possible <= probable <= certain")


def test_check_refuses_a_missing_file_and_mixed_encodings(tmp_path):
    db = f"sqlite:///{tmp_path}/none.db"
    refused(invoke("check", "--input", tmp_path / "nope.csv", "--db", db), "There is no file", "nope.csv")
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes("first_name,last_name,phone\nИван,Петров,+79161234567\n".encode()
                      + "Пётр,Сидоров,+79161234568\n".encode("cp1251"))
    refused(invoke("check", "--input", mixed, "--db", db), "mixed.csv is neither UTF-8", "nor Windows-1251")
    refused(invoke("check", "--input", mixed, "--preset", "bogus", "--db", db), "Unknown preset 'bogus'")
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text("first_name,last_name\nИван,Петров\n", encoding="utf-8")
    refused(invoke("check", "--input", utf8, "--encoding", "cp1251", "--db", db), "utf8.csv is UTF-8", "not cp1251")


def test_skip_refuses_one_record_twice_and_records_that_do_not_exist(sample):
    refused(invoke("skip", 10, 10, "--db", sample.url), "cannot skip contact #10 against itself")
    refused(invoke("skip", 10, 99999, "--db", sample.url), "there is no contact #99999")
    _groups(sample, {"g-approved": "approved", "g-applied": "applied"})
    g = schema.dedup_groups
    with sample.engine.begin() as conn:
        for gid, members in (("g-approved", [13, 10, 14]), ("g-applied", [11, 12])):
            conn.execute(g.update().where(g.c.id == gid).values(member_ids=members))
    done = invoke("skip", 13, 10, "--entity", "contacts", "--db", sample.url)
    assert done.exit_code == 0 and "contact #13 and #10 are marked as not duplicates" in done.output
    assert "Group g-approved (approved) holds both: it will not be merged" in done.output
    assert "holds both" not in invoke("skip", 11, 12, "--db", sample.url).output  # (merged already)
    s = schema.dedup_skips
    with sample.engine.connect() as conn:
        assert conn.execute(sa.select(s.c.entity_type, s.c.id_a, s.c.id_b).order_by(s.c.id_a)).all() == [
            ("contact", 10, 13), ("contact", 11, 12)]


# -- nothing silently accepted --------------------------------------------------------------

def test_approve_names_unknown_ids_and_groups_that_are_not_pending(sample):
    _groups(sample, {"contact:a": "pending", "contact:b": "applied", "contact:c": "pending"})
    out = refused(invoke("approve", "contact-99999-abcdef", "--db", sample.url),
                  "no group with id 'contact-99999-abcdef'", "nothing approved")
    # a typo among good ids approves none of them
    refused(invoke("approve", "contact:a", "contact:nope", "--db", sample.url), "'contact:nope'")
    assert "contact:a" not in out and _status(sample, "contact:a") == "pending"
    result = invoke("approve", "contact:a", "contact:b", "--db", sample.url)
    assert result.exit_code == 0, result.output
    assert "Approved 1 group(s)" in result.output and "contact:b (applied)" in result.output
    assert _status(sample, "contact:a") == "approved" and _status(sample, "contact:b") == "applied"
    refused(invoke("approve", "--tier", "bogus", "--db", sample.url), "unknown tier 'bogus'", "certain or probable")
    refused(invoke("approve", "contact:c", "--entity", "contact", "--db", sample.url), "--entity limits --tier")
    result = invoke("approve", "--tier", "certain", "--entity", "contacts", "--db", sample.url)
    assert result.exit_code == 0 and "Approved 1 group(s)" in result.output, result.output
    assert _status(sample, "contact:c") == "approved"


def test_history_refuses_bad_limits(sample):
    for limit in (0, -1):
        refused(invoke("history", "--limit", limit, "--db", sample.url), f"--limit must be 1 or more (got {limit})")
    result = invoke("history", "--entity", "companies", "--db", sample.url)
    assert result.exit_code == 0 and "No merges yet." in result.output, result.output


def test_unknown_batches_and_merges_are_named(sample):
    refused(invoke("undo", "--all", "batch-nope", "--db", sample.url), "there is no batch 'batch-nope'")
    refused(invoke("merge", "--batch-id", "batch-nope", "--db", sample.url), "there is no batch 'batch-nope'",
            "leave --batch-id out")
    refused(invoke("undo", 9999, "--db", sample.url), "There is no merge #9999", code=1)


# -- undo prints one line per merge, a batch as a summary ----------------------------------------

def test_undo_prints_readable_lines_and_a_batch_summary(sample):
    results = []
    for entity in ("contact", "company"):  # planned in turn: a contact merge moves the companies' links
        group_ids = {primary: f"g-{primary}" for primary, _ in SAMPLE_GROUPS[entity]}
        plans = plan_groups(sample, entity, SAMPLE_GROUPS[entity], MergeSettings(conflict_policy="keep_primary"),
                            group_ids=group_ids)
        results += apply_batch(sample, plans, 1, "b1")
    assert [r.status for r in results] == ["applied"] * 4
    ids = [r.merge_id for r in results]

    one = invoke("undo", ids[-1], "--db", sample.url)
    assert one.exit_code == 0, one.output
    assert one.output.strip().startswith(f"merge #{ids[-1]}: undone: Undid merge #{ids[-1]}")
    assert len(one.output.strip().splitlines()) == 1 and "UndoResult" not in one.output

    # a record changed since its merge: that merge is a conflict, with the reason; each merge undone a line
    # (its group, records and merge id, newest first), then the batch summary
    with sample.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 10).values(post="Президент"))
    batch = invoke("undo", "--all", "b1", "--db", sample.url)
    assert batch.exit_code == 1, batch.output
    lines = batch.output.rstrip().splitlines()
    assert lines[-1] == "Batch b1: 1 conflict, 2 undone", batch.output
    assert lines[:3] == [f"  merge #{ids[2]}: undone: group g-20, companies #20 <- #22",
                         f"  merge #{ids[1]}: undone: group g-13, contacts #13 <- #14",
                         lines[2]], batch.output
    assert len(lines) == 4 and lines[2].startswith(f"  merge #{ids[0]}: conflict: Cannot undo merge #{ids[0]}")
    assert "UndoResult" not in batch.output and "Traceback" not in batch.output

    again = invoke("undo", "--all", "b1", "--force", "--db", sample.url)
    lines = again.output.rstrip().splitlines()
    assert again.exit_code == 0 and lines[-1] == "Batch b1: 1 undone", again.output
    # the merge undone over a later change says what it overwrote
    assert len(lines) == 2 and lines[0].startswith(f"  merge #{ids[0]}: undone: ") and "overwrote" in lines[0]
    assert "Президент" in lines[0], again.output
    done = invoke("undo", "--all", "b1", "--db", sample.url)
    assert done.exit_code == 0 and "Batch b1: nothing to undo (4 undone)" in done.output, done.output


# -- find says where its files went ---------------------------------------------------------

def test_find_without_out_says_where_the_files_went(tmp_path, monkeypatch):
    (tmp_path / "people.csv").write_text("id,first_name,last_name,phone\n1,Иван,Петров,+79161234567\n"
                                         "2,Иван,Петров,89161234567\n3,Анна,Смирнова,+79035550000\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("find", "--input", "people.csv", "--id-column", "id", "--map", "first_name=first_name",
                    "--map", "last_name=last_name", "--map", "phone=phone")
    assert result.exit_code == 0, result.output
    assert f"Files written to {tmp_path / 'out'} (the default --out" in result.output
    assert (tmp_path / "out" / "groups.csv").exists() and (tmp_path / "out" / "pairs.csv").exists()
    help_text = " ".join(invoke("find", "--help").output.split())
    assert "./out" in help_text and "README.md" in help_text and "docs/settings.md" not in help_text


# -- groups lists what can be approved ------------------------------------------------------------

def test_groups_lists_ids_most_certain_first_and_refuses_bad_filters(sample):
    _groups(sample, {"g-a": "pending", "g-b": "pending", "g-c": "applied"})
    g = schema.dedup_groups
    with sample.engine.begin() as conn:
        conn.execute(g.update().where(g.c.id == "g-b").values(score=0.999, criteria="1 match by phone"))
    listed = invoke("groups", "--db", sample.url)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith("g-b  pending  certain  0.9990  #11 <- #21  1 match by phone")
    assert lines[1].startswith("    #11 ") and "; #21 " in lines[1]  # the members by name
    assert lines[2].startswith("g-a  pending") and lines[4].startswith("2 of 2 pending group(s)")
    assert invoke("groups", "--status", "applied", "--db", sample.url).output.startswith("g-c  applied")
    assert invoke("groups", "--status", "all", "--limit", "1", "--db", sample.url).output.splitlines()[-1] \
        .startswith("1 of 3 group(s)")
    assert invoke("groups", "--status", "stale", "--db", sample.url).output == "No stale groups.\n"
    refused(invoke("groups", "--status", "bogus", "--db", sample.url), "unknown status 'bogus'")
    refused(invoke("groups", "--tier", "possible", "--db", sample.url), "unknown tier 'possible'")
    refused(invoke("groups", "--limit", "0", "--db", sample.url), "--limit must be 1 or more")


def test_groups_never_round_a_score_up_into_the_next_tier(sample):
    _groups(sample, {"g-p": "pending"})
    g = schema.dedup_groups
    with sample.engine.begin() as conn:
        conn.execute(g.update().where(g.c.id == "g-p").values(tier="probable", score=0.99894))
    listed = invoke("groups", "--tier", "probable", "--db", sample.url)
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("g-p  pending  probable 0.9989  #10 <- #20"), listed.output


# -- report: run folders and databases that do not fit -----------------------------------------------

def _fake_run_folder(base, run_id: str = "20260101T000000-abcdef"):
    """Enough of a database-mode run folder for Run.open to take it as one."""
    import pandas as pd

    folder = base / run_id
    (folder / "contact").mkdir(parents=True)
    pd.DataFrame({"id": [1, 2], "group_id": ["contact-1", "contact-1"], "is_primary": [True, False],
                  "tier": ["certain", "certain"]}).to_parquet(folder / "contact" / "groups.parquet")
    return folder


def test_report_refuses_folders_that_are_not_runs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(invoke("report", empty), f"{empty} is not a run folder")
    runs = tmp_path / "runs"
    folder = _fake_run_folder(runs)
    refused(invoke("report", runs), f"{runs} is not a run folder", f"pass one of them, e.g. {folder}")


def test_report_refuses_a_run_whose_folder_is_gone_and_unknown_ids(store, tmp_path):
    gone = tmp_path / "runs" / "20260101T000000-gone00"
    store.insert(schema.dedup_runs, [{"id": gone.name, "started_at": NOW, "status": "completed",
                                      "entity_types": "contact", "folder": str(gone)}])
    refused(invoke("report", gone.name, "--db", store.url), f"Run {gone.name}", "which no longer exists")
    refused(invoke("report", "--db", store.url), f"Run {gone.name}", "which no longer exists")  # the latest
    refused(invoke("report", "nothing-like-it", "--db", store.url), "nothing-like-it is neither a run folder nor")


def test_report_refuses_a_database_that_did_not_run_the_folder(store, tmp_path):
    folder = _fake_run_folder(tmp_path / "runs")
    refused(invoke("report", folder, "--db", store.url), f"holds no run {folder.name}", "dedup_runs")
    assert not (folder / "report.html").exists()


# -- evaluate reads what the runs write ------------------------------------------------------------------

def test_evaluate_reads_parquet_groups_and_pairs(tmp_path):
    import pandas as pd

    entity = tmp_path / "run" / "contact"
    entity.mkdir(parents=True)
    pd.DataFrame({"id": [1, 2, 3, 4], "group_id": ["contact-1", "contact-1", "contact-3", "contact-4"],
                  "is_primary": [True, False, True, True], "tier": ["probable", "probable", "", ""]}
                 ).to_parquet(entity / "groups.parquet")
    pd.DataFrame({"id_a": [1, 3], "id_b": [2, 4], "probability": [0.95, 0.7],
                  "explanation": ["same phone", "only names. Held at possible: only names agree"]}
                 ).to_parquet(entity / "pairs.parquet")
    pd.DataFrame({"id": [1, 2, 3, 4], "person": ["a", "a", "b", "c"]}).to_parquet(tmp_path / "truth.parquet")
    # (0.7 asked for: the grid's deciles leave the held pair out, so its capped score is no row of it)
    args = ["evaluate", "--truth", tmp_path / "truth.parquet", "--truth-column", "person",
            "--thresholds", "0.5,0.7,0.95"]
    for extra in ([], ["--pairs", entity / "pairs.parquet"]):
        result = invoke(*args, "--groups", entity / "groups.parquet", *extra)
        assert result.exit_code == 0, result.output
        assert "pairwise  precision 1.0000  recall 1.0000" in result.output
        table = result.output.split("per threshold", 1)[1]
        # at 0.7 the held pair (3, 4) does not join a group: precision stays 1
        assert re.search(r"0\.7000\s+1\.0000\s+1\.0000", table), result.output
        assert "1 pairs held at possible by a rule" in result.output
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    refused(invoke(*args, "--groups", tmp_path / "bad.parquet"), "is not a readable parquet file")
    (tmp_path / "latin.csv").write_bytes("id,group_id\n1,\xe9\n".encode("latin-1"))
    refused(invoke(*args, "--groups", tmp_path / "latin.csv"), "is not a UTF-8 CSV file")


# -- runs lists the dedup_runs table ---------------------------------------------------------------------

def test_runs_lists_every_run_newest_first(store, tmp_path):
    assert invoke("runs", "--db", store.url).output.startswith("No dedup runs in ")
    folder = _fake_run_folder(tmp_path)
    store.insert(schema.dedup_runs, [
        {"id": folder.name, "started_at": NOW, "status": "completed", "entity_types": "contact,lead",
         "folder": str(folder), "summary": {"entities": {"contact": {"groups": 12}, "lead": {"groups": 3}}}},
        {"id": "20260102T000000-failed", "started_at": NOW + dt.timedelta(days=1), "status": "failed",
         "entity_types": "company", "folder": str(tmp_path / "gone"), "summary": {"error": "boom"}}])
    result = invoke("runs", "--db", store.url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("20260102T000000-failed  2026-01-02 00:00  failed") and "(gone)" in lines[0]
    assert lines[1].startswith(f"{folder.name}  2026-01-01 00:00  completed")
    assert "groups: contact 12, lead 3" in lines[1] and lines[1].endswith(str(folder))
    assert lines[2].startswith("2 of 2 run(s)")
    assert invoke("runs", "--limit", "1", "--db", store.url).output.splitlines()[-1].startswith("1 of 2 run(s)")
    refused(invoke("runs", "--limit", "0", "--db", store.url), "--limit must be 1 or more")
