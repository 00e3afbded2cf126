"""The portal's time zone on `crm-dedup import`, `check` and `export` (crm/csv_io.py, pipelines/check.py, cli.py).

A Bitrix24 export writes created/modified times in the portal's local time without an offset. With
``portal_timezone`` (the setting pipeline.portal_timezone, or --portal-tz which overrides it) such a time is read as
that zone's local time, with its offset on that date (Moscow was +04:00 in 2011-2014; a DST change's skipped or
repeated hour takes the offset before the change, fold=0), and stored in UTC; a time with an offset stays exact.
Export in that zone, then import in it, gives the same times back (the bitrix24 preset writes no offset, so the hour
a DST change repeats comes back an hour early; our own format writes the offset and is exact).
`check --input` lists the cells it could not read (the row was checked without them) and says how times without an
offset were read, as import does.

Tests run on SQLite and PostgreSQL (the ``store`` / ``db_url`` fixtures).
"""

from __future__ import annotations

import contextlib
import csv
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from crm.csv_io import CsvError, export_csv, import_csv
from crm.store import Store
from pipelines.cli import app
from pipelines.settings import Settings
from scoring.settings import SettingsError
from test_csv_dates import write_csv as write_any_csv

HEADER = ["ID", "Фамилия", "Имя", "Дата рождения", "Дата создания", "Дата изменения"]
AS_UTC = "written without a UTC offset were read as UTC"


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ";", encoding: str = "cp1251") -> Path:
    """By default a file as a Bitrix24 export writes it (cp1251, ';')."""
    return write_any_csv(path, rows, delimiter=delimiter, encoding=encoding)


def times(store: Store) -> dict[int, tuple]:
    t = schema.contacts
    with store.engine.connect() as conn:
        return {r.id: (r.created_at, r.modified_at) for r in conn.execute(sa.select(t.c.id, t.c.created_at,
                                                                                     t.c.modified_at))}


def cells(path: Path, *columns: str, encoding: str = "utf-8") -> dict[str, tuple]:
    with open(path, encoding=encoding, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";" if encoding == "cp1251" else ","))
    return {r.get("ID") or r["id"]: tuple(r[c] for c in columns) for r in rows}


def test_a_moscow_export_is_read_in_moscow_time_and_the_summary_says_so(store, tmp_path):
    f = write_csv(tmp_path / "contacts.csv", [
        HEADER,
        ["1", "Иванов", "Иван", "05/06/1985", "15.03.2021 10:15:00", "01.06.2012 12:00"],  # (Moscow was +04 then)
        ["2", "Петров", "Пётр", "13.05.1985", "2021-03-15T10:15:00+03:00", "2021-03-15 10:15:00Z"],
        ["3", "Сидоров", "Олег", "", "", ""],
        ["4", "Орлов", "Юрий", "", "01.01.0001 00:00", "01.01.2021 00:00"],  # (before year 1 in UTC)
    ])
    report = import_csv(store, f, "contact", preset="bitrix24", portal_timezone="Europe/Moscow")
    assert (report.imported, report.rejected) == (4, 0)
    got = times(store)
    assert got[1] == (datetime(2021, 3, 15, 7, 15), datetime(2012, 6, 1, 8, 0))
    assert got[2] == (datetime(2021, 3, 15, 7, 15), datetime(2021, 3, 15, 10, 15))  # offsets given: exact
    assert got[4] == (datetime(2020, 12, 31, 21),) * 2  # (created_at refused: its modified_at)
    # the refused birthdate is still a cell left out, listed with its line and id; so is a time UTC cannot hold
    assert [(p.line, p.record, p.column) for p in report.cell_problems] == [(2, "1", "Дата рождения"),
                                                                            (5, "4", "Дата создания")]
    assert report.cell_problems[1].reason.startswith("'01.01.0001 00:00' is out of range: in UTC it falls outside "
                                                     "the years 1-9999; the row is imported as if this cell were empty")
    assert (report.naive_times, report.naive_line) == (2, 2)
    summary = report.summary()
    assert ("2 rows: created_at/modified_at written without a UTC offset were read as Europe/Moscow local time (the "
            "portal time zone) and stored in UTC (first at line 2).") in summary
    assert AS_UTC not in summary

    # without the zone the same file is read as UTC, and the summary names the option that reads it right
    store.truncate_crm()
    report = import_csv(store, f, "contact", preset="bitrix24")
    assert times(store)[1] == (datetime(2021, 3, 15, 10, 15), datetime(2012, 6, 1, 12, 0))
    assert AS_UTC in report.summary() and "--portal-tz NAME (or the setting pipeline.portal_timezone)" in \
        report.summary()


def test_dst_export_and_import_in_the_zone_is_a_round_trip(store, tmp_path):
    """Berlin changes its offset twice a year: each time is read with its date's offset; the hour the spring change
    skips and the hour the autumn change repeats take the offset before the change (fold=0)."""
    f = write_csv(tmp_path / "berlin.csv", [
        ["id", "last_name", "created_at", "modified_at"],
        ["1", "Winter", "2021-01-15 12:00", "2021-07-01 12:00:00"],
        ["2", "Skipped", "2021-03-28 02:30", "2021-03-28T01:30:00+01:00"],
        ["3", "Repeated", "2021-10-31 02:30", "2021-10-31T02:30:00+01:00"],  # the second 02:30, given its offset
    ], delimiter=",", encoding="utf-8")
    report = import_csv(store, f, "contact", portal_timezone="Europe/Berlin")
    assert (report.imported, report.cell_problems, report.naive_times) == (3, [], 3)
    stored = times(store)
    assert stored == {1: (datetime(2021, 1, 15, 11), datetime(2021, 7, 1, 10)),
                      2: (datetime(2021, 3, 28, 1, 30), datetime(2021, 3, 28, 0, 30)),
                      3: (datetime(2021, 10, 31, 0, 30), datetime(2021, 10, 31, 1, 30))}

    bitrix, ours, plain = tmp_path / "b.csv", tmp_path / "o.csv", tmp_path / "p.csv"
    export_csv(store, bitrix, "contact", preset="bitrix24", encoding="cp1251", delimiter=";",
               portal_timezone="Europe/Berlin")
    export_csv(store, ours, "contact", portal_timezone="Europe/Berlin")
    export_csv(store, plain, "contact")
    assert cells(bitrix, "Дата создания", "Дата изменения", encoding="cp1251") == {
        "1": ("15.01.2021 12:00:00", "01.07.2021 12:00:00"),
        "2": ("28.03.2021 03:30:00", "28.03.2021 01:30:00"),  # (02:30 does not exist there: it is 03:30)
        "3": ("31.10.2021 02:30:00", "31.10.2021 02:30:00")}  # the first 02:30 and the second: alike
    assert cells(ours, "created_at", "modified_at")["3"] == ("2021-10-31 02:30:00+02:00", "2021-10-31 02:30:00+01:00")
    assert cells(plain, "created_at", "modified_at")["1"] == ("2021-01-15 11:00:00", "2021-07-01 10:00:00")  # as before

    store.truncate_crm()
    import_csv(store, bitrix, "contact", preset="bitrix24", portal_timezone="Europe/Berlin")
    back = times(store)
    assert {i: back[i] for i in (1, 2)} == {i: stored[i] for i in (1, 2)}
    assert back[3] == (stored[3][0], datetime(2021, 10, 31, 0, 30))  # the repeated hour: read as the first one
    store.truncate_crm()
    import_csv(store, ours, "contact")  # (its offsets make it exact, whatever zone it is read with)
    assert times(store) == stored


def test_the_setting_refuses_a_zone_that_does_not_exist(tmp_path):
    assert Settings().pipeline.portal_timezone is None
    good = tmp_path / "good.yaml"
    good.write_text("pipeline:\n  portal_timezone: Asia/Yekaterinburg\n", encoding="utf-8")
    assert Settings.load(good).pipeline.portal_timezone == "Asia/Yekaterinburg"
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  portal_timezone: Europe/Moskow\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        Settings.load(bad)
    assert ("pipeline.portal_timezone: 'Europe/Moskow' is not a time zone (did you mean Europe/Moscow?): give an "
            "IANA name such as Europe/Moscow") in str(err.value)
    f = write_csv(tmp_path / "c.csv", [HEADER, ["1", "Иванов", "Иван", "", "", ""]])
    r = CliRunner().invoke(app, ["import", str(f), "--entity", "contact", "--settings", str(bad)])
    assert r.exit_code == 2 and "pipeline.portal_timezone: 'Europe/Moskow' is not a time zone" in r.stderr


def test_the_option_refuses_a_zone_that_does_not_exist(store, tmp_path):
    f = write_csv(tmp_path / "c.csv", [HEADER, ["1", "Иванов", "Иван", "", "", ""]])
    with pytest.raises(CsvError, match=r"--portal-tz, or the setting pipeline.portal_timezone\): 'Moscow' is not a "
                                       r"time zone \(did you mean Europe/Moscow\?\)"):
        export_csv(store, tmp_path / "out.csv", "contact", portal_timezone="Moscow")
    assert not (tmp_path / "out.csv").exists()
    runner = CliRunner()
    for command in (["check", "--input", str(f)], ["import", str(f)], ["export", str(tmp_path / "o.csv")]):
        r = runner.invoke(app, [*command, "--entity", "contact", "--db", store.url, "--portal-tz", "Europe"])
        assert r.exit_code == 2, (command, r.output)
        assert "error: The portal time zone (--portal-tz, or the setting pipeline.portal_timezone): 'Europe' is " \
               "not a time zone" in r.stderr, (command, r.stderr)
    assert times(store) == {}
    r = runner.invoke(app, ["check", "--entity", "contact", "--db", store.url, "--portal-tz", "Europe/Moscow"])
    assert r.exit_code == 2 and "--portal-tz says how to read the times of an --input file" in r.stderr


def test_cli_option_overrides_the_setting_on_import_and_export(db_url, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", db_url]).exit_code == 0
    s = tmp_path / "s.yaml"
    s.write_text("pipeline:\n  portal_timezone: Asia/Yekaterinburg\n", encoding="utf-8")  # +05:00
    f = write_csv(tmp_path / "contacts.csv", [HEADER, ["7", "Орлова", "Анна", "", "15.03.2021 10:15:00", ""],
                                              ["8", "Зайцев", "Олег", "", "", "16.03.2021 10:15:00"]])
    r = runner.invoke(app, ["import", str(f), "--entity", "contact", "--preset", "bitrix24", "--db", db_url,
                            "--settings", str(s), "--portal-tz", "Europe/Moscow"])
    assert r.exit_code == 0, r.output
    assert "2 rows: created_at/modified_at written without a UTC offset were read as Europe/Moscow local time" \
        in r.stdout and AS_UTC not in r.stdout
    store = Store(db_url)
    try:
        assert times(store) == {7: (datetime(2021, 3, 15, 7, 15),) * 2, 8: (datetime(2021, 3, 16, 7, 15),) * 2}
        # export with the setting: Yekaterinburg's local time; with the option: Moscow's; neither: UTC (as before)
        out = tmp_path / "out.csv"
        for extra, written in ((["--settings", str(s)], "15.03.2021 12:15:00"),
                               (["--settings", str(s), "--portal-tz", "Europe/Moscow"], "15.03.2021 10:15:00"),
                               ([], "15.03.2021 07:15:00")):
            r = runner.invoke(app, ["export", str(out), "--entity", "contact", "--preset", "bitrix24", "--db", db_url,
                                    *extra])
            assert r.exit_code == 0, r.output
            assert cells(out, "Дата создания")["7"] == (written,), extra
        # read back with the setting it was written in: the same times
        runner.invoke(app, ["export", str(out), "--entity", "contact", "--preset", "bitrix24", "--db", db_url,
                            "--settings", str(s)])
        store.truncate_crm()
        r = runner.invoke(app, ["import", str(out), "--entity", "contact", "--preset", "bitrix24", "--db", db_url,
                                "--settings", str(s)])
        assert r.exit_code == 0, r.output
        assert times(store) == {7: (datetime(2021, 3, 15, 7, 15),) * 2, 8: (datetime(2021, 3, 16, 7, 15),) * 2}
    finally:
        store.dispose()


@pytest.fixture
def check_here(monkeypatch, tmp_path):
    """`crm-dedup check` with its flow's task run in this process (no Prefect server): what it prints is the CLI's."""
    from pipelines import flows, prefect_api

    @contextlib.contextmanager
    def no_server():
        yield lambda: None

    def flow(db=None, entity="contact", csv_path=None, preset=None, mapping=None, settings_path=None,
             out="data/check.csv", encoding=None, portal_timezone=None):
        return flows.check_task.fn(db, entity, csv_path, preset, mapping, settings_path, out, encoding, portal_timezone)

    monkeypatch.setattr(prefect_api, "early_server", no_server)
    monkeypatch.setattr(flows, "check_flow", flow)
    monkeypatch.chdir(tmp_path)


def test_check_lists_the_cells_it_left_out_and_how_it_read_times(store, tmp_path, check_here):
    import_csv(store, write_csv(tmp_path / "crm.csv", [HEADER, ["1", "Петров", "Пётр", "13.05.1985", "", ""]]),
               "contact", preset="bitrix24")
    f = write_csv(tmp_path / "new.csv", [
        HEADER,
        ["21", "Иванов", "Иван", "05/06/1985", "15.03.2021 10:15:00", ""],
        ["22", "Сидорова", "Анна", "1.2.1990", "2021-03-15T10:15:00+03:00", ""],
        ["23", "Broken"],
    ])
    s = tmp_path / "s.yaml"
    s.write_text("pipeline:\n  portal_timezone: Asia/Yekaterinburg\n", encoding="utf-8")
    runner = CliRunner()
    base = ["check", "--input", str(f), "--entity", "contact", "--preset", "bitrix24", "--db", store.url,
            "--out", str(tmp_path / "check.csv")]
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    assert ("new.csv line 2 (id 21), column 'Дата рождения': '05/06/1985' could be 1985-06-05 (day first) or "
            "1985-05-06 (month first)") in r.stderr
    assert "5.5.1985, 1985-5-5); the row was checked with this cell left out\n" in r.stderr
    assert "new.csv line 4 (id 23): has 2 cells where the header has 6" in r.stderr
    assert r.stderr.index("line 2 (id 21)") < r.stderr.index("line 4 (id 23)")  # in the order of the file's lines
    headline = r.stdout.splitlines()[0]
    assert ("2 checked; 1 row(s) of the file could not be read and were not checked (listed above); 1 cell(s) could "
            "not be read and were left out of the rows checked (listed above)") in headline, r.stdout
    assert f"1 row: created_at/modified_at {AS_UTC} (first at line 2)" in r.stdout

    # the zone of the setting, and the option's over it (the settings file left as it is)
    said = {}
    for name, extra in (("setting", ["--settings", str(s)]),
                        ("option", ["--settings", str(s), "--portal-tz", "Europe/Moscow"])):
        said[name] = runner.invoke(app, base + extra)
        assert said[name].exit_code == 0, said[name].output
    assert ("1 row: created_at/modified_at written without a UTC offset were read as Asia/Yekaterinburg local time "
            "(the portal time zone) and stored in UTC (first at line 2).") in said["setting"].stdout
    assert "were read as Europe/Moscow local time" in said["option"].stdout
    assert all(AS_UTC not in said[k].stdout for k in ("setting", "option"))
    assert said["option"].stderr == r.stderr  # the cells and rows listed alike
    assert s.read_text(encoding="utf-8") == "pipeline:\n  portal_timezone: Asia/Yekaterinburg\n"  # (not rewritten)
