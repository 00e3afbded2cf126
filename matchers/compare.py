"""Comparisons: for each candidate pair, a graded level per comparison, and the words that explain it.

Every comparison is a small class on one base: ``levels`` names the agreement levels from the
weakest (0, "different") up to the strongest; ``NULL`` (-1) means a side has no value, which counts
as neither evidence for nor against. ``compute(p, a, b)`` is vectorised over arrays of record
positions and returns the level of each pair plus, for term-frequency adjustment, how many records
hold the value that matched exactly (0 where not an exact match).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

from matchers.prepare import _CACHE_LOCK, _SOUND_RULES, Prepared

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


SMALL_KEY_SPACE = 1 << 22


def distinct_pairs(ca: np.ndarray, cb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct unordered pairs of codes (below ``size``) among (ca, cb): (x, y) with x <= y, and
    for each input pair the index of its distinct pair. Sort-based: on large arrays that is much
    faster here than hashing."""
    lo, hi = np.minimum(ca, cb).astype(np.int64), np.maximum(ca, cb).astype(np.int64)
    key = lo * max(size, 1) + hi
    if size * size <= SMALL_KEY_SPACE:  # few values (patronymics): a lookup table, no sort
        present = np.flatnonzero(np.bincount(key, minlength=1))
        lookup = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        return present // max(size, 1), present % max(size, 1), lookup[key]
    order = np.argsort(key)
    sorted_key = key[order]
    new = np.empty(len(key), dtype=bool)
    new[:1] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
    ukey = sorted_key[new]
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ukey // max(size, 1), ukey % max(size, 1), inverse


def _code_similarity(ca: np.ndarray, cb: np.ndarray, uniques: np.ndarray, scorer) -> np.ndarray:
    """Similarity of the values behind two code arrays, computed once per distinct pair of values
    (the scorers used are symmetric, so (x, y) and (y, x) count once)."""
    if len(ca) == 0:
        return np.empty(0, dtype=np.float32)
    x, y, inverse = distinct_pairs(ca, cb, len(uniques))
    return np.asarray(_similarity(uniques[x], uniques[y], scorer))[inverse]


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


class CompanyTitleComparison(StringComparison):
    """Company title (its key without legal form and quotes): token-sort bands. Two titles whose numbers
    differ are two companies however alike the rest (Филиал №1 / Филиал №2, Василёк-1 / Василёк-2,
    Аптека 1 / Аптека 11: branches and outlets of one chain), and so are two whose single letters differ:
    a sole trader's initials (ИП Сидоров О.П. / ИП Сидоров А.П.), a letter after the name (Ромашка-М /
    Ромашка-К); with initials, the male and the female surname are two people (Сидоров / Сидорова)."""

    def __init__(self):
        super().__init__("company", "company", "company title", bands=(80.0, 92.0), scorer=fuzz.token_sort_ratio,
                         band_words=("similar", "nearly the same"), exact_word="same without legal form", tf=True)

    def compute(self, p, a, b):
        out = super().compute(p, a, b)
        if self.column not in p.records.columns:
            return out
        codes, uniques = p.codes(self.column)
        ca, cb = codes[a], codes[b]  # (code -1, no title: the marks' last entry, none)
        differ = np.zeros(len(a), dtype=bool)
        for marks in _title_marks(p, uniques):
            ma, mb = marks[ca], marks[cb]
            differ |= (ma >= 0) & (mb >= 0) & (ma != mb)
        out.level[(out.level > 0) & differ] = 0
        return out


_NUMBER = re.compile(r"\d+")
_LETTER = re.compile(r"(?<!\S)[a-z](?!\S)")


def _title_marks(p: Prepared, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct title key, codes (-1: none; one more entry, -1, for code -1) of the numbers it holds, of its
    single letters, and of the gender of its first word where it has single letters (initials: a person);
    made once per table."""
    with _CACHE_LOCK:
        cached = p.__dict__.get("_title_marks")
        if cached is None:
            numbers, letters, genders = [], [], []
            for key in uniques:
                numbers.append(" ".join(_NUMBER.findall(key)) or None)
                found = _LETTER.findall(key)
                letters.append(" ".join(found) or None)
                first = key.split(" ", 1)[0]
                genders.append(("f" if first.endswith("a") else "m") if found and len(first) > 3 else None)
            cached = p.__dict__["_title_marks"] = tuple(
                pd.factorize(np.array(values + [None], dtype=object))[0].astype(np.int64)
                for values in (numbers, letters, genders))
        return cached


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
        is_initial = np.array([_is_initial(x) for x in raw_u] + [False], dtype=bool)
        initial_only = both & (is_initial[ra] | is_initial[rb])
        idx = np.flatnonzero(initial_only)
        level[idx[_initial_agrees(ra[idx], rb[idx], raw_u, is_initial)]] = 1
        full = both & ~initial_only
        if "first_sound" in p.records.columns:
            sound, _ = p.codes("first_sound")
            sa = sound[a]
            level[full & (sa >= 0) & (sa == sound[b])] = 2
        facts = _person_facts(p)
        if facts is not None:
            # an English name written in Cyrillic by ear (Эбигейл / Abigail, Эндрю / Andrew)
            loose = facts.first_loose
            level[full & (level < 2) & facts.cross_script(a, b) & (loose[a] >= 0) & (loose[a] == loose[b])] = 2
        rest = np.flatnonzero(full & (ra != rb))
        x, y, inverse = distinct_pairs(ra[rest], rb[rest], len(raw_u))
        jw = np.asarray(_similarity(raw_u[x], raw_u[y], JaroWinkler.normalized_similarity))
        typo = np.asarray(_similarity(raw_u[x], raw_u[y], OSA.distance))
        # names in Latin letters (or one in each script): measured on the key's letters, where ц, ш,
        # ж, ч, я, ю are one letter again (Iritsa / Irina, as Ирица / Ирина) and spelling variants
        # (x/ks, y/i/j, ya/ia) are none; two common names are two names (Maria / Marina, Masha / Dasha)
        key_similar, key_two, key_near = _key_typos(x, y, raw_u, jw, typo)
        similar, two = key_similar[inverse], key_two[inverse]
        if facts is not None:
            # but a Latin and a Cyrillic record may be one person's Russian and English name
            # (Тимофей / Timothy, Алиса / Alice): no two-names rule across scripts
            across = facts.cross_script(a[rest], b[rest])
            similar[across], two[across] = key_near[inverse[across]], False
            # two names typed in Cyrillic: measured on their letters (Ирина / Ирица), not on keys
            # where ц, ш, ж, ч, я, ю are two letters (irina / iritsa: two edits); two common names
            # are two names, even where they sound alike (Лена / Лина)
            cyr, cyr_similar, two_names = _cyrillic_typos(p, facts, a[rest], b[rest])
            similar[cyr] = cyr_similar
            two[cyr] = two_names
        level[rest[two]] = 0
        level[rest[similar]] = 3
        nick = _nickname_match(x, y, raw_u)
        level[rest[nick[inverse]]] = 4
        # a nickname behind a typo (Влдимир / Вова) or across scripts (Эндрю / Andy: Andrew's loose
        # key is Эндрю's): similar, not "different" (which would keep the two apart)
        unsure = np.flatnonzero(np.bincount(inverse[~similar], minlength=len(x)).astype(bool) & ~nick)
        if len(unsure) and facts is not None:
            mended, loose_meet = np.zeros(len(x), bool), np.zeros(len(x), bool)
            mended[unsure], loose_meet[unsure] = _far_variants_match(x[unsure], y[unsure], raw_u)
            far = mended[inverse] | (loose_meet[inverse] & facts.cross_script(a[rest], b[rest]))
            level[rest[far & (level[rest] == 0)]] = 3
        if facts is not None:
            # an English name in Cyrillic read as its Latin spelling (Уолтер / Walter, Джим / James)
            low = rest[level[rest] < 2]
            level[low[_english_reading_meets(p, facts, a[low], b[low], ra[low], rb[low], raw_u)]] = 2
        exact = full & (ra == rb)
        level[exact] = 5
        counts = np.bincount(raw[raw >= 0], minlength=len(raw_u))
        tf[exact] = counts[ra[exact]]
        if facts is not None:
            # a man and a woman (Валерий / Валерия, Петров Саша / Петрова Саша) are two people
            ga, gb, _ = facts.pair_genders(a, b)
            other = (ga > 0) & (gb > 0) & (ga != gb) & both
            level[other] = 0
            tf[other] = 0
        return Levels(level, tf)


def _is_initial(key: str) -> bool:
    from matchers.names import INITIAL_KEYS

    return len(key) == 1 or key in INITIAL_KEYS


def _initial_agrees(ca: np.ndarray, cb: np.ndarray, uniques: np.ndarray, is_initial: np.ndarray) -> np.ndarray:
    """For pairs of codes where a side is only an initial: whether the other starts with it (Ю. ->
    "iu" agrees with Юрий "iurii", not with Иван "ivan"; two initials agree when equal)."""
    out = np.zeros(len(ca), dtype=bool)
    if not len(ca):
        return out
    x, y, inverse = distinct_pairs(ca, cb, len(uniques))
    agree = np.fromiter((_starts_alike(uniques[i], uniques[j], is_initial[i], is_initial[j])
                         for i, j in zip(x.tolist(), y.tolist())), dtype=bool, count=len(x))
    return agree[inverse]


def _starts_alike(x: str, y: str, x_initial: bool, y_initial: bool) -> bool:
    if x_initial and y_initial:
        return x == y
    short, long_ = (x, y) if x_initial else (y, x)
    return long_.startswith(short)


def _nickname_match(x: np.ndarray, y: np.ndarray, uniques: np.ndarray) -> np.ndarray:
    """Whether the full names two first names may stand for meet, for distinct pairs of codes."""
    from matchers.names import canonical_first_name, name_variants

    if len(x) == 0:
        return np.zeros(0, bool)
    cache: dict[int, frozenset] = {}

    def variants(code: int) -> frozenset:
        if code not in cache:
            key = uniques[code]
            cache[code] = frozenset(name_variants(key)) | {key, canonical_first_name(key)}
        return cache[code]

    return np.fromiter((not variants(i).isdisjoint(variants(j)) for i, j in zip(x.tolist(), y.tolist())),
                       dtype=bool, count=len(x))


def _far_variants_match(x: np.ndarray, y: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For distinct pairs of first-name codes no nearer rule joined: whether one name, mended of one
    typo into the one known name it is that near (known_first_name_near), may stand for a full name
    the other may (Влдимир -> Владимир / Вова); and whether one name's loose key is that of a full
    name the other may stand for (Эндрю / Andy, Andrew's), a sign only for a pair written in two
    scripts. One step each: never a typo and a nickname on both sides, nor a loose key of a nickname."""
    from matchers.names import canonical_first_name, known_first_name_near, name_variants

    cache: dict[int, tuple[frozenset, frozenset, str, str]] = {}

    def names_of(key: str) -> frozenset:
        return frozenset({key, canonical_first_name(key), *name_variants(key)}) if key else frozenset()

    def facts(code: int) -> tuple[frozenset, frozenset, frozenset, str]:
        if code not in cache:
            key = uniques[code]
            names = names_of(key)
            loose = frozenset(k for k in map(loose_key, names) if len(k) >= 2 and len(k.replace("a", "")) >= 2)
            own = loose_key(key)
            cache[code] = names, names_of(known_first_name_near(key)), loose, own
        return cache[code]

    mended, loose = np.zeros(len(x), bool), np.zeros(len(x), bool)
    for k, (i, j) in enumerate(zip(x.tolist(), y.tolist())):
        (na, ma, la, oa), (nb, mb, lb, ob) = facts(i), facts(j)
        mended[k] = not ma.isdisjoint(nb) or not mb.isdisjoint(na)
        loose[k] = oa in lb or ob in la
    return mended, loose


def _cyrillic_typos(p: Prepared, facts: "_PersonFacts", a: np.ndarray, b: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For pairs of records (positions ``a``, ``b``): the pairs whose first names are both typed in
    Cyrillic, whether those are one typo apart or Jaro-Winkler close on their letters, and whether
    they are two common names (is_common_first_name) - then they are two names, not a typo (Маша /
    Паша, Инна / Нина, Валентин / Валерий; Лена / Лина, which sound alike), unless the nickname
    tables join them. In a name of three letters one letter is a third of it (Оля / Юля, Яна / Аня):
    a typo counts there only between a common name and one that is none (Яна / Яза)."""
    codes, texts, common, _reading = _cyrillic_first_names(p, facts)
    ca, cb = codes[a], codes[b]
    idx = np.flatnonzero((ca >= 0) & (cb >= 0))
    x, y, inverse = distinct_pairs(ca[idx], cb[idx], len(texts))
    jw = np.asarray(_similarity(texts[x], texts[y], JaroWinkler.normalized_similarity))
    typo = np.asarray(_similarity(texts[x], texts[y], OSA.distance))
    length = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    short = np.minimum(length[x], length[y]) < 4
    two_names = common[x] & common[y] & (x != y)
    similar = np.where(short, (typo <= 1) & (common[x] != common[y]), (jw >= 0.88) | (typo <= 1)) & ~two_names
    return idx, similar[inverse], two_names[inverse]


def _key_typos(x: np.ndarray, y: np.ndarray, keys: np.ndarray, jw: np.ndarray, typo: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For distinct pairs of different first-name keys (codes ``x``, ``y`` into ``keys``; ``jw`` and
    ``typo`` measured on the keys): whether they are one typo apart or Jaro-Winkler close, the typo
    also counted on names.typo_letters (iriцa / irina: one; Jaro-Winkler stays on the keys), and
    whether they are two common names (is_common_first_name: Maria / Marina, Anna / Alla, Elena /
    Alena), which are two names, as in _cyrillic_typos. A name of three letters or fewer (so
    counted) takes a typo only between a common name and one that is none (Oleg / Olg, Yana / Yaza).
    Third: whether they are near without these two rules (one typo, or Jaro-Winkler close)."""
    from matchers.names import is_common_first_name, typo_letters

    if not len(x):
        return np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool)
    codes, at = np.unique(np.concatenate([x, y]), return_inverse=True)
    letters = np.array([typo_letters(k) for k in keys[codes]], dtype=object)
    common = np.array([is_common_first_name(k) for k in keys[codes]], dtype=bool)
    length = np.fromiter(map(len, letters), dtype=np.int64, count=len(letters))
    lx, ly = at[: len(x)], at[len(x):]
    typo = np.minimum(typo, np.asarray(_similarity(letters[lx], letters[ly], OSA.distance)))
    short = np.minimum(length[lx], length[ly]) < 4
    # s and z are one letter in Latin spellings of one name (Лиза: Liza, Lisa; Роза: Roza, Rosa)
    folded = np.array([_S_FOR_Z.sub("s", k) for k in keys[codes]], dtype=object)
    two_names = common[lx] & common[ly] & (folded[lx] != folded[ly])
    near = (jw >= 0.88) | ((typo <= 1) & ~short)
    similar = np.where(short, (typo <= 1) & (common[lx] != common[ly]), near) & ~two_names
    return similar, two_names, near


_S_FOR_Z = re.compile(r"z(?!h)")


def _english_reading_meets(p: Prepared, facts: "_PersonFacts", a: np.ndarray, b: np.ndarray, ka: np.ndarray,
                            kb: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For pairs of a Latin and a Cyrillic record (others: False): whether the Cyrillic first name,
    read as an English one (names.english_readings), is the Latin one or may stand for a full name it
    may (Джим / James, Майк / Michael). ``ka``, ``kb``: first_raw codes into ``keys``."""
    from matchers.names import canonical_first_name, name_variants

    codes, texts, _common, reading = _cyrillic_first_names(p, facts)
    ca, cb = codes[a], codes[b]
    cross = facts.cross_script(a, b)
    on_a, on_b = cross & (ca >= 0) & (cb < 0), cross & (cb >= 0) & (ca < 0)
    has_reading = np.fromiter(map(bool, reading), dtype=bool, count=len(reading))
    idx = np.flatnonzero((on_a | on_b) & has_reading[np.maximum(ca, cb)])
    out = np.zeros(len(a), dtype=bool)
    if not len(idx):
        return out
    cyr = np.where(on_a, ca, cb)[idx]
    other = np.where(on_a, kb, ka)[idx]
    pair, uniq = pd.factorize(cyr * (len(keys) + 1) + other)

    def names_of(key: str) -> frozenset:
        return frozenset({key, canonical_first_name(key), *name_variants(key)})

    meets = np.array([any(not names_of(r).isdisjoint(names_of(keys[c % (len(keys) + 1)]))
                          for r in reading[c // (len(keys) + 1)]) for c in uniq.tolist()], dtype=bool)
    out[idx] = meets[pair]
    return out


_CYRILLIC_WORDS = re.compile(r"[а-яё\u0450-\u045f\u0491 ]+")  # with Ukrainian and Belarusian letters


def _cyrillic_first_names(p: Prepared, facts: "_PersonFacts") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per record, its first name as typed (clean_text: lower case, ё as е) where that is Cyrillic: a
    code per record (-1 none); and per name, the name, whether it is a common first name and its
    english_readings (a frozenset, empty for none; one more entry, for code -1). Found among the
    words of the whole name; made once per table."""
    from matchers.names import english_readings, is_common_first_name, words_of_key

    with _CACHE_LOCK:
        if facts.first_cyrillic is not None:
            return facts.first_cyrillic
        fcodes, fu = p.codes("first_raw")
        n = len(p)
        if "full" in p.records.columns:
            ucodes, uf = p.codes("full")
        else:
            ucodes, uf = np.full(n, -1, dtype=np.int64), np.empty(0, dtype=object)
        pos = np.flatnonzero((fcodes >= 0) & (ucodes >= 0) & (facts.script != 2))  # 2: all Latin
        width = len(fu) + 1
        combo, uniq = pd.factorize(ucodes[pos] * width + fcodes[pos])
        names = []
        for c in uniq.tolist():
            text = words_of_key(uf[c // width], fu[c % width])
            names.append(text if text and _CYRILLIC_WORDS.fullmatch(text) else None)
        text_codes, texts = pd.factorize(np.array(names, dtype=object))
        codes = np.full(n, -1, dtype=np.int64)
        codes[pos] = text_codes[combo]
        texts = np.asarray(texts, dtype=object)
        common = np.array([is_common_first_name(t) for t in texts], dtype=bool)
        reading = np.empty(len(texts) + 1, dtype=object)  # [-1]: none
        reading[:] = [english_readings(t) for t in texts] + [frozenset()]
        facts.first_cyrillic = (codes, texts, common, reading)
        return facts.first_cyrillic


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
        tf = base.tf.copy()
        # the parent's bands are 1, 2 and exact 3: shift them up one to make room for "sounds alike"
        level[level >= 1] += 1
        if "last_sound" in p.records.columns:
            sound, _ = p.codes("last_sound")
            alike = (level == 0) & (sound[a] >= 0) & (sound[a] == sound[b])
            level[alike] = 1
        codes, uniques = p.codes(self.column)
        ca, cb = codes[a], codes[b]
        # "similar": a part of a double surname (Римская-Корсакова / Корсакова), or a letter dropped
        # between two equal ones (Боброва -> Бброва, whose key collapses the doubled letter to
        # "brova"; no more than similar, as the two keys are also those of Брова and Боброва)
        todo = np.flatnonzero((level >= 0) & (level < 2) & (ca != cb))
        near = _surname_near(ca[todo], cb[todo], uniques)
        level[todo[near]] = 2
        facts = _person_facts(p)
        if facts is not None:
            # Hall / Холл, Brown / Браун, Hayes / Хейз: English surnames written in Cyrillic by ear
            loose = facts.last_loose
            alike = (level == 0) & facts.cross_script(a, b) & (loose[a] >= 0) & (loose[a] == loose[b])
            level[alike] = 1
            # the male and the female form of one surname (Петров / Петрова) are a family's two
            # people, unless the first names say both are of one gender (a typo of the form)
            ga, gb, family = facts.pair_genders(a, b)
            other = family & (ga != gb)
            level[other] = 0
            tf[other] = 0
        return Levels(level, tf)


def _surname_near(ca: np.ndarray, cb: np.ndarray, uniques: np.ndarray) -> np.ndarray:
    """For pairs of different surname codes: a whole part of a double surname shared, or one letter
    dropped between two equal letters."""
    if not len(ca):
        return np.zeros(0, bool)
    lengths = np.array([len(x) for x in uniques], dtype=np.int64)
    multi = np.array([" " in x for x in uniques], dtype=bool)
    # only these can be either: a double surname, or lengths two apart
    maybe = np.flatnonzero(multi[ca] | multi[cb] | (np.abs(lengths[ca] - lengths[cb]) == 2))
    out = np.zeros(len(ca), dtype=bool)
    if not len(maybe):
        return out
    x, y, inverse = distinct_pairs(ca[maybe], cb[maybe], len(uniques))
    near = np.zeros(len(x), dtype=bool)
    for k, (i, j) in enumerate(zip(x.tolist(), y.tolist())):
        u, v = uniques[i], uniques[j]
        if " " in u or " " in v:
            near[k] = _shares_part(u, v)
        else:
            near[k] = _dropped_between_doubles(u, v) if len(u) < len(v) else _dropped_between_doubles(v, u)
    out[maybe] = near[inverse]
    return out


def _shares_part(u: str, v: str) -> bool:
    """A whole word of one surname is a word of the other (the parts of a double surname, as keys)."""
    return not {w for w in u.split() if len(w) >= 3}.isdisjoint(v.split())


def _dropped_between_doubles(short: str, long_: str) -> bool:
    """Whether ``short`` is ``long_`` with one letter deleted between two equal letters, which then
    collapsed into one in the key (bobrova -> bbrova -> brova)."""
    if len(short) < 4:
        return False
    for i in range(len(long_) - 2):
        if long_[i] == long_[i + 2] and long_[:i + 1] + long_[i + 3:] == short:
            return True
    return False


class MiddleNameComparison(Comparison):
    """Patronymic: missing on either side is no evidence; two different ones (a father and his son)
    are. An initial (Иванова А. В.) agrees with every patronymic it starts (Викторовна), as a first
    name's does; it is "different" only from one it does not start."""

    name, label = "middle_name", "patronymic"
    levels = ("different", "same initial", "similar", "same")

    def compute(self, p, a, b):
        base = StringComparison("middle_name", "middle", "patronymic", bands=(0.9,)).compute(p, a, b)
        level = base.level.copy()
        level[level >= 1] += 1  # similar 2, same 3
        if "middle" in p.records.columns:
            codes, uniques = p.codes("middle")
            is_initial = np.array([_is_initial(x) for x in uniques] + [False], dtype=bool)
            ca, cb = codes[a], codes[b]
            idx = np.flatnonzero((ca >= 0) & (cb >= 0) & (is_initial[ca] | is_initial[cb]))
            agree = _initial_agrees(ca[idx], cb[idx], uniques, is_initial)
            level[idx] = np.where(agree, 1, 0)
        return Levels(level, base.tf)


def loose_key(key: str) -> str:
    """A key for names written by ear in the other script, where vowels are read, not spelt: an
    English w after a vowel is part of the vowel (Brown / Браун, Andrew / Эндрю), then the sound
    key's consonants with every run of vowels as one "a" (Hall / Холл -> "al", Abigail / Эбигейл
    -> "abakal"). Compared only between a Latin and a Cyrillic record: within one script it would
    make Анна and Инна alike."""
    s = _LOOSE_W.sub("", key)
    for pattern, repl in _SOUND_RULES:
        s = pattern.sub(repl, s)
    return _VOWELS.sub("a", s)


_LOOSE_W = re.compile(r"(?<=[aeiou])v(?![aeiou])")
_VOWELS = re.compile(r"[aeiouy]+")


@dataclass
class _PersonFacts:
    """Per record, what comparing names across records needs beyond the columns: the gender its
    first name has (0 none, 1 m, 2 f), its surname's stem and gender form (-1 / 0 when it has none),
    the script of its name (0 mixed or none, 1 Cyrillic, 2 Latin) and loose keys (codes, -1 none)."""

    first_gender: np.ndarray
    stem: np.ndarray
    last_gender: np.ndarray
    script: np.ndarray
    first_loose: np.ndarray
    last_loose: np.ndarray
    first_cyrillic: tuple | None = None  # made when first asked for: _cyrillic_first_names

    def cross_script(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sa, sb = self.script[a], self.script[b]
        return (sa > 0) & (sb > 0) & (sa != sb)

    def pair_genders(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each side's gender (0 not known) and whether the surnames are the male and the female
        form of one (Петров / Петрова). The first name's gender counts first; where it has none
        (Саша, an initial), the surname's form when the two surnames are such a pair."""
        ga, gb = self.first_gender[a].copy(), self.first_gender[b].copy()
        sa = self.stem[a]
        la, lb = self.last_gender[a], self.last_gender[b]
        family = (sa >= 0) & (sa == self.stem[b]) & (la > 0) & (lb > 0) & (la != lb)
        ga = np.where(family & (ga == 0), la, ga)
        gb = np.where(family & (gb == 0), lb, gb)
        return ga, gb, family


_GENDER_CODE = {"": 0, "m": 1, "f": 2}


def _person_facts(p: Prepared) -> _PersonFacts | None:
    """The name facts of the prepared records, made once per table (per distinct value)."""
    cols = p.records.columns
    if "first_raw" not in cols or "last" not in cols:
        return None
    from matchers.names import first_name_gender, surname_gender_form

    with _CACHE_LOCK:
        cached = p.__dict__.get("_person_facts")
        if cached is not None:
            return cached
        fcodes, fu = p.codes("first_raw")
        lcodes, lu = p.codes("last")
        first_gender = np.array([_GENDER_CODE[first_name_gender(x)] for x in fu] + [0], dtype=np.int8)[fcodes]
        forms = [surname_gender_form(x) for x in lu]
        stem_codes, _ = pd.factorize(np.array([st or None for st, _ in forms] + [None], dtype=object))
        stem = stem_codes.astype(np.int64)[lcodes]
        last_gender = np.array([_GENDER_CODE[g] for _, g in forms] + [0], dtype=np.int8)[lcodes]
        if "full" in cols:
            ucodes, uf = p.codes("full")
            kinds = []
            for text in uf:
                cyr, lat = bool(_CYRILLIC.search(text)), bool(_LATIN.search(text))
                kinds.append(1 if cyr and not lat else 2 if lat and not cyr else 0)
            script = np.array(kinds + [0], dtype=np.int8)[ucodes]
        else:
            script = np.zeros(len(p), dtype=np.int8)

        def loose(codes: np.ndarray, uniques: np.ndarray, min_consonants: int) -> np.ndarray:
            keys = []
            for x in uniques:
                k = loose_key(x)
                keys.append(k if len(k) >= 2 and len(k.replace("a", "")) >= min_consonants else None)
            out, _ = pd.factorize(np.array(keys + [None], dtype=object))
            return out.astype(np.int64)[codes]

        # a first name of one consonant is too little to tell (Анна / Инна, Ann / Ян)
        facts = _PersonFacts(first_gender, stem, last_gender, script, loose(fcodes, fu, 2), loose(lcodes, lu, 1))
        p.__dict__["_person_facts"] = facts
        return facts


_CYRILLIC = re.compile(r"[а-яё]")
_LATIN = re.compile(r"[a-z]")


class MultiValueComparison(Comparison):
    """Phones or emails: records may hold several; the best level over all value pairs counts."""

    def __init__(self, name: str, label: str):
        self.name, self.label = name, label
        if name == "phone":
            self.levels = ("different", "same last 7 digits", "same number")
        else:
            self.levels = ("different", "similar name part", "same name at another domain", "same address")
        self.tf_level = len(self.levels) - 1

    def _slots(self, p: Prepared) -> "_Slots | None":
        """The values as a records x slots matrix of codes, cached on the prepared records."""
        cache = p.__dict__.setdefault("_slots", {})
        if self.name not in cache:
            if self.name == "phone":
                frame, column = "phones", "e164"
                part_of = lambda v, nat: (nat or "")[-7:]  # noqa: E731
                extra = p.phones["national"].to_numpy(dtype=object)
            else:
                frame, column = "emails", "canonical"
                part_of = lambda v, _: v.split("@")[0]  # noqa: E731
                extra = None
            codes, values = p.frame_codes(frame, column)
            slots = _Slots.build(len(p), getattr(p, frame)["pos"].to_numpy(np.int64), codes, values,
                                 extra, part_of, 7 if self.name == "phone" else 4)
            if slots is not None and self.name == "phone":
                # only e-mail names are compared as text (compute): a million last-7-digit strings can go
                slots.parts = np.empty(0, dtype=object)
            cache[self.name] = slots
        return cache[self.name]

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        tf = np.zeros(n, dtype=np.int32)
        shown = np.full(n, None, dtype=object)
        sl = self._slots(p)
        if sl is None:
            return Levels(level, tf, shown)
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        ka, kb = sl.count[a], sl.count[b]
        level[(ka > 0) & (kb > 0)] = 0
        hits: list[tuple] = []  # (pair rows, value codes) sharing a value
        differ: list[tuple] = []  # (pair rows, a's part codes, b's part codes) of differing values
        # every slot of a against every slot of b; slot 0 over all pairs at once (-1: no value)
        for i in range(sl.width):
            rows_i = None if i == 0 else np.flatnonzero(ka > i)
            if rows_i is not None and not len(rows_i):
                break
            xa = sl.packed[i][a] if rows_i is None else sl.packed[i][a[rows_i]]
            for j in range(sl.width):
                if rows_i is None and j == 0:
                    rows, x, y = None, xa, sl.packed[0][b]
                else:
                    base_k = kb if rows_i is None else kb[rows_i]
                    sub = np.flatnonzero(base_k > j)
                    if not len(sub):
                        break
                    rows = sub if rows_i is None else rows_i[sub]
                    x, y = xa[sub], sl.packed[j][b[rows]]
                ok = (x >= 0) & (y >= 0)
                # same comparable part (last 7 digits, e-mail name), long enough to count
                near = np.flatnonzero(ok & (((x ^ y) & _LOW) == 0))
                same = near[x[near] == y[near]]
                near = near[sl.part_ok[x[near] & _LOW]]
                at = near if rows is None else rows[near]
                level[at] = np.maximum(level[at], self.tf_level - 1)
                if len(same):
                    hits.append((same if rows is None else rows[same], x[same] >> 32))
                if self.name == "email":
                    d = np.flatnonzero(ok & ((x >> 32) != (y >> 32)))
                    differ.append((d if rows is None else rows[d], x[d] & _LOW, y[d] & _LOW))
        if differ:
            # a close name part (a's long enough) where nothing stronger holds: the weakest level
            rows = np.concatenate([r for r, _, _ in differ])
            px = np.concatenate([q for _, q, _ in differ])
            py = np.concatenate([q for _, _, q in differ])
            todo = np.flatnonzero((level[rows] < 1) & (sl.part_len[px] >= 4))
            sim = _code_similarity(px[todo], py[todo], sl.parts, JaroWinkler.normalized_similarity)
            level[rows[todo[sim >= 0.92]]] = 1
        if hits:
            rows = np.concatenate([r for r, _ in hits])
            values = np.concatenate([v for _, v in hits])
            order = np.arange(len(rows))
            # of several shared values, the rarest is the strongest evidence (the first found on a tie)
            pick = np.lexsort((order, sl.tf[values], rows))
            rows, values = rows[pick], values[pick]
            first = np.r_[True, rows[1:] != rows[:-1]]
            rows, values = rows[first], values[first]
            level[rows] = self.tf_level
            tf[rows] = sl.tf[values]
            shown[rows] = sl.values[values]
        return Levels(level, tf, shown)


_LOW = (1 << 32) - 1


@dataclass
class _Slots:
    """Multi-value roles per slot: ``packed[k][pos]`` holds the code of the record's k-th value (in
    the order of the prepared frame) and the code of its comparable part (last 7 digits, e-mail
    name) in one integer; ``count`` is how many values each record has."""

    width: int
    count: np.ndarray
    packed: list[np.ndarray]  # per slot, per record: value code << 32 | part code, -1 when empty
    values: np.ndarray  # value code -> text
    tf: np.ndarray  # value code -> records holding it
    parts: np.ndarray  # part code -> text
    part_len: np.ndarray
    part_ok: np.ndarray  # part long enough to count as "same part"

    @classmethod
    def build(cls, n: int, pos: np.ndarray, codes: np.ndarray, values: np.ndarray, extra, part_of,
              min_part: int) -> "_Slots | None":
        if len(pos) == 0:
            return None
        first = np.zeros(len(values), dtype=np.int64)  # a row holding each value
        first[codes[::-1]] = np.arange(len(codes))[::-1]
        extra_of = extra[first] if extra is not None else [None] * len(values)
        pcodes, parts = pd.factorize(np.asarray([part_of(v, e) for v, e in zip(values, extra_of)], dtype=object))
        parts = np.asarray(parts, dtype=object)
        part_len = np.array([len(x) for x in parts], dtype=np.int64)
        order = np.argsort(pos, kind="stable")
        spos, scodes = pos[order], codes[order]
        count = np.bincount(spos, minlength=n)
        starts = np.r_[0, np.cumsum(count)[:-1]]
        slot = np.arange(len(spos)) - starts[spos]
        width = int(count.max())
        packed = []
        for k in range(width):
            col = np.full(n, -1, dtype=np.int64)
            at = slot == k
            col[spos[at]] = (scodes[at].astype(np.int64) << 32) | pcodes[scodes[at]]
            packed.append(col)
        return cls(width, count, packed, values, np.bincount(codes, minlength=len(values)), parts,
                   part_len, part_len >= min_part)


class DateComparison(Comparison):
    name, label = "birthdate", "birthdate"
    levels = ("different", "same year", "one digit apart", "day and month swapped", "same")

    def __init__(self, column: str = "birthdate"):
        self.column = column

    def _digits(self, p: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """Per record: whether it has a date, and YYYYMMDD as one number (0 when missing); made once
        per prepared table (a million records' dates cost ~0.2 s, and pairs come in chunks)."""
        cache = p.__dict__.setdefault("_dates", {})
        if self.column not in cache:
            d = pd.to_datetime(p.records[self.column])
            ok = d.notna().to_numpy()
            digits = np.where(ok, d.dt.year.fillna(0).to_numpy() * 10000 + d.dt.month.fillna(0).to_numpy() * 100
                              + d.dt.day.fillna(0).to_numpy(), 0).astype(np.int64)
            cache[self.column] = (ok, digits)
        return cache[self.column]

    def compute(self, p, a, b):
        n = len(a)
        level = np.full(n, NULL, dtype=np.int8)
        if self.column not in p.records.columns:
            return Levels(level, np.zeros(n, np.int32))
        ok, digits = self._digits(p)
        idx = np.flatnonzero(ok[a] & ok[b])
        ga, gb = digits[a[idx]], digits[b[idx]]
        ya, yb, ma, mb, da, db = ga // 10000, gb // 10000, ga // 100 % 100, gb // 100 % 100, ga % 100, gb % 100
        lv = np.zeros(len(idx), dtype=np.int8)
        same_year = ya == yb
        lv[same_year] = 1
        rest = np.flatnonzero(ga != gb)
        lv[rest[_one_edit_apart(ga[rest], gb[rest])]] = 2
        lv[same_year & (ma == db) & (da == mb)] = 3
        lv[same_year & (ma == mb) & (da == db)] = 4
        level[idx] = lv
        return Levels(level, np.zeros(n, np.int32))


def _one_edit_apart(x: np.ndarray, y: np.ndarray, width: int = 8) -> np.ndarray:
    """Whether two different numbers, written with ``width`` digits (dates as YYYYMMDD), are one
    edit apart in the sense of rapidfuzz's OSA distance: strings of equal length are, exactly when
    one digit differs or two neighbouring digits are swapped."""
    dx = np.stack([(x // 10 ** (width - 1 - k)) % 10 for k in range(width)], axis=1)
    dy = np.stack([(y // 10 ** (width - 1 - k)) % 10 for k in range(width)], axis=1)
    diff = dx != dy
    count = diff.sum(axis=1)
    swapped = np.zeros(len(x), dtype=bool)
    for k in range(width - 1):
        swapped |= diff[:, k] & diff[:, k + 1] & (dx[:, k] == dy[:, k + 1]) & (dx[:, k + 1] == dy[:, k])
    return (count == 1) | ((count == 2) & swapped)


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
            fcodes, uniques = pd.factorize(f["domain"].to_numpy(dtype=object))
            codes = np.full(len(p), -1, dtype=np.int64)
            codes[f["pos"].to_numpy()] = fcodes
            uniques = np.asarray(uniques, dtype=object)
        elif self.column in p.records.columns:
            codes, uniques = p.codes(self.column)
        else:
            return Levels(level, tf)
        ca, cb = codes[a], codes[b]
        both = (ca >= 0) & (cb >= 0)
        level[both] = 0
        exact = both & (ca == cb)
        level[exact] = 1
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        idx = np.flatnonzero(exact)
        tf[idx] = counts[ca[idx]]
        shown = np.full(n, None, dtype=object)
        shown[idx] = uniques[ca[idx]]
        return Levels(level, tf, shown)


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
        out.append(CompanyTitleComparison())
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
    tf: np.ndarray  # uint16 (int32 when a count does not fit), same shape
    shown: dict[str, np.ndarray]  # comparison name -> shared value per pair (phones, emails, ids)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.comparisons]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.levels, columns=self.names)


COMPARE_CHUNK = 1_000_000  # pairs compared at once: bounds the temporary arrays of a large table
COMPARE_THREADS = min(os.cpu_count() or 1, 2)


def compare(p: Prepared, a: np.ndarray, b: np.ndarray, comparisons: list[Comparison] | None = None) -> ComparisonVectors:
    comparisons = comparisons if comparisons is not None else comparisons_for(p)
    a, b = np.asarray(a), np.asarray(b)
    n = len(a)
    levels = np.empty((n, len(comparisons)), dtype=np.int8)
    # counts of records holding a value: 16 bits while they fit (half the memory), else 32
    tf = np.zeros((n, len(comparisons)), dtype=np.uint16)
    shown: dict[str, np.ndarray] = {}
    # the comparisons of a chunk run side by side in threads: most of their work is numpy and
    # rapidfuzz, which let go of the GIL; each result is independent of the others
    pool = ThreadPoolExecutor(max_workers=COMPARE_THREADS) if n >= 100_000 and COMPARE_THREADS > 1 else None
    try:
        for start in range(0, max(n, 1), COMPARE_CHUNK):
            part = slice(start, start + COMPARE_CHUNK)
            pa, pb = a[part], b[part]
            if pool is not None:
                results = list(pool.map(lambda c: c.compute(p, pa, pb), comparisons))
            else:
                results = [c.compute(p, pa, pb) for c in comparisons]
            for j, (c, res) in enumerate(zip(comparisons, results)):
                if tf.dtype == np.uint16 and len(res.tf) and int(res.tf.max()) > np.iinfo(np.uint16).max:
                    tf = tf.astype(np.int32)
                levels[part, j], tf[part, j] = res.level, res.tf
                if res.value is not None:
                    if c.name not in shown:
                        shown[c.name] = np.full(n, None, dtype=object)
                    shown[c.name][part] = res.value
            del results
            _swapped_names(p, pa, pb, comparisons, levels[part], tf[part])
    finally:
        if pool is not None:
            pool.shutdown()
    return ComparisonVectors(comparisons, levels, tf, shown)


NAME_COLUMNS = {"first_raw": "last", "first": "last", "first_sound": "last_sound"}


def _swapped_names(p: Prepared, a: np.ndarray, b: np.ndarray, comparisons, levels, tf) -> None:
    """Where one record has first and last name in each other's fields (Кэтлин / Росс against
    Ross / Kathleen) and the parser could not tell, compare the names crosswise and keep the better."""
    names = [j for j, c in enumerate(comparisons) if c.name in ("first_name", "last_name")]
    if len(names) < 2 or "first_sound" not in p.records.columns or len(a) == 0:
        return
    # both sound keys numbered in one alphabet, so a first name can meet a surname (-1: empty)
    fcodes, fu = p.codes("first_sound")
    lcodes, lu = p.codes("last_sound")
    joint, _ = pd.factorize(np.concatenate([fu, lu]).astype(object))
    joint = joint.astype(np.int64)
    fs = np.append(joint[: len(fu)], -1)[fcodes]  # code -1 (empty) stays -1
    ls = np.append(joint[len(fu):], -1)[lcodes]
    fa, fb, la, lb = fs[a], fs[b], ls[a], ls[b]
    # one name matching crosswise is enough to try: the other may carry a typo
    sw = (fa >= 0) & (la >= 0) & (fb >= 0) & (lb >= 0) & (la != lb) & ((la == fb) | (fa == lb))
    idx = np.flatnonzero(sw)
    if not len(idx):
        return
    cols = ["first", "first_raw", "first_sound", "last", "last_sound"]
    left = p.records.iloc[a[idx]][cols].reset_index(drop=True)
    right = p.records.iloc[b[idx]][cols].reset_index(drop=True)
    # either record may be the one with swapped fields: try both, so that compare(a, b) == compare(b, a)
    frame = pd.concat([left, _swap_fields(right), _swap_fields(left), right], ignore_index=True)
    empty = pd.DataFrame({"pos": np.empty(0, np.int64)})
    small = Prepared(p.entity_type, frame, empty, empty, empty, set(p.roles))
    m = len(idx)
    na = np.arange(m)
    one = np.stack([comparisons[j].compute(small, na, na + m).level for j in names], axis=1)
    two = np.stack([comparisons[j].compute(small, na + 2 * m, na + 3 * m).level for j in names], axis=1)
    s1, s2 = one.sum(axis=1), two.sum(axis=1)
    # the better crossing; on equal sums the larger levels in comparison order (a symmetric choice)
    first_wins = (s1 > s2) | ((s1 == s2) & _lex_ge(one, two))
    crossed = np.where(first_wins[:, None], one, two)
    better = crossed.sum(axis=1) > levels[np.ix_(idx, names)].sum(axis=1)
    rows = idx[better]
    for k, j in enumerate(names):
        levels[rows, j] = crossed[better, k]
        tf[rows, j] = 0  # value frequencies of the crossed fields are not comparable


def _swap_fields(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(first=f["last"], first_raw=f["last"], first_sound=f["last_sound"],
                    last=f["first_raw"], last_sound=f["first_sound"])


def _lex_ge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise x >= y in lexicographic order."""
    out = np.ones(len(x), dtype=bool)
    decided = np.zeros(len(x), dtype=bool)
    for j in range(x.shape[1]):
        differ = ~decided & (x[:, j] != y[:, j])
        out[differ] = x[differ, j] > y[differ, j]
        decided |= differ
    return out


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
