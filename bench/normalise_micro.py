"""Micro-benchmark of the vectorised normalisers on synthetic values with many repeats.

Times normalize_phones, normalize_emails, normalize_persons and normalize_companies on N values each
(default 1,000,000), plus normalize_phones on 2,000,000 values of which about 1,500,000 are distinct
(the worst case the matchers issue names). Each normaliser runs once, in this order, in one process,
with its caches cold. Prints wall and CPU seconds (CPU time is the steadier figure on a shared
machine), distinct inputs and the process's peak RSS after each step.

    python -m bench.normalise_micro
    python -m bench.normalise_micro --n 200000 --skip-2m
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from matchers.companies import normalize_companies
from matchers.emails import normalize_emails
from matchers.names import normalize_persons
from matchers.phones import normalize_phones

SYLLABLES = ["ив", "ан", "пет", "ров", "сид", "ор", "куз", "нец", "сми", "рн", "ко", "ва", "ле", "бе", "де",
             "ми", "ха", "со", "ло", "гу", "ба", "ту", "ре", "за"]
FIRST = ["Иван", "Пётр", "Сергей", "Алексей", "Дмитрий", "Саша", "Мария", "Анна", "Елена", "Ольга", "Наталья",
         "Юлия", "Юля", "Дима", "Катя", "Екатерина", "Андрей", "Михаил", "Татьяна", "Ирина", "Ivan", "Sergey",
         "Dmitry", "Anna", "Alexey", "Natalia", "Yulia", "Bill", "John", "Kate"]
MIDDLE = ["Иванович", "Петрович", "Сергеевич", "Алексеевич", "Дмитриевич", "Ивановна", "Петровна", "Сергеевна",
          "Ivanovich", "", None]
TRANSLIT = str.maketrans({"а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ж": "zh", "з": "z",
                          "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
                          "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch",
                          "ш": "sh", "щ": "shch", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya"})
FORMS = ["ООО «{}»", "{} LLC", "ЗАО \"{}\"", "ИП {}", "{}", "АО {}", "\"{}\", OOO", "{} Ltd."]
DOMAINS = ["mail.ru", "gmail.com", "yandex.ru", "inbox.ru", "bk.ru", "romashka.ru", "list.ru", "ya.ru"]


def _surnames(rng: np.random.Generator, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        stem = "".join(rng.choice(SYLLABLES, rng.integers(2, 4))).capitalize()
        out.add(stem + rng.choice(["ов", "ев", "ин", "ова", "ева", "ина", "ский"]))
    return sorted(out)


def persons(rng: np.random.Generator, n: int) -> pd.DataFrame:
    last = np.array(_surnames(rng, 6000), dtype=object)
    first = np.array(FIRST, dtype=object)
    middle = np.array(MIDDLE, dtype=object)
    frame = pd.DataFrame({"last_name": rng.choice(last, n), "first_name": rng.choice(first, n),
                          "middle_name": rng.choice(middle, n)})
    latin = rng.random(n) < 0.1  # some records typed in Latin letters
    frame.loc[latin, "last_name"] = frame.loc[latin, "last_name"].str.lower().str.translate(TRANSLIT).str.title()
    swap = rng.random(n) < 0.05  # first and last name swapped
    frame.loc[swap, ["last_name", "first_name"]] = frame.loc[swap, ["first_name", "last_name"]].to_numpy()
    full = rng.random(n) < 0.03  # only a full name
    frame["full_name"] = None
    frame.loc[full, "full_name"] = (frame.loc[full, "last_name"] + " " + frame.loc[full, "first_name"]).to_numpy()
    frame.loc[full, ["last_name", "first_name", "middle_name"]] = None
    return frame


def _phone_strings(rng: np.random.Generator, nationals: np.ndarray) -> list[str]:
    shapes = rng.integers(0, 6, len(nationals))
    out = []
    for nat, shape in zip(nationals.tolist(), shapes.tolist()):
        if shape == 0:
            out.append("8" + nat)
        elif shape == 1:
            out.append(f"+7 ({nat[:3]}) {nat[3:6]}-{nat[6:8]}-{nat[8:]}")
        elif shape == 2:
            out.append(f"8 {nat[:3]} {nat[3:]}")
        elif shape == 3:
            out.append("+7" + nat)
        elif shape == 4:
            out.append(f"8 ({nat[:3]}) {nat[3:6]}-{nat[6:8]}-{nat[8:]} доб. {nat[-2:]}")
        else:
            out.append(nat)
    return out


AREA_CODES = ["495", "499", "812", "343", "383", "846", "861", "863", "831", "843", "347", "351", "391", "473"]


def _nationals(rng: np.random.Generator, k: int) -> np.ndarray:
    """Mostly mobile numbers (9xx), some landlines of big cities, a few invalid ones (6xx)."""
    kind = rng.random(k)
    area = rng.choice(np.array(AREA_CODES, dtype=object), k)
    mobile = rng.integers(900, 1000, k)
    rest = rng.integers(0, 10**7, k)
    out = []
    for x, a, m, r in zip(kind.tolist(), area.tolist(), mobile.tolist(), rest.tolist()):
        code = str(m) if x < 0.7 else a if x < 0.98 else "6" + str(m)[1:]
        out.append(f"{code}{r:07d}")
    return np.array(out, dtype=object)


def phones(rng: np.random.Generator, n: int, distinct_numbers: int) -> pd.Series:
    strings = np.array(_phone_strings(rng, _nationals(rng, distinct_numbers)), dtype=object)
    values = rng.choice(strings, n)
    junk = rng.random(n) < 0.02
    values[junk] = rng.choice(np.array(["нет", "-", "+7 (000) 000-00-00", "12345", "+44 20 7946 0958",
                                        "00 49 30 1234567", None], dtype=object), junk.sum())
    return pd.Series(values)


def phones_2m(rng: np.random.Generator) -> pd.Series:
    """2,000,000 values, about 1,500,000 of them distinct."""
    strings = _phone_strings(rng, _nationals(rng, 1_500_000))
    repeats = rng.choice(np.array(strings, dtype=object), 500_000)
    return pd.Series(np.concatenate([np.array(strings, dtype=object), repeats]))


def emails(rng: np.random.Generator, n: int, distinct: int) -> pd.Series:
    users = [f"{rng.choice(['ivan', 'petr', 'anna', 'olga', 'info', 'sales'])}.{i}" for i in range(distinct)]
    addr = np.array([f"{u}@{d}" for u, d in zip(users, rng.choice(DOMAINS, distinct))], dtype=object)
    values = rng.choice(addr, n)
    upper = rng.random(n) < 0.1
    values[upper] = [v.upper() for v in values[upper]]
    junk = rng.random(n) < 0.02
    values[junk] = rng.choice(np.array(["test@test.ru", "нет", "ivan@mail", "иван@почта.рф", None], dtype=object),
                              junk.sum())
    return pd.Series(values)


def companies(rng: np.random.Generator, n: int, distinct: int) -> pd.Series:
    names = np.array(_surnames(rng, distinct), dtype=object)
    forms = np.array(FORMS, dtype=object)
    return pd.Series([f.format(t) for f, t in zip(rng.choice(forms, n), rng.choice(names, n))], dtype=object)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(label: str, func, values) -> None:
    distinct = len(values.drop_duplicates()) if isinstance(values, pd.DataFrame) else values.nunique(dropna=False)
    start, cpu = time.perf_counter(), time.process_time()
    out = func(values)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(out) == len(values)
    print(f"{label:<28} {len(values):>10,} values {distinct:>10,} distinct {seconds:7.2f} s wall "
          f"{cpu:7.2f} s CPU   peak RSS {_peak_mb():,.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="values per normaliser (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-2m", action="store_true", help="skip the 2,000,000-phone case")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.n

    data = [
        ("normalize_persons", normalize_persons, persons(rng, n)),
        ("normalize_phones", normalize_phones, phones(rng, n, distinct_numbers=n * 2 // 5)),
        ("normalize_emails", normalize_emails, emails(rng, n, distinct=n * 2 // 5)),
        ("normalize_companies", normalize_companies, companies(rng, n, distinct=max(10, n // 20))),
    ]
    print(f"generated in one process; peak RSS {_peak_mb():,.0f} MB", flush=True)
    for label, func, values in data:
        _time(label, func, values)
    if not args.skip_2m:
        del data
        _time("normalize_phones (2M/1.5M)", normalize_phones, phones_2m(rng))


if __name__ == "__main__":
    main()
