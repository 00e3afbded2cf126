"""An analyst's first day with a demo run (scoring.report, scoring.evaluate): why two records matched,
the records a run left out of their group, the pairs just below the threshold, CSV for a spreadsheet,
two runs compared after a threshold change, and the errors met on the way. Two real runs of one
small demo CRM on each backend (the second with a higher probable threshold and a record a person
added to a group), and a file-mode run of the same contacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import drop_pg_schema, pg_schema_url
from scoring import report
from scoring.evaluate import evaluate_groups
from scoring.report import ReportError, Run
from test_report import ENTITIES, build_demo_run, build_file_run, demo_contacts_file, run_steps

STRICTER = {"thresholds": {"certain": 0.9999, "probable": 0.999, "possible": 0.5}}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def runs(request, tmp_path_factory):
    """(db_url, first run, second run, the record a person added to a group, that group's id)."""
    from crm.store import Store
    from merge_rules.grouping import include_record

    base = tmp_path_factory.mktemp(f"analyst-{request.param}")
    schema_name = None
    db_url = None
    if request.param == "postgresql":
        db_url, schema_name = pg_schema_url()
    try:
        db_url, first = build_demo_run(base, db_url)
        one = Run.open(first, db_url=db_url)
        # a contact no pair names, added by a person to the largest group: the next run keeps it there
        paired = set(one.pairs("contact")["id_a"]) | set(one.pairs("contact")["id_b"])
        stranger = int(next(i for i in one.records("contact")["id"] if i not in paired))
        group = one.groups("contact").sort_values(["size", "group_id"], ascending=[False, True]).iloc[0]
        store = Store(db_url)
        include_record(store, group["group_id"], stranger, None)
        store.dispose()
        second = run_steps(db_url, base, STRICTER)
        yield db_url, first, second, stranger, group
    finally:
        if schema_name:
            drop_pg_schema(schema_name)


@pytest.fixture(scope="module")
def file_run(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("analyst-file")
    truth = demo_contacts_file(runs[0], base / "contacts.csv")
    return build_file_run(base / "contacts.csv", base / "out"), truth


# -- why two records matched --------------------------------------------------------------------------

def test_a_pair_is_found_by_ids_given_as_text_or_as_crm_dedup_groups_prints_them(runs):
    db_url, first, *_ = runs
    run = Run.open(first, db_url=db_url)
    row = run.pairs("contact").iloc[0]
    a, b = int(row["id_a"]), int(row["id_b"])
    for given in ((a, b), (str(a), str(b)), (f"#{b}", f" {a} ")):
        hit = run.pair(*given, "contact")
        assert (hit["id_a"], hit["id_b"]) == (a, b) and hit["explanation"] == row["explanation"]
    assert run.waterfall(str(a), str(b), "contact")["step"].iloc[0] == "prior"
    with pytest.raises(ReportError, match="'Ivanov' is not a contact id"):
        run.pair("Ivanov", b, "contact")
    unknown = int(run.records("contact")["id"].max()) + 1000
    with pytest.raises(ReportError, match=f"{unknown} is not a contact record of this run"):
        run.pair(a, unknown, "contact")


def test_two_members_without_a_pair_of_their_own_are_pointed_to_the_pairs_of_their_group(runs):
    db_url, _first, second, stranger, group = runs
    run = Run.open(second, db_url=db_url)
    mine = run.records("contact").set_index("id").loc[stranger, "group_id"]
    members = run.groups("contact").set_index("group_id").loc[mine, "member_ids"]
    assert group["primary_id"] in members  # the person's "the same" mark kept it in the group
    with pytest.raises(ReportError, match=rf"both are in group {mine}.*run\.group_pairs\('{mine}'\)"):
        run.pair(stranger, group["primary_id"], "contact")
    inside = run.group_pairs(mine)
    assert len(inside) and set(inside["id_a"]) | set(inside["id_b"]) <= set(members)
    assert stranger not in set(inside["id_a"]) | set(inside["id_b"])
    assert list(inside["probability"]) == sorted(inside["probability"], reverse=True)
    with pytest.raises(ReportError, match="no group 'contact-0-none'"):
        run.group_pairs("contact-0-none")


# -- records left out of their group --------------------------------------------------------------

def test_records_left_out_of_a_group_are_listed_with_the_hold_that_kept_them_out(runs, file_run):
    db_url, first, *_ = runs
    run = Run.open(first, db_url=db_url)
    stored = pd.read_parquet(Path(first) / "contact" / "group_table.parquet")
    expected = {(g, int(x)) for g, cut in zip(stored["group_id"], stored["cut_off"]) for x in cut}
    assert expected, "the demo run leaves a contact out of its group (see the run's log)"
    left = run.left_out("contact")
    assert set(zip(left["group_id"], left["id"])) == expected
    assert run.overview().set_index("entity_type").loc["contact", "left_out"] == len(expected)
    assert (left["held_apart"].str.len() > 0).all() and (left["tier"].isin(["certain", "probable"])).all()
    assert "cut_off" in run.groups().columns
    page = report.render_html(run)
    assert "Left out of their group" in page and all(f"<td>{x}</td>" in page for _g, x in expected)
    # the file mode keeps no cut_off in groups.csv: the report finds the same records from the pairs
    out, _truth = file_run
    from_file = Run.open(out).left_out()
    assert {int(x) for x in from_file["id"]} == {x for _g, x in expected}
    # and `find --input` lists them in left_out.csv beside groups.csv (it says so)
    assert set(pd.read_csv(out / "left_out.csv")["id"]) == {x for _g, x in expected}


# -- pairs just below the threshold -----------------------------------------------------------------

def test_the_pairs_just_below_the_threshold(runs):
    db_url, _first, second, *_ = runs
    run = Run.open(second, db_url=db_url)  # (the first run's few possible pairs are all held by a rule)
    probable = run.thresholds["probable"]
    below = run.uncertain_pairs(1000, side="below")
    above = run.uncertain_pairs(1000, side="above")
    assert len(below) and (below["probability"] < probable).all() and (below["tier"] == "possible").all()
    assert len(above) and (above["probability"] >= probable).all()
    assert list(below["probability"]) == sorted(below["probability"], reverse=True)
    assert len(below) + len(above) == len(run.uncertain_pairs(100_000))
    near_certain = run.uncertain_pairs(1000, side="below", threshold="certain")
    assert (near_certain["probability"] < run.thresholds["certain"]).all()
    with pytest.raises(ReportError, match="side must be"):
        run.uncertain_pairs(side="under")


# -- CSV for a spreadsheet -------------------------------------------------------------------------------

def test_csv_for_a_spreadsheet_and_for_crm_dedup_evaluate(runs, tmp_path):
    from crm.demo import read_truth
    from crm.store import Store
    from pipelines.cli import app

    db_url, first, *_ = runs
    run = Run.open(first, db_url=db_url)
    written = run.to_csv(tmp_path / "csv")
    assert {"contact/groups.csv", "contact/pairs.csv", "contact/group_table.csv", "contact/left_out.csv",
            "lead/pairs.csv", "settings.yaml"} <= set(written)
    raw = written["contact/pairs.csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8 (Cyrillic names)
    pairs = pd.read_csv(written["contact/pairs.csv"], encoding="utf-8-sig")
    assert len(pairs) == len(run.pairs("contact"))
    assert pairs["name_a"].str.contains("[А-Яа-я]", regex=True).any()
    names = run.names("contact")
    first_pair = pairs.iloc[0]
    assert first_pair["name_a"] == names[first_pair["id_a"]] and first_pair["name_b"] == names[first_pair["id_b"]]
    table = pd.read_csv(written["contact/group_table.csv"], encoding="utf-8-sig")
    biggest = run.groups("contact").sort_values("size").iloc[-1]
    assert table.set_index("group_id").loc[biggest["group_id"], "member_ids"] == ", ".join(
        map(str, biggest["member_ids"]))
    store = Store(db_url)
    truth = read_truth(store, "contact")
    store.dispose()
    truth.rename_axis("id").rename("person").reset_index().to_csv(tmp_path / "truth.csv", index=False)
    result = CliRunner().invoke(app, ["evaluate", "--groups", str(written["contact/groups.csv"]),
                                      "--truth", str(tmp_path / "truth.csv"), "--truth-column", "person"])
    assert result.exit_code == 0, result.output
    ev = run.evaluation().set_index("entity_type").loc["contact"]
    assert f"precision {ev['precision']:.4f}  recall {ev['recall']:.4f}" in result.output
    semicolons = run.to_csv(tmp_path / "semi", "contact", sep=";")
    assert semicolons["contact/groups.csv"].read_text(encoding="utf-8-sig").startswith("id;group_id;is_primary;tier")
    # the same from the command line, beside the HTML report
    result = CliRunner().invoke(app, ["report", str(first), "--out", str(tmp_path / "r.html"), "--csv",
                                      str(tmp_path / "cli"), "--sep", ";"])
    assert result.exit_code == 0, result.output
    assert f"CSV files written to {tmp_path / 'cli'}" in result.output and "contact/pairs.csv" in result.output
    assert (tmp_path / "cli" / "contact" / "groups.csv").read_text(encoding="utf-8-sig") == \
        semicolons["contact/groups.csv"].read_text(encoding="utf-8-sig")


# -- two runs compared ---------------------------------------------------------------------------------

def test_two_runs_compared_after_a_threshold_change(runs):
    db_url, first, second, stranger, group = runs
    before, after = Run.open(first, db_url=db_url), Run.open(second, db_url=db_url)
    assert after.previous().folder == before.folder and before.previous() is None
    summary = report.compare_runs(before, after).set_index("entity_type")
    assert list(summary.index) == ENTITIES
    assert summary.loc["contact", "probable_after"] == STRICTER["thresholds"]["probable"]
    for e in ENTITIES:
        gb, ga = before.groups(e), after.groups(e)
        assert summary.loc[e, "groups_before"] == len(gb) and summary.loc[e, "groups_after"] == len(ga)
        same = {(frozenset(m), p) for m, p in zip(gb["member_ids"], gb["primary_id"])} & {
            (frozenset(m), p) for m, p in zip(ga["member_ids"], ga["primary_id"])}
        assert summary.loc[e, "groups_same"] == len(same)
    assert "recall_after" in summary.columns

    changes = report.changed_groups(before, after, "contact")
    grown = changes[changes["group_id_before"] == group["group_id"]]
    assert len(grown) == 1 and grown["added"].iloc[0] == [stranger] and grown["change"].iloc[0] == "changed"

    tiers = report.changed_pairs(before, after)
    merged = before.pairs().merge(after.pairs(), on=["entity_type", "id_a", "id_b"], suffixes=("_b", "_a"))
    moved = merged[merged["tier_b"] != merged["tier_a"]]
    assert len(moved), "a stricter threshold moves pairs to a lower tier"
    assert set(zip(moved["entity_type"], moved["id_a"], moved["id_b"])) <= set(
        zip(tiers["entity_type"], tiers["id_a"], tiers["id_b"]))
    assert (tiers["tier_before"] != tiers["tier_after"]).all()
    # a groups "gone" or "changed" for each pair now below probable that held a group together before
    assert summary[["groups_gone", "groups_changed"]].to_numpy().sum() >= 1


# -- evaluation against the truth: errors that say what is wrong ---------------------------------------

def test_a_truth_naming_a_record_twice_is_refused_as_such():
    groups = pd.Series(["g1", "g1", "g3"], index=["1", "2", "3"])
    # the whole demo_truth table: a contact, a company and a lead may share an id
    truth = pd.Series(["contact:1", "contact:1", "contact:3", "company:1"], index=["1", "2", "3", "1"])
    with pytest.raises(ValueError, match=r"truth names 1 record id\(s\) more than once \(e\.g\. 1\).*entity type"):
        evaluate_groups(groups, truth)
    with pytest.raises(ValueError, match=r"1 ids only in groups \(e\.g\. 3\), 0 only in truth"):
        evaluate_groups(groups, truth.iloc[:2])


# -- opening a run from a notebook --------------------------------------------------------------------

def test_a_notebook_opens_the_readmes_relative_paths_from_the_project_root(runs, tmp_path, monkeypatch):
    """A notebook runs in notebooks/; data/runs/<run id> and sqlite:///data/crm.db are the project root's."""
    db_url, first, *_ = runs
    if not db_url.startswith("sqlite"):
        db_url = None  # (a server's URL is not a path: the relative SQLite URL is the point here)
    root = Path(first).parents[1]
    monkeypatch.setattr(report, "PROJECT_ROOT", root)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv(report.RUN_ENV, raising=False)
    relative = Path(first).relative_to(root)
    run = report.open_run(str(relative), "sqlite:///crm.db" if db_url else None)
    assert run.folder == Path(first)
    if db_url:
        assert run.has_truth
    monkeypatch.setenv(report.RUN_ENV, str(relative))
    assert report.open_run(None, "sqlite:///crm.db" if db_url else None).folder == Path(first)


def test_no_truth_says_when_the_default_database_does_not_exist(runs, tmp_path, monkeypatch):
    _db_url, first, *_ = runs
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("CRM_DEDUP_DB", f"sqlite:///{missing}")
    run = Run.open(first)
    assert not run.has_truth
    assert f"there is no default database sqlite:///{missing}" in run.no_truth_reason()


def test_the_precision_recall_chart_shows_every_threshold_name(runs):
    """The legend sat at the bottom left, over the name of the "possible" line drawn there."""
    db_url, first, *_ = runs
    run = Run.open(first, db_url=db_url)
    fig = report.precision_recall_chart(run.precision_recall(), run.thresholds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        names = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
        assert set(names) == set(run.thresholds)
        assert not [name for name, box in names.items() if box.overlaps(legend)], ax.get_title(loc="left")
