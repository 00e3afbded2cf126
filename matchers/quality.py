"""Data-quality report of one RoleTable: empty, invalid and placeholder values per field, values
shared by suspiciously many records, completeness per record, and the same per source.

Every distinct value of every role is checked once (RoleCheck: record position, value, invalid,
placeholder, normalised value); the four report tables are summaries of those checks:
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

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from matchers.companies import parse_company
from matchers.emails import normalize_emails
from matchers.identifiers import normalize_domains, parse_birthdate, parse_inn
from matchers.names import as_text, clean_text
from matchers.phones import normalize_phones
from matchers.table import MULTI_ROLES, SINGLE_ROLES, RoleTable

log = logging.getLogger(__name__)

REPORT_KEYS = ("fields", "shared", "records", "sources")
_PLACEHOLDER_DATE = dt.date(1900, 1, 1)
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


@dataclass
class RoleCheck:
    """The non-empty values of one role: record position, value as written, the verdicts, and the
    normalised value used to find shared values (None where unusable or not compared)."""
    role: str
    pos: np.ndarray
    raw: np.ndarray
    invalid: np.ndarray
    placeholder: np.ndarray
    value: np.ndarray | None = None

    @property
    def usable(self) -> np.ndarray:
        return ~self.invalid & ~self.placeholder


def _single_verdict(role: str, raw: object, text: str, region: str) -> tuple[bool, bool, str | None]:
    """(invalid, placeholder, value) of one distinct value of a single-value role."""
    if role in _NAME_ROLES:
        clean = clean_text(text)
        placeholder = clean == "" or clean in PLACEHOLDER_TEXTS
        # a name with digits in it is junk ("Иван2", "123 Петров")
        return (not placeholder and any(c.isdigit() for c in clean)), placeholder, None
    if role == "company":
        company = parse_company(text)
        return False, company.key == "" or company.clean in PLACEHOLDER_TEXTS, None
    if role == "birthdate":
        date = parse_birthdate(raw)
        if date is None:
            placeholder = is_placeholder_text(text)
            return not placeholder, placeholder, None
        return False, date == _PLACEHOLDER_DATE, None
    if role == "tax_id":
        digits, ok = parse_inn(raw)
        placeholder = digits is None or digits.count(digits[0]) == len(digits)
        return (not ok and not placeholder), placeholder, digits if ok else None
    if role == "postcode":
        clean = clean_text(text).replace(" ", "")
        placeholder = is_placeholder_text(text) or (clean != "" and clean.count("0") == len(clean))
        invalid = region == "RU" and not placeholder and not (len(clean) == 6 and clean.isdigit())
        return invalid, placeholder, None
    return False, is_placeholder_text(text), None   # address, city, text:<name>


def _single_check(role: str, column: pd.Series, region: str) -> RoleCheck:
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    texts = [as_text(u) for u in uniques]
    verdicts = [_single_verdict(role, u, t, region) if t is not None else (False, False, None)
                for u, t in zip(uniques, texts)]
    filled = np.array([t is not None for t in texts] + [False], dtype=bool)[codes]
    pos = np.flatnonzero(filled)
    c = codes[pos]
    invalid = np.array([v[0] for v in verdicts] + [False], dtype=bool)[c]
    placeholder = np.array([v[1] for v in verdicts] + [False], dtype=bool)[c]
    value = np.array([v[2] for v in verdicts] + [None], dtype=object)[c] if role == "tax_id" else None
    return RoleCheck(role, pos, np.asarray(uniques, dtype=object)[c] if len(c) else np.array([], dtype=object),
                     invalid, placeholder, value)


def _multi_check(role: str, rows: pd.DataFrame, pos_of: pd.Series, region: str) -> RoleCheck:
    pos = pos_of.reindex(rows["id"].to_numpy()).to_numpy(dtype=np.int64)
    raw = rows["raw"].to_numpy(dtype=object)
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    distinct = pd.Series(uniques, dtype=object)
    if role == "phone":
        ph = normalize_phones(distinct, region=region)
        placeholder = ph["placeholder"].to_numpy()
        invalid = ~ph["valid"].to_numpy() & ~placeholder
        value = ph["e164"].where(ph["e164"].notna(), ph["national"]).to_numpy(dtype=object)
    elif role == "email":
        em = normalize_emails(distinct)
        placeholder = em["placeholder"].to_numpy()
        invalid = ~em["valid"].to_numpy() & ~placeholder
        value = em["canonical"].to_numpy(dtype=object)
    elif role == "website":
        domains = normalize_domains(distinct)
        placeholder = np.array([is_placeholder_text(v) for v in uniques], dtype=bool)
        invalid = domains.isna().to_numpy() & ~placeholder
        value = domains.to_numpy(dtype=object)
    else:  # im: any non-placeholder handle is taken as it is
        placeholder = np.array([is_placeholder_text(v) for v in uniques], dtype=bool)
        invalid = np.zeros(len(uniques), dtype=bool)
        value = np.array([(as_text(v) or "").lower() or None for v in uniques], dtype=object)
    value = np.where(invalid | placeholder, None, value)
    return RoleCheck(role, pos, raw, invalid[codes], placeholder[codes], value[codes])


def _roles(table: RoleTable) -> list[str]:
    singles = [r for r in SINGLE_ROLES if r in table.records.columns and table.has(r)]
    texts = [c for c in table.text_columns if table.records[c].notna().any()]
    multis = [r for r in MULTI_ROLES if table.has(r)]
    return singles + texts + multis


def role_checks(table: RoleTable, region: str = "RU") -> list[RoleCheck]:
    """The checks of every role the table has values for (records by position 0..n-1)."""
    pos_of = pd.Series(np.arange(len(table.records), dtype=np.int64), index=table.records.index)
    out = []
    for role in _roles(table):
        if role in MULTI_ROLES:
            out.append(_multi_check(role, table.multi(role), pos_of, region))
        else:
            out.append(_single_check(role, table.records[role], region))
    return out


def _examples(raw: np.ndarray) -> str:
    seen: list[str] = []
    for v in raw:
        text = as_text(v) or ""
        text = text if len(text) <= 40 else text[:39] + "…"
        if text not in seen:
            seen.append(text)
            if len(seen) == _EXAMPLES:
                break
    return " | ".join(seen)


def _has(check: RoleCheck, mask: np.ndarray, n: int) -> np.ndarray:
    """Per record: whether it has a value of this check under ``mask``."""
    out = np.zeros(n, dtype=bool)
    out[check.pos[mask]] = True
    return out


def _fields(n: int, checks: list[RoleCheck]) -> pd.DataFrame:
    rows = []
    for chk in checks:
        values = len(chk.pos)
        filled = int(_has(chk, chk.usable, n).sum())
        invalid = int(chk.invalid.sum())
        rows.append({
            "role": chk.role, "records": n, "values": values, "filled": filled,
            "share_empty": 1 - filled / n if n else 0.0,
            "invalid": invalid, "placeholder": int(chk.placeholder.sum()),
            "share_invalid": invalid / values if values else 0.0,
            "examples": _examples(chk.raw[chk.invalid]),
        })
    return pd.DataFrame(rows, columns=["role", "records", "values", "filled", "share_empty", "invalid",
                                       "placeholder", "share_invalid", "examples"])


def _shared(checks: list[RoleCheck], threshold: int) -> pd.DataFrame:
    parts = []
    for chk in checks:
        if chk.value is None:
            continue
        keep = chk.usable & pd.notna(chk.value)
        if not keep.any():
            continue
        codes, uniques = pd.factorize(chk.value[keep])
        pos = chk.pos[keep]
        # one count per record and value: a record holding the same number twice counts once
        pairs = np.unique(pos.astype(np.int64) * len(uniques) + codes)
        counts = np.bincount(pairs % len(uniques), minlength=len(uniques))
        hit = np.flatnonzero(counts >= threshold)
        parts.append(pd.DataFrame({"role": chk.role, "value": uniques[hit].astype(object), "records": counts[hit]}))
    if not parts:
        return pd.DataFrame({"role": pd.Series(dtype=object), "value": pd.Series(dtype=object),
                             "records": pd.Series(dtype=np.int64)})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["records", "role", "value"], ascending=[False, True, True]).reset_index(drop=True)


def _records(index: pd.Index, checks: list[RoleCheck]) -> pd.DataFrame:
    n = len(index)
    usable_roles = np.zeros(n, dtype=np.int64)
    invalid = np.zeros(n, dtype=np.int64)
    placeholder = np.zeros(n, dtype=np.int64)
    for chk in checks:
        usable_roles += _has(chk, chk.usable, n)
        invalid += np.bincount(chk.pos[chk.invalid], minlength=n)
        placeholder += np.bincount(chk.pos[chk.placeholder], minlength=n)
    completeness = usable_roles / len(checks) if checks else np.zeros(n)
    return pd.DataFrame({"completeness": completeness.astype(float), "invalid": invalid,
                         "placeholder": placeholder}, index=index)


def _sources(table: RoleTable, checks: list[RoleCheck]) -> pd.DataFrame:
    cols = ["source", "role", "records", "values", "invalid", "placeholder", "share_invalid",
            "share_placeholder", "share_empty"]
    if "source" not in table.records.columns:
        return pd.DataFrame(columns=cols)
    names = [as_text(v) or "(none)" for v in table.records["source"].to_numpy(dtype=object)]
    src, labels = pd.factorize(pd.Series(names, dtype=object))
    k, n = len(labels), len(src)
    per_source = np.bincount(src, minlength=k)
    order = np.argsort(np.asarray(labels, dtype=str), kind="stable")
    rows = []
    for chk in sorted(checks, key=lambda c: c.role):
        s = src[chk.pos]
        values = np.bincount(s, minlength=k)
        invalid = np.bincount(s[chk.invalid], minlength=k)
        placeholder = np.bincount(s[chk.placeholder], minlength=k)
        filled = np.bincount(src[_has(chk, chk.usable, n)], minlength=k)
        for i in order:
            if values[i] == 0:
                continue
            rows.append({
                "source": labels[i], "role": chk.role, "records": int(per_source[i]), "values": int(values[i]),
                "invalid": int(invalid[i]), "placeholder": int(placeholder[i]),
                "share_invalid": invalid[i] / values[i], "share_placeholder": placeholder[i] / values[i],
                "share_empty": 1 - filled[i] / per_source[i],
            })
    frame = pd.DataFrame(rows, columns=cols)
    return frame.sort_values(["source", "role"], kind="stable").reset_index(drop=True)


def quality_report(table: RoleTable, region: str = "RU", shared_threshold: int = 10) -> dict[str, pd.DataFrame]:
    """The data-quality report of ``table``: {"fields", "shared", "records", "sources"} (see module doc)."""
    checks = role_checks(table, region)
    n = len(table.records)
    report = {
        "fields": _fields(n, checks),
        "shared": _shared(checks, shared_threshold),
        "records": _records(table.records.index, checks),
        "sources": _sources(table, checks),
    }
    report["shared"].attrs["threshold"] = shared_threshold
    log.info("quality report: %d records, %d roles, %d invalid values, %d shared values",
             n, len(checks), sum(int(c.invalid.sum()) for c in checks), len(report["shared"]))
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
