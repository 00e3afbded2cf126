"""Normalise a RoleTable once into the columns blocking and comparison use.

The result keeps records in a fixed order (position 0..n-1); every later stage refers to records by
that position, and maps back to ids only at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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

    @property
    def ids(self) -> np.ndarray:
        return self.records["id"].to_numpy()

    @property
    def has_person(self) -> bool:
        return bool(self.roles & set(NAME_ROLES))

    @property
    def has_company(self) -> bool:
        return "company" in self.roles


def prepare(table: RoleTable, region: str = "RU", provider_rules: bool = True) -> Prepared:
    rec = table.records
    out = pd.DataFrame({"id": rec.index.to_numpy()})
    roles = {r for r in rec.columns if rec[r].notna().any()}
    roles |= set(table.values["role"].dropna().unique())

    if roles & set(NAME_ROLES):
        names = normalize_persons(rec[[c for c in NAME_ROLES if c in rec.columns]].reset_index(drop=True))
        for col in ("first", "first_raw", "last", "middle", "tokens", "initials", "full"):
            out[col] = names[col].to_numpy()
    if "company" in rec.columns:
        comp = normalize_companies(rec["company"].reset_index(drop=True))
        out["company"] = comp["key"].to_numpy()
        out["company_tokens"] = comp["tokens"].to_numpy()
    if "birthdate" in rec.columns:
        out["birthdate"] = normalize_birthdates(rec["birthdate"].reset_index(drop=True)).to_numpy()
    if "tax_id" in rec.columns:
        inn = rec["tax_id"].map(parse_inn)
        out["tax_id"] = [v if ok else None for v, ok in inn]
    for role in ("address", "city", "postcode"):
        if role in rec.columns:
            out[role] = rec[role].map(clean_text).replace("", None).to_numpy()
    for col in table.text_columns:
        out[col] = rec[col].map(clean_text).replace("", None).to_numpy()
    for col in ("source", "responsible_id", "created_at", "modified_at"):
        if col in rec.columns:
            out[col] = rec[col].to_numpy()

    pos_of = pd.Series(np.arange(len(out)), index=rec.index)
    phones = _long(table, "phone", pos_of)
    if len(phones):
        norm = normalize_phones(phones["raw"], region=region)
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

    return Prepared(table.entity_type, out, phones.reset_index(drop=True), emails.reset_index(drop=True),
                    sites.reset_index(drop=True), roles)


def _long(table: RoleTable, role: str, pos_of: pd.Series) -> pd.DataFrame:
    v = table.multi(role)
    return pd.DataFrame({"pos": pos_of.reindex(v["id"].to_numpy()).to_numpy(), "raw": v["raw"].to_numpy()})
