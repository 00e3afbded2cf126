"""The report's figures per threshold (Run.precision_recall, its chart and table in report.html) follow the
run as `crm-dedup evaluate` does: the settings' thresholds and the deciles of the run's scores, so a run whose
scores sit above 0.999 gets rows there; and `evaluate --groups <run folder> --truth FILE` says what to pass."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from scoring import report
from scoring.evaluate import SPREAD_ROWS, held_mask, threshold_grid, threshold_text
from scoring.report import Run
from test_evaluate_truth import invoke, refused, tables
from test_report import build_demo_run

OLD_GRID_TOP = 0.999  # the highest threshold of the fixed grid the report used before


class _Tables(HTMLParser):
    """The cell texts of every <table> of a page: a list of tables, each a list of rows."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def truth_section_table(page: str) -> pd.DataFrame:
    """The per-threshold table of the report's "Against the known truth" section, as text."""
    section = re.search(r'<section id="truth">(.*?)</section>', page, re.S).group(1)
    parser = _Tables()
    parser.feed(section)
    found = [t for t in parser.tables if t and "held_pairs" in t[0]]
    assert len(found) == 1, parser.tables
    head, *rows = found[0]
    return pd.DataFrame(rows, columns=head)


def test_the_report_follows_the_runs_scores_on_each_backend(db_url, tmp_path):
    url, folder = build_demo_run(tmp_path, db_url, sizes=(300, 100, 100))
    run = Run.open(folder, db_url=url)
    settings = tuple(run.thresholds.values())
    pr = run.precision_recall()
    assert set(pr["entity_type"]) == {"contact", "company", "lead"}

    for e, rows in pr.groupby("entity_type", sort=False):
        pairs = run.pairs(e)
        assert list(rows["threshold"]) == threshold_grid(pairs["probability"], settings,
                                                         held=held_mask(pairs)), e
        assert len(rows) <= max(SPREAD_ROWS, len(set(settings)) + 11), e  # (collapsed deciles' rows spread)
    # the demo contacts' scores: most above the old grid's top, where the old grid had no row
    contact = pr[pr["entity_type"] == "contact"].sort_values("threshold")
    scores = run.pairs("contact")["probability"]
    assert (scores > OLD_GRID_TOP).mean() > 0.5
    inside = contact[(contact["threshold"] > OLD_GRID_TOP) & (contact["threshold"] <= scores.max())]
    assert len(inside) >= 3, contact
    # ... and recall falls there: what the old table could not show
    assert inside["recall"].min() < contact.loc[contact["threshold"] <= OLD_GRID_TOP, "recall"].min() - 0.05

    # the same rows, thresholds and figures `crm-dedup evaluate` prints for the run's groups
    result = invoke("evaluate", "--groups", folder, "--db", url)
    assert result.exit_code == 0, result.output
    printed = tables(result.output)
    assert len(printed) == 3
    for e, cli in zip(["contact", "company", "lead"], printed):  # (the run's entity types, in its order)
        mine = pr[pr["entity_type"] == e]
        assert list(cli["threshold"]) == [threshold_text(t) for t in mine["threshold"]], e
        for col in ("precision", "recall", "f1"):
            assert [f"{v:.4f}" for v in cli[col]] == [f"{v:.4f}" for v in mine[col]], (e, col)
        assert list(cli["pairs"]) == list(mine["pairs"]), e

    # the HTML report's table shows each threshold with its digits (not 0.999979 and 0.999997 both as "1")
    page = report.write_html_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    shown = truth_section_table(page)
    assert list(shown.columns) == ["entity_type", "threshold", "precision", "recall", "f1", "predicted_pairs",
                                   "true_pairs", "held_pairs", "setting"]
    assert list(zip(shown["entity_type"], shown["threshold"])) == [
        (e, threshold_text(t)) for e, t in zip(pr["entity_type"], pr["threshold"])]
    assert list(shown["predicted_pairs"].astype(int)) == list(pr["predicted_pairs"])
    assert not shown.duplicated(["entity_type", "threshold"]).any()  # (no two rows of an entity type look alike)


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory) -> Run:
    """A demo run on SQLite, for what does not depend on the database (the backends: the test above)."""
    url, folder = build_demo_run(tmp_path_factory.mktemp("grid"), sizes=(300, 100, 100), seed=2)
    return Run.open(folder, db_url=url)


def test_thresholds_asked_for_are_the_rows_of_every_entity_type(sqlite_run):
    """An explicit grid is kept (sorted, each once), for each entity type: an iterator is read once."""
    run = sqlite_run
    pr = run.precision_recall(thresholds=iter([0.95, 0.6, 0.95]))
    assert pr.groupby("entity_type")["threshold"].apply(list).to_dict() == {
        e: [0.6, 0.95] for e in ("contact", "company", "lead")}
    # the default grid at those thresholds gives the same figures (one threshold_table, two grids)
    both = run.precision_recall(thresholds=[0.6, run.thresholds["probable"]])
    default = run.precision_recall()
    probable = run.thresholds["probable"]
    a = both[both["threshold"] == probable].set_index("entity_type")[["precision", "recall", "pairs"]]
    b = default[default["threshold"] == probable].set_index("entity_type")[["precision", "recall", "pairs"]]
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())


def test_the_chart_has_a_readable_tick_per_row_and_the_settings_drawn(sqlite_run):
    """Uneven thresholds (most between 0.999 and 1) on an axis of one step per row: each tick names its row
    with threshold_text, no two tick labels overlap, each setting's line stands at its row."""
    run = sqlite_run
    pr = run.precision_recall()
    fig = report.precision_recall_chart(pr, run.thresholds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        e = ax.get_title(loc="left")
        rows = pr[pr["entity_type"] == e].sort_values("threshold")
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text() for t in labels] == [threshold_text(t) for t in rows["threshold"]], e
        assert list(ax.get_xticks()) == list(range(len(rows))), e
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert not [i for i in range(len(boxes) - 1) if boxes[i].overlaps(boxes[i + 1])], e
        # a dashed line per setting, at the row of its threshold
        at = {t.get_text(): t.xy[0] for t in ax.texts}
        where = {t: i for i, t in enumerate(rows["threshold"])}
        assert at == {name: where[p] for name, p in run.thresholds.items()}, e


# -- `crm-dedup evaluate --groups <run folder> --truth FILE` -------------------------------------------------

def test_evaluate_with_truth_refuses_a_folder_and_names_the_files_to_pass(tmp_path):
    run = tmp_path / "run"
    for e in ("contact", "lead"):
        (run / e).mkdir(parents=True)
        pd.DataFrame({"id": ["1", "2", "3"], "group_id": ["g1", "g1", "g3"]}).to_parquet(run / e / "groups.parquet")
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"id": ["1", "2", "3"], "cluster": ["a", "a", "b"]}).to_csv(truth, index=False)

    out = refused(invoke("evaluate", "--groups", run, "--truth", truth, "--truth-column", "cluster"),
                  f"--groups {run} is a folder", "--truth holds one entity type's records",
                  str(run / "contact" / "groups.parquet"), str(run / "lead" / "groups.parquet"), "leave --truth out")
    assert "Errno" not in out
    # a folder with no groups file in it: the shapes of the file to pass
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(invoke("evaluate", "--groups", empty, "--truth", truth, "--truth-column", "cluster"),
            "RUN/<entity>/groups.parquet", "OUT/groups.csv")
    # what it names works
    ok = invoke("evaluate", "--groups", run / "contact" / "groups.parquet", "--truth", truth,
                "--truth-column", "cluster")
    assert ok.exit_code == 0, ok.output
    assert "pairwise  precision 1.0000  recall 1.0000" in ok.output
