"""JSON-safe values and rows, exact both ways, and row fingerprints.

Plans and before/after images are stored as JSON. Dates, datetimes and Decimals are written as small
tagged objects (``{"$dt": "2024-05-01T10:00:00.123456"}``) so that they come back as the same type and
value whatever column or backend they are read against.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

_TAGS = ("$d", "$dt", "$n")
_PLAIN = frozenset({type(None), bool, int, str, float})


def encode(value: Any) -> Any:
    """One value as JSON-safe data (date, datetime, Decimal tagged; containers recursively)."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is dict or t is list:  # the common containers, without the ABC checks below
        return {str(k): encode(v) for k, v in value.items()} if t is dict else [encode(v) for v in value]
    if isinstance(value, (bool, int, str, float)):
        return value
    if isinstance(value, dt.datetime):  # before date: datetime is a date subclass
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$n": str(value)}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} value ({value!r}) in a merge record")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, raw), = value.items()
            if tag == "$dt":
                return dt.datetime.fromisoformat(raw)
            if tag == "$d":
                return dt.date.fromisoformat(raw)
            if tag == "$n":
                return Decimal(raw)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if type(v) in _PLAIN else encode(v) for k, v in row.items()}


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: decode(v) for k, v in row.items()}


def fingerprint(row: Mapping[str, Any]) -> str:
    """A short hash of a row's values, stable across processes (column order does not matter).
    Built from repr(), which is exact and stable for the types a row holds (str, int, bool, None,
    date, datetime, Decimal, float), and much cheaper than JSON for thousands of merges.

    The text hashed is ``repr(sorted(row.items()))``; it is written through one %-format per set of
    columns (``[('id', %r), ...]``): the same text at about half the cost of building and repr-ing
    the sorted list of pairs (a million-contact run fingerprints millions of rows)."""
    template, values = _row_format(tuple(row))
    return hashlib.blake2b((template % values(row)).encode(), digest_size=10).hexdigest()


@functools.lru_cache(maxsize=256)
def _row_format(keys: tuple) -> tuple[str, Callable[[Mapping[str, Any]], tuple]]:
    """For rows with these columns (in their order): the text of repr(sorted(row.items())) with a %r
    for each value, and the function giving the values in that order."""
    order = sorted(keys)
    template = "[" + ", ".join("(" + repr(k).replace("%", "%%") + ", %r)" for k in order) + "]"
    # itemgetter of two or more columns gives a tuple; of one, the bare value
    values = operator.itemgetter(*order) if len(order) > 1 else (lambda row: tuple(row[k] for k in order))
    return template, values
