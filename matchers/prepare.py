"""Normalise a RoleTable once into the columns blocking and comparison use.

The result keeps records in a fixed order (position 0..n-1); every later stage refers to records by
that position, and maps back to ids only at the end.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from matchers.companies import normalize_companies
from matchers.emails import normalize_emails
from matchers.identifiers import FREE_MAIL_DOMAINS, normalize_birthdates, parse_inn, registered_domain
from matchers.names import clean_text, normalize_persons
from matchers.phones import normalize_phones
from matchers.table import RoleTable

log = logging.getLogger(__name__)

NAME_ROLES = ("first_name", "last_name", "middle_name", "full_name")


@dataclass
class Prepared:
    """Normalised records: ``records`` (one row per record, in position order, column ``id``) and
    long frames ``phones`` (pos, e164, national, valid), ``emails`` (pos, email, canonical, local, domain),
    ``sites`` (pos, domain), each with placeholders and empty values removed."""

    entity_type: str
    records: pd.DataFrame
    phones: pd.DataFrame
    emails: pd.DataFrame
    sites: pd.DataFrame
    roles: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.records)

    def codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The column factorised once: an integer code per record (-1 when empty) and the values as
        Python strings. Comparisons work on codes, so each distinct value is handled once."""
        cache = self.__dict__.setdefault("_codes", {})
        if column not in cache:
            codes, uniques = pd.factorize(self.records[column].to_numpy())
            codes = codes.astype(np.int64)
            uniques = np.asarray([str(u) for u in uniques], dtype=object)
            empty = np.flatnonzero(uniques == "")
            if len(empty):  # an empty string is no value: code -1, later codes shift down
                e = int(empty[0])
                codes[codes == e] = -1
                codes[codes > e] -= 1
                uniques = np.delete(uniques, e)
            cache[column] = (codes, uniques)
        return cache[column]

    @property
    def ids(self) -> np.ndarray:
        return self.records["id"].to_numpy()

    @property
    def has_person(self) -> bool:
        return bool(self.roles & set(NAME_ROLES))

    @property
    def has_company(self) -> bool:
        return "company" in self.roles

    def save(self, folder: Path) -> None:
        """Parquet files prepared_*.parquet and prepared.json in ``folder`` (reused by incremental runs)."""
        folder = Path(folder)
        self.records.to_parquet(folder / "prepared_records.parquet", index=False)
        for name in ("phones", "emails", "sites"):
            getattr(self, name).to_parquet(folder / f"prepared_{name}.parquet", index=False)
        (folder / "prepared.json").write_text(json.dumps({"entity_type": self.entity_type, "roles": sorted(self.roles)}))

    @classmethod
    def load(cls, folder: Path) -> "Prepared":
        folder = Path(folder)
        meta = json.loads((folder / "prepared.json").read_text())
        frames = {name: pd.read_parquet(folder / f"prepared_{name}.parquet") for name in ("records", "phones", "emails", "sites")}
        return cls(meta["entity_type"], frames["records"], frames["phones"], frames["emails"], frames["sites"],
                   set(meta["roles"]))

    def take(self, ids) -> "Prepared":
        """The records with these ids, in that order (positions renumbered)."""
        pos = pd.Series(np.arange(len(self.records)), index=self.records["id"].to_numpy())
        old = pos.reindex(list(ids)).to_numpy()
        if np.isnan(old.astype(float)).any():
            raise KeyError("take() asked for ids that are not in the prepared records")
        old = old.astype(np.int64)
        new_of_old = pd.Series(np.arange(len(old)), index=old)

        def remap(frame: pd.DataFrame) -> pd.DataFrame:
            f = frame[frame["pos"].isin(new_of_old.index)]
            return f.assign(pos=new_of_old.reindex(f["pos"].to_numpy()).to_numpy()).reset_index(drop=True)

        return Prepared(self.entity_type, self.records.iloc[old].reset_index(drop=True), remap(self.phones),
                        remap(self.emails), remap(self.sites), set(self.roles))

    @staticmethod
    def concat(parts: list["Prepared"]) -> "Prepared":
        """One Prepared from several (positions shifted), in the order given."""
        offset, recs, frames = 0, [], {"phones": [], "emails": [], "sites": []}
        for part in parts:
            recs.append(part.records)
            for name in frames:
                f = getattr(part, name)
                frames[name].append(f.assign(pos=f["pos"] + offset))
            offset += len(part.records)
        first = parts[0]
        return Prepared(first.entity_type, pd.concat(recs, ignore_index=True),
                        *(pd.concat(frames[n], ignore_index=True) for n in ("phones", "emails", "sites")),
                        set().union(*(x.roles for x in parts)))


_SOUND_RULES = [(re.compile(a), b) for a, b in [
    (r"dzh|dj", "j"), (r"^i(?=[aeou])", "j"), (r"sch|shch|sh", "s"), (r"ch", "k"), (r"ph", "f"), (r"th", "t"),
    (r"w", "v"), (r"ck|c|q|x|g", "k"), (r"v", "f"), (r"z", "s"), (r"h", ""), (r"(.)\1+", r"\1"),
]]


def sound_key(key: object) -> str:
    """A coarse "sounds alike" key of a transliterated name: the first letter and the consonant
    skeleton, with look-alike consonants merged, so that English names written in Cyrillic and back
    meet (Стивен / Stephen -> stfn, Майкл / Michael -> mkl, Джессика / Jessica -> jsk)."""
    if not isinstance(key, str) or not key:
        return ""
    s = key
    for pattern, repl in _SOUND_RULES:
        s = pattern.sub(repl, s)
    if not s:
        return ""
    return s[0] + re.sub(r"[aeiouy]", "", s[1:])


def per_unique(values: pd.Series, func) -> np.ndarray:
    """``values.map(func)`` as an object array, calling ``func`` once per distinct value (and once
    with NaN for the missing ones): names, addresses and keys repeat a lot in a large table."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    results = np.empty(len(uniques) + 1, dtype=object)
    results[:] = [func(u) for u in uniques] + [func(np.nan)]
    return results[codes]


def _valid_inn(raw: object) -> str | None:
    digits, ok = parse_inn(raw)
    return digits if ok else None


def _clean_or_none(raw: object) -> str | None:
    return clean_text(raw) or None


def prepare(table: RoleTable, region: str = "RU", provider_rules: bool = True,
            fallback_regions: tuple[str, ...] = ("US", "GB")) -> Prepared:
    rec = table.records
    out = pd.DataFrame({"id": rec.index.to_numpy()})
    roles = {r for r in rec.columns if rec[r].notna().any()}
    roles |= set(table.values["role"].dropna().unique())

    if roles & set(NAME_ROLES):
        names = normalize_persons(rec[[c for c in NAME_ROLES if c in rec.columns]].reset_index(drop=True))
        for col in ("first", "first_raw", "last", "middle", "tokens", "initials", "full"):
            out[col] = names[col].to_numpy()
        out["first_sound"] = per_unique(out["first_raw"], sound_key)
        out["last_sound"] = per_unique(out["last"], sound_key)
    if "company" in rec.columns:
        comp = normalize_companies(rec["company"].reset_index(drop=True))
        out["company"] = comp["key"].to_numpy()
        out["company_tokens"] = comp["tokens"].to_numpy()
    if "birthdate" in rec.columns:
        out["birthdate"] = normalize_birthdates(rec["birthdate"].reset_index(drop=True)).to_numpy()
    if "tax_id" in rec.columns:
        out["tax_id"] = per_unique(rec["tax_id"], _valid_inn)
    for col in ("address", "city", "postcode", *table.text_columns):
        if col in rec.columns:
            out[col] = per_unique(rec[col], _clean_or_none)
    for col in ("source", "responsible_id", "created_at", "modified_at"):
        if col in rec.columns:
            out[col] = rec[col].to_numpy()

    pos_of = pd.Series(np.arange(len(out)), index=rec.index)
    phones = _long(table, "phone", pos_of)
    if len(phones):
        norm = normalize_phones(phones["raw"], region=region)
        # a number written without its country code may belong to another country (a London
        # client's "07825 529 772" in a Moscow CRM): try the fallback regions where it is invalid
        for other in fallback_regions:
            bad = ~norm["valid"] & ~norm["placeholder"] & phones["raw"].notna()
            if not bad.any():
                break
            alt = normalize_phones(phones["raw"][bad], region=other)
            better = alt["valid"]
            norm.loc[better[better].index] = alt[better]
        phones = phones.join(norm)
        phones = phones[phones["e164"].notna() & ~phones["placeholder"]]
    phones = phones.reindex(columns=["pos", "e164", "national", "valid"]).drop_duplicates(["pos", "e164"])

    emails = _long(table, "email", pos_of)
    if len(emails):
        norm = normalize_emails(emails["raw"], provider_rules=provider_rules)
        emails = emails.join(norm)
        emails = emails[emails["canonical"].notna() & ~emails["placeholder"]]
    emails = emails.reindex(columns=["pos", "email", "canonical", "local", "domain"]).drop_duplicates(["pos", "canonical"])

    sites = _long(table, "website", pos_of)
    if len(sites):
        sites = sites.assign(domain=sites["raw"].map(registered_domain))
        sites = sites[sites["domain"].notna() & ~sites["domain"].isin(FREE_MAIL_DOMAINS)]
    sites = sites.reindex(columns=["pos", "domain"]).drop_duplicates()

    return Prepared(table.entity_type, out, _typed(phones), _typed(emails), _typed(sites), roles)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Positions as integers and values as Python strings, also when the frame is empty."""
    frame = frame.reset_index(drop=True)
    types = {c: object for c in frame.columns if c not in ("pos", "valid")}
    types["pos"] = np.int64
    if "valid" in frame.columns:
        types["valid"] = bool
    return frame.astype(types)


def _long(table: RoleTable, role: str, pos_of: pd.Series) -> pd.DataFrame:
    v = table.multi(role)
    return pd.DataFrame({"pos": pos_of.reindex(v["id"].to_numpy()).to_numpy(), "raw": v["raw"].to_numpy()})
