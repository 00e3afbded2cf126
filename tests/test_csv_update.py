"""import --update writes only what a newer export changed (crm/csv_io.py ``_Updates``): an unchanged
record is not touched, communications keep their ids, earlier merges can still be undone; the bitrix24
company preset keeps the website; the errors CSV names the id it refuses. Both backends."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

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


def test_update_with_an_unchanged_export_changes_nothing(store, tmp_path):
    small_demo(store)
    before = dump_crm(store)
    for entity in ("contact", "company", "lead"):
        n = export_csv(store, tmp_path / f"{entity}.csv", entity)
        report = import_csv(store, tmp_path / f"{entity}.csv", entity, update=True)
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
