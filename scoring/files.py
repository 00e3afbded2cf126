"""File mode: deduplicate any CSV or parquet table, no database."""

from __future__ import annotations

import codecs
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from matchers.table import SINGLE_ROLES, MappingError, RoleTable
from scoring.find import FindResult, find_duplicates
from scoring.settings import MatchSettings

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# a delimiter given by name, as `crm-dedup import --delimiter` takes it
DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";"}
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "cp1251": "Windows-1251", "utf-16": "UTF-16"}
# how to read a CSV otherwise, for an error that may come from a wrong guess
READ_HINT = ("if that is not how the file is written, give find --encoding (utf-8, cp1251, utf-16) and --delimiter "
             "(',', ';', tab or another character), or make its first line `sep=X` naming the delimiter, as Excel does")
# an id written as a plain whole number that int64 holds ("007", "+7", " 7" are not: they would not be
# written back as they were)
PLAIN_INTEGER = r"0|-?[1-9][0-9]{0,17}"


class FileError(ValueError):
    """An input file that cannot be read; the message names the file and the fix."""


def read_table(path: Path, columns: Collection[str] | None = None, repeated_names: bool = False,
               encoding: str | None = None, delimiter: str | None = None) -> pd.DataFrame:
    """A CSV (UTF-8 with or without BOM, Windows-1251, or UTF-16 with a BOM; comma, semicolon or tab, or
    the delimiter an Excel `sep=X` first line names) or parquet file, as strings. ``encoding`` and
    ``delimiter`` (a character, or tab / comma / semicolon) say how a CSV is written instead of guessing it.
    With ``columns``, only those of them the file has are read (a table of a million rows holds many
    columns a dedup never looks at); a missing one is left for the caller to name.
    A name the header repeats (`crm-dedup export` repeats `phone:work` for records with several work
    phones) is renamed name.1, name.2 as pandas does, or with ``repeated_names`` kept for each of its
    columns (``frame[name]`` is then a frame of them all; find_in_file maps them all); else a CSV whose header
    repeats a name read (an id or truth column: which is meant?) is refused. ``frame.attrs``:
    ``file_columns`` every column of the file as written, ``read_as`` how it was read."""
    path = Path(path)
    if not path.exists():
        raise FileError(f"There is no file {path}.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq

            have = pq.read_schema(path).names
            if columns is not None:
                columns = [c for c in dict.fromkeys(columns) if c in set(have)]
            # what pd.read_parquet gives, but read by pyarrow from the path itself and a block per
            # column (no copy into one block): ~0.2 s less at a million rows
            frame = pq.read_table(path, columns=columns, use_pandas_metadata=True).to_pandas(split_blocks=True)
            # Arrow's allocator keeps the decoded pages for reuse (~150 MB at a million rows): give them back
            pa.default_memory_pool().release_unused()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
            raise FileError(f"{path} is not a readable parquet file: {exc}") from exc
        frame.attrs.update(file_columns=list(have), read_as="parquet")
        return frame
    asked, given = encoding, _given_encoding(path, encoding) if encoding is not None else None
    sep_given = _given_delimiter(path, delimiter) if delimiter is not None else None
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    # UTF-16 (Excel's "Unicode text") is only recognised by its BOM: without one it reads as 8-bit text
    utf16 = head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    sniff = given or ("utf-16" if utf16 else "utf-8")
    text = head[:len(head) // 2 * 2].decode(sniff, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise FileError(f"{path} is empty.")
    lines = text.splitlines()
    # Excel's "sep=;" first line names the delimiter and is no part of the table
    excel = re.fullmatch(r"sep=(.) *", lines[0])
    skip = 1 if excel else 0
    header = next((line for line in lines[skip:] if line.strip()), "")
    # (a given delimiter wins over a sep= line, which is still no part of the table)
    sep = sep_given or (excel.group(1) if excel else max(DELIMITERS, key=header.count))  # (a tie: comma)
    # read straight from the file (no copy of the whole text in memory), as UTF-8, else Windows-1251 (or UTF-16)
    wanted = None if columns is None else set(columns)
    for encoding in (given,) if given else ("utf-16",) if utf16 else ("utf-8-sig", "cp1251"):
        read = {"sep": sep, "encoding": encoding, "skiprows": skip}
        try:
            # the header as written: pandas renames a repeated name to name.1, name.2, ...
            names = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **read).iloc[0].tolist()
            at = range(len(names)) if wanted is None else [i for i, n in enumerate(names) if n in wanted]
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                                usecols=None if wanted is None else at, **read)
        except UnicodeDecodeError as exc:
            if given:
                raise FileError(f"{path} is not {asked} text ({exc.reason}): give the --encoding it is written "
                                "in (utf-8, cp1251, utf-16), or leave --encoding out to detect it.") from None
            continue
        except pd.errors.EmptyDataError:
            raise FileError(f"{path} is empty.") from None
        except pd.errors.ParserError as exc:
            raise FileError(f"{path} is not valid CSV: {exc}") from exc
        if not repeated_names:  # which of the columns named alike is meant cannot be told: refused, not guessed
            repeats = [n for n, k in Counter(names[i] for i in at if names[i]).items() if k > 1]
            if repeats:
                where = "; ".join(f"{n!r} (columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)})"
                                  for n in repeats)
                raise FileError(f"{path}'s header repeats {where}: which of them is meant cannot be told, so "
                                "rename or remove all but one.")
        if repeated_names and len(frame.columns) == len(at):  # (else pandas took a column as the index)
            # each column its own name back ("" where the header cell is empty: pandas' "Unnamed: N")
            frame.columns = [names[i] or str(c) for i, c in zip(at, frame.columns)]
        by_line = " (a sep= first line)" if excel and not sep_given else ""
        # (source: what RoleTable.from_frame needs to name a bad row by its line in the file)
        frame.attrs.update(file_columns=names, read_as=f"{ENCODING_NAMES.get(encoding, encoding)}, "
                           f"{DELIMITERS.get(sep, repr(sep))}-separated{by_line}",
                           source=dict(path=str(path), encoding=encoding, sep=sep, skiprows=skip))
        return frame
    raise FileError(f"{path} is neither UTF-8 nor Windows-1251 text.")


def _given_encoding(path: Path, encoding: str) -> str:
    """The codec of an encoding given by name. One that cannot be the file's is refused here, as import refuses
    it: a file whose text decodes as UTF-8 read as an 8-bit encoding would have its letters garbled ("ÐŸ" for "П")."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise FileError(f"Unknown encoding {encoding!r} for {path}: use utf-8, cp1251 or utf-16.") from None
    if name == "utf-8":
        return "utf-8-sig"  # a BOM is not part of the first header
    if not name.startswith("utf") and _utf8_not_ascii(path):
        raise FileError(f"{path} is UTF-8 (all its text decodes as UTF-8), not {encoding}: read as {encoding} its "
                        "letters would be garbled. Leave --encoding out, or give --encoding utf-8.")
    return name


def _utf8_not_ascii(path: Path) -> bool:
    """Whether the file holds other than ASCII and all of it decodes as UTF-8 (read in chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    ascii_only = True
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            ascii_only = ascii_only and chunk.isascii()
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return not ascii_only


def _given_delimiter(path: Path, delimiter: str) -> str:
    d = DELIMITER_NAMES.get(delimiter, delimiter)
    if len(d) != 1 or d in "\"\r\n":
        raise FileError(f"Delimiter {delimiter!r} for {path} must be one character such as ',' or ';' (or tab).")
    return d


def find_in_file(path: Path, entity_type: str, mapping: Mapping[str, Sequence[str] | str], id_column: str | None,
                 settings: MatchSettings | None = None, encoding: str | None = None,
                 delimiter: str | None = None) -> FindResult:
    """Duplicates among the records of a CSV or parquet file. ``encoding`` and ``delimiter`` say how a CSV is
    written (else they are detected: read_table)."""
    mapping = {role: list(dict.fromkeys([cols] if isinstance(cols, str) else cols)) for role, cols in mapping.items()}
    wanted = [c for cols in mapping.values() for c in cols] + ([id_column] if id_column else [])
    frame = read_table(path, columns=wanted, repeated_names=True, encoding=encoding, delimiter=delimiter)
    frame, mapping = _one_name_per_column(path, frame, mapping, id_column)
    if id_column:
        frame[id_column] = _integer_ids(frame[id_column])
    table = RoleTable.from_frame(entity_type, frame, mapping, id_column)
    del frame  # the table holds the same strings; the frame's own columns would only sit in memory
    return find_duplicates(table, settings or MatchSettings())


def _one_name_per_column(path: Path, frame: pd.DataFrame, mapping: dict[str, list[str]],
                         id_column: str | None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Columns the mapping names that the file lacks are refused here, with every column of the file
    and how it was read (a wrong delimiter or encoding reads one odd column). A name the header
    repeats (an export's ``email:work`` for records with several) maps every column of that name:
    they are renamed ``name (2)``, ``name (3)``, ... and the mapping lists them all."""
    wanted = [c for cols in mapping.values() for c in cols] + ([id_column] if id_column else [])
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        how = frame.attrs.get("read_as", "")
        raise MappingError(
            f"{path} has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}. "
            f"Its columns, read as {how}: {', '.join(map(repr, frame.attrs.get('file_columns', frame.columns)))}"
            + (f"; {READ_HINT}." if how != "parquet" else "."))
    counts = frame.columns.value_counts()
    repeated = {c for c in wanted if counts[c] > 1}
    if not repeated:
        return frame, mapping
    for role, cols in mapping.items():
        for c in repeated.intersection(cols):
            if role in SINGLE_ROLES:
                raise MappingError(f"role {role!r} takes one column, and {path} has {counts[c]} columns named {c!r}; "
                                   "only phone, email, website, im and text may map a repeated name.")
    if id_column in repeated:
        raise MappingError(f"--id-column {id_column!r}: {path} has {counts[id_column]} columns of that name.")
    labels, seen, taken = [], {}, set(frame.columns)
    for name in frame.columns:
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name} ({seen[name]})"
        while seen[name] > 1 and label in taken:  # (a column of the file already has that name)
            label += "'"
        taken.add(label)
        labels.append(label)
    every = {}
    for name, label in zip(frame.columns, labels):
        every.setdefault(name, []).append(label)
    frame = frame.set_axis(labels, axis=1)
    return frame, {role: [lab for c in cols for lab in every.get(c, [c])] for role, cols in mapping.items()}


def _integer_ids(ids: pd.Series) -> pd.Series:
    """Ids that are all plain whole numbers, as numbers: pairs are then ordered 7 < 50 (as text "50" < "7"),
    as the database orders its ids, and a file's pairs join a database run's. Any other ids stay text
    (ordered by character codes)."""
    if not (pd.api.types.is_object_dtype(ids) or pd.api.types.is_string_dtype(ids)):
        return ids  # (parquet gives its numbers typed)
    if len(ids) and ids.notna().all() and ids.str.fullmatch(PLAIN_INTEGER).all():  # (~0.3 s a million ids)
        return ids.astype("int64")
    return ids
