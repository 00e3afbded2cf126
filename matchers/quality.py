"""Data-quality report of one RoleTable: empty, invalid and placeholder values per field, values
shared by suspiciously many records, completeness per record, and the same per source.

Every value of every role is checked once into one long table (id, role, raw, usable, invalid,
placeholder, value); the four report tables are summaries of it:
- ``fields``: per role: records, values (non-empty values; a multi-value role may have several per
  record), filled (records with at least one usable value: neither empty, placeholder nor invalid),
  share_empty (1 - filled / records), invalid, placeholder, share_invalid (of the values), examples
  (a few invalid values as written);
- ``shared``: role, value (normalised), records: a normalised phone, e-mail, website, tax id or
  messenger id held by at least ``shared_threshold`` records (an office switchboard, info@...);
- ``records``: per record id: completeness (share of the table's roles it has a usable value for),
  invalid and placeholder counts;
- ``sources``: per value of the ``source`` column and role (when that column exists): records,
  values, invalid, placeholder, share_invalid, share_placeholder, share_empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from matchers.companies import normalize_companies
from matchers.emails import normalize_emails
from matchers.identifiers import normalize_birthdates, normalize_domains, normalize_inns
from matchers.names import as_text, clean_text
from matchers.phones import normalize_phones
from matchers.table import MULTI_ROLES, SINGLE_ROLES, RoleTable

log = logging.getLogger(__name__)

REPORT_KEYS = ("fields", "shared", "records", "sources")
CHECK_COLUMNS = ("id", "role", "raw", "usable", "invalid", "placeholder", "value")
# clean_text forms of what people type for "unknown"
PLACEHOLDER_TEXTS = frozenset({
    "нет", "нету", "не указано", "не указан", "не указана", "неизвестно", "неизвестен", "неизвестна", "без имени",
    "безымянный", "клиент", "аноним", "имя", "фамилия", "отчество", "тест", "test", "testing", "unknown", "none",
    "null", "nil", "nan", "na", "n a", "x", "xx", "xxx", "xxxx", "noname", "no name", "anonymous", "client",
    "customer", "name", "first name", "last name", "asd", "asdf", "qwe", "qwerty", "йцукен", "ааа", "aaa", "123",
    "1234", "12345", "0", "00", "000", "no", "tbd", "todo", "удалить", "delete", "dummy",
})
_NAME_ROLES = ("first_name", "last_name", "middle_name", "full_name")
_EXAMPLES = 5


def is_placeholder_text(value: object) -> bool:
    """A free-text value that stands for "unknown" ("-", "нет", "не указано", "test", "xxx")."""
    text = as_text(value)
    if text is None:
        return False
    clean = clean_text(text)
    return clean == "" or clean in PLACEHOLDER_TEXTS


def _check_frame(ids, role: str, raw: pd.Series, usable, invalid, placeholder, value) -> pd.DataFrame:
    return pd.DataFrame({
        "id": np.asarray(ids, dtype=object), "role": role, "raw": raw.to_numpy(dtype=object),
        "usable": np.asarray(usable, dtype=bool), "invalid": np.asarray(invalid, dtype=bool),
        "placeholder": np.asarray(placeholder, dtype=bool), "value": np.asarray(value, dtype=object),
    })


def _text_checks(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """placeholder, invalid, value for free text (names, address, city, text columns)."""
    codes, uniques = pd.factorize(raw.to_numpy(dtype=object), use_na_sentinel=True)
    cleaned = [clean_text(u) for u in uniques] + [""]
    ph = np.array([c == "" or c in PLACEHOLDER_TEXTS for c in cleaned], dtype=bool)[codes]
    return ph, np.zeros(len(raw), dtype=bool), np.array(cleaned, dtype=object)[codes]


def _single_checks(role: str, ids: pd.Index, raw: pd.Series, region: str) -> pd.DataFrame:
    """Checks of one single-value role over the records that have a value in it."""
    filled = raw.map(as_text).notna().to_numpy()
    ids, raw = ids[filled], raw[filled]
    n = len(raw)
    value = np.full(n, None, dtype=object)
    invalid = np.zeros(n, dtype=bool)
    if role in _NAME_ROLES:
        placeholder, _, _ = _text_checks(raw)
        # a name with digits in it is junk ("Иван2", "123 Петров")
        invalid = raw.astype(str).str.contains(r"\d", regex=True).to_numpy() & ~placeholder
    elif role == "company":
        comp = normalize_companies(raw)
        placeholder = (comp["key"].eq("") | comp["clean"].isin(PLACEHOLDER_TEXTS)).to_numpy()
    elif role == "birthdate":
        dates = normalize_birthdates(raw)
        placeholder = dates.eq(pd.Timestamp("1900-01-01")).to_numpy()
        invalid = dates.isna().to_numpy() & ~np.array([is_placeholder_text(v) for v in raw], dtype=bool)
        placeholder |= dates.isna().to_numpy() & ~invalid
    elif role == "tax_id":
        inns = normalize_inns(raw)
        digits = inns["inn"].to_numpy(dtype=object)
        placeholder = np.array([d is None or d.count(d[0]) == len(d) for d in digits], dtype=bool)
        invalid = ~inns["valid"].to_numpy() & ~placeholder
        value = np.where(inns["valid"].to_numpy(), digits, None)
    elif role == "postcode":
        placeholder, _, _ = _text_checks(raw)
        text = raw.map(as_text).fillna("")
        zeros = text.str.fullmatch(r"0+").to_numpy()
        placeholder = placeholder | zeros
        if region == "RU":
            invalid = ~text.str.fullmatch(r"\d{6}").to_numpy() & ~placeholder
    else:  # address, city, text:<name>
        placeholder, _, _ = _text_checks(raw)
    usable = ~placeholder & ~invalid
    return _check_frame(ids, role, raw, usable, invalid, placeholder, value)


def _multi_checks(role: str, rows: pd.DataFrame, region: str) -> pd.DataFrame:
    raw = rows["raw"]
    if role == "phone":
        ph = normalize_phones(raw, region=region)
        placeholder = ph["placeholder"].to_numpy()
        invalid = ~ph["valid"].to_numpy() & ~placeholder
        value = ph["e164"].where(ph["e164"].notna(), ph["national"]).to_numpy(dtype=object)
    elif role == "email":
        em = normalize_emails(raw)
        placeholder = em["placeholder"].to_numpy()
        invalid = ~em["valid"].to_numpy() & ~placeholder
        value = em["canonical"].to_numpy(dtype=object)
    elif role == "website":
        domains = normalize_domains(raw)
        placeholder = np.array([is_placeholder_text(v) for v in raw], dtype=bool)
        invalid = domains.isna().to_numpy() & ~placeholder
        value = domains.to_numpy(dtype=object)
    else:  # im: any non-placeholder handle is taken as it is
        placeholder, invalid, _ = _text_checks(raw)
        value = raw.map(lambda v: (as_text(v) or "").lower() or None).to_numpy(dtype=object)
    value = np.where(invalid | placeholder, None, value)
    usable = ~placeholder & ~invalid
    return _check_frame(rows["id"].to_numpy(dtype=object), role, raw, usable, invalid, placeholder, value)


def _roles(table: RoleTable) -> list[str]:
    singles = [r for r in SINGLE_ROLES if r in table.records.columns and table.has(r)]
    texts = [c for c in table.text_columns if table.records[c].notna().any()]
    multis = [r for r in MULTI_ROLES if table.has(r)]
    return singles + texts + multis


def checks(table: RoleTable, region: str = "RU") -> pd.DataFrame:
    """One row per non-empty value of every role: id, role, raw, usable, invalid, placeholder, value."""
    parts = []
    ids = table.records.index
    for role in _roles(table):
        if role in MULTI_ROLES:
            parts.append(_multi_checks(role, table.multi(role), region))
        else:
            parts.append(_single_checks(role, ids, table.records[role], region))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=bool if c in ("usable", "invalid", "placeholder") else object)
                             for c in CHECK_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def _examples(raw: pd.Series) -> str:
    seen = []
    for v in raw:
        text = as_text(v) or ""
        text = text if len(text) <= 40 else text[:39] + "…"
        if text not in seen:
            seen.append(text)
        if len(seen) == _EXAMPLES:
            break
    return " | ".join(seen)


def _fields(table: RoleTable, roles: list[str], chk: pd.DataFrame) -> pd.DataFrame:
    n = len(table)
    rows = []
    for role in roles:
        part = chk[chk["role"] == role]
        filled = part.loc[part["usable"], "id"].nunique()
        values = len(part)
        bad = part[part["invalid"]]
        rows.append({
            "role": role, "records": n, "values": values, "filled": filled,
            "share_empty": 1 - filled / n if n else 0.0,
            "invalid": int(part["invalid"].sum()), "placeholder": int(part["placeholder"].sum()),
            "share_invalid": float(part["invalid"].sum()) / values if values else 0.0,
            "examples": _examples(bad["raw"]),
        })
    return pd.DataFrame(rows, columns=["role", "records", "values", "filled", "share_empty", "invalid",
                                       "placeholder", "share_invalid", "examples"])


def _shared(chk: pd.DataFrame, threshold: int) -> pd.DataFrame:
    cols = ["role", "value", "records"]
    keyed = chk[chk["value"].notna() & chk["role"].isin(("phone", "email", "website", "im", "tax_id"))]
    if keyed.empty:
        return pd.DataFrame(columns=cols)
    counts = (keyed.drop_duplicates(["role", "value", "id"]).groupby(["role", "value"], sort=False)
              .size().rename("records").reset_index())
    counts = counts[counts["records"] >= threshold]
    return counts.sort_values(["records", "role", "value"], ascending=[False, True, True]).reset_index(drop=True)[cols]


def _records(table: RoleTable, roles: list[str], chk: pd.DataFrame) -> pd.DataFrame:
    index = table.records.index
    usable = chk[chk["usable"]].drop_duplicates(["id", "role"]).groupby("id").size()
    invalid = chk[chk["invalid"]].groupby("id").size()
    placeholder = chk[chk["placeholder"]].groupby("id").size()
    out = pd.DataFrame(index=index)
    out["completeness"] = (usable.reindex(index, fill_value=0) / len(roles)).astype(float) if roles else 0.0
    out["invalid"] = invalid.reindex(index, fill_value=0).astype(int)
    out["placeholder"] = placeholder.reindex(index, fill_value=0).astype(int)
    return out


def _sources(table: RoleTable, roles: list[str], chk: pd.DataFrame) -> pd.DataFrame:
    cols = ["source", "role", "records", "values", "invalid", "placeholder", "share_invalid",
            "share_placeholder", "share_empty"]
    if "source" not in table.records.columns:
        return pd.DataFrame(columns=cols)
    source = table.records["source"].map(lambda v: as_text(v) or "(none)")
    per_source = source.value_counts()
    src = chk.assign(source=chk["id"].map(source).fillna("(none)"))
    rows = []
    for (name, role), part in src.groupby(["source", "role"], sort=True):
        values = len(part)
        filled = part.loc[part["usable"], "id"].nunique()
        records = int(per_source.get(name, 0))
        rows.append({
            "source": name, "role": role, "records": records, "values": values,
            "invalid": int(part["invalid"].sum()), "placeholder": int(part["placeholder"].sum()),
            "share_invalid": float(part["invalid"].sum()) / values,
            "share_placeholder": float(part["placeholder"].sum()) / values,
            "share_empty": 1 - filled / records if records else 0.0,
        })
    return pd.DataFrame(rows, columns=cols)


def quality_report(table: RoleTable, region: str = "RU", shared_threshold: int = 10) -> dict[str, pd.DataFrame]:
    """The data-quality report of ``table``: {"fields", "shared", "records", "sources"} (see module doc)."""
    roles = _roles(table)
    chk = checks(table, region)
    report = {
        "fields": _fields(table, roles, chk),
        "shared": _shared(chk, shared_threshold),
        "records": _records(table, roles, chk),
        "sources": _sources(table, roles, chk),
    }
    report["shared"].attrs["threshold"] = shared_threshold
    log.info("quality report: %d records, %d roles, %d invalid values, %d shared values",
             len(table), len(roles), int(chk["invalid"].sum()), len(report["shared"]))
    return report


def write_quality(report: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    """Each table as ``folder/quality_<key>.parquet``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, frame in report.items():
        path = folder / f"quality_{key}.parquet"
        out = frame.copy()
        out.attrs = {}
        for col in out.columns:
            if out[col].dtype == object:
                out[col] = out[col].map(lambda v: None if v is None else str(v))
        if out.index.dtype == object:
            out.index = out.index.map(str)
        out.to_parquet(path)
        paths.append(path)
    return paths


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def quality_summary(report: dict[str, pd.DataFrame], entity_type: str) -> str:
    """A few lines for a person: size, completeness, the worst fields, shared values, worst source."""
    fields, shared, records = report["fields"], report["shared"], report["records"]
    n = int(fields["records"].iloc[0]) if len(fields) else len(records)
    lines = []
    mean = float(records["completeness"].mean()) if len(records) else 0.0
    with_invalid = int((records["invalid"] > 0).sum()) if len(records) else 0
    lines.append(f"{entity_type}: {n:,} records, mean completeness {mean:.2f}, "
                 f"{with_invalid:,} records with invalid values.")
    if len(fields):
        worst = fields.assign(score=fields["invalid"] + fields["placeholder"]).sort_values(
            ["score", "share_empty"], ascending=False)
        parts = []
        for _, row in worst.head(4).iterrows():
            text = f"{row['role']} {_pct(row['share_empty'])} empty"
            if row["invalid"]:
                text += f", {row['invalid']:,} invalid"
                if row["examples"]:
                    text += f" (e.g. {row['examples'].split(' | ')[0]})"
            if row["placeholder"]:
                text += f", {row['placeholder']:,} placeholders"
            parts.append(text)
        lines.append("Fields: " + "; ".join(parts) + ".")
    if len(shared):
        threshold = shared.attrs.get("threshold")
        head = "; ".join(f"{r.role} {r.value} ({r.records:,} records)" for r in shared.head(3).itertuples())
        more = f" and {len(shared) - 3:,} more" if len(shared) > 3 else ""
        lines.append(f"Shared by {'>= ' + str(threshold) if threshold else 'many'} records: {head}{more}.")
    else:
        lines.append("No value is shared by suspiciously many records.")
    sources = report.get("sources")
    if sources is not None and len(sources):
        worst = sources.sort_values("share_invalid", ascending=False).iloc[0]
        if worst["share_invalid"] > 0:
            lines.append(f"Worst source: {worst['source']!r}, {_pct(worst['share_invalid'])} invalid "
                         f"{worst['role']} values.")
    return "\n".join(lines)
