"""File mode: deduplicate any CSV or parquet table, no database."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from matchers.table import RoleTable
from scoring.find import FindResult, find_duplicates
from scoring.settings import MatchSettings


class FileError(ValueError):
    """An input file that cannot be read; the message names the file and the fix."""


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (UTF-8 with or without BOM, or Windows-1251; comma or semicolon) or parquet file, as strings."""
    path = Path(path)
    if not path.exists():
        raise FileError(f"There is no file {path}.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
            raise FileError(f"{path} is not a readable parquet file: {exc}") from exc
    raw = path.read_bytes()
    if not raw.strip():
        raise FileError(f"{path} is empty.")
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1251 decodes any byte but 0x98
        raise FileError(f"{path} is neither UTF-8 nor Windows-1251 text.")
    first = text.split("\n", 1)[0]
    sep = ";" if first.count(";") > first.count(",") else ","
    from io import StringIO

    try:
        return pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise FileError(f"{path} is not valid CSV: {exc}") from exc


def find_in_file(path: Path, entity_type: str, mapping: dict[str, list[str]], id_column: str | None,
                 settings: MatchSettings | None = None) -> FindResult:
    frame = read_table(path)
    table = RoleTable.from_frame(entity_type, frame, mapping, id_column)
    return find_duplicates(table, settings or MatchSettings())
