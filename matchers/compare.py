"""Comparisons: for each candidate pair, a graded level per comparison, and the words that explain it.

Every comparison is a small class on one base: ``levels`` names the agreement levels from the
weakest (0, "different") up to the strongest; ``NULL`` (-1) means a side has no value, which counts
as neither evidence for nor against. ``compute(p, a, b)`` is vectorised over arrays of record
positions and returns the level of each pair plus, for term-frequency adjustment, how many records
hold the value that matched exactly (0 where not an exact match).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

from matchers.prepare import Prepared

NULL = -1


@dataclass
class Levels:
    level: np.ndarray  # int8 per pair
    tf: np.ndarray  # records holding the exactly matching value, 0 if not applicable
    value: np.ndarray | None = None  # the shared value per pair, for explanations (object, may be None)


def _similarity(va: np.ndarray, vb: np.ndarray, scorer) -> np.ndarray:
    if len(va) == 0:
        return np.empty(0, dtype=np.float32)
    return process.cpdist(list(va), list(vb), scorer=scorer, workers=-1)


def _code_similarity(ca: np.ndarray, cb: np.ndarray, uniques: np.ndarray, scorer) -> np.ndarray:
    """Similarity of the values behind two code arrays, computed once per distinct pair of values."""
    if len(ca) == 0:
        return np.empty(0, dtype=np.float32)
    key = ca * len(uniques) + cb
    ukey, inverse = np.unique(key, return_inverse=True)
    sim = _similarity(uniques[ukey // len(uniques)], uniques[ukey % len(uniques)], scorer)
    return np.asarray(sim)[inverse]


def _counts(values: pd.Series) -> pd.Series:
    return values.value_counts()


class Comparison:
    """Base: ``name`` (an identifier), ``label`` (words for people) and ``levels``, weakest first."""

    name: str = ""
    label: str = ""
    levels: tuple[str, ...] = ()
    tf_level: int | None = None  # the level whose weight is adjusted by term frequency

    def compute(self, p: Prepared, a: np.ndarray, b: np.ndarray) -> Levels:
        raise NotImplementedError

    def describe(self, level: int, value: object = None) -> str:
        if level == NULL:
            return f"{self.label}: missing"
        text = self.levels[level]
        if value is not None and level == self.tf_level:
            return f"{self.label} {value} {text}"
        return f"{self.label} {text}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class StringComparison(Comparison):
    """One text column: exact, then Jaro-Winkler or token-sort bands."""

    def __init__(self, name: str, column: str, label: str, bands: tuple[float, ...] = (0.88, 0.94),
                 scorer=JaroWinkler.normalized_similarity, band_words: tuple[str, ...] | None = None,
                 exact_word: str = "same", tf: bool = False):
        self.name, self.column, self.label, self.bands, self.scorer = name, column, label, bands, scorer
        words = band_words or tuple(f"similar ({t:g}+)" for t in bands)
        self.levels = ("different", *words, exact_word)
        self.tf_level = len(self.levels) - 1 if tf else None
        self._tf_counts: pd.Series | None = None

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        tf = np.zeros(n, dtype=np.int32)
        if self.column not in p.records.columns:
            return Levels(level, tf)
        codes, uniques = p.codes(self.column)
        ca, cb = codes[a], codes[b]
        both = (ca >= 0) & (cb >= 0)
        exact = both & (ca == cb)
        level[both] = 0
        rest = np.flatnonzero(both & ~exact)
        sim = _code_similarity(ca[rest], cb[rest], uniques, self.scorer)
        for i, threshold in enumerate(self.bands, start=1):
            level[rest[sim >= threshold]] = i
        level[exact] = len(self.bands) + 1
        if self.tf_level is not None:
            counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
            tf[exact] = counts[ca[exact]]
        return Levels(level, tf)


class FirstNameComparison(Comparison):
    """First names: the same as written; the same after nicknames and diminutives (their sets of
    possible full names meet: Саша / Александр, Bill / William, Лена / Елена); one typo apart or
    Jaro-Winkler close; sounding alike across scripts (Стивен / Stephen); or only an initial."""

    name, label = "first_name", "first name"
    levels = ("different", "same initial", "sounds alike", "similar", "same after nicknames", "same")
    tf_level = 5

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        tf = np.zeros(n, dtype=np.int32)
        if "first_raw" not in p.records.columns:
            return Levels(level, tf)
        raw, raw_u = p.codes("first_raw")
        if len(raw_u) == 0:
            return Levels(level, tf)
        ra, rb = raw[a], raw[b]
        both = (ra >= 0) & (rb >= 0)
        level[both] = 0
        raw_len = np.array([len(x) for x in raw_u], dtype=np.int64)
        initial = np.array([x[:1] for x in raw_u], dtype=object)
        la = np.where(ra >= 0, raw_len[np.maximum(ra, 0)], 0)
        lb = np.where(rb >= 0, raw_len[np.maximum(rb, 0)], 0)
        initial_only = both & ((la == 1) | (lb == 1))
        level[initial_only & (initial[np.maximum(ra, 0)] == initial[np.maximum(rb, 0)])] = 1
        full = both & ~initial_only
        if "first_sound" in p.records.columns:
            sound, _ = p.codes("first_sound")
            level[full & (sound[a] >= 0) & (sound[a] == sound[b])] = 2
        rest = np.flatnonzero(full & (ra != rb))
        jw = _code_similarity(ra[rest], rb[rest], raw_u, JaroWinkler.normalized_similarity)
        typo = _code_similarity(ra[rest], rb[rest], raw_u, OSA.distance)
        short = np.minimum(la[rest], lb[rest]) < 4
        level[rest[(jw >= 0.88) | ((typo <= 1) & ~short)]] = 3
        nick = _nickname_match(ra[rest], rb[rest], raw_u)
        level[rest[nick]] = 4
        exact = full & (ra == rb)
        level[exact] = 5
        counts = np.bincount(raw[raw >= 0], minlength=len(raw_u))
        tf[exact] = counts[ra[exact]]
        return Levels(level, tf)


def _nickname_match(ca: np.ndarray, cb: np.ndarray, uniques: np.ndarray) -> np.ndarray:
    """Whether the full names two first names may stand for meet, once per distinct pair."""
    from matchers.names import canonical_first_name, name_variants

    if len(ca) == 0:
        return np.zeros(0, bool)
    cache: dict[int, frozenset] = {}

    def variants(code: int) -> frozenset:
        if code not in cache:
            key = uniques[code]
            cache[code] = frozenset(name_variants(key)) | {key, canonical_first_name(key)}
        return cache[code]

    key = ca * len(uniques) + cb
    ukey, inverse = np.unique(key, return_inverse=True)
    hit = np.array([bool(variants(int(k // len(uniques))) & variants(int(k % len(uniques)))) for k in ukey], bool)
    return hit[inverse]


class SurnameComparison(StringComparison):
    """Surname: Jaro-Winkler bands, plus "sounds alike" for names written in the other script by ear."""

    def __init__(self):
        super().__init__("last_name", "last", "surname", bands=(0.88, 0.94),
                         band_words=("similar", "one typo apart"), exact_word="same", tf=True)
        self.levels = ("different", "sounds alike", "similar", "one typo apart", "same")
        self.tf_level = 4

    def compute(self, p, a, b):
        base = super().compute(p, a, b)
        level = base.level.copy()
        # the parent's bands are 1, 2 and exact 3: shift them up one to make room for "sounds alike"
        level[level >= 1] += 1
        if "last_sound" in p.records.columns:
            sound, _ = p.codes("last_sound")
            alike = (level == 0) & (sound[a] >= 0) & (sound[a] == sound[b])
            level[alike] = 1
        return Levels(level, base.tf)


class MiddleNameComparison(Comparison):
    """Patronymic: missing on either side is no evidence; two different ones (a father and his son) are."""

    name, label = "middle_name", "patronymic"
    levels = ("different", "similar", "same")

    def compute(self, p, a, b):
        return StringComparison("middle_name", "middle", "patronymic", bands=(0.9,)).compute(p, a, b)


class MultiValueComparison(Comparison):
    """Phones or emails: records may hold several; the best level over all value pairs counts."""

    def __init__(self, name: str, label: str):
        self.name, self.label = name, label
        if name == "phone":
            self.levels = ("different", "same last 7 digits", "same number")
        else:
            self.levels = ("different", "similar name part", "same name at another domain", "same address")
        self.tf_level = len(self.levels) - 1

    def _frame(self, p: Prepared) -> pd.DataFrame:
        if self.name == "phone":
            f = p.phones.rename(columns={"e164": "value"})
            return f.assign(part=f["national"].fillna("").astype(str).str[-7:])[["pos", "value", "part"]]
        f = p.emails.rename(columns={"canonical": "value"})
        return f.assign(part=f["value"].str.split("@").str[0])[["pos", "value", "part"]]

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        tf = np.zeros(n, dtype=np.int32)
        shown = np.full(n, None, dtype=object)
        f = self._frame(p)
        if f.empty:
            return Levels(level, tf, shown)
        has = np.zeros(len(p), dtype=bool)
        has[f["pos"].to_numpy()] = True
        both = has[a] & has[b]
        level[both] = 0
        counts = f["value"].value_counts()
        pairs = pd.DataFrame({"pair": np.flatnonzero(both), "pa": a[both], "pb": b[both]})
        left = pairs.merge(f, left_on="pa", right_on="pos")[["pair", "value", "part"]]
        right = pairs.merge(f, left_on="pb", right_on="pos")[["pair", "value", "part"]]
        # weakest to strongest, so the strongest level is written last
        if self.name == "email":
            cross = left.merge(right, on="pair", suffixes=("_a", "_b"))
            cross = cross[cross["value_a"] != cross["value_b"]]
            if len(cross):
                sim = _similarity(cross["part_a"].to_numpy(), cross["part_b"].to_numpy(),
                                  JaroWinkler.normalized_similarity)
                close = cross["pair"].to_numpy()[(sim >= 0.92) & (cross["part_a"].str.len() >= 4).to_numpy()]
                level[close] = 1
        same_part = left.merge(right, on=["pair", "part"])
        same_part = same_part[same_part["part"].str.len() >= (7 if self.name == "phone" else 4)]
        level[same_part["pair"].to_numpy()] = self.tf_level - 1
        exact = left.merge(right, on=["pair", "value"])
        if len(exact):
            exact = exact.assign(tf=counts.reindex(exact["value"]).to_numpy())
            # of several shared values, the rarest is the strongest evidence
            best = exact.sort_values(["pair", "tf"]).drop_duplicates("pair")
            idx = best["pair"].to_numpy()
            level[idx] = self.tf_level
            tf[idx] = best["tf"].to_numpy()
            shown[idx] = best["value"].to_numpy()
        return Levels(level, tf, shown)


class DateComparison(Comparison):
    name, label = "birthdate", "birthdate"
    levels = ("different", "same year", "one digit apart", "day and month swapped", "same")

    def __init__(self, column: str = "birthdate"):
        self.column = column

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        if self.column not in p.records.columns:
            return Levels(level, np.zeros(n, np.int32))
        d = pd.to_datetime(p.records[self.column])
        ok = d.notna().to_numpy()
        y, m, dd = (d.dt.year.fillna(0).astype(int).to_numpy(), d.dt.month.fillna(0).astype(int).to_numpy(),
                    d.dt.day.fillna(0).astype(int).to_numpy())
        both = ok[a] & ok[b]
        level[both] = 0
        same_year = both & (y[a] == y[b])
        level[same_year] = 1
        digits = y * 10000 + m * 100 + dd
        rest = np.flatnonzero(both & (digits[a] != digits[b]))
        text = np.array([f"{v:08d}" for v in digits], dtype=object)
        typo = _similarity(text[a[rest]], text[b[rest]], OSA.distance) if len(rest) else np.empty(0)
        level[rest[np.asarray(typo) <= 1]] = 2
        level[same_year & (m[a] == dd[b]) & (dd[a] == m[b])] = 3
        level[same_year & (m[a] == m[b]) & (dd[a] == dd[b])] = 4
        return Levels(level, np.zeros(n, np.int32))


class ExactComparison(Comparison):
    """Identifiers: the same or not (tax id, website domain)."""

    def __init__(self, name: str, label: str, column: str | None = None, frame: str | None = None):
        self.name, self.label, self.column, self.frame = name, label, column, frame
        self.levels = ("different", "same")
        self.tf_level = 1

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        tf = np.zeros(n, dtype=np.int32)
        if self.frame == "sites":
            f = p.sites.drop_duplicates("pos")  # one domain per record is enough here
            vals = np.full(len(p), None, dtype=object)
            vals[f["pos"].to_numpy()] = f["domain"].to_numpy()
        elif self.column in p.records.columns:
            vals = p.records[self.column].to_numpy(dtype=object)
        else:
            return Levels(level, tf)
        present = pd.notna(vals)
        both = present[a] & present[b]
        level[both] = 0
        exact = both & (vals[a] == vals[b])
        level[exact] = 1
        counts = pd.Series(vals[present]).value_counts()
        idx = np.flatnonzero(exact)
        tf[idx] = counts.reindex(vals[a][idx]).to_numpy()
        return Levels(level, tf, np.where(exact, vals[a], None))


def comparisons_for(p: Prepared) -> list[Comparison]:
    """The comparisons that apply to the roles this table holds."""
    out: list[Comparison] = []
    cols = p.records.columns
    if p.has_person:
        out += [
            SurnameComparison(),
            FirstNameComparison(),
            MiddleNameComparison(),
        ]
    if p.has_company:
        out.append(StringComparison("company", "company", "company title", bands=(80.0, 92.0),
                                    scorer=fuzz.token_sort_ratio, band_words=("similar", "nearly the same"),
                                    exact_word="same without legal form", tf=True))
    if len(p.phones) or "phone" in p.roles:
        out.append(MultiValueComparison("phone", "phone"))
    if len(p.emails) or "email" in p.roles:
        out.append(MultiValueComparison("email", "email"))
    if "birthdate" in cols:
        out.append(DateComparison())
    if "tax_id" in cols:
        out.append(ExactComparison("tax_id", "tax id", column="tax_id"))
    if len(p.sites):
        out.append(ExactComparison("website", "website", frame="sites"))
    for role, label in (("city", "city"), ("postcode", "postcode"), ("address", "address")):
        if role in cols:
            out.append(StringComparison(role, role, label, bands=(0.85,) if role != "postcode" else (0.99,), tf=True))
    for col in cols:
        if str(col).startswith("text:"):
            out.append(StringComparison(col, col, col[5:], bands=(0.9,), tf=True))
    return out


@dataclass
class ComparisonVectors:
    """Levels (pairs x comparisons, int8, -1 = null) with term frequencies and shown values."""

    comparisons: list[Comparison]
    levels: np.ndarray
    tf: np.ndarray  # int32, same shape
    shown: dict[str, np.ndarray]  # comparison name -> shared value per pair (phones, emails, ids)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.comparisons]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.levels, columns=self.names)


def compare(p: Prepared, a: np.ndarray, b: np.ndarray, comparisons: list[Comparison] | None = None) -> ComparisonVectors:
    comparisons = comparisons if comparisons is not None else comparisons_for(p)
    n = len(a)
    levels = np.empty((n, len(comparisons)), dtype=np.int8)
    tf = np.zeros((n, len(comparisons)), dtype=np.int32)
    shown = {}
    for j, c in enumerate(comparisons):
        res = c.compute(p, np.asarray(a), np.asarray(b))
        levels[:, j], tf[:, j] = res.level, res.tf
        if res.value is not None:
            shown[c.name] = res.value
    _swapped_names(p, np.asarray(a), np.asarray(b), comparisons, levels, tf)
    return ComparisonVectors(comparisons, levels, tf, shown)


NAME_COLUMNS = {"first_raw": "last", "first": "last", "first_sound": "last_sound"}


def _swapped_names(p: Prepared, a: np.ndarray, b: np.ndarray, comparisons, levels, tf) -> None:
    """Where one record has first and last name in each other's fields (Кэтлин / Росс against
    Ross / Kathleen) and the parser could not tell, compare the names crosswise and keep the better."""
    names = [j for j, c in enumerate(comparisons) if c.name in ("first_name", "last_name")]
    if len(names) < 2 or "first_sound" not in p.records.columns or len(a) == 0:
        return
    fs = p.records["first_sound"].fillna("").to_numpy(dtype=object)
    ls = p.records["last_sound"].fillna("").to_numpy(dtype=object)
    # one name matching crosswise is enough to try: the other may carry a typo
    sw = (fs[a] != "") & (ls[a] != "") & (fs[b] != "") & (ls[b] != "") & (ls[a] != ls[b]) & \
        ((ls[a] == fs[b]) | (fs[a] == ls[b]))
    idx = np.flatnonzero(sw)
    if not len(idx):
        return
    cols = ["first", "first_raw", "first_sound", "last", "last_sound"]
    left = p.records.iloc[a[idx]][cols].reset_index(drop=True)
    right = p.records.iloc[b[idx]][cols].reset_index(drop=True)
    right = right.assign(first=right["last"], first_raw=right["last"], first_sound=right["last_sound"],
                         last=right["first_raw"], last_sound=right["first_sound"])
    empty = pd.DataFrame({"pos": np.empty(0, np.int64)})
    small = Prepared(p.entity_type, pd.concat([left, right], ignore_index=True), empty, empty, empty, set(p.roles))
    na = np.arange(len(idx))
    crossed = np.stack([comparisons[j].compute(small, na, na + len(idx)).level for j in names], axis=1)
    better = crossed.sum(axis=1) > levels[np.ix_(idx, names)].sum(axis=1)
    rows = idx[better]
    for k, j in enumerate(names):
        levels[rows, j] = crossed[better, k]
        tf[rows, j] = 0  # value frequencies of the crossed fields are not comparable


def describe_pair(cv: ComparisonVectors, i: int, only_evidence: bool = True) -> list[str]:
    """The words for pair ``i``: "phone +74951234567 same number", "surname same"."""
    out = []
    for j, c in enumerate(cv.comparisons):
        lv = int(cv.levels[i, j])
        if only_evidence and lv == NULL:
            continue
        value = cv.shown.get(c.name)
        out.append(c.describe(lv, None if value is None else value[i]))
    return out
