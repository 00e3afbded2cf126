"""E-mail addresses: syntax by email-validator (never DNS), one spelling, provider rules, placeholders.

Representation: ``email`` is the local part lower-cased (Unicode NFC, as email-validator gives it;
practically every provider ignores case there) + "@" + the domain in its ASCII (IDNA/Punycode)
form, lower-cased: ``Ivan@Почта.рф`` -> ``ivan@xn--80a1acny.xn--p1ai``. ``domain`` is that ASCII
domain, the same form ``identifiers.registered_domain`` returns.

``canonical`` applies provider rules, for the providers below only (PROVIDER_RULES):
- gmail.com, googlemail.com -> gmail.com: dots in the local part ignored, "+tag" dropped;
- yandex.ru, ya.ru, yandex.com, yandex.by, yandex.kz, yandex.ua -> yandex.ru (one mailbox under
  every Yandex domain): "+tag" dropped, "." and "-" in the login are the same -> "-";
- outlook.com, hotmail.com, live.com, msn.com, icloud.com, me.com, mac.com, protonmail.com,
  proton.me, pm.me, fastmail.com: "+tag" dropped (the domain kept: different mailboxes).
Everything else keeps its local part as written (lower-cased).

Addresses that mean "no e-mail" (test@test.ru, no@email, noemail@..., none@..., anything at an
example.* or test.* domain, a@a.ru, aaa@...) are placeholders: ``placeholder`` True, the address
fields None.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from email_validator import EmailNotValidError, validate_email

from matchers.names import as_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Email:
    email: str | None       # local (lower-cased) @ ASCII/IDNA domain
    canonical: str | None   # provider rules applied (see module doc); = email elsewhere
    local: str | None
    domain: str | None      # ASCII (IDNA) domain
    valid: bool
    placeholder: bool


EMAIL_COLUMNS = ("email", "canonical", "local", "domain", "valid", "placeholder")
EMPTY = (None, None, None, None, False, False)
PLACEHOLDER = (None, None, None, None, False, True)
INVALID = EMPTY

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
_YANDEX = frozenset({"yandex.ru", "ya.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua"})
_PLUS_ONLY = frozenset({"outlook.com", "hotmail.com", "live.com", "msn.com", "icloud.com", "me.com", "mac.com",
                        "protonmail.com", "proton.me", "pm.me", "fastmail.com"})
PROVIDER_RULES = {
    **{d: "gmail.com: dots ignored, +tag dropped" for d in _GMAIL},
    **{d: "yandex.ru: +tag dropped, '.' = '-'" for d in _YANDEX},
    **{d: "+tag dropped" for d in _PLUS_ONLY},
}

_PLACEHOLDER_WORDS = frozenset({
    "нет", "нету", "-", "--", "---", "—", "n/a", "na", "none", "no", "null", "nil", "nan", "unknown", "нет почты",
    "не указан", "не указано", "неизвестно", "отсутствует", "email", "e-mail", "mail", "@", "x", "xx", "xxx", "?",
})
_PLACEHOLDER_LOCALS = frozenset({
    "test", "tests", "testing", "тест", "no", "noemail", "no-email", "no_email", "no.email", "nomail", "no-mail",
    "no_mail", "none", "null", "nil", "nobody", "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply",
    "do_not_reply", "na", "n-a", "nope", "нет", "fake", "example", "sample", "asdf", "asd", "qwe", "qwerty",
    "zxc", "йцукен", "123", "1234", "12345", "123456", "xxx", "unknown", "empty", "nothing", "netu", "net",
})
# first label of the domain (example.com, test.ru, noemail.ru, ...)
_PLACEHOLDER_DOMAIN_LABELS = frozenset({
    "example", "test", "tests", "noemail", "nomail", "no-email", "none", "null", "fake", "nodomain", "nomail",
    "no-mail", "email", "mail-test", "asdf", "asd", "qwe", "qwerty",
})
_PLACEHOLDER_DOMAINS = frozenset({"mail.mail", "email.email", "test.test", "x.x", "a.a", "no.no"})

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# plainly valid ASCII addresses: dot-atom local part, hostname labels, a TLD ending in a letter
_FAST = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@((?:{_LABEL}\.)+{_LABEL})")
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
# _FAST for pyarrow.compute (RE2) as a full match; RE2's "$" is the end of the text only (never before a "\n")
_FAST_FULL = rf"^(?:{_FAST.pattern})$"
_SPECIAL_TLD_END = rf"\.(?:{'|'.join(sorted(_SPECIAL_TLDS))})$"
_SPACES = re.compile(r"\s+")


def _prepare(text: str) -> str:
    """Light repairs of how addresses get typed: mailto:, <...>, "Name <addr>", spaces, a trailing dot."""
    s = text.strip()
    if "<" in s and s.endswith(">"):
        s = s[s.rindex("<") + 1:-1]
    if s[:7].lower() == "mailto:":
        s = s[7:]
    s = _SPACES.sub("", s).strip(".,;:")
    if s.count("@") == 1 and "," in s:
        local, _, domain = s.partition("@")
        head, _, rest = domain.partition(",")
        if _TLD_AFTER_COMMA.fullmatch(rest):
            s = local + "@" + head + "." + rest   # "mail,ru": a comma typed for a dot
        elif "." in head:
            s = local + "@" + head   # "ivan@mail.ru, нет": a note after the address (read as its domain, it was valid)
    return s


_TLD_AFTER_COMMA = re.compile(r"[A-Za-z]{2,6}")


_LIST_SEPARATOR = re.compile(r"[,;\s]+")


def several_addresses(text: str) -> list[str]:
    """The addresses of a cell holding several, as written ("a@x.ru, b@x.ru", "a@x.ru; b@x.ru", one per line):
    split at ",", ";" and whitespace where every piece is an address (one "@" with text either side, no quote);
    otherwise ``[text]``: one address, or one written with a comma or a space that is not a list ("Ivan Petrov
    <ivan@mail.ru>", "ivan@mail,ru", '"Ivan, Jr"@romashka.ru')."""
    pieces = [p for p in _LIST_SEPARATOR.split(text) if p]
    if len(pieces) > 1 and all(p.count("@") == 1 and not p.startswith("@") and not p.endswith("@") and '"' not in p
                               for p in pieces):
        return pieces
    return [text]


def is_placeholder_email(text: str) -> bool:
    """True for values that stand for "no e-mail" (see module doc)."""
    lowered = text.strip().lower()
    if lowered in _PLACEHOLDER_WORDS:
        return True
    if "@" not in lowered:
        return not any(ch.isalnum() for ch in lowered)
    local, _, domain = lowered.rpartition("@")
    base = local.split("+", 1)[0]
    if not base or base in _PLACEHOLDER_LOCALS:
        return True
    if len(base) >= 2 and base.count(base[0]) == len(base):     # aaa@, 111@
        return True
    label = domain.split(".", 1)[0]
    if domain in _PLACEHOLDER_DOMAINS or label in _PLACEHOLDER_DOMAIN_LABELS:
        return True
    if label == base and (len(base) <= 3 or base in _PLACEHOLDER_LOCALS):   # a@a.ru, qwe@qwe.ru
        return True
    return False


def _canonical(local: str, domain: str) -> str:
    if domain in _GMAIL:
        return local.split("+", 1)[0].replace(".", "") + "@gmail.com"
    if domain in _YANDEX:
        return local.split("+", 1)[0].replace(".", "-") + "@yandex.ru"
    if domain in _PLUS_ONLY:
        return local.split("+", 1)[0] + "@" + domain
    return local + "@" + domain


def _result(local: str, domain: str, provider_rules: bool) -> tuple:
    local = local.lower()
    domain = domain.lower()
    email = local + "@" + domain
    canonical = _canonical(local, domain) if provider_rules else email
    if canonical.startswith("@"):  # "+tag" only: keep the address as written
        canonical = email
    return (email, canonical, local, domain, True, False)


def _fast(s: str, provider_rules: bool) -> tuple | None:
    """The answer for a plainly valid ASCII address, or None to ask email-validator."""
    m = _FAST.fullmatch(s)
    if m is None or len(s) > 254:
        return None
    local, domain = m.group(1), m.group(2)
    tld = domain.rsplit(".", 1)[1]
    if (len(domain) > 253 or "--" in domain or not tld[-1].isalpha()
            or tld.lower() in _SPECIAL_TLDS or domain.lower().endswith((".localhost", ".local"))):
        return None
    return _result(local, domain, provider_rules)


def _parse_text(text: str | None, provider_rules: bool) -> tuple:
    if text is None:
        return EMPTY
    s = _prepare(text)
    if not s or is_placeholder_email(s) or (text != s and is_placeholder_email(text)):
        return PLACEHOLDER
    if s.isascii():
        fast = _fast(s, provider_rules)
        if fast is not None:
            return fast
    return _slow(s, provider_rules)


def _slow(s: str, provider_rules: bool) -> tuple:
    """Through email-validator: international addresses, and everything the fast path declines."""
    if s.count("@") != 1:
        return INVALID
    try:
        info = validate_email(s, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return INVALID
    local_part = unicodedata.normalize("NFC", info.local_part)
    return _result(local_part, info.ascii_domain, provider_rules)


def parse_email(raw: object, provider_rules: bool = True) -> Email:
    """One address as written. Never raises: junk gives valid=False, placeholders placeholder=True."""
    try:
        return Email(*_parse_text(as_text(raw), provider_rules))
    except Exception:  # noqa: BLE001 - a validator surprise must not stop a batch
        log.warning("e-mail %r could not be parsed", raw, exc_info=True)
        return Email(*INVALID)


def normalize_emails(values: pd.Series, provider_rules: bool = True) -> pd.DataFrame:
    """Columns email, canonical, local, domain, valid, placeholder; same index as ``values``; each
    distinct value is checked once: plain ASCII addresses all together (_bulk), the rest one by one."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    # one slot per distinct value and a last one for missing values (code -1): EMPTY
    out = {col: np.full(len(uniques) + 1, None, dtype=object) for col in EMAIL_COLUMNS[:4]}
    out["valid"] = np.zeros(len(uniques) + 1, dtype=bool)
    out["placeholder"] = np.zeros(len(uniques) + 1, dtype=bool)
    for i in _bulk(uniques, provider_rules, out):
        raw = uniques[i]
        text = raw.strip() if type(raw) is str else as_text(raw)
        if not text:
            continue   # EMPTY, as the slots start
        try:
            row = _parse_text(text, provider_rules)
        except Exception:  # noqa: BLE001
            log.warning("e-mail %r could not be parsed", raw, exc_info=True)
            row = INVALID
        for col, value in zip(EMAIL_COLUMNS, row):
            out[col][i] = value
    return pd.DataFrame({col: out[col][codes] for col in EMAIL_COLUMNS}, index=values.index)


def _bulk(uniques: np.ndarray, provider_rules: bool, out: dict[str, np.ndarray]) -> np.ndarray:
    """_parse_text for all plain addresses at once, written into ``out``; returns the positions of
    the other values, for _parse_text one by one.

    Plain = an ASCII str that _FAST matches whole and _fast accepts. Such a text has no spaces, "<",
    "mailto:", comma or edge punctuation, so _prepare leaves it unchanged, and exactly one "@" (neither
    _FAST part allows one): what remains of _parse_text is is_placeholder_email and _result, done here
    on columns (pyarrow.compute) instead of one value at a time."""
    pos = np.flatnonzero(np.fromiter((type(v) is str and v.isascii() for v in uniques), bool, len(uniques)))
    texts = pa.array(uniques[pos], type=pa.string())
    matched = pc.and_(pc.match_substring_regex(texts, _FAST_FULL), pc.less_equal(pc.binary_length(texts), 254))
    pos, lowered = pos[_np(matched)], pc.ascii_lower(texts.filter(matched))
    halves = pc.split_pattern(lowered, "@")
    local, domain = pc.list_element(halves, 0), pc.list_element(halves, 1)
    # what _fast declines (a domain of <= 253 characters follows from the 254 above)
    fast = ~(_np(pc.match_substring(domain, "--")) | ~_np(pc.match_substring_regex(domain, "[a-z]$"))
             | _np(pc.match_substring_regex(domain, _SPECIAL_TLD_END)))
    handled = np.zeros(len(uniques), dtype=bool)
    handled[pos[fast]] = True

    # is_placeholder_email, for a text with one "@" (so none of the bare placeholder words)
    base, label = _before(local, "+"), _before(domain, ".")
    base_len = _np(pc.binary_length(base))
    fake_local = _is_in(base, _PLACEHOLDER_LOCALS)
    # aaa@, 111@: every character the same as the next one
    repeated = (base_len >= 2) & _np(pc.equal(pc.utf8_slice_codeunits(base, 1), pc.utf8_slice_codeunits(base, 0, -1)))
    same = _np(pc.equal(label, base)) & (base_len <= 3)   # a@a.ru, qwe@qwe.ru (fake_local already counts)
    placeholder = ((base_len == 0) | fake_local | repeated | same | _is_in(domain, _PLACEHOLDER_DOMAINS)
                   | _is_in(label, _PLACEHOLDER_DOMAIN_LABELS))
    out["placeholder"][pos[fast & placeholder]] = True

    # _result: lowered is local + "@" + domain; base is never empty here, so canonical never starts with "@"
    keep = fast & ~placeholder
    pos, keep = pos[keep], pa.array(keep)
    lowered, local, domain, base = (a.filter(keep) for a in (lowered, local, domain, base))
    out["email"][pos] = out["canonical"][pos] = _np(lowered)
    out["local"][pos] = _np(local)
    out["domain"][pos] = _np(domain)
    out["valid"][pos] = True
    if provider_rules:   # _canonical
        for domains, dot, new_domain in ((_GMAIL, "", "gmail.com"), (_YANDEX, "-", "yandex.ru"),
                                         (_PLUS_ONLY, None, None)):
            mask = _is_in(domain, domains)
            picked = pa.array(mask)
            login = base.filter(picked)
            if dot is not None:   # gmail ignores dots, yandex reads them as "-"
                login = pc.replace_substring(login, ".", dot)
            joined = pc.binary_join_element_wise(login, new_domain or domain.filter(picked), "@")
            out["canonical"][pos[mask]] = _np(joined)
    return np.flatnonzero(~handled)


def _is_in(texts: pa.Array, words: frozenset[str]) -> np.ndarray:
    return _np(pc.is_in(texts, value_set=pa.array(sorted(words), type=pa.string())))


def _before(texts: pa.Array, sep: str) -> pa.Array:
    """Each text up to its first ``sep`` (all of it without one)."""
    return pc.list_element(pc.split_pattern(texts, sep, max_splits=1), 0)


def _np(values: pa.Array) -> np.ndarray:
    """Booleans as a bool array, strings as an object array of Python str."""
    return values.to_numpy(zero_copy_only=False)
