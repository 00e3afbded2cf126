"""import --update writes only what a newer export changed (crm/csv_io.py ``_Updates``): an unchanged
record is not touched, communications keep their ids, earlier merges can still be undone; the bitrix24
company preset keeps the website; the errors CSV names the id it refuses. Both backends."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import schema
from crm.csv_io import export_csv, import_csv
from crm.demo import DemoSizes, generate_demo
from merge_rules import MergeSettings, apply_batch, plan_groups, undo_batch
from merge_rules.testing import dump_crm

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
    assert header == ["line", "column", "value", "reason"]
    assert [r[:3] for r in rows] == [["2", "id", "7"], ["3", "id", "8"]]
    assert all("already in the database" in r[3] for r in rows)


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
    rows[2][col("Дата рождения")] = "31.02.1980"           # line 3: no such day
    rows[3][col("Дата изменения")] = "вчера"               # line 4: not a date
    rows[4].append("лишнее")                               # line 5: a cell too many
    rows[5][col("ID")] = "abc"                             # line 6: not an id
    rows[6][col("Должность")] = "Директор"                 # line 7: a good change after the broken rows
    f = write_bitrix(tmp_path / "broken.csv", rows)
    report = import_csv(store, f, "contact", preset="bitrix24", update=True)
    assert (report.rows_read, report.updated, report.rejected) == (6, 2, 4), report.summary()
    got = [(p.line, p.column) for p in report.problems]
    assert got == [(3, "Дата рождения"), (4, "Дата изменения"), (5, None), (6, "ID")]
    reasons = [p.reason for p in report.problems]
    assert "'31.02.1980' is written as a date but there is no such day" in reasons[0]
    assert "'вчера' is not a date and time" in reasons[1]
    assert f"has {len(header) + 1} cells where the header has {len(header)}" in reasons[2]
    assert "'abc' is not a record id" in reasons[3]
    assert [record(store, "contact", i)["post"] for i in range(1, 7)] == ["Инженер", None, None, None, None,
                                                                            "Директор"]
    report.write_problems(tmp_path / "problems.csv")
    assert [r[:3] for r in read_csv(tmp_path / "problems.csv")[1:]] == [
        ["3", "Дата рождения", "31.02.1980"], ["4", "Дата изменения", "вчера"], ["5", "", ""], ["6", "ID", "abc"]]
