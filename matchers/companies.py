"""Company titles: legal forms and quotes stripped, one transliterated key.

ООО «Ромашка», Romashka LLC and "ROMASHKA, OOO" all give the key "romashka". Legal forms are
recognised on the transliterated words, so ООО and OOO, ЗАО and ZAO, "и Ко" and "& Co" are the same
form whichever alphabet they were typed in; they are stripped from the start and the end
(repeatedly: "ООО ТД «Ромашка» Ltd."), and right after a branch word ("Филиал ПАО Сбербанк"), never
leaving an empty title. A sole trader's title is his name: "ИП Иванов Иван Иванович", "Иванов И.И. ИП"
and "IP Ivanov I.I." all give the key "ivanov i i" (surname and initials). A city note after the title
("ООО «Ёлочка» (Москва)", "Гранит, г. Москва") stays in the clean title but not in the key; "N1" is
"№1" and "+" is "плюс" ("Лютик+" is "Лютик Плюс", not "Лютик").
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, replace

import pandas as pd

from matchers.names import (INITIAL_KEYS, _translit_word, as_text, clean_text, frame_from_unique_rows,
                           is_known_first_name, is_patronymic, parse_full_name, parse_person)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Company:
    clean: str                  # title without legal form and quotes, clean_text'ed, script as written
    key: str                    # translit of each word, space-joined, order kept (a city note left out)
    legal_form: str | None      # normalised: "ooo", "zao", "ip", "llc", "gmbh"...
    tokens: tuple[str, ...]     # the key's words, sorted, without repeats
    person: str = ""            # a sole trader's surname and initials ("ivanov i i"), then also the key


EMPTY_COMPANY = Company("", "", None, ())
COMPANY_COLUMNS = ("clean", "key", "legal_form", "tokens", "person")

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
    # insurers (СПАО «Ингосстрах», САО «ВСК»), partnerships of owners, public institutions (their keys
    # may meet: МАОУ's is МАУ's, which is no harm, both are stripped)
    "spao": ("СПАО", "Страховое публичное акционерное общество"),
    "sao": ("САО", "Страховое акционерное общество"),
    "aozt": ("АОЗТ", "Акционерное общество закрытого типа"),
    "tszh": ("ТСЖ", "Товарищество собственников жилья"),
    "tsn": ("ТСН", "Товарищество собственников недвижимости"),
    "snt": ("СНТ", "Садоводческое некоммерческое товарищество"),
    "zhsk": ("ЖСК", "Жилищно-строительный кооператив"),
    "gau": ("ГАУ", "Государственное автономное учреждение"),
    "mau": ("МАУ", "МАОУ", "Муниципальное автономное учреждение"),
    "gku": ("ГКУ", "Государственное казённое учреждение"),
    "mku": ("МКУ", "МКОУ", "Муниципальное казённое учреждение"),
    "fku": ("ФКУ", "Федеральное казённое учреждение"),
    "gbou": ("ГБОУ", "Государственное бюджетное общеобразовательное учреждение"),
    "mbou": ("МБОУ", "Муниципальное бюджетное общеобразовательное учреждение"),
    "mbdou": ("МБДОУ", "Муниципальное бюджетное дошкольное образовательное учреждение"),
    "madou": ("МАДОУ", "Муниципальное автономное дошкольное образовательное учреждение"),
    "gbdou": ("ГБДОУ",),
    "gbuz": ("ГБУЗ", "Государственное бюджетное учреждение здравоохранения"),
    "gauz": ("ГАУЗ", "Государственное автономное учреждение здравоохранения"),
    "fgbou": ("ФГБОУ",),
    "fgaou": ("ФГАОУ",),
    "gbpou": ("ГБПОУ",),
    "gapou": ("ГАПОУ",),
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

# Words naming a branch: a legal form right after one is the parent's ("Филиал ПАО Сбербанк", "Московский
# филиал ООО «Ромашка»", "Moscow branch of Sberbank PJSC"), so it is dropped like one at the start. The branch
# words and their qualifier stay in the key: a branch is often a record of its own in a CRM (the parent's INN,
# its own KPP), so "Филиал ПАО Сбербанк" / "ПАО Сбербанк" compare "filial sberbank" with "sberbank": one
# word in common to block on, not the same title.
BRANCH_WORDS = ("филиал", "филиала", "представительство", "представительства", "отделение", "отделения",
                "подразделение", "подразделения", "branch")

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


@functools.cache
def _branch_keys() -> tuple[frozenset[str], frozenset[str]]:
    """Keys of the branch words, and of the words that may stand between one and the form ("of")."""
    return frozenset(k for w in BRANCH_WORDS for k in _phrase_key(w)), frozenset(_phrase_key("of"))


def _strip_forms(keys: list[str]) -> tuple[list[int], str | None]:
    """Positions of the title proper within ``keys`` and the first legal form found."""
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
    dropped: set[int] = set()
    branch, between = _branch_keys()
    for i in range(start, end - 1):
        if keys[i] not in branch:
            continue
        at = i + 1
        while at < end:  # forms (repeatedly, as at the start) and "of" after the branch word
            if keys[at] in between:
                at += 1
                continue
            phrase = next((f for f in by_first.get(keys[at], ()) if tuple(keys[at:at + len(f)]) == f), None)
            if phrase is None:
                break
            dropped.update(range(at, at + len(phrase)))
            found = found or forms[phrase]
            at += len(phrase)
    return [i for i in range(start, end) if i not in dropped], found


def _sole_trader(words: list[str], form: str | None) -> str:
    """Surname and initials ("ivanov i i") when the title is a person's name, else "". The name is
    parsed as a contact's (names.parse_full_name / parse_person), so "ИП Иванов Иван Иванович", "Иванов И.И. ИП" and
    "IP Ivanov I.I." agree and "ИП Иванова А.П." does not. A person's name is: a surname and one or two
    initials after it ("Иванов И.И."; after ИП also before it: "ИП И.И. Иванов"), or three words of
    which one is a patronymic ("Иванов Иван Иванович"); after ИП also three words with a known first
    name in the middle (a typo may hide the patronymic: "ИП Петров Андрей Виктрович"; "ИП Цветочный мир
    Плюс" is no one's name). It counts
    without ИП too, so that a record whose form was dropped or changed still meets the trader's others."""
    if len(words) not in (2, 3):
        return ""
    keys = [_translit_word(w) for w in words]
    # digits, or a legal form left in the middle ("Иванович ИП Иванов"), are no part of a name; a
    # single letter is an initial, though "О"'s key is that of ООО ("ИП Сидоров О.П.")
    if any(not w.isalpha() or (len(w) > 1 and (k,) in _forms()) for w, k in zip(words, keys)):
        return ""
    # an initial by its key, so that the key's own words read alike ("Ч." and "ch")
    single = [k in INITIAL_KEYS for k in keys]
    initials = not single[0] and all(single[1:]) and not is_patronymic(words[0])
    # initials first ("ИП И.И. Иванов") only after ИП: "ООО Т.Д. Ромашка" is a trading house
    initials = initials or (form == "ip" and not single[-1] and all(single[:-1]) and not is_patronymic(words[-1]))
    patronymic = len(words) == 3 and any(map(is_patronymic, words))
    full = len(words) == 3 and not any(single) and (patronymic or (form == "ip" and is_known_first_name(words[1])))
    if not (initials or full):
        return ""
    # initials or a patronymic show the order ("Иван Иванович Иванов"); else that of a Russian title
    person = parse_person(*words) if full and not patronymic else parse_full_name(" ".join(words))
    if person.last not in keys or person.last in INITIAL_KEYS or not person.initials:  # one word, no initial
        return ""
    # the initials as keys of their own: a fixed point of the key ("ч" gives "c", whose key is "k")
    return " ".join([person.last, *(_translit_word(c) or c for c in person.initials)])


# "N1", "No. 1", "Nº 1" typed for "№1" (an upper-case N only: the key's "n1" is left as it is)
_NUMBER_SIGN = re.compile(r"(?<![^\W\d_])(?:N[oº°]?|№)\.?\s*(?=\d)")
# "Лютик+" is "Лютик Плюс" (a "+" before digits is a phone's)
_PLUS = re.compile(r"\+(?!\s*\d)")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
# a note after the title: "(Москва)", "(г. Нижний Новгород)"; "г. Москва", ", г.Санкт-Петербург"
_PAREN_NOTE = re.compile(r"\(([^()]*)\)[\s.,;]*$")
_CITY_NOTE = re.compile(r"(?<![^\W\d_])г\.\s*[^\W\d_]+(?:[\s-]+[^\W\d_]+){0,2}[\s.]*$", re.IGNORECASE)
_CITY_WORD = re.compile(r"^\s*(?:г\.|г\s|город\s)\s*", re.IGNORECASE)


def _plus(m: re.Match) -> str:
    before = re.findall(r"[^\W\d_]", m.string[:m.start()])
    return " плюс " if not before or _CYRILLIC.match(before[-1]) else " plus "


def _has_form(keys: list[str]) -> bool:
    by_first, _ = _forms_by_word()
    return any(tuple(keys[i:i + len(f)]) == f for i, k in enumerate(keys) for f in by_first.get(k, ()))


def _split_note(text: str) -> tuple[str, str]:
    """The title and a city note after it ("ООО «Ёлочка» (Москва)", "ООО «Гранит» г. Москва"): the
    note is no part of the key, so the title meets the same firm's records without it (the city is
    the address's to compare). In brackets, a note is one to three capitalised words, after "г." or
    not: "(Северо-Западный банк)" or "(бывш. «Бета»)" is no city. A note with digits ("Ромашка (2)"),
    a branch word ("(Филиал Казань)") or a legal form ("(ИП Иванов)", "(ООО)") is part of the title,
    as is one with no title before it. Returns the title and the note's clean words ("" when none)."""
    branch, _ = _branch_keys()
    for m in (_PAREN_NOTE.search(text), _CITY_NOTE.search(text)):
        if m is None:
            continue
        if m.re is _PAREN_NOTE:
            city = _CITY_WORD.sub("", m.group(1)).split()
            if not 1 <= len(city) <= 3 or not all(w[0].isupper() for w in city):
                continue
        words = clean_text(_QUOTES.sub(" ", m.group(0))).split()
        keys = [k for k in map(_translit_word, words) if k]
        title = [k for k in map(_translit_word, clean_text(_QUOTES.sub(" ", text[:m.start()])).split()) if k]
        if (not keys or not title or tuple(title) in _forms() or any(c.isdigit() for w in words for c in w)
                or any(k in branch for k in keys) or _has_form(keys)):
            continue
        return text[:m.start()], " ".join(words)
    return text, ""


def _parse(text: str) -> Company:
    text = _PLUS.sub(_plus, _NUMBER_SIGN.sub(" ", text))
    title, note = _split_note(text)
    c = _parse_title(title)
    return replace(c, clean=f"{c.clean} {note}".strip()) if note else c


def _parse_title(text: str) -> Company:
    text = _QUOTES.sub(" ", text)
    dotted: set[str] = set()  # the words that were letters with dots (И.И.): initials to a name
    if "." in text:
        def undot(m: re.Match) -> str:
            word = m.group(0).replace(".", "")
            dotted.add(clean_text(word))
            return word
        text = _DOTTED.sub(undot, text)
    words = clean_text(text).split()
    pairs = [(w, k) for w, k in ((w, _translit_word(w)) for w in words) if k]
    if not pairs:
        return EMPTY_COMPANY
    # a single letter is no legal form by itself: the key of "О." (an initial) is that of "ООО"
    keys = [k if len(w) > 1 or k not in INITIAL_KEYS or (k,) not in _forms() else "" for w, k in pairs]
    kept_at, form = _strip_forms(keys)
    if form is None:  # a title that is nothing but a legal form keeps its words and names the form
        form = _forms().get(tuple(keys))
    kept = [pairs[i] for i in kept_at]
    clean = " ".join(w for w, _ in kept)
    spelled = " ".join(" ".join(w) if w in dotted else w for w, _ in kept).split()  # И.И. as two initials
    person = _sole_trader(spelled, form)
    key_words = person.split() if person else [k for _, k in kept]
    if not person and dotted and _sole_trader(key_words, None):
        # a group of initials that reads as a name word once merged ("Иванов Иванович Ю.А." ->
        # "ivanov ivanovich iua"): spelled out, so that the key reads as this title again
        key_words = [k for k in map(_translit_word, spelled) if k]
    return Company(clean, " ".join(key_words), form, tuple(sorted(set(key_words))), person)


def parse_company(title: object) -> Company:
    """A company title: legal form (ООО, ЗАО, ИП, LLC, Inc., GmbH...) and quotes of every kind
    removed, words transliterated for the key. Never raises."""
    text = as_text(title)
    if text is None:
        return EMPTY_COMPANY
    try:
        return _parse(text)
    except Exception:  # noqa: BLE001 - one odd title must not stop a batch
        log.warning("company title %r could not be parsed", title, exc_info=True)
        return EMPTY_COMPANY


def normalize_companies(values: pd.Series) -> pd.DataFrame:
    """Columns clean, key, legal_form, tokens (space-joined), person; same index; once per distinct value."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    rows = []
    for raw in uniques:
        c = parse_company(raw)
        rows.append((c.clean, c.key, c.legal_form, " ".join(c.tokens), c.person))
    rows.append(("", "", None, "", ""))
    return frame_from_unique_rows(rows, codes, values.index, COMPANY_COLUMNS)
