"""The analysts' notebooks run top to bottom against a fresh demo run and draw their charts; the
.ipynb files in git are the paired .py files without outputs."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from test_report import build_demo_run

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["match_report", "data_quality"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[str, str]:
    return build_demo_run(tmp_path_factory.mktemp("nb"))


def execute(name: str, run_folder: str | None, db_url: str | None) -> nbformat.NotebookNode:
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    first = nb.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), \
        f"{name}: the first cell must be the parameters cell"
    assert "RUN_FOLDER = None" in first.source and "DB_URL = None" in first.source
    first.source = f"RUN_FOLDER = {run_folder!r}\nDB_URL = {db_url!r}\n"
    # run where Jupyter would (notebooks/); the package is importable from anywhere (pip install -e .)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def images(nb) -> list[str]:
    return [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


def errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_match_report_on_the_latest_run_of_the_default_database(demo_run, monkeypatch):
    """No parameters: the latest run of $CRM_DEDUP_DB (here the fresh demo database)."""
    db_url, _ = demo_run
    monkeypatch.setenv("CRM_DEDUP_DB", db_url)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as `make test` exports: the notebook must still show charts
    nb = execute("match_report", None, None)
    assert errors(nb) == []
    # scores, criteria, group sizes, primary reasons, three waterfalls, precision/recall
    assert len(images(nb)) >= 8
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "No known truth" not in text


def test_data_quality_on_a_run_folder(demo_run):
    db_url, folder = demo_run
    nb = execute("data_quality", folder, db_url)
    assert errors(nb) == []
    assert len(images(nb)) >= 2  # per field, per source


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_the_paired_py_without_outputs(name):
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert [c.source for c in ipynb.cells] == [c.source for c in py.cells], \
        f"run `jupytext --sync notebooks/{name}.py`"
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in ipynb.cells if c.cell_type == "code"), f"clear the outputs of notebooks/{name}.ipynb"
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
