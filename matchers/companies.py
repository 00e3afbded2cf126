"""Company titles: legal forms and quotes stripped, one transliterated key.

ООО «Ромашка», Romashka LLC and "ROMASHKA, OOO" all give the key "romashka". Legal forms are
recognised on the transliterated words, so ООО and OOO, ЗАО and ZAO, "и Ко" and "& Co" are the same
form whichever alphabet they were typed in; they are stripped from the start and the end only
(repeatedly: "ООО ТД «Ромашка» Ltd." is not a form in the middle), never leaving an empty title.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import pandas as pd

from matchers.names import _translit_word, as_text, clean_text, frame_from_unique_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Company:
    clean: str                  # title without legal form and quotes, clean_text'ed, script as written
    key: str                    # translit of each word, space-joined, order kept
    legal_form: str | None      # normalised: "ooo", "zao", "ip", "llc", "gmbh"...
    tokens: tuple[str, ...]     # the key's words, sorted, without repeats


EMPTY_COMPANY = Company("", "", None, ())
COMPANY_COLUMNS = ("clean", "key", "legal_form", "tokens")

# normalised form -> the ways it is written (each phrase is matched word by word on translit keys)
LEGAL_FORMS: dict[str, tuple[str, ...]] = {
    "ooo": ("ООО", "Общество с ограниченной ответственностью", "OOO"),
    "zao": ("ЗАО", "Закрытое акционерное общество", "CJSC", "Closed Joint Stock Company"),
    "oao": ("ОАО", "Открытое акционерное общество", "OJSC", "Open Joint Stock Company"),
    "pao": ("ПАО", "Публичное акционерное общество", "PJSC", "Public Joint Stock Company"),
    "nao": ("НАО", "Непубличное акционерное общество"),
    "ao": ("АО", "Акционерное общество", "JSC", "Joint Stock Company", "Joint-Stock Company"),
    "ip": ("ИП", "Индивидуальный предприниматель", "ПБОЮЛ", "Sole Proprietor", "Individual Entrepreneur"),
    "nko": ("НКО", "Некоммерческая организация"),
    "ano": ("АНО", "Автономная некоммерческая организация"),
    "gup": ("ГУП", "Государственное унитарное предприятие", "SUE", "State Unitary Enterprise"),
    "mup": ("МУП", "Муниципальное унитарное предприятие"),
    "fgup": ("ФГУП", "Федеральное государственное унитарное предприятие"),
    "gbu": ("ГБУ", "Государственное бюджетное учреждение"),
    "mbu": ("МБУ", "Муниципальное бюджетное учреждение"),
    "fgbu": ("ФГБУ", "Федеральное государственное бюджетное учреждение"),
    "too": ("ТОО", "Товарищество с ограниченной ответственностью"),
    "odo": ("ОДО", "Общество с дополнительной ответственностью"),
    "chp": ("ЧП", "Частное предприятие"),
    "kfh": ("КФХ", "Крестьянское фермерское хозяйство", "Крестьянское (фермерское) хозяйство"),
    "llc": ("LLC", "Limited Liability Company", "L.L.C.", "ЛЛС", "ЛЛК"),
    "llp": ("LLP", "Limited Liability Partnership"),
    "plc": ("PLC", "Public Limited Company", "ПЛС", "ПЛК"),
    "inc": ("Inc", "Incorporated", "Инк", "Инкорпорейтед"),
    "ltd": ("Ltd", "Limited", "Лтд", "Лимитед"),
    "corp": ("Corp", "Corporation", "Корп", "Корпорейшн"),
    "co": ("Co", "Company", "и Ко", "& Co", "and Co"),
    "gmbh": ("GmbH",),
    "ag": ("AG",),
    "kg": ("KG",),
    "sa": ("SA", "S.A."),
    "sarl": ("SARL",),
    "sas": ("SAS",),
    "srl": ("SRL", "S.R.L."),
    "bv": ("BV", "B.V."),
    "nv": ("NV", "N.V."),
    "oy": ("Oy",),
    "pte": ("Pte",),
    "pty": ("Pty",),
    "ltda": ("Ltda",),
}

# a quote unless it stands between two letters (McDonald's keeps its apostrophe, so it joins)
_QUOTES = re.compile(r"[«»„“”‟\"‹›]|['’‘`](?![^\W\d_])|(?<![^\W\d_])['’‘`]")
# L.L.C., S.A., И.П.: letters with dots become one word
_DOTTED = re.compile(r"(?<!\w)(?:[^\W\d_]\.){1,}[^\W\d_](?:\.|(?!\w))")


def _phrase_key(phrase: str) -> tuple[str, ...]:
    text = _DOTTED.sub(lambda m: m.group(0).replace(".", ""), phrase)
    return tuple(k for k in (_translit_word(w) for w in clean_text(text).split()) if k)


@functools.cache
def _forms() -> dict[tuple[str, ...], str]:
    """Key words of every way of writing a legal form -> its normalised name."""
    out: dict[tuple[str, ...], str] = {}
    for form, phrases in LEGAL_FORMS.items():
        for phrase in phrases + (form,):
            key = _phrase_key(phrase)
            if key:
                out.setdefault(key, form)
    return out


@functools.cache
def _forms_by_word() -> tuple[dict[str, list[tuple[str, ...]]], dict[str, list[tuple[str, ...]]]]:
    """The phrases by their first and by their last word, longest first (full phrases beat "ao")."""
    by_first: dict[str, list[tuple[str, ...]]] = {}
    by_last: dict[str, list[tuple[str, ...]]] = {}
    for phrase in sorted(_forms(), key=len, reverse=True):
        by_first.setdefault(phrase[0], []).append(phrase)
        by_last.setdefault(phrase[-1], []).append(phrase)
    return by_first, by_last


def _strip_forms(keys: list[str]) -> tuple[int, int, str | None]:
    """Start and end of the title proper within ``keys`` and the first legal form found."""
    forms = _forms()
    by_first, by_last = _forms_by_word()
    start, end = 0, len(keys)
    found = None
    changed = True
    while changed and end - start > 1:
        changed = False
        for phrase in by_first.get(keys[start], ()):
            n = len(phrase)
            if end - start > n and tuple(keys[start:start + n]) == phrase:
                start += n
                found = found or forms[phrase]
                changed = True
                break
        if changed or end - start <= 1:
            continue
        for phrase in by_last.get(keys[end - 1], ()):
            n = len(phrase)
            if end - start > n and tuple(keys[end - n:end]) == phrase:
                end -= n
                found = found or forms[phrase]
                changed = True
                break
    return start, end, found


def _parse(text: str) -> tuple[str, str, str | None, tuple[str, ...]]:
    text = _QUOTES.sub(" ", text)
    if "." in text:
        text = _DOTTED.sub(lambda m: m.group(0).replace(".", ""), text)
    words = clean_text(text).split()
    pairs = [(w, k) for w, k in ((w, _translit_word(w)) for w in words) if k]
    if not pairs:
        return ("", "", None, ())
    keys = [k for _, k in pairs]
    start, end, form = _strip_forms(keys)
    if form is None:  # a title that is nothing but a legal form keeps its words and names the form
        form = _forms().get(tuple(keys))
    kept = pairs[start:end]
    key_words = [k for _, k in kept]
    return (" ".join(w for w, _ in kept), " ".join(key_words), form, tuple(sorted(set(key_words))))


def parse_company(title: object) -> Company:
    """A company title: legal form (ООО, ЗАО, ИП, LLC, Inc., GmbH...) and quotes of every kind
    removed, words transliterated for the key. Never raises."""
    text = as_text(title)
    if text is None:
        return EMPTY_COMPANY
    try:
        return Company(*_parse(text))
    except Exception:  # noqa: BLE001 - one odd title must not stop a batch
        log.warning("company title %r could not be parsed", title, exc_info=True)
        return EMPTY_COMPANY


def normalize_companies(values: pd.Series) -> pd.DataFrame:
    """Columns clean, key, legal_form, tokens (space-joined); same index; once per distinct value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    rows = []
    for raw in uniques:
        c = parse_company(raw)
        rows.append((c.clean, c.key, c.legal_form, " ".join(c.tokens)))
    rows.append(("", "", None, ""))
    return frame_from_unique_rows(rows, codes, values.index, COMPANY_COLUMNS)
