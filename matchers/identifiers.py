"""Identifiers: INN (Russian tax id) with its checksum, the registered domain of a website or
address, birthdates."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re

import idna
import numpy as np
import pandas as pd
import tldextract

from matchers.names import as_text

log = logging.getLogger(__name__)

# -- INN ----------------------------------------------------------------------------------------

_W10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_NON_DIGIT = re.compile(r"\D+")
# what parts an INN from a KPP (1C and Bitrix24 write "ИНН/КПП" in one field) or from a second number:
# a separator, any word ("ИНН", "КПП", also glued to the number: "КПП695002001"), two spaces, or a
# space before a number of a KPP's or an INN's length
_INN_AND_MORE = re.compile(r"[/\\,;|]|[^\W\d_]+|\s{2,}|(?<=\d)\s+(?=\d{9}(?:\d|\d{3})?\b)")


def _check(digits: str, weights: tuple[int, ...]) -> int:
    return sum(w * int(d) for w, d in zip(weights, digits)) % 11 % 10


def inn_checksum_ok(digits: str) -> bool:
    """The official control digits of a 10-digit (company) or 12-digit (person) INN."""
    if not digits.isascii() or not digits.isdigit() or digits.count("0") == len(digits):
        return False
    if len(digits) == 10:
        return _check(digits, _W10) == int(digits[9])
    if len(digits) == 12:
        return _check(digits, _W11) == int(digits[10]) and _check(digits, _W12) == int(digits[11])
    return False


def parse_inn(raw: object) -> tuple[str | None, bool]:
    """(digits, checksum ok). Non-digits are dropped ("ИНН 7707-083-893"); a 9- or 11-digit value
    whose leading zero a spreadsheet ate gets it back when that makes the checksum right.

    A value of several numbers ("7707083893/695002001", "КПП 773601001 ИНН 7707083893") gives the one
    valid INN among them, whatever its place. Two different valid INNs are not one: all the digits,
    not valid (the quality check lists the value), rather than a guess that could join two firms.
    With no valid one, the first number of an INN's length, else all the digits (not valid)."""
    text = as_text(raw)
    if text is None:
        return None, False
    digits = _NON_DIGIT.sub("", text)
    if not digits:
        return None, False
    if len(digits) > 12:
        parts = [d for d in (_NON_DIGIT.sub("", part) for part in _INN_AND_MORE.split(text)) if len(d) in (10, 12)]
        valid = set(filter(inn_checksum_ok, parts))
        if len(valid) == 1:
            return valid.pop(), True
        if not valid and parts:
            return parts[0], False
        return digits, False
    if len(digits) in (9, 11) and inn_checksum_ok("0" + digits):
        digits = "0" + digits
    return digits, inn_checksum_ok(digits)


def parse_kpp(raw: object) -> str | None:
    """The KPP written with a company's INN in one field ("7707083893/770701001", "ИНН 7707083893 КПП
    784243001", either first): the 9-digit number beside a valid 10-digit INN, as parse_inn splits
    them. A company's branches share its INN and each has a KPP of its own. None where there is no
    valid company INN (a sole trader's 12 digits have no KPP), no such number, or two different ones
    (no guess); a KPP in the new letter form (7707AB001) is not read."""
    text = as_text(raw)
    if text is None or len(_NON_DIGIT.sub("", text)) <= 12:  # one number at most: no KPP beside an INN
        return None
    inn, ok = parse_inn(text)
    if not ok or len(inn) != 10:
        return None
    found = {d for d in (_NON_DIGIT.sub("", part) for part in _INN_AND_MORE.split(text))
             if len(d) == 9 and d.isascii() and d.strip("0")}
    return found.pop() if len(found) == 1 else None


def normalize_inns(values: pd.Series) -> pd.DataFrame:
    """Columns inn (digits or None) and valid; same index; once per distinct value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    rows = [parse_inn(v) for v in uniques] + [(None, False)]
    inn = np.array([r[0] for r in rows], dtype=object)[codes]
    ok = np.array([r[1] for r in rows], dtype=bool)[codes]
    return pd.DataFrame({"inn": inn, "valid": ok}, index=values.index)


# -- domains ------------------------------------------------------------------------------------

FREE_MAIL_DOMAINS: frozenset[str] = frozenset({
    "gmail.com", "googlemail.com", "mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "mail.ua",
    "yandex.ru", "ya.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "narod.ru",
    "rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru", "ro.ru", "rambler.ua",
    "hotmail.com", "outlook.com", "live.com", "msn.com", "hotmail.co.uk", "live.ru", "outlook.ru",
    "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "aol.com",
    "icloud.com", "me.com", "mac.com", "protonmail.com", "proton.me", "pm.me", "tutanota.com",
    "gmx.com", "gmx.de", "gmx.net", "web.de", "zoho.com", "fastmail.com", "mail.com", "email.com",
    "qip.ru", "pochta.ru", "hotbox.ru", "km.ru", "e1.ru", "ngs.ru", "sibmail.com", "nm.ru",
    "ukr.net", "i.ua", "meta.ua", "tut.by", "mail.kz", "inbox.lv", "rediffmail.com", "qq.com", "163.com",
})


# Sites where firms without a domain of their own have a page: the page (a subdomain, a path) is the
# firm's address, the site itself no evidence that two records are one firm.
SITE_BUILDERS: frozenset[str] = frozenset({
    "tilda.ws", "wixsite.com", "ucoz.ru", "ucoz.net", "narod.ru", "blogspot.com", "wordpress.com",
    "github.io", "business.site", "nethouse.ru", "mya5.ru", "jimdofree.com", "weebly.com", "webflow.io",
})
SOCIAL_SITES: frozenset[str] = frozenset({
    "vk.com", "vk.ru", "ok.ru", "instagram.com", "facebook.com", "fb.com", "t.me", "telegram.me", "twitter.com",
    "x.com", "youtube.com", "linkedin.com", "avito.ru", "dzen.ru", "wa.me",
})
_URL_PARTS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^/?#]+(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?")
# the words before a page's name that say what kind of page it is: left out ("t.me/s/x" is "t.me/x"),
# or kept where the name is a number of that kind ("ok.ru/group/52365378486421")
_PAGE_PREFIXES = frozenset({"company", "in", "channel", "user", "c", "pg", "s", "@"})
_PAGE_KINDS = frozenset({"group", "groups", "club", "public", "pages", "id", "people", "profile"})
# links to a post, a video, a search...: no firm's address
_CONTENT = frozenset({"p", "reel", "reels", "watch", "video", "videos", "post", "posts", "status", "photo", "photos",
                      "wall", "share", "shorts", "embed", "search", "hashtag", "explore", "feed", "stories", "a"})


def _social_page(host: str) -> str | None:
    """The page's own part of a social site's URL ("romashka", "group/5236537848", "profile.php?id=1000"),
    or None where it names no page of its own (the bare site, a post, a video)."""
    m = _URL_PARTS.match(host)
    words = [w for w in (m["path"] if m else "").split("/") if w]
    if words and words[0] in _PAGE_PREFIXES:
        words = words[1:]
    if not words or words[0] in _CONTENT:
        return None
    if words[0] == "profile.php":
        found = re.search(r"(?:^|&)id=(\d+)", (m["query"] or "") if m else "")
        return f"profile.php?id={found[1]}" if found else None
    if words[0] in _PAGE_KINDS:
        return "/".join(words[:2]) if len(words) > 1 else None
    return words[0]


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    # No suffix-list URLs and no cache directory: the snapshot bundled with tldextract, no network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _ascii(domain: str) -> str:
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


@functools.lru_cache(maxsize=1 << 18)
def _registered(text: str) -> str | None:
    host = text.strip().lower()
    if "@" in host and "://" not in host:
        host = host.rsplit("@", 1)[1]
    host = host.strip().strip(".")
    if not host:
        return None
    parts = _extractor()(host)
    if not parts.suffix or not parts.domain:   # an IP address, "localhost", a bare word
        return None
    domain = f"{parts.domain}.{parts.suffix}".lower()
    if domain in SITE_BUILDERS:  # lutik.tilda.ws and fialka.tilda.ws are two firms' sites
        sub = parts.subdomain.lower()
        sub = "" if sub == "www" else sub.removeprefix("www.")
        return _ascii(f"{sub}.{domain}") if sub else None
    if domain in SOCIAL_SITES:  # vk.com/romashka: the page is the firm's, the site everyone's
        page = _social_page(host)
        return _ascii(domain) + "/" + page if page else None
    return _ascii(domain)


def registered_domain(value: object) -> str | None:
    """The registered domain of a URL, host or e-mail address, in ASCII (IDNA) form:
    "https://www.Romashka.ru/about" -> "romashka.ru", "shop.example.co.uk" -> "example.co.uk",
    "ivan@почта.рф" -> "xn--80a1acny.xn--p1ai". None when there is none (IP address, bare word).
    A page on a site builder or a social site is the firm's own: "lutik.tilda.ws", "vk.com/romashka";
    the bare site (tilda.ws, vk.com) gives None.
    Free-mail domains are returned too: test membership in FREE_MAIL_DOMAINS."""
    text = as_text(value)
    if text is None:
        return None
    try:
        return _registered(text)
    except Exception:  # noqa: BLE001 - odd input must not stop a batch
        log.warning("no domain in %r", value, exc_info=True)
        return None


def normalize_domains(values: pd.Series) -> pd.Series:
    """registered_domain of every value (None where there is none); same index."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    table = np.array([registered_domain(v) for v in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


# -- birthdates ---------------------------------------------------------------------------------

_MONTHS = {
    "янв": 1, "фев": 2, "мар": 3, "апр": 4, "мая": 5, "май": 5, "июн": 6, "июл": 7, "авг": 8, "сен": 9,
    "окт": 10, "ноя": 11, "дек": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
}
_ISO = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?:[ T].*)?")
_DMY = re.compile(r"(\d{1,2})[-./ ](\d{1,2})[-./ ](\d{4}|\d{2})(?:[ T,].*)?")
_COMPACT = re.compile(r"((?:19|20)\d{2})(\d{2})(\d{2})")
_D_MON_Y = re.compile(r"(\d{1,2})\s*([^\W\d_]{3,})\.?\s*(\d{4})(?:\s*(?:г|г\.|года))?")
_MON_D_Y = re.compile(r"([^\W\d_]{3,})\.?\s+(\d{1,2}),?\s+(\d{4})")


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        d = dt.date(year, month, day)
    except ValueError:
        return None
    if d.year < 1900 or d > dt.date.today():
        return None
    return d


def _month(word: str) -> int | None:
    return _MONTHS.get(word.lower()[:3])


def _parse_date_text(text: str) -> dt.date | None:
    s = text.strip().lower()
    if m := _ISO.fullmatch(s):
        return _date(int(m[1]), int(m[2]), int(m[3]))
    if m := _DMY.fullmatch(s):
        year = int(m[3])
        if len(m[3]) == 2:  # 07.03.85: the latest century that does not put it in the future
            year += 2000 if year <= dt.date.today().year % 100 else 1900
        return _date(year, int(m[2]), int(m[1]))   # day first: 7/3/1985 is 7 March
    if m := _COMPACT.fullmatch(s):
        return _date(int(m[1]), int(m[2]), int(m[3]))
    if (m := _D_MON_Y.fullmatch(s)) and (month := _month(m[2])):
        return _date(int(m[3]), month, int(m[1]))
    if (m := _MON_D_Y.fullmatch(s)) and (month := _month(m[1])):
        return _date(int(m[3]), month, int(m[2]))
    return None


def parse_birthdate(raw: object) -> dt.date | None:
    """A date from a date/datetime object or text (1985-03-07, 07.03.1985, 7/3/1985 day first,
    7 марта 1985); None for junk, dates before 1900 and dates in the future."""
    try:
        if isinstance(raw, pd.Timestamp):
            return None if pd.isna(raw) else _date(raw.year, raw.month, raw.day)
        if isinstance(raw, dt.datetime | dt.date):
            return _date(raw.year, raw.month, raw.day)
        if isinstance(raw, np.datetime64):
            return None if np.isnat(raw) else parse_birthdate(pd.Timestamp(raw))
        if isinstance(raw, float | np.floating | int | np.integer) and not isinstance(raw, bool):
            text = as_text(raw)  # 19850307 as a number
        else:
            text = as_text(raw)
        return _parse_date_text(text) if text else None
    except Exception:  # noqa: BLE001 - junk of any type is just "no date"
        return None


def normalize_birthdates(values: pd.Series) -> pd.Series:
    """datetime64 dates (midnight), NaT for junk; same index; once per distinct value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    parsed = [parse_birthdate(v) for v in uniques]
    table = np.array([np.datetime64(d, "ns") if d else np.datetime64("NaT", "ns") for d in parsed]
                     + [np.datetime64("NaT", "ns")], dtype="datetime64[ns]")
    return pd.Series(table[codes], index=values.index)
