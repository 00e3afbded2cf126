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


def test_match_report_opens_the_run_the_summary_names(demo_run, tmp_path, monkeypatch):
    """The summary's command sets $CRM_DEDUP_RUN: the notebook opens that run, not the latest of a
    database (here $CRM_DEDUP_DB has no run at all), and says why it shows no truth."""
    from crm.store import Store

    _, folder = demo_run
    empty = f"sqlite:///{tmp_path}/empty.db"
    Store(empty).migrate()
    monkeypatch.setenv("CRM_DEDUP_DB", empty)
    monkeypatch.setenv("CRM_DEDUP_RUN", folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = execute("match_report", None, None)
    assert errors(nb) == []
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert f"at {folder}>" in text  # the Run's repr
    assert "No database holding this run was given" in text


def test_the_summary_command_starts_jupyter_lab_of_the_install(tmp_path):
    """The command the run summary prints names JupyterLab in .venv: `make install` puts it there."""
    import shlex
    import subprocess

    from scoring.report import notebook_command

    words = shlex.split(notebook_command(tmp_path, "sqlite:///data/crm.db"))
    # every path absolute: the command works from any directory
    assert words[:2] == [f"CRM_DEDUP_RUN={tmp_path.resolve()}", f"CRM_DEDUP_DB=sqlite:///{Path('data/crm.db').resolve()}"]
    # a password is not printed: the command takes the URL from the environment
    assert 'CRM_DEDUP_DB="$CRM_DEDUP_DB"' in notebook_command(tmp_path, "postgresql+psycopg://bob:S3cret@db/crm")
    program = words[2:4]
    assert program == [str(ROOT / ".venv/bin/jupyter"), "lab"] and words[4] == str(ROOT / "notebooks/match_report.ipynb")
    done = subprocess.run([program[0], "lab", "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip()[:1].isdigit(), done.stderr
