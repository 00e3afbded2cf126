"""Person names: cleaning, one transliteration key, nicknames and diminutives, patronymics, parsing.

The keys built here are matching keys, not pretty spellings: ``translit`` folds the usual ways of
writing one Russian name in Latin letters (Иванов, Ivanov, Ivanoff, Iwanow) onto one string, and
``canonical_first_name`` folds a diminutive or nickname (Саша, Sasha, Bill) onto its full name.
Everything is cached per unique word, so a million rows cost about as much as their distinct words.

First names: the `nicknames` package for English (with data/en_nicknames_preferred.csv settling the
common ambiguous ones, and data/en_given_names.csv listing common given names that stand for
themselves, with their gender: m, f or empty for either) and data/ru_diminutives.csv for Russian
(name, gender, forms; when two rows give the same form, or forms with the same key, the first row
wins and name_variants lists both). ``first_name_gender`` reads the genders of both tables.

Known limits of the key: spellings that reuse a Latin letter for another Russian sound do not
meet the usual ones (GOST x = х, German ch = х / s = з / z = ц / sch = ж, French ch = ш / j = ж, c
for ц outside -цов/-цев/-цын and цв); nor do English names written phonetically in Cyrillic
(Дэвид, Эндрю). Fuzzy comparisons are for those, and english_readings (дж as j, Уо- as Wa-, and
data/en_names_cyrillic.csv's usual spellings of common English names: Джордж, Хизер) for a Latin
and a Cyrillic record.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
from text_unidecode import unidecode

log = logging.getLogger(__name__)

# -- raw values ---------------------------------------------------------------------------------


def as_text(raw: object) -> str | None:
    """A raw cell as stripped text; None for None, NaN, NA, NaT and blank strings.

    Whole floats lose their ``.0`` (a phone or INN read by pandas as 84951234567.0)."""
    if raw is None or raw is pd.NA or raw is pd.NaT:
        return None
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bool | np.bool_):
        text = str(raw)
    elif isinstance(raw, float | np.floating):
        if math.isnan(raw):
            return None
        text = str(int(raw)) if float(raw).is_integer() and abs(raw) < 1e18 else str(raw)
    elif isinstance(raw, int | np.integer):
        text = str(int(raw))
    elif isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    else:
        text = str(raw)
    text = text.strip()
    return text or None


def frame_from_unique_rows(rows: list[tuple], codes: np.ndarray, index: pd.Index, columns: tuple[str, ...],
                           bools: tuple[str, ...] = ()) -> pd.DataFrame:
    """Spread one result row per distinct value back to every input row: ``codes`` from
    pd.factorize, ``rows`` ending with the row for missing values (code -1)."""
    table = np.empty((len(rows), len(columns)), dtype=object)
    table[:] = rows
    taken = table[codes]
    data = {col: taken[:, i].astype(bool) if col in bools else taken[:, i] for i, col in enumerate(columns)}
    return pd.DataFrame(data, index=index)


# -- clean_text ---------------------------------------------------------------------------------

# Apostrophes join the word (O'Brien -> obrien, Д'Артаньян -> дартаньян); other punctuation separates.
_APOSTROPHES = frozenset("'’‘ʼ`´ʹ′‛")
# NFKC would turn these into letters (№ -> "No", ™ -> "TM"): make them spaces first.
_BEFORE_NFKC = str.maketrans({c: " " for c in "№™®©℠℗"})
_HAS_BEFORE_NFKC = re.compile("[№™®©℠℗]")  # a search is much cheaper than translate when none are there


class _CharMap(dict):
    """str.translate table built lazily per code point: keep letters, digits and combining marks,
    drop zero-width/format characters, variation selectors and apostrophes, space out the rest."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        cat = unicodedata.category(ch)
        if ch == "ё":
            out = "е"
        elif ch in _APOSTROPHES or cat == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
            out = ""
        elif cat[0] in "LN" or cat in ("Mn", "Mc"):
            out = ch
        else:
            out = " "
        self[code] = out
        return out


_CHARS = _CharMap()
# Latin letters that look like Cyrillic ones once lower-cased (o/о, a/а, ..., h/н from H/Н, b/в from B/В).
_HOMO_LAT = "oaecpxykmhtb"
_HOMO_CYR = "оаесрхукмнтв"
_LAT_TO_CYR = str.maketrans(_HOMO_LAT, _HOMO_CYR)
_CYR_TO_LAT = str.maketrans(_HOMO_CYR, _HOMO_LAT)
_HAS_LAT = re.compile(r"[a-z]")
_HAS_CYR = re.compile(r"[а-я]")
_SIMPLE = re.compile(r"[a-z0-9а-я ]*")


def _repair_word(word: str) -> str:
    if not (_HAS_LAT.search(word) and _HAS_CYR.search(word)):
        return word
    cyr = lat = cyr_only = lat_only = 0
    for ch in word:
        if "а" <= ch <= "я":
            cyr += 1
            cyr_only += ch not in _HOMO_CYR
        elif "a" <= ch <= "z":
            lat += 1
            lat_only += ch not in _HOMO_LAT
    if cyr_only and not lat_only:
        to_cyr = True
    elif lat_only and not cyr_only:
        to_cyr = False
    else:  # both scripts have letters of their own, or none: the majority wins
        to_cyr = cyr >= lat
    return word.translate(_LAT_TO_CYR if to_cyr else _CYR_TO_LAT)


def _nfkc(text: str) -> str:
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def _clean_once(text: str) -> str:
    if _HAS_BEFORE_NFKC.search(text):
        text = text.translate(_BEFORE_NFKC)
    text = _nfkc(text).casefold()
    text = _nfkc(text).translate(_CHARS)
    words = text.split()
    if _HAS_LAT.search(text) and _HAS_CYR.search(text):
        words = [_repair_word(w) for w in words]
    return " ".join(words)


# clean_text forms of what people type for "unknown"
PLACEHOLDER_TEXTS = frozenset({
    "нет", "нету", "не указано", "не указан", "не указана", "неизвестно", "неизвестен", "неизвестна", "без имени",
    "безымянный", "клиент", "аноним", "имя", "фамилия", "отчество", "тест", "test", "testing", "unknown", "none",
    "null", "nil", "nan", "na", "n a", "x", "xx", "xxx", "xxxx", "noname", "no name", "anonymous", "client",
    "customer", "name", "first name", "last name", "asd", "asdf", "qwe", "qwerty", "йцукен", "ааа", "aaa", "123",
    "1234", "12345", "0", "00", "000", "no", "tbd", "todo", "удалить", "delete", "dummy",
})


def clean_text(s: object) -> str:
    """Case-folded, ё->е, punctuation/emoji/zero-width characters removed, mixed scripts inside a word
    repaired (a Latin "о" in a Cyrillic surname), single spaces; "" for None/NaN."""
    text = as_text(s)
    if text is None:
        return ""
    out = _clean_once(text)
    # Unusual input (combining marks left next to each other by a removed character...) may need
    # another pass to be stable; plain Latin/Cyrillic never does.
    for _ in range(4):
        if _SIMPLE.fullmatch(out):
            break
        again = _clean_once(out)
        if again == out:
            break
        out = again
    return out


# -- translit -----------------------------------------------------------------------------------

_CYR_MAP = str.maketrans({
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
    "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
    "і": "i", "ї": "i", "є": "e", "ґ": "g", "ў": "u",  # Ukrainian, Belarusian
})
_NOT_KEY = re.compile(r"[^a-z0-9]+")
_CONS = "b-df-hj-np-tv-z"
# Applied in order, repeated until nothing changes (so the key is a fixed point: translit is idempotent).
_LATIN_RULES = [
    (re.compile(r"schtsch|chtch"), "sh"),          # щ in German and French spellings
    (re.compile(r"tsch"), "ch"),                   # German ч: Alexandrowitsch
    (re.compile(r"shch|shh|sch"), "sh"),           # Щукин, Shchukin, Schukin, Shhukin (and German sch = ш)
    (re.compile(r"tch"), "ch"),                    # Tchaikovsky
    (re.compile(r"cz"), "ts"),                     # GOST ц: Czvetkov
    (re.compile(r"ph"), "f"),
    (re.compile(r"th"), "t"),
    (re.compile(r"ck"), "k"),
    (re.compile(r"x"), "ks"),                      # Xenia = Ksenia, Alexey = Aleksey
    (re.compile(r"w"), "v"),                       # Iwanow = Ivanov
    (re.compile(r"q"), "k"),
    (re.compile(r"tz"), "ts"),
    (re.compile(r"ou"), "u"),                      # French у: Birioukoff, Iouri
    (re.compile(r"c(?=(?:[oe](?:v|ff?)|[iy]n)a?$|v)"), "ts"),  # ц in -цов/-цев/-цын, цв: Kuznecov, Cvetkov
    (re.compile(r"c(?=[eiy])"), "s"),
    (re.compile(r"c(?!h)"), "k"),
    (re.compile(r"kh"), "h"),                      # Khabibullin = Habibullin = Хабибуллин
    (re.compile(r"(?<![^aeiou])[yj]e"), "e"),      # Yevgeny, Jewgeni = Евгений, Andreyev = Андреев
    (re.compile(r"j"), "i"),                       # Dmitrij, Natalja, Julia
    (re.compile(rf"(?<=[{_CONS}])[yi]o"), "e"),    # ё written yo/jo/io: Pyotr, Fjodor, Artiom = Артём
    (re.compile(r"y"), "i"),                       # Aleksey = Алексей, Dmitry, -sky/-skiy/-skii
    (re.compile(r"([a-z])\1+"), r"\1"),            # Ivanoff, Khabibullin, Iuliia, Dmitrii
    (re.compile(rf"(?<=[{_CONS}])i(?=[eou])"), ""),   # Vasiliev/Vasilyev/Васильев, Lyudmila/Ludmila
    (re.compile(r"(?<=[oe])f$"), "v"),             # Иваноф, Ivanoff -> ivanov
]


def _latin_key(s: str) -> str:
    for _ in range(6):
        before = s
        for pattern, repl in _LATIN_RULES:
            s = pattern.sub(repl, s)
        if s == before:
            break
    return s


@functools.lru_cache(maxsize=1 << 20)
def _translit_word(word: str) -> str:
    """Key of one word of clean_text output (no spaces)."""
    s = word.translate(_CYR_MAP)
    if not s.isascii():
        s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
        if not s.isascii():
            s = unidecode(s)
        s = s.lower()
    s = _NOT_KEY.sub("", s)
    return _latin_key(s) if s else ""


def translit(word: str) -> str:
    """One Latin matching key per word: Иванов, Ivanov, Ivanoff, Iwanow, Иваноф -> "ivanov".

    Several words give their keys joined by a space. Not a readable transliteration: doubled letters
    collapse, w->v, x->ks, kh->h, shch/sch->sh, j and y->i (so ya/ja->ia, yu/ju->iu, -iy/-ij/-y->-i),
    an i between a consonant and e, o or u drops (Vasilyev, Васильев -> vasilev; Lyudmila, Людмила ->
    ludmila) but not before an a, which every spelling of я writes (Дарья, Daria, Darya -> daria;
    dropped, Диана, Даня and Валерия were Дана and Валера), a final -of
    becomes -ov. Rules repeat until nothing changes, so translit(translit(x)) == translit(x)."""
    words = clean_text(word).split()
    return " ".join(k for k in map(_translit_word, words) if k)


# How Cyrillic spells the English letters it has none for: дж for j (Джессика, Бенджамин), у before a
# vowel at the start of a word for w (Уолтер, Уильям, Уэст; no Russian name starts so).
_ENGLISH_READING = [(re.compile(r"дж"), "j"), (re.compile(r"\bуо"), "wa"), (re.compile(r"\bу(?=[аиэ])"), "w")]


def english_reading(word: str) -> str:
    """The key of a Cyrillic name read as an English name written in Cyrillic, keyed as the Latin
    spelling is (Джессика -> "jessika" -> "esika", as Jessica; Уолтер -> "valter", as Walter); ""
    when it reads no differently. For a Latin and a Cyrillic record only: the translit key stays
    as it is, since Джамиль is "dzhamil" as well as Jamil."""
    text = clean_text(word)
    read = text
    for pattern, repl in _ENGLISH_READING:
        read = pattern.sub(repl, read)
    if read == text:
        return ""
    return " ".join(k for k in map(_translit_word, read.split()) if k)


@functools.cache
def _english_in_cyrillic() -> dict[str, frozenset[str]]:
    """data/en_names_cyrillic.csv, the usual Cyrillic spellings of the common English names of
    en_given_names.csv and en_nicknames_preferred.csv: clean_text of a spelling -> the keys of the
    names it spells (Стивен: Stephen's and Steven's)."""
    out: dict[str, set[str]] = {}
    for row in _read_data_csv("en_names_cyrillic.csv"):
        key = _translit_word_of(row["name"])
        for spelling in (row.get("cyrillic") or "").split("|"):
            text = clean_text(spelling)
            if key and text:
                out.setdefault(text, set()).add(key)
    return {text: frozenset(keys) for text, keys in out.items()}


def english_readings(word: str) -> frozenset[str]:
    """Every key a Cyrillic name has read as an English name: english_reading's, and the keys of
    the English names data/en_names_cyrillic.csv spells so. English spelling is too irregular for
    rules alone: Джордж is George (silent e), Хизер Heather (ea, th as з), Кэтрин Catherine,
    Katherine and Kathryn, Джон John (silent h), Майк Mike. Empty when it reads as nothing."""
    text = clean_text(word)
    found = set(_english_in_cyrillic().get(text, ()))
    rule = english_reading(text)
    if rule:
        found.add(rule)
    return frozenset(found)


def words_of_key(text: str, key: str) -> str:
    """The words of ``text`` (clean_text output, e.g. a whole name) whose keys make ``key`` (the
    first match), as written; "" when none do. Gives back the letters behind a key ("петрова
    ирица игоревна", "iritsa" -> "ирица"), where a typo is one letter, not two or three."""
    words = [w for w in text.split() if _translit_word(w)]
    n = len(key.split())
    for i in range(len(words) - n + 1):
        if " ".join(map(_translit_word, words[i:i + n])) == key:
            return " ".join(words[i:i + n])
    return ""


# The letter pairs of a key that write one Russian letter (ж, ч, ш/щ, ц, я, ю; х is already "h").
_KEY_LETTERS = re.compile(r"zh|ch|sh|ts|ia|iu")
_ONE_LETTER = {"zh": "ж", "ch": "ч", "sh": "ш", "ts": "ц", "ia": "я", "iu": "ю"}


def typo_letters(key: str) -> str:
    """A translit key with each pair of letters that writes one Russian letter made one symbol
    ("iritsa" -> "iriцa", "iulia" -> "юlя"): the letters of a Latin name in which a typo is one
    letter, as in Cyrillic (Iritsa / Irina, Ирица / Ирина), while the key has already folded the
    ways of spelling one sound (x/ks, y/i/j, ya/ia, ye/e, w/v, doubled letters)."""
    return _KEY_LETTERS.sub(lambda m: _ONE_LETTER[m.group(0)], key)


_KEY_TEXT = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")


def _as_key(s: object) -> str:
    """s when it already is a translit key, else its translit."""
    if isinstance(s, str) and _KEY_TEXT.fullmatch(s) and translit(s) == s:
        return s
    return translit(s) if as_text(s) is not None else ""


# -- first names: diminutives and nicknames --------------------------------------------------------


@dataclass(frozen=True)
class _NameTables:
    canonical: dict[str, str]             # key -> canonical full-name key (canonicals map to themselves)
    variants: dict[str, frozenset[str]]   # key -> every canonical it may stand for
    score: dict[str, int]                 # how surely a key is a first name: 2 sure, 1 weak (Smith -> Smitty)
    gender: dict[str, str]                # key -> "m" or "f" where every full name it may stand for has it


def _lcs(a: str, b: str) -> int:
    """Length of the longest common subsequence (names are short)."""
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _read_data_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("matchers.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _english_choices() -> tuple[dict[str, str], dict[str, set[str]], dict[str, int]]:
    """From the `nicknames` package: nickname -> one canonical, and -> all canonicals (translit keys).

    Its data is many-to-many and partly circular (bill -> william, robert, will; william -> bill),
    and lists many full names as nicknames of rarer ones (laura of laurinda, emma of emily, amy of
    amelia). So a common given name (en_given_names.csv) stands for itself, and so does every name
    with its key (Jesse and Jessie); another name maps to a longer common given name among its
    candidates if it has one (debbie -> deborah), else only to one with more nicknames than itself
    (so chains end); either way to the one that shares most letters with it (bill -> william, not
    robert), then the one with most nicknames. en_nicknames_preferred.csv settles the common ambiguous ones
    (jack -> john) and wins over both rules."""
    from nicknames import NickNamer

    nn = NickNamer()
    canon_of = nn.canonical_lookup
    nicks_of = nn.nickname_lookup
    preferred = {r["nickname"]: r["canonical"] for r in _read_data_csv("en_nicknames_preferred.csv")}
    given = {_translit_word_of(r["name"]) for r in _read_data_csv("en_given_names.csv")}

    def degree(name: str) -> int:
        return len(nicks_of.get(name, ()))

    choice: dict[str, str] = {}
    every: dict[str, set[str]] = {}
    score: dict[str, int] = {}
    for name in set(canon_of) | set(nicks_of):
        key = _translit_word_of(name)
        # the data also lists a few surnames (smith -> smitty): one relation only is a weak sign
        weight = 2 if len(canon_of.get(name, ())) + len(nicks_of.get(name, ())) >= 2 else 1
        if key:
            score[key] = max(score.get(key, 0), weight)
    for nick, cands in canon_of.items():
        key = _translit_word_of(nick)
        if not key or (key in given and nick not in preferred):
            continue
        every.setdefault(key, set()).update(_translit_word_of(c) for c in cands)
        if nick in preferred:
            best = preferred[nick]
        else:
            # a longer one only: the data also lists geraldine as a nickname of jerry
            fuller = [c for c in cands if _translit_word_of(c) in given and len(_translit_word_of(c)) > len(key)]
            up = fuller or [c for c in cands if degree(c) > degree(nick)]
            if not up:
                continue
            best = max(up, key=lambda c: (_lcs(nick, c), degree(c), c))
        target = _translit_word_of(best)
        if target and target != key:
            choice.setdefault(key, target)
    for nick, best in preferred.items():
        key, target = _translit_word_of(nick), _translit_word_of(best)
        choice[key] = target
        every.setdefault(key, set()).add(target)
    for best in preferred.values():  # a preferred full name stands for itself (john, not jonathan)
        target = _translit_word_of(best)
        choice[target] = target
    for name in list(preferred) + list(preferred.values()):
        score[_translit_word_of(name)] = 2
    return choice, every, score


def _translit_word_of(name: str) -> str:
    """One key for a name even if it is written in parts ("Mary-Ann", "K.C.")."""
    return _translit_word("".join(clean_text(name).split()))


def _russian_rows() -> list[tuple[str, str, list[str]]]:
    rows = []
    for row in _read_data_csv("ru_diminutives.csv"):
        forms = [f for f in (row.get("forms") or "").split("|") if f.strip()]
        rows.append((row["name"], row["gender"], forms))
    return rows


@functools.cache
def _tables() -> _NameTables:
    choice, every, score = _english_choices()
    mapping: dict[str, str] = dict(choice)
    variants: dict[str, set[str]] = {k: set(v) for k, v in every.items()}
    # The Russian table wins over the English data; within it a full name stands for itself even
    # where another row's form has its key (Диана, not Даня -> Богдан), and else the first row
    # naming a form wins (Саша -> Александр, while name_variants("sasha") also gives Александра).
    rows = _russian_rows()
    ru_first: dict[str, str] = {}
    for name, _gender, _forms in rows:
        canon = _translit_word_of(name)
        ru_first[canon] = canon
        variants.setdefault(canon, set()).add(canon)
        score[canon] = 2
    for name, _gender, forms in rows:
        canon = _translit_word_of(name)
        for form in forms:
            key = _translit_word_of(form)
            if key:
                ru_first.setdefault(key, canon)
                variants.setdefault(key, set()).add(canon)
                score[key] = 2
    mapping.update(ru_first)

    final: dict[str, str] = {}

    def resolve(key: str) -> str:
        if key in final:
            return final[key]
        path = [key]
        seen = {key}
        cur = key
        while True:
            nxt = mapping.get(cur, cur)
            if nxt == cur or nxt in final:
                end = final.get(nxt, nxt)
                break
            if nxt in seen:  # a cycle in the data: its smallest member stands for all
                cycle = path[path.index(nxt):]
                end = min(cycle)
                break
            path.append(nxt)
            seen.add(nxt)
            cur = nxt
        for k in path:
            final[k] = end
        final[end] = end
        return end

    for key in list(mapping):
        resolve(key)
    for end in set(final.values()):
        final[end] = end  # canonicals are fixed points: canonical_first_name is idempotent
    out_variants = {k: frozenset({final.get(c, c) for c in v} | {final.get(k, k)}) for k, v in variants.items()}
    for key in set(final) | set(final.values()):
        score.setdefault(key, 1)
    log.debug("name tables: %d keys, %d canonical names", len(final), len(set(final.values())))
    return _NameTables(final, out_variants, score, _genders(rows, final, out_variants))


def _genders(rows: list[tuple[str, str, list[str]]], final: dict[str, str],
             variants: dict[str, frozenset[str]]) -> dict[str, str]:
    """The gender of the keys that surely have one: a full name's own (Валерий m, Валерия f, Karen f,
    from either table; none where the tables disagree, or the English list says "either"), and a
    Russian diminutive's, when every name it is a form of has one gender (Лера f; Саша, Женя, Валя
    none). English nicknames get none (Charlie is Charles's and Charlotte's), nor does a key through
    a name of the other language it merely spells like (Valerie is no Валерий)."""
    own: dict[str, set[str]] = {}
    for row in _read_data_csv("en_given_names.csv"):
        key = _translit_word_of(row["name"])
        if key:
            own.setdefault(key, set()).add(row.get("gender") or "either")
    for name, gender, _forms in rows:
        own.setdefault(_translit_word_of(name), set()).add(gender or "either")
    out = {k: next(iter(g)) for k, g in own.items() if len(g) == 1 and g <= {"m", "f"}}
    forms: dict[str, set[str]] = {}
    for _name, gender, row_forms in rows:
        for form in row_forms:
            key = _translit_word_of(form)
            if key and key not in own:
                forms.setdefault(key, set()).add(gender or "either")
    out.update({k: next(iter(g)) for k, g in forms.items() if len(g) == 1 and g <= {"m", "f"}})
    return out


def canonical_first_name(key: str) -> str:
    """A first name's translit key with diminutives and nicknames folded onto one full name:
    sasha, shura, sania -> translit("александр"); bill, will, billy -> translit("william")."""
    key = _as_key(key)
    if not key:
        return ""
    canon = _tables().canonical
    if key in canon:
        return canon[key]
    if " " in key:
        return " ".join(canon.get(k, k) for k in key.split())
    return key


def name_variants(key: str) -> frozenset[str]:
    """Every canonical full name a first name or nickname may stand for (Саша: Александр and
    Александра); the name itself for a name nobody listed."""
    key = _as_key(key)
    if not key:
        return frozenset()
    tables = _tables()
    if key in tables.variants:
        return tables.variants[key]
    return frozenset({canonical_first_name(key)})


def first_name_gender(key: str) -> str:
    """"m" or "f" when the tables give a first name (or every full name a diminutive or nickname
    may stand for) one gender, else "" (Саша, Женя, Валя; names the tables do not know)."""
    key = _as_key(key)
    if not key:
        return ""
    gender = _tables().gender
    found = {gender.get(k, "") for k in key.split()}
    return found.pop() if len(found) == 1 else ""


# Russian surnames have a male and a female form: Петров / Петрова, Чайковский / Чайковская,
# Толстой / Толстая. As keys: -ov, -ev, -in and the same + a; -i (ий, ый, Polish -ski), -oi and -aia
# (ая), Polish/Ukrainian -ska.
_SURNAME_FORMS = (("aia", "f", 3), ("ova", "f", 1), ("eva", "f", 1), ("ina", "f", 1), ("ska", "f", 1),
                  ("oi", "m", 2), ("ov", "m", 0), ("ev", "m", 0), ("in", "m", 0), ("i", "m", 1))


def surname_gender_form(key: str) -> tuple[str, str]:
    """(stem, gender) of a surname key with a male or female form ("petrova" -> ("petrov", "f"),
    "chaikovski" -> ("chaikovsk", "m")), ("", "") for others (Шевченко). Two surnames with the same
    stem and different genders are one family's, not a typo. A double surname has the stems of its
    parts and a gender when every gendered part agrees."""
    key = _as_key(key)
    stems, genders = [], set()
    for word in key.split():
        stem = ""
        for ending, gender, cut in _SURNAME_FORMS:
            if word.endswith(ending) and len(word) - cut >= 4:
                stem = word[: len(word) - cut] if cut else word
                genders.add(gender)
                break
        stems.append(stem or word)
    if len(genders) != 1:
        return "", ""
    return " ".join(stems), genders.pop()


# The keys of a single letter (an initial): Ю. -> "iu", Ж. -> "zh", X. -> "ks".
INITIAL_KEYS = frozenset(filter(None, (_translit_word(c) for c in "абвгдеёжзийклмнопрстуфхцчшщэюяabcdefghijklmnopqrstuvwxyz")))


def known_first_name_near(key: str) -> str:
    """The one first name the tables know (the Russian table's names and forms, English nicknames and
    given names) that ``key`` - not one of them, of 4 letters or more - is one typo from (a letter
    dropped, added or changed: "vldimir" -> vladimir); "" when there is none, or more than one.
    For a nickname behind a typo (Влдимир / Вова)."""
    key = _as_key(key)
    known, index = _known_first_names()
    if len(key) < 4 or " " in key or key in known:
        return ""
    found: set[str] = set(index.get(key, ()))
    for i in range(len(key)):
        found.update(index.get(key[:i] + key[i + 1:], ()))
    found.discard(key)
    return found.pop() if len(found) == 1 else ""


@functools.cache
def _known_first_names() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """Every first-name key the tables know, and those of 4 letters or more under themselves and each
    of their one-letter deletions (two keys one substitution, insertion or deletion apart share an
    entry)."""
    known = set(_tables().score) | {k for k in (_translit_word_of(r["name"]) for r in _read_data_csv("en_given_names.csv"))
                                    if k}
    index: dict[str, list[str]] = {}
    for key in known:
        if len(key) >= 4 and " " not in key:
            for variant in {key, *(key[:i] + key[i + 1:] for i in range(len(key)))}:
                index.setdefault(variant, []).append(key)
    return frozenset(known), {k: tuple(v) for k, v in index.items()}


def is_known_first_name(key: str) -> bool:
    key = _as_key(key)
    return bool(key) and key in _tables().score


@functools.cache
def _common_first_names() -> frozenset[str]:
    keys = {_translit_word_of(r["name"]) for r in _read_data_csv("en_given_names.csv")}
    for name, _gender, forms in _russian_rows():
        keys.update(map(_translit_word_of, [name, *forms]))
    return frozenset(keys - {""})


def is_common_first_name(key: str) -> bool:
    """A name or form of the Russian table, or a common English given name: fewer than
    is_known_first_name's, whose nickname data lists many rare names a typo may spell
    (Антонниа -> "antonia")."""
    key = _as_key(key)
    return bool(key) and key in _common_first_names()


# -- patronymics --------------------------------------------------------------------------------

_PATRONYMIC_KEY = re.compile(r"[a-z]{2,}(?:ovich|evich|ovna|evna|ichna)")
_PATRONYMIC_ICH = frozenset({"ilich", "kuzmich", "lukich", "fomich", "nikitich", "savich", "fokich", "kuzich"})


def _is_patronymic_key(key: str) -> bool:
    return bool(_PATRONYMIC_KEY.fullmatch(key)) or key in _PATRONYMIC_ICH


def is_patronymic(word: str) -> bool:
    """-ович/-евич/-ич (Ильич, Кузьмич)/-овна/-евна/-ична/-инична, or their Latin forms."""
    key = _as_key(word)
    return bool(key) and " " not in key and _is_patronymic_key(key)


# -- person names -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonName:
    first: str                 # canonical first-name key (nickname resolved), "" if none
    first_raw: str             # translit key of the first name as written
    last: str                  # translit key(s) of the surname, space-joined
    middle: str                # patronymic (or middle name / initial) translit key, "" if none
    tokens: tuple[str, ...]    # sorted keys of every name word, first names nickname-resolved
    initials: str              # first letters of first and middle


EMPTY_PERSON = PersonName("", "", "", "", (), "")


@dataclass(frozen=True)
class _Unit:
    """One name written as a unit ("Иванов-Петров" is one unit of two words)."""
    key: str            # translit keys of its words, space-joined
    canon: str          # the same with each word nickname-resolved
    patronymic: bool
    name_score: int     # 2: surely a first name or nickname, 1: maybe, 0: not known as one
    initial: bool       # a single letter
    cyrillic: bool
    tokens: tuple[str, ...]  # its words as they enter PersonName.tokens


_TITLES = re.compile(
    r"(?<![\w-])(?:dr|mr|mrs|ms|mx|miss|prof|sir|madam|jr|sr|phd|ph\.d|esq|г-н|г-жа|гн|гжа|господин|госпожа"
    r"|д-р|проф)(?:\.|(?![\w-]))", re.IGNORECASE)
_ROMAN_SUFFIX = frozenset({"ii", "iii", "iv"})


@functools.lru_cache(maxsize=1 << 18)
def _unit(raw: str) -> _Unit | None:
    clean = clean_text(raw)
    keys = [k for k in map(_translit_word, clean.split()) if k]
    if not keys:
        return None
    tables = _tables()
    canon = " ".join(tables.canonical.get(k, k) for k in keys)
    patronymic = len(keys) == 1 and _is_patronymic_key(keys[0])
    return _Unit(
        key=" ".join(keys),
        canon=canon,
        patronymic=patronymic,
        name_score=0 if _is_patronymic_key(keys[0]) else tables.score.get(keys[0], 0),
        initial=len(keys) == 1 and len(clean) == 1,  # one letter: Ю. is one too, its key "iu"
        cyrillic=bool(_HAS_CYR.search(clean)),
        tokens=tuple(keys) if patronymic else tuple(canon.split()),
    )


def forget_cached_names() -> None:
    """Empty the caches of name words and parts. They pay within a pass over a table (names repeat);
    after a million records they hold ~0.5 GB, with what they keep from being given back."""
    for cached in (_translit_word, _unit, _field_units):
        cached.cache_clear()


@functools.lru_cache(maxsize=1 << 18)
def _field_units(raw: str) -> tuple[_Unit, ...]:
    """The name units of one field: titles dropped, hyphenated names kept as one unit; none for a
    field that says "unknown" ("NULL", "нет", "-", "не указано": the quality report's placeholders),
    so that two such fields are no evidence of one person."""
    if clean_text(raw) in PLACEHOLDER_TEXTS:
        return ()
    text = _TITLES.sub(" ", raw)
    text = re.sub(r"\s*[-‐‑–—]\s*", "-", text)
    units = []
    for part in re.split(r"[\s,;/.]+", text):
        if not part or part.strip("-") == "":
            continue
        unit = _unit(part)
        if unit is not None:
            units.append(unit)
    while len(units) > 1 and units[-1].key in _ROMAN_SUFFIX:
        units.pop()
    return tuple(units)


def _units_of(value: object) -> tuple[_Unit, ...]:
    text = as_text(value)
    return _field_units(text) if text is not None else ()


def _build(first: _Unit | None, last: list[_Unit], middle: _Unit | None, extra: list[_Unit]) -> PersonName:
    tokens = list(first.tokens) if first else []
    for unit in last:
        tokens.extend(unit.tokens)
    if middle:
        tokens.extend(middle.tokens)
    for unit in extra:
        tokens.extend(unit.tokens)
    first_key = first.canon if first else ""
    middle_key = middle.key if middle else ""
    return PersonName(
        first=first_key,
        first_raw=first.key if first else "",
        last=" ".join(u.key for u in last),
        middle=middle_key,
        tokens=tuple(sorted(tokens)),
        initials=first_key[:1] + middle_key[:1],
    )


def _from_units(units: list[_Unit], comma_at: int | None = None) -> PersonName:
    """Roles for a name written in one string, in any order."""
    if not units:
        return EMPTY_PERSON
    if comma_at is not None and 0 < comma_at < len(units):  # "Ivanov, Ivan [Ivanovich]"
        left, right = units[:comma_at], units[comma_at:]
        middle = next((u for u in right if u.patronymic), None) or next((u for u in left if u.patronymic), None)
        left = [u for u in left if u is not middle]
        right = [u for u in right if u is not middle]
        first = right[0] if right else None
        rest = right[1:]
        if middle is None and rest:
            middle, rest = rest[0], rest[1:]
        return _build(first, left, middle, rest)

    idx = list(range(len(units)))
    pat = next((i for i in idx if units[i].patronymic), None)
    middle_i = pat
    first_i = None
    if pat is not None:
        words = [i for i in idx if i != pat and not units[i].initial and not units[i].patronymic]
        top = max((units[i].name_score for i in words), default=0)
        best = [i for i in words if top and units[i].name_score == top]
        if pat - 1 in best or (not best and pat - 1 in words):
            first_i = pat - 1   # the first name stands right before the patronymic in both usual orders
        elif best:
            first_i = best[0]
    rest = [i for i in idx if i != pat]
    if first_i is None:
        initials = [i for i in rest if units[i].initial]
        words = [i for i in rest if not units[i].initial]
        top = max((units[i].name_score for i in words), default=0)
        known = [i for i in words if top and units[i].name_score == top]
        cyrillic = any(units[i].cyrillic for i in words)
        if initials:                      # "Иванов И. И.", "I. Ivanov"
            first_i = initials[0]
            if middle_i is None and len(initials) > 1:
                middle_i = initials[1]
        elif known and (len(known) == 1 or len(words) == 1):
            first_i = known[0]
        elif len(words) >= 2:
            if len(known) >= 2:
                # both look like first names: fall back on the usual order of the script
                first_i = known[1] if cyrillic and known[0] == words[0] and len(words) == 2 else known[0]
            else:
                # nothing known: Russian writes the surname first, English last
                first_i = words[1] if cyrillic else words[0]
    rest = [i for i in idx if i not in (first_i, middle_i)]
    cyrillic = any(u.cyrillic for u in units)
    if middle_i is None and first_i is not None and not cyrillic and len(rest) >= 2:
        # "John Paul Smith": a Latin middle name between first name and surname
        between = [i for i in rest if i > first_i]
        if len(between) >= 2:
            middle_i = between[0]
            rest = [i for i in rest if i != middle_i]
    last = [units[i] for i in rest if not units[i].initial or len(rest) == 1]
    extra = [i for i in rest if units[i].initial and len(rest) > 1]
    return _build(units[first_i] if first_i is not None else None, last,
                  units[middle_i] if middle_i is not None else None, [units[i] for i in extra])


def _swapped(last: _Unit, first: _Unit) -> bool:
    """Swapped fields: the surname field holds what is surely a first name, the first-name field one
    less surely so. Only sure evidence outweighs the fields' labels: "Смит" may be a first name
    (Smit), but "Смит Джон" is John Smith, whose name the tables do not know in Cyrillic."""
    return last.name_score == 2 and first.name_score < 2 and not last.patronymic


def _from_fields(last: tuple[_Unit, ...], first: tuple[_Unit, ...], middle: tuple[_Unit, ...]) -> PersonName:
    if (len(first) == 1 and len(last) <= 1 and len(middle) <= 1 and not first[0].patronymic
            and not (last and _swapped(last[0], first[0]))):
        # the usual case, one word per field in its place: nothing to move
        return _build(first[0], list(last), middle[0] if middle else None, [])
    filled = [f for f in (last, first, middle) if f]
    if len(filled) == 1 and len(filled[0]) >= 2:   # a whole name typed into one field
        return _from_units(list(filled[0]))
    last, first, middle = list(last), list(first), list(middle)
    extra: list[_Unit] = []
    if not any(u.patronymic for u in middle):
        moved = next((u for u in first if u.patronymic), None)
        if moved is None and len(last) >= 2:
            moved = next((u for u in last if u.patronymic), None)
        if moved is not None:
            first = [u for u in first if u is not moved]
            last = [u for u in last if u is not moved]
            extra.extend(middle)
            middle = [moved]
    if last and first and _swapped(last[0], first[0]):
        last, first = first, last
    if not first and len(last) >= 2 and not middle:
        return _from_units(last)
    first_unit = first[0] if first else None
    if len(first) > 1:
        if middle:
            extra.extend(first[1:])
        else:
            middle = first[1:2]
            extra.extend(first[2:])
    if not first_unit and middle and len(middle) == 1 and not middle[0].patronymic and middle[0].name_score:
        first_unit, middle = middle[0], []
    middle_unit = middle[0] if middle else None
    extra.extend(middle[1:])
    return _build(first_unit, last, middle_unit, extra)


def parse_person(last: object, first: object, middle: object) -> PersonName:
    """A person from separate surname / first name / middle name fields, which may be swapped or
    hold more than one part: a patronymic typed in any field goes to ``middle``."""
    return _from_fields(_units_of(last), _units_of(first), _units_of(middle))


def parse_full_name(full: object) -> PersonName:
    """A person from one string: "Иванов Иван Иванович", "Ivan Ivanov", "Ivanov, Ivan",
    "Dr. John Smith Jr."."""
    text = as_text(full)
    if text is None:
        return EMPTY_PERSON
    text = _TITLES.sub(" ", text)
    comma_at = None
    if "," in text:
        head, _, tail = text.partition(",")
        head_units, tail_units = _field_units(head), _field_units(tail)
        if head_units and tail_units:
            return _from_units(list(head_units + tail_units), comma_at=len(head_units))
        return _from_units(list(head_units or tail_units))
    return _from_units(list(_field_units(text)), comma_at)


# -- vectorised ---------------------------------------------------------------------------------

PERSON_COLUMNS = ("first", "first_raw", "last", "middle", "tokens", "initials", "full")
_NAME_FIELDS = ("last_name", "first_name", "middle_name", "full_name")


def _codes(values: pd.Series) -> tuple[np.ndarray, list]:
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return codes, list(uniques)


def _join(a: np.ndarray, b: np.ndarray, c: np.ndarray, sort: bool = False) -> np.ndarray:
    """Element-wise "a b c" (in sorted order with ``sort``), leaving out empty parts (object arrays
    of str); one new string per row."""
    out = np.empty(len(a), dtype=object)
    rows = zip(a.tolist(), b.tolist(), c.tolist())
    if sort:
        out[:] = [" ".join(sorted([s for s in t if s])) for t in rows]
    else:
        out[:] = [f"{x} {y} {z}" if x and y and z else " ".join(s for s in (x, y, z) if s) for x, y, z in rows]
    return out


def _distinct_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For rows given as parallel code columns (-1 allowed): a code per row for its combination of
    values (0..k-1, in order of first appearance) and the first row of each combination."""
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    for part in columns:
        combined, _ = pd.factorize(combined * (int(part.max(initial=-1)) + 2) + (part + 1))
        combined = combined.astype(np.int64)
    # numbered in order of first appearance: a combination is new where the number exceeds all before
    new = np.ones(len(combined), dtype=bool)
    new[1:] = combined[1:] > np.maximum.accumulate(combined)[:-1]
    return combined, np.flatnonzero(new)


def _field_arrays(units: list[tuple[_Unit, ...]]) -> dict[str, np.ndarray]:
    """Per distinct field value: what the vectorised usual case needs (one-word units only)."""
    first = [u[0] if u else None for u in units]
    return {
        "n": np.array([len(u) for u in units], dtype=np.int64),
        "one_word": np.array([len(u) == 0 or (len(u) == 1 and len(u[0].tokens) == 1) for u in units], dtype=bool),
        "pat": np.array([bool(x and x.patronymic) for x in first], dtype=bool),
        "score": np.array([x.name_score if x else 0 for x in first], dtype=np.int64),
        "key": np.array([x.key if x else "" for x in first], dtype=object),
        "canon": np.array([x.canon if x else "" for x in first], dtype=object),
        "token": np.array([x.tokens[0] if x and x.tokens else "" for x in first], dtype=object),
    }


def normalize_persons(records: pd.DataFrame) -> pd.DataFrame:
    """Per row: first, first_raw, last, middle, tokens (space-joined), initials, full (clean_text of
    the whole name). Uses last_name/first_name/middle_name when any is filled, else full_name.
    Same index as ``records``; each distinct field value is parsed once, the usual case (one word
    per field, in its place) is assembled with array operations, and every other distinct name
    tuple goes through parse_person / parse_full_name once."""
    present = [c for c in _NAME_FIELDS if c in records.columns]
    n = len(records)
    if not present or n == 0:
        return pd.DataFrame({c: pd.Series([""] * n, index=records.index, dtype=object) for c in PERSON_COLUMNS})
    field_codes = []
    field_uniques = []
    for col in _NAME_FIELDS:
        if col in present:
            codes, uniques = _codes(records[col])
        else:
            codes, uniques = np.full(n, -1, dtype=np.int64), []
        field_codes.append(codes.astype(np.int64))
        field_uniques.append(uniques)
    # per distinct field value; a trailing empty entry serves code -1 (missing)
    texts = [[as_text(v) for v in uniques] + [None] for uniques in field_uniques]
    units = [[_field_units(t) if t is not None else () for t in col] for col in texts]
    cleans = [np.array([clean_text(t) if t is not None else "" for t in col], dtype=object) for col in texts]
    cl, cf, cm, cfull = field_codes
    L, F, M = (_field_arrays(u) for u in units[:3])

    # the usual case, as _from_fields' first branch: one one-word unit as first name, at most one
    # one-word unit in the others, no patronymic to move, no swap
    lf, ff, mf = L["n"][cl], F["n"][cf], M["n"][cm]
    simple = ((ff == 1) & (lf <= 1) & (mf <= 1) & ~F["pat"][cf]
              & L["one_word"][cl] & F["one_word"][cf] & M["one_word"][cm]
              & ~((lf == 1) & (L["score"][cl] > F["score"][cf]) & ~L["pat"][cl]))
    out = {c: np.empty(n, dtype=object) for c in PERSON_COLUMNS}
    idx = np.flatnonzero(simple)
    if len(idx):
        out["first"][idx] = F["canon"][cf[idx]]
        out["first_raw"][idx] = F["key"][cf[idx]]
        out["last"][idx] = L["key"][cl[idx]]
        out["middle"][idx] = M["key"][cm[idx]]
        # the joined texts once per distinct name, shared by its rows: a string per row would take
        # ~150 MB more at a million records, namesakes and duplicates being many
        trio, one = _distinct_rows([cl[idx], cf[idx], cm[idx]])
        u = idx[one]
        out["tokens"][idx] = _join(F["token"][cf[u]], L["token"][cl[u]], M["token"][cm[u]], sort=True)[trio]
        out["full"][idx] = _join(cleans[0][cl[u]], cleans[1][cf[u]], cleans[2][cm[u]])[trio]
        duo, one = _distinct_rows([cf[idx], cm[idx]])
        u = idx[one]
        initials = np.array([x[:1] for x in F["canon"][cf[u]]], dtype=object) + \
            np.array([x[:1] for x in M["key"][cm[u]]], dtype=object)
        out["initials"][idx] = initials[duo]

    rest = np.flatnonzero(~simple)
    if len(rest):
        # every other row: once per distinct tuple of field values
        combined, first_rows = _distinct_rows([codes[rest] for codes in field_codes])
        l_units, f_units, m_units = units[:3]
        results = []
        for row in rest[first_rows].tolist():
            lu, fu, mu = l_units[cl[row]], f_units[cf[row]], m_units[cm[row]]
            if lu or fu or mu:
                person = _from_fields(lu, fu, mu)
                full = " ".join(x for x in (cleans[0][cl[row]], cleans[1][cf[row]], cleans[2][cm[row]]) if x)
            elif texts[3][cfull[row]] is not None:
                person = parse_full_name(texts[3][cfull[row]])
                full = cleans[3][cfull[row]]
            else:
                person, full = EMPTY_PERSON, ""
            results.append((person.first, person.first_raw, person.last, person.middle,
                            " ".join(person.tokens), person.initials, full))
        table = np.empty((len(results), len(PERSON_COLUMNS)), dtype=object)
        table[:] = results
        taken = table[combined]
        for i, col in enumerate(PERSON_COLUMNS):
            out[col][rest] = taken[:, i]
    return pd.DataFrame(out, index=records.index)
