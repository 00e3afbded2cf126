"""The registry of named field rules: how one field of the merged record is chosen from a group.

Every rule has the same signature: ``rule(candidates, ctx) -> Outcome``. ``candidates`` holds one
:class:`Candidate` per record, the primary first, then the duplicates in group order. A rule says which
value wins, which record it came from (None when it is computed from several), and whether it is a
*conflict*: two different filled values that the rule cannot settle, for a person to choose.

Values are compared after :func:`merge_rules.normalise.text_key` (case, spacing, ё/е ignored), so
"Иванов" and "иванов " are one value and the primary's spelling is kept; ``fill_empty`` also reads a
company title without quotes and legal form and a person's name by its transliteration
(:func:`merge_rules.normalise.conflict_key_for`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from merge_rules.normalise import comm_key, conflict_alike_for, conflict_key_for, text_key, validator_for, value_key_for

# Kinds of field a rule can be used on (see settings.field_kinds)
TEXT, DATE, NUMBER, REF, FLAG, MULTI = "text", "date", "number", "ref", "flag", "multi"
SINGLE = frozenset({TEXT, DATE, NUMBER, REF, FLAG})


@dataclass(frozen=True)
class Candidate:
    record_id: int
    value: Any
    is_primary: bool = False
    created_at: dt.datetime | None = None
    modified_at: dt.datetime | None = None


@dataclass(frozen=True)
class RuleContext:
    entity_type: str
    field: str


@dataclass
class Outcome:
    value: Any
    source_id: int | None  # None: computed from several records (sum, concat, union)
    conflict: bool = False
    note: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    func: Callable[[Sequence[Candidate], RuleContext], Outcome]
    kinds: frozenset[str]
    description: str
    can_conflict: bool = False
    # when every candidate holds the same value (==, of one type), the outcome is the primary's value,
    # from the primary, with no conflict and no note: the planner then need not call the rule (most
    # fields of most groups hold one value, or none)
    unanimous: bool = False


RULES: dict[str, Rule] = {}


class RuleError(ValueError):
    """A rule met values it cannot work with; the message names the field and the values."""


def register(name: str, kinds: set[str] | frozenset[str], description: str, *, can_conflict: bool = False,
             unanimous: bool = False):
    def wrap(func):
        RULES[name] = Rule(name, func, frozenset(kinds), description, can_conflict, unanimous)
        return func
    return wrap


def get_rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(f"there is no merge rule {name!r}; known rules: {', '.join(sorted(RULES))}") from None


def filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple)):
        return bool(value)
    return True


def _primary(cands: Sequence[Candidate]) -> Candidate:
    return next((c for c in cands if c.is_primary), cands[0])


def _settle(cands: Sequence[Candidate], note: str = "", key=text_key, alike=None) -> Outcome:
    """The first candidate wins; a conflict when the candidates hold more than one distinct value.
    ``alike``: a function telling two values that are one although their keys differ; then a
    conflict is a value neither of the winner's key nor alike the winner's."""
    first = cands[0]
    # equal values have equal keys: the keys are worked out only when the values differ
    conflict = (any(c.value != first.value for c in cands[1:])
                and len({key(c.value) for c in cands}) > 1)
    if conflict and alike is not None:
        won = key(first.value)
        conflict = any(key(c.value) != won and not alike(first.value, c.value) for c in cands[1:])
    return Outcome(first.value, first.record_id, conflict, note)


def _filled(cands: Sequence[Candidate]) -> list[Candidate]:
    return [c for c in cands if filled(c.value)]


def _best_by(cands: Sequence[Candidate], key: Callable[[Candidate], Any], *, highest: bool) -> Outcome:
    """The filled value whose ``key`` is highest (or lowest); ties between different values conflict."""
    full = _filled(cands)
    if not full:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    keys = [key(c) for c in full]
    best = max(keys) if highest else min(keys)
    return _settle([c for c, k in zip(full, keys) if k == best])


@register("keep_primary", SINGLE | {MULTI}, "the primary's value, even when it is empty", unanimous=True)
def keep_primary(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    p = _primary(cands)
    return Outcome(p.value, p.record_id)


@register("fill_empty", SINGLE, "the primary's value if filled, else the first filled duplicate's "
          "(Bitrix24); different filled values are a conflict", can_conflict=True, unanimous=True)
def fill_empty(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    full = _filled(cands)
    if not full:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    return _settle(full, key=conflict_key_for(ctx.entity_type, ctx.field),
                   alike=conflict_alike_for(ctx.entity_type, ctx.field))


_EPOCH = dt.datetime.min


@register("most_recent", SINGLE, "the value of the most recently modified record that has one", can_conflict=True)
def most_recent(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    return _best_by(cands, lambda c: c.modified_at or _EPOCH, highest=True)


@register("oldest", SINGLE, "the value of the earliest created record that has one", can_conflict=True)
def oldest(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    return _best_by(cands, lambda c: c.created_at or _EPOCH, highest=False)


@register("longest", {TEXT}, "the longest text", can_conflict=True, unanimous=True)
def longest(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    return _best_by(cands, lambda c: len(str(c.value).strip()), highest=True)


@register("most_common", SINGLE, "the value most records share", can_conflict=True, unanimous=True)
def most_common(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    full = _filled(cands)
    if not full:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    counts = Counter(text_key(c.value) for c in full)
    top = max(counts.values())
    winners = [k for k, n in counts.items() if n == top]
    first = next(c for c in full if text_key(c.value) in winners)
    return Outcome(first.value, first.record_id, len(winners) > 1)


def _extreme(cands: Sequence[Candidate], ctx: RuleContext, pick) -> Outcome:
    full = _filled(cands)
    if not full:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    try:
        best = pick(c.value for c in full)
    except TypeError as exc:
        values = ", ".join(f"#{c.record_id}={c.value!r}" for c in full)
        raise RuleError(f"{ctx.entity_type}.{ctx.field}: cannot compare the values {values} ({exc})") from exc
    first = next(c for c in full if c.value == best)
    return Outcome(first.value, first.record_id)


@register("max", {DATE, NUMBER}, "the largest value (latest date)", unanimous=True)
def max_rule(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    return _extreme(cands, ctx, max)


@register("min", {DATE, NUMBER}, "the smallest value (earliest date)", unanimous=True)
def min_rule(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    return _extreme(cands, ctx, min)


@register("sum", {NUMBER}, "the sum of the filled values")
def sum_rule(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    full = _filled(cands)
    if not full:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    bad = [c for c in full if isinstance(c.value, bool) or not isinstance(c.value, (int, float, Decimal))]
    if bad:
        values = ", ".join(f"#{c.record_id}={c.value!r}" for c in bad)
        raise RuleError(f"{ctx.entity_type}.{ctx.field}: 'sum' needs numbers, got {values}")
    total = full[0].value
    for c in full[1:]:
        total = total + c.value
    return Outcome(total, full[0].record_id if len(full) == 1 else None)


def concat_header(ctx: RuleContext, c: Candidate) -> str:
    when = c.modified_at or c.created_at
    date = f" ({when.date().isoformat()})" if when else ""
    return f"--- from {ctx.entity_type} #{c.record_id}{date} ---"


@register("concat", {TEXT}, "every distinct text, the primary's first, the others under a dated separator",
          unanimous=True)
def concat(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    seen, parts = set(), []
    for c in _filled(cands):
        k = text_key(c.value)
        if k not in seen:
            seen.add(k)
            parts.append(c)
    if not parts:
        p = _primary(cands)
        return Outcome(p.value, p.record_id)
    if len(parts) == 1:
        return Outcome(parts[0].value, parts[0].record_id)
    blocks = [c.value.strip() if c.is_primary else f"{concat_header(ctx, c)}\n{c.value.strip()}" for c in parts]
    return Outcome("\n\n".join(blocks), None)


@register("prefer_valid", {TEXT}, "a valid value (valid INN, phone, email, website) over an invalid one; "
          "then as fill_empty", can_conflict=True, unanimous=True)
def prefer_valid(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    check = validator_for(ctx.field)
    if check is None:
        raise RuleError(f"{ctx.entity_type}.{ctx.field}: 'prefer_valid' has no validity check for this field "
                        "(there is one for tax_id, website, and fields named like phone or email)")
    full = _filled(cands)
    valid = [c for c in full if check(str(c.value))]
    if not valid:
        return fill_empty(cands, ctx)
    # "romashka.ru" and "https://www.romashka.ru/" are one website: compare the normalised forms
    return _settle(valid, "" if len(valid) == len(full) else "invalid values passed over",
                   key=value_key_for(ctx.field))


@dataclass
class United:
    """The result of uniting multi-value fields: what is kept, what repeats a kept value."""
    kept: list[tuple[Any, str]] = field(default_factory=list)        # (item, key)
    repeats: list[tuple[Any, Any]] = field(default_factory=list)     # (item, the kept item it repeats)


def unite(items: Sequence[tuple[Any, str, str]]) -> United:
    """Unite ``(item, type, raw value)`` in order: the first of each normalised value is kept."""
    out, first = United(), {}
    for item, comm_type, raw in items:
        key = comm_key(comm_type, raw)
        if key in first:
            out.repeats.append((item, first[key]))
        else:
            first[key] = item
            out.kept.append((item, key))
    return out


@register("union", {MULTI}, "all values without repeats (compared normalised, raw values kept)")
def union(cands: Sequence[Candidate], ctx: RuleContext) -> Outcome:
    items = [(raw, ctx.field, raw) for c in cands for raw in (c.value or [])]
    return Outcome([raw for raw, _key in unite(items).kept], None)
