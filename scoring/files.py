"""File mode: deduplicate any CSV or parquet table, no database."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd
import pyarrow as pa

from matchers.table import RoleTable
from scoring.find import FindResult, find_duplicates
from scoring.settings import MatchSettings


class FileError(ValueError):
    """An input file that cannot be read; the message names the file and the fix."""


def read_table(path: Path, columns: Collection[str] | None = None) -> pd.DataFrame:
    """A CSV (UTF-8 with or without BOM, or Windows-1251; comma or semicolon) or parquet file, as strings.
    With ``columns``, only those of them the file has are read (a table of a million rows holds many
    columns a dedup never looks at); a missing one is left for the caller to name."""
    path = Path(path)
    if not path.exists():
        raise FileError(f"There is no file {path}.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq

            if columns is not None:
                have = set(pq.read_schema(path).names)
                columns = [c for c in dict.fromkeys(columns) if c in have]
            # what pd.read_parquet gives, but read by pyarrow from the path itself and a block per
            # column (no copy into one block): ~0.2 s less at a million rows
            frame = pq.read_table(path, columns=columns, use_pandas_metadata=True).to_pandas(split_blocks=True)
            # Arrow's allocator keeps the decoded pages for reuse (~150 MB at a million rows): give them back
            pa.default_memory_pool().release_unused()
            return frame
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
            raise FileError(f"{path} is not a readable parquet file: {exc}") from exc
    with open(path, "rb") as fh:
        first = fh.readline()
        if not (first + fh.read(1 << 16)).strip():
            raise FileError(f"{path} is empty.")
    header = first.decode("utf-8", errors="replace")
    sep = ";" if header.count(";") > header.count(",") else ","
    # read straight from the file (no copy of the whole text in memory), as UTF-8, else Windows-1251
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            usecols = None
            if columns is not None:
                names = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns
                usecols = [c for c in names if c in set(columns)]
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                               encoding=encoding, usecols=usecols)
        except UnicodeDecodeError:
            continue
        except pd.errors.ParserError as exc:
            raise FileError(f"{path} is not valid CSV: {exc}") from exc
    raise FileError(f"{path} is neither UTF-8 nor Windows-1251 text.")


def find_in_file(path: Path, entity_type: str, mapping: dict[str, list[str]], id_column: str | None,
                 settings: MatchSettings | None = None) -> FindResult:
    wanted = [c for cols in mapping.values() for c in ([cols] if isinstance(cols, str) else cols)]
    frame = read_table(path, columns=wanted + ([id_column] if id_column else []))
    table = RoleTable.from_frame(entity_type, frame, mapping, id_column)
    del frame  # the table holds the same strings; the frame's own columns would only sit in memory
    return find_duplicates(table, settings or MatchSettings())
