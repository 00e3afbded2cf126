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
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matchers.prepare import Prepared

log = logging.getLogger(__name__)

GENERIC_LOCAL_PARTS = frozenset({
    "info", "office", "sales", "mail", "admin", "support", "hello", "contact", "contacts", "post",
    "reception", "manager", "buh", "zakaz", "order", "orders", "secretary", "hr", "job", "priem",
})


@dataclass
class Keys:
    """A rule's keys: record positions and an integer key per row (a record may have several rows:
    two phones). ``label`` turns key codes back into the key as text, for the skipped-keys report;
    keys are built from the per-column codes of ``Prepared.codes``, so no per-record strings are made."""

    pos: np.ndarray
    key: np.ndarray
    label: Callable[[np.ndarray], np.ndarray]
    rank: np.ndarray | None = None  # per key code, its place in the sorted key texts (neighbourhood rules)


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    keys: Callable[[Prepared], Keys]
    window: int = 0  # 0: exact key blocks; >1: sorted neighbourhood of that window
    cap: int | None = None  # a tighter cap than the global one, for loose keys


# -- key functions ---------------------------------------------------------------------------

def _empty() -> Keys:
    return Keys(np.empty(0, np.int64), np.empty(0, np.int64), lambda k: np.empty(0, dtype=object))


def _lookup(uniques: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda k: np.asarray(uniques, dtype=object)[np.asarray(k, dtype=np.int64)]


def _rank(uniques: np.ndarray) -> np.ndarray:
    """Each value's place in sorted order (the order of the key texts)."""
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[np.argsort(np.asarray(uniques, dtype=str), kind="stable")] = np.arange(len(uniques))
    return rank


def _col(p: Prepared, column: str, min_len: int = 1) -> Keys:
    if column not in p.records.columns:
        return _empty()
    codes, uniques = p.codes(column)
    long_enough = np.fromiter((len(u) >= min_len for u in uniques), dtype=bool, count=len(uniques))
    ok = codes >= 0
    ok[ok] = long_enough[codes[ok]]
    return Keys(np.flatnonzero(ok), codes[ok], _lookup(uniques), _rank(uniques))


def _prefixed(p: Prepared, column: str, length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of a column, or of its first ``length`` characters."""
    codes, uniques = p.codes(column)
    if length is None:
        return codes, uniques
    pcodes, puniq = pd.factorize(np.asarray([u[:length] for u in uniques], dtype=object))
    pcodes = np.append(pcodes.astype(np.int64), -1)  # code -1 stays missing
    return pcodes[codes], np.asarray(puniq, dtype=object)


def _joined(p: Prepared, *columns: str, sort: bool = False, prefix_len: dict[str, int] | None = None) -> Keys:
    """A key from several columns, as if their texts were joined by a space; missing when any part
    is empty. ``sort``: the two parts in alphabetical order (either order of the fields meets)."""
    if any(c not in p.records.columns for c in columns):
        return _empty()
    parts = [_prefixed(p, c, (prefix_len or {}).get(c)) for c in columns]
    ok = np.logical_and.reduce([c >= 0 for c, _ in parts])
    pos = np.flatnonzero(ok)
    if sort:
        (ca, ua), (cb, ub) = parts
        # one alphabet for both columns, numbered in sorted order, so min/max compare the texts
        joint, vocab = pd.factorize(np.concatenate([ua, ub]).astype(object), sort=True)
        ja, jb = joint[: len(ua)][ca[ok]], joint[len(ua):][cb[ok]]
        radix = max(len(vocab), 1)
        key = np.minimum(ja, jb).astype(np.int64) * radix + np.maximum(ja, jb)
        vocab = np.asarray(vocab, dtype=object)
        return Keys(pos, key, lambda k: _glue([vocab[np.asarray(k) // radix], vocab[np.asarray(k) % radix]]))
    key = np.zeros(len(pos), dtype=np.int64)
    radices = []
    for codes, uniques in parts:
        radix = max(len(uniques), 1)
        key = key * radix + codes[ok]
        radices.append(radix)

    def label(k):
        k, texts = np.asarray(k, dtype=np.int64), []
        for (_, uniques), radix in zip(reversed(parts), reversed(radices)):
            texts.append(np.asarray(uniques, dtype=object)[k % radix])
            k = k // radix
        return _glue(texts[::-1])

    return Keys(pos, key, label)


def _glue(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0].astype(object)
    for part in parts[1:]:
        out = out + " " + part
    return out


def _frame_keys(p: Prepared, frame: str, column: str, transform=None) -> Keys:
    """Keys from a long frame (phones, emails, sites): its ``pos`` and a column, per distinct value."""
    codes, uniques = p.frame_codes(frame, column)
    pos = getattr(p, frame)["pos"].to_numpy(np.int64)
    ok = codes >= 0
    if transform is not None:
        new = [transform(u) for u in uniques]
        keep = np.array([x is not None for x in new] + [False], dtype=bool)
        tcodes, tuniq = pd.factorize(np.asarray([x if x is not None else "" for x in new], dtype=object))
        tcodes = np.append(tcodes.astype(np.int64), -1)
        ok = keep[codes]
        codes, uniques = tcodes[codes], np.asarray(tuniq, dtype=object)
    return Keys(pos[ok], codes[ok].astype(np.int64), _lookup(uniques))


def phone_keys(p: Prepared) -> Keys:
    return _frame_keys(p, "phones", "e164")


def email_keys(p: Prepared) -> Keys:
    return _frame_keys(p, "emails", "canonical")


def _local_part(email: str) -> str | None:
    local = email.split("@")[0]
    return local if len(local) >= 5 and local not in GENERIC_LOCAL_PARTS else None


def email_local_keys(p: Prepared) -> Keys:
    return _frame_keys(p, "emails", "canonical", _local_part)


def site_keys(p: Prepared) -> Keys:
    return _frame_keys(p, "sites", "domain")


def person_name_keys(p: Prepared) -> Keys:
    """First and last name after transliteration and nickname resolution, in either order."""
    return _joined(p, "first", "last", sort=True)


def surname_initial_keys(p: Prepared) -> Keys:
    """Surname and first initial: survives typos and unknown diminutives in the first name."""
    return _joined(p, "last", "first", prefix_len={"first": 1})


def first_surname_prefix_keys(p: Prepared) -> Keys:
    """First name and the surname's first three letters: survives typos late in the surname."""
    return _joined(p, "first", "last", prefix_len={"last": 3})


def name_token_keys(p: Prepared) -> Keys:
    return _col(p, "tokens", 3)


def company_keys(p: Prepared) -> Keys:
    return _col(p, "company", 2)


def company_word_keys(p: Prepared) -> Keys:
    """The longest word of the title: survives a dropped or added word (Ромашка / Ромашка Плюс)."""
    if "company_tokens" not in p.records.columns:
        return _empty()
    codes, uniques = p.codes("company_tokens")
    longest = [max(u.split(), key=len, default="") for u in uniques]
    wcodes, words = pd.factorize(np.asarray(longest, dtype=object))
    long_enough = np.array([len(w) >= 4 for w in longest] + [False], dtype=bool)
    ok = long_enough[codes]
    return Keys(np.flatnonzero(ok), np.append(wcodes, -1).astype(np.int64)[codes[ok]],
                _lookup(np.asarray(words, dtype=object)))


def birthdate_name_keys(p: Prepared) -> Keys:
    """Birthdate and the surname's first letter (which may be empty)."""
    if "birthdate" not in p.records.columns or "last" not in p.records.columns:
        return _empty()
    bd = pd.to_datetime(p.records["birthdate"])
    ok = bd.notna().to_numpy()
    dcodes, dates = pd.factorize(bd.dt.normalize().to_numpy()[ok])
    texts = np.asarray(pd.DatetimeIndex(dates).strftime("%Y-%m-%d"), dtype=object)
    icodes, initials = _prefixed(p, "last", 1)
    initials = np.append(np.asarray(initials, dtype=object), "")  # the surname missing: an empty initial
    icodes = np.where(icodes >= 0, icodes, len(initials) - 1)[ok]
    radix = len(initials)
    return Keys(np.flatnonzero(ok), dcodes.astype(np.int64) * radix + icodes,
                lambda k: texts[np.asarray(k) // radix] + ":" + initials[np.asarray(k) % radix])


def postcode_name_keys(p: Prepared) -> Keys:
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

def unique_sorted(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy's hash-based unique is many times slower on large integer arrays."""
    values = np.sort(np.asarray(values))
    if len(values) < 2:
        return values
    return values[np.r_[True, values[1:] != values[:-1]]]


def small_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and the index of each, for non-negative integers of a small range (rule
    bitmasks): a lookup table instead of a sort."""
    values = np.asarray(values, dtype=np.int64)
    if not len(values):
        return values, values
    present = np.flatnonzero(np.bincount(values))
    lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
    lookup[present] = np.arange(len(present))
    return present, lookup[values]


def block_pairs(pos: np.ndarray, key: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """All pairs (a < b) of positions sharing a key, skipping keys held by more than ``cap`` records.
    Returns a, b and the skipped keys with their record counts."""
    if len(pos) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), pd.DataFrame({"key": [], "records": []})
    codes, uniques = pd.factorize(np.asarray(key), sort=False)
    a, b, skipped_codes, skipped_sizes = _code_pairs(np.asarray(pos, dtype=np.int64), codes.astype(np.int64), cap)
    skipped = pd.DataFrame({"key": np.asarray(uniques, dtype=object)[skipped_codes], "records": skipped_sizes})
    return a, b, skipped


def _code_pairs(pos: np.ndarray, codes: np.ndarray, cap: int):
    """block_pairs on integer key codes; returns a, b (a < b) and the skipped codes and their sizes.
    Pairs are made per block size at once (every block of s records gives the same s(s-1)/2 offset
    pairs), so the work is proportional to the pairs made."""
    order = np.lexsort((pos, codes))
    codes, pos = codes[order], pos[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    big = sizes > cap
    a_parts, b_parts = [], []
    ok = (sizes >= 2) & ~big
    for size in unique_sorted(sizes[ok]):
        first = starts[ok & (sizes == size)]
        i, j = np.triu_indices(int(size), k=1)
        a_parts.append(pos[(first[:, None] + i[None, :]).ravel()])
        b_parts.append(pos[(first[:, None] + j[None, :]).ravel()])
    skipped_codes, skipped_sizes = codes[starts[big]], sizes[big]
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), skipped_codes, skipped_sizes
    # positions are sorted within each block, so a <= b already; a record twice in a block
    # (two emails with one name part) gives a == b
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    keep = a != b
    return a[keep], b[keep], skipped_codes, skipped_sizes


def neighbourhood_pairs(pos: np.ndarray, key: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of records whose keys are within ``window`` places of each other in sorted order
    (``key``: the texts, or integers numbered in the texts' order)."""
    if len(pos) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key = np.asarray(key)
    order = np.argsort(key if key.dtype.kind in "iu" else key.astype(str), kind="stable")
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

    def rule_text(self, idx: np.ndarray | None = None) -> np.ndarray:
        """The rules that proposed each pair (of ``idx``, default all), ";"-joined, built once per
        distinct combination of rules."""
        bits = self.rules if idx is None else self.rules[idx]
        masks, inverse = small_codes(bits)
        texts = np.array([";".join(n for bit, n in enumerate(self.rule_names) if int(m) >> bit & 1) for m in masks],
                         dtype=object)
        return texts[inverse]


BLOCK_THREADS = min(os.cpu_count() or 1, 2)


def find_candidates(p: Prepared, cap: int = 20, neighbourhood_window: int = 4) -> Candidates:
    """The union of every rule's pairs, each remembering which rules proposed it. On a large table
    the rules run side by side in threads (sorting and numpy work, which let go of the GIL)."""
    n = max(len(p), 1)
    rules = rules_for(p, neighbourhood_window)
    if len(p) >= 100_000 and BLOCK_THREADS > 1:
        with ThreadPoolExecutor(max_workers=BLOCK_THREADS) as pool:
            found = list(pool.map(lambda r: _rule_pairs(p, r, cap, n), rules))
    else:
        found = [_rule_pairs(p, r, cap, n) for r in rules]
    stats, skipped_parts = [], []
    for rule, (pair_keys, skipped) in zip(rules, found):
        stats.append({"rule": rule.name, "description": rule.description, "pairs": len(pair_keys),
                      "skipped_keys": len(skipped)})
        if len(skipped):
            skipped_parts.append(skipped.assign(rule=rule.name))
            log.info("blocking rule %s skipped %d keys shared by more than %d records", rule.name, len(skipped),
                     rule.cap or cap)
    uniq, bits = _union([keys for keys, _ in found], list(range(len(rules))))
    del found
    a, b = uniq // n, uniq % n
    skipped = (pd.concat(skipped_parts, ignore_index=True)[["rule", "key", "records"]]
               if skipped_parts else pd.DataFrame({"rule": [], "key": [], "records": []}))
    return Candidates(a, b, bits, [r.name for r in rules], [r.description for r in rules],
                      pd.DataFrame(stats), skipped.sort_values("records", ascending=False, kind="stable", ignore_index=True))


def _rule_pairs(p: Prepared, rule: Rule, cap: int, n: int) -> tuple[np.ndarray, pd.DataFrame]:
    """One rule's pairs as sorted distinct keys a * n + b, and the keys it skipped."""
    k = rule.keys(p)
    if rule.window:
        order_key = k.rank[k.key] if k.rank is not None else k.label(k.key)
        a, b = neighbourhood_pairs(k.pos, order_key, rule.window)
        skipped = pd.DataFrame({"key": [], "records": []})
    else:
        a, b, codes, sizes = _code_pairs(k.pos, k.key, rule.cap or cap) if len(k.pos) else (
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
        skipped = pd.DataFrame({"key": k.label(codes), "records": sizes})
    return unique_sorted(a * n + b), skipped


def _union(keys_parts: list[np.ndarray], rule_numbers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct pair keys (each part sorted and distinct) with the OR of the bits of the rules
    that proposed them. With the rule's number packed into the low five bits of each key, one
    in-place sort of a single array does it."""
    if not keys_parts:
        return np.empty(0, np.int64), np.empty(0, np.uint32)
    top = max((int(k[-1]) for k in keys_parts if len(k)), default=0)
    if top >= 1 << 57:  # no room for the rule number: sort keys and bits together
        keys = np.concatenate(keys_parts)
        bits = np.concatenate([np.full(len(k), 1 << r, dtype=np.uint32) for k, r in zip(keys_parts, rule_numbers)])
        order = np.argsort(keys, kind="stable")
        keys, bits = keys[order], bits[order]
    else:
        packed = np.concatenate([(k << 5) | r for k, r in zip(keys_parts, rule_numbers)])
        packed.sort()
        keys = packed >> 5
        bits = np.left_shift(np.uint32(1), (packed & 31).astype(np.uint32))
        del packed
    if not len(keys):
        return keys.astype(np.int64), bits.astype(np.uint32)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.bitwise_or.reduceat(bits, starts)


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
# Built on first use: importing recordlinkage (and scikit-learn with it) takes seconds, and the
# pipeline itself calls the array functions above.

def _indexers() -> dict[str, type]:
    from recordlinkage.base import BaseIndexAlgorithm

    class KeyBlock(BaseIndexAlgorithm):
        """recordlinkage indexer: records sharing a value of ``column``, skipping values held by more
        than ``cap`` records."""

        def __init__(self, column: str, cap: int = 20, **kwargs):
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

    return {"KeyBlock": KeyBlock, "KeyNeighbourhood": KeyNeighbourhood}


_INDEXERS: dict[str, type] = {}


def __getattr__(name: str):
    if name in ("KeyBlock", "KeyNeighbourhood"):
        if not _INDEXERS:
            _INDEXERS.update(_indexers())
        return _INDEXERS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
