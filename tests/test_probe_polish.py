"""What a user probe found: an incremental run that runs in full says why; a truth file repeating a column is
refused; import --errors gives the rejected rows whole; check does not call a row already imported its own
duplicate, nor makes pandas warn; undo says the group is pending again and withdraws its approval."""

from __future__ import annotations

import csv
import json
import logging
import warnings
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from crm import proposals, schema
from crm.csv_io import export_csv
from crm.demo import DemoSizes, generate_demo
from merge_rules import MergeSettings, plan_groups
from merge_rules.testing import load_sample
from pipelines import steps
from pipelines.check import ALREADY, check_new_records, summary_line
from pipelines.cli import app
from pipelines.settings import Settings
from scoring.files import FileError, read_table


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- 1. run --incremental that cannot reuse the last run says why ------------------------------------------------

def _settings(tmp_path: Path, name: str, **match) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, **match},
                                    "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    return str(path)


def _run(store, settings_path: str, incremental: bool) -> dict:
    run_id, folder = steps.new_run(store.url, ["contact"], Settings.load(settings_path).pipeline.runs_dir)
    out = Path(steps.find_step(store.url, "contact", folder, settings_path, incremental=incremental))
    proposals.finish_run(store, run_id, "completed", {})
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_an_incremental_run_after_the_region_changed_says_why_it_ran_in_full(store, tmp_path, caplog):
    generate_demo(store, DemoSizes(contacts=200, companies=10, leads=10, managers=2), seed=3)
    ru = _settings(tmp_path, "ru")
    with caplog.at_level(logging.WARNING, logger="pipelines.steps"):
        first = _run(store, ru, incremental=True)  # nothing to build on yet
    assert first["incremental"] is False
    assert first["incremental_fallback"].startswith("no completed run keeps the contact records it normalised")
    assert any(r.levelno == logging.WARNING and "no completed run keeps" in r.getMessage() for r in caplog.records)
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger="pipelines.steps"):
        again = _run(store, _settings(tmp_path, "kz", region="KZ"), incremental=True)
    assert again["incremental"] is False
    why = again["incremental_fallback"]
    assert "normalised its records otherwise (region RU, now KZ): they are not reused" in why, why
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "pipelines.steps"]
    assert warned == [why]
    # a run that could be built on says nothing of a fallback
    third = _run(store, _settings(tmp_path, "kz2", region="KZ"), incremental=True)
    assert third["incremental"] is True and "incremental_fallback" not in third
    full = _run(store, ru, incremental=False)  # (not asked for: nothing to say)
    assert "incremental_fallback" not in full


# -- 2. evaluate: a truth file whose header repeats a column ---------------------------------------------------

@pytest.mark.parametrize("header", ["id,person,person", "id,id,person"])
def test_evaluate_refuses_a_truth_file_repeating_the_truth_or_id_column(tmp_path, header):
    (tmp_path / "groups.csv").write_text("id,group_id\n1,g1\n2,g1\n3,g3\n")
    (tmp_path / "truth.csv").write_text(f"{header}\n1,1,a\n2,2,b\n3,3,b\n")
    r = invoke("evaluate", "--groups", tmp_path / "groups.csv", "--truth", tmp_path / "truth.csv",
               "--truth-column", "person")
    repeated = "person" if header.endswith("person,person") else "id"
    cols = "2, 3" if repeated == "person" else "1, 2"
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"truth.csv's header repeats '{repeated}' (columns {cols}): which of them is meant cannot be told" \
        in r.output
    assert "precision" not in r.output
    # read for a dedup with its repeated names kept (an export's phone:work columns), it is read as before
    both = read_table(tmp_path / "truth.csv", repeated_names=True)
    assert list(both.columns) == header.split(",")
    with pytest.raises(FileError, match="repeats"):
        read_table(tmp_path / "truth.csv")
    # the same file without the repeat scores as usual
    (tmp_path / "truth.csv").write_text("id,person\n1,a\n2,b\n3,b\n")
    r = invoke("evaluate", "--groups", tmp_path / "groups.csv", "--truth", tmp_path / "truth.csv",
               "--truth-column", "person")
    assert r.exit_code == 0 and "pairwise  precision 0.0000" in r.output, r.output


# -- 3. import --errors: the rejected rows whole -----------------------------------------------------------------

def test_import_errors_writes_the_rejected_rows_whole_to_fix_and_import_again(db_url, tmp_path):
    assert invoke("init", "--db", db_url).exit_code == 0
    long_note = "Позвонить после обеда; " * 20  # 460 characters: more than the problem list shows
    rows = [["id", "last_name", "first_name", "birthdate", "comments", "phone:mobile"],
            ["31", "Орлова", "Анна", "30.02.1985", "", "+7 916 000-00-31"],   # imported, its birthdate left out
            ["32", "", "", "", long_note, ""],                               # rejected: no name, phone or e-mail
            ["33", "Седов", "Иван", "", "ok", "+7 916 000-00-33"],
            ["x34", "Кузнецов", "Пётр", "", "id; \"quoted\"", ""]]          # rejected: its id
    f = tmp_path / "in.csv"
    with open(f, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    errors = tmp_path / "bad.csv"
    r = invoke("import", f, "--entity", "contact", "--db", db_url, "--errors", errors)
    assert r.exit_code == 0, r.output
    assert "4 contact rows read" in r.stdout and "2 imported" in r.stdout and "2 rejected" in r.stdout
    whole = tmp_path / "bad.rows.csv"
    assert f"Problems: {errors}; the 2 rejected rows whole, with their line and reason: {whole}" in r.stdout
    # the problem list as before (line, id, column, value, reason; the value cut), the cell left out in it too
    listed = list(csv.reader(open(errors, encoding="utf-8-sig")))
    assert [row[:3] for row in listed] == [["line", "id", "column"], ["2", "31", "birthdate"], ["3", "32", ""],
                                           ["5", "x34", "id"]]
    # the rejected rows whole: every column as in the file, the long value in full, after their line and reason
    got = list(csv.reader(open(whole, encoding="utf-8-sig")))
    assert got[0] == ["line", "reason", *rows[0]]
    assert [g[0] for g in got[1:]] == ["3", "5"]
    assert got[1][2:] == rows[2] and got[1][2:][4] == long_note
    assert got[1][1].startswith("lacks a name, phone or email")
    assert got[2][2:] == rows[4] and "column 'id'" in got[2][1] and "is not a record id" in got[2][1]
    # fixed there, the file imports again (its line and reason columns are ignored)
    got[1][3], got[2][2] = "Белова", "34"
    with open(whole, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(got)
    r = invoke("import", whole, "--entity", "contact", "--db", db_url)
    assert r.exit_code == 0, r.output
    assert "2 contact rows read" in r.stdout and "2 imported" in r.stdout and "0 rejected" in r.stdout
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = schema.contacts
            back = dict(conn.execute(sa.select(c.c.id, c.c.comments).where(c.c.id.in_([32, 34]))).all())
    finally:
        engine.dispose()
    assert back == {32: long_note, 34: 'id; "quoted"'}
    # nothing rejected: no rows file
    (tmp_path / "bad.rows.csv").unlink()
    ok = tmp_path / "ok.csv"
    ok.write_text("last_name,phone:mobile\nЛебедев,+7 916 000-00-40\n", encoding="utf-8")
    r = invoke("import", ok, "--entity", "contact", "--db", db_url, "--errors", errors)
    assert r.exit_code == 0 and not whole.exists() and "rejected rows whole" not in r.stdout, r.output


# -- 4 and 5. check --input on a file imported already; no pandas FutureWarning ---------------------------------

@pytest.fixture
def demo(store):
    generate_demo(store, DemoSizes(contacts=200, companies=10, leads=10, managers=2), seed=9)
    return store


@pytest.mark.slow
@pytest.mark.filterwarnings("error::FutureWarning")
def test_check_lists_rows_already_in_the_database_and_never_as_their_own_duplicates(demo, tmp_path):
    export_csv(demo, tmp_path / "all.csv", "contact")
    frame = pd.read_csv(tmp_path / "all.csv", dtype=str)
    head = frame.head(4)
    copy = head.iloc[[0]].assign(id="")  # a copy of the first without an id: numbered after the file's ids
    # responsible ids that are no users: the file's column is all empty (pandas' FutureWarning came of it)
    pd.concat([head, copy]).assign(responsible_id="999").to_csv(tmp_path / "imported.csv", index=False)
    rows, problems = check_new_records(demo.url, "contact", csv=tmp_path / "imported.csv")
    assert problems == [] and rows.attrs["checked"] == 5
    there = rows[rows["tier"] == ALREADY]
    ids = head["id"].tolist()
    assert sorted(there["new_record"]) == sorted(ids) and (there["duplicate_of"] == there["new_record"]).all()
    assert set(there["line"]) == {2, 3, 4, 5}
    assert all(e.startswith(f"already in the database (#{i})") for e, i in zip(there["explanation"],
                                                                                there["new_record"]))
    # no other row calls a record its own duplicate; the copy finds the record it was copied from
    others = rows[rows["tier"] != ALREADY]
    assert not (others["existing"] & (others["new_record"] == others["duplicate_of"])).any()
    copy_id = str(max(int(i) for i in ids) + 1)
    assert ((others["new_record"] == copy_id) & (others["duplicate_of"] == ids[0]) & others["existing"]).any(), rows
    line = summary_line(there.iloc[0].to_dict(), "contact", from_file=True)
    assert line.endswith(f": already in the database (contact #{there.iloc[0]['new_record']})")
    assert "~" not in line

    # the same rows without their ids are new rows again, checked against the records they copy
    head.drop(columns=["id"]).to_csv(tmp_path / "noid.csv", index=False)
    rows, _ = check_new_records(demo.url, "contact", csv=tmp_path / "noid.csv")
    assert ALREADY not in set(rows["tier"]) and rows.attrs["checked"] == 4
    assert set(rows.loc[rows["existing"], "duplicate_of"]) >= set(ids)


@pytest.mark.slow
def test_check_makes_pandas_warn_of_nothing(demo, tmp_path):
    """The file's all-empty responsible ids against the CRM's (with and without reusing a run's normalised
    records), and a file checked against an empty CRM."""
    export_csv(demo, tmp_path / "all.csv", "contact")
    pd.read_csv(tmp_path / "all.csv", dtype=str).head(5).drop(columns=["id"]).assign(responsible_id="999").to_csv(
        tmp_path / "new.csv", index=False)
    settings = _settings(tmp_path, "s")
    run_id, folder = steps.new_run(demo.url, ["contact"], str(tmp_path / "runs"))
    steps.find_step(demo.url, "contact", folder, settings)
    proposals.finish_run(demo, run_id, "completed", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for reuse in (True, False):
            rows, _ = check_new_records(demo.url, "contact", csv=tmp_path / "new.csv", settings_path=settings,
                                        reuse=reuse)
            assert rows["existing"].any()
        empty = tmp_path / "empty.db"
        assert invoke("init", "--db", f"sqlite:///{empty}").exit_code == 0
        rows, _ = check_new_records(f"sqlite:///{empty}", "contact", csv=tmp_path / "new.csv")
        assert rows.attrs["checked"] == 5 and not rows["existing"].any()


# -- 6. undo: the group is pending again, its approval withdrawn -------------------------------------------------

def test_undo_says_the_group_is_pending_again_and_withdraws_its_approval(store, tmp_path):
    from pipelines.apply import apply_approved
    from test_apply_concurrency import propose, settings_file

    load_sample(store)
    (plan,) = plan_groups(store, "contact", [(10, [10, 11, 12])], MergeSettings(conflict_policy="keep_primary"))
    (gid,) = propose(store, tmp_path, [plan])
    proposals.set_status(store, [gid], "approved", 1)
    (res,) = apply_approved(store.url, "b1", 1, settings_file(tmp_path, "keep_primary"))
    assert res["status"] == "applied", res
    g, m = schema.dedup_groups, schema.dedup_merges
    with store.engine.connect() as conn:
        merge_id = conn.execute(sa.select(m.c.id).where(m.c.group_id == gid)).scalar_one()
        assert conn.execute(sa.select(g.c.approved_by).where(g.c.id == gid)).scalar_one() == 1
    r = invoke("undo", merge_id, "--db", store.url)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"merge #{merge_id}: undone: Undid merge #{merge_id}")
    assert f"; group {gid} is pending again" in r.output
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(g.c.status, g.c.approved_by, g.c.approved_at, g.c.merge_id)
                           .where(g.c.id == gid)).one()
    assert tuple(row) == ("pending", None, None, None)
