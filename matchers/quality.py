"""Data-quality report of one RoleTable: empty, invalid and placeholder values per field, values
shared by suspiciously many records, completeness per record, and the same per source.

Every distinct value of every role is checked once (RoleCheck: per value its record position and
distinct value; per distinct value the verdicts invalid and placeholder and the normalised value), on
arrays where the checks allow it (phones and e-mails by their bulk normalisers, plain INNs and long
plain free text without a per-value call); the four report tables are counts over those checks:
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
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from matchers.companies import parse_company
from matchers.identifiers import _W10, _W11, _W12, normalize_domains, parse_birthdate, parse_inn
from matchers.names import PLACEHOLDER_TEXTS, as_text, clean_text
from matchers.phones import FALLBACK_REGIONS
from matchers.prepare import Channels, normalised_values, normalize_email_values, normalize_phone_values
from matchers.table import MULTI_ROLES, SINGLE_ROLES, RoleTable

log = logging.getLogger(__name__)

REPORT_KEYS = ("fields", "shared", "records", "sources")
_PLACEHOLDER_DATE = dt.date(1900, 1, 1)
_NAME_ROLES = ("first_name", "last_name", "middle_name", "full_name")
_LONGEST_PLACEHOLDER = max(map(len, PLACEHOLDER_TEXTS))
# for _long_texts (RE2): text of ASCII and Cyrillic characters only; more letters and digits than the
# longest placeholder has
_PLAIN_TEXT = r"^[\x00-\x7fА-яЁё]*$"
_LONG_TEXT = r"^(?:[^0-9A-Za-zА-яЁё]*[0-9A-Za-zА-яЁё]){%d}" % (_LONGEST_PLACEHOLDER + 1)
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
    """The non-empty values of one role, checked once per distinct value.

    Per value (one per record for a single-value role, any number for a multi-value one): ``pos``, the
    record's position, and ``codes``, the index of its distinct value in the arrays below. Per
    distinct value: ``raw`` (as written; stripped for a multi-value role), the verdicts ``invalid`` and
    ``placeholder``, and ``value``, the normalised value used to find shared values (None where
    unusable or not compared)."""
    role: str
    pos: np.ndarray
    codes: np.ndarray
    raw: np.ndarray
    invalid: np.ndarray
    placeholder: np.ndarray
    value: np.ndarray | None = None

    @property
    def usable(self) -> np.ndarray:
        return ~self.invalid & ~self.placeholder

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """How many values each distinct value has."""
        return np.bincount(self.codes, minlength=len(self.raw))

    def count(self, mask: np.ndarray) -> int:
        """How many values have a distinct value under ``mask``."""
        return int(self.counts[mask].sum())

    def rows(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (per distinct value) for each value."""
        return mask[self.codes]


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


def _long_texts(uniques: np.ndarray) -> np.ndarray:
    """Per distinct value: certainly no placeholder text, without clean_text. A str of ASCII and
    Cyrillic characters only goes through clean_text character by character (no NFKC change, case
    folded one to one, punctuation to spaces), so its cleaned form has at least as many characters as
    it has letters and digits: with more than the longest placeholder, it is none (most addresses)."""
    out = np.zeros(len(uniques), dtype=bool)
    strings = np.flatnonzero(np.fromiter((type(u) is str for u in uniques), bool, len(uniques)))
    try:
        text = pa.array(uniques[strings].tolist(), type=pa.large_string())
    except (pa.ArrowException, UnicodeError):  # e.g. a lone surrogate: every value the slow way
        return out
    out[strings] = (pc.match_substring_regex(text, _PLAIN_TEXT).to_numpy(zero_copy_only=False)
                    & pc.match_substring_regex(text, _LONG_TEXT).to_numpy(zero_copy_only=False))
    return out


def _plain_inns(uniques: np.ndarray, invalid: np.ndarray, placeholder: np.ndarray, value: np.ndarray) -> np.ndarray:
    """_single_verdict of the distinct tax ids written as exactly 10 or 12 ASCII digits (most of them),
    on arrays: parse_inn leaves those digits as they are and checks their control digits. Fills the
    verdicts; returns which values it did."""
    done = np.zeros(len(uniques), dtype=bool)
    for size, checks in ((10, [(_W10, 9)]), (12, [(_W11, 10), (_W12, 11)])):
        rows = np.flatnonzero(np.fromiter((type(u) is str and len(u) == size and u.isascii() and u.isdigit()
                                           for u in uniques), bool, len(uniques)))
        if not len(rows):
            continue
        digits = np.frombuffer("".join(uniques[rows]).encode("ascii"), np.uint8).reshape(-1, size) - ord("0")
        ok = digits.any(axis=1)   # all zeros is no INN
        for weights, at in checks:
            ok &= (digits[:, :at] @ np.array(weights)) % 11 % 10 == digits[:, at]
        same = (digits == digits[:, :1]).all(axis=1)
        placeholder[rows], invalid[rows] = same, ~ok & ~same
        value[rows[ok]] = uniques[rows[ok]]
        done[rows] = True
    return done


def _single_check(role: str, column: pd.Series, region: str) -> RoleCheck:
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    texts = [as_text(u) for u in uniques]
    invalid = np.zeros(len(uniques), dtype=bool)
    placeholder = np.zeros(len(uniques), dtype=bool)
    value = np.full(len(uniques), None, dtype=object) if role == "tax_id" else None
    # free text has no invalid values; most of it is plainly no placeholder (_long_texts)
    free_text = role in ("address", "city") or role.startswith("text:")
    if free_text and len(uniques):
        skip = _long_texts(uniques)
    elif role == "tax_id":
        skip = _plain_inns(uniques, invalid, placeholder, value)
    else:
        skip = np.zeros(len(uniques), dtype=bool)
    for i in np.flatnonzero(~skip).tolist():
        if texts[i] is not None:
            invalid[i], placeholder[i], v = _single_verdict(role, uniques[i], texts[i], region)
            if value is not None:
                value[i] = v
    filled = np.array([t is not None for t in texts] + [False], dtype=bool)[codes]
    pos = np.flatnonzero(filled)
    return RoleCheck(role, pos, codes[pos].astype(np.int64), uniques, invalid, placeholder, value)


def _texts(raw: np.ndarray) -> np.ndarray:
    """The values as RoleTable.multi reads them: as text, stripped ("" for a missing one)."""
    if pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        text = raw.copy()
        text[pd.isna(raw)] = ""
        return np.array([v.strip() for v in text], dtype=object)
    # numbers and other objects: made text exactly as multi() does
    return pd.Series(raw, dtype=object).astype("string").str.strip().fillna("").to_numpy(dtype=object)


@dataclass
class _MultiValues:
    """The non-empty values of one multi-value role: the record position of each, and a code into
    ``distinct`` (each distinct text once, in order of first appearance)."""
    pos: np.ndarray
    codes: np.ndarray
    distinct: np.ndarray


def _multi_values(role: str, table: RoleTable, rows: np.ndarray) -> _MultiValues:
    """The values of a multi-value role from its rows of ``table.values``."""
    values = table.values
    text = _texts(values["raw"].to_numpy(dtype=object)[rows])
    codes, distinct = pd.factorize(text)
    filled = np.flatnonzero(text != "")
    ids, codes = values["id"].to_numpy()[rows][filled], codes[filled].astype(np.int64)
    pos = table.records.index.get_indexer(ids)
    if (pos < 0).any():
        log.warning("%d %s values belong to no record of the table (the first: id %r); they are left out",
                    int((pos < 0).sum()), role, ids[pos < 0][0])
        codes, pos = codes[pos >= 0], pos[pos >= 0]
    return _MultiValues(pos.astype(np.int64), codes, np.asarray(distinct, dtype=object))


# The roles whose check is a bulk normaliser over the distinct values: the slow part of the report,
# run in helper processes on a large table (matchers.prepare.Channels) while the rest is checked here
_NORMALISED = {"phone": (normalize_phone_values, lambda region: (region, FALLBACK_REGIONS)),
               "email": (normalize_email_values, lambda region: (True,))}


def _multi_check(role: str, mv: _MultiValues, region: str, normalised: pd.DataFrame | None = None) -> RoleCheck:
    """The check of a multi-value role; ``normalised``: its distinct values' normaliser output (phones
    and e-mails), when worked out elsewhere."""
    distinct = mv.distinct
    if role in _NORMALISED and normalised is None:
        func, args = _NORMALISED[role]
        normalised = func(distinct, *args(region))
    if role == "phone":
        ph = normalised
        placeholder = ph["placeholder"].to_numpy()
        invalid = ~ph["valid"].to_numpy() & ~placeholder
        value = ph["e164"].where(ph["e164"].notna(), ph["national"]).to_numpy(dtype=object)
    elif role == "email":
        em = normalised
        placeholder = em["placeholder"].to_numpy()
        invalid = ~em["valid"].to_numpy() & ~placeholder
        value = em["canonical"].to_numpy(dtype=object)
    elif role == "website":
        domains = normalize_domains(pd.Series(distinct, dtype=object))
        placeholder = np.array([is_placeholder_text(v) for v in distinct], dtype=bool)
        invalid = domains.isna().to_numpy() & ~placeholder
        value = domains.to_numpy(dtype=object)
    else:  # im: any non-placeholder handle is taken as it is
        placeholder = np.array([is_placeholder_text(v) for v in distinct], dtype=bool)
        invalid = np.zeros(len(distinct), dtype=bool)
        value = np.array([(as_text(v) or "").lower() or None for v in distinct], dtype=object)
    value = np.where(invalid | placeholder, None, value)
    return RoleCheck(role, mv.pos, mv.codes, distinct, invalid.astype(bool), placeholder.astype(bool), value)


def _multi_rows(table: RoleTable) -> dict[str, np.ndarray]:
    """The row numbers of ``table.values`` of each multi-value role it has."""
    codes, names = pd.factorize(table.values["role"].to_numpy(dtype=object))
    return {name: np.flatnonzero(codes == i) for i, name in enumerate(names) if name in MULTI_ROLES}


def _roles(table: RoleTable, multi_rows: dict[str, np.ndarray]) -> list[str]:
    singles = [r for r in SINGLE_ROLES if r in table.records.columns and table.has(r)]
    texts = [c for c in table.text_columns if table.records[c].notna().any()]
    multis = [r for r in MULTI_ROLES if r in multi_rows]
    return singles + texts + multis


def role_checks(table: RoleTable, region: str = "RU", workers: int = 1,
                normalised: dict[str, pd.DataFrame] | None = None) -> list[RoleCheck]:
    """The checks of every role the table has values for (records by position 0..n-1). ``workers``
    > 1: on a large table, phones and e-mails are normalised partly in helper processes meanwhile.
    ``normalised``: a dict that receives those normalised phones and e-mails by role, for
    matchers.prepare.prepare(known=...)."""
    multi_rows = _multi_rows(table)
    roles = _roles(table, multi_rows)
    multis = {role: _multi_values(role, table, multi_rows[role]) for role in roles if role in MULTI_ROLES}
    bulk = [role for role in _NORMALISED if role in multis]
    tasks = Channels(workers, [(_NORMALISED[r][0], multis[r].distinct, _NORMALISED[r][1](region)) for r in bulk])
    try:
        checks = {role: _multi_check(role, multis[role], region) if role in multis
                  else _single_check(role, table.records[role], region)
                  for role in roles if role not in bulk}
    except BaseException:
        tasks.close()  # no helper process left running after an error here
        raise
    for role, frame in zip(bulk, tasks.results()):
        checks[role] = _multi_check(role, multis[role], region, frame)
        if normalised is not None:
            func, args = _NORMALISED[role]
            normalised[role] = normalised_values(func, multis[role].distinct, args(region), frame)
    return [checks[role] for role in roles]


def _examples(check: RoleCheck) -> str:
    """The first few invalid values as written (in the order of the values), each once."""
    codes = check.codes[check.rows(check.invalid)]
    distinct, first = np.unique(codes, return_index=True)
    seen: list[str] = []
    for v in check.raw[distinct[np.argsort(first)]]:
        text = as_text(v) or ""
        text = text if len(text) <= 40 else text[:39] + "…"
        if text not in seen:
            seen.append(text)
            if len(seen) == _EXAMPLES:
                break
    return " | ".join(seen)


def _has(check: RoleCheck, mask: np.ndarray, n: int) -> np.ndarray:
    """Per record: whether it has a value of this check whose distinct value is under ``mask``."""
    out = np.zeros(n, dtype=bool)
    out[check.pos[check.rows(mask)]] = True
    return out


def _fields(n: int, checks: list[RoleCheck]) -> pd.DataFrame:
    rows = []
    for chk in checks:
        values = len(chk.pos)
        filled = int(_has(chk, chk.usable, n).sum())
        invalid = chk.count(chk.invalid)
        rows.append({
            "role": chk.role, "records": n, "values": values, "filled": filled,
            "share_empty": 1 - filled / n if n else 0.0,
            "invalid": invalid, "placeholder": chk.count(chk.placeholder),
            "share_invalid": invalid / values if values else 0.0,
            "examples": _examples(chk),
        })
    return pd.DataFrame(rows, columns=["role", "records", "values", "filled", "share_empty", "invalid",
                                       "placeholder", "share_invalid", "examples"])


def _shared(checks: list[RoleCheck], threshold: int) -> pd.DataFrame:
    parts = []
    for chk in checks:
        if chk.value is None:
            continue
        keep = chk.usable & pd.notna(chk.value) & (chk.counts > 0)
        rows = chk.rows(keep)
        if not rows.any():
            continue
        # the normalised values' codes once per distinct raw value, then spread to the values
        value_codes, uniques = pd.factorize(chk.value[keep])
        code_of = np.full(len(keep), -1, dtype=np.int64)
        code_of[keep] = value_codes
        codes, pos = code_of[chk.codes[rows]], chk.pos[rows]
        # a value held by fewer values than the threshold is held by fewer records too: count records
        # only for the others
        maybe = (np.bincount(codes, minlength=len(uniques)) >= threshold)[codes]
        codes, pos = codes[maybe], pos[maybe]
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
        invalid += np.bincount(chk.pos[chk.rows(chk.invalid)], minlength=n)
        placeholder += np.bincount(chk.pos[chk.rows(chk.placeholder)], minlength=n)
    completeness = usable_roles / len(checks) if checks else np.zeros(n)
    return pd.DataFrame({"completeness": completeness.astype(float), "invalid": invalid,
                         "placeholder": placeholder}, index=index)


def _source_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Per record, a code of its source's name (as_text, "(none)" when empty), and the names."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    names = [as_text(v) or "(none)" for v in uniques] + ["(none)"]   # the last: code -1
    name_codes, labels = pd.factorize(pd.Series(names, dtype=object))
    return name_codes[codes], labels


def _sources(table: RoleTable, checks: list[RoleCheck]) -> pd.DataFrame:
    cols = ["source", "role", "records", "values", "invalid", "placeholder", "share_invalid",
            "share_placeholder", "share_empty"]
    if "source" not in table.records.columns:
        return pd.DataFrame(columns=cols)
    src, labels = _source_codes(table.records["source"])
    k, n = len(labels), len(src)
    per_source = np.bincount(src, minlength=k)
    order = np.argsort(np.asarray(labels, dtype=str), kind="stable")
    rows = []
    for chk in sorted(checks, key=lambda c: c.role):
        s = src[chk.pos]
        values = np.bincount(s, minlength=k)
        invalid = np.bincount(s[chk.rows(chk.invalid)], minlength=k)
        placeholder = np.bincount(s[chk.rows(chk.placeholder)], minlength=k)
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


def quality_report(table: RoleTable, region: str = "RU", shared_threshold: int = 10,
                   workers: int = 1, normalised: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """The data-quality report of ``table``: {"fields", "shared", "records", "sources"} (see module doc).
    ``workers``: processes for the phones and e-mails of a large table (the result is the same).
    ``normalised``: a dict that receives the phones and e-mails as normalised for the check, which
    the find of the same records takes (prepare's ``known``) instead of normalising them again."""
    checks = role_checks(table, region, workers, normalised)
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
