"""What a data steward's day with the CLI found: `import` reads the delimiter of Excel's `sep=;` first line (it
took that line for the header and refused the file); `import --update` keeps a record's responsible and a lead's
links where the file names a user or record the database lacks (it emptied them, unlisted) and lists the cells; a
row of delimiters only is a blank line, and the header repeated is not "id id"; --errors in a folder not made yet
is written (it crashed after the rows went in); `check --input` counts the rows already in the database apart (they
were "new records that look like existing ones"); approving an unknown group names the command that lists the ids;
`undo --all` of a batch undone already says none of it is applied; a run asked to be --incremental that ran in full
says so; a group holding a record deleted since the run says it cannot merge (approved, it failed again and again:
"... removed already) Re-planned")."""

from __future__ import annotations

import contextlib
import csv

import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from merge_rules import MergeSettings, apply_batch, plan_groups
from merge_rules.testing import SAMPLE_GROUPS, load_sample
from pipelines.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(path, rows, delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def _problems(path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8-sig")))


# -- import --update: what the file names wrongly is not taken from the record -----------------------------------

def test_import_update_keeps_the_responsible_a_file_names_wrongly_and_lists_the_cell(store, tmp_path):
    load_sample(store)
    f = _write(tmp_path / "upd.csv", [["id", "responsible_id", "post"],
                                      ["10", "99", "Президент"],                  # no user 99
                                      ["14", "Иван Неизвестный", "CEO"],          # no user of that name
                                      ["15", "Пётр Сидоров", "Бухгалтер"]])       # a user's name: applied
    errors = tmp_path / "bad.csv"
    r = invoke("import", f, "--entity", "contact", "--update", "--db", store.url, "--errors", errors)
    assert r.exit_code == 0, r.output
    assert "3 updated" in r.stdout and "0 rejected" in r.stdout, r.stdout
    c = schema.contacts
    with store.engine.connect() as conn:
        now = {row.id: (row.responsible_id, row.post) for row in
               conn.execute(sa.select(c.c.id, c.c.responsible_id, c.c.post).where(c.c.id.in_([10, 14, 15])))}
    # the rest of each row applied; the responsible the database does not know is not taken from the record
    assert now == {10: (2, "Президент"), 14: (4, "CEO"), 15: (3, "Бухгалтер")}
    listed = _problems(errors)
    assert [(p["line"], p["id"], p["column"], p["value"]) for p in listed] == [
        ("2", "10", "responsible_id", "99"), ("3", "14", "responsible_id", "Иван Неизвестный")]
    assert listed[0]["reason"] == ("responsible id 99 is not a user; contact #10 keeps the responsible_id it has "
                                   "(the rest of the row is applied)")
    assert "(responsible_id 2)" in r.stdout


def test_import_update_of_a_new_record_leaves_an_unknown_responsible_empty_and_lists_it(store, tmp_path):
    load_sample(store)
    f = _write(tmp_path / "new.csv", [["id", "last_name", "responsible_id"], ["70", "Орлова", "99"]])
    r = invoke("import", f, "--entity", "contact", "--update", "--db", store.url)
    assert r.exit_code == 0, r.output
    assert "1 imported" in r.stdout and "left out of rows imported (responsible_id 1)" in r.stdout, r.stdout
    # (a new record has none to keep)
    assert "new.csv line 2 (id 70), column 'responsible_id': responsible id 99 is not a user; the row is imported " \
           "with its responsible_id left empty" in r.output, r.output
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.contacts.c.responsible_id)
                            .where(schema.contacts.c.id == 70)).scalar_one() is None


def test_import_update_keeps_a_lead_link_to_a_record_the_database_lacks(store, tmp_path):
    load_sample(store)
    f = _write(tmp_path / "leads.csv", [["id", "contact_id", "company_id", "title"],
                                        ["600", "999", "", "Иванов Иван: заявка 2"],
                                        ["602", "", "888", "Петров: третья заявка"]])
    errors = tmp_path / "bad.csv"
    r = invoke("import", f, "--entity", "lead", "--update", "--db", store.url, "--errors", errors)
    assert r.exit_code == 0, r.output
    le = schema.leads
    with store.engine.connect() as conn:
        now = {row.id: (row.contact_id, row.company_id, row.title) for row in
               conn.execute(sa.select(le.c.id, le.c.contact_id, le.c.company_id, le.c.title)
                            .where(le.c.id.in_([600, 602])))}
    assert now == {600: (11, None, "Иванов Иван: заявка 2"), 602: (None, 21, "Петров: третья заявка")}
    listed = _problems(errors)
    assert [(p["line"], p["id"], p["column"], p["value"]) for p in listed] == [
        ("2", "600", "contact_id", "999"), ("3", "602", "company_id", "888")]
    assert listed[0]["reason"] == "contact_id 999 is not in the database; lead #600 keeps the contact_id it has " \
                                  "(the rest of the row is applied)"


# -- a messy file: a row of delimiters only, the header repeated ------------------------------------------------

def test_import_takes_a_row_of_delimiters_only_as_a_blank_line_and_names_no_id_for_a_header_again(db_url, tmp_path):
    assert invoke("init", "--db", db_url).exit_code == 0
    header = ["id", "last_name", "first_name", "phone"]
    f = _write(tmp_path / "messy.csv", [header,
                                        ["1", "Орлова", "Анна", "+7 916 000-00-31"],
                                        ["", "", "", ""],                     # Excel's ";;;" of an empty row
                                        header,                               # the header pasted again
                                        ["2", "Smith", "John", "+1 646 462 9323"],
                                        [" ", "", " ", ""]], delimiter=";")
    r = invoke("import", f, "--entity", "contact", "--db", db_url)
    assert r.exit_code == 0, r.output
    assert "3 contact rows read" in r.stdout and "2 imported" in r.stdout and "1 rejected" in r.stdout, r.stdout
    assert "messy.csv line 4: repeats the header line; skipped" in r.output, r.output
    assert "(id id)" not in r.output and "lacks a name" not in r.output


def test_import_reads_the_delimiter_an_excel_sep_line_names_and_counts_lines_as_the_file(store, tmp_path):
    load_sample(store)
    lines = ["sep=;",
             "ID;Фамилия;Имя;Дата рождения;Мобильный телефон;Ответственный",
             "7001;Романов;Лев;01.02.1975;+7 (916) 555-12-07, +7 (916) 555-12-08;Мария Иванова",
             "7002;;;31.04.1990;;Пётр Сидоров",                          # rejected: no name, phone or e-mail
             "7003;Ёлкина;Алёна;31.04.1990;+7 916 555 1209;John Smith"]   # its birthdate left out
    f = tmp_path / "b24.csv"
    f.write_text("\r\n".join(lines) + "\r\n", encoding="cp1251")
    errors = tmp_path / "bad.csv"
    r = invoke("import", f, "--entity", "contact", "--preset", "bitrix24", "--db", store.url, "--errors", errors)
    assert r.exit_code == 0, r.output
    assert "3 contact rows read (Windows-1251, ';', preset bitrix24): 2 imported" in r.stdout, r.output
    assert [(p["line"], p["id"]) for p in _problems(errors)] == [("4", "7002"), ("5", "7003")]
    rows = list(csv.reader(open(errors.with_name("bad.rows.csv"), encoding="utf-8-sig"), delimiter=";"))
    assert rows[0][2:] == lines[1].split(";") and [row[0] for row in rows[1:]] == ["4"], rows
    c, m = schema.contacts, schema.communications
    with store.engine.connect() as conn:
        got = {row.id: (row.last_name, row.responsible_id) for row in
               conn.execute(sa.select(c.c.id, c.c.last_name, c.c.responsible_id).where(c.c.id > 7000))}
        phones = conn.execute(sa.select(sa.func.count()).where(m.c.entity_type == "contact", m.c.entity_id == 7001,
                                                               m.c.type == "phone")).scalar_one()
    assert got == {7001: ("Романов", 2), 7003: ("Ёлкина", 4)} and phones == 2
    # a delimiter given wins, the sep= line is still no part of the table
    f.write_text("sep=,\r\n" + "\r\n".join(lines[1:3]).replace("7001", "7004") + "\r\n", encoding="cp1251")
    r = invoke("import", f, "--entity", "contact", "--preset", "bitrix24", "--delimiter", ";", "--db", store.url)
    assert r.exit_code == 0 and "1 contact rows read (Windows-1251, ';', preset bitrix24): 1 imported" in r.stdout, \
        r.output


# -- import --errors where it cannot be written as it is ----------------------------------------------------------

def test_import_errors_in_a_new_folder_is_written_and_one_that_cannot_be_is_refused_before_importing(db_url, tmp_path):
    assert invoke("init", "--db", db_url).exit_code == 0
    f = _write(tmp_path / "in.csv", [["id", "last_name", "birthdate"], ["1", "Орлова", "30.02.1985"],
                                     ["x", "Седов", ""]])
    errors = tmp_path / "reports" / "today" / "bad.csv"  # (a folder not made yet)
    r = invoke("import", f, "--entity", "contact", "--db", db_url, "--errors", errors)
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "1 imported" in r.stdout and "1 rejected" in r.stdout
    assert [p["line"] for p in _problems(errors)] == ["2", "3"] and errors.with_name("bad.rows.csv").exists()
    # a folder given for the file: refused before a row goes in (after it, the rows would be in and unreported)
    f2 = _write(tmp_path / "in2.csv", [["id", "last_name"], ["2", "Белова"]])
    r = invoke("import", f2, "--entity", "contact", "--db", db_url, "--errors", tmp_path / "reports")
    assert r.exit_code == 2 and f"cannot write --errors {tmp_path / 'reports'}" in r.output, r.output
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(schema.contacts.c.id)).scalars().all() == [1]
    finally:
        engine.dispose()
    # nothing to report: no empty file left where none was
    ok = _write(tmp_path / "ok.csv", [["id", "last_name"], ["3", "Лебедев"]])
    r = invoke("import", ok, "--entity", "contact", "--db", db_url, "--errors", tmp_path / "none" / "bad.csv")
    assert r.exit_code == 0 and not (tmp_path / "none" / "bad.csv").exists(), r.output


# -- check --input: rows already in the database are no new records, nor duplicate pairs ------------------------

def test_check_counts_the_rows_already_in_the_database_apart_from_the_new_records(store, tmp_path, monkeypatch):
    """`check` runs its task's function here, without Prefect around it (test_flows runs it with Prefect)."""
    from crm.csv_io import export_csv
    from pipelines import flows, prefect_api

    @contextlib.contextmanager
    def no_server():
        yield lambda: None

    def check_here(db=None, entity="contact", csv_path=None, preset=None, mapping=None, settings_path=None,
                   out="data/check.csv", encoding=None, portal_timezone=None):
        return flows.check_task.fn(db, entity, csv_path, preset, mapping, settings_path, out, encoding,
                                   portal_timezone)

    monkeypatch.setattr(prefect_api, "early_server", no_server)
    monkeypatch.setattr(flows, "check_flow", check_here)
    monkeypatch.chdir(tmp_path)
    load_sample(store)
    export_csv(store, tmp_path / "all.csv", "contact")
    rows = list(csv.reader(open(tmp_path / "all.csv", encoding="utf-8")))
    by_id = {r[0]: r for r in rows[1:]}
    _write(tmp_path / "there.csv", [rows[0], by_id["10"], by_id["11"]])
    out = tmp_path / "check.csv"
    r = invoke("check", "--input", tmp_path / "there.csv", "--db", store.url, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("No new record looks like an existing one (0 checked; 2 row(s) of the file are "
                               "already in the database by their id: import rejects them, import --update updates "
                               f"the records from them; details in {out})"), r.stdout
    assert "line 2 Иванов Иван Иванович: already in the database (contact #10)" in r.stdout
    # with a new row: it alone is the new record checked
    _write(tmp_path / "mixed.csv", [rows[0], by_id["10"], by_id["11"], ["70", *by_id["14"][1:]]])
    r = invoke("check", "--input", tmp_path / "mixed.csv", "--db", store.url, "--out", out)
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first.startswith("1 of 1 new record(s) look like existing ones (") and "; 2 row(s) of the file are " \
        "already in the database by their id" in first, r.stdout
    assert "line 4 Smith Jon Paul  ~  contact #14 Smith Jon Paul: " in r.stdout, r.stdout


# -- approve: an unknown group id -------------------------------------------------------------------------------

def test_approve_an_unknown_group_names_the_command_that_lists_group_ids(store):
    load_sample(store)
    r = invoke("approve", "contact-nope", "--db", store.url)
    assert r.exit_code == 2
    assert "no group with id 'contact-nope'" in r.output and "nothing approved" in r.output
    assert "(`crm-dedup groups` and the review page list the group ids)" in r.output, r.output


# -- undo --all of a batch undone already ------------------------------------------------------------------------

def test_undo_all_of_a_batch_undone_already_says_none_of_it_is_applied(store):
    load_sample(store)
    plans = plan_groups(store, "contact", SAMPLE_GROUPS["contact"], MergeSettings(conflict_policy="keep_primary"))
    results = apply_batch(store, plans, 1, "b1")
    assert {r.status for r in results} == {"applied"}
    first = invoke("undo", "--all", "b1", "--db", store.url)
    assert first.exit_code == 0 and first.output.rstrip().endswith(f"Batch b1: {len(results)} undone"), first.output
    again = invoke("undo", "--all", "b1", "--db", store.url)
    assert again.exit_code == 0, again.output
    assert again.output.strip() == (f"Batch b1: nothing to undo ({len(results)} undone); none of its merges is "
                                    "applied now"), again.output


# -- a member deleted since the run: the group says it cannot merge, and waits for the next run ------------------

def test_a_group_whose_member_was_deleted_since_says_it_cannot_merge_until_the_next_run(store, tmp_path):
    from pipelines.apply import apply_approved
    from test_apply_concurrency import AUTO, propose, settings_file

    load_sample(store)
    (gid,) = propose(store, tmp_path, plan_groups(store, "contact", [(10, [10, 11, 12])], AUTO))
    assert invoke("approve", gid, "--db", store.url).exit_code == 0
    with store.engine.begin() as conn:  # (a script, or a person in the CRM, removed #12 meanwhile)
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 12).values(deleted_at=sa.func.now()))
    settings = settings_file(tmp_path, "keep_primary")
    (stale,) = apply_approved(store.url, "b1", 1, settings)
    assert stale["status"] == "stale" and "contact #12 was deleted" in stale["message"], stale
    assert stale["message"].endswith("`crm-dedup run` regroups its records."), stale["message"]
    listed = invoke("groups", "--db", store.url)
    assert f"{gid}  pending" in listed.output
    assert "    cannot be merged as planned: contact #12 was deleted on " in listed.output, listed.output
    # approved again all the same: it fails as the list said, and the message reads as sentences
    assert invoke("approve", gid, "--db", store.url).exit_code == 0
    (failed,) = apply_approved(store.url, "b2", 1, settings)
    assert failed["status"] == "failed", failed
    told = ("(merged or removed already). Re-planned; the group is pending again for a person to approve. The new "
            "plan cannot be merged as it is either: the next `crm-dedup run` regroups its records.")
    assert told in failed["message"], failed["message"]


# -- run --incremental that ran in full says so where the summary is read ---------------------------------------

def test_run_asked_to_be_incremental_says_which_entity_types_ran_in_full(store, monkeypatch, tmp_path):
    """The CLI around the flow (its summary as dedup_flow returns it; test_probe_polish runs the real fallback)."""
    from pipelines import prefect_api, run

    why = "no completed run keeps the contact records it normalised: they are all normalised"
    summary = {"entities": {"contact": {"incremental": False, "incremental_fallback": why},
                            "company": {"incremental": True, "changed_records": 3}}}
    asked = []

    @contextlib.contextmanager
    def no_server():
        yield lambda: None

    monkeypatch.chdir(tmp_path)  # (the default runs_dir, data/runs, is made where the command runs)
    monkeypatch.setattr(prefect_api, "early_server", no_server)
    monkeypatch.setattr(run, "check_dask", lambda settings: None)
    monkeypatch.setattr(run, "run_dedup_cli", lambda db, entity, settings, incremental: asked.append(incremental)
                        or summary)
    for command in ("run", "find"):
        r = invoke(command, "--incremental", "--db", store.url)
        assert r.exit_code == 0, r.output
        assert f"contact: run in full, not incrementally: {why}" in r.output, r.output
        assert "company: run in full" not in r.output
    assert asked == [True, True]
