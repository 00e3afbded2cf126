"""Phone numbers: E.164 via phonenumbers, the extension kept apart, placeholders recognised.

``normalize_phones`` parses each distinct value once. Valid numbers written as digits and
separators ("89161234567", "+7 (916) 123-45-67 доб. 12", "+44 20 7946 0958", "(617) 755-8484") take
a fast path that builds the same result as phonenumbers without calling its parser: the country code
and national number are cut by the same rules and their validity is checked against phonenumbers'
own metadata patterns (tests compare both paths on many generated numbers). Everything else goes
through phonenumbers.parse.

A number that is not valid in the default region and has no "+" is read again as an international
number typed without "+", then in each of FALLBACK_REGIONS (foreign clients of a Russian CRM write
"(617) 755-8484" or "020 7946 0958"); the first valid reading wins.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import pandas as pd
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

from matchers.names import as_text, frame_from_unique_rows

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
        # not valid here: maybe an international number typed without its "+" ("1-617-755-8484"),
        # or a domestic number of another country ("(617) 755-8484", "020 7946 0958")
        md = PhoneMetadata.metadata_for_region(region, None) if region else None
        trunk = (md.national_prefix or "") if md else ""
        tries = [("+" + digits, None)] if len(digits) >= 8 and not (trunk and digits.startswith(trunk)) else []
        tries += [(stripped, r) for r in fallback_regions if r != region]
        for alt_text, alt_region in tries:
            alt = _reading(alt_text, alt_region)
            if alt is not None and alt[3]:
                reading = alt
                break
    if reading is None:
        return (None, None, ext, False, False)
    e164, national, num_ext, valid = reading
    if national and _placeholder_digits(national):
        return PLACEHOLDER
    return (e164, national, ext or num_ext, valid, False)


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
        # as _slow: an international number without its "+", then the fallback regions
        trunk = _trunk(region)
        tries = [(None, True)] if len(digits) >= 8 and not (trunk and digits.startswith(trunk)) else []
        tries += [(r, False) for r in fallback_regions if r != region]
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


def normalize_phones(values: pd.Series, region: str = "RU",
                     fallback_regions: tuple[str, ...] = FALLBACK_REGIONS) -> pd.DataFrame:
    """Columns e164, national, ext, valid, placeholder; same index as ``values``; each distinct value
    is parsed once (as parse_phone)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    rows = []
    fallback_regions = tuple(fallback_regions)
    for raw in uniques:
        text = raw.strip() if type(raw) is str else as_text(raw)
        if not text:
            rows.append(EMPTY)
            continue
        row = _fast(text, region, fallback_regions) if region else None
        if row is None:
            try:
                row = _slow(text, region, fallback_regions)
            except Exception:  # noqa: BLE001 - a phone library surprise must not stop a batch
                log.warning("phone %r could not be parsed", raw, exc_info=True)
                row = EMPTY
        rows.append(row)
    rows.append(EMPTY)  # code -1: missing
    return frame_from_unique_rows(rows, codes, values.index, PHONE_COLUMNS, bools=("valid", "placeholder"))
