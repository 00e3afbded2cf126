"""Any table of records, with its columns mapped to roles: the one input shape of the matchers.

A ``RoleTable`` holds
- ``records``: one row per record, indexed by record id, with a column per single-value role
  (first_name, last_name, middle_name, full_name, company, birthdate, address, city, postcode,
  tax_id, and ``text:<name>`` for any other column compared as a string) plus pass-through
  columns the later stages use (source, responsible_id, created_at, modified_at);
- ``values``: the multi-value roles (phone, email, website, im) as long rows ``id, role, raw``,
  so that two phone columns, or a CRM record's five phones, are handled the same way.

It is built either from the CRM (``from_crm``) or from any CSV/parquet table (``from_frame``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SINGLE_ROLES = ("first_name", "last_name", "middle_name", "full_name", "company", "birthdate",
                "address", "city", "postcode", "tax_id")
MULTI_ROLES = ("phone", "email", "website", "im")
ROLES = SINGLE_ROLES + MULTI_ROLES + ("text", "id")
PASS_THROUGH = ("source", "responsible_id", "created_at", "modified_at")
ENTITY_TYPES = ("contact", "company", "lead")

# CRM column -> role, per entity type
CRM_ROLES = {
    "contact": {"last_name": "last_name", "first_name": "first_name", "middle_name": "middle_name",
                "birthdate": "birthdate", "address": "address", "tax_id": "tax_id"},
    "company": {"title": "company", "address": "address", "tax_id": "tax_id"},
    "lead": {"last_name": "last_name", "first_name": "first_name", "middle_name": "middle_name",
             "company_title": "company"},
}
COMM_ROLE = {"phone": "phone", "email": "email", "web": "website", "im": "im"}


class MappingError(ValueError):
    """A role mapping that cannot work: names the role or column and the fix."""


@dataclass
class RoleTable:
    entity_type: str
    records: pd.DataFrame
    values: pd.DataFrame

    def __post_init__(self) -> None:
        if self.entity_type not in ENTITY_TYPES:
            raise MappingError(f"Unknown entity type {self.entity_type!r}: use one of {', '.join(ENTITY_TYPES)}.")
        if list(self.values.columns) != ["id", "role", "raw"]:
            self.values = self.values.reindex(columns=["id", "role", "raw"])

    def __len__(self) -> int:
        return len(self.records)

    def has(self, role: str) -> bool:
        if role in MULTI_ROLES:
            return bool((self.values["role"] == role).any())
        return role in self.records.columns and self.records[role].notna().any()

    def multi(self, role: str) -> pd.DataFrame:
        """Long rows ``id, raw`` of one multi-value role, empty values dropped."""
        v = self.values[self.values["role"] == role][["id", "raw"]]
        raw = v["raw"].astype("string").str.strip()
        return v.assign(raw=raw)[raw.fillna("").ne("")]

    def names(self, ids) -> list[str]:
        """How a person knows these records (ids of this table): "last first middle", else the full
        name, else the company; and for a person with a company, the company after the name. "" where
        a record has none of these."""
        rows = self.records.reindex(ids)
        parts = [c for c in ("last_name", "first_name", "middle_name") if c in rows.columns]
        out = []
        for at in range(len(rows)):
            def text(col):
                v = rows[col].iat[at] if col in rows.columns else None
                return str(v).strip() if v is not None and not pd.isna(v) else ""
            person = " ".join(t for t in map(text, parts) if t) or text("full_name")
            company = text("company")
            out.append(f"{person} ({company})" if person and company else person or company)
        return out

    @property
    def text_columns(self) -> list[str]:
        return [c for c in self.records.columns if str(c).startswith("text:")]

    def changed_since(self, before: "RoleTable") -> list:
        """Ids of this table's records (in its order) that ``before`` does not hold as they are now:
        new records, and records whose row or values (or the order of their values) differ. Compared
        by content, not by modified_at: a value written without touching modified_at (a script, an
        import, a portal whose clock is behind) is seen all the same."""
        if list(self.records.columns) != list(before.records.columns):
            return self.records.index.tolist()  # another shape of table: nothing can be taken from it
        return self._differing(before.content_hashes())

    def changed_since_saved(self, records_path: Path, values_path: Path, hashes: pd.Series | None = None) -> list:
        """As changed_since, ``before`` being the copy of a table saved in these parquet files (records
        with their id as index, values id, role, raw), read a column at a time: a million records'
        copy is not held beside this table. The copy's content hashes are read from
        hashes_path(records_path) where a run kept them (save_hashes), else worked out from the copy.
        ``hashes``: this table's content_hashes, when the caller has them already."""
        columns = pq.read_schema(records_path).names
        if [c for c in columns if c != "id"] != list(self.records.columns):
            return self.records.index.tolist()
        kept = hashes_path(records_path)
        if kept.exists():
            then = pd.read_parquet(kept)["hash"]
        else:
            ids = pd.read_parquet(records_path, columns=[]).index
            row = _row_hashes(pd.read_parquet(records_path, columns=[c])[c] for c in self.records.columns)
            keys = pd.read_parquet(values_path, columns=["id", "role"])
            per_value = _value_hashes(keys["id"], keys["role"],
                                      lambda: pd.read_parquet(values_path, columns=["raw"])["raw"])
            then = _record_hashes(ids, row, keys["id"].to_numpy(), per_value)
        return self._differing(then, hashes)

    @staticmethod
    def save_hashes(hashes: pd.Series, records_path: Path) -> None:
        """Keep the content_hashes of the table copied to ``records_path`` beside it, for the next
        changed_since_saved against that copy (which then need not read it)."""
        hashes.rename("hash").to_frame().to_parquet(hashes_path(records_path))

    def _differing(self, then: pd.Series, now: pd.Series | None = None) -> list:
        ids = self.records.index
        at = then.index.get_indexer(ids)  # -1: not in ``before``
        now = self.content_hashes() if now is None else now
        differs = (at < 0) | (_taken(then.to_numpy(), at) != now.to_numpy())
        return ids[differs].tolist()

    def content_hashes(self) -> pd.Series:
        """A 64-bit hash per record (indexed by id) of all this table holds of it: its row and its
        values. The same rows give the same hashes however pandas typed a column when reading them."""
        row = _row_hashes(col for _name, col in self.records.items())
        v = self.values
        return _record_hashes(self.records.index, row, v["id"].to_numpy(), _value_hashes(v["id"], v["role"], lambda: v["raw"]))

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_crm(cls, entity_type: str, records: pd.DataFrame, communications: pd.DataFrame) -> "RoleTable":
        """From the store's entity rows and communication rows (``entity_id, type, kind, value``)."""
        return cls.from_crm_values(entity_type, records, crm_values(communications))

    @classmethod
    def from_crm_values(cls, entity_type: str, records: pd.DataFrame, values: pd.DataFrame) -> "RoleTable":
        """From the store's entity rows and the long rows of their communications (crm_values)."""
        roles = CRM_ROLES[entity_type]
        keep = [c for c in roles if c in records.columns] + [c for c in PASS_THROUGH if c in records.columns]
        # the columns taken as they are (set_index, selecting and renaming would copy each, ~1 s at a
        # million records)
        frame = pd.DataFrame({roles.get(c, c): records[c].to_numpy() for c in keep},
                             index=pd.Index(records["id"].to_numpy(), name="id"), copy=False)
        if entity_type == "company" and "website" in records.columns:
            site = records[["id", "website"]].dropna()
            values = pd.concat([values, pd.DataFrame({"id": site["id"], "role": "website", "raw": site["website"]})],
                               ignore_index=True)
        return cls(entity_type, frame, values)

    @classmethod
    def from_frame(cls, entity_type: str, frame: pd.DataFrame, mapping: Mapping[str, Sequence[str] | str],
                   id_column: str | None = None) -> "RoleTable":
        """From any table: ``mapping`` is role -> column(s); ``id_column`` names the record id
        (the row number is used when it is None)."""
        problems = []
        columns: dict[str, list[str]] = {}
        for role, cols in mapping.items():
            cols = [cols] if isinstance(cols, str) else list(cols)
            if role not in ROLES:
                problems.append(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
                continue
            for col in cols:
                if col not in frame.columns:
                    problems.append(f"role {role!r} names column {col!r}, which the file does not have "
                                    f"(columns: {', '.join(map(str, frame.columns))})")
            if role in SINGLE_ROLES and len(cols) > 1:
                problems.append(f"role {role!r} takes one column, got {cols}; only phone, email, website and im "
                                "may map several")
            columns[role] = cols
        if id_column is not None and id_column not in frame.columns:
            problems.append(f"--id-column {id_column!r} is not a column of the file")
        if not any(r in columns for r in ("first_name", "last_name", "full_name", "company", "phone", "email")):
            problems.append("map at least one of full_name, last_name, first_name, company, phone or email")
        if problems:
            raise MappingError("The column mapping cannot be used: " + "; ".join(problems) + ".")

        ids = frame[id_column] if id_column else pd.Series(range(len(frame)), index=frame.index)
        if ids.isna().any():
            empty = np.flatnonzero(ids.isna().to_numpy())
            raise MappingError(f"--id-column {id_column!r} is empty {_where(frame, empty)}; every record needs its id.")
        if ids.duplicated().any():
            dup = ids[ids.duplicated()].iloc[0]
            raise MappingError(f"--id-column {id_column!r} repeats the id {dup!r}; record ids must be unique.")
        records = pd.DataFrame(index=pd.Index(ids.to_numpy(), name="id"))
        for role, cols in columns.items():
            if role in SINGLE_ROLES:
                records[role] = frame[cols[0]].to_numpy()
            elif role == "text":
                for col in cols:
                    records[f"text:{col}"] = frame[col].to_numpy()
        for col in PASS_THROUGH:
            if col in frame.columns and col not in records.columns:
                records[col] = frame[col].to_numpy()
        # each column's filled cells only: no frame of every cell of every column (phone2 is mostly empty)
        parts = []
        for role, cols in columns.items():
            if role not in MULTI_ROLES:
                continue
            for col in cols:
                raw = frame[col].to_numpy()
                has = pd.notna(raw)
                parts.append(pd.DataFrame({"id": ids.to_numpy()[has], "role": role, "raw": raw[has]}))
        values = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "role", "raw"])
        return cls(entity_type, records, values)


def _where(frame: pd.DataFrame, rows: np.ndarray, most: int = 5) -> str:
    """Where these rows of ``frame`` (positions) are, for a person to find them: the lines of the file
    when the frame says which CSV it was read from (``frame.attrs["source"]``: path, encoding, sep,
    skiprows, as read_csv took them), else their places among the data rows (the header not counted:
    blank lines and cells over several lines make those differ from the file's lines)."""
    more = f" and {len(rows) - most:,} more" if len(rows) > most else ""
    shown = [int(r) for r in rows[:most]]
    s = "s" if len(rows) > 1 else ""
    source = frame.attrs.get("source")
    lines = csv_lines(**source, rows=shown) if source else None
    if lines is not None:
        return f"on line{s} {', '.join(map(str, lines))}{more} of {source['path']}"
    return f"on data row{s} {', '.join(str(r + 1) for r in shown)}{more} (the header not counted)"


def csv_lines(path, encoding: str, sep: str, skiprows: int = 0, *, rows: Sequence[int]) -> list[int] | None:
    """The line of the file on which each of these data rows (positions, as pandas' read_csv numbers
    them) starts: read again with the csv module, which counts the lines of a cell over several lines
    and the blank lines pandas skips. None when the file does not read as the frame did."""
    import csv

    wanted, found, row = set(rows), {}, -1
    try:
        with open(path, encoding=encoding, newline="") as fh:
            for _ in range(skiprows):
                fh.readline()
            reader = csv.reader(fh, delimiter=sep)
            header, line = False, skiprows  # ``line``: the last line read so far
            for cells in reader:
                start, line = line + 1, skiprows + reader.line_num
                if not cells:  # a blank line: pandas skips it
                    continue
                if not header:
                    header = True
                    continue
                row += 1
                if row in wanted:
                    found[row] = start
                    if len(found) == len(wanted):
                        break
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return [found[r] for r in rows] if len(found) == len(wanted) else None


def crm_values(communications: pd.DataFrame) -> pd.DataFrame:
    """The long rows ``id, role, raw`` of the store's communication rows (``entity_id, type, value``)."""
    return pd.DataFrame({
        "id": communications["entity_id"].to_numpy(),
        "role": communications["type"].map(COMM_ROLE).to_numpy(),
        "raw": communications["value"].to_numpy(),
    })


def _canonical(col: pd.Series) -> pd.Series:
    """A column as content_hashes hashes it: numbers as floats (a column of ints read with a gap
    becomes floats), datetimes in microseconds (a date past 2262 is read as Python datetimes, and
    comes back from parquet in microseconds), text as Python objects."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.astype("datetime64[us]")
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) == "datetime":
        return pd.Series(np.asarray(col.to_numpy(), dtype="datetime64[us]"), index=col.index)
    return col.astype(object)


def hashes_path(records_path: Path) -> Path:
    """Where RoleTable.save_hashes keeps the content hashes of the table copy at ``records_path``."""
    return records_path.with_name(f"{records_path.stem}_hashes.parquet")


def _row_hashes(columns) -> np.ndarray:
    """A hash per record of its row, the columns given one at a time."""
    return _combined([_hashes(_canonical(col), repeats=True) for col in columns])


def _value_hashes(ids: pd.Series, roles: pd.Series, raw) -> np.ndarray:
    """A hash per value row of its role, its text (``raw()``: read only when needed) and its place
    among its record's values: the first of a record's websites is the one compared, and ties are
    shown in order (reads give them in the order of their ids). The place is hashed too: added raw
    to the last bits, swapping two values kept the sum of their hashes half the time."""
    place = pd.Series(ids.groupby(ids, sort=False).cumcount().to_numpy(dtype=np.int64))
    return _combined([_hashes(place, repeats=True), _hashes(roles.astype(object), repeats=True),
                      _hashes(raw().astype(object))])


def _record_hashes(ids: pd.Index, row: np.ndarray, value_ids: np.ndarray, per_value: np.ndarray) -> pd.Series:
    """Each record's row hash plus the hashes of its values, summed (modulo 2**64: where a record's
    values stand among other records' does not count)."""
    values = pd.Series(per_value, index=value_ids).groupby(level=0).sum()
    return pd.Series(row + _taken(values.to_numpy(), values.index.get_indexer(ids)), index=ids)


def _taken(hashes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``hashes[at]``, 0 where ``at`` is -1 (no such record)."""
    return np.append(hashes.astype(np.uint64), np.uint64(0))[at]


def _hashes(col: pd.Series, repeats: bool = False) -> np.ndarray:
    """A column's cells hashed; ``repeats``: it repeats values a lot (then hashing each distinct value
    once is faster; for mostly distinct values it is 4 times slower)."""
    return pd.util.hash_pandas_object(col, index=False, categorize=repeats).to_numpy()


def _combined(columns: list[np.ndarray]) -> np.ndarray:
    """Column hashes combined per row (the order of the columns counts)."""
    out = np.zeros(len(columns[0]) if columns else 0, dtype=np.uint64)
    for h in columns:
        out = out * np.uint64(1_000_003) ^ h  # (wraps modulo 2**64)
    return out
