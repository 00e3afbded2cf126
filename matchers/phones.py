"""Phone numbers: E.164 via phonenumbers, the extension kept apart, placeholders recognised.

``normalize_phones`` parses each distinct value once. Valid numbers written as digits and
separators ("89161234567", "+7 (916) 123-45-67 доб. 12", "+44 20 7946 0958", "(617) 755-8484") take
a fast path that builds the same result as phonenumbers without calling its parser: the country code
and national number are cut by the same rules and their validity is checked against phonenumbers'
own metadata patterns (tests compare both paths on many generated numbers). Everything else goes
through phonenumbers.parse. normalize_phones takes the fast path for all distinct values at once
(_fast_many: the same steps over arrays, tests compare it with parse_phone value by value) and only
what that leaves one value at a time.

A number that is not valid in the default region and has no "+" is read again in each of
FALLBACK_REGIONS (foreign clients of a Russian CRM write "(617) 755-8484" or "020 7946 0958"), then
as an international number typed without "+"; the first valid reading wins. (The other way round,
"646-825-6475" was read as +64 68256475, a valid number of New Zealand.)
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

from matchers.names import as_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phone:
    e164: str | None        # +74951234567; set for valid numbers and for possible-but-invalid ones
    national: str | None    # national significant number, digits only (4951234567)
    ext: str | None         # extension digits
    valid: bool             # phonenumbers.is_valid_number
    placeholder: bool       # a stand-in for "no phone": +7 (000) 000-00-00, 1111111, "нет", "-"


PHONE_COLUMNS = ("e164", "national", "ext", "valid", "placeholder")
# Where a number invalid in the default region is tried next (foreign clients of a Russian CRM).
FALLBACK_REGIONS = ("US", "GB")
EMPTY = (None, None, None, False, False)
PLACEHOLDER = (None, None, None, False, True)

# Words people type instead of a phone.
_PLACEHOLDER_WORDS = frozenset({
    "нет", "нету", "-", "--", "---", "—", "n/a", "na", "n.a.", "none", "no", "null", "nil", "nan", "unknown",
    "не указан", "не указано", "неизвестно", "отсутствует", "нет телефона", "без телефона", "x", "xx", "xxx",
    "?", "??", "???", "0", "+", "+7", "8", "tbd", "todo", "-/-",
})
_ASCENDING = "01234567890"
_DESCENDING = "9876543210"
# Extension at the end: "доб. 123", "ext 12", "x12", "#12", "вн. 5"
_EXT = re.compile(
    r"[\s,;(]*(?:доб(?:авочный)?|доп|вн(?:утр(?:енний)?)?|ext(?:ension)?|extn|x|#|д)\.?\s*[:.]?\s*(\d{1,7})\)?\s*$",
    re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")


def only_extension(text: str) -> bool:
    """Whether ``text`` is an extension alone ("доб 802", "ext. 12"), not a phone: what a cell of
    phones joined by ", " holds after the comma of "(495) 751-64-43, доб 802"."""
    return _EXT.match(text) is not None


LIST_SEPARATORS = ";,/\r\n"  # between the numbers of a cell holding several (a line break: one per line)
_LIST_SEPARATOR = re.compile(rf"\s*[{re.escape(LIST_SEPARATORS)}]\s*")
_MIN_NUMBER_DIGITS = 7


def several_numbers(text: str) -> list[str]:
    """The numbers of a cell holding several, as written ("+79165551207; +79165551208",
    "8 916 555-12-07, 8 495 123-45-67"): split at ";", "," or "/" where every piece has a number's
    digits, or one per line; otherwise ``[text]`` (one number, or one with its extension "..., доб 802")."""
    pieces = [p for p in _LIST_SEPARATOR.split(text.strip()) if p]
    if len(pieces) > 1 and all(sum(c.isdigit() for c in p) >= _MIN_NUMBER_DIGITS for p in pieces):
        return pieces
    return [text]


_LETTER_OR_HASH = re.compile(r"[^\W\d_]|#")
_NON_DIGIT = re.compile(r"\D+")


# runs of six digits or more typed as a stand-in: 123456..., 987654...
_RUN_DIGITS = frozenset(r[i:j] for r in (_ASCENDING, _DESCENDING, "12345678901234")
                        for i in range(len(r)) for j in range(i + 6, len(r) + 1))


def _placeholder_digits(digits: str) -> bool:
    """A number made up to fill the field: one digit repeated, 123456..., or zeros after the area code."""
    n = len(digits)
    if n < 5:
        return False
    return digits == digits[0] * n or digits in _RUN_DIGITS or (n >= 10 and digits.endswith("0000000"))


def _national_for_placeholder(digits: str) -> str:
    """Digits without a leading +7/8/7 trunk or country code, for the placeholder check."""
    if len(digits) == 11 and digits[0] in "78":
        return digits[1:]
    return digits


def _reading(text: str, region: str | None) -> tuple | None:
    """phonenumbers' reading (e164, national, ext, valid), or None when it cannot parse ``text``."""
    try:
        num = phonenumbers.parse(text, region or None)
    except NumberParseException:
        return None
    national = phonenumbers.national_significant_number(num)
    valid = phonenumbers.is_valid_number(num)
    possible = phonenumbers.is_possible_number_with_reason(num) == ValidationResult.IS_POSSIBLE
    # an invalid number keeps its E.164 only when that reads back the same (leading zeros do not)
    keep = valid or (possible and not national.startswith("0"))
    e164 = phonenumbers.format_number(num, PhoneNumberFormat.E164) if keep else None
    return (e164, national or None, num.extension or None, bool(valid))


def _slow(text: str, region: str, fallback_regions: tuple[str, ...] = ()) -> tuple:
    """Through phonenumbers.parse: any format, any country."""
    lowered = text.lower().strip()
    if lowered in _PLACEHOLDER_WORDS or not any(ch.isalnum() for ch in lowered):
        return PLACEHOLDER
    ext = None
    m = _EXT.search(text)
    main = text
    if m and m.start() > 0 and sum(c.isdigit() for c in text[:m.start()]) >= 5:
        ext, main = m.group(1), text[:m.start()]
    digits = _NON_DIGIT.sub("", main)
    if not digits:
        return PLACEHOLDER if not _LETTER.search(main) else (None, None, ext, False, False)
    if _placeholder_digits(digits) or _placeholder_digits(_national_for_placeholder(digits)):
        return PLACEHOLDER
    stripped = main.strip()
    if stripped.startswith("00"):
        stripped = "+" + stripped[2:]   # 00 is the international prefix almost everywhere
    reading = _reading(stripped, region)
    if (reading is None or not reading[3]) and not stripped.startswith("+"):
        # not valid here: maybe a domestic number of another country ("(617) 755-8484", "020 7946
        # 0958"), or an international number typed without its "+" ("49 30 1234567")
        md = PhoneMetadata.metadata_for_region(region, None) if region else None
        trunk = (md.national_prefix or "") if md else ""
        tries = [(stripped, r) for r in fallback_regions if r != region]
        tries += [("+" + digits, None)] if len(digits) >= 8 and not (trunk and digits.startswith(trunk)) else []
        for alt_text, alt_region in tries:
            alt = _reading(alt_text, alt_region)
            if alt is not None and alt[3]:
                reading = alt
                break
    if (reading is None or not reading[3]) and (_LETTER.search(main) or len(several_numbers(main)) > 1):
        # a number with words around it: "8-916-555-12-05 (после 18:00)", "+7 916 555 12 05 Иван", or
        # two numbers in one cell (the first is taken)
        found = _found_in_text(text, region, fallback_regions)
        if found is not None:
            return found
    if reading is None:
        return (None, None, ext, False, False)
    e164, national, num_ext, valid = reading
    if national and _placeholder_digits(national):
        return PLACEHOLDER
    return (e164, national, ext or num_ext, valid, False)


def _found_in_text(text: str, region: str, fallback_regions: tuple[str, ...]) -> tuple | None:
    """The first valid number phonenumbers finds inside ``text`` (read in ``region``, then in each
    fallback region, unless a "+" gives the country), as _slow's row; None when there is none."""
    for where in dict.fromkeys(r for r in (region, *(() if "+" in text else fallback_regions)) if r):
        for match in phonenumbers.PhoneNumberMatcher(text, where, leniency=phonenumbers.Leniency.VALID):
            num = match.number
            national = phonenumbers.national_significant_number(num)
            if _placeholder_digits(national):
                return PLACEHOLDER
            return (phonenumbers.format_number(num, PhoneNumberFormat.E164), national, num.extension or None, True,
                    False)
    return None


# -- fast path for numbers in digits and separators ------------------------------------------


def _desc_regex(desc) -> str | None:
    """phonenumbers' _is_number_matching_desc as one regular expression (lengths, then pattern)."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = [n for n in (desc.possible_length or ()) if n > 0]
    guard = "(?=(?:" + "|".join(rf"\d{{{n}}}" for n in lengths) + r")$)" if lengths else ""
    return rf"{guard}(?:{desc.national_number_pattern})$"


_TYPE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
               "voicemail", "fixed_line", "mobile")


@functools.cache
def _validity_regex(country_code: int) -> re.Pattern:
    """True exactly when phonenumbers.is_valid_number is, for a national number of this country.

    Mirrors region_code_for_number (leading digits, else full type check, region by region) and
    _number_type_helper (the general pattern, then any type pattern) over the same metadata."""
    branches = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        md = PhoneMetadata.metadata_for_region(region, None)
        if md is None:
            continue
        general = _desc_regex(md.general_desc)
        types = [r for r in (_desc_regex(getattr(md, name)) for name in _TYPE_DESCS) if r]
        if general is None or not types:
            known = "(?!)"
        else:
            known = f"(?=(?:{general}))(?:" + "|".join(f"(?:{t})" for t in types) + ")"
        if md.leading_digits is not None:
            branches.append((f"(?={md.leading_digits})", known))
        else:
            branches.append((None, known))
    # regions are tried in order; a region with leading digits that match claims the number
    parts = []
    excluded = ""
    for lead, known in branches:
        if lead is None:
            parts.append(f"{excluded}{known}")
        else:
            parts.append(f"{excluded}{lead}{known}")
            excluded += f"(?!{lead[3:-1]})"
    return re.compile("(?:" + "|".join(f"(?:{p})" for p in parts) + ")")


class _Rules:
    """What phonenumbers.parse reads of a region's metadata for a number in plain digits."""

    def __init__(self, md):
        self.country_code = md.country_code
        self.idd = re.compile(md.international_prefix) if md.international_prefix else None
        npfp = md.national_prefix_for_parsing
        self.national_prefix = re.compile(npfp) if npfp else None
        # a prefix that captures a carrier code or is rewritten (Argentina, Mexico...): not followed
        self.prefix_rewritten = bool(self.national_prefix is not None
                                     and (self.national_prefix.groups or md.national_prefix_transform_rule))
        pattern = md.general_desc.national_number_pattern
        self.general = re.compile(f"(?:{pattern})$") if pattern else None
        self.lengths = tuple(md.general_desc.possible_length)
        self.local_lengths = tuple(md.general_desc.possible_length_local_only or ())

    def viable(self, number: str) -> bool:
        return self.general is not None and self.general.match(number) is not None

    def length(self, number: str) -> str:
        """_test_number_length for an unknown type."""
        n = len(number)
        if n in self.local_lengths:
            return "local"
        if n == self.lengths[0]:
            return "possible"
        if n < self.lengths[0]:
            return "short"
        if n > self.lengths[-1]:
            return "long"
        return "possible" if n in self.lengths[1:] else "invalid"

    def strip_national_prefix(self, number: str) -> str | None:
        """_maybe_strip_national_prefix_carrier_code; None where the prefix would be rewritten."""
        m = self.national_prefix.match(number) if number and self.national_prefix is not None else None
        if m is None:
            return number
        if self.prefix_rewritten:
            return None
        rest = number[m.end():]
        return number if self.viable(number) and not self.viable(rest) else rest


@functools.cache
def _rules(region: str) -> _Rules | None:
    """None without metadata (non-geographic numbers are left to phonenumbers)."""
    md = PhoneMetadata.metadata_for_region(region, None)
    if md is None or md.general_desc is None or not md.general_desc.possible_length:
        return None
    return _Rules(md)


_UNSURE = "unsure"


def _fast_reading(digits: str, region: str | None, plus: bool):
    """(country code, national significant number, rules of the number's region) as
    phonenumbers.parse(("+" if plus else "") + digits, region) reads them; None where parse raises;
    _UNSURE off the paths followed here."""
    rules = _rules(region) if region else None
    if region and rules is None:
        return _UNSURE
    international = plus
    if not plus and rules.idd is not None:
        m = rules.idd.match(digits)
        if m is not None and not digits[m.end():m.end() + 1] == "0":  # after "810", "00": a country code
            international, digits = True, digits[m.end():]
    if international:
        if len(digits) <= 2:
            return None
        for k in (1, 2, 3):
            cc = int(digits[:k]) if digits[0] != "0" else 0
            if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            # parse retries after a "+" with the default region's rules: not followed here
            return _UNSURE if plus and region else None
        national = digits[k:]
        rules = _rules(phonenumbers.region_code_for_country_code(cc))
        if rules is None:
            return _UNSURE
    else:
        cc, national = rules.country_code, digits
        if digits.startswith(str(cc)):
            # the region's own country code typed without "+" ("7 916 ...")
            potential = rules.strip_national_prefix(digits[len(str(cc)):])
            if potential is None:
                return _UNSURE
            if (not rules.viable(digits) and rules.viable(potential)) or rules.length(digits) == "long":
                rules = _rules(phonenumbers.region_code_for_country_code(cc))
                if rules is None:
                    return _UNSURE
                national = potential
    if len(national) < 2:
        return None
    potential = rules.strip_national_prefix(national)
    if potential is None:
        return _UNSURE
    if rules.length(potential) in ("possible", "long"):
        national = potential
    if not 2 <= len(national) <= 17:
        return None
    return cc, national, rules


_FAST_SEPARATORS = str.maketrans("", "", " ()-.\u00a0")


@functools.cache
def _trunk(region: str) -> str:
    md = PhoneMetadata.metadata_for_region(region, None) if region else None
    return (md.national_prefix or "") if md else ""


def _fast(text: str, region: str, fallback_regions: tuple[str, ...]) -> tuple | None:
    """A number in digits and separators ("+7 (916) 123-45-67", "8 916 1234567", "(617) 755-8484",
    "+44 20 7946 0958"), read as _slow reads it, or None to take the slow path.

    The readings are tried in _slow's order; each is cut as phonenumbers.parse cuts it (international
    prefix, country code, national prefix) and checked against phonenumbers' own validity patterns
    and possible lengths. Where a step is not followed here, the slow path answers."""
    if text.lower() in _PLACEHOLDER_WORDS:  # "8", "+7"
        return PLACEHOLDER
    plus = text[0] == "+"
    digits = (text[1:] if plus else text).translate(_FAST_SEPARATORS)
    if not (digits.isascii() and digits.isdigit()):
        # "8 (495) 123-45-67 доб. 12": the same extension rule as the slow path, then the digits
        m = _EXT.search(text) if _LETTER_OR_HASH.search(text) else None
        head = text[:m.start()].strip() if m is not None else ""
        if sum(c.isdigit() for c in head) < 5:
            return None
        main = _fast(head, region, fallback_regions)
        if main is None or main[4]:
            return None
        return (main[0], main[1], m.group(1), main[3], False)
    if _placeholder_digits(digits) or (len(digits) == 11 and _placeholder_digits(_national_for_placeholder(digits))):
        return PLACEHOLDER
    if not plus and text.startswith("00"):  # the international prefix almost everywhere
        plus, digits = True, digits[2:]
    reading = _fast_reading(digits, region, plus)
    if reading is _UNSURE:
        return None
    valid = reading is not None and _valid(reading)
    if not valid and not plus:
        # as _slow: the fallback regions, then an international number without its "+"
        trunk = _trunk(region)
        tries = [(r, False) for r in fallback_regions if r != region]
        tries += [(None, True)] if len(digits) >= 8 and not (trunk and digits.startswith(trunk)) else []
        for r, as_plus in tries:
            alt = _fast_reading(digits, r, as_plus)
            if alt is _UNSURE:
                return None
            if alt is not None and _valid(alt):
                reading, valid = alt, True
                break
    if reading is None:
        return EMPTY
    cc, national, rules = reading
    if _placeholder_digits(national):
        return PLACEHOLDER
    if valid:
        return (f"+{cc}{national}", national, None, True, False)
    # an invalid number keeps its E.164 only when that reads back the same (as _reading decides,
    # with the lengths of the country code's main region)
    home = _rules(phonenumbers.region_code_for_country_code(cc))
    if home is None:
        return None
    keep = home.length(national) == "possible" and not national.startswith("0")
    return (f"+{cc}{national}" if keep else None, national, None, False, False)


def _valid(reading: tuple) -> bool:
    return _validity_regex(reading[0]).match(reading[1]) is not None


# -- the fast path for many distinct values at once -------------------------------------------
#
# normalize_phones answers most distinct values with _fast_many: the steps of _fast and _fast_reading
# over arrays. The digits of all numbers are kept once, as character codes one after another, and
# every cut is an offset into a number's digits (all the cuts of _fast and _fast_reading drop a
# prefix). Prefixes that are plain digits ("8", "810", "0|180020") are compared as characters; the
# metadata patterns run in RE2 (pyarrow) where they are plain (see _plain), else in re per number. A
# row _fast would not answer, or one on a step not followed here, is left to the per-value path.

_NOT_FOLLOWED, _NO_READING, _READ = 0, 1, 2  # _fast_reading returns _UNSURE, None, a reading
# _fast answers a placeholder word first; text with more digits than any of them has is none
_WORD_DIGITS = max(sum(c.isdigit() for c in w) for w in _PLACEHOLDER_WORDS)
# steps between neighbouring digits of a _placeholder_digits number: repeated, or a run of _RUN_DIGITS
_PLACEHOLDER_STEPS = np.array(sorted({0} | {ord(b) - ord(a) for r in _RUN_DIGITS for a, b in zip(r, r[1:])}))
# The metadata patterns are written with digits, groups, "|", classes, "?", "{m}", "{m,n}" and \d
# only: true regular expressions, so RE2 and re accept the same strings of ASCII digits (RE2 also runs
# libphonenumber's C++ port). A pattern with anything else ("{,n}" reads differently) stays in re.
_PLAIN_PATTERN = re.compile(r"(?:[0-9()\[\]|?{},:-]|\\d)*")
_FEW = 5000  # fewer numbers than this are matched with re (pyarrow compiles the pattern on each call)


def _plain(pattern: str) -> bool:
    return "{," not in pattern and _PLAIN_PATTERN.fullmatch(pattern) is not None


def _matching(numbers: pa.Array, pattern: str, plain: bool) -> np.ndarray:
    """re.match(f"(?:{pattern})$", n) is not None for each number (RE2 where the pattern is plain)."""
    if plain and len(numbers) >= _FEW:
        return pc.match_substring_regex(numbers, f"^(?:{pattern})$").to_numpy(zero_copy_only=False)
    match = re.compile(f"(?:{pattern})$").match
    return np.array([match(x) is not None for x in numbers.to_pylist()], bool)


def _cc_length(first3: str) -> int:
    """_fast_reading's country code loop on a number's first three digits: how many make the
    country code, 0 for none."""
    for k in (1, 2, 3):
        cc = int(first3[:k]) if first3[0] != "0" else 0
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return k
    return 0


_CC_LENGTH = np.array([_cc_length(f"{p:03d}") for p in range(1000)])


class _Digits:
    """The digits of many numbers, one after another in ``data`` (character codes): row i's are
    lengths[i] from offsets[i]. A number as cut is a row from an offset (``start``)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        self.data, self.offsets, self.lengths = data, offsets, lengths

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, rows: np.ndarray) -> _Digits:
        return _Digits(self.data, self.offsets[rows], self.lengths[rows])

    def char(self, at: np.ndarray) -> np.ndarray:
        """Each row's character code at offset ``at``; 0 outside its digits."""
        inside = (at >= 0) & (at < self.lengths)
        return np.where(inside, self.data.take(self.offsets + at, mode="clip"), 0).astype(np.int16)

    def starts(self, start: np.ndarray, literal: str) -> np.ndarray:
        """Whether each row's number from ``start`` begins with ``literal``."""
        hit = self.lengths - start >= len(literal)
        for j, ch in enumerate(literal):
            hit &= self.char(start + j) == ord(ch)
        return hit

    def parts(self, rows: np.ndarray, start: np.ndarray) -> pa.LargeStringArray:
        """The given rows' numbers from ``start``, as strings."""
        first, size = self.offsets[rows] + start[rows], self.lengths[rows] - start[rows]
        ends = np.cumsum(size)
        # where each character of the result comes from: its position plus its row's shift
        gather = np.arange(ends[-1] if len(ends) else 0) + np.repeat(first - ends + size, size)
        offsets = np.concatenate(([0], ends)).astype(np.int64)
        return pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(self.data[gather]))


def _literals(pattern: str | None) -> tuple[str, ...] | None:
    """The alternatives of a pattern made of digits and "|" only ("810", "0|180020"), else None."""
    return tuple(pattern.split("|")) if pattern and re.fullmatch(r"\d+(?:\|\d+)*", pattern) else None


def _prefix_end(d: _Digits, rows: np.ndarray, start: np.ndarray, pattern: re.Pattern) -> np.ndarray:
    """Where pattern.match(number) ends, for each row's number from ``start`` (offset in the row's
    digits); -1 where it does not match or the row is not in ``rows`` (a bool mask)."""
    end = np.full(len(d), -1)
    literals = _literals(pattern.pattern)
    if literals is None:
        sel = np.flatnonzero(rows)
        for i, number in zip(sel.tolist(), d.parts(sel, start).to_pylist()):
            m = pattern.match(number)
            if m is not None:
                end[i] = start[i] + m.end()
        return end
    left = rows.copy()
    for literal in literals:  # re tries the alternatives in order: the first that is a prefix matches
        hit = left & d.starts(start, literal)
        end[hit] = start[hit] + len(literal)
        left &= ~hit
    return end


def _viable(rules: _Rules, d: _Digits, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
    """rules.viable of the given rows' numbers."""
    if rules.general is None:
        return np.zeros(len(rows), bool)
    pattern = rules.general.pattern[:-1]  # without its "$"
    return _matching(d.parts(rows, start), pattern, _plain(pattern))


def _length_in(rules: _Rules, size: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """rules.length(number) in kinds, for numbers of each size."""
    table = np.array([rules.length("0" * n) in kinds for n in range(int(size.max(initial=0)) + 1)])
    return table[size]


def _strip_many(rules: _Rules, d: _Digits, rows: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rules.strip_national_prefix of the numbers in ``rows`` (a bool mask): the new offsets, and
    where it returns None."""
    new, unsure = start.copy(), np.zeros(len(d), bool)
    if rules.national_prefix is None:
        return new, unsure
    end = _prefix_end(d, rows & (d.lengths > start), start, rules.national_prefix)
    hit = np.flatnonzero(end >= 0)
    if rules.prefix_rewritten:
        unsure[hit] = True
        return new, unsure
    whole = _viable(rules, d, hit, start)
    whole[whole] = ~_viable(rules, d, hit[whole], end)  # the number if viable and its rest is not
    new[hit] = np.where(whole, start[hit], end[hit])
    return new, unsure


def _readings(d: _Digits, region: str | None, plus: np.ndarray, start: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_fast_reading(digits, region, plus[i]) of each row's digits from start[i]: a state (_READ;
    _NO_READING where it returns None; _NOT_FOLLOWED where _UNSURE), the country code, and the
    offset where the national number starts."""
    n = len(d)
    state, cc, start = np.full(n, _READ, np.int8), np.zeros(n, np.int64), start.copy()
    cut_by = np.full(n, -1)  # the region whose rules cut the national number, an index in ``cutters``
    cutters: list[str] = []

    def cutter(name: str) -> int:
        if name not in cutters:
            cutters.append(name)
        return cutters.index(name)

    home = _rules(region) if region else None
    if region and home is None:
        state[:] = _NOT_FOLLOWED
        return state, cc, start
    international = plus.copy()
    if home is not None and home.idd is not None:
        end = _prefix_end(d, ~plus, start, home.idd)
        idd = (end >= 0) & (d.char(end) != ord("0"))  # after "810", "00": a country code
        international |= idd
        start[idd] = end[idd]

    rows = np.flatnonzero(international)
    too_short = d.lengths[rows] - start[rows] <= 2
    state[rows[too_short]] = _NO_READING
    rows = rows[~too_short]
    first3 = sum((d.char(start + j)[rows].astype(np.int64) - ord("0")) * 10 ** (2 - j) for j in range(3))
    k = _CC_LENGTH[first3]
    unknown = rows[k == 0]
    state[unknown] = np.where(plus[unknown] & bool(region), _NOT_FOLLOWED, _NO_READING)
    rows, first3, k = rows[k > 0], first3[k > 0], k[k > 0]
    cc[rows] = first3 // 10 ** (3 - k)
    start[rows] += k
    for code in np.unique(cc[rows]).tolist():
        sel = rows[cc[rows] == code]
        main = phonenumbers.region_code_for_country_code(code)
        cut_by[sel] = cutter(main)
        if _rules(main) is None:
            state[sel] = _NOT_FOLLOWED

    if home is not None:
        rows = np.flatnonzero(~international)
        cc[rows], cut_by[rows] = home.country_code, cutter(region)
        # the region's own country code typed without "+" ("7 916 ...")
        code = str(home.country_code)
        own = ~international & d.starts(start, code)
        potential, unsure = _strip_many(home, d, own, start + len(code))
        state[unsure] = _NOT_FOLLOWED
        rows = np.flatnonzero(own & ~unsure)
        switch = (~_viable(home, d, rows, start) & _viable(home, d, rows, potential)) | _length_in(
            home, d.lengths[rows] - start[rows], ("long",))
        rows = rows[switch]
        main = phonenumbers.region_code_for_country_code(home.country_code)
        if _rules(main) is None:
            state[rows] = _NOT_FOLLOWED
        else:
            cut_by[rows], start[rows] = cutter(main), potential[rows]

    for index in np.unique(cut_by[state == _READ]).tolist():
        rules = _rules(cutters[index])
        mine = (state == _READ) & (cut_by == index)
        short = mine & (d.lengths - start < 2)
        state[short] = _NO_READING
        mine &= ~short
        potential, unsure = _strip_many(rules, d, mine, start)
        state[unsure] = _NOT_FOLLOWED
        mine &= ~unsure
        take = mine.copy()
        take[mine] = _length_in(rules, d.lengths[mine] - potential[mine], ("possible", "long"))
        start[take] = potential[take]
        size = d.lengths - start
        state[mine & ((size < 2) | (size > 17))] = _NO_READING
    return state, cc, start


@functools.cache
def _validity_parts(country_code: int) -> list[tuple] | None:
    """_validity_regex's parts: per region (in order), its leading digits, and the (possible lengths,
    pattern) of its general description and of each number type; None if a pattern is not plain or
    no region has metadata (non-geographic codes, which _fast leaves to phonenumbers)."""
    parts = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        md = PhoneMetadata.metadata_for_region(region, None)
        if md is None:
            continue
        descs = [(tuple(n for n in (desc.possible_length or ()) if n > 0), desc.national_number_pattern)
                 if desc is not None and desc.national_number_pattern else None
                 for desc in [md.general_desc] + [getattr(md, name) for name in _TYPE_DESCS]]
        if not all(map(_plain, [md.leading_digits or ""] + [desc[1] for desc in descs if desc is not None])):
            return None
        parts.append((md.leading_digits, descs[0], [desc for desc in descs[1:] if desc is not None]))
    return parts or None


def _valid_in(country_code: int, numbers: pa.Array) -> np.ndarray:
    """_validity_regex(country_code).match(n) is not None for each national number, part by part: a
    region claims the numbers its leading digits begin (those of no earlier region), then a number
    fits the general description and one of the number types (lengths, and a full match)."""
    size = pc.utf8_length(numbers).to_numpy()
    valid, free = np.zeros(len(numbers), bool), np.ones(len(numbers), bool)
    for lead, general, types in _validity_parts(country_code):
        here = free.copy()
        if lead is not None:
            rows = np.flatnonzero(free)
            led = np.zeros(len(numbers), bool)
            led[rows] = pc.match_substring_regex(numbers.take(rows), f"^(?:{lead})").to_numpy(zero_copy_only=False)
            here &= led
            free &= ~led
        if general is None or not types:
            continue
        lengths, pattern = general
        rows = np.flatnonzero(here & (np.isin(size, lengths) if lengths else True))
        rows = rows[_matching(numbers.take(rows), pattern, True)]
        for n in np.unique(size[rows]).tolist():  # the types that admit the length, as one pattern
            fitting = [pattern for lengths, pattern in types if not lengths or n in lengths]
            sel = rows[size[rows] == n]
            if fitting:
                valid[sel] |= _matching(numbers.take(sel), "|".join(f"(?:{p})" for p in fitting), True)
    return valid


def _valid_many(cc: np.ndarray, national: pa.Array) -> np.ndarray:
    """_valid of readings (country codes, national numbers)."""
    valid = np.zeros(len(cc), bool)
    for code in np.unique(cc).tolist():
        rows = np.flatnonzero(cc == code)
        if len(rows) < _FEW or _validity_parts(code) is None:
            match = _validity_regex(code).match
            valid[rows] = [match(x) is not None for x in national.take(rows).to_pylist()]
        else:
            valid[rows] = _valid_in(code, national.take(rows))
    return valid


def _made_up(d: _Digits, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
    """_placeholder_digits of the given rows' numbers from ``start``: checked with _placeholder_digits
    itself where the first four digits step as in a placeholder or the last two are zeros (it needs
    one or the other)."""
    d, start = d.take(rows), start[rows]
    maybe_steps = d.lengths - start >= 5
    digit = d.char(start)
    for j in range(1, 4):
        after = d.char(start + j)
        maybe_steps &= np.isin(after - digit, _PLACEHOLDER_STEPS)
        digit = after
    maybe_zeros = (d.lengths - start >= 10) & (d.char(d.lengths - 1) == ord("0")) & (d.char(d.lengths - 2) == ord("0"))
    check = np.flatnonzero(maybe_steps | maybe_zeros)
    made_up = np.zeros(len(d), bool)
    made_up[check] = [_placeholder_digits(x) for x in d.parts(check, start).to_pylist()]
    return made_up


# digits and separators, a "+" only first (after spaces): ASCII text _fast takes as a number
_DIGITS_TEXT = r"^ *\+?[ ()\-.0-9]*$"


def _clean(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Digits]:
    """The ASCII texts _fast takes as digits and separators: (rows taken, "+", written with "00",
    digits). A taken text has no whitespace but spaces, so str.strip() trims what ascii_ltrim does."""
    text = pa.array(texts, pa.large_string())
    bounds = np.frombuffer(text.buffers()[1], np.int64, len(texts) + 1)  # text i is data[bounds[i]:bounds[i + 1]]
    data = np.frombuffer(text.buffers()[2], np.uint8, bounds[-1]) if bounds[-1] else np.zeros(0, np.uint8)
    digit = (data >= ord("0")) & (data <= ord("9"))
    n_digits = np.zeros(len(texts), np.int64)
    written = np.flatnonzero(bounds[1:] > bounds[:-1])
    if len(written):  # reduceat sums from each start to the next (written texts only, so none is empty)
        n_digits[written] = np.add.reduceat(digit, bounds[written], dtype=np.int64)
    taken = np.flatnonzero(pc.match_substring_regex(text, _DIGITS_TEXT).to_numpy(zero_copy_only=False)
                           & (n_digits > _WORD_DIGITS))
    text_start = pc.ascii_ltrim(text, " ").take(taken)
    plus = pc.starts_with(text_start, "+").to_numpy(zero_copy_only=False)
    double_zero = ~plus & pc.starts_with(text_start, "00").to_numpy(zero_copy_only=False)
    offsets = np.cumsum(n_digits) - n_digits
    return taken, plus, double_zero, _Digits(data[digit], offsets[taken], n_digits[taken])


def _fast_many(texts: list[str], region: str, fallback_regions: tuple[str, ...]) -> tuple:
    """_fast of ASCII texts (stripped or not) where it answers and every step is followed here:
    (answered, a bool per text; the placeholders among them; the others with a reading, and their
    e164, national and valid). The rest are answered EMPTY."""
    rows, plus, double_zero, d = _clean(texts)
    answered = np.zeros(len(texts), bool)
    every, zero = np.arange(len(d)), np.zeros(len(d), np.int64)
    # placeholders first, as _fast: the digits, or those after a +7/8/7 trunk or country code
    made_up = _made_up(d, every, zero)
    trunk_or_cc = np.flatnonzero((d.lengths == 11) & np.isin(d.char(zero), [ord("7"), ord("8")]))
    made_up[trunk_or_cc] |= _made_up(d, trunk_or_cc, zero + 1)
    placeholders = [rows[made_up]]
    live = np.flatnonzero(~made_up)
    rows, plus, double_zero, d = rows[live], plus[live], double_zero[live], d.take(live)

    plus = plus | double_zero  # "00" is the international prefix almost everywhere
    state, cc, start = _readings(d, region, plus, np.where(double_zero, 2, 0))
    read = np.flatnonzero(state == _READ)
    valid = np.zeros(len(d), bool)
    valid[read] = _valid_many(cc[read], d.parts(read, start))
    # as _fast: the fallback regions, then an international number without its "+"
    pending = (state != _NOT_FOLLOWED) & ~valid & ~plus
    trunk = _trunk(region)
    as_international = pending & (d.lengths >= 8)
    if trunk:
        as_international &= ~d.starts(np.zeros(len(d), np.int64), trunk)
    tries = [(r, False, pending) for r in fallback_regions if r != region] + [(None, True, as_international)]
    for alt_region, as_plus, eligible in tries:
        sel = np.flatnonzero(pending & eligible)
        alt = d.take(sel)
        alt_state, alt_cc, alt_start = _readings(alt, alt_region, np.full(len(sel), as_plus), np.zeros_like(sel))
        unsure = sel[alt_state == _NOT_FOLLOWED]
        state[unsure], pending[unsure] = _NOT_FOLLOWED, False
        ok = np.flatnonzero(alt_state == _READ)
        ok = ok[_valid_many(alt_cc[ok], alt.parts(ok, alt_start))]
        won = sel[ok]
        state[won], cc[won], start[won], valid[won], pending[won] = _READ, alt_cc[ok], alt_start[ok], True, False

    answered[rows[state == _NO_READING]] = True  # EMPTY
    read = state == _READ
    made_up = np.zeros(len(d), bool)
    made_up[read] = _made_up(d, np.flatnonzero(read), start)
    placeholders.append(rows[made_up])
    read &= ~made_up
    # an invalid number keeps its E.164 only when that reads back the same (as _fast decides)
    keep = valid.copy()
    for code in np.unique(cc[read & ~valid]).tolist():
        home = _rules(phonenumbers.region_code_for_country_code(code))
        sel = read & ~valid & (cc == code)
        if home is None:
            read &= ~sel
            continue
        keep[sel] = _length_in(home, d.lengths[sel] - start[sel], ("possible",)) & (d.char(start)[sel] != ord("0"))
    read = np.flatnonzero(read)
    national = d.parts(read, start)
    e164 = np.full(len(read), None, object)
    for code in np.unique(cc[read][keep[read]]).tolist():
        sel = np.flatnonzero(keep[read] & (cc[read] == code))
        e164[sel] = pc.utf8_replace_slice(national.take(sel), 0, 0, f"+{code}").to_numpy(zero_copy_only=False)
    placeholders = np.concatenate(placeholders)
    answered[placeholders] = answered[rows[read]] = True
    return answered, placeholders, rows[read], e164, national.to_numpy(zero_copy_only=False), valid[read]


def _parse_text(text: str | None, region: str, fallback_regions: tuple[str, ...]) -> tuple:
    if text is None:
        return EMPTY
    fast = _fast(text, region, tuple(fallback_regions)) if region else None
    if fast is not None:
        return fast
    return _slow(text, region, tuple(fallback_regions))


def parse_phone(raw: object, region: str = "RU", fallback_regions: tuple[str, ...] = FALLBACK_REGIONS) -> Phone:
    """One phone as written ("8 495 1234567", "+7 (495) 123-45-67 доб. 123", "+44 20 7946 0958",
    "00 49 30 1234567"). Never raises: junk gives valid=False, placeholders placeholder=True.

    A number not valid in ``region`` and written without "+" is read again as an international
    number missing its "+" ("1-617-755-8484"), then as a domestic number of each of
    ``fallback_regions`` ("(617) 755-8484"); the first valid reading wins, else the first stands."""
    try:
        return Phone(*_parse_text(as_text(raw), region, fallback_regions))
    except Exception:  # noqa: BLE001 - a phone library surprise must not stop a batch
        log.warning("phone %r could not be parsed", raw, exc_info=True)
        return Phone(None, None, None, False, False)


def _parse_unique(raw: object, region: str, fallback_regions: tuple[str, ...]) -> tuple:
    """One distinct value, one at a time: the path of the values _bulk does not answer."""
    text = raw.strip() if type(raw) is str else as_text(raw)
    if not text:
        return EMPTY
    row = _fast(text, region, fallback_regions) if region else None
    if row is None:
        try:
            row = _slow(text, region, fallback_regions)
        except Exception:  # noqa: BLE001 - a phone library surprise must not stop a batch
            log.warning("phone %r could not be parsed", raw, exc_info=True)
            row = EMPTY
    return row


def _bulk(uniques: np.ndarray, region: str, fallback_regions: tuple[str, ...], columns: dict) -> np.ndarray:
    """Fills the rows of ``columns`` that _fast_many answers (as _fast would); returns the other rows."""
    left = np.ones(len(uniques), bool)

    def fill(rows: np.ndarray, answer: tuple) -> None:
        answered, placeholders, read, e164, national, valid = answer
        columns["placeholder"][rows[placeholders]] = True
        columns["e164"][rows[read]], columns["national"][rows[read]] = e164, national
        columns["valid"][rows[read]] = valid
        left[rows[answered]] = False

    plain = np.flatnonzero(np.fromiter((type(v) is str and v.isascii() for v in uniques), bool, len(uniques)))
    fill(plain, _fast_many(uniques[plain].tolist(), region, fallback_regions))
    # _fast's extension step ("+7 916 123-45-67 доб. 12"), the number before the extension in bulk
    rows, heads, exts = [], [], []
    rest = np.flatnonzero(left)
    for i, raw in zip(rest.tolist(), uniques[rest].tolist()):
        text = raw.strip() if type(raw) is str else ""
        if not text or text.lower() in _PLACEHOLDER_WORDS:
            continue
        m = _EXT.search(text)  # (each extension word has a letter or "#", so _fast's _LETTER_OR_HASH holds)
        head = text[:m.start()].strip() if m is not None else ""
        if head.isascii() and sum(map(str.isdigit, head)) >= 5:
            rows.append(i)
            heads.append(head)
            exts.append(m.group(1))
    rows, exts = np.array(rows, dtype=np.intp), np.array(exts, dtype=object)
    answered, placeholders, *rest = _fast_many(heads, region, fallback_regions)
    answered[placeholders] = False  # _fast leaves a placeholder before an extension to _slow
    columns["ext"][rows[answered]] = exts[answered]
    fill(rows, (answered, placeholders[:0], *rest))
    return np.flatnonzero(left)


def normalize_phones(values: pd.Series, region: str = "RU",
                     fallback_regions: tuple[str, ...] = FALLBACK_REGIONS) -> pd.DataFrame:
    """Columns e164, national, ext, valid, placeholder; same index as ``values``; each distinct value
    is parsed once (as parse_phone), most of them together in bulk."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    fallback_regions = tuple(fallback_regions)
    # a row per distinct value, then an empty one for missing values (code -1)
    size = len(uniques) + 1
    columns = {"e164": np.full(size, None, object), "national": np.full(size, None, object),
               "ext": np.full(size, None, object), "valid": np.zeros(size, bool), "placeholder": np.zeros(size, bool)}
    rest = _bulk(uniques, region, fallback_regions, columns) if region else np.arange(len(uniques))
    for i in rest.tolist():
        for name, value in zip(PHONE_COLUMNS, _parse_unique(uniques[i], region, fallback_regions)):
            columns[name][i] = value
    return pd.DataFrame({name: columns[name][codes] for name in PHONE_COLUMNS}, index=values.index)
