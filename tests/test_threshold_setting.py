"""The per-threshold table reads the same wherever it is shown: `crm-dedup evaluate`, the HTML report and the
match_report notebook name the rows that are the settings' thresholds (setting) with the same words, from one
function (scoring.evaluate.threshold_settings), and show each threshold with its digits and the figures with
four decimals (not pandas' default float format)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from scoring import report
from scoring.evaluate import threshold_settings, threshold_text
from scoring.report import Run
from test_evaluate_truth import COLUMNS, invoke
from test_report import build_demo_run, run_steps
from test_report_grid import _Tables, truth_section_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[str, str, Path]:
    """A demo CRM on SQLite and one run of it (the table does not depend on the database)."""
    base = tmp_path_factory.mktemp("setting")
    url, folder = build_demo_run(base, sizes=(300, 100, 100), seed=3)
    return url, folder, base


def test_the_words_name_each_setting_and_the_ones_that_coincide():
    settings = {"certain": 0.995, "probable": 0.9, "possible": 0.5}  # (Run.thresholds' order)
    assert threshold_settings([0.5, 0.7, 0.9, 0.995, 1.0], settings) == ["possible", "", "probable", "certain", ""]
    # two settings at one value: one row, both named, lowest first whatever the mapping's order
    assert threshold_settings([0.5, 0.95], {"certain": 0.95, "probable": 0.95, "possible": 0.5}) == [
        "possible", "probable, certain"]
    assert threshold_settings([], settings) == []


def printed_tables(output: str) -> list[pd.DataFrame]:
    """Each per-threshold table `evaluate` printed, as text; the setting is the rest of a row, so a setting of
    two words ("probable, certain") is one cell (test_evaluate_truth.tables splits it)."""
    found, lines = [], output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("per threshold"):
            assert lines[i + 1].split() == COLUMNS, lines[i + 1]
            rows = []
            for row in lines[i + 2:]:
                cells = row.split(None, len(COLUMNS) - 1)
                if not cells or not re.fullmatch(r"[01]\.\d{4,}", cells[0]):
                    break  # (the table ends: a line on held pairs, or the next entity type)
                rows.append(cells + [""] * (len(COLUMNS) - len(cells)))
            found.append(pd.DataFrame(rows, columns=COLUMNS))
    return found


def _html_and_cli(url: str, folder: str, out: Path):
    """The report's per-threshold table (text) and the tables `evaluate` prints, of one run."""
    run = Run.open(folder, db_url=url)
    page = report.write_html_report(run, out).read_text(encoding="utf-8")
    result = invoke("evaluate", "--groups", folder, "--db", url)
    assert result.exit_code == 0, result.output
    return run, truth_section_table(page), printed_tables(result.output)


def test_the_report_names_the_settings_rows_as_evaluate_does(demo, tmp_path):
    url, folder, _ = demo
    run, shown, printed = _html_and_cli(url, folder, tmp_path / "report.html")
    assert "setting" in shown.columns
    assert len(printed) == len(run.entity_types) == 3
    for e, cli in zip(run.entity_types, printed):
        mine = shown[shown["entity_type"] == e]
        assert list(mine["threshold"]) == list(cli["threshold"]), e
        assert list(mine["setting"]) == list(cli["setting"]), e
        # each of the settings' thresholds is one named row (the default settings: three values)
        named = dict(zip(mine["setting"], mine["threshold"]))
        assert {k: v for k, v in named.items() if k} == {
            name: threshold_text(run.thresholds[name]) for name in ("possible", "probable", "certain")}, e
        # the figures as the CLI prints them
        assert list(mine["precision"]) == list(cli["precision"]), e


def test_settings_at_one_value_are_one_row_named_twice_in_both(demo, tmp_path):
    """probable = certain: the row says "probable, certain" in the report as in `evaluate`."""
    url, _, base = demo
    folder = run_steps(url, base / "same", match={"thresholds": {"probable": 0.95, "certain": 0.95}})
    run, shown, printed = _html_and_cli(url, folder, tmp_path / "report.html")
    for e, cli in zip(run.entity_types, printed):
        mine = shown[shown["entity_type"] == e]
        assert list(mine["setting"]) == list(cli["setting"]), e
        assert mine.loc[mine["threshold"] == "0.9500", "setting"].tolist() == ["probable, certain"], e
        assert (mine["setting"] != "").sum() == 2, e


@pytest.mark.slow
def test_the_notebook_shows_the_table_as_evaluate_prints_it(demo, monkeypatch):
    from test_notebooks import execute

    url, folder, _ = demo
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = execute("match_report", folder, url)
    [cell] = [c for c in nb.cells if c.cell_type == "code" and "precision_recall()" in c.source]
    frames = [o["data"]["text/html"] for o in cell.get("outputs", [])
              if "held_pairs" in o.get("data", {}).get("text/html", "")]
    assert len(frames) == 1, cell.get("outputs")
    parser = _Tables()
    parser.feed(frames[0])
    [table] = parser.tables
    head, *rows = table
    # (a DataFrame's HTML has a header row of the column names, then the index in each row's first cell)
    assert head[1:] == ["entity_type", "threshold", "precision", "recall", "f1", "held_pairs", "setting"]
    shown = [row[1:] for row in rows]

    pr = Run.open(folder, db_url=url).precision_recall()
    settings = Run.open(folder, db_url=url).thresholds
    assert len(shown) == len(pr)
    want = [[e, threshold_text(t), f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", str(h), s]
            for e, t, p, r, f, h, s in zip(pr["entity_type"], pr["threshold"], pr["precision"], pr["recall"],
                                           pr["f1"], pr["held_pairs"], threshold_settings(pr["threshold"], settings))]
    assert shown == want
    assert sum(row[-1] != "" for row in shown) == 3 * len(set(pr["entity_type"]))
