"""CSV import and export of contacts, companies and leads, including Bitrix24's own CSV export.

Import reads UTF-8 (with or without BOM) or Windows-1251, comma, semicolon or tab separated, with
quoted fields that may hold newlines. Every row is checked and either written whole (the record and
its communications, in one transaction with the rest of its batch) or rejected with its line,
column and reason; the rest of the file still goes in. A cell the database cannot take (a date that
does not exist, a value too long for its column) in a field other than those in ROW_FIELDS costs only
that field: the row goes in without it, listed with the problems (``ImportReport.cell_problems``).
Whole-file problems raise ``CsvError``.

Columns are found by name (case and surrounding spaces ignored) through a mapping
FIELD -> [COLUMN, ...]. FIELD is a column of the entity's table (``last_name``, ``title``,
``responsible_id``, ``created_at`` ...) or a communication ``TYPE:KIND`` (``phone:mobile``,
``email:work``, ``web:other``, ``im:other``; a bare ``phone`` means ``phone:work``). Without a preset
or mapping, columns named like the table fields are recognised, which is what ``export_csv`` writes.
Where several columns give one field (Bitrix24's "Адрес" and "Фактический адрес", a header repeated), the first
filled one is stored; another holding a different value is noted in the summary. A row may end where the
header's named columns end (a header ending in ";;" has nameless columns).

Choices a user should know about:
- Ids. A file with an id column (``id``, Bitrix24's ``ID``) keeps its ids, so records stay
  traceable to the CRM they came from and an export re-imported into an empty database gets back
  the same ids. A row whose id is already in the database (or earlier in the file) is rejected, so
  importing a file twice does not double it. Rows without an id get max(id)+1, ... in their batch.
  A mapping ``id=`` with no column (``--map id=``) leaves the id column out: the rows become new records.
- Values are stored as written (no trimming), except that an empty or whitespace-only cell is NULL.
- Multi-value cells. Our own format writes one value per cell and repeats the ``phone:work`` (etc.)
  column as often as the record with most such values needs: lossless for any value. The bitrix24
  preset writes and reads several values in one cell joined by ", " as Bitrix24 does, in the phone,
  e-mail, site and messenger columns only (a title "Ромашка, ООО" or an address is one value); a value
  there that itself contains a comma is split there (but a phone's extension after a comma, "доб 802",
  stays with its phone). In any format, a phone cell holding several numbers ("+79165551207; +79165551208")
  is stored as one phone per number, and an e-mail cell holding several addresses ("a@x.ru; b@x.ru", one per
  line) as one e-mail per address (where every piece is an address), and the summary says so.
- Not CSV: a spreadsheet in its own format (.xlsx, .ods, Excel 97-2003 .xls) or an HTML file (Bitrix24's "Export
  to Excel" writes an HTML table named .xls) is refused as what it is, whatever its name, saying how to get a CSV.
- Dates and timestamps: dd.mm.yyyy [hh:mm[:ss]] (Bitrix24) or ISO 8601 yyyy-mm-dd[Thh:mm[:ss[.f]]], either with a
  UTC offset after the time where the file gives one (+03:00, +0300, +03, Z), zero padding optional; a slash date
  (d/m/yyyy or m/d/yyyy) only where one reading exists (05/06/1985 is refused, not guessed). A date that does
  not exist is refused; a birthdate in the future is stored and noted.
- Timestamps are stored as naive UTC: one with a UTC offset is converted. Bitrix24 writes them without an offset,
  in the portal's time zone, which the file does not say: ``portal_timezone`` (an IANA name, Europe/Moscow; the
  pipeline setting ``portal_timezone``, ``--portal-tz``) reads a time without an offset as that zone's local time,
  its offset on that date (Moscow was +04:00 in 2011-2014); without it such a time is read as UTC. Either way the
  summary says once how they were read. Export given the zone writes times back in it (the bitrix24 preset
  without an offset, as Bitrix24 does; our format with it), so that export and import with the same zone is a
  round trip. A missing created_at is modified_at, else now; a missing
  modified_at is created_at (a missing date must not make an old record look recently worked on).
- Responsible: a number is a user id, anything else a user name (word order and case ignored). One
  that matches no user is left empty (or set to ``responsible_id=`` when given) and noted in the
  summary; the same goes for a lead's contact_id / company_id that are not in the database. With
  ``update`` a record there keeps its responsible (unless ``responsible_id=`` is given) and its links
  instead, and the cell is listed with the problems as a cell left out.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import logging
import os
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd
import sqlalchemy as sa

from crm import schema
from crm.store import Store
from matchers.emails import normalize_emails, several_addresses
from matchers.identifiers import parse_birthdate, parse_inn
from matchers.phones import normalize_phones, only_extension, several_numbers

log = logging.getLogger(__name__)

ENTITY_ALIASES = {"contact": "contact", "contacts": "contact", "company": "company",
                  "companies": "company", "lead": "lead", "leads": "lead"}
COMM_FIELDS = tuple(f"{t}:{k}" for t in schema.COMM_TYPES for k in schema.COMM_KINDS)
NOT_IMPORTED = ("deleted_at",)  # export writes live records only; a deleted record is not imported
BATCH_SIZE = 2000
MAX_PROBLEMS_KEPT = 100_000  # beyond this only the count grows, so a broken huge file cannot exhaust memory
VALUE_EXCERPT = 80

# --------------------------------------------------------------------------------------------
# Presets: preset -> entity -> field -> column headers (the first one is what export writes).
#
# Bitrix24's CSV export of the CRM lists (Контакты / Компании / Лиды -> Экспорт в CSV) writes Russian
# headers, ';' and Windows-1251. Column names checked against lists of real export headers found in
# public code that reads such files (search tool, code corpus: a lead-export ETL reading
# LEAD.csv with encoding='cp1251', sep=';'; a Bitrix24 lead-header list "ID, Название лида, Обращение,
# Имя, Фамилия, Отчество, ..., Рабочий телефон, Мобильный телефон, Номер факса, Домашний телефон,
# Номер пейджера, Телефон для рассылок, Другой телефон, Корпоративный сайт, Личная страница, Страница
# Facebook, ..., Рабочий e-mail, Частный e-mail, E-mail для рассылок, Другой e-mail, Контакт Facebook,
# Контакт Telegram, Контакт ВКонтакте, Контакт Skype, Контакт Viber, ..., Другой контакт, ...,
# Название компании, Должность, Комментарий, ..., Источник, Ответственный"; contact exports with
# "Дата рождения", "Тип контакта", "Дата создания", "Дата изменения") and Bitrix24's field names
# (helpdesk.bitrix24.ru "Системные поля в CRM"; REST field TYPE_ID = "Тип компании").
# Bitrix24 multi-fields have types, ours have kinds: phone FAX / PAGER / MAILING and email MAILING go
# to "other". Messengers have no kind in Bitrix24; so that every kind has a column and an export keeps
# it, Skype is filed as work, phone-number messengers (Telegram, Viber, WhatsApp) as mobile, social
# networks as home and the rest as other. Social network pages are web:other.
# A company's own website field (besides its web:* communications, which Bitrix24 writes per type as
# "Корпоративный сайт", "Личная страница", ...) goes to "Сайт", Bitrix24's name for a company's site
# field, so that an export read back keeps it.

def _bitrix_comms() -> dict[str, list[str]]:
    return {
        "phone:work": ["Рабочий телефон"],
        "phone:mobile": ["Мобильный телефон"],
        "phone:home": ["Домашний телефон"],
        "phone:other": ["Другой телефон", "Номер факса", "Номер пейджера", "Телефон для рассылок"],
        "email:work": ["Рабочий e-mail"],
        "email:home": ["Частный e-mail", "Личный e-mail"],
        "email:other": ["Другой e-mail", "E-mail для рассылок"],
        "web:work": ["Корпоративный сайт"],
        "web:home": ["Личная страница"],
        "web:other": ["Другой сайт", "Страница Facebook", "Страница ВКонтакте", "Страница LiveJournal",
                      "Микроблог Twitter"],
        "im:work": ["Контакт Skype"],
        "im:mobile": ["Контакт Telegram", "Контакт Viber", "Контакт WhatsApp"],
        "im:home": ["Контакт ВКонтакте", "Контакт Facebook", "Комментарии Instagram", "Контакт Instagram"],
        "im:other": ["Другой контакт", "Контакт Битрикс24.Network", "Контакт Битрикс24 Network",
                     "Онлайн-чат", "Контакт Открытая линия", "Контакт ICQ", "Контакт MSN/Live!",
                     "Контакт Jabber"],
    }


_BITRIX_OWNER = {"responsible_id": ["Ответственный"], "created_at": ["Дата создания"],
                 "modified_at": ["Дата изменения"]}

PRESETS: dict[str, dict[str, dict[str, list[str]]]] = {
    "bitrix24": {
        "contact": {
            "id": ["ID"], "last_name": ["Фамилия"], "first_name": ["Имя"], "middle_name": ["Отчество"],
            "birthdate": ["Дата рождения"], "post": ["Должность"], "address": ["Адрес"],
            "comments": ["Комментарий"], "source": ["Источник"], "tax_id": ["ИНН"],
            **_BITRIX_OWNER, **_bitrix_comms(),
        },
        "company": {
            "id": ["ID"], "title": ["Название компании", "Название"], "industry": ["Сфера деятельности"],
            "address": ["Адрес", "Фактический адрес"], "tax_id": ["ИНН"], "website": ["Сайт"],
            "comments": ["Комментарий"],
            "source": ["Источник"], **_BITRIX_OWNER, **_bitrix_comms(),
        },
        "lead": {
            "id": ["ID"], "title": ["Название лида"], "status": ["Статус", "Стадия"],
            "last_name": ["Фамилия"], "first_name": ["Имя"], "middle_name": ["Отчество"],
            "company_title": ["Название компании"], "source": ["Источник"], "comments": ["Комментарий"],
            **_BITRIX_OWNER, **_bitrix_comms(),
        },
    },
}

# How a preset writes several values of one kind: one cell, joined (None: one value per cell).
MULTI_VALUE_JOIN = {None: None, "bitrix24": ", "}
# How a preset writes dates and timestamps (None: ISO 8601, which keeps microseconds).
DATE_FORMATS = {"bitrix24": ("%d.%m.%Y", "%d.%m.%Y %H:%M:%S")}

# Columns of Bitrix24's export that we recognise but have nowhere to put: said so instead of "unknown".
NOT_STORED = {
    "contact": {"компания": "contacts link to companies by id, not by name: link them after import",
                "название компании": "contacts link to companies by id, not by name: link them after import"},
    "company": {"тип компании": "the companies table has no company type"},
    "lead": {"адрес": "the leads table has no address"},
}

REQUIRED = {
    "contact": ("last_name", "first_name", "middle_name", "phone", "email"),
    "company": ("title",),
    "lead": ("title", "last_name", "first_name", "middle_name", "company_title", "phone", "email"),
}
# A cell that cannot be stored (an impossible date, a tax id too long for its column, a NUL character) leaves
# its field empty and the row goes in, listed with the problems, as a bad INN or phone is stored with a note:
# one typo must not cost the whole record. Except the cells a record is known and matched by: without its id,
# name, title, phone or e-mail it would be another record, and a broken one there most often means the row
# itself is broken (a quote left open, cells shifted): the row is rejected.
ROW_FIELDS = ("id", "last_name", "first_name", "middle_name", "title", "company_title", "phone", "email")
REQUIRED_TEXT = {
    "contact": "a name, phone or email",
    "company": "a title",
    "lead": "a title, name, company title, phone or email",
}

# The forms dates and timestamps are read in, zero padding optional (1985-5-5, 5.5.1985 9:05). A regex each
# rather than strptime: trying formats with strptime took most of an import.
# a UTC offset after a time, a space before it optional: Z, +03, +0300, +03:00 (the same in every form below, so a
# time is read with its offset whichever way its date is written)
_OFFSET = r" ?(Z|[+-]\d{2}(?::?\d{2})?)?"
# dd.mm.yyyy [hh:mm[:ss][offset]]: Bitrix24's export, and how a date is typed in Russia
_DMY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?" + _OFFSET + ")?",
                  re.IGNORECASE)
# yyyy-mm-dd [hh:mm[:ss[.fraction]][offset]], T or a space between (ISO 8601: our export, Bitrix24's REST API)
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
                  + _OFFSET + ")?", re.IGNORECASE)
# a/b/yyyy [hh:mm[:ss][offset]]: day first in Russia and Europe, month first in the US, so read only where one
# reading exists (13/05/1985, 05/05/1985); 05/06/1985 is refused rather than guessed
_SLASH = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?" + _OFFSET + ")?",
                    re.IGNORECASE)
DATE_FORMS = "dd.mm.yyyy (as Bitrix24 does) or yyyy-mm-dd, zero padding optional (5.5.1985, 1985-5-5)"
TIME_FORMS = ("dd.mm.yyyy hh:mm[:ss] (as Bitrix24 does) or yyyy-mm-dd hh:mm[:ss] (or with T), with a UTC offset "
              "where the file gives one (2021-03-15T10:15:00+03:00)")


class CsvError(Exception):
    """A whole-file problem: the message names the file, line or setting and what to do."""


def portal_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (Europe/Moscow, Asia/Yekaterinburg, UTC); ValueError naming the value, and the
    name nearest to it, where there is no such zone."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # (no such zone; a path rather than a name; "Europe", a folder of zones)
        pass
    known, key = sorted(available_timezones()), name.strip().casefold()
    near = ([z for z in known if z.casefold() == key] or [z for z in known if z.rsplit("/", 1)[-1].casefold() == key]
            or difflib.get_close_matches(name.strip(), known, 1))
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ValueError(f"{name!r} is not a time zone{hint}: give an IANA name such as Europe/Moscow, "
                     "Asia/Yekaterinburg or UTC")


def _zone(name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return portal_zone(name)
    except ValueError as exc:
        raise CsvError(f"The portal time zone (--portal-tz, or the setting pipeline.portal_timezone): {exc}.") from None


@dataclass
class Problem:
    """A rejected row (or, in ImportReport.cell_problems, a cell left out of a row imported): its 1-based line
    in the file, the column at fault (None: the whole row), why."""

    line: int
    column: str | None
    reason: str
    file: str = ""
    value: str | None = None  # an excerpt of the offending cell
    record: str | None = None  # the row's id cell, where the file has an id column (a person looks it up)
    # a cell left out: its reason without what the import did instead (`crm-dedup check` says what it did)
    cell_reason: str | None = None

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.file else f"line {self.line}"
        if self.record:
            where += f" (id {self.record})"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did: counts (rows_read == imported + rejected), the rejected rows, notes."""

    file: Path
    entity: str
    rows_read: int = 0
    imported: int = 0  # new records, and with update=True the rows of records there already as well
    updated: int = 0  # of those imported, records there already that the file changed
    unchanged: int = 0  # of those imported, records there already that the file holds as they are: left untouched
    # of those imported, records there already that differ from the file only in modified_at: left untouched too
    # (a date alone is not applied, see _Updates), but counted apart so the summary does not call them "as in the file"
    dated_only: int = 0
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)  # the rejected rows
    # cells left out of rows that were imported (a date that does not exist...), each with what was done instead
    cell_problems: list[Problem] = field(default_factory=list)
    cell_fields: Counter = field(default_factory=Counter)  # field -> rows imported without it
    communications: int = 0
    encoding: str = ""
    delimiter: str = ""
    preset: str | None = None
    ignored_columns: list[str] = field(default_factory=list)  # with the reason when we know it
    notes: Counter = field(default_factory=Counter)  # "responsible 'X' is not a user; left empty" -> rows
    note_lines: dict[str, int] = field(default_factory=dict)  # note -> first line it happened
    problems_dropped: int = 0
    record_lines: dict[int, int] | None = None  # record id -> its first line in the file, when asked for
    # rows imported with a created_at / modified_at written without a UTC offset, read as UTC (as portal_timezone's
    # local time where one is given); the first one's line
    naive_times: int = 0
    naive_line: int | None = None
    portal_timezone: str | None = None  # the zone times without an offset were read in (None: UTC)

    def summary(self) -> str:
        name = Path(self.file).name
        enc = {"utf-8-sig": "UTF-8", "cp1251": "Windows-1251"}.get(self.encoding, self.encoding)
        delim = {"\t": "tab"}.get(self.delimiter, repr(self.delimiter))
        kept = self.updated + self.unchanged + self.dated_only  # (import --update: records there already)
        taken = (f"{self.imported - kept:,} new, {self.updated:,} updated, {self.unchanged:,} as in the file (left "
                 f"untouched)" if kept else f"{self.imported:,} imported")
        if self.dated_only:
            taken += (f", {self.dated_only:,} left untouched that differ from the database only in modified_at "
                      "(a date alone is not applied: nothing else in them changed)")
        lines = [f"{name}: {self.rows_read:,} {self.entity} rows read ({enc}, {delim}"
                 + (f", preset {self.preset}" if self.preset else "") + f"): {taken} "
                 f"with {self.communications:,} phones/emails/sites/messengers written, {self.rejected:,} rejected."]
        if self.ignored_columns:
            lines.append("Ignored columns: " + "; ".join(self.ignored_columns) + ".")
        for note, n in self.notes.most_common(20):
            lines.append(f"{n:,} row{'s' if n != 1 else ''}: {note} (first at line {self.note_lines[note]}).")
        if len(self.notes) > 20:
            lines.append(f"... and {len(self.notes) - 20:,} more notes of these kinds.")
        if self.naive_times:
            lines.append(self.times_note())
        if self.cell_fields:
            n = sum(self.cell_fields.values())
            fields = ", ".join(f"{f} {k:,}" for f, k in self.cell_fields.most_common())
            lines.append(f"{n:,} cell{'s' if n != 1 else ''} could not be stored and {'were' if n != 1 else 'was'} "
                         f"left out of rows imported ({fields}): listed with the problems, each with its line, id, "
                         "value and why.")
        if self.problems_dropped:
            lines.append(f"Only the first {len(self.problems):,} problems are listed; "
                         f"{self.problems_dropped:,} more rows were rejected.")
        if len(self.cell_problems) < sum(self.cell_fields.values()):
            lines.append(f"Only the first {len(self.cell_problems):,} cells left out are listed.")
        return "\n".join(lines)

    def times_note(self) -> str | None:
        """How the created_at/modified_at written without a UTC offset were read, or None when none was: said once
        (the file cannot say its time zone, and a Bitrix24 export writes the portal's local time)."""
        if not self.naive_times:
            return None
        rows = f"{self.naive_times:,} row{'s' if self.naive_times != 1 else ''}"
        if self.portal_timezone:
            return (f"{rows}: created_at/modified_at written without a UTC offset were read as {self.portal_timezone} "
                    f"local time (the portal time zone) and stored in UTC (first at line {self.naive_line}).")
        return (f"{rows}: created_at/modified_at written without a UTC offset were read as UTC (first at line "
                f"{self.naive_line}). A Bitrix24 export writes the portal's local time: such times are stored off by "
                "the portal's UTC offset (3 hours for Moscow); times written with their offset (2021-03-15 "
                "10:15+03:00) are stored exactly. --portal-tz NAME (or the setting pipeline.portal_timezone) reads "
                "them as the portal's local time, e.g. --portal-tz Europe/Moscow.")

    def all_problems(self) -> list[Problem]:
        """The rejected rows and the cells left out of rows imported, in the order of their lines."""
        return sorted(self.problems + self.cell_problems, key=lambda p: p.line)

    def write_problems(self, path: Path | str) -> None:
        """The rejected rows and the cells left out as CSV (UTF-8 with BOM so Excel shows Cyrillic): line, id,
        column, value, reason (a cell left out says so at the end of its reason)."""
        with open(path, "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(["line", "id", "column", "value", "reason"])
            for p in self.all_problems():
                w.writerow([p.line, p.record or "", p.column or "", _excerpt(p.value) if p.value is not None else "",
                            p.reason])

    def write_rejected_rows(self, path: Path | str) -> int:
        """The rejected rows whole, read again from the file: its header and each rejected row's cells as written
        (none cut), after two columns of their own, the row's line and why it was rejected; fixed, the file
        imports again (import ignores those two columns). UTF-8 with BOM, the file's delimiter. A row that could
        not be read as CSV is written as its first line, in one cell. Returns how many rows were written (those
        of the problems kept, MAX_PROBLEMS_KEPT)."""
        why: dict[int, list[str]] = {}
        for p in self.problems:
            why.setdefault(p.line, []).append(p.reason if p.column is None else f"column '{p.column}': {p.reason}")
        written = 0
        old_limit = csv.field_size_limit()
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # (as the import read it)
        try:
            with open(self.file, encoding=self.encoding, newline="") as text, \
                    open(path, "w", encoding="utf-8-sig", newline="") as out:
                excel = _excel_sep(text)
                records = _Records(text, self.delimiter)
                records.last_line = 0 if excel is None else 1
                header = _header(Path(self.file), records)
                ours = []
                for name in ("line", "reason"):  # (a name the file's header has already is prefixed)
                    while name in header:
                        name = "_" + name
                    ours.append(name)
                w = csv.writer(out, delimiter=self.delimiter)
                w.writerow(ours + header)
                for line, _end, row in records:
                    if line in why:
                        cells = row if isinstance(row, list) else [records.lines[0].rstrip("\r\n")]
                        w.writerow([line, "; ".join(why[line]), *cells])
                        written += 1
        finally:
            csv.field_size_limit(old_limit)
        return written


# --------------------------------------------------------------------------------------------
# fields of an entity

@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # int, str, text, date, datetime, comm
    length: int | None = None


def _fields(entity: str) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for col in schema.ENTITY_TABLES[entity].c:
        if col.name in NOT_IMPORTED:
            continue
        t = col.type
        if isinstance(t, sa.Integer):
            out[col.name] = _Field(col.name, "int")
        elif isinstance(t, sa.DateTime):
            out[col.name] = _Field(col.name, "datetime")
        elif isinstance(t, sa.Date):
            out[col.name] = _Field(col.name, "date")
        elif isinstance(t, sa.String) and t.length:  # Text is a String without length
            out[col.name] = _Field(col.name, "str", t.length)
        else:
            out[col.name] = _Field(col.name, "text")
    comm_len = schema.communications.c.value.type.length
    for name in COMM_FIELDS:
        out[name] = _Field(name, "comm", comm_len)
    return out


def _native_mapping(entity: str) -> dict[str, list[str]]:
    mapping = {name: [name] for name in _fields(entity)}
    for t in schema.COMM_TYPES:  # a bare "phone" / "email" column of a hand-made file
        mapping[f"{t}:work"].append(t)
    return mapping


def _field_key(key: str, fields: dict[str, _Field], entity: str) -> str:
    k = key.strip().lower()
    if k in schema.COMM_TYPES:
        k = f"{k}:work"
    if k not in fields:
        raise CsvError(
            f"The mapping names the field {key!r}, which {entity} records do not have. Fields: "
            f"{', '.join(f for f in fields if ':' not in f)}; communications: TYPE:KIND with TYPE one of "
            f"{', '.join(schema.COMM_TYPES)} and KIND one of {', '.join(schema.COMM_KINDS)} (e.g. phone:mobile).")
    return k


def _norm(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").split()).casefold()


# --------------------------------------------------------------------------------------------
# reading the file: encoding, delimiter, rows

def _check_encoding(path: Path, encoding: str) -> tuple[int, int] | None:
    """None if the whole file decodes, else (byte offset, line) of the first byte that does not."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset, newlines = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pending = len(decoder.getstate()[0]) if hasattr(decoder, "getstate") else 0
                at = max(0, exc.start - pending)
                return offset + at, newlines + chunk[:at].count(b"\n") + 1
            offset += len(chunk)
            newlines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return offset, newlines + 1
    return None


def _ascii_only(path: Path) -> bool:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if not chunk.isascii():
                return False
    return True


def _detect_encoding(path: Path, head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
            head.count(b"\x00") >= 8 and head.count(b"\x00") * 4 > len(head)):
        raise CsvError(f"{path} looks like UTF-16 (a byte-order mark or many NUL bytes at the start). "
                       "Save it as CSV UTF-8 or Windows-1251 and import again.")
    bad_utf8 = _check_encoding(path, "utf-8-sig")
    if bad_utf8 is None:
        return "utf-8-sig"
    bad_cp1251 = _check_encoding(path, "cp1251")
    if bad_cp1251 is None:
        log.info("%s is not UTF-8 (byte %d): reading it as Windows-1251", path, bad_utf8[0])
        return "cp1251"
    raise CsvError(
        f"{path} is neither UTF-8 (invalid byte at offset {bad_utf8[0]:,}, line {bad_utf8[1]:,}) nor "
        f"Windows-1251 (invalid byte at offset {bad_cp1251[0]:,}, line {bad_cp1251[1]:,}). "
        "Save it as CSV UTF-8, or give its encoding with --encoding.")


def _encoding(path: Path, encoding: str | None, head: bytes) -> str:
    if encoding is None:
        return _detect_encoding(path, head)
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise CsvError(f"Unknown encoding {encoding!r} for {path}: use utf-8 or cp1251.") from None
    if name == "utf-8":
        name = "utf-8-sig"  # a BOM is not part of the first header
    if not name.startswith("utf") and not _ascii_only(path) and _check_encoding(path, "utf-8-sig") is None:
        # text in another script that decodes as UTF-8 is UTF-8 (a file in a one-byte encoding almost
        # never does); read as asked it would go in garbled ("Ð\x9fÐµ" for "Пе")
        raise CsvError(f"{path} is UTF-8 (all its text decodes as UTF-8), not {encoding}: read as {encoding} "
                       "its letters would be garbled. Leave --encoding out, or give --encoding utf-8.")
    bad = _check_encoding(path, name)
    if bad is not None:
        other = "cp1251" if name.startswith("utf") else "utf-8"
        raise CsvError(f"{path} is not valid {encoding}: invalid byte at offset {bad[0]:,} (line {bad[1]:,}). "
                       f"Try --encoding {other}, or leave --encoding out to detect it.")
    return name


def _delimiter(sample: str, truncated: bool) -> str:
    """The delimiter that splits the first rows of the sample most consistently into most columns."""
    best, best_score = ",", (0.0, 1)
    for d in (",", ";", "\t"):
        rows = []
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=d)
        while len(rows) < 51:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                continue
            if row:
                rows.append(row)
        if truncated and len(rows) > 1:
            rows = rows[:-1]  # the last record may be cut off by the end of the sample
        rows = rows[:50]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(r) == width for r in rows) / len(rows), width)
        if score > best_score:
            best, best_score = d, score
    return best


def _given_delimiter(delimiter: str, path: Path) -> str:
    d = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";"}.get(delimiter, delimiter)
    if len(d) != 1 or d in "\"\r\n":
        raise CsvError(f"Delimiter {delimiter!r} for {path} must be one character such as ',' or ';'.")
    return d


def _excel_sep(text: io.TextIOBase) -> str | None:
    """The delimiter an Excel ``sep=;`` first line names, that line read past (no part of the table; a
    delimiter given still wins); None, the file read from its start, where the first line is no such line."""
    excel = re.fullmatch(r"sep=(.) *", text.readline().lstrip("\ufeff").rstrip("\r\n"))
    if excel is None:
        text.seek(0)
        return None
    return excel.group(1)


class _Records:
    """csv.reader that also gives each record's first line and survives csv.Error in one record.

    A quote opened and never closed would make the reader take the rest of the file (or the rows up
    to the next stray quote) as one value, silently when it lands in the row's last column: such a
    record is reported as a bad row of its first line, and the lines after it are read again as rows
    of their own."""

    def __init__(self, text: io.TextIOBase, delimiter: str):
        self.text, self.delimiter = text, delimiter
        self.pending: list[str] = []  # lines to read again, before the rest of the file
        self.lines: list[str] = []    # the raw lines of the record being read
        self.reader = csv.reader(self._feed(), delimiter=delimiter)
        self.last_line = 0
        self.ran_out = False  # the reader asked for a line past the end of the file
        self.width: int | None = None  # the header's number of cells
        self.named = 0  # of those, up to its last named one: a row may end there (see _Converter.named)

    def _feed(self) -> Iterator[str]:
        while True:
            line = self.pending.pop(0) if self.pending else self.text.readline()
            if not line:
                self.ran_out = True
                return
            self.lines.append(line)
            yield line

    def __iter__(self) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
        while True:
            start = self.last_line + 1
            self.lines = []
            try:
                row = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:  # reported as a bad row; the reader goes on with the next line
                row = exc
            if len(self.lines) > 1 and self._swallowed():
                # only the first line is this row
                self.ran_out = False
                self.pending = self.lines[1:] + self.pending
                self.reader = csv.reader(self._feed(), delimiter=self.delimiter)
                self.last_line = start
                yield start, start, csv.Error("a quote opened in this row is not closed on its line: it would take "
                                              + ("the line after it into one value; it is read as a row of its own"
                                                 if len(self.lines) == 2 else
                                                 f"the {len(self.lines) - 1} lines after it into one value; they "
                                                 "are read as rows of their own"))
                continue
            self.last_line += len(self.lines)
            if self.width is None and isinstance(row, list) and any(c.strip() for c in row):
                self.width = len(row)  # the header's
                self.named = max((i + 1 for i, c in enumerate(row) if _norm(c)), default=len(row))
            yield start, self.last_line, row

    def _swallowed(self) -> bool:
        """Whether the record just read spans lines because a quote was left open: its quotes are not in
        pairs, and the end of the file came inside its quoted value or a line inside that value reads
        as a whole row by itself (as many cells as the header). Two stray quotes pair up: the rows
        between them stay one value (the row is then most often refused for its number of cells)."""
        if not "".join(self.lines).count('"') % 2:  # quotes in pairs: a value with line breaks
            return False
        inner = self.lines[1:-1]
        return self.ran_out or (self.width is not None and any(
            self.named <= len(cells) <= self.width for cells in csv.reader(inner, delimiter=self.delimiter)))


# --------------------------------------------------------------------------------------------
# converting a row

class _Reject(Exception):
    def __init__(self, column: str | None, reason: str, value: str | None = None):
        super().__init__(reason)
        self.column, self.reason, self.value = column, reason, value


def _excerpt(value: str) -> str:
    value = value.replace("\x00", "\\x00")
    return value if len(value) <= VALUE_EXCERPT else value[:VALUE_EXCERPT] + f"... ({len(value):,} characters)"


def _check_text(value: str, column: str, length: int | None, what: str) -> None:
    if "\x00" in value:
        raise _Reject(column, "contains a NUL character (\\x00), which a database cannot store in text; "
                              "remove it from the file", value)
    if length is not None and len(value) > length:
        raise _Reject(column, f"is {len(value):,} characters long; {what} holds at most {length:,}", value)


def _parse_date(value: str, column: str) -> date:
    v = value.strip()
    stamp = _stamp(v, column, value, "a date", "date")
    if stamp is not None and stamp.time() == datetime.min.time():  # some exports write a birthdate 01.02.1980 00:00:00
        return stamp.date()
    raise _Reject(column, f"{_excerpt(v)!r} is not a date: write {DATE_FORMS}", value)


def _parse_datetime(value: str, column: str, zone: ZoneInfo | None = None) -> tuple[datetime, bool]:
    """(the time in naive UTC, whether the cell gave no UTC offset: read as ``zone``'s local time, else as UTC)."""
    v = value.strip()
    stamp = _stamp(v, column, value, "a date and time", "date or time")
    if stamp is None:
        raise _Reject(column, f"{_excerpt(v)!r} is not a date and time: write {TIME_FORMS}", value)
    naive = stamp.tzinfo is None
    if naive and zone is None:
        return stamp, True
    if naive:
        # fold=0 (replace's default): a local time a DST change skips (02:30 of a spring-forward night) is read
        # with the offset before the change, one it repeats (02:30 of a fall-back night) as its first occurrence.
        # The file cannot say which was meant; such times are rare, and not noted.
        stamp = stamp.replace(tzinfo=zone)
    try:
        return stamp.astimezone(timezone.utc).replace(tzinfo=None), naive
    except OverflowError:  # (0001-01-01 00:00 east of UTC is before year 1)
        raise _Reject(column, f"{_excerpt(v)!r} is out of range: in UTC it falls outside the years 1-9999",
                      value) from None


def _stamp(v: str, column: str, value: str, written: str, such: str) -> datetime | None:
    """The date or time a stripped cell ``v`` is written as, aware where it gives a UTC offset; None if it is
    written in none of the forms read. Refused (_Reject): one written right that does not exist (31.02.2020,
    2021-13-01), and a slash date that reads both day first and month first (05/06/1985)."""
    if len(v) >= 10 and v[4] == "-" and v[7] == "-":  # zero-padded ISO, what exports write: read at C speed
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            pass  # (unpadded times, impossible dates: the forms below read them, or say why not)
    try:
        if m := _ISO.fullmatch(v):
            y, mo, d, h, mi, sec, frac, off = m.groups()
        elif m := _DMY.fullmatch(v):
            (d, mo, y, h, mi, sec, off), frac = m.groups(), None
        elif m := _SLASH.fullmatch(v):
            (a, b, y, h, mi, sec, off), frac = m.groups(), None
            if a != b and int(a) <= 12 and int(b) <= 12:
                forms = DATE_FORMS if such == "date" else TIME_FORMS
                raise _Reject(column, f"{_excerpt(v)!r} could be {y}-{int(b):02}-{int(a):02} (day first) or "
                                      f"{y}-{int(a):02}-{int(b):02} (month first): a date with '/' is read only where "
                                      f"one of the two is possible; write {forms}", value)
            d, mo = (a, b) if int(a) > 12 else (b, a)
        else:
            try:  # other ISO 8601 forms (19850505, 2021-03-15T10:15:00.5+03), as before
                return datetime.fromisoformat(v)
            except ValueError:
                return None
        tz = None if off is None else timezone.utc if off.upper() == "Z" else timezone(
            (-1 if off[0] == "-" else 1) * timedelta(hours=int(off[1:3]), minutes=int(off[3:].lstrip(":") or 0)))
        micro = int((frac or "0")[:6].ljust(6, "0"))  # (finer than microseconds: cut, as fromisoformat does)
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), micro, tzinfo=tz)
    except ValueError as exc:
        raise _Reject(column, f"{_excerpt(v)!r} is written as {written} but there is no such {such} ({exc})",
                      value) from None


def _parse_int(value: str, column: str) -> int:
    v = value.strip()
    if not v.isascii() or not v.isdigit() or not 0 < int(v) < 2**31:
        raise _Reject(column, f"{_excerpt(v)!r} is not a record id (a whole number from 1)", value)
    return int(v)


@dataclass
class _Row:
    line: int
    record: dict[str, Any]
    comms: list[tuple[str, str, str]]
    notes: list[str]
    dates_given: set[str] = field(default_factory=set)  # created_at / modified_at taken from the row's cells
    lacks: str | None = None  # (import --update) why the row could not be a new record: checked if it is one
    # cells left out (of fields not in ROW_FIELDS): (the field, or TYPE:KIND of a communication; its problem, told
    # when the row is written)
    left_out: list[tuple[str, Problem]] = field(default_factory=list)
    naive_times: bool = False  # a created_at / modified_at cell gave no UTC offset: read as UTC (or the portal's zone)

    @property
    def skipped(self) -> set[str]:
        """The fields (and TYPE:KIND) of the cells left out: an update leaves them as the database has them."""
        return {name for name, _ in self.left_out}


class _Users:
    """User ids and names for the Responsible column."""

    def __init__(self, store: Store):
        u = schema.users
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(u.c.id, u.c.name)).all()
        self.ids = {r.id for r in rows}
        self.by_name: dict[str, list[int]] = {}
        self.names = {r.id: r.name for r in rows}
        for r in rows:
            self.by_name.setdefault(self.key(r.name), []).append(r.id)

    @staticmethod
    def key(name: str) -> str:
        return " ".join(sorted(name.casefold().replace("ё", "е").split()))

    def resolve(self, value: str) -> tuple[int | None, str | None]:
        """(user id, None) or (None, a note saying why not)."""
        v = value.strip()
        if v.isascii() and v.isdigit():
            if int(v) in self.ids:
                return int(v), None
            return None, f"responsible id {v} is not a user"
        ids = self.by_name.get(self.key(v), [])
        if len(ids) == 1:
            return ids[0], None
        if ids:
            return None, f"responsible {_excerpt(v)!r} matches {len(ids)} users"
        return None, f"responsible {_excerpt(v)!r} is not a user"


# a cell of several phone numbers or e-mail addresses, in any format: split how, and the note saying so
_SEVERAL = {"phone": (several_numbers, "a phone cell held several numbers; each is stored as a phone of its own"),
            "email": (several_addresses,
                      "an e-mail cell held several addresses; each is stored as an e-mail of its own")}


class _Converter:
    def __init__(self, entity: str, fields: dict[str, _Field], columns: dict[str, list[int]],
                 header: list[str], split: str | None, users: _Users, default_responsible: int | None,
                 update: bool = False, zone: ZoneInfo | None = None):
        self.update, self.zone = update, zone
        self.entity, self.fields, self.columns, self.header = entity, fields, columns, header
        self.split, self.users, self.default_responsible = split, users, default_responsible
        self.width = len(header)
        self.header_key = [_norm(h) for h in header]
        # a header ending in nameless columns (a trailing ";"): a row may end where its named columns end, the
        # cells it lacks being those of columns no field is read from
        self.named = max((i + 1 for i, k in enumerate(self.header_key) if k), default=self.width)
        self.scalars = [(fields[f], idx) for f, idx in columns.items() if fields[f].kind != "comm"]
        self.comms = [(f.split(":")[0], f.split(":")[1], idx) for f, idx in columns.items()
                      if fields[f].kind == "comm"]
        self.now = datetime.now(timezone.utc).replace(tzinfo=None)
        self.naive = False  # the row being converted has a timestamp without an offset (read as UTC, or in zone)

    def convert(self, line: int, end: int, cells: list[str]) -> _Row:
        if len(cells) < self.named or any(c.strip() for c in cells[self.width:]):
            hint = (f"; it spans lines {line}-{end}: an opening quote without its closing quote joins lines"
                    if end > line else ": a delimiter inside an unquoted value, or a line broken in two?")
            raise _Reject(None, f"has {len(cells)} cells where the header has {self.width}{hint}")
        if _norm(cells[0]) == self.header_key[0] and [_norm(c) for c in cells[:self.named]] == \
                self.header_key[:self.named]:
            raise _Reject(None, "repeats the header line; skipped")
        record: dict[str, Any] = {}
        notes: list[str] = []
        left_out: list[tuple[str, Problem]] = []
        self.naive = False
        for f, idx in self.scalars:
            filled = [i for i in idx if cells[i].strip()]  # several columns for one field: the first filled one
            if not filled:
                continue
            i = filled[0]
            try:
                record[f.name] = self.value(f, cells[i], self.header[i], notes)
            except _Reject as r:
                if f.name in ROW_FIELDS:
                    raise
                left_out.append((f.name, Problem(line, r.column, r.reason, value=r.value)))
            for j in filled[1:]:  # another value there is not stored: said, not dropped silently
                if cells[j].strip() != cells[i].strip():
                    other = self.header[j] + (f"' (column {j + 1})" if self.header_key[j] == self.header_key[i]
                                              else "'")
                    notes.append(f"{f.name}: the columns '{self.header[i]}' and '{other} hold different values; the "
                                 "first is stored, the other left out")
        comms: list[tuple[str, str, str]] = []
        for typ, kind, idx in self.comms:
            for i in idx:
                pieces = [p.strip() for p in cells[i].split(self.split)] if self.split else [cells[i]]
                if typ == "phone" and len(pieces) > 1:
                    pieces = _with_extensions(pieces, self.split)
                several, note = _SEVERAL.get(typ, (None, None))
                if several is not None and any(len(several(p)) > 1 for p in pieces):
                    pieces = [one for p in pieces for one in several(p)]
                    if note not in notes:  # (a row is counted once, however many of its cells)
                        notes.append(note)
                for p in pieces:
                    if p.strip():
                        try:
                            _check_text(p, self.header[i], self.fields[f"{typ}:{kind}"].length, f"a {typ} value")
                        except _Reject as r:
                            if typ in ROW_FIELDS:
                                raise
                            left_out.append((f"{typ}:{kind}", Problem(line, r.column, r.reason, value=r.value)))
                            continue
                        comms.append((typ, kind, p))
        lacks = None
        if not self.has_required(record, comms):
            cols = sorted({self.header[i] for f, idx in self.columns.items()
                           if f.split(":")[0] in REQUIRED[self.entity] for i in idx})
            lacks = (f"lacks {REQUIRED_TEXT[self.entity]}: a {self.entity} needs at least one "
                     + (f"(columns {', '.join(cols)} are all empty)" if cols else "(the file has no column for one)"))
            if not (self.update and record.get("id") is not None):  # (an update of a record there: checked later)
                raise _Reject(None, lacks)
        if record.get("responsible_id") is None and self.default_responsible is not None:
            record["responsible_id"] = self.default_responsible
        given = {f for f in ("created_at", "modified_at") if f in record}  # (import --update keeps the rest)
        record.setdefault("created_at", record.get("modified_at", self.now))
        record.setdefault("modified_at", record["created_at"])
        return _Row(line, record, comms, notes, given, lacks, left_out, self.naive)

    def value(self, f: _Field, raw: str, column: str, notes: list[str]) -> Any:
        if f.name == "responsible_id":
            _check_text(raw, column, None, "")
            uid, note = self.users.resolve(raw)
            if note and self.update and self.default_responsible is None:
                # a record there keeps its manager (and they their access to it) rather than losing it to a
                # name or id this database does not know; listed with the row's line and id
                raise _Reject(column, note, raw)
            if note:
                notes.append(note + ("; set to the default responsible" if self.default_responsible
                                     else "; left empty"))
                return self.default_responsible
            return uid
        if f.kind in ("str", "text"):
            _check_text(raw, column, f.length, f"{self.entity} {f.name}")
            return raw
        _check_text(raw, column, None, "")
        if f.kind == "int":
            return _parse_int(raw, column)
        if f.kind == "date":
            return _parse_date(raw, column)
        stamp, naive = _parse_datetime(raw, column, self.zone)
        self.naive |= naive
        return stamp

    def has_required(self, record: dict[str, Any], comms: list[tuple[str, str, str]]) -> bool:
        need = REQUIRED[self.entity]
        return any(record.get(f) is not None and str(record[f]).strip() for f in need) or any(
            t in need for t, _, _ in comms)


# --------------------------------------------------------------------------------------------
# import

def _entity(entity: str) -> str:
    e = ENTITY_ALIASES.get(str(entity).strip().lower())
    if e is None:
        raise CsvError(f"Unknown entity {entity!r}: use contact, company or lead.")
    return e


def _preset(preset: str | None, entity: str) -> dict[str, list[str]] | None:
    if preset is None:
        return None
    if preset not in PRESETS:
        raise CsvError(f"Unknown preset {preset!r}: the presets are {', '.join(PRESETS)}; "
                       "or leave --preset out and map columns with --map FIELD=COLUMN.")
    if entity not in PRESETS[preset]:
        raise CsvError(f"The preset {preset!r} has no columns for {entity} records.")
    return PRESETS[preset][entity]


def _resolve_columns(path: Path, entity: str, header: list[str], fields: dict[str, _Field],
                     preset: str | None, mapping: dict[str, list[str]] | None, update: bool = False
                     ) -> tuple[dict[str, list[int]], list[str]]:
    """field -> column indices, and the ignored columns (with why, when known)."""
    base = _preset(preset, entity) or _native_mapping(entity)
    user: dict[str, list[str]] = {}
    for key, cols in (mapping or {}).items():
        cols = [cols] if isinstance(cols, str) else list(cols)
        # FIELD= (no column) leaves a field out, e.g. id= to import a file's rows as new records
        user.setdefault(_field_key(key, fields, entity), []).extend(c for c in cols if c.strip())
    by_name: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        by_name.setdefault(_norm(h), []).append(i)
    columns: dict[str, list[int]] = {}
    taken: set[int] = set()
    for f, cols in user.items():
        for c in cols:
            idx = by_name.get(_norm(c))
            if not idx:
                raise CsvError(f"The mapping {f}={c} names a column that {path} does not have. Its columns: "
                               f"{', '.join(repr(h) for h in header)}.")
            columns.setdefault(f, []).extend(i for i in idx if i not in columns.get(f, []))
            taken.update(idx)
    for f, cols in base.items():
        if f in user:
            continue
        idx = [i for c in cols for i in by_name.get(_norm(c), []) if i not in taken]
        if idx:
            columns[f] = list(dict.fromkeys(idx))
            taken.update(idx)
    needed = REQUIRED[entity]
    # (import --update: a file of ids and the columns to change is whole; its new ids are checked by row)
    if not any(f.split(":")[0] in needed for f in columns) and not (update and "id" in columns):
        expected = sorted({c for f, cols in {**base, **user}.items() if f.split(":")[0] in needed for c in cols})
        hint = ""
        names = {_norm(h) for h in header}
        if preset is None and not mapping and any(
                f.split(":")[0] in needed and any(_norm(c) in names for c in cols)
                for f, cols in PRESETS["bitrix24"][entity].items()):
            hint = " It looks like a Bitrix24 export: add --preset bitrix24."
        elif "id" in columns:
            hint = " To change records already in the database (by their ids), import it with --update."
        raise CsvError(
            f"{path} has no column for {REQUIRED_TEXT[entity]} of a {entity}. The file has: "
            f"{', '.join(repr(h) for h in header)}. "
            f"{'The ' + preset + ' preset' if preset else 'Without a preset, import'} expects at least one of: "
            f"{', '.join(expected)}.{hint} Check --entity and --preset, or map columns with --map FIELD=COLUMN.")
    ignored = []
    for i, h in enumerate(header):
        if i in taken or not h.strip():
            continue
        why = NOT_STORED.get(entity, {}).get(_norm(h))
        ignored.append(f"'{h}' ({why})" if why else f"'{h}'")
    return columns, ignored


def _with_extensions(pieces: list[str], joiner: str) -> list[str]:
    """The phones of a cell split at its joiner, an extension that followed its phone after a comma
    ("(495) 751-64-43, доб 802") put back with it."""
    out: list[str] = []
    for piece in pieces:
        if out and only_extension(piece):
            out[-1] = out[-1] + joiner + piece
        else:
            out.append(piece)
    return out


def import_csv(store: Store, path: Path, entity: str, *, preset: str | None = None,
               mapping: dict[str, list[str]] | None = None, encoding: str | None = None,
               delimiter: str | None = None, responsible_id: int | None = None,
               batch_size: int = BATCH_SIZE, region: str = "RU", keep_lines: bool = False,
               update: bool = False, portal_timezone: str | None = None) -> ImportReport:
    """Import one CSV file of contacts, companies or leads; bad rows are reported, the rest goes in.
    Phones, e-mails and birthdates the matching cannot use (checked as the quality report checks them,
    phones without a country code read in ``region``) are stored as written and counted in the
    report's notes. ``keep_lines``: the report's record_lines maps each record imported to its line.
    ``update``: a row whose id is in the database updates that record instead of being rejected: the
    file's columns replace the record's (an empty cell empties the field; created_at is kept unless
    given; modified_at is the file's or now), and its phones, e-mails, sites and messengers of the
    kinds the file has columns for are replaced by the file's. Only what differs is written: a record
    the file holds as it is stays untouched (counted as unchanged, not updated; one that differs only in
    modified_at too, counted apart), and a phone or e-mail row that keeps its place among its kind keeps
    its id, found by its number or address (a phone written differently keeps its row and takes the
    file's spelling; a kind the preset has no column for is found in the type's "other" column, where
    export writes it). A record merged or deleted in the database is not brought back: its row is rejected.
    So is the row of a record that is the primary of an applied merge made after the row's modified_at (a
    file exported before the merge), or of any applied merge when the row has no modified_at (nothing shows
    it was written after the merge): applying it would take back what the merge gave the primary (fields,
    phones and e-mails of the merged records, the earlier created_at) and block the merge's undo.
    ``portal_timezone``: an IANA name (Europe/Moscow) a created_at / modified_at written without a UTC offset is
    read in, as Bitrix24 writes them (None: read as UTC)."""
    zone = _zone(portal_timezone)
    with _opened(path, entity, preset, mapping, encoding, delimiter, update) as (path, entity, fields, records, header, columns,
                                                                         report):
        if keep_lines:
            report.record_lines = {}
        users = _Users(store)
        if responsible_id is not None and responsible_id not in users.ids:
            raise CsvError(f"The default responsible user id {responsible_id} is not a user of {store.display_url}.")
        report.portal_timezone = portal_timezone
        _import_rows(store, entity, fields, records, header, columns, preset, users, responsible_id, batch_size,
                     report, region, update, zone)
    log.info("%s", report.summary())
    return report


def check_csv_file(path: Path, entity: str, *, preset: str | None = None,
                   mapping: dict[str, list[str]] | None = None, encoding: str | None = None,
                   delimiter: str | None = None, portal_timezone: str | None = None) -> ImportReport:
    """What import_csv would refuse the whole file for (missing, empty, its encoding, delimiter or
    header, the preset, mapping or portal time zone), raised as the same CsvError, without reading its rows.
    Returns the report of what was found (encoding, delimiter, columns ignored), with no rows."""
    _zone(portal_timezone)
    with _opened(path, entity, preset, mapping, encoding, delimiter) as (*_, report):
        return report


@contextlib.contextmanager
def _opened(path: Path, entity: str, preset: str | None, mapping, encoding: str | None, delimiter: str | None,
            update: bool = False):
    """The file checked and opened up to its header: (path, entity, fields, the rows after the header,
    the header, its columns by field, a report with the encoding and delimiter)."""
    path = Path(path)
    entity = _entity(entity)
    _preset(preset, entity)
    fields = _fields(entity)
    if not path.exists():
        raise CsvError(f"There is no file {path}. Check the path.")
    if not path.is_file():
        raise CsvError(f"{path} is not a file.")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.replace(codecs.BOM_UTF8, b"").strip():
        raise CsvError(f"{path} is empty: export the records again, with the header line.")
    other = _not_csv(path, head)
    if other:
        raise CsvError(f"{path} is not a CSV file: it is {other}")
    enc = _encoding(path, encoding, head)
    report = ImportReport(file=path, entity=entity, encoding=enc, preset=preset)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a 1 MB cell is a row problem, not a reader error
    try:
        with open(path, encoding=enc, newline="") as text:
            sample = text.read(1 << 16)
            truncated = bool(text.read(1))
            text.seek(0)
            excel = _excel_sep(text)
            if excel is not None:
                sample = sample.split("\n", 1)[-1]
            report.delimiter = (_given_delimiter(delimiter, path) if delimiter else excel
                                or _delimiter(sample, truncated))
            records = _Records(text, report.delimiter)
            records.last_line = 0 if excel is None else 1  # (lines counted as the file's)
            header = _header(path, records)
            columns, report.ignored_columns = _resolve_columns(path, entity, header, fields, preset, mapping, update)
            yield path, entity, fields, records, header, columns, report
    finally:
        csv.field_size_limit(old_limit)


# Files people take for CSV: a spreadsheet in its own format, or Bitrix24's "Export to Excel", an HTML table written
# with an .xls name. Read as text they fail with their markup or bytes as columns, or as an encoding: said instead.
_HTML_START = re.compile(r"<(?:!--|(?:!doctype\s+html|html|head|body|meta|table|title|style)[\s>/])", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"<\?xml[^>]*>\s*", re.IGNORECASE)
_OLE2 = bytes.fromhex("D0CF11E0A1B11AE1")  # a compound file: Excel 97-2003's .xls (and Word's .doc)
_SAVE_AS_CSV = ("Open it in Excel or LibreOffice Calc and save it as CSV (UTF-8 or Windows-1251), or export the list "
                'from Bitrix24 as CSV ("Export to CSV", not "Export to Excel"), and import that file.')


def _not_csv(path: Path, head: bytes) -> str | None:
    """What the file is, with what to do, where its first bytes show it is no CSV (see _HTML_START); else None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    if head.startswith(_OLE2):
        return f"an Excel 97-2003 workbook (.xls). {_SAVE_AS_CSV}"
    text = head.decode("latin-1")  # (the markup is ASCII: any one-byte reading finds it)
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                     (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            text = head[len(bom):].decode(enc, errors="ignore")
            break
    text = text.lstrip()
    xml = _XML_DECLARATION.match(text)
    if _HTML_START.match(text[xml.end():] if xml else text):
        return f'a web page (HTML), as Bitrix24\'s "Export to Excel" writes (a table, named .xls). {_SAVE_AS_CSV}'
    if xml:
        return f'an XML file (Excel\'s "XML Spreadsheet 2003" is one). {_SAVE_AS_CSV}'
    return None


def _zip_kind(path: Path) -> str:
    """What a zip archive is: a workbook (.xlsx, .ods), or an archive, perhaps of the CSV files to import."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            mimetype = z.read("mimetype")[:100].decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError, KeyError):
        return f"a zip archive (an Excel .xlsx workbook is one) that cannot be opened. {_SAVE_AS_CSV}"
    if any(n.startswith("xl/") for n in names):
        return f"an Excel workbook (.xlsx). {_SAVE_AS_CSV}"
    if "opendocument.spreadsheet" in mimetype:
        return f"an OpenDocument spreadsheet (.ods). {_SAVE_AS_CSV}"
    inside = [n for n in names if n.lower().endswith(".csv")]
    if len(inside) == 1:
        return f"a zip archive. Unpack it and import the CSV file in it ({inside[0]})."
    if inside:
        shown = ", ".join(inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
        return f"a zip archive. Unpack it and import the CSV files in it one at a time ({shown})."
    return f"a zip archive with no CSV file in it ({len(names)} files). {_SAVE_AS_CSV}"


def _header(path: Path, records: "_Records") -> list[str]:
    """The first line of the file that is not blank."""
    for line, _end, row in records:
        if isinstance(row, csv.Error):
            raise CsvError(f"{path} line {line}: the header cannot be read ({row}).")
        if row and any(c.strip() for c in row):
            return row
    raise CsvError(f"{path} is empty: it has no header line and no rows.")


def _import_rows(store: Store, entity: str, fields: dict[str, _Field], records: _Records, header: list[str],
                 columns: dict[str, list[int]], preset: str | None, users: _Users, responsible_id: int | None,
                 batch_size: int, report: ImportReport, region: str = "RU", update: bool = False,
                 zone: ZoneInfo | None = None) -> None:
    conv = _Converter(entity, fields, columns, header, MULTI_VALUE_JOIN.get(preset), users, responsible_id, update,
                      zone)
    if update and "id" not in columns:
        raise CsvError(f"{Path(report.file).name} has no id column: --update needs the records' ids to find them.")
    updates = None
    if update:
        kinds = {(t, k) for t, k, _ in conv.comms}
        # kinds the file has no column name for at all (with the bitrix24 preset email/web "mobile"): export
        # writes them in their type's "other" column, so that column holds them too
        base = _preset(preset, entity) or _native_mapping(entity)
        folded = {t: {k for k in schema.COMM_KINDS if k != "other" and f"{t}:{k}" not in base
                      and f"{t}:{k}" not in columns} for t in schema.COMM_TYPES if (t, "other") in kinds}
        updates = _Updates([f.name for f, _ in conv.scalars], kinds, {t: k for t, k in folded.items() if k}, region,
                           conv.split is not None)
    writer = _Writer(store, entity, report, header[columns["id"][0]] if "id" in columns else None, region, updates)
    # the modified_at column's header, or the one to add: named in the problem of a row older than a merge
    writer.dated_column = header[columns["modified_at"][0]] if "modified_at" in columns else None
    writer.date_header = (_preset(preset, entity) or {}).get("modified_at", ["modified_at"])[0]
    id_at = columns["id"][0] if "id" in columns else None
    for line, end, row in records:
        if isinstance(row, csv.Error):
            report.rows_read += 1
            writer.reject(Problem(line, None, f"cannot be read as CSV ({row})"))
            continue
        if not any(c.strip() for c in row):  # a blank line is no row, nor one of delimiters only (Excel's ";;;;")
            continue
        report.rows_read += 1
        try:
            good = conv.convert(line, end, row)
        except _Reject as r:
            rid = row[id_at].strip() if id_at is not None and id_at < len(row) else ""
            if rid and rid == header[id_at].strip():  # (the header repeated: its id cell is the column's name)
                rid = ""
            writer.reject(Problem(line, r.column, r.reason, value=r.value, record=rid[:40] or None))
            continue
        writer.add(good)
        if len(writer.batch) >= batch_size:
            writer.flush()
    writer.flush()
    report.problems.sort(key=lambda p: p.line)  # rows refused at write time come last otherwise
    report.cell_problems.sort(key=lambda p: p.line)


class _Writer:
    """Writes good rows in batches, each batch in one transaction; never half a row."""

    def __init__(self, store: Store, entity: str, report: ImportReport, id_column: str | None = None,
                 region: str = "RU", updates: "_Updates | None" = None):
        self.store, self.entity, self.report, self.id_column = store, entity, report, id_column
        self.region, self.updates = region, updates
        self.updating: set[int] = set()  # ids of the batch being written that update a record
        self.written: dict[int, int | None] = {}  # of those: id -> communications written; None: left untouched
        self.dated: set[int] = set()  # of those left untouched: the ones whose modified_at in the file differs
        self.merged_away: dict[int, tuple[int, int]] | None = None  # read at the first batch
        self.primary_of: dict[int, list[tuple[datetime, int]]] = {}  # with it: id -> (merged_at, merge id) of
        # the applied merges it is the primary of, oldest first
        self.dated_column: str | None = None  # the file's modified_at column (None: it has none)
        self.date_header = "modified_at"  # what that column is called in the file's format
        self.table = schema.ENTITY_TABLES[entity]
        self.batch: list[_Row] = []
        self.seen_ids: dict[int, int] = {}  # explicit id -> line, to catch an id repeated in the file
        self.next_floor = 0  # ids given so far in this import

    def reject(self, problem: Problem) -> None:
        problem.file = self.report.file.name
        self.report.rejected += 1
        if len(self.report.problems) < MAX_PROBLEMS_KEPT:
            self.report.problems.append(problem)
        else:
            self.report.problems_dropped += 1

    def add(self, row: _Row) -> None:
        rid = row.record.get("id")
        if rid is not None:
            if rid in self.seen_ids:
                self.reject(Problem(row.line, self.id_column, f"id {rid} appears again "
                                    f"(first at line {self.seen_ids[rid]}); skipped", value=str(rid), record=str(rid)))
                return
            self.seen_ids[rid] = row.line
        self.batch.append(row)

    def flush(self) -> None:
        if not self.batch:
            return
        rows, self.batch = self.batch, []
        _unusable_notes(rows, self.region)
        try:
            with self.store.engine.begin() as conn:
                rows = self._prepare(conn, rows)
                self._insert(conn, rows)
                self.store.fix_sequences(conn)
        except sa.exc.DBAPIError as exc:
            # Something the checks did not foresee: find the row(s) by writing them one at a time.
            log.warning("batch insert failed (%s); retrying the %d rows one by one",
                        str(exc.orig).splitlines()[0], len(rows))
            self.written, self.dated = {}, set()
            for row in rows:
                try:
                    with self.store.engine.begin() as conn:
                        self._insert(conn, [row])
                        self.store.fix_sequences(conn)
                except sa.exc.DBAPIError as one:
                    self.reject(Problem(row.line, None, "the database refused it: "
                                        + str(one.orig).strip().splitlines()[0],
                                        record=None if row.record.get("id") is None else str(row.record["id"])))
                    continue
                self._count([row])
            return
        self._count(rows)

    def _count(self, rows: list[_Row]) -> None:
        for row in rows:
            if self.report.record_lines is not None:
                self.report.record_lines[row.record["id"]] = row.line
            self.report.imported += 1
            if row.naive_times:
                self.report.naive_times += 1
                self.report.naive_line = self.report.naive_line or row.line
            rid = row.record["id"]
            self._left_out(row, rid in self.updating)
            if rid in self.updating:
                inserted = self.written.get(rid)
                if inserted is None:  # the file holds the record as it is: nothing to count or note
                    if rid in self.dated:
                        self.report.dated_only += 1
                    else:
                        self.report.unchanged += 1
                    continue
                self.report.updated += 1
                self.report.communications += inserted
            else:
                self.report.communications += len(row.comms)
            for note in row.notes:
                self.report.notes[note] += 1
                self.report.note_lines.setdefault(note, row.line)

    def _left_out(self, row: _Row, updated: bool) -> None:
        """The cells left out of a row now written, each told with the record's id and what was done instead."""
        rid = row.record["id"]
        for name, p in row.left_out:
            what = name.split(":")[0] + " value" if ":" in name else name
            if updated and name == "modified_at":
                instead = "; the row is applied as if this cell were empty"
            elif updated:
                instead = (f"; {self.entity} #{rid} keeps the {name} values it has" if ":" in name else
                           f"; {self.entity} #{rid} keeps the {name} it has (the rest of the row is applied)")
            elif name == "created_at":
                instead = "; the row is imported as if this cell were empty (created_at is its modified_at, else now)"
            elif name == "modified_at":
                instead = "; the row is imported as if this cell were empty (modified_at is its created_at)"
            else:
                instead = (f"; the row is imported without this {what}" if ":" in name else
                           f"; the row is imported with its {name} left empty")
            problem = Problem(p.line, p.column, p.reason + instead, self.report.file.name, p.value, str(rid), p.reason)
            self.report.cell_fields[name.split(":")[0] if ":" in name else name] += 1
            if len(self.report.cell_problems) < MAX_PROBLEMS_KEPT:
                self.report.cell_problems.append(problem)

    def _prepare(self, conn, rows: list[_Row]) -> list[_Row]:
        """Reject rows whose id exists, clear links to missing records, give ids to the rest."""
        table = self.table
        explicit = [r.record["id"] for r in rows if r.record.get("id") is not None]
        taken = set()
        for part in _chunks(explicit, 900):
            taken |= set(conn.execute(sa.select(table.c.id).where(table.c.id.in_(part))).scalars())
        keep = []
        gone = self._deleted(conn, taken) if self.updates is not None else {}
        if self.merged_away is None:
            self.merged_away = self._merged_away(conn)
        self.updating, self.written, self.dated = set(), {}, set()
        for r in rows:
            rid = r.record.get("id")
            if rid in self.merged_away and rid not in taken:  # a hard delete left no row
                primary, merge = self.merged_away[rid]
                self.reject(Problem(r.line, self.id_column, f"{self.entity} #{rid} was merged into #{primary} "
                                    f"(merge {merge}) and removed; not imported again (undo the merge to bring it "
                                    "back, or leave the id column out to import the row as a new record)",
                                    value=str(rid), record=str(rid)))
            elif rid in taken and self.updates is not None and rid not in gone and self._before_merge(r, rid):
                continue  # (rejected: the row is older than a merge into its record)
            elif rid in taken and self.updates is not None and rid not in gone:
                self.updating.add(rid)
                keep.append(r)
            elif rid in gone:
                self.reject(Problem(r.line, self.id_column, f"{self.entity} #{rid} was merged or deleted on "
                                    f"{gone[rid]:%Y-%m-%d %H:%M}; not updated (undo its merge first to change it)",
                                    value=str(rid), record=str(rid)))
            elif rid in taken:
                self.reject(Problem(r.line, self.id_column, f"id {rid} is already in the database (imported before?); "
                                    "skipped. To update the records from the file, import it with --update; to "
                                    "import its rows as new records, leave its id column out (--map id=).",
                                    value=str(rid), record=str(rid)))
            elif r.lacks is not None:  # a new record of an --update file without what a new one needs
                self.reject(Problem(r.line, None, r.lacks + f"; {self.entity} #{rid} is not in the database, so the "
                                    "row would be a new record", value=str(rid), record=str(rid)))
            else:
                keep.append(r)
        for link, target in (("contact_id", schema.contacts), ("company_id", schema.companies)):
            if link not in table.c:
                continue
            wanted = {r.record[link] for r in keep if r.record.get(link) is not None}
            found = set()
            for part in _chunks(sorted(wanted), 900):
                found |= set(conn.execute(sa.select(target.c.id).where(target.c.id.in_(part))).scalars())
            for r in keep:
                if r.record.get(link) is not None and r.record[link] not in found:
                    if r.record.get("id") in self.updating:  # a record there keeps its link: listed as a cell left out
                        r.left_out.append((link, Problem(r.line, link, f"{link} {r.record[link]} is not in the "
                                                         "database", value=str(r.record[link]))))
                    else:
                        r.notes.append(f"{link} {r.record[link]} is not in the database; left empty")
                    r.record[link] = None
        top = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
        next_id = max(top, self.next_floor, max(explicit, default=0)) + 1
        for r in keep:
            if r.record.get("id") is None:
                r.record["id"] = next_id
                next_id += 1
        self.next_floor = max(self.next_floor, next_id - 1, max(explicit, default=0))
        return keep

    def _merged_away(self, conn) -> dict[int, tuple[int, int]]:
        """Ids that applied merges of this entity type merged away: id -> (primary id, merge id). Fills
        primary_of from the same merges."""
        m = schema.dedup_merges
        rows = conn.execute(sa.select(m.c.id, m.c.primary_id, m.c.merged_ids, m.c.merged_at).where(
            m.c.entity_type == self.entity, m.c.status == "applied").order_by(m.c.merged_at, m.c.id)).all()
        self.primary_of = {}
        for merge, primary, _ids, at in rows:
            self.primary_of.setdefault(primary, []).append((at, merge))
        return {int(i): (primary, merge) for merge, primary, ids, _at in rows for i in ids}

    def _before_merge(self, r: _Row, rid: int) -> bool:
        """Reject (and say True) the row of a record that is the primary of applied merges made after the
        row's modified_at: a file exported before the merge holds the primary without what the merge gave it
        (the merged records' fields, phones and e-mails, their earlier created_at), so applying it would
        quietly take the merge back and leave the merge's undo refused. A row without a modified_at (no
        such column, or its cell empty) cannot show it was written after the merge: it is rejected as well,
        the safe side, since rejecting costs an export (or a date column) and applying can lose data."""
        merges = self.primary_of.get(rid)
        if not merges:
            return False
        given = r.record["modified_at"] if "modified_at" in r.dates_given else None
        later = [(at, merge) for at, merge in merges if given is None or _later(at, given)]
        if not later:
            return False
        # to the second, unless the row's date and a merge's fall in the same second: then with the fraction
        fine = given is not None and any(at.replace(microsecond=0) == given.replace(microsecond=0) for at, _ in later)
        stamp = "%Y-%m-%d %H:%M:%S.%f" if fine else "%Y-%m-%d %H:%M:%S"
        which = (f"merge #{later[0][1]} made on {later[0][0]:{stamp}}" if len(later) == 1 else
                 "merges " + ", ".join(f"#{merge} (made on {at:{stamp}})" for at, merge in later))
        undo = (f"undo merge #{later[0][1]}" if len(later) == 1 else
                "undo merges " + " then ".join(f"#{merge}" for _, merge in reversed(later)))
        them, the = ("it", "the merge") if len(later) == 1 else ("them", "the merges")
        if given is not None:
            why = f"{which}, after this row was last modified ({given:{stamp}})"
            column, value = self.dated_column, f"{given:{stamp}}"
        elif self.dated_column is not None:
            bad = next((p.value for name, p in r.left_out if name == "modified_at"), None)  # (a cell that is no date)
            why = (f"{which}, and this row's '{self.dated_column}' cell is "
                   + ("empty" if bad is None else "not a date") + f": nothing shows it was written after {them}")
            column, value = self.dated_column, bad
        else:
            why = (f"{which}, and the file has no '{self.date_header}' column: nothing shows this row was written "
                   f"after {them}")
            column, value = self.id_column, str(rid)
        self.reject(Problem(
            r.line, column, f"{self.entity} #{rid} is the primary of {why}; the row may hold #{rid} as it was before "
            "the merge, without what the merge gave it (fields, phones and e-mails of the merged records), so it is "
            f"not applied. Export again after {the}, or {undo} first"
            + ("" if given is not None else f" (or, in a file made by hand, give the row a '{self.date_header}' "
               f"after {the})") + ".",
            value=value, record=str(rid)))
        return True

    def _deleted(self, conn, ids: set[int]) -> dict[int, Any]:
        """The records among ``ids`` that are merged or deleted: id -> when."""
        t, out = self.table, {}
        for part in _chunks(sorted(ids), 900):
            out.update(conn.execute(sa.select(t.c.id, t.c.deleted_at).where(t.c.id.in_(part),
                                                                             t.c.deleted_at.is_not(None))).all())
        return out

    def _insert(self, conn, rows: list[_Row]) -> None:
        if self.updates is not None and self.updating:
            old = [r for r in rows if r.record["id"] in self.updating]
            written, dated = self.updates.write(conn, self.store, self.table, self.entity, old)
            self.written.update(written)
            self.dated |= dated
            rows = [r for r in rows if r.record["id"] not in self.updating]
        if not rows:
            return
        cols = [c.name for c in self.table.c if c.name not in NOT_IMPORTED]
        self.store.insert(self.table, ({c: r.record.get(c) for c in cols} for r in rows), conn=conn)
        comms = [{"entity_type": self.entity, "entity_id": r.record["id"], "type": t, "kind": k, "value": v}
                 for r in rows for t, k, v in r.comms]
        if comms:
            self.store.insert(schema.communications, comms, conn=conn)


@dataclass
class _Updates:
    """How import --update writes rows whose records exist: the fields the file has columns for, and
    the (type, kind) of communications it has columns for.

    Only what differs is written. A record the file holds as the database has it is not touched (its
    modified_at neither), and a communication row whose value keeps its place among its record's
    values of that kind keeps its id: rewriting them would break the undo of earlier merges (which
    checks those rows) and make the next incremental run see every record as changed.

    A value is found among its record's by what it means, not how it is written (a phone by its
    number, see _comm_keys): "84951234567" in the file is the row "+7 (495) 123-45-67", which keeps
    its id and takes the file's spelling (noted in the summary). ``folded``: type -> kinds the file has
    no column for at all (bitrix24: e-mail and site "mobile"); export writes those in the type's "other"
    column, so that column is matched against the rows of those kinds as well, and a row found there
    keeps its kind: the file cannot say it, so it cannot have changed it."""

    fields: list[str]
    comm_kinds: set[tuple[str, str]]
    folded: dict[str, set[str]] = field(default_factory=dict)
    region: str = "RU"
    joined: bool = False  # several values share a cell, each read without surrounding spaces

    def write(self, conn, store: Store, table: sa.Table, entity: str, rows: list[_Row]
              ) -> tuple[dict[int, int | None], set[int]]:
        """Update the records of ``rows``. Returns id -> communications written (inserted or respelled),
        None for a record left untouched; and the ids left untouched whose modified_at in the file differs."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        c = schema.communications
        ids = [r.record["id"] for r in rows]
        compared = [f for f in self.fields if f not in ("id", "modified_at")]
        current: dict[int, dict[str, Any]] = {}
        # record id -> (type, the kind of the file's column for it) -> [(row id, kind, value)] in id order
        held: dict[int, dict[tuple[str, str], list[tuple[int, str, str]]]] = {}
        for part in _chunks(ids, 900):
            for row in conn.execute(sa.select(table.c.id, table.c.modified_at, *(table.c[f] for f in compared))
                                    .where(table.c.id.in_(part))).mappings():
                current[row["id"]] = dict(row)
            if self.comm_kinds:
                for cid, eid, typ, kind, value in conn.execute(
                        sa.select(c.c.id, c.c.entity_id, c.c.type, c.c.kind, c.c.value)
                        .where(c.c.entity_type == entity, c.c.entity_id.in_(part)).order_by(c.c.id)):
                    column = kind if (typ, kind) in self.comm_kinds else (
                        "other" if kind in self.folded.get(typ, ()) else None)
                    if column is not None:
                        held.setdefault(eid, {}).setdefault((typ, column), []).append((cid, kind, value))
        keys = self._keys(held, rows)
        out: dict[int, int | None] = {}
        dated: set[int] = set()
        gone: list[int] = []
        added: list[dict[str, Any]] = []
        respelled: list[dict[str, Any]] = []
        for r in rows:
            rid, old = r.record["id"], current[r.record["id"]]
            skipped = r.skipped  # (cells the file could not give: what the record has stays)
            values = {f: r.record.get(f) for f in compared if f not in skipped
                      and (f != "created_at" or "created_at" in r.dates_given)}  # created_at is kept unless given
            values = {f: v for f, v in values.items() if not _same_value(old[f], v)}
            drop: list[int] = []
            new: list[tuple[str, str, str]] = []
            fix: list[tuple[int, str]] = []
            for typ, kind in (tuple(f.split(":")) for f in COMM_FIELDS):
                if (typ, kind) not in self.comm_kinds or f"{typ}:{kind}" in skipped:
                    continue
                wanted = [v for t, k, v in r.comms if (t, k) == (typ, kind)]
                d, n, f = _comm_changes(held.get(rid, {}).get((typ, kind), []), wanted, keys[typ], self.joined)
                drop += d
                new += [(typ, k or kind, v) for v, k in n]
                fix += f
                if f:
                    a_value, same = _RESPELT[typ]
                    note = (f"{a_value} written differently in the file (the same {same}) is stored as the file "
                            "writes it; its row and id are kept")
                    if note not in r.notes:  # (write runs again for a batch retried row by row)
                        r.notes.append(note)
            given = r.record.get("modified_at") if "modified_at" in r.dates_given else None
            if not values and not drop and not new and not fix:
                # modified_at alone is not applied: nothing anyone sees changed, and taking it would make the
                # next incremental run match the record again for nothing (or date it back, from an older file)
                if given is not None and not _same_value(old["modified_at"], given):
                    dated.add(rid)
                out[rid] = None
                continue
            # the file's modification date where it is newer than the stored one (a newer export); an
            # older one (a file exported, edited by hand, imported again) would date the change back
            values["modified_at"] = given if given is not None and (old["modified_at"] is None
                                                                    or given > old["modified_at"]) else now
            conn.execute(table.update().where(table.c.id == rid).values(**values))
            gone += drop
            added += [{"entity_type": entity, "entity_id": rid, "type": t, "kind": k, "value": v} for t, k, v in new]
            respelled += [{"cid": cid, "text": v} for cid, v in fix]
            for cid, v in fix:
                log.debug("%s #%s: communication %s respelled as %r (line %d)", entity, rid, cid, v, r.line)
            out[rid] = len(new) + len(fix)
        for part in _chunks(gone, 900):
            conn.execute(c.delete().where(c.c.id.in_(part)))
        if respelled:
            conn.execute(c.update().where(c.c.id == sa.bindparam("cid")).values(value=sa.bindparam("text")), respelled)
        if added:
            store.insert(c, added, conn=conn)
        return out, dated

    def _keys(self, held: dict, rows: list[_Row]) -> dict[str, dict[str, str]]:
        """type -> value -> its key, for every value of the batch (the database's and the file's), each
        type normalised in one call."""
        values: dict[str, dict[str, None]] = {t: {} for t in schema.COMM_TYPES}
        for groups in held.values():
            for (typ, _), group in groups.items():
                values[typ].update(dict.fromkeys(v for _, _, v in group))
        for r in rows:
            for typ, _, v in r.comms:
                values[typ][v] = None
        return {t: dict(zip(vs, _comm_keys(t, list(vs), self.region))) for t, vs in values.items()}


# what a respelled value is called in the summary: (a value, what stayed the same)
_RESPELT = {"phone": ("a phone", "number"), "email": ("an e-mail", "address"), "web": ("a site", "address"),
            "im": ("a messenger contact", "contact")}


def _comm_keys(typ: str, values: list[str], region: str) -> list[str]:
    """What values of one type are matched by in an update: a phone by its number (E.164, with its
    extension: "доб 802" is another line of an office), an e-mail by its address as the matching reads it,
    anything else (and a phone or e-mail that does not parse) by its text without case and extra spaces."""
    if not values:
        return []
    texts = ["t:" + " ".join(v.split()).casefold() for v in values]
    if typ == "phone":
        p = normalize_phones(pd.Series(values, dtype=object), region=region)
        return [f"n:{e};ext={x}" if isinstance(x, str) and x else f"n:{e}" if isinstance(e, str) and e else t
                for e, x, t in zip(p["e164"].tolist(), p["ext"].tolist(), texts)]
    if typ == "email":
        emails = normalize_emails(pd.Series(values, dtype=object))["email"].tolist()
        return [f"n:{e}" if isinstance(e, str) and e else t for e, t in zip(emails, texts)]
    return texts


def _later(merged_at: datetime, given: datetime) -> bool:
    """Whether a merge was made after a row's modified_at. A date written without microseconds (Bitrix24's
    format) is compared with the merge's to the second: an export right after the merge writes the merge's
    time (the primary's modified_at) without its fraction."""
    return (merged_at.replace(microsecond=0) if given.microsecond == 0 else merged_at) > given


def _same_value(held: Any, given: Any) -> bool:
    """Whether a file's value is the one the database holds. A timestamp written without microseconds
    (Bitrix24's format) is the same as the stored one with them; an empty (or blank) text is the same as
    an empty cell, which is read as NULL: a file cannot tell the two apart."""
    if held == given or (given is None and isinstance(held, str) and not held.strip()):
        return True
    return (isinstance(held, datetime) and isinstance(given, datetime) and given.microsecond == 0
            and held.replace(microsecond=0) == given)


def _comm_changes(held: list[tuple[int, str, str]], wanted: list[str], keys: dict[str, str], joined: bool = False
                  ) -> tuple[list[int], list[tuple[str, str | None]], list[tuple[int, str]]]:
    """How a record's communications of one file column, held as (id, kind, value) in id order, become
    the file's values ``wanted``: (ids to delete, (value, kind or None for the column's) to insert in order,
    (id, value) to respell). A value is matched by its key; values the two share in the same order keep
    their rows (and kinds), taking the file's spelling where it differs. Since new rows get the highest
    ids, the values after the first added one are written again so that the id order stays the file's.
    ``joined``: the file's cell held several values, read without surrounding spaces, so a stored value's
    surrounding spaces are no change."""
    match = difflib.SequenceMatcher(None, [keys[v] for _, _, v in held], [keys[v] for v in wanted], autojunk=False)
    kept = {b + i: held[a + i] for a, b, size in match.get_matching_blocks() for i in range(size)}
    first_added = next((j for j in range(len(wanted)) if j not in kept), len(wanted))
    keep = {kept[j][0] for j in range(first_added)}
    respell = [(kept[j][0], wanted[j]) for j in range(first_added)
               if kept[j][2] != wanted[j] and not (joined and kept[j][2].strip() == wanted[j])]
    insert = [(wanted[j], kept[j][1] if j in kept else None) for j in range(first_added, len(wanted))]
    return [cid for cid, _, _ in held if cid not in keep], insert, respell


def _unusable_notes(rows: list[_Row], region: str) -> None:
    """Note on each row the phones, e-mails, birthdate and tax id that the matching cannot use (the quality
    report's verdicts): they are stored as written, since the CRM holds what people typed, but the
    person importing should hear of them now rather than at the next run's quality report."""
    checks = (("phone", "a phone", lambda v: normalize_phones(v, region=region)),
              ("email", "an e-mail", normalize_emails))
    for typ, a_value, normalise in checks:
        at = [(row, value) for row in rows for t, _k, value in row.comms if t == typ]
        if not at:
            continue
        verdicts = normalise(pd.Series([value for _, value in at], dtype=object))
        what = f"a phone number (read in region {region} without a +code)" if typ == "phone" else "an e-mail address"
        for (row, _), valid, placeholder in zip(at, verdicts["valid"], verdicts["placeholder"]):
            note = (f"{a_value} is a placeholder; stored, and left out of matching" if placeholder else
                    None if valid else f"{a_value} is not {what}; stored as written, and left out of matching")
            if note and note not in row.notes:  # a row is counted once per kind of note
                row.notes.append(note)
    for row in rows:
        born = row.record.get("birthdate")
        if born is not None and parse_birthdate(born) is None:
            row.notes.append("birthdate is in the future or before 1900; stored, and left out of matching")
        tax_id = row.record.get("tax_id")
        if tax_id is not None and str(tax_id).strip():
            digits, ok = parse_inn(tax_id)
            if not ok:  # an OGRN in the INN column, a control digit wrong, 0000000000
                row.notes.append("tax id is not a valid INN (10 or 12 digits with their control digits); "
                                 "stored as written, and left out of matching")


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# --------------------------------------------------------------------------------------------
# export

def export_csv(store: Store, path: Path, entity: str, *, preset: str | None = None,
               encoding: str = "utf-8", delimiter: str = ",", portal_timezone: str | None = None) -> int:
    """Write the live records of one entity type with all their fields and communications; returns the count.

    Without a preset the header is the table's columns (id first) and one ``TYPE:KIND`` column per
    communication value, repeated as often as the record with most such values needs, so that
    ``import_csv`` reads it back exactly (dates and timestamps in ISO 8601). With ``preset='bitrix24'``
    the header is Bitrix24's, several values of a kind share one cell joined by ", ", dates are
    dd.mm.yyyy [hh:mm:ss] and Responsible is the user's name.

    Timestamps are written in UTC (without an offset), or with ``portal_timezone`` (an IANA name) in that zone's
    local time: with the preset without an offset, as Bitrix24 writes them (import with the same zone reads them
    back, but for the hour a DST change repeats, read as its first occurrence); without a preset with the offset
    (2021-05-05 17:30:00+03:00), which any import reads back exactly.
    """
    path = Path(path)
    entity = _entity(entity)
    zone = _zone(portal_timezone)
    cols_of = _preset(preset, entity)
    try:
        enc = codecs.lookup(encoding).name
    except LookupError:
        raise CsvError(f"Unknown encoding {encoding!r}: use utf-8, utf-8-sig or cp1251.") from None
    delim = _given_delimiter(delimiter, path)
    table = schema.ENTITY_TABLES[entity]
    fields = [c.name for c in table.c if c.name not in NOT_IMPORTED]
    join = MULTI_VALUE_JOIN.get(preset)
    users = _Users(store).names if preset else {}

    if cols_of is None:
        counts = _max_comm_counts(store, entity)
        comm_cols = [f for f in COMM_FIELDS for _ in range(max(1, counts.get(f, 0)))]
        header = fields + comm_cols
        out_fields = fields
    else:
        out_fields = [f for f in cols_of if ":" not in f]
        comm_cols = [f for f in cols_of if ":" in f]
        header = [cols_of[f][0] for f in out_fields + comm_cols]

    def fmt(name: str, v: Any) -> str:
        if v is None:
            return ""
        if preset and name == "responsible_id":
            return users.get(v, str(v))
        if isinstance(v, datetime):
            if zone is not None:
                try:
                    v = v.replace(tzinfo=timezone.utc).astimezone(zone)
                except OverflowError:  # (9999-12-31 23:00 UTC is past year 9999 east of it): as UTC, saying so
                    return v.isoformat(sep=" ") + "+00:00"
            return v.strftime(DATE_FORMATS[preset][1]) if preset else v.isoformat(sep=" ")
        if isinstance(v, date):
            return v.strftime(DATE_FORMATS[preset][0]) if preset else v.isoformat()
        return str(v)

    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with open(tmp, "w", encoding=enc, newline="", errors="strict") as f:
            w = csv.writer(f, delimiter=delim)
            w.writerow(header)
            for rec, comms in _live_records(store, entity):
                by_field: dict[str, list[str]] = {}
                for t, k, v in comms:
                    key = f"{t}:{k}"
                    if cols_of is not None and key not in cols_of:
                        key = f"{t}:other"  # a kind Bitrix24 has no column for
                    by_field.setdefault(key, []).append(v)
                cells = [fmt(n, rec[n]) for n in out_fields]
                if join is None:
                    for key in dict.fromkeys(comm_cols):
                        vals = by_field.get(key, [])
                        cells += vals + [""] * (comm_cols.count(key) - len(vals))
                else:
                    cells += [join.join(by_field.get(key, [])) for key in comm_cols]
                try:
                    w.writerow(cells)
                except UnicodeEncodeError:
                    bad = next(i for i, c in enumerate(cells) if not _encodable(c, enc))
                    ch = _first_bad(cells[bad], enc)
                    raise CsvError(
                        f"Record id {rec['id']}, column '{header[bad]}': the character {ch!r} "
                        f"(U+{ord(ch):04X}) cannot be written in {encoding}. Export with --encoding utf-8 "
                        f"(or utf-8-sig for Excel).") from None
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("exported %d %s records to %s", count, entity, path)
    return count


def _encodable(text: str, enc: str) -> bool:
    try:
        text.encode(enc)
        return True
    except UnicodeEncodeError:
        return False


def _first_bad(text: str, enc: str) -> str:
    return next(ch for ch in text if not _encodable(ch, enc))


def _max_comm_counts(store: Store, entity: str) -> dict[str, int]:
    comm, table = schema.communications, schema.ENTITY_TABLES[entity]
    live = sa.select(table.c.id).where(table.c.deleted_at.is_(None))
    per = (sa.select(comm.c.type, comm.c.kind, sa.func.count().label("n"))
           .where(comm.c.entity_type == entity, comm.c.entity_id.in_(live))
           .group_by(comm.c.entity_id, comm.c.type, comm.c.kind).subquery())
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(per.c.type, per.c.kind, sa.func.max(per.c.n))
                            .group_by(per.c.type, per.c.kind)).all()
    return {f"{t}:{k}": n for t, k, n in rows}


def _live_records(store: Store, entity: str, chunk: int = 5000
                  ) -> Iterator[tuple[dict[str, Any], list[tuple[str, str, str]]]]:
    """Live records in id order, each with its communications in id order, read in chunks."""
    table, comm = schema.ENTITY_TABLES[entity], schema.communications
    query = sa.select(table).where(table.c.deleted_at.is_(None)).order_by(table.c.id)
    with store.engine.connect() as conn, store.engine.connect() as conn2:
        result = conn.execution_options(stream_results=True).execute(query)
        while rows := result.fetchmany(chunk):
            lo, hi = rows[0].id, rows[-1].id
            by_id: dict[int, list[tuple[str, str, str]]] = {}
            for eid, t, k, v in conn2.execute(
                    sa.select(comm.c.entity_id, comm.c.type, comm.c.kind, comm.c.value)
                    .where(comm.c.entity_type == entity, comm.c.entity_id.between(lo, hi))
                    .order_by(comm.c.entity_id, comm.c.id)):
                by_id.setdefault(eid, []).append((t, k, v))
            for r in rows:
                yield r._asdict(), by_id.get(r.id, [])

