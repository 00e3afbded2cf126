"""Normalised keys and validity checks for multi-value fields, behind one function each.

The matchers' normalisers (``matchers.phones.parse_phone``, ``matchers.emails.parse_email``) are used
when they are importable; until then a simple stand-in gives the same kind of key (E.164 for phones
through ``phonenumbers``, lower-case for emails), so switching is a matter of the two imports below.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata

import phonenumbers

log = logging.getLogger(__name__)

try:  # the colleague's normalisers, once they exist
    from matchers.phones import parse_phone
except ImportError:
    parse_phone = None
try:
    from matchers.emails import parse_email
except ImportError:
    parse_email = None

_EXT = re.compile(r"(?i)\s*(?:доб\.?|ext\.?|extension|x|#)\s*\d+\s*$")
_NON_DIGIT = re.compile(r"\D+")
_SPACES = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _fallback_phone(raw: str, region: str = "RU") -> tuple[str, bool]:
    """(key, valid): E.164 when phonenumbers can parse it, else the bare digits."""
    text = _EXT.sub("", raw or "")
    try:
        num = phonenumbers.parse(text, region)
        if phonenumbers.is_possible_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), phonenumbers.is_valid_number(num)
    except phonenumbers.NumberParseException:
        pass
    return _NON_DIGIT.sub("", text), False


def phone_key(raw: str) -> tuple[str, bool]:
    if (several := _several_numbers(raw)) is not None:
        keys = [phone_key(n) for n in several]
        return "|".join(k for k, _valid in keys), all(valid for _k, valid in keys)
    if parse_phone is not None:
        p = parse_phone(raw, region="RU")
        return _with_ext(p.e164 or _NON_DIGIT.sub("", raw or ""), p.ext), bool(p.valid and not p.placeholder)
    return _fallback_phone(raw)


def email_key(raw: str) -> tuple[str, bool]:
    if parse_email is not None:
        e = parse_email(raw)
        return (e.email or (raw or "").strip().lower()), bool(e.valid and not e.placeholder)
    text = (raw or "").strip().lower()
    return text, bool(_EMAIL.match(text))


def web_key(raw: str) -> tuple[str, bool]:
    text = (raw or "").strip().lower()
    text = re.sub(r"^[a-z]+://", "", text)
    text = re.sub(r"^www\.", "", text).rstrip("/")
    return text, "." in text and " " not in text


def im_key(raw: str) -> tuple[str, bool]:
    text = _SPACES.sub("", (raw or "").lower()).lstrip("@")
    return text, bool(text)


_KEYS = {"phone": phone_key, "email": email_key, "web": web_key, "im": im_key}


def comm_key(comm_type: str, raw: str) -> str:
    """The value two communications are compared by: equal keys are repeats of one another."""
    return f"{comm_type}:{_KEYS[comm_type](raw)[0]}"


def comm_keys(types: list[str], values: list[str]) -> list[str]:
    """comm_key of many communications at once: phones and e-mails through the matchers' bulk
    normalisers (each distinct value parsed once), the rest one by one."""
    keys: list[str | None] = [None] * len(types)
    for comm_type, bulk in (("phone", _phone_keys), ("email", _email_keys)):
        at = [i for i, t in enumerate(types) if t == comm_type]
        if at and bulk is not None:
            for i, key in zip(at, bulk([values[i] for i in at])):
                keys[i] = f"{comm_type}:{key}"
    return [k if k is not None else comm_key(t, v) for k, t, v in zip(keys, types, values)]


def _bulk_phone_keys(values: list[str]) -> list[str]:
    import pandas as pd
    from matchers.phones import normalize_phones

    parsed = normalize_phones(pd.Series(values, dtype=object), region="RU")
    return [_with_ext(e or _NON_DIGIT.sub("", raw or ""), ext) if _several_numbers(raw) is None else phone_key(raw)[0]
            for e, ext, raw in zip(parsed["e164"].tolist(), parsed["ext"].tolist(), values)]


def _several_numbers(raw: str) -> list[str] | None:
    """The numbers of a phone value holding several ("+79165551207; +79165551208", one per line: stored so
    by an older import or typed so in the CRM), else None. Its key is theirs together, so that it repeats
    only a value of the same numbers: read as its first number, a merge dropped it as a repeat of that
    number and lost the others."""
    from matchers.phones import LIST_SEPARATORS, several_numbers

    if raw and any(sep in raw for sep in LIST_SEPARATORS):  # (most values hold none: the split only where one may)

        numbers = several_numbers(raw)
        return numbers if len(numbers) > 1 else None
    return None


def _with_ext(number: str, ext: object) -> str:
    """A phone's key with its extension: "+74999574074 #601" is not a repeat of the switchboard
    "+74999574074" (a merge kept one of them and lost the extension)."""
    return f"{number};ext={ext}" if isinstance(ext, str) and ext else number


def _bulk_email_keys(values: list[str]) -> list[str]:
    import pandas as pd
    from matchers.emails import normalize_emails

    emails = normalize_emails(pd.Series(values, dtype=object))["email"].tolist()
    return [e or (raw or "").strip().lower() for e, raw in zip(emails, values)]


_phone_keys = _bulk_phone_keys if parse_phone is not None else None
_email_keys = _bulk_email_keys if parse_email is not None else None


def comm_valid(comm_type: str, raw: str) -> bool:
    return _KEYS[comm_type](raw)[1]


def inn_valid(raw: str) -> bool:
    """A Russian tax id (ИНН) with right check digits: 10 digits for an organisation, 12 for a person,
    read as the matching reads it (matchers.identifiers.parse_inn: "ИНН 7707083893", with its KPP)."""
    from matchers.identifiers import parse_inn

    return parse_inn(raw)[1]


def _tax_id_key(raw) -> str:
    """A tax id as a value: its INN, and its KPP where one is written with it ("7707083893/770701001"):
    a head office and its branch (or two branches) are two values, for a person to choose."""
    from matchers.identifiers import parse_inn, parse_kpp

    inn, valid = parse_inn(raw)
    if not valid:
        return _NON_DIGIT.sub("", str(raw))
    kpp = parse_kpp(raw)
    return f"{inn}/{kpp}" if kpp else inn


def validator_for(field: str):
    """The validity check ``prefer_valid`` uses for a field, or None when there is none."""
    if field == "tax_id":
        return inn_valid
    if field in ("website", "web"):
        return lambda v: web_key(v)[1]
    if "phone" in field:
        return lambda v: phone_key(v)[1]
    if "email" in field:
        return lambda v: email_key(v)[1]
    return None


def value_key_for(field: str):
    """How two values of a field are compared: its normal form where there is one, else text_key."""
    if field in ("website", "web"):
        return lambda v: web_key(str(v))[0]
    if field == "tax_id":
        return _tax_id_key
    if "phone" in field:
        return lambda v: phone_key(str(v))[0]
    if "email" in field:
        return lambda v: email_key(str(v))[0]
    return text_key


def conflict_key_for(entity_type: str, field: str):
    """How two filled values of a field are told apart when a rule looks for a conflict: beyond case,
    spacing and ё/е (text_key), a company's title by its name without quotes and legal form ("ООО
    «Ромашка»" and "Ромашка, ООО" are one name), a person's name by its transliteration, the usual
    romanisations folded (_name_key: "Иванов"/"Ivanov", "Андрей"/"Andrey"/"Andrei" are one name). Two
    spellings of one name are no choice for a person: the rule's value (the primary's) stays. A nickname
    ("Ваня" for "Иван"), a typo ("Ивановв") or another form ("Петрова", "Сергеев") is another value and
    still asks."""
    if (entity_type, field) in (("company", "title"), ("lead", "company_title")):
        return _title_key
    if field in ("last_name", "first_name", "middle_name"):
        return _name_key
    return text_key


# Letter for letter (Иванов -> ivanov), not the matching's lenient key, which also forgives typos
# ("Ивановв" is "ivanov" there): a typo against the right spelling is still a choice for a person.
def conflict_alike_for(entity_type: str, field: str):
    """Beyond conflict_key_for's keys, which two filled values of a field are one value for a rule's
    conflict check (a function of two values, or None): a person's first or last name written by ear in
    the other script (Mary / Мэри, Smith / Смит, Johnson / Джонсон), which no key can join, the readings
    being many to many (Сара is Sarah and Sara)."""
    if field in ("last_name", "first_name") and entity_type in ("contact", "lead"):
        return functools.partial(_by_ear, first_name=field == "first_name")
    return None


_CYRILLIC_NAME = re.compile(r"[а-яё' -]+")
_LATIN_NAME = re.compile(r"[a-z' -]+")


@functools.lru_cache(maxsize=1 << 16)
def _by_ear(a, b, first_name: bool) -> bool:
    """Whether ``a`` and ``b``, one in Latin letters and the other in Cyrillic, are one name as the
    matching reads names across scripts: the Cyrillic one read as an English name (Мэри: Mary,
    Джонсон: Johnson; matchers.names.english_readings) gives the Latin one; for a surname of three
    consonants or more, also the two loose keys of names written by ear (Smith / Смит, Brown / Браун;
    matchers.compare.loose_key), which for a first name would also join Anna and Инна."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    a, b = text_key(a), text_key(b)
    if _LATIN_NAME.fullmatch(a) and _CYRILLIC_NAME.fullmatch(b):
        latin, cyrillic = a, b
    elif _CYRILLIC_NAME.fullmatch(a) and _LATIN_NAME.fullmatch(b):
        latin, cyrillic = b, a
    else:
        return False
    from matchers.compare import loose_key
    from matchers.names import english_readings, translit

    latin_key, cyrillic_key = translit(latin), translit(cyrillic)
    if latin_key and latin_key in english_readings(cyrillic):
        return True
    if first_name:
        return False
    # the loose key drops a v after a vowel (an English w: Brown / Браун), which is also the -ov, -ev of a
    # Russian surname (Sergeev would be Сергей): not where either name has one
    if _VOWEL_V.search(latin) or _VOWEL_V.search(cyrillic_key):  # (the Latin as written: its w is v in its key)
        return False
    loose = loose_key(latin_key)  # (three consonants at least: Hall / Холл would also be Хилл, Hill)
    return len(loose.replace("a", "")) >= 3 and loose == loose_key(cyrillic_key)


_VOWEL_V = re.compile(r"(?<=[aeiouy])v(?![aeiouy])")


def _title_key(value):
    from matchers.companies import parse_company
    from matchers.names import _CYR_MAP

    return (parse_company(value).clean or text_key(value)).translate(_CYR_MAP) if isinstance(value, str) else value


def _name_key(value):
    """A person's name (surname, first name or patronymic) as the conflict check compares it: every
    usual Latin spelling of a Russian name (ICAO 9303 passports, GOST, BGN/PCGN, informal ones) and
    its Cyrillic spelling give one key, and two Cyrillic spellings give one key only where no Latin
    spelling tells them apart. Андрей, Andrey, Andrei, Andrej -> "andrei"; Мария, Maria, Mariya,
    Mariia -> "maria"; Васильев, Vasiliev, Vasilyev, Vasilev, Vasil'ev -> "vasilev"; Людмила, Ludmila,
    Lyudmila -> "ludmila"; Артём, Artem, Artyom, Artiom -> "artem".

    A form of a name stays a form: Юля is not Юлия, Даря not Дарья (short forms: a consonant and я at a
    word's end), Ivanna not Ivan, Petrova not Petrov. Doubled letters stay too (Иванов/Ивановв).
    Latin -ia/-ya after a consonant at a word's end reads as the full name (Yulia, Natalya: Юлия,
    Наталья), so a Latin short form (Tanya, Nadya) asks against the Cyrillic one (Таня, Надя)."""
    return _fold_name(text_key(value)) if isinstance(value, str) else value


@functools.cache
def _name_cyrillic() -> dict[int, str]:
    """Cyrillic letter for letter, as the matchers write it (matchers.names._CYR_MAP: й -> i, я -> ia,
    ю -> iu, ы -> y, ь and ъ dropped as ICAO drops them), but х as kh: "сх" (skh) stays apart from "ш"."""
    from matchers.names import _CYR_MAP

    return {**_CYR_MAP, ord("х"): "kh"}


_V = "aeiou"
_C = "bcdfghklmnpqrstvxz"  # consonants of a key (j, w and y are folded away first)
# Latin letters with marks as Russian is romanised with them (BGN/PCGN ë for ё, ISO 9 and Czech or
# Polish ž, č, š); other marks are dropped (Andréi).
_MARKED = str.maketrans({"ë": "e", "ž": "zh", "č": "ch", "š": "sh", "ŝ": "shch"})
_LATIN_MARK = re.compile(r"[\u00c0-\u024f]")
# Latin spellings of one Russian name onto one, in order. Only letters a romanisation writes for the same
# Cyrillic letter meet; nothing is dropped that could be another letter (no collapsing of doubled letters).
_LATIN_FOLDS = [
    (re.compile("['\"`\u2019\u02bc\u02b9\u02ba]"), ""),           # ь, ъ as apostrophes: Natal'ya, Ob"yedkov
    (re.compile(r"tsch"), "ch"),                                  # ч in German: Alexandrowitsch, Tschernow
    (re.compile(r"shch|shh|sch"), "shch"),                        # щ: Shchukin, Schukin, Shhukin
    (re.compile(r"cz|tc(?!h)"), "ts"),                            # ц in GOST 7.79 and GOST 2006: Czvetkov, Zaitcev
    (re.compile(r"x"), "ks"),                                     # Alexey, Xenia
    (re.compile(r"ph"), "f"),
    (re.compile(r"w"), "v"),                                      # German: Iwanow
    (re.compile(r"tz"), "ts"),                                    # ц: Tzvetkov
    (re.compile(rf"(?<![zsckh])h"), "kh"),                        # х: Mihail = Mikhail (not zh, sh, ch)
    (re.compile(r"(?<=[oe])ff\b"), "v"),                          # Ivanoff, Smirnoff
    # j as y, but not a word's first j before e or o (John, Jon, Jen: English names, not Russian ones)
    (re.compile(r"(?<=[a-z])j|j(?![eo])"), "y"),                  # Andrej, Natalja, Julija, Dmitrij
    (re.compile(rf"(?<=[{_C}])yi"), "i"),                         # ьи: Ilyin = Ильин, Belyi
    (re.compile(r"ye"), "e"),                                     # е, ье: Yevgeny, Andreyev, Vasilyev
    # A word's first yo before s is ио, йо: no Russian word starts with ёс (Yosif = Иосиф, Yoshida); before
    # other letters it stays ё (Yolkin = Ёлкин, Yozhikov = Ёжиков), so Yolanda cannot be told from them.
    (re.compile(r"\byo(?=s)"), "io"),
    (re.compile(rf"(?<![{_V}])yo"), "e"),                         # ё, ьё: Pyotr, Solovyov (after a vowel
                                                                  # it is йо: Mayorov = Майоров)
    # ё, ьё written io: Artiom, Semion, Fiodor, Soloviov. Latin io is also ио, and after d, r and v that is
    # the usual reading (the Greek and Latin Dio-, -dion, -rion, Vio- names: Dionis, Diomid, Rodion,
    # Larion, Marion, Violetta), where reading ё would make Dionis Денис, not Дионис. The -ёв, -ёва
    # ending has no -иов twin (Ponomariov, Zveriov): ё after any consonant. After r, io before z, zh, g, m
    # is ё too (Seriozha, Beriozkin, Seriogin, Cheriomushkin: the Greek and Latin ones are -rion, Prior-,
    # Patriot-, Coriol-, Arios-), and so is -trion- (Matriona = Матрёна; Marion, Larion, Orion stay ио).
    # After d it stays ио (Diomin may be Дёмин or Диомин, as Diomid is Диомид, not Демид).
    (re.compile(rf"(?<=[{_C}])(?<![drv])io(?=[{_C}])|(?<=[{_C}])io(?=va?\b)|(?<=r)io(?=[zgm])|(?<=tr)io(?=n)"),
     "e"),
    (re.compile(rf"y(?=[aiu])|(?<=[{_V}])y"), "i"),               # я, ю, й: Natalya, Yuri, Sergey
]
# A consonant's я at a word's end (Юля, Надя, Даря: short forms) before the letter-for-letter map, which
# would write it as ья and ия are written (Юлия, Дарья): "ja", which no Latin spelling gives.
_SOFT_END = re.compile(r"(?<=[бвгджзклмнпрстфхцчшщ])я\b")
# Both scripts once written in Latin letters, in order: what the spellings of one letter still differ in.
_KEY_FOLDS = [
    (re.compile(r"sch"), "shch"),                                 # сч as щ: Счастливцев, Schastlivtsev
    (re.compile(r"iia"), "ia"),                                   # ия: Mariia, Mariya, Maria = Мария
    (re.compile(rf"(?<=[{_C}])ie(?=v)"), "e"),                    # -ьев, -иев as -iev, -yev, -ev: Vasiliev,
                                                                  # Vasilev = Васильев, Dmitriev = Дмитриев
    (re.compile(r"liu"), "lu"),                                   # лю as lu: Ludmila, Lyuba, Kluev
    (re.compile(r"(?:yy|yi|ii|y)\b"), "i"),                       # -ий, -ый: Dmitry, Dmitriy, Dmitrii
]


@functools.lru_cache(maxsize=1 << 16)  # (a planner folds the same few thousand names again and again)
def _fold_name(text: str) -> str:
    text = text.translate(_MARKED)
    if _LATIN_MARK.search(text):
        text = _LATIN_MARK.sub(lambda m: unicodedata.normalize("NFKD", m.group())[0], text)
    for pattern, repl in _LATIN_FOLDS:  # (Cyrillic letters match none of these)
        text = pattern.sub(repl, text)
    text = _SOFT_END.sub("ja", text).translate(_name_cyrillic())
    for pattern, repl in _KEY_FOLDS:
        text = pattern.sub(repl, text)
    return text


def text_key(value):
    """How single values are compared for conflicts: case, spacing and ё/е do not count."""
    if isinstance(value, str):
        return _SPACES.sub(" ", value).strip().casefold().replace("ё", "е")
    return value
