"""Normalise a RoleTable once into the columns blocking and comparison use.

The result keeps records in a fixed order (position 0..n-1); every later stage refers to records by
that position, and maps back to ids only at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import sys
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from matchers.companies import normalize_companies
from matchers.emails import normalize_emails
from matchers.identifiers import FREE_MAIL_DOMAINS, normalize_birthdates, parse_inn, parse_kpp, registered_domain
from matchers.names import clean_text, forget_cached_names, normalize_persons
from matchers.phones import normalize_phones
from matchers.parquet import write_parquet
from matchers.table import RoleTable

log = logging.getLogger(__name__)

NAME_ROLES = ("first_name", "last_name", "middle_name", "full_name")
_CACHE_LOCK = threading.RLock()
FALLBACK_REGIONS = ("US", "GB")  # where a phone invalid in the default region is read too
# the libraries whose data the normalisers use: a new release may read a phone, an address or a domain otherwise
_LIBRARIES = ("phonenumbers", "email-validator", "tldextract", "nicknames", "text-unidecode")


def normalisation(region: str, provider_rules: bool, fallback_regions: tuple[str, ...] = FALLBACK_REGIONS) -> dict:
    """What makes prepare()'s output for the same records: the normalisers' code and name tables, the
    libraries and Unicode tables they use, and prepare's arguments. An incremental run reuses a last
    run's normalised records only when this is the same (after an upgrade that touched any of it,
    one full run)."""
    return {"code": _code_digest(), "libraries": _library_versions(), "unicode": unicodedata.unidata_version,
            "region": region, "provider_rules": bool(provider_rules), "fallback_regions": list(fallback_regions)}


@functools.cache
def _code_digest() -> str:
    """A digest of matchers' modules and name tables (a changed key rule changes the keys of names
    normalised before it)."""
    here = Path(__file__).parent
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted([*here.glob("*.py"), *(here / "data").glob("*.csv")]):
        digest.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out


@dataclass
class Prepared:
    """Normalised records: ``records`` (one row per record, in position order, column ``id``) and
    long frames ``phones`` (pos, e164, national, valid), ``emails`` (pos, email, canonical, local, domain),
    ``sites`` (pos, domain), each with placeholders and empty values removed."""

    entity_type: str
    records: pd.DataFrame
    phones: pd.DataFrame
    emails: pd.DataFrame
    sites: pd.DataFrame
    roles: set[str] = field(default_factory=set)
    made_with: dict = field(default_factory=dict)  # normalisation(...) of prepare(); {} when not known

    def __len__(self) -> int:
        return len(self.records)

    def codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The column factorised once: an integer code per record (-1 when empty) and the values as
        Python strings. Comparisons work on codes, so each distinct value is handled once."""
        cache = self.__dict__.setdefault("_codes", {})
        with _CACHE_LOCK:  # blocking and comparing threads share these
            if column not in cache:
                cache[column] = self._factorised(column)
        return cache[column]

    def _factorised(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        codes, uniques = pd.factorize(self.records[column].to_numpy())
        codes = codes.astype(np.int64)
        uniques = np.asarray([str(u) for u in uniques], dtype=object)
        empty = np.flatnonzero(uniques == "")
        if len(empty):  # an empty string is no value: code -1, later codes shift down
            e = int(empty[0])
            codes[codes == e] = -1
            codes[codes > e] -= 1
            uniques = np.delete(uniques, e)
        return codes, uniques

    def frame_codes(self, frame: str, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A column of a long frame (phones, emails, sites) factorised once: a code per row and the
        distinct values."""
        cache = self.__dict__.setdefault("_frame_codes", {})
        with _CACHE_LOCK:
            if (frame, column) not in cache:
                codes, uniques = pd.factorize(getattr(self, frame)[column].to_numpy(dtype=object))
                cache[(frame, column)] = (codes.astype(np.int64), np.asarray(uniques, dtype=object))
        return cache[(frame, column)]

    def drop_caches(self) -> None:
        """Forget the factorised columns and compare's slots, dates and name facts (built again if asked
        for): at a million records they hold ~300 MB that the stages after comparing no longer need."""
        with _CACHE_LOCK:
            for key in ("_codes", "_frame_codes", "_slots", "_dates", "_person_facts"):
                self.__dict__.pop(key, None)

    @property
    def ids(self) -> np.ndarray:
        return self.records["id"].to_numpy()

    @property
    def has_person(self) -> bool:
        return bool(self.roles & set(NAME_ROLES))

    @property
    def has_company(self) -> bool:
        return "company" in self.roles

    def save(self, folder: Path) -> None:
        """Parquet files prepared_*.parquet and prepared.json in ``folder`` (reused by incremental runs)."""
        folder = Path(folder)
        write_parquet(self.records, folder / "prepared_records.parquet")
        for name in ("phones", "emails", "sites"):
            write_parquet(getattr(self, name), folder / f"prepared_{name}.parquet")
        (folder / "prepared.json").write_text(json.dumps({"entity_type": self.entity_type, "roles": sorted(self.roles),
                                                          "normalisation": self.made_with}))

    @staticmethod
    def saved_normalisation(folder: Path) -> dict:
        """How the records saved in ``folder`` were normalised ({} when they do not say: saved before
        the normalisers had a version)."""
        return json.loads((Path(folder) / "prepared.json").read_text()).get("normalisation") or {}

    @staticmethod
    def saved_roles(folder: Path) -> set[str]:
        """The roles of the records saved in ``folder`` (without loading them)."""
        return set(json.loads((Path(folder) / "prepared.json").read_text())["roles"])

    @classmethod
    def load(cls, folder: Path) -> "Prepared":
        folder = Path(folder)
        meta = json.loads((folder / "prepared.json").read_text())
        frames = {name: pd.read_parquet(folder / f"prepared_{name}.parquet") for name in ("records", "phones", "emails", "sites")}
        return cls(meta["entity_type"], frames["records"], frames["phones"], frames["emails"], frames["sites"],
                   set(meta["roles"]), meta.get("normalisation") or {})

    def take(self, ids) -> "Prepared":
        """The records with these ids, in that order (positions renumbered)."""
        old = pd.Index(self.records["id"].to_numpy()).get_indexer(pd.Index(list(ids)))
        if (old < 0).any():
            raise KeyError("take() asked for ids that are not in the prepared records")
        return self.take_positions(old)

    def take_positions(self, old: np.ndarray) -> "Prepared":
        """The records at these positions (each once), in that order (positions renumbered)."""
        new_of_old = np.full(len(self.records), -1, dtype=np.int64)
        new_of_old[old] = np.arange(len(old))

        def remap(frame: pd.DataFrame) -> pd.DataFrame:
            pos = new_of_old[frame["pos"].to_numpy()]
            kept = pos >= 0
            return frame[kept].assign(pos=pos[kept]).reset_index(drop=True)

        return Prepared(self.entity_type, self.records.iloc[old].reset_index(drop=True), remap(self.phones),
                        remap(self.emails), remap(self.sites), set(self.roles), dict(self.made_with))

    @staticmethod
    def concat(parts: list["Prepared"]) -> "Prepared":
        """One Prepared from several (positions shifted), in the order given."""
        offset, recs, frames = 0, [], {"phones": [], "emails": [], "sites": []}
        for part in parts:
            recs.append(part.records)
            for name in frames:
                f = getattr(part, name)
                frames[name].append(f.assign(pos=f["pos"] + offset))
            offset += len(part.records)
        first = parts[0]
        same = all(x.made_with == first.made_with for x in parts)  # else how the whole was made is not known
        return Prepared(first.entity_type, pd.concat(recs, ignore_index=True),
                        *(pd.concat(frames[n], ignore_index=True) for n in ("phones", "emails", "sites")),
                        set().union(*(x.roles for x in parts)), dict(first.made_with) if same else {})


_SOUND_RULES = [(re.compile(a), b) for a, b in [
    (r"dzh|dj", "j"), (r"^i(?=[aeou])", "j"), (r"sch|shch|sh", "s"), (r"ch", "k"), (r"ph", "f"), (r"th", "t"),
    (r"w", "v"), (r"ck|c|q|x|g", "k"), (r"v", "f"), (r"z", "s"), (r"h", ""), (r"(.)\1+", r"\1"),
]]


def sound_key(key: object) -> str:
    """A coarse "sounds alike" key of a transliterated name: the first letter and the consonant
    skeleton, with look-alike consonants merged, so that English names written in Cyrillic and back
    meet (Стивен / Stephen -> stfn, Майкл / Michael -> mkl, Джессика / Jessica -> jsk)."""
    if not isinstance(key, str) or not key:
        return ""
    s = key
    for pattern, repl in _SOUND_RULES:
        s = pattern.sub(repl, s)
    if not s:
        return ""
    return s[0] + re.sub(r"[aeiouy]", "", s[1:])


def per_unique(values: pd.Series, func) -> np.ndarray:
    """``values.map(func)`` as an object array, calling ``func`` once per distinct value (and once
    with NaN for the missing ones): names, addresses and keys repeat a lot in a large table."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    results = np.empty(len(uniques) + 1, dtype=object)
    results[:] = [func(u) for u in uniques] + [func(np.nan)]
    return results[codes]


def _valid_inn(raw: object) -> str | None:
    digits, ok = parse_inn(raw)
    return digits if ok else None


def _clean_or_none(raw: object) -> str | None:
    return clean_text(raw) or None


def prepare(table: RoleTable, region: str = "RU", provider_rules: bool = True,
            fallback_regions: tuple[str, ...] = FALLBACK_REGIONS, workers: int = 1,
            known: Mapping[str, pd.DataFrame] | None = None) -> Prepared:
    """Normalise every record. ``workers`` > 1 lets phone and e-mail normalisation of a large table
    run partly in helper processes while this one parses the names (the results are the same).
    ``known``: phones and e-mails normalised already ({"phone": frame, "email": frame}, as
    normalised_values makes them, e.g. by the data-quality check of the same records); only the
    values they lack are normalised here. A frame made with other arguments is not used."""
    rec = table.records
    out = pd.DataFrame({"id": rec.index.to_numpy()})
    roles = table_roles(table)
    positions = _positions(rec.index)
    phones, emails, sites = (_long(table, role, positions) for role in ("phone", "email", "website"))
    # each distinct phone and address is normalised once; a phone invalid in the default region is
    # read in the fallback regions too (a London client's "07825 529 772" in a Moscow CRM)
    reuse = [_Reuse(values, (known or {}).get(role), func, args) for role, values, func, args in (
        ("phone", phones.values, normalize_phone_values, (region, tuple(fallback_regions))),
        ("email", emails.values, normalize_email_values, (provider_rules,)))]
    tasks = Channels(workers, [(r.func, r.missing, r.args) for r in reuse])
    try:
        _single_values(table, roles, out)
    except BaseException:
        tasks.close()  # no helper process left running after an error here
        raise
    finally:
        forget_cached_names()  # the names are done: what the caches hold would stay to the end of the find

    phone_norm, email_norm = (r.joined(fresh) for r, fresh in zip(reuse, tasks.results()))
    del reuse
    phones = phones.kept(phone_norm, phone_norm["e164"].notna() & ~phone_norm["placeholder"], "e164",
                         ["e164", "national", "valid"])
    emails = emails.kept(email_norm, email_norm["canonical"].notna() & ~email_norm["placeholder"], "canonical",
                         ["email", "canonical", "local", "domain"])
    del phone_norm, email_norm  # the per-value columns not kept (ext, placeholder...) go now

    domains = per_unique(pd.Series(sites.values, dtype=object), registered_domain)
    sites = sites.frame(pd.DataFrame({"domain": domains}))
    if len(sites):
        sites = sites[sites["domain"].notna() & ~sites["domain"].isin(FREE_MAIL_DOMAINS)]
    sites = sites.reindex(columns=["pos", "domain"]).drop_duplicates()

    return Prepared(table.entity_type, out, _typed(phones), _typed(emails), _typed(sites), roles,
                    normalisation(region, provider_rules, tuple(fallback_regions)))


def table_roles(table: RoleTable) -> set[str]:
    """The roles a table holds (a column or value filled on some record): which columns the
    normalised records get, and so which comparisons run."""
    rec = table.records
    return {r for r in rec.columns if rec[r].notna().any()} | set(table.values["role"].dropna().unique())


def _single_values(table: RoleTable, roles: set[str], out: pd.DataFrame) -> None:
    """The normalised single-value columns (names, company, birthdate, identifiers, addresses) and
    the pass-through columns, added to ``out`` (one row per record)."""
    rec = table.records
    if roles & set(NAME_ROLES):
        names = normalize_persons(rec[[c for c in NAME_ROLES if c in rec.columns]].reset_index(drop=True))
        for col in ("first", "first_raw", "last", "middle", "tokens", "initials", "full"):
            out[col] = names[col].to_numpy()
        out["first_sound"] = per_unique(out["first_raw"], sound_key)
        out["last_sound"] = per_unique(out["last"], sound_key)
    if "company" in rec.columns:
        comp = normalize_companies(rec["company"].reset_index(drop=True))
        out["company"] = comp["key"].to_numpy()
        out["company_tokens"] = comp["tokens"].to_numpy()
    if "birthdate" in rec.columns:
        out["birthdate"] = normalize_birthdates(rec["birthdate"].reset_index(drop=True)).to_numpy()
    if "tax_id" in rec.columns:
        out["tax_id"] = per_unique(rec["tax_id"], _valid_inn)
        # the KPP written with a company's INN: its branches share the INN, each has a KPP of its own
        out["kpp"] = per_unique(rec["tax_id"], parse_kpp)
    for col in ("address", "city", "postcode", *table.text_columns):
        if col in rec.columns:
            out[col] = per_unique(rec[col], _clean_or_none)
    for col in ("source", "responsible_id", "created_at", "modified_at"):
        if col in rec.columns:
            out[col] = rec[col].to_numpy()


def normalize_phone_values(values: np.ndarray, region: str, fallback_regions: tuple[str, ...]) -> pd.DataFrame:
    return normalize_phones(pd.Series(values, dtype=object), region=region,
                            fallback_regions=fallback_regions).reset_index(drop=True)


def normalize_email_values(values: np.ndarray, provider_rules: bool) -> pd.DataFrame:
    return normalize_emails(pd.Series(values, dtype=object), provider_rules=provider_rules).reset_index(drop=True)


def normalised_values(func, values: np.ndarray, args: tuple, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (what ``func(values, *args)`` gave, a row per value) marked for prepare(known=...):
    with the values as a column and the normaliser and its arguments in its attrs."""
    out = frame.reset_index(drop=True)
    out.insert(0, "value", np.asarray(values, dtype=object))
    out.attrs["normaliser"] = (func.__name__, tuple(args))
    return out


class _Reuse:
    """The values of one role split into those a known frame (normalised_values) holds and those
    still to normalise; joined() puts the two back in the order of the values."""

    def __init__(self, values: np.ndarray, known: pd.DataFrame | None, func, args: tuple):
        self.func, self.args, self.known = func, args, None
        self.missing, self.at = values, None
        if known is not None:
            if known.attrs.get("normaliser") != (func.__name__, tuple(args)):
                log.info("normalised %s values made with %s are not used (wanted %s%r)", func.__name__,
                         known.attrs.get("normaliser"), func.__name__, tuple(args))
            elif len(known) == len(values) and (known["value"].to_numpy() == values).all():
                # the same values in the same order (as the quality check lists them): taken whole
                self.known, self.missing = known, values[:0]
            elif (index := pd.Index(known["value"])).is_unique:
                self.known, self.at = known, index.get_indexer(values)
                self.missing = values[self.at < 0]

    def joined(self, fresh: pd.DataFrame) -> pd.DataFrame:
        if self.known is None:
            return fresh
        if self.at is None:
            return self.known.drop(columns="value")
        hit = self.at >= 0
        found = self.known.iloc[self.at[hit]].drop(columns="value")
        frame = pd.concat([found, fresh], ignore_index=True) if len(fresh) else found.reset_index(drop=True)
        where = np.concatenate([np.flatnonzero(hit), np.flatnonzero(~hit)])  # row i of frame is value where[i]
        return frame.iloc[np.argsort(where, kind="stable")].reset_index(drop=True)


# Below this many distinct phones and addresses, a helper process costs more than it saves.
PARALLEL_MIN_VALUES = 100_000
CHUNK_VALUES = 50_000
SWITCH_INTERVAL = 0.0005  # seconds, while helpers run (see Channels)


class Channels:
    """Normalisation of distinct values in chunks, started at once and collected later: with
    ``workers`` > 1 and enough values, helper processes take chunks from the front of the queue
    while this process does other work; whatever they have not started when results() is called,
    this process does itself. Any trouble with helpers (none allowed here, as in a daemonic Dask
    worker) falls back to doing everything here."""

    def __init__(self, workers: int, tasks: list[tuple]):
        self.tasks = tasks
        self.chunks = [[(func, values[i:i + CHUNK_VALUES], args) for i in range(0, len(values), CHUNK_VALUES)]
                       for func, values, args in tasks]
        self.futures: list[list] | None = None
        self.pool = None
        self._switch: float | None = None  # the interpreter's switch interval, while changed
        total = sum(len(values) for _, values, _ in tasks)
        if workers > 1 and total >= PARALLEL_MIN_VALUES:
            try:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # fork: the helpers start at once with everything imported and never re-run the
                # caller's __main__ (the chunks go to them pickled, the results come back pickled)
                ctx = multiprocessing.get_context("fork")
                # the pool's thread here reads each result from a pipe 64 KB at a time, needing the
                # GIL for each piece; at the usual 5 ms switch interval, while this thread parses
                # names, the helpers wait on those reads nearly as long as they work
                self._switch = sys.getswitchinterval()
                sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL))
                self.pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=ctx)
                self.futures = [[self.pool.submit(_run_chunk, chunk) for chunk in chunks] for chunks in self.chunks]
            except Exception:  # noqa: BLE001 - no helper processes here: do the work in this one
                log.info("normalising in one process (no helper processes available)", exc_info=True)
                self.close()
                self.futures = None

    def results(self) -> list[pd.DataFrame]:
        out = []
        try:
            for t, chunks in enumerate(self.chunks):
                parts: list = [None] * len(chunks)
                if self.futures is not None:
                    # take back the chunks no helper has started, last first
                    for i in range(len(chunks) - 1, -1, -1):
                        if self.futures[t][i].cancel():
                            parts[i] = _run_chunk(chunks[i])
                for i, chunk in enumerate(chunks):
                    if parts[i] is None:
                        parts[i] = self._collect(t, i) if self.futures is not None else _run_chunk(chunk)
                out.append(pd.concat(parts, ignore_index=True) if parts else self.tasks[t][0](
                    np.empty(0, dtype=object), *self.tasks[t][2]))
        finally:
            self.close()
        return out

    def _collect(self, t: int, i: int) -> pd.DataFrame:
        try:
            return self.futures[t][i].result()
        except Exception:  # noqa: BLE001 - a helper died: redo its chunk here
            log.warning("a normalising helper process failed; redoing its chunk here", exc_info=True)
            return _run_chunk(self.chunks[t][i])

    def close(self) -> None:
        """Stop the helpers (their unfinished chunks are dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None


def _run_chunk(chunk: tuple) -> pd.DataFrame:
    func, values, args = chunk
    return func(values, *args)


@dataclass
class _LongValues:
    """One multi-value role as long rows: record position and a code into ``values`` (the distinct
    raw values, stripped, blanks dropped)."""

    pos: np.ndarray
    codes: np.ndarray
    values: np.ndarray

    def frame(self, per_value: pd.DataFrame) -> pd.DataFrame:
        """Rows pos, raw and the columns of ``per_value`` (one row per distinct value)."""
        out = pd.DataFrame({"pos": self.pos, "raw": self.values[self.codes]})
        for col in per_value.columns:
            out[col] = per_value[col].to_numpy()[self.codes]
        return out

    def kept(self, per_value: pd.DataFrame, keep_value, key: str, columns: list[str]) -> pd.DataFrame:
        """Rows pos and ``columns`` of ``per_value`` (one row per distinct value) where ``keep_value``
        holds, each (pos, ``key``) once, the first: what frame(), a filter and drop_duplicates give,
        found on integer codes instead of a frame of every column and row (a second at a million)."""
        keep_value = np.asarray(keep_value, dtype=bool)
        rows = np.flatnonzero(keep_value[self.codes])
        pos, codes = self.pos[rows], self.codes[rows]
        # equal key values get equal numbers, so a (pos, number) pair stands for (pos, value)
        kept_values = np.flatnonzero(keep_value)
        key_code = np.full(len(per_value), -1, dtype=np.int64)
        key_code[kept_values] = pd.factorize(per_value[key].to_numpy(dtype=object)[kept_values])[0]
        pair = pos * (int(key_code.max(initial=0)) + 1) + key_code[codes]
        first = ~pd.Series(pair).duplicated().to_numpy()
        out = {"pos": pos[first]}
        for col in columns:
            out[col] = per_value[col].to_numpy()[codes[first]]
        return pd.DataFrame(out)


def _positions(index: pd.Index):
    """A function from record ids to positions (-1 when unknown): a binary search when the ids are
    sorted, which they usually are, else the index's hash table."""
    keys = index.to_numpy()
    if index.is_monotonic_increasing and index.is_unique and keys.dtype.kind in "iuf":
        def lookup(ids: np.ndarray) -> np.ndarray:
            ids = np.asarray(ids)
            if ids.dtype.kind not in "iuf":
                return index.get_indexer(ids)
            at = np.clip(np.searchsorted(keys, ids), 0, max(len(keys) - 1, 0))
            return np.where((len(keys) > 0) & (keys[at] == ids), at, -1) if len(keys) else np.full(len(ids), -1)
        return lookup
    return lambda ids: index.get_indexer(ids)


def _long(table: RoleTable, role: str, positions) -> _LongValues:
    """The rows of one multi-value role, as RoleTable.multi gives them (text, stripped, blanks
    dropped), with each distinct value once."""
    values = table.values
    mask = (values["role"] == role).to_numpy()
    ids = values["id"].to_numpy()[mask]
    codes, uniques = pd.factorize(values["raw"].to_numpy(dtype=object)[mask])
    if pd.api.types.infer_dtype(uniques, skipna=False) == "string":
        # all text (as usual): str.strip, as the pandas string methods below do, without their overhead
        text = np.fromiter((u.strip() for u in uniques), dtype=object, count=len(uniques))
        filled = text != ""
    else:
        stripped = pd.Series(uniques, dtype=object).astype("string").str.strip()
        text, filled = stripped.to_numpy(dtype=object), stripped.fillna("").ne("").to_numpy()
    keep_value = np.append(filled, False)  # code -1: missing
    pos = positions(ids)
    keep = keep_value[codes] & (pos >= 0)
    if (pos < 0).any():
        log.warning("%d %s values belong to no record of the table; they are left out", int((pos < 0).sum()), role)
    # renumber the kept values densely, in order of first appearance
    kept_codes = codes[keep]
    used = np.zeros(len(uniques) + 1, dtype=bool)
    used[kept_codes] = True
    new_code = np.cumsum(used) - 1
    return _LongValues(pos[keep].astype(np.int64), new_code[kept_codes].astype(np.int64),
                       text[used[:-1]])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Positions as integers and values as Python strings, also when the frame is empty."""
    frame = frame.reset_index(drop=True)
    types = {c: object for c in frame.columns if c not in ("pos", "valid")}
    types["pos"] = np.int64
    if "valid" in frame.columns:
        types["valid"] = bool
    # only the columns not of their type yet: astype would copy every column of a million rows
    types = {c: t for c, t in types.items() if frame[c].dtype != t}
    return frame.astype(types) if types else frame


