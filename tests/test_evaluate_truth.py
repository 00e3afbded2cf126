"""`crm-dedup evaluate` as an analyst uses it: against the demo truth of the database a run read (no truth
file; demo_truth holds contact, company and lead ids that overlap, so each entity type is cut apart), and a
per-threshold table whose thresholds follow the run (the settings' tiers and the deciles of its scores) or
the ones asked for with --thresholds."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm import schema
from crm.demo import read_truth
from crm.store import Store
from scoring.evaluate import evaluate_groups, threshold_grid, threshold_table
from test_import_gaps import invoke, refused  # (test_report_grid takes them from here too)
from test_report import build_demo_run

COLUMNS = ["threshold", "precision", "recall", "f1", "bcubed_f1", "pairs", "setting"]


def tables(output: str) -> list[pd.DataFrame]:
    """Each per-threshold table the command printed (the threshold as printed, text)."""
    found, lines = [], output.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("per threshold"):
            continue
        assert lines[i + 1].split() == COLUMNS, lines[i + 1]
        rows = []
        for row in lines[i + 2:]:
            cells = row.split()
            if not cells or not re.fullmatch(r"[01]\.\d{4,}", cells[0]) or len(cells) > len(COLUMNS):
                break  # (the table ends: a line on held pairs, or the next entity type)
            rows.append(cells + [""] * (len(COLUMNS) - len(cells)))
        frame = pd.DataFrame(rows, columns=COLUMNS)
        found.append(frame.astype({c: float for c in ("precision", "recall", "f1", "bcubed_f1")})
                     .astype({"pairs": int}))
    return found


def figures_line(r: dict) -> str:
    return f"pairwise  precision {r['precision']:.4f}  recall {r['recall']:.4f}  F1 {r['f1']:.4f}"


# -- the demo truth of the run's database -------------------------------------------------------------------

def test_evaluate_reads_the_demo_truth_of_the_runs_database(db_url, tmp_path, monkeypatch):
    url, folder = build_demo_run(tmp_path, db_url, sizes=(300, 100, 100))
    folder = Path(folder)
    store = Store(url)
    truths = {e: read_truth(store, e) for e in ("contact", "company", "lead")}
    store.dispose()
    # the entity types' ids overlap: the whole table could not be read as one truth
    assert set(truths["contact"].index) & set(truths["company"].index)

    # one entity type, against the database (--db): the figures of its groups against its own truth
    contact = invoke("evaluate", "--groups", folder / "contact" / "groups.parquet", "--db", url)
    assert contact.exit_code == 0, contact.output
    groups = pd.read_parquet(folder / "contact" / "groups.parquet")
    direct = evaluate_groups(pd.Series(groups["group_id"].to_numpy(), index=groups["id"]), truths["contact"])
    assert direct["records"] == 300 and direct["true_pairs"] > 0
    assert f"records 300  true pairs {direct['true_pairs']:,}  predicted pairs {direct['predicted_pairs']:,}" \
        in contact.output
    assert figures_line(direct) in contact.output

    # the same as the truth file the docs used to ask for (the file path reads as before)
    truths["contact"].rename_axis("id").to_csv(tmp_path / "truth.csv")
    by_file = invoke("evaluate", "--groups", folder / "contact" / "groups.parquet", "--truth", tmp_path / "truth.csv",
                     "--truth-column", "cluster")
    assert by_file.exit_code == 0, by_file.output
    assert contact.output.split("\n", 1)[1] == by_file.output  # (past the line naming the entity type)

    # the default database ($CRM_DEDUP_DB) when it ran the run
    monkeypatch.setenv("CRM_DEDUP_DB", url)
    default = invoke("evaluate", "--groups", folder / "contact" / "groups.parquet")
    assert default.exit_code == 0 and default.output == contact.output, default.output

    # a run folder: each entity type against its own truth
    whole = invoke("evaluate", "--groups", folder)
    assert whole.exit_code == 0, whole.output
    sections = whole.output.split(" (the demo truth of the run's database):\n")
    assert [s.rsplit("\n", 1)[-1] for s in sections[:-1]] == ["contact", "company", "lead"]
    for entity, section in zip(("contact", "company", "lead"), sections[1:]):
        g = pd.read_parquet(folder / entity / "groups.parquet")
        r = evaluate_groups(pd.Series(g["group_id"].to_numpy(), index=g["id"]), truths[entity])
        assert section.startswith(f"records {len(g):,}  true pairs {r['true_pairs']:,}"), (entity, section)
        assert figures_line(r) in section
    assert len(tables(whole.output)) == 3

    # records the demo truth does not name count as entities of their own, and it says how many
    engine = sa.create_engine(url)
    t = schema.demo_truth
    with engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.entity_type == "contact", t.c.entity_id <= 5))
    engine.dispose()
    partial = invoke("evaluate", "--groups", folder / "contact" / "groups.parquet", "--db", url)
    assert partial.exit_code == 0, partial.output
    assert "5 record(s) are not in the demo truth: each counts as an entity of its own" in partial.output
    relabelled = truths["contact"].astype(object).copy()
    relabelled.loc[1:5] = [f"own {i}" for i in range(1, 6)]
    r = evaluate_groups(pd.Series(groups["group_id"].to_numpy(), index=groups["id"]), relabelled)
    assert figures_line(r) in partial.output

    # a database without demo truth says what to pass instead
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.delete(t))
    engine.dispose()
    refused(invoke("evaluate", "--groups", folder / "contact" / "groups.parquet", "--db", url),
            "holds no demo truth of the run's contact records", "--truth FILE --truth-column COLUMN")
    refused(invoke("evaluate", "--groups", folder), "contact, company, lead records")


def test_evaluate_without_truth_refuses_what_no_database_explains(tmp_path, monkeypatch):
    url, folder = build_demo_run(tmp_path / "a", sizes=(60, 20, 20))
    other = Store(f"sqlite:///{tmp_path}/other.db")
    other.migrate()
    other.dispose()
    groups = Path(folder) / "contact" / "groups.parquet"
    # a database that did not run it: its truth would be another CRM's
    refused(invoke("evaluate", "--groups", groups, "--db", other.url), f"holds no run {Path(folder).name}")
    # no --db and a default database that did not run it: which to pass
    monkeypatch.setenv("CRM_DEDUP_DB", other.url)
    refused(invoke("evaluate", "--groups", groups), "has no run", "pass --db", "--truth FILE --truth-column COLUMN")
    refused(invoke("evaluate", "--groups", groups.with_name("gone.parquet"), "--db", url), "there is no groups file")
    # a file that is no run's: only a truth file can measure it
    pd.DataFrame({"id": [1, 2], "group_id": ["a", "a"]}).to_csv(tmp_path / "groups.csv", index=False)
    refused(invoke("evaluate", "--groups", tmp_path / "groups.csv", "--db", url),
            "neither a run folder nor a run's <entity>/groups.parquet", "--truth FILE --truth-column COLUMN")
    # options that belong to a truth file, or to one entity type
    refused(invoke("evaluate", "--groups", groups, "--truth-column", "cluster", "--db", url),
            "--truth-column and --id-column name columns of --truth")
    refused(invoke("evaluate", "--groups", tmp_path / "groups.csv", "--truth", tmp_path / "groups.csv",
                   "--truth-column", "group_id", "--db", url), "give one of them")
    refused(invoke("evaluate", "--groups", folder, "--pairs", groups.with_name("pairs.parquet"), "--db", url),
            "--pairs are one entity type's pairs")
    refused(invoke("evaluate", "--groups", tmp_path / "groups.csv", "--truth", tmp_path / "groups.csv"),
            "Missing option '--truth-column'")


# -- the thresholds follow the run ---------------------------------------------------------------------------

# eight records, four people; every score above 0.9 (where a fixed 0.5..0.999 grid says almost nothing)
TRUTH = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "C", 7: "D", 8: "D"}
PAIRS = [(1, 2, 1.0), (2, 3, 0.99999), (4, 5, 0.9999), (3, 4, 0.9995), (7, 8, 0.999), (6, 7, 0.93)]
SETTINGS = "match:\n  thresholds:\n    possible: 0.6\n    probable: 0.92\n    certain: 0.9999\n"


def _file_run(folder: Path) -> tuple[Path, Path]:
    """A run as `find --out` writes it (groups.csv, pairs.csv, settings.yaml) and a truth file."""
    folder.mkdir(parents=True)
    groups = {i: "contact-1" if i <= 5 else "contact-6" for i in TRUTH}
    pd.DataFrame({"id": list(groups), "group_id": list(groups.values())}).to_csv(folder / "groups.csv", index=False)
    pd.DataFrame(PAIRS, columns=["id_a", "id_b", "probability"]).to_csv(folder / "pairs.csv", index=False)
    (folder / "settings.yaml").write_text(SETTINGS)
    pd.DataFrame({"id": list(TRUTH), "person": list(TRUTH.values())}).to_csv(folder.parent / "truth.csv", index=False)
    return folder / "groups.csv", folder.parent / "truth.csv"


def test_the_threshold_grid_is_the_settings_and_the_deciles_of_the_scores():
    scores = [p for *_, p in PAIRS]
    # six scores: every decile is one of them; 0.9999 is a score and the certain threshold, listed once
    assert threshold_grid(scores, (0.6, 0.92, 0.9999)) == [0.6, 0.92, 0.93, 0.999, 0.9995, 0.9999, 0.99999, 1.0]
    # many scores: eleven deciles at most, each a real score (not interpolated)
    many = [i / 1000 for i in range(500, 1001)]
    grid = threshold_grid(many, ())
    assert grid == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    assert threshold_grid([], (0.5, 0.9)) == [0.5, 0.9]
    # the library's default grid follows the pairs too
    pairs = pd.DataFrame(PAIRS, columns=["id_a", "id_b", "probability"])
    truth = pd.Series(TRUTH)
    table = threshold_table(pairs, truth.index, truth)
    assert table["threshold"].tolist() == [0.5, 0.93, 0.999, 0.9995, 0.9999, 0.99999, 1.0]


def test_evaluate_prints_a_table_over_the_runs_own_thresholds(tmp_path):
    groups, truth = _file_run(tmp_path / "run")
    result = invoke("evaluate", "--groups", groups, "--truth", truth, "--truth-column", "person")
    assert result.exit_code == 0, result.output
    assert "records 8  true pairs 5  predicted pairs 13" in result.output
    [table] = tables(result.output)
    # five true pairs (A: 3, B: 1, D: 1); groups = the pairs at or above each threshold, worked by hand
    assert table["threshold"].tolist() == ["0.6000", "0.9200", "0.9300", "0.9990", "0.9995", "0.9999", "0.99999",
                                           "1.0000"]
    assert table["setting"].tolist() == ["possible", "probable", "", "", "", "certain", "", ""]
    assert table["pairs"].tolist() == [6, 6, 6, 5, 4, 3, 2, 1]
    assert table["precision"].tolist() == [0.3846, 0.3846, 0.3846, 0.4545, 0.4, 1.0, 1.0, 1.0]  # 5/13, 5/11, 4/10
    assert table["recall"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.8, 0.8, 0.6, 0.2]

    # the thresholds asked for, and only those
    asked = invoke("evaluate", "--groups", groups, "--truth", truth, "--truth-column", "person",
                   "--thresholds", "0.95, 0.5,0.8")
    assert asked.exit_code == 0, asked.output
    [table] = tables(asked.output)
    assert table["threshold"].tolist() == ["0.5000", "0.8000", "0.9500"]
    assert table["pairs"].tolist() == [6, 6, 5] and table["precision"].tolist() == [0.3846, 0.3846, 0.4545]
    assert table["setting"].tolist() == ["", "", ""]

    refused(invoke("evaluate", "--groups", groups, "--truth", truth, "--truth-column", "person",
                   "--thresholds", "0.5,high"), "'high' is not a probability between 0 and 1", "0.5,0.8,0.95")
    refused(invoke("evaluate", "--groups", groups, "--truth", truth, "--truth-column", "person",
                   "--thresholds", "1.5"), "'1.5' is not a probability")
    (groups.parent / "pairs.csv").unlink()
    refused(invoke("evaluate", "--groups", groups, "--truth", truth, "--truth-column", "person",
                   "--thresholds", "0.5"), "--thresholds needs the pairs", "--pairs FILE")
