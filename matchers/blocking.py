"""Blocking: which record pairs are worth comparing.

Each rule turns the prepared records into keys (a record may have several: two phones); records
sharing a key become candidate pairs. A key shared by more than ``cap`` records (an office
switchboard, info@ addresses, "Иванов Александр") would explode the pairs, so it is skipped and
reported; such a pair is still found through another rule when it is a true duplicate.
Sorted-neighbourhood rules pair records whose keys sort next to each other (typos late in a word).

The rules are also exposed as recordlinkage indexers (``KeyBlock``, ``KeyNeighbourhood``) so they
compose with recordlinkage.Index; the pipeline calls the array functions directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from recordlinkage.base import BaseIndexAlgorithm

from matchers.prepare import Prepared

log = logging.getLogger(__name__)

GENERIC_LOCAL_PARTS = frozenset({
    "info", "office", "sales", "mail", "admin", "support", "hello", "contact", "contacts", "post",
    "reception", "manager", "buh", "zakaz", "order", "orders", "secretary", "hr", "job", "priem",
})


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    keys: Callable[[Prepared], pd.DataFrame]  # -> frame with columns pos, key
    window: int = 0  # 0: exact key blocks; >1: sorted neighbourhood of that window
    cap: int | None = None  # a tighter cap than the global one, for loose keys


# -- key functions ---------------------------------------------------------------------------

def _col(p: Prepared, column: str, min_len: int = 1) -> pd.DataFrame:
    if column not in p.records.columns:
        return _empty()
    key = p.records[column]
    ok = key.notna() & (key.astype(str).str.len() >= min_len)
    return pd.DataFrame({"pos": np.flatnonzero(ok.to_numpy()), "key": key[ok].astype(str).to_numpy()})


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"pos": np.empty(0, dtype=np.int64), "key": np.empty(0, dtype=object)})


def _joined(p: Prepared, *columns: str, sort: bool = False, prefix_len: dict[str, int] | None = None) -> pd.DataFrame:
    """A key from several columns; missing when any part is empty."""
    if any(c not in p.records.columns for c in columns):
        return _empty()
    parts = []
    for c in columns:
        s = p.records[c].fillna("").astype(str)
        if prefix_len and c in prefix_len:
            s = s.str[: prefix_len[c]]
        parts.append(s)
    ok = np.logical_and.reduce([s.str.len().to_numpy() > 0 for s in parts])
    if sort:
        a, b = parts[0].to_numpy(), parts[1].to_numpy()
        lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
        key = pd.Series(lo, dtype=object) + " " + pd.Series(hi, dtype=object)
    else:
        key = parts[0]
        for s in parts[1:]:
            key = key + " " + s
    key = pd.Series(np.asarray(key, dtype=object))
    return pd.DataFrame({"pos": np.flatnonzero(ok), "key": key[ok].to_numpy()})


def phone_keys(p: Prepared) -> pd.DataFrame:
    return p.phones.rename(columns={"e164": "key"})[["pos", "key"]]


def email_keys(p: Prepared) -> pd.DataFrame:
    return p.emails.rename(columns={"canonical": "key"})[["pos", "key"]]


def email_local_keys(p: Prepared) -> pd.DataFrame:
    local = p.emails["canonical"].str.split("@").str[0]
    ok = (local.str.len() >= 5) & ~local.isin(GENERIC_LOCAL_PARTS)
    return pd.DataFrame({"pos": p.emails["pos"][ok].to_numpy(), "key": local[ok].to_numpy()})


def site_keys(p: Prepared) -> pd.DataFrame:
    return p.sites.rename(columns={"domain": "key"})[["pos", "key"]]


def person_name_keys(p: Prepared) -> pd.DataFrame:
    """First and last name after transliteration and nickname resolution, in either order."""
    return _joined(p, "first", "last", sort=True)


def surname_initial_keys(p: Prepared) -> pd.DataFrame:
    """Surname and first initial: survives typos and unknown diminutives in the first name."""
    return _joined(p, "last", "first", prefix_len={"first": 1})


def first_surname_prefix_keys(p: Prepared) -> pd.DataFrame:
    """First name and the surname's first three letters: survives typos late in the surname."""
    return _joined(p, "first", "last", prefix_len={"last": 3})


def name_token_keys(p: Prepared) -> pd.DataFrame:
    return _col(p, "tokens", 3)


def company_keys(p: Prepared) -> pd.DataFrame:
    return _col(p, "company", 2)


def company_word_keys(p: Prepared) -> pd.DataFrame:
    """The longest word of the title: survives a dropped or added word (Ромашка / Ромашка Плюс)."""
    if "company_tokens" not in p.records.columns:
        return _empty()
    longest = p.records["company_tokens"].fillna("").map(lambda s: max(s.split(), key=len, default=""))
    ok = longest.str.len() >= 4
    return pd.DataFrame({"pos": np.flatnonzero(ok.to_numpy()), "key": longest[ok].to_numpy()})


def birthdate_name_keys(p: Prepared) -> pd.DataFrame:
    if "birthdate" not in p.records.columns or "last" not in p.records.columns:
        return _empty()
    bd = p.records["birthdate"]
    ok = bd.notna().to_numpy()
    key = pd.Series(pd.to_datetime(bd[ok]).dt.strftime("%Y-%m-%d").to_numpy(), dtype=object)
    initial = p.records["last"].fillna("").str[:1].to_numpy()[ok]
    return pd.DataFrame({"pos": np.flatnonzero(ok), "key": (key + ":" + initial).to_numpy()})


def postcode_name_keys(p: Prepared) -> pd.DataFrame:
    return _joined(p, "postcode", "first", prefix_len={"first": 2})


def rules_for(p: Prepared, neighbourhood_window: int = 4) -> list[Rule]:
    """The rules that apply to what the table holds (roles present). Sorted-neighbourhood rules are
    used only where there are no phones or emails to fall back on: measured on the demo CRM, they
    added no true pair the key rules missed, at twice the candidate pairs."""
    channels = len(p.phones) > 0 or len(p.emails) > 0
    window = 0 if channels else neighbourhood_window
    rules = [
        Rule("phone", "same phone number (E.164)", phone_keys),
        Rule("email", "same email address", email_keys),
        Rule("email_local", "same email name at another domain", email_local_keys),
    ]
    if p.has_person:
        rules += [
            Rule("name", "same first and last name after transliteration and nicknames", person_name_keys),
            Rule("surname_initial", "same surname and first initial", surname_initial_keys),
            Rule("first_surname_prefix", "same first name and start of surname", first_surname_prefix_keys),
        ]
        if window:
            rules.append(Rule("name_neighbourhood", "name tokens sort next to each other", name_token_keys, window))
    if p.has_company:
        rules += [
            Rule("company", "same company title without legal form", company_keys),
            Rule("company_word", "same main word of the company title", company_word_keys, cap=10),
        ]
        if window:
            rules.append(Rule("company_neighbourhood", "company titles sort next to each other", company_keys, window))
    if "tax_id" in p.records.columns:
        rules.append(Rule("tax_id", "same tax id (INN)", lambda q: _col(q, "tax_id")))
    if len(p.sites):
        rules.append(Rule("website", "same website domain", site_keys))
    if "birthdate" in p.records.columns:
        rules.append(Rule("birthdate", "same birthdate and surname initial", birthdate_name_keys))
    if "postcode" in p.records.columns and p.has_person:
        rules.append(Rule("postcode", "same postcode and start of first name", postcode_name_keys))
    for col in p.records.columns:
        if str(col).startswith("text:"):
            rules.append(Rule(col, f"same {col[5:]}", lambda q, c=col: _col(q, c)))
    return rules


# -- pair generation -------------------------------------------------------------------------

def block_pairs(pos: np.ndarray, key: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """All pairs (a < b) of positions sharing a key, skipping keys held by more than ``cap`` records.
    Returns a, b and the skipped keys with their record counts."""
    if len(pos) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), pd.DataFrame({"key": [], "records": []})
    codes, uniques = pd.factorize(key, sort=False)
    order = np.lexsort((pos, codes))
    codes, pos = codes[order], np.asarray(pos)[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    size_of = np.repeat(sizes, sizes)
    within = np.arange(len(codes)) - np.repeat(starts, sizes)
    skipped = pd.DataFrame({"key": np.asarray(uniques, dtype=object)[codes[starts[sizes > cap]]],
                            "records": sizes[sizes > cap]})
    keep = (size_of >= 2) & (size_of <= cap)
    a_parts, b_parts = [], []
    max_size = int(sizes[sizes <= cap].max(initial=1))
    for k in range(1, max_size):
        m = keep & (within + k < size_of)
        idx = np.flatnonzero(m)
        a_parts.append(pos[idx])
        b_parts.append(pos[idx + k])
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), skipped
    return _ordered(np.concatenate(a_parts), np.concatenate(b_parts)) + (skipped,)


def neighbourhood_pairs(pos: np.ndarray, key: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of records whose keys are within ``window`` places of each other in sorted order."""
    if len(pos) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(np.asarray(key, dtype=str), kind="stable")
    pos = np.asarray(pos)[order]
    a = np.concatenate([pos[:-k] for k in range(1, min(window, len(pos)))])
    b = np.concatenate([pos[k:] for k in range(1, min(window, len(pos)))])
    return _ordered(a, b)


def _ordered(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = a.astype(np.int64), b.astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return lo[keep], hi[keep]


@dataclass
class Candidates:
    """Candidate pairs by position (a < b), with a bit per rule that proposed each pair."""

    a: np.ndarray
    b: np.ndarray
    rules: np.ndarray  # uint32 bitmask, bit i = rule_names[i]
    rule_names: list[str]
    rule_descriptions: list[str]
    per_rule: pd.DataFrame  # rule, description, pairs, skipped_keys
    skipped: pd.DataFrame  # rule, key, records: keys too common to block on

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, mask: np.ndarray) -> "Candidates":
        return Candidates(self.a[mask], self.b[mask], self.rules[mask], self.rule_names, self.rule_descriptions,
                          self.per_rule, self.skipped)

    def rules_of(self, i: int) -> list[str]:
        return [n for bit, n in enumerate(self.rule_names) if self.rules[i] >> bit & 1]


def find_candidates(p: Prepared, cap: int = 50, neighbourhood_window: int = 4) -> Candidates:
    """The union of every rule's pairs, each remembering which rules proposed it."""
    n = len(p)
    keys_parts, bits_parts, stats, skipped_parts = [], [], [], []
    rules = rules_for(p, neighbourhood_window)
    for bit, rule in enumerate(rules):
        kf = rule.keys(p)
        pos, key = kf["pos"].to_numpy(np.int64), kf["key"].to_numpy(dtype=object)
        if rule.window:
            a, b = neighbourhood_pairs(pos, key, rule.window)
            skipped = pd.DataFrame({"key": [], "records": []})
        else:
            a, b, skipped = block_pairs(pos, key, rule.cap or cap)
        pair_keys = np.unique(a * n + b)
        keys_parts.append(pair_keys)
        bits_parts.append(np.full(len(pair_keys), 1 << bit, dtype=np.uint32))
        stats.append({"rule": rule.name, "description": rule.description, "pairs": len(pair_keys),
                      "skipped_keys": len(skipped)})
        if len(skipped):
            skipped_parts.append(skipped.assign(rule=rule.name))
            log.info("blocking rule %s skipped %d keys shared by more than %d records", rule.name, len(skipped), cap)
    all_keys = np.concatenate(keys_parts) if keys_parts else np.empty(0, np.int64)
    all_bits = np.concatenate(bits_parts) if bits_parts else np.empty(0, np.uint32)
    uniq, inverse = np.unique(all_keys, return_inverse=True)
    bits = np.zeros(len(uniq), dtype=np.uint32)
    np.bitwise_or.at(bits, inverse, all_bits)
    a, b = uniq // max(n, 1), uniq % max(n, 1)
    skipped = (pd.concat(skipped_parts, ignore_index=True)[["rule", "key", "records"]]
               if skipped_parts else pd.DataFrame({"rule": [], "key": [], "records": []}))
    return Candidates(a, b, bits, [r.name for r in rules], [r.description for r in rules],
                      pd.DataFrame(stats), skipped.sort_values("records", ascending=False, ignore_index=True))


def blocking_recall(c: Candidates, truth: np.ndarray) -> pd.DataFrame:
    """Per rule and in union: candidate pairs, true pairs found, true pairs lost.
    ``truth`` gives each position its real-entity cluster label."""
    truth = np.asarray(truth)
    true_pairs = _true_pair_count(truth)
    is_true = truth[c.a] == truth[c.b]
    rows = []
    for bit, name in enumerate(c.rule_names):
        m = (c.rules >> bit & 1).astype(bool)
        rows.append({"rule": name, "candidate_pairs": int(m.sum()), "true_pairs_found": int((is_true & m).sum())})
    found = int(is_true.sum())
    rows.append({"rule": "(all rules)", "candidate_pairs": len(c), "true_pairs_found": found})
    out = pd.DataFrame(rows)
    out["true_pairs"] = true_pairs
    out["true_pairs_lost"] = true_pairs - out["true_pairs_found"]
    out["recall"] = out["true_pairs_found"] / max(true_pairs, 1)
    return out


def _true_pair_count(truth: np.ndarray) -> int:
    sizes = pd.Series(truth).value_counts().to_numpy()
    return int((sizes * (sizes - 1) // 2).sum())


# -- recordlinkage indexers ------------------------------------------------------------------

class KeyBlock(BaseIndexAlgorithm):
    """recordlinkage indexer: records sharing a value of ``column``, skipping values held by more
    than ``cap`` records."""

    def __init__(self, column: str, cap: int = 50, **kwargs):
        super().__init__(**kwargs)
        self.column, self.cap = column, cap

    def _dedup_index(self, df_a):
        key = df_a[self.column]
        ok = key.notna().to_numpy()
        a, b, _ = block_pairs(np.flatnonzero(ok), key.to_numpy(dtype=object)[ok], self.cap)
        return pd.MultiIndex.from_arrays([df_a.index[b], df_a.index[a]])


class KeyNeighbourhood(BaseIndexAlgorithm):
    """recordlinkage indexer: records whose ``column`` values sort within ``window`` of each other."""

    def __init__(self, column: str, window: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.column, self.window = column, window

    def _dedup_index(self, df_a):
        key = df_a[self.column]
        ok = key.notna().to_numpy()
        a, b = neighbourhood_pairs(np.flatnonzero(ok), key.to_numpy(dtype=object)[ok], self.window)
        return pd.MultiIndex.from_arrays([df_a.index[b], df_a.index[a]])
