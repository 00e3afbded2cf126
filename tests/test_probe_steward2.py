"""What a steward's second probe found: `undo --all` listed only the merges it could not undo (now one line per
merge undone: its group, records and merge id, then the batch summary); `find --input` named line 4 for an empty id
on line 5 (it counted data rows, not the file's lines: blank lines and cells over several lines were missed);
`sqlite:///tmp/x.db` (a relative path) said "no database at tmp/x.db" without saying where that is, nor that four
slashes name /tmp/x.db; a run's summary called every pending group it found again "new"."""

from __future__ import annotations

import contextlib
import io

import pytest
from typer.testing import CliRunner

from crm import proposals
from crm.store import Store, StoreError
from matchers.table import MappingError, RoleTable
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.testing import SAMPLE_GROUPS, load_sample
from pipelines.cli import app
from scoring.files import read_table


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- undo --all: a line per merge undone ---------------------------------------------------------------------------

def test_undo_all_lists_each_merge_undone_with_its_group_and_records(store):
    load_sample(store)
    plans = plan_groups(store, "contact", SAMPLE_GROUPS["contact"], MergeSettings(conflict_policy="keep_primary"),
                        group_ids={10: "g-ten", 13: "g-13"})
    ids = [r.merge_id for r in apply_batch(store, plans, 1, "b7")]
    result = invoke("undo", "--all", "b7", "--db", store.url)
    assert result.exit_code == 0, result.output
    # newest first, as undone
    assert result.output.rstrip().splitlines() == [
        f"  merge #{ids[1]}: undone: group g-13, contacts #13 <- #14",
        f"  merge #{ids[0]}: undone: group g-ten, contacts #10 <- #11, #12",
        "Batch b7: 2 undone"], result.output


# -- find --input: an empty id is named by the file's own line -----------------------------------------------------

def _lines(path, text: str):
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_find_input_does_not_name_a_wrong_line_for_an_empty_id(tmp_path):
    f = _lines(tmp_path / "people.csv", "id,first_name,phone\n1,Иван,+79161234567\n2,Иван,89161234567\n\n"
                                        ",Анна,+79035550000\n")
    r = invoke("find", "--input", f, "--id-column", "id", "--map", "first_name=first_name", "--map", "phone=phone",
               "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    # the row on line 5 is the third data row (the blank line 4 is no row): named by its line, never "line 4"
    assert f"--id-column 'id' is empty on line 5 of {f}" in r.output, r.output
    assert "line 4" not in r.output and "rows 4" not in r.output


@pytest.mark.parametrize("sep_line", [False, True])
def test_an_empty_id_is_named_by_its_line_when_the_frame_says_which_file_it_came_from(tmp_path, sep_line):
    # a blank line, a cell over two lines, CRLF line ends and (Excel) a sep= first line: pandas' row
    # positions and the file's lines part ways at each
    text = ("sep=;\r\n" if sep_line else "") + ("id;first_name;comments\r\n1;Иван;ok\r\n\r\n;Анна;\"two\r\nlines\"\r\n"
                                                "3;Пётр;x\r\n;Олег;y\r\n")
    f = _lines(tmp_path / "p.csv", text)
    frame = read_table(f)
    assert frame["first_name"].tolist() == ["Иван", "Анна", "Пётр", "Олег"]  # (as pandas read it)
    # (read_table says which file and how it was read)
    assert frame.attrs["source"] == {"path": str(f), "encoding": "utf-8-sig", "sep": ";", "skiprows": int(sep_line)}
    with pytest.raises(MappingError) as err:
        RoleTable.from_frame("contact", frame, {"first_name": "first_name"}, "id")
    at = int(sep_line)
    assert str(err.value) == (f"--id-column 'id' is empty on lines {4 + at}, {7 + at} of {f}; "
                              "every record needs its id."), str(err.value)


# -- a relative SQLite path: where it was looked for -------------------------------------------------------------

def test_a_relative_sqlite_path_names_the_absolute_path_and_the_four_slashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as err:
        Store("sqlite:///tmp/x.db", must_exist=True)
    message = str(err.value)
    assert f"There is no database at {tmp_path / 'tmp' / 'x.db'} (tmp/x.db is relative to the working directory; " \
           "sqlite:////tmp/x.db with four slashes names the absolute path /tmp/x.db)" in message, message
    r = invoke("history", "--db", "sqlite:///tmp/x.db")
    assert r.exit_code == 2 and str(tmp_path / "tmp" / "x.db") in r.output and "sqlite:////tmp/x.db" in r.output
    # an absolute path is named as it is, without the hint
    with pytest.raises(StoreError) as err:
        Store(f"sqlite:///{tmp_path}/none.db", must_exist=True)
    assert f"There is no database at {tmp_path / 'none.db'}. Create one" in str(err.value)
    assert "four slashes" not in str(err.value)


# -- a run's summary: pending groups found again are not new ------------------------------------------------------

def _row(i: int, members: list[int]) -> dict:
    return {"id": f"contact-{i}-{'-'.join(map(str, members))}", "entity_type": "contact", "tier": "certain",
            "score": 0.99, "primary_id": i, "member_ids": members, "responsible_ids": [], "primary_reason": "oldest",
            "criteria": "phone", "pairs": [], "plan": {"run": 1}}


def test_a_runs_summary_tells_pending_groups_found_again_from_new_ones(store, tmp_path):
    from pipelines.run import print_summary

    proposals.start_run(store, "r1", ["contact"], str(tmp_path))
    first = proposals.replace_pending(store, "r1", ["contact"], [_row(1, [1, 2]), _row(3, [3, 4]), _row(5, [5, 6]),
                                                                 _row(7, [7, 8])])
    proposals.finish_run(store, "r1", "completed")
    assert first["same_as_before"] == 0 and first["inserted"] == 4
    proposals.set_status(store, [_row(7, [7, 8])["id"]], "approved")
    proposals.start_run(store, "r2", ["contact"], str(tmp_path))
    # 1 and 3 found again; 5 not found (gone); 9 new; 5 grew by a record (another id: new); 7 decided (kept)
    counts = proposals.replace_pending(store, "r2", ["contact"], [_row(1, [1, 2]), _row(3, [3, 4]), _row(9, [9, 10]),
                                                                  _row(5, [5, 6, 11]), _row(7, [7, 8])])
    assert counts == {"removed": 3, "inserted": 4, "kept": 1, "waiting": 0, "same_as_before": 2}
    summary = {"run_id": "r2", "folder": str(tmp_path), "entities": {}, "peak_rss_mb": 1.0,
               "notebook": "n.ipynb", "proposals": {**counts, "plans_reused": 2}}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_summary(summary)
    line = next(t for t in printed.getvalue().splitlines() if t.startswith("Proposals stored"))
    assert line == ("Proposals stored: 4 pending groups (2 as before, 2 new; 1 older pending gone, 1 already decided); "
                    "2 merge plans taken from the last run, their rows unchanged"), line
