"""import --update writes only what a newer export changed (crm/csv_io.py ``_Updates``): an unchanged
record is not touched, communications keep their ids, earlier merges can still be undone; the bitrix24
company preset keeps the website; the errors CSV names the id it refuses. Both backends."""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import schema
from crm.csv_io import export_csv, import_csv
from crm.demo import DemoSizes, generate_demo
from merge_rules import MergeSettings, apply_batch, plan_groups, undo_batch, undo_merge
from merge_rules.testing import dump_crm, load_sample

COMM = schema.communications


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def comm_rows(store, entity: str, ids=None) -> list[tuple]:
    """(id, entity_id, type, kind, value) in id order."""
    q = sa.select(COMM.c.id, COMM.c.entity_id, COMM.c.type, COMM.c.kind, COMM.c.value).where(
        COMM.c.entity_type == entity).order_by(COMM.c.id)
    if ids is not None:
        q = q.where(COMM.c.entity_id.in_(ids))
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(q)]


def record(store, entity: str, id_: int) -> dict:
    t = schema.ENTITY_TABLES[entity]
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(t).where(t.c.id == id_)).mappings().one())


def small_demo(store) -> None:
    generate_demo(store, DemoSizes(contacts=200, companies=60, leads=60, managers=3), seed=5)


def edit(path: Path, out: Path, id_: int, column: str, value: str) -> Path:
    rows = read_csv(path)
    header = rows[0]
    (row,) = [r for r in rows[1:] if r[0] == str(id_)]
    row[header.index(column)] = value
    return write_csv(out, rows)


@pytest.mark.parametrize("preset", [None, "bitrix24"])
def test_update_with_an_unchanged_export_changes_nothing(store, tmp_path, preset):
    small_demo(store)
    # an empty or blank text (the demo, like Bitrix24, has some) is written as an empty cell, read as NULL
    t = schema.contacts
    with store.engine.begin() as conn:
        blank = sorted(conn.execute(sa.select(t.c.id).where(t.c.deleted_at.is_(None))).scalars())[:2]
        conn.execute(t.update().where(t.c.id.in_(blank)).values(last_name="", comments="  "))
    before = dump_crm(store)
    for entity in ("contact", "company", "lead"):
        n = export_csv(store, tmp_path / f"{entity}.csv", entity, preset=preset)
        report = import_csv(store, tmp_path / f"{entity}.csv", entity, preset=preset, update=True)
        assert (report.rows_read, report.updated, report.unchanged, report.rejected) == (n, 0, n, 0), entity
        assert report.communications == 0
        assert f"0 new, 0 updated, {n:,} as in the file (left untouched) with 0 phones" in report.summary()
    assert dump_crm(store) == before  # the same communications ids and order, the same modified_at


def test_one_edited_cell_updates_one_record_and_keeps_its_communications(store, tmp_path):
    small_demo(store)
    # a contact with several communications
    by_record = Counter(r[1] for r in comm_rows(store, "contact"))
    target = min(i for i, n in by_record.items() if n >= 2)
    export_csv(store, tmp_path / "export.csv", "contact")
    edited = edit(tmp_path / "export.csv", tmp_path / "edited.csv", target, "post", "Главный инженер проекта")
    others_before = [r for r in comm_rows(store, "contact") if r[1] != target]
    its_comms = comm_rows(store, "contact", [target])
    report = import_csv(store, edited, "contact", update=True)
    assert (report.updated, report.unchanged, report.communications) == (1, report.rows_read - 1, 0)
    assert ", 1 updated, " in report.summary()
    assert record(store, "contact", target)["post"] == "Главный инженер проекта"
    assert comm_rows(store, "contact", [target]) == its_comms
    assert [r for r in comm_rows(store, "contact") if r[1] != target] == others_before


def test_a_phone_added_or_removed_in_the_file_is_added_or_removed(store, tmp_path):
    first = write_csv(tmp_path / "first.csv", [
        ["id", "last_name", "phone:work", "phone:work", "phone:work", "email:work"],
        ["1", "Petrov", "+7 495 100-00-01", "+7 495 100-00-02", "+7 495 100-00-03", "petrov@mail.ru"],
        ["2", "Sidorov", "+7 495 200-00-01", "", "", "sidorov@mail.ru"],
        ["3", "Orlov", "+7 495 300-00-01", "+7 495 300-00-03", "", "orlov@mail.ru"]])
    assert import_csv(store, first, "contact").imported == 3
    held = {(r[1], r[4]): r[0] for r in comm_rows(store, "contact")}
    changed = write_csv(tmp_path / "changed.csv", [
        ["id", "last_name", "phone:work", "phone:work", "phone:work", "email:work"],
        ["1", "Petrov", "+7 495 100-00-01", "+7 495 100-00-03", "", "petrov@mail.ru"],      # middle one removed
        ["2", "Sidorov", "+7 495 200-00-01", "+7 495 200-00-02", "", "sidorov@mail.ru"],    # one added at the end
        ["3", "Orlov", "+7 495 300-00-01", "+7 495 300-00-02", "+7 495 300-00-03", "orlov@mail.ru"]])  # in the middle
    report = import_csv(store, changed, "contact", update=True)
    assert (report.updated, report.unchanged, report.communications) == (3, 0, 3)
    after = comm_rows(store, "contact")
    # each record's phones read in id order are the file's, in the file's order
    for rid, row in ((1, 1), (2, 2), (3, 3)):
        file_row = read_csv(changed)[row]
        assert [r[4] for r in after if r[1] == rid and r[2] == "phone"] == [v for v in file_row[2:5] if v]
    ids = {(r[1], r[4]): r[0] for r in after}
    # kept: the rows whose value stays in its place (the e-mails, the first phones, #1's third phone)
    for key in [(1, "+7 495 100-00-01"), (1, "+7 495 100-00-03"), (1, "petrov@mail.ru"), (2, "+7 495 200-00-01"),
                (2, "sidorov@mail.ru"), (3, "+7 495 300-00-01"), (3, "orlov@mail.ru")]:
        assert ids[key] == held[key], key
    assert (1, "+7 495 100-00-02") not in ids and ids[(2, "+7 495 200-00-02")] not in held.values()
    # the same file again changes nothing
    again = import_csv(store, changed, "contact", update=True)
    assert (again.updated, again.unchanged) == (0, 3) and comm_rows(store, "contact") == after


def test_a_merge_batch_made_before_an_update_that_did_not_touch_it_is_undone_without_force(store, tmp_path):
    small_demo(store)
    truth, contacts = schema.demo_truth, schema.contacts
    with store.engine.connect() as conn:
        clusters: dict[int, list[int]] = {}
        for cluster, eid in conn.execute(sa.select(truth.c.cluster, truth.c.entity_id)
                                         .where(truth.c.entity_type == "contact")):
            clusters.setdefault(cluster, []).append(eid)
    groups = [(min(m), sorted(m)) for m in clusters.values() if len(m) > 1]
    assert len(groups) >= 5, "the demo should hold duplicate contacts"
    plans = plan_groups(store, "contact", groups, MergeSettings(conflict_policy="keep_primary"))
    results = apply_batch(store, plans, 1, "before-update")
    assert Counter(r.status for r in results) == {"applied": len(groups)}
    merged = {i for _, members in groups for i in members}
    with store.engine.connect() as conn:
        untouched = min(set(conn.execute(sa.select(contacts.c.id).where(contacts.c.deleted_at.is_(None))).scalars())
                        - merged)
    export_csv(store, tmp_path / "export.csv", "contact")
    edited = edit(tmp_path / "export.csv", tmp_path / "edited.csv", untouched, "comments", "позвонить в понедельник")
    report = import_csv(store, edited, "contact", update=True)
    assert report.updated == 1
    undone = undo_batch(store, "before-update", 1)
    assert Counter(u.status for u in undone) == {"undone": len(groups)}, [u.message for u in undone][:3]
    assert record(store, "contact", untouched)["comments"] == "позвонить в понедельник"


def test_bitrix24_company_round_trip_keeps_the_website(store, tmp_path):
    first = write_csv(tmp_path / "companies.csv", [
        ["id", "title", "tax_id", "website", "web:work", "phone:work", "created_at", "modified_at"],
        ["1", "ООО «Ромашка»", "7707083893", "romashka.ru", "https://romashka.ru/about", "+7 495 123-45-67",
         "2020-01-01 10:00:00", "2021-02-03 04:05:06"],
        ["2", "ЗАО Лютик", "", "lutik.com", "", "", "2020-01-01 10:00:00", "2020-01-01 10:00:00"],
        ["3", "ИП Петров", "", "", "", "+7 495 765-43-21", "2020-01-01 10:00:00", "2020-01-01 10:00:00"]])
    assert import_csv(store, first, "company").imported == 3
    before = dump_crm(store)
    bx = tmp_path / "bx.csv"
    assert export_csv(store, bx, "company", preset="bitrix24", encoding="cp1251", delimiter=";") == 3
    with open(bx, encoding="cp1251", newline="") as f:
        header, *rows = list(csv.reader(f, delimiter=";"))
    assert "Сайт" in header and [r[header.index("Сайт")] for r in rows] == ["romashka.ru", "lutik.com", ""]
    # read back with --update: the records are as the file has them, nothing is written
    report = import_csv(store, bx, "company", preset="bitrix24", update=True)
    assert (report.updated, report.unchanged) == (0, 3) and dump_crm(store) == before
    # read back into an empty database: the website is there again
    store.truncate_crm()
    assert import_csv(store, bx, "company", preset="bitrix24").imported == 3
    assert [record(store, "company", i)["website"] for i in (1, 2, 3)] == ["romashka.ru", "lutik.com", None]
    assert [(r[1], r[2], r[3], r[4]) for r in comm_rows(store, "company")] == [
        (1, "phone", "work", "+7 495 123-45-67"), (1, "web", "work", "https://romashka.ru/about"),
        (3, "phone", "work", "+7 495 765-43-21")]


def test_the_errors_csv_names_the_id_already_in_the_database(store, tmp_path):
    first = write_csv(tmp_path / "first.csv", [["id", "last_name", "first_name"], ["7", "Petrov", "Ivan"],
                                               ["8", "Sidorov", "Oleg"]])
    assert import_csv(store, first, "contact").imported == 2
    report = import_csv(store, first, "contact")
    assert report.rejected == 2
    report.write_problems(tmp_path / "bad.csv")
    header, *rows = read_csv(tmp_path / "bad.csv")
    assert header == ["line", "id", "column", "value", "reason"]
    assert [r[:4] for r in rows] == [["2", "7", "id", "7"], ["3", "8", "id", "8"]]
    assert all("already in the database" in r[4] for r in rows)
    assert str(report.problems[0]).startswith("first.csv line 2 (id 7), column 'id': ")


def test_an_edited_export_dates_the_change_now_and_a_newer_export_keeps_its_date(store, tmp_path):
    """Export, edit a cell, import --update: the record's modified_at was set back to the export's
    (older) date, misleading the 'most recently modified' primary rule (found by helper-60)."""
    import datetime as dt

    small_demo(store)
    export_csv(store, tmp_path / "c.csv", "contact")
    first = int(read_csv(tmp_path / "c.csv")[1][0])
    was = record(store, "contact", first)["modified_at"]
    start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    import_csv(store, edit(tmp_path / "c.csv", tmp_path / "e.csv", first, "post", "Главный инженер"), "contact",
               update=True)
    now = record(store, "contact", first)
    assert now["post"] == "Главный инженер" and now["modified_at"] >= start > was
    later = "2031-05-06T07:08:09"
    edited = edit(tmp_path / "e.csv", tmp_path / "n.csv", first, "post", "Технический директор")
    import_csv(store, edit(edited, tmp_path / "n2.csv", first, "modified_at", later), "contact", update=True)
    assert record(store, "contact", first)["modified_at"] == dt.datetime(2031, 5, 6, 7, 8, 9)


def test_an_update_file_of_ids_and_the_columns_to_change_is_enough(store, tmp_path):
    """`id,post` to change posts was refused: the file had no name, phone or e-mail column (found by
    helper-48 and helper-60). For records in the database it is all an update needs; a new id in it
    lacks what a new record needs and is refused, by its line, and the rest goes on."""
    small_demo(store)
    export_csv(store, tmp_path / "c.csv", "contact")
    first, second = (int(r[0]) for r in read_csv(tmp_path / "c.csv")[1:3])
    before = {i: record(store, "contact", i) for i in (first, second)}
    comms = comm_rows(store, "contact", [first, second])
    f = write_csv(tmp_path / "posts.csv", [["id", "post"], [str(first), "Главный инженер"], ["999999", "Никто"],
                                           [str(second), before[second]["post"] or ""]])
    report = import_csv(store, f, "contact", update=True)
    assert (report.rows_read, report.updated, report.unchanged, report.rejected) == (3, 1, 1, 1), report.summary()
    (problem,) = report.problems
    assert problem.line == 3 and "contact #999999 is not in the database, so the row would be a new record" in \
        problem.reason and problem.reason.startswith("lacks a name")
    now = record(store, "contact", first)
    assert now["post"] == "Главный инженер"
    assert {k: v for k, v in now.items() if k not in ("post", "modified_at")} == \
        {k: v for k, v in before[first].items() if k not in ("post", "modified_at")}
    assert record(store, "contact", second) == before[second]
    assert comm_rows(store, "contact", [first, second]) == comms  # no phone/e-mail column: none touched
    # without --update such a file is refused whole, as before
    import pytest

    from crm.csv_io import CsvError

    with pytest.raises(CsvError, match="has no column for .* import it with --update"):
        import_csv(store, f, "contact")


def bitrix_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="cp1251", newline="") as f:
        return list(csv.reader(f, delimiter=";"))


def write_bitrix(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="cp1251", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)
    return path


def test_kinds_the_preset_has_no_column_for_are_found_in_its_other_column(store, tmp_path):
    """Bitrix24 has no column for an e-mail or site of kind mobile: export writes them under "Другой
    e-mail" / "Другой сайт", and an update read them back as new rows of kind other, doubling them.
    They are now found among the rows of that column by value, and keep their row, id and kind."""
    small_demo(store)
    with store.engine.connect() as conn:
        ids = sorted(conn.execute(sa.select(schema.contacts.c.id)).scalars())[:3]
    extra = [("email", "mobile", "mob@example.ru"), ("email", "other", "oth@example.ru"),
             ("web", "mobile", "m.example.ru"), ("email", "mobile", " spaced@example.ru ")]
    store.insert(COMM, [{"entity_type": "contact", "entity_id": ids[0], "type": t, "kind": k, "value": v}
                        for t, k, v in extra])
    store.insert(COMM, [{"entity_type": "contact", "entity_id": ids[1], "type": "email", "kind": "mobile",
                         "value": "second@example.ru"}])
    before = dump_crm(store)
    bx = tmp_path / "bx.csv"
    n = export_csv(store, bx, "contact", preset="bitrix24", encoding="cp1251", delimiter=";")
    rows = bitrix_rows(bx)
    header = rows[0]
    first = next(r for r in rows[1:] if r[0] == str(ids[0]))
    assert "mob@example.ru" in first[header.index("Другой e-mail")]
    assert first[header.index("Другой сайт")] == "m.example.ru"
    # an unchanged export changes nothing: no new rows, the same ids and kinds, modified_at kept
    report = import_csv(store, bx, "contact", preset="bitrix24", update=True)
    assert (report.updated, report.unchanged, report.communications, report.rejected) == (0, n, 0, 0)
    assert dump_crm(store) == before
    # the file drops one mobile e-mail and adds one: the other rows keep their ids and kinds
    held = {r[4]: r for r in comm_rows(store, "contact", [ids[0]])}
    cell = first[header.index("Другой e-mail")].split(", ")
    assert "oth@example.ru" in cell and " spaced@example.ru " in cell  # (read back without its spaces)
    first[header.index("Другой e-mail")] = ", ".join([v for v in cell if v != "oth@example.ru"] + ["new@example.ru"])
    report = import_csv(store, write_bitrix(tmp_path / "e.csv", rows), "contact", preset="bitrix24", update=True)
    assert (report.updated, report.unchanged, report.communications) == (1, n - 1, 1), report.summary()
    after = {r[4]: r for r in comm_rows(store, "contact", [ids[0]])}
    assert "oth@example.ru" not in after
    assert after["new@example.ru"][3] == "other" and after["new@example.ru"][0] > max(r[0] for r in held.values())
    for value in ("mob@example.ru", " spaced@example.ru ", "m.example.ru"):
        assert after[value] == held[value]  # same id, kind mobile, spelling
    assert [r[3] for r in comm_rows(store, "contact", [ids[1]]) if r[4] == "second@example.ru"] == ["mobile"]
    # and the same file again changes nothing (the edited record's modified_at is now later than the file's)
    dumped = dump_crm(store)
    again = import_csv(store, tmp_path / "e.csv", "contact", preset="bitrix24", update=True)
    assert (again.updated, again.unchanged, again.dated_only) == (0, n - 1, 1) and dump_crm(store) == dumped


def test_a_phone_written_differently_keeps_its_row_and_takes_the_files_spelling(store, tmp_path):
    first = write_csv(tmp_path / "first.csv", [
        ["id", "last_name", "phone:work", "phone:work", "email:work"],
        ["1", "Petrov", "+7 (495) 123-45-67", "+7 495 751-64-43 доб 802", "Ivan@Mail.ru"],
        ["2", "Sidorov", "+7 495 200-00-01", "", "oleg@mail.ru"]])
    assert import_csv(store, first, "contact").imported == 2
    held = comm_rows(store, "contact")
    changed = write_csv(tmp_path / "changed.csv", [
        ["id", "last_name", "phone:work", "phone:work", "email:work"],
        ["1", "Petrov", "84951234567", "+7 495 751-64-43 доб 803", "ivan@mail.ru"],  # respelled; another extension
        ["2", "Sidorov", "+7 495 200-00-01", "", "oleg@mail.ru"]])
    report = import_csv(store, changed, "contact", update=True)
    assert (report.updated, report.unchanged, report.communications) == (1, 1, 3), report.summary()
    after = comm_rows(store, "contact", [1])
    by_id = {r[0]: r for r in after}
    phone, ext, email = held[0][0], held[1][0], held[2][0]
    # the same number and the same address keep their rows and ids, now written as in the file
    assert by_id[phone][2:] == ("phone", "work", "84951234567")
    assert by_id[email][2:] == ("email", "work", "ivan@mail.ru")
    # another extension is another line of the office: a new row (placed after the kept first phone)
    assert ext not in by_id
    assert [r[4] for r in after if r[2] == "phone"] == ["84951234567", "+7 495 751-64-43 доб 803"]
    assert comm_rows(store, "contact", [2]) == [r for r in held if r[1] == 2]
    summary = report.summary()
    assert ("1 row: a phone written differently in the file (the same number) is stored as the file writes it; "
            "its row and id are kept (first at line 2).") in summary
    assert "1 row: an e-mail written differently in the file (the same address)" in summary
    assert record(store, "contact", 1)["modified_at"] > record(store, "contact", 2)["modified_at"]
    again = import_csv(store, changed, "contact", update=True)
    assert (again.updated, again.unchanged, again.communications) == (0, 2, 0) and not again.notes
    assert comm_rows(store, "contact", [1]) == after


def test_a_record_differing_only_in_modified_at_is_left_untouched_and_said_so(store, tmp_path):
    small_demo(store)
    n = export_csv(store, tmp_path / "c.csv", "contact")
    before = dump_crm(store)
    first, second = (int(r[0]) for r in read_csv(tmp_path / "c.csv")[1:3])
    later = edit(tmp_path / "c.csv", tmp_path / "l.csv", first, "modified_at", "2031-05-06 07:08:09")
    both = edit(later, tmp_path / "b.csv", second, "modified_at", "2001-01-01 00:00:00")
    report = import_csv(store, both, "contact", update=True)
    assert (report.updated, report.unchanged, report.dated_only, report.imported) == (0, n - 2, 2, n)
    assert dump_crm(store) == before  # neither date is taken: nothing else in the records changed
    assert (f"0 new, 0 updated, {n - 2:,} as in the file (left untouched), 2 left untouched that differ from "
            "the database only in modified_at (a date alone is not applied: nothing else in them changed)"
            ) in report.summary()
    # with another change the file's (newer) date is taken, as before
    edited = edit(tmp_path / "l.csv", tmp_path / "p.csv", first, "post", "Главный инженер")
    report = import_csv(store, edited, "contact", update=True)
    assert (report.updated, report.dated_only) == (1, 0)
    assert str(record(store, "contact", first)["modified_at"]) == "2031-05-06 07:08:09"


def test_broken_rows_of_an_update_file_are_reported_by_line_and_column_and_the_rest_goes_on(store, tmp_path):
    first = write_csv(tmp_path / "first.csv", [
        ["id", "last_name", "first_name", "birthdate", "post", "phone:work"],
        *[[str(i), f"Petrov{i}", "Ivan", "1980-01-02", "", f"+7 495 100-00-0{i}"] for i in range(1, 7)]])
    assert import_csv(store, first, "contact").imported == 6
    bx = tmp_path / "bx.csv"
    export_csv(store, bx, "contact", preset="bitrix24", encoding="cp1251", delimiter=";")
    rows = bitrix_rows(bx)
    header = rows[0]
    col = header.index
    rows[1][col("Должность")] = "Инженер"                  # line 2: a good change
    rows[2][col("Дата рождения")] = "31.02.1980"           # line 3: no such day (the record keeps its birthdate)
    rows[3][col("Дата изменения")] = "вчера"               # line 4: not a date (as if the cell were empty)
    rows[4].append("лишнее")                               # line 5: a cell too many
    rows[5][col("ID")] = "abc"                             # line 6: not an id
    rows[6][col("Должность")] = "Директор"                 # line 7: a good change after the broken rows
    f = write_bitrix(tmp_path / "broken.csv", rows)
    report = import_csv(store, f, "contact", preset="bitrix24", update=True)
    assert (report.rows_read, report.updated, report.unchanged, report.rejected) == (6, 2, 2, 2), report.summary()
    assert [(p.line, p.column) for p in report.problems] == [(5, None), (6, "ID")]
    reasons = [p.reason for p in report.problems]
    assert f"has {len(header) + 1} cells where the header has {len(header)}" in reasons[0]
    assert "'abc' is not a record id" in reasons[1]
    # a bad date costs its cell, not the row
    assert [(p.line, p.column) for p in report.cell_problems] == [(3, "Дата рождения"), (4, "Дата изменения")]
    cells = [p.reason for p in report.cell_problems]
    assert "'31.02.1980' is written as a date but there is no such date" in cells[0]
    assert cells[0].endswith("contact #2 keeps the birthdate it has (the rest of the row is applied)")
    assert "'вчера' is not a date and time" in cells[1] and cells[1].endswith("as if this cell were empty")
    assert str(record(store, "contact", 2)["birthdate"]) == "1980-01-02"
    assert [record(store, "contact", i)["post"] for i in range(1, 7)] == ["Инженер", None, None, None, None,
                                                                            "Директор"]
    report.write_problems(tmp_path / "problems.csv")
    # each with the row's id (a person finds the record by it)
    assert [r[:4] for r in read_csv(tmp_path / "problems.csv")[1:]] == [
        ["3", "2", "Дата рождения", "31.02.1980"], ["4", "3", "Дата изменения", "вчера"], ["5", "4", "", ""],
        ["6", "abc", "ID", "abc"]]


# -- a file from before a merge must not take the merge back on its primary (found by a user probe) ----------

AUTO = MergeSettings(conflict_policy="keep_primary")


def merge(store, primary: int, members: list[int]) -> int:
    (result,) = apply_batch(store, plan_groups(store, "contact", [(primary, members)], AUTO), 1, f"b-{primary}-"
                            + "-".join(map(str, members)))
    assert result.status == "applied", result.message
    return result.merge_id


def merged_at(store, merge_id: int):
    m = schema.dedup_merges
    with store.engine.connect() as conn:
        return conn.execute(sa.select(m.c.merged_at).where(m.c.id == merge_id)).scalar_one()


def test_a_bitrix24_export_from_before_a_merge_does_not_undo_it_on_the_primary(store, tmp_path):
    """The probe: the primaries' rows of an export taken before the merge were applied (they lost the middle
    name, birthdate, created_at and phone the merge gave them, "1 updated"), and the merge's undo was then
    refused. They are rejected by line, naming the record and the merge; the rest of the file goes on."""
    load_sample(store)
    old = tmp_path / "contacts_v2.csv"
    assert export_csv(store, old, "contact", preset="bitrix24", encoding="cp1251", delimiter=";") == 6
    first, second = merge(store, 10, [10, 11]), merge(store, 13, [13, 14])
    ten, thirteen = record(store, "contact", 10), record(store, "contact", 13)
    # what the merges gave the primaries, and what the old file would take back
    assert str(ten["birthdate"]) == "1980-05-17" and str(ten["created_at"]) == "2022-11-05 08:30:00"
    assert thirteen["middle_name"] == "Paul"
    assert "+1 (212) 555-0100" in [r[4] for r in comm_rows(store, "contact", [13])]
    after_merges = dump_crm(store)

    report = import_csv(store, old, "contact", preset="bitrix24", update=True)
    assert (report.rows_read, report.updated, report.unchanged, report.rejected) == (6, 0, 2, 4), report.summary()
    assert dump_crm(store) == after_merges  # nothing of the merges taken back
    by_line = {p.line: p for p in report.problems}
    assert sorted(by_line) == [2, 3, 5, 6]  # #10, #11, #13, #14 (#12, #15 as in the file)
    assert "#11 was merged or deleted" in by_line[3].reason and "#14 was merged or deleted" in by_line[6].reason
    # (the rows' dates: the sample's modified_at of #10 and #13, before the merges)
    for line, rid, merge_id, was in ((2, 10, first, "2024-03-01 12:00:00"), (5, 13, second, "2021-02-03 04:05:00")):
        p = by_line[line]
        at = f"{merged_at(store, merge_id):%Y-%m-%d %H:%M:%S}"
        assert (p.column, p.value) == ("Дата изменения", was)
        assert f"contact #{rid} is the primary of merge #{merge_id} made on {at}, after this row was last " \
               f"modified ({was})" in p.reason, p.reason
        assert p.reason.endswith(f"not applied. Export again after the merge, or undo merge #{merge_id} first."), \
            p.reason
        assert str(p).startswith(f"contacts_v2.csv line {line} (id {rid}), column 'Дата изменения': contact #{rid}")
    assert "0 updated" in report.summary() and "4 rejected" in report.summary()

    # the merges can still be undone, and once undone the old file's rows apply as they always did
    assert Counter(u.status for u in undo_batch(store, "b-13-13-14", 1)
                   + undo_batch(store, "b-10-10-11", 1)) == {"undone": 2}
    rows = bitrix_rows(old)
    header = rows[0]
    (row,) = [r for r in rows[1:] if r[0] == "13"]
    row[header.index("Должность")] = "Главный инженер"
    report = import_csv(store, write_bitrix(tmp_path / "edited.csv", rows), "contact", preset="bitrix24", update=True)
    assert (report.updated, report.unchanged, report.rejected) == (1, 5, 0), report.summary()
    assert record(store, "contact", 13)["post"] == "Главный инженер"


def test_a_record_that_was_the_primary_of_several_merges_is_checked_against_each_still_applied(store, tmp_path):
    load_sample(store)
    export_csv(store, tmp_path / "before.csv", "contact")
    a = merge(store, 10, [10, 11])
    export_csv(store, tmp_path / "between.csv", "contact")
    b = merge(store, 10, [10, 12])
    after_both = dump_crm(store)

    # from before both merges: both named, to be undone newest first
    report = import_csv(store, tmp_path / "before.csv", "contact", update=True)
    (p,) = [p for p in report.problems if "#10 " in p.reason]
    assert p.line == 2 and p.column == "modified_at"
    assert (f"contact #10 is the primary of merges #{a} (made on {merged_at(store, a):%Y-%m-%d %H:%M:%S}), "
            f"#{b} (made on {merged_at(store, b):%Y-%m-%d %H:%M:%S}), after this row was last modified") in p.reason
    assert p.reason.endswith(f"Export again after the merges, or undo merges #{b} then #{a} first.")
    assert (report.rejected, report.updated) == (3, 0) and dump_crm(store) == after_both  # #10, #11, #12

    # from between them: only the later merge is newer than the row
    report = import_csv(store, tmp_path / "between.csv", "contact", update=True)
    (p,) = [p for p in report.problems if "#10 " in p.reason]
    assert f"primary of merge #{b} made on" in p.reason and f"#{a} " not in p.reason
    assert p.reason.endswith(f"or undo merge #{b} first.")
    # the row's date is merge #a's: in the same second as merge #b, both are written with their fraction
    row_at, b_at = merged_at(store, a), merged_at(store, b)
    fraction = row_at.replace(microsecond=0) == b_at.replace(microsecond=0)
    stamp = "%Y-%m-%d %H:%M:%S.%f" if fraction else "%Y-%m-%d %H:%M:%S"
    assert f"made on {b_at:{stamp}}, after this row was last modified ({row_at:{stamp}})" in p.reason, p.reason
    assert dump_crm(store) == after_both

    # the later merge undone: the row from between them applies; the one from before still does not
    assert undo_merge(store, b, 1).status == "undone"
    between = edit(tmp_path / "between.csv", tmp_path / "between2.csv", 10, "post", "Главный инженер")
    report = import_csv(store, between, "contact", update=True)
    assert (report.updated, report.rejected) == (1, 0), report.summary()  # (#11, merged away, is not in it)
    assert record(store, "contact", 10)["post"] == "Главный инженер"
    before = edit(tmp_path / "before.csv", tmp_path / "before2.csv", 10, "post", "Директор")
    report = import_csv(store, before, "contact", update=True)
    (p,) = [p for p in report.problems if "#10 " in p.reason]
    assert f"primary of merge #{a} made on" in p.reason and f"#{b} " not in p.reason
    assert record(store, "contact", 10)["post"] == "Главный инженер"

    # an export newer than the merge is applied as always, keeping what the merge gave
    export_csv(store, tmp_path / "after.csv", "contact")
    after = edit(tmp_path / "after.csv", tmp_path / "after2.csv", 10, "comments", "позвонить в понедельник")
    report = import_csv(store, after, "contact", update=True)
    assert (report.updated, report.rejected) == (1, 0), report.summary()
    now = record(store, "contact", 10)
    assert now["comments"] == "позвонить в понедельник" and str(now["birthdate"]) == "1980-05-17"


def test_a_row_without_a_modification_date_is_not_applied_to_a_merges_primary(store, tmp_path):
    """A file with no modified_at (made by hand: our export and Bitrix24's always have it) cannot show that
    its row of a merge's primary was written after the merge: rejected, saying how to apply it; rows of
    records no applied merge kept apply as before."""
    load_sample(store)
    merge_id = merge(store, 13, [13, 14])
    at = merged_at(store, merge_id)
    after_merge = record(store, "contact", 13)
    f = write_csv(tmp_path / "posts.csv", [["id", "post", "middle_name"], ["13", "Главный инженер", ""],
                                           ["15", "Бухгалтер", ""]])
    report = import_csv(store, f, "contact", update=True)
    assert (report.updated, report.rejected) == (1, 1), report.summary()
    (p,) = report.problems
    assert (p.line, p.column, p.value) == (2, "id", "13")
    assert (f"contact #13 is the primary of merge #{merge_id} made on {at:%Y-%m-%d %H:%M:%S}, and the file has no "
            "'modified_at' column: nothing shows this row was written after it") in p.reason
    assert p.reason.endswith(f"Export again after the merge, or undo merge #{merge_id} first (or, in a file made "
                             "by hand, give the row a 'modified_at' after the merge).")
    assert record(store, "contact", 13) == after_merge and record(store, "contact", 15)["post"] == "Бухгалтер"

    # with the column: an empty cell is no date either; a date before the merge is refused, one after it applies
    rows = [["id", "post", "middle_name", "modified_at"], ["13", "Главный инженер", "Paul", ""],
            ["13", "Главный инженер", "Paul", "2024-01-01 00:00:00"]]
    report = import_csv(store, write_csv(tmp_path / "dated.csv", rows[:2]), "contact", update=True)
    (p,) = report.problems
    assert p.column == "modified_at" and "this row's 'modified_at' cell is empty: nothing shows it was written" \
        in p.reason
    report = import_csv(store, write_csv(tmp_path / "dated.csv", rows[::2]), "contact", update=True)
    (p,) = report.problems
    assert (p.column, p.value) == ("modified_at", "2024-01-01 00:00:00") and "after this row was last modified " \
        "(2024-01-01 00:00:00)" in p.reason
    assert record(store, "contact", 13) == after_merge
    later = (at.replace(microsecond=0) + dt.timedelta(seconds=1)).isoformat(sep=" ")
    rows[2][3] = later
    report = import_csv(store, write_csv(tmp_path / "dated.csv", rows[::2]), "contact", update=True)
    assert (report.updated, report.rejected) == (1, 0), report.summary()
    now = record(store, "contact", 13)
    assert (now["post"], now["middle_name"], str(now["modified_at"])) == ("Главный инженер", "Paul", later)
