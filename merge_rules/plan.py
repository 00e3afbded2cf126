"""Merge plans: what a merge will do, worked out before anything is written (a dry run).

``build_plan`` is pure: from a group's snapshot and the settings it decides every field of the merged
record (value, source record, rule, conflict), unites the communications, lists every linked row that
will move, warns about managers who would lose access, and fingerprints every row it read so that
applying refuses a plan whose rows have changed since.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import operator
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from dataclasses import fields as dataclass_fields
from decimal import Decimal
from typing import Any

import orjson

from crm import schema
from crm.gcpause import collector_paused
from merge_rules.codec import decode, encode
from merge_rules.normalise import comm_key, comm_keys, text_key
from merge_rules.rules import MULTI, Candidate, RuleContext, RuleError, filled, get_rule
from merge_rules.settings import MergeSettings, field_kinds
from merge_rules.snapshot import LINKS, Snapshot, read_snapshots

log = logging.getLogger(__name__)

PLURAL = {"contact": "contacts", "company": "companies", "lead": "leads"}


@dataclass
class FieldDecision:
    value: Any
    source_id: int | None  # the record the value comes from; None when computed from several
    rule: str
    conflict: bool = False
    candidates: list[tuple[int, Any]] = field(default_factory=list)  # (record id, value) when a conflict
    resolved_by: str | None = None  # "choice" or "policy:<name>" when a conflict was settled
    note: str = ""


@dataclass
class Conflict:
    field: str
    candidates: list[tuple[int, Any]]
    value: Any
    source_id: int | None
    resolved_by: str | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None


@dataclass
class CommDecision:
    id: int
    entity_id: int
    type: str
    kind: str
    value: str
    key: str
    action: str  # keep (the primary's), move (a duplicate's, to the primary), repeat (dropped), drop
    repeat_of: int | None = None


@dataclass
class LinkMove:
    table: str
    key: dict[str, int]  # the row's primary key before the merge
    column: str
    from_id: int
    to_id: int
    action: str = "move"  # move; merge (collides with a row of the primary: folded into it); update
    is_primary: bool | None = None  # contact_companies: the flag of the resulting row


@dataclass
class AccessWarning:
    user_id: int
    name: str
    record_ids: list[int]
    message: str


@dataclass
class MergePlan:
    entity_type: str
    primary_id: int
    duplicate_ids: list[int]
    fields: dict[str, FieldDecision] = field(default_factory=dict)
    communications: list[CommDecision] = field(default_factory=list)
    links: list[LinkMove] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    access_warnings: list[AccessWarning] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # the rows as read
    delete_mode: str = "soft"
    conflict_policy: str = "ask"
    group_id: str | None = None
    problems: list[str] = field(default_factory=list)  # a plan with problems cannot be applied
    planned_at: dt.datetime | None = None

    @property
    def member_ids(self) -> list[int]:
        return [self.primary_id, *self.duplicate_ids]

    @property
    def unresolved(self) -> list[Conflict]:
        return [c for c in self.conflicts if not c.resolved]

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """Fields of the primary whose value the merge changes: field -> (old, new)."""
        old = self.records.get(self.primary_id, {})
        return {f: (old.get(f), d.value) for f, d in self.fields.items() if old.get(f) != d.value}

    def link_counts(self) -> Counter:
        return Counter(m.table for m in self.links if m.action != "update")

    def summary(self) -> str:
        """What the merge will do, in words a person reads (no table names, "1 deal" / "2 deals")."""
        def n_(n: int, one: str, many: str) -> str:
            return f"{n} {one if n == 1 else many}"

        # the linked tables in words; a company's contact_companies rows link it to contacts
        link_words = {"deals": ("deal", "deals"), "invoices": ("invoice", "invoices"), "quotes": ("quote", "quotes"),
                      "activities": ("activity", "activities"), "history": ("history event", "history events"),
                      "leads": ("lead", "leads"),
                      "contact_companies": (("contact link", "contact links") if self.entity_type == "company"
                                            else ("company link", "company links"))}
        label = self.entity_type if len(self.duplicate_ids) == 1 else PLURAL[self.entity_type]
        dups = ", ".join(f"#{i}" for i in self.duplicate_ids)
        if self.problems:
            return f"Cannot merge {label} {dups} into #{self.primary_id}: " + "; ".join(self.problems)
        parts = [f"Merge {label} {dups} into #{self.primary_id}"]
        changed = [f.replace("_", " ") for f in self.changes() if f != "created_at"]  # "middle name"
        if changed:
            parts.append(f"{n_(len(changed), 'field changes', 'fields change')} ({', '.join(changed)})")
        if self.conflicts:
            open_ = [c.field.replace("_", " ") for c in self.unresolved]
            parts.append(n_(len(self.conflicts), "conflict", "conflicts")
                         + (f", to choose: {', '.join(open_)}" if open_ else ", resolved"))
        moved = sum(1 for c in self.communications if c.action == "move")
        repeats = sum(1 for c in self.communications if c.action in ("repeat", "drop"))
        comms = ([n_(moved, "contact detail moves", "contact details move")] if moved else []) + \
            ([n_(repeats, "repeated contact detail dropped", "repeated contact details dropped")] if repeats else [])
        if comms:
            parts.append(", ".join(comms))
        counts = self.link_counts()
        if counts:
            words = {t: link_words.get(t, (t, t)) for t in counts}
            parts.append("linked records move: " + ", ".join(
                n_(counts[t], *words[t]) for t in sorted(counts, key=lambda t: words[t][1])))
        if self.access_warnings:
            parts.append(n_(len(self.access_warnings), "manager loses", "managers lose") + " access")
        return "; ".join(parts)

    # -- JSON ---------------------------------------------------------------------------------
    # Compact: the inner objects leave out the keys at their field's default (a field decision is
    # mostly defaults), and ``records`` leaves out the columns that are None; from_dict puts both back.
    # The plan's own keys are all written (readers of the stored JSON look at plan["conflicts"] etc.).

    def _shallow(self) -> dict[str, Any]:
        """The plan as dicts and lists over its own values (asdict's deep copies cost more than the plan)."""
        d = _fields_reader(type(self))(self)
        for name in ("communications", "links", "conflicts", "access_warnings"):
            d[name] = [_compact_reader(type(x))(x) for x in d[name]]
        d["fields"] = {k: _compact_reader(type(v))(v) for k, v in self.fields.items()}
        d["records"] = {str(k): {c: v for c, v in row.items() if v is not None} for k, row in self.records.items()}
        return d

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (stored in dedup_plans.plan); dates, datetimes and Decimals are tagged."""
        return encode(self._shallow())

    def to_json(self) -> str:
        """The JSON of ``self.to_dict()`` (without spaces), written by orjson in one pass: only dates,
        datetimes and Decimals go through Python (tagged as encode() tags them)."""
        try:
            return orjson.dumps(self._shallow(), default=_tagged, option=_PLAN_JSON_OPTIONS).decode()
        except orjson.JSONEncodeError as exc:  # (_tagged's message, where it refused a value, says which)
            raise TypeError(str(exc.__cause__ or exc)) from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MergePlan":
        """The plan of to_dict()/to_json(), or of the full form earlier versions stored (every key of
        every inner object, every column of every row)."""
        d = decode(dict(data))
        plan = cls(entity_type=d["entity_type"], primary_id=d["primary_id"], duplicate_ids=list(d["duplicate_ids"]))
        if plan.entity_type not in schema.ENTITY_TABLES:
            raise ValueError(f"the merge plan of #{plan.primary_id} has entity_type {plan.entity_type!r}; "
                             f"expected one of {', '.join(schema.ENTITY_TABLES)}")
        # a key left out takes the field's default
        plan.fields = {k: FieldDecision(**{**v, "candidates": [tuple(c) for c in v.get("candidates", ())]})
                       for k, v in d["fields"].items()}
        plan.communications = [CommDecision(**c) for c in d["communications"]]
        plan.links = [LinkMove(**m) for m in d["links"]]
        plan.conflicts = [Conflict(**{**c, "candidates": [tuple(x) for x in c["candidates"]]}) for c in d["conflicts"]]
        plan.access_warnings = [AccessWarning(**w) for w in d["access_warnings"]]
        plan.fingerprints = dict(d["fingerprints"])
        # the rows were read whole (SELECT of the entity table): a column left out was None
        columns = _record_columns(plan.entity_type)
        plan.records = {int(k): {**dict.fromkeys(columns), **v} for k, v in d["records"].items()}
        for name in ("delete_mode", "conflict_policy", "group_id", "problems", "planned_at"):
            setattr(plan, name, d.get(name))
        plan.problems = list(plan.problems or [])
        return plan


@functools.cache
def _fields_reader(cls) -> Callable[[Any], dict[str, Any]]:
    """A function giving a dataclass instance's fields as a new dict, in their order (the JSON's order).
    As vars(), without making every instance keep a dict of its own (as vars() does since Python 3.11):
    tens of thousands of objects a chunk that the cycle collector would then go over again and again."""
    return _attrs_reader(tuple(f.name for f in dataclass_fields(cls)))


@functools.cache
def _compact_reader(cls) -> Callable[[Any], dict[str, Any]]:
    """As _fields_reader, leaving out the fields whose value equals their default. (A dataclass's
    fields with defaults come after those without, so the order stays that of the fields.)"""
    fields = dataclass_fields(cls)
    required = _attrs_reader(tuple(f.name for f in fields if f.default is MISSING and f.default_factory is MISSING))
    optional = tuple((f.name, f.default if f.default_factory is MISSING else f.default_factory())
                     for f in fields if f.default is not MISSING or f.default_factory is not MISSING)
    if not optional:
        return required

    def read(obj: Any) -> dict[str, Any]:
        d = required(obj)
        for name, default in optional:
            value = getattr(obj, name)
            if value != default:
                d[name] = value
        return d
    return read


def _attrs_reader(names: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    if not names:
        return lambda obj: {}
    if len(names) == 1:  # attrgetter of one name gives the bare value, not a tuple
        return lambda obj: {names[0]: getattr(obj, names[0])}
    values = operator.attrgetter(*names)
    return lambda obj: dict(zip(names, values(obj)))


@functools.cache
def _record_columns(entity_type: str) -> tuple[str, ...]:
    return tuple(c.name for c in schema.ENTITY_TABLES[entity_type].columns)


def _tagged(value: Any) -> Any:
    if isinstance(value, (dt.date, Decimal)):
        return encode(value)
    raise TypeError(f"cannot store a {type(value).__name__} value ({value!r}) in a merge plan")


# orjson writes the text json.dumps(..., ensure_ascii=False, separators=(",", ":")) writes, in about
# half the time (the plans of a million contacts: ~1.7 CPU-s less). What it writes is always JSON, so
# it may be stored unchecked (crm.proposals.EncodedJson). Dates and datetimes are passed to _tagged;
# dict keys may be SQLAlchemy's column names (str subclasses). (A float NaN would be written as null:
# the rows a plan holds have no float columns.)
_PLAN_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


# -- building -----------------------------------------------------------------------------------

def _resolve(policy: str, cands: list[Candidate]) -> Candidate:
    """Settle a conflict by the settings' policy: ``cands`` are the filled candidates, primary first."""
    if policy == "keep_primary":
        return cands[0]
    if policy == "most_recent":
        best = max(c.modified_at or dt.datetime.min for c in cands)
        return next(c for c in cands if (c.modified_at or dt.datetime.min) == best)
    if policy == "longest":
        best = max(len(str(c.value)) for c in cands)
        return next(c for c in cands if len(str(c.value)) == best)
    if policy == "most_common":
        # the spelling most records share (a typo of the primary's outvoted by its duplicates); a tie
        # goes to the first, the primary where it is filled
        counts = Counter(text_key(c.value) for c in cands)
        best = max(counts.values())
        return next(c for c in cands if counts[text_key(c.value)] == best)
    raise ValueError(f"unknown conflict policy {policy!r}")


@functools.cache
def _single_fields(entity_type: str) -> tuple[tuple[str, RuleContext], ...]:
    """The single-value fields of an entity type (those the rules decide), each with its rule context."""
    return tuple((name, RuleContext(entity_type, name)) for name, kind in field_kinds(entity_type).items()
                 if kind != MULTI)


def _decide_fields(snap: Snapshot, settings: MergeSettings, choices: Mapping[str, int],
                   plan: MergePlan) -> None:
    kinds = field_kinds(snap.entity_type)
    for name, chosen in choices.items():
        if name not in kinds or kinds[name] == MULTI:
            plan.problems.append(f"a choice was made for {name!r}, which is not a single-value field of "
                                 f"a {snap.entity_type}")
        elif chosen not in snap.records:
            plan.problems.append(f"the choice for {name!r} names record #{chosen}, which is not in the group "
                                 f"({', '.join(f'#{i}' for i in snap.member_ids)})")
    members = [(i, snap.records[i], i == snap.primary_id) for i in snap.member_ids if i in snap.records]
    rows = [row for _i, row, _p in members]
    primary_first = members[0][2]  # (as Snapshot orders them; one made by hand may not)
    for name, ctx in _single_fields(snap.entity_type):
        rule_name = settings.rule_for(snap.entity_type, name)
        rule = get_rule(rule_name)
        values = [row.get(name) for row in rows]
        first, kind = values[0], type(values[0])
        if rule.unanimous and primary_first and all(v == first and type(v) is kind for v in values):
            decision = FieldDecision(first, snap.primary_id, rule_name)  # what the rule gives (Rule.unanimous)
        else:
            cands = [Candidate(i, value, primary, row.get("created_at"), row.get("modified_at"))
                     for (i, row, primary), value in zip(members, values)]
            try:
                out = rule.func(cands, ctx)
            except RuleError as exc:
                plan.problems.append(str(exc))
                continue
            decision = FieldDecision(out.value, out.source_id, rule_name, out.conflict, note=out.note)
            if out.conflict:
                full = [c for c in cands if filled(c.value)]
                decision.candidates = [(c.record_id, c.value) for c in full]
                if settings.conflict_policy != "ask" and name not in choices:
                    win = _resolve(settings.conflict_policy, full)
                    decision.value, decision.source_id = win.value, win.record_id
                    decision.resolved_by = f"policy:{settings.conflict_policy}"
        if name in choices and choices[name] in snap.records:
            decision.value, decision.source_id = snap.records[choices[name]].get(name), choices[name]
            decision.rule = "choice"
            if decision.conflict:
                decision.resolved_by = "choice"
        plan.fields[name] = decision
        if decision.conflict:
            plan.conflicts.append(Conflict(name, decision.candidates, decision.value, decision.source_id,
                                           decision.resolved_by))


def _decide_comms(snap: Snapshot, settings: MergeSettings, plan: MergePlan,
                  keys: Mapping[int, str] | None = None) -> None:
    """Unite the phones, emails, websites, messengers: the primary's rows stay as they are, each
    duplicate's row moves to the primary unless its normalised value is already there. ``keys``
    (communication id -> comm_key) when they were worked out in bulk."""
    seen: dict[str, int] = {}
    for r in snap.comms:
        key = keys[r["id"]] if keys is not None else comm_key(r["type"], r["value"])
        d = CommDecision(r["id"], r["entity_id"], r["type"], r["kind"], r["value"], key, "keep")
        if r["entity_id"] != snap.primary_id:
            if settings.rule_for(snap.entity_type, r["type"]) == "keep_primary":
                d.action = "drop"
            elif key in seen:
                d.action, d.repeat_of = "repeat", seen[key]
            else:
                d.action = "move"
        seen.setdefault(key, r["id"])
        plan.communications.append(d)


def _decide_links(snap: Snapshot, plan: MergePlan) -> None:
    p = snap.primary_id
    for spec in LINKS[snap.entity_type]:
        rows = snap.links.get(spec.name, [])
        if spec.table is schema.contact_companies:
            plan.links.extend(_contact_company_moves(snap, spec.column, rows))
            continue
        for r in rows:
            if r[spec.column] != p:
                plan.links.append(LinkMove(spec.name, {k: r[k] for k in spec.key_columns}, spec.column,
                                           r[spec.column], p))


def _contact_company_moves(snap: Snapshot, column: str, rows: list[dict]) -> list[LinkMove]:
    """Contact-company links of the duplicates move to the primary; one that collides with a link the
    primary already has (same contact and company) is folded into it, its is_primary flag kept
    (OR). A contact keeps at most one primary company: its own, else the first duplicate's."""
    p, other = snap.primary_id, ("company_id" if column == "contact_id" else "contact_id")
    order = {i: n for n, i in enumerate(snap.member_ids)}
    own = [r for r in rows if r[column] == p]
    theirs = sorted((r for r in rows if r[column] != p), key=lambda r: (order[r[column]], r[other]))
    final = {r[other]: bool(r["is_primary"]) for r in own}
    moves: list[LinkMove] = []
    for r in theirs:
        target = r[other]
        action = "merge" if target in final else "move"
        final[target] = final.get(target, False) or bool(r["is_primary"])
        moves.append(LinkMove("contact_companies", {"contact_id": r["contact_id"], "company_id": r["company_id"]},
                              column, r[column], p, action))
    if column == "contact_id":  # one primary company per contact
        keep = next((r[other] for r in own if r["is_primary"]), None)
        if keep is None:
            keep = next((r[other] for r in theirs if r["is_primary"]), None)
        final = {k: (k == keep) for k in final}
    for m in moves:
        m.is_primary = final[m.key[other]]
    for r in own:
        if bool(r["is_primary"]) != final[r[other]]:
            moves.append(LinkMove("contact_companies", {"contact_id": r["contact_id"], "company_id": r["company_id"]},
                                  column, p, p, "update", final[r[other]]))
    return moves


def _access_warnings(snap: Snapshot, plan: MergePlan) -> None:
    decision = plan.fields.get("responsible_id")
    owner = decision.value if decision else snap.records.get(snap.primary_id, {}).get("responsible_id")
    lose: dict[int, list[int]] = {}
    for i in snap.duplicate_ids:
        rid = snap.records.get(i, {}).get("responsible_id")
        if rid is None or rid == owner:
            continue
        user = snap.users.get(rid)
        if user is not None and user["role"] == "admin":
            continue  # admins see every record
        lose.setdefault(rid, []).append(i)
    owner_name = snap.users.get(owner, {}).get("name") if owner is not None else None
    for rid, ids in lose.items():
        name = snap.users.get(rid, {}).get("name", f"user #{rid}")
        recs = ", ".join(f"#{i}" for i in ids)
        plan.access_warnings.append(AccessWarning(
            rid, name, ids,
            f"{name} (#{rid}) is responsible for {snap.entity_type} {recs} but not for the merged "
            f"#{snap.primary_id} (responsible: {owner_name or 'nobody'}); they will lose access to it"))


def _check_snapshot(snap: Snapshot) -> list[str]:
    problems = []
    if snap.primary_id not in snap.member_ids:
        problems.append(f"the primary #{snap.primary_id} is not a member of the group")
    if len(snap.member_ids) < 2:
        problems.append(f"{snap.entity_type} #{snap.primary_id} has no duplicates to merge")
    for i in snap.member_ids:
        row = snap.records.get(i)
        if row is None:
            problems.append(f"{snap.entity_type} #{i} does not exist")
        elif row.get("deleted_at") is not None:
            problems.append(f"{snap.entity_type} #{i} was deleted on {row['deleted_at']:%Y-%m-%d %H:%M} "
                            "(merged or removed already)")
    return problems


def build_plan(snapshot: Snapshot, settings: MergeSettings | None = None,
               choices: Mapping[str, int] | None = None, *, comm_keys: Mapping[int, str] | None = None) -> MergePlan:
    """The merge plan of one group (pure: reads nothing, writes nothing). ``choices`` maps a field to
    the record whose value a person chose; it settles that field's conflict. ``comm_keys``: the
    communications' comm_key by id, when worked out in bulk for many groups (plan_groups)."""
    settings = settings or MergeSettings.load()
    choices = dict(choices or {})
    snap = snapshot
    plan = MergePlan(snap.entity_type, snap.primary_id, snap.duplicate_ids,
                     delete_mode=settings.delete_mode, conflict_policy=settings.conflict_policy,
                     records={i: dict(r) for i, r in snap.records.items()},
                     fingerprints=snap.fingerprints(),
                     planned_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    plan.problems = _check_snapshot(snap)
    if plan.problems:
        return plan
    _decide_fields(snap, settings, choices, plan)
    _decide_comms(snap, settings, plan, comm_keys)
    _decide_links(snap, plan)
    _access_warnings(snap, plan)
    return plan


def plan_groups(store, entity_type: str, groups: Sequence[tuple[int, Sequence[int]]],
                settings: MergeSettings | None = None, *,
                choices: Mapping[int, Mapping[str, int]] | None = None,
                group_ids: Mapping[int, str] | None = None) -> list[MergePlan]:
    """Plans for many groups ``(primary_id, member ids incl. the primary)``, in the order given, read in
    bulk. ``choices`` and ``group_ids`` are keyed by primary id. A group that cannot be merged (a
    missing or deleted record, a record in two groups) gets a plan whose ``problems`` say why."""
    settings = settings or MergeSettings.load()
    choices, group_ids = choices or {}, group_ids or {}
    overlap = _overlaps(entity_type, groups)
    # ~40 objects a group, all alive until the plans are written, and no cycles; the snapshots come
    # and go inside (the collector's passes over them were a fifth of the CPU)
    with collector_paused():
        plans = _build_plans(store, entity_type, groups, settings, choices)
    for plan in plans:
        plan.group_id = group_ids.get(plan.primary_id)
        _add_overlap(plan, overlap)
    return plans


def _build_plans(store, entity_type: str, groups: Sequence[tuple[int, Sequence[int]]], settings: MergeSettings,
                 choices: Mapping[int, Mapping[str, int]]) -> list[MergePlan]:
    with store.engine.connect() as conn:
        snaps = read_snapshots(conn, entity_type, groups)
    keys = _bulk_comm_keys(snaps)
    return [build_plan(snap, settings, choices.get(snap.primary_id), comm_keys=keys) for snap in snaps]


def _bulk_comm_keys(snaps: Sequence[Snapshot]) -> dict[int, str]:
    comms = [r for snap in snaps for r in snap.comms]
    return dict(zip((r["id"] for r in comms), comm_keys([r["type"] for r in comms], [r["value"] for r in comms])))


def _overlaps(entity_type: str, groups: Sequence[tuple[int, Sequence[int]]]) -> dict[int, list[str]]:
    """Per primary id, the problems of a group holding a record that an earlier group holds too."""
    seen: dict[int, int] = {}
    overlap: dict[int, list[str]] = {}
    for primary, members in groups:
        for m in {int(primary), *map(int, members)}:
            if m in seen and seen[m] != int(primary):
                overlap.setdefault(int(primary), []).append(
                    f"{entity_type} #{m} is also in the group of #{seen[m]}; a record merges into one primary")
            seen.setdefault(m, int(primary))
    return overlap


def _add_overlap(plan: MergePlan, overlap: Mapping[int, list[str]]) -> None:
    """The group's overlap problems (_overlaps) added to its plan; a plan that cannot be merged is logged."""
    plan.problems.extend(overlap.get(plan.primary_id, []))
    if plan.problems:
        log.warning("group of %s #%s cannot be merged: %s", plan.entity_type, plan.primary_id, "; ".join(plan.problems))


# -- plans made again, or taken from an earlier run ------------------------------------------------

# What a plan is made from besides the rows it reads: the planner (this package), the normalisers the
# communications' keys come from (matchers) and the schema's columns; with the libraries below.
_PLANNER_SOURCES = (("merge_rules", ("*.py", "*.yaml")), ("matchers", ("*.py", "data/*")), ("crm", ("schema.py",)))
_PLANNER_LIBRARIES = ("phonenumbers", "email-validator")


def planner_identity(settings: MergeSettings) -> str:
    """A digest of everything a plan depends on besides the rows it reads and their fingerprints: the
    merge settings, the planner's and the normalisers' code, their libraries' versions. Two plans of
    the same group made under one identity from rows with the same fingerprints are the same plan
    (up to ``planned_at``): plan_json takes an earlier run's instead of making it again."""
    return _identity(settings.model_dump_json())


@functools.cache
def _identity(settings_json: str) -> str:
    import hashlib
    from importlib import metadata
    from pathlib import Path

    digest = hashlib.blake2b(settings_json.encode(), digest_size=16)
    root = Path(__file__).resolve().parent.parent
    for package, patterns in _PLANNER_SOURCES:
        for path in sorted({f for pattern in patterns for f in (root / package).glob(pattern) if f.is_file()}):
            digest.update(f"{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    for name in _PLANNER_LIBRARIES:
        try:
            digest.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent\0".encode())
    return digest.hexdigest()


def plan_json(store, entity_type: str, groups: Sequence[tuple[int, Sequence[int]]], settings: MergeSettings,
              earlier: Sequence[str | None] | None = None) -> tuple[list[str], list[list[int]], int]:
    """The plans plan_groups makes, as their JSON text (to_json, in the order of ``groups``), with each
    group's managers (the responsible users of its live records, as read) and how many plans were
    taken from ``earlier`` rather than made again.

    ``earlier``: per group, the JSON text of a plan an earlier run made of it under the same
    planner_identity (the caller checks that), or None. It is taken as it is when it is the plan that
    would be made now: the same primary and duplicates in the same order, no problems then or now,
    every row read with the fingerprint it had, and the same managers losing access (users' names
    and roles are no row of the group). Otherwise the plan is made again."""
    earlier = list(earlier) if earlier is not None else [None] * len(groups)
    if len(earlier) != len(groups):
        raise ValueError(f"{len(earlier)} earlier plans for {len(groups)} groups")
    overlap = _overlaps(entity_type, groups)
    with collector_paused():  # (as plan_groups: many short-lived objects, no cycles)
        with store.engine.connect() as conn:
            snaps = read_snapshots(conn, entity_type, groups)
        texts: list[str | None] = [old if old is not None and snap.primary_id not in overlap and _still_made(old, snap)
                                   else None for snap, old in zip(snaps, earlier)]
        reused = sum(text is not None for text in texts)
        todo = [i for i, text in enumerate(texts) if text is None]
        keys = _bulk_comm_keys([snaps[i] for i in todo])
        for i in todo:
            plan = build_plan(snaps[i], settings, comm_keys=keys)
            _add_overlap(plan, overlap)
            texts[i] = plan.to_json()
        managers = [sorted({r["responsible_id"] for r in snap.records.values()
                            if r.get("responsible_id") is not None and r.get("deleted_at") is None})
                    for snap in snaps]
    return texts, managers, reused


def _still_made(text: str, snap: Snapshot) -> bool:
    """Whether ``text``, a plan made under this planner_identity, is the plan of ``snap`` now."""
    try:
        then = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    if (not isinstance(then, dict) or then.get("problems") or then.get("entity_type") != snap.entity_type
            or then.get("primary_id") != snap.primary_id or then.get("duplicate_ids") != snap.duplicate_ids
            or _check_snapshot(snap) or then.get("fingerprints") != snap.fingerprints()):
        return False
    # who loses access follows the owner the plan chose and the users' roles and names
    owner = then.get("fields", {}).get("responsible_id")
    now = MergePlan(snap.entity_type, snap.primary_id, snap.duplicate_ids)
    if owner is not None:
        now.fields["responsible_id"] = FieldDecision(owner.get("value"), owner.get("source_id"), owner.get("rule", ""))
    _access_warnings(snap, now)
    return [_compact_reader(AccessWarning)(w) for w in now.access_warnings] == then.get("access_warnings")
