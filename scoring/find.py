"""The whole find for one table: prepare, block, compare, score, group, rank primaries, explain.

This is the plain-library core that both the file command (`crm-dedup find --input`) and the
Prefect dedup flow call.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice, repeat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from matchers.blocking import Candidates, find_candidates, small_codes, unique_sorted
from matchers.compare import NULL, ComparisonVectors, compare, comparisons_for
from matchers.prepare import Prepared, prepare
from matchers.table import MULTI_ROLES, SINGLE_ROLES, RoleTable
from scoring.cluster import (components, constrained_clusters, cut_off, force_links, group_pairs_to_check,
                             guard_keeps_apart)
from scoring.model import FSModel, LogisticModel, probability, total_weight, train_fellegi_sunter, train_logistic
from scoring.primary import completeness, rank_groups
from scoring.settings import MatchSettings

log = logging.getLogger(__name__)

TIERS = ("certain", "probable", "possible")
# which comparison, at its top level, is a "match by ..." criterion in Bitrix24's words
# (a lead's own title names the deal, "Order from the site": its company's title is said so, criterion_word)
CRITERIA_WORDS = {"phone": "phone", "email": "email", "last_name": "name", "company": "title",
                  "tax_id": "tax id", "website": "website"}


def criterion_word(comparison: str, entity_type: str) -> str:
    """The word of a "match by ..." criterion for this entity type's comparison."""
    if comparison == "company" and entity_type == "lead":
        return "company title"
    return CRITERIA_WORDS[comparison]


@dataclass
class FindResult:
    entity_type: str
    pairs: pd.DataFrame  # id_a, id_b, probability, weight, tier, rules, explanation, contributions
    groups: pd.DataFrame  # id, group_id, is_primary, tier (every record, singletons included)
    group_table: pd.DataFrame  # group_id, primary_id, member_ids, size, tier, score, reason, tie, criteria
    model: FSModel | LogisticModel
    blocking: pd.DataFrame  # per rule: pairs, skipped keys
    skipped_keys: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    candidates: int = 0
    prepared: Prepared | None = None

    def write(self, folder: Path, settings: MatchSettings | None = None) -> dict[str, Path]:
        """groups.csv, pairs.csv, model.json, settings.yaml, blocking.csv into ``folder``; left_out.csv
        (id, group_id) where records are in no group although probable or better with a member of one
        (the group table's cut_off: a "not duplicates" mark or a pair held apart kept them out)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {"groups": folder / "groups.csv", "pairs": folder / "pairs.csv", "model": folder / "model.json",
               "blocking": folder / "blocking.csv"}
        left = self.left_out()
        (folder / "left_out.csv").unlink(missing_ok=True)  # (a file of an earlier find into this folder)
        if len(left):
            out["left_out"] = folder / "left_out.csv"
            _write_csv(left, out["left_out"])
        _write_csv(self.groups, out["groups"])
        _write_csv(self.pairs, out["pairs"])
        self.model.save(out["model"])
        _write_csv(self.blocking, out["blocking"])
        if settings is not None:
            out["settings"] = folder / "settings.yaml"
            settings.save(out["settings"])
        return out

    def left_out(self) -> pd.DataFrame:
        """The records in no group although probable or better with a member of one: id, group_id."""
        gt = self.group_table
        if "cut_off" not in gt or not len(gt):
            return pd.DataFrame({"id": [], "group_id": []})
        rows = [(x, gid) for gid, cut in zip(gt["group_id"], gt["cut_off"]) for x in cut]
        return pd.DataFrame(rows, columns=["id", "group_id"])

    def summary(self) -> dict:
        tiers = self.group_table["tier"].value_counts().to_dict() if len(self.group_table) else {}
        return {"entity_type": self.entity_type, "records": int(len(self.groups)),
                "candidate_pairs": int(self.candidates), "scored_pairs": int(len(self.pairs)),
                "groups": int(len(self.group_table)),
                "records_in_groups": int(self.group_table["size"].sum()) if len(self.group_table) else 0,
                "groups_per_tier": {t: int(tiers.get(t, 0)) for t in TIERS},
                "largest_group": int(self.group_table["size"].max()) if len(self.group_table) else 0,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


# The CSV files are written the way ``frame.to_csv(path, index=False)`` writes them, byte for byte
# (tests/test_find_write.py compares), but with each column made into CSV cells at once by numpy and
# Arrow instead of row by row through Python's csv module: at a million contacts about three times
# faster. Frames this does not cover go to pandas as before.


def _write_csv(frame: pd.DataFrame, path: Path, chunk_rows: int = 10_000) -> None:
    """``frame.to_csv(path, index=False)``, byte for byte, for frames of plain numpy columns.

    ``chunk_rows`` at a time: as fast as larger chunks, and the cells of 10,000 pairs take ~10 MB.
    """
    dtypes_ok = all(isinstance(t, np.dtype) and (t.kind in "iub" or t.kind == "f" and t.itemsize <= 8 or t == object)
                    for t in frame.dtypes)
    # one column: csv writes an empty cell as "" (a record must not be an empty line)
    if frame.shape[1] < 2 or not dtypes_ok or not all(type(c) is str for c in frame.columns):
        frame.to_csv(path, index=False)
        return
    eol = os.linesep  # pandas' default line terminator
    header = io.StringIO()
    csv.writer(header, lineterminator=eol).writerow(list(frame.columns))
    values = [frame.iloc[:, i].to_numpy() for i in range(frame.shape[1])]
    special = _csv_special_chars(eol)
    text = pa.large_string()  # 64-bit offsets: no limit on the bytes in a chunk
    with open(path, "wb") as f:
        f.write(header.getvalue().encode("utf-8"))
        for start in range(0, len(frame), chunk_rows):
            cells = [_csv_cells(v[start:start + chunk_rows], special) for v in values]
            cells[-1] = pc.binary_join_element_wise(cells[-1], pa.scalar("", text), pa.scalar(eol, text))
            rows = pc.binary_join_element_wise(*cells, pa.scalar(",", text))
            # the rows' UTF-8 bytes lie one after another in the array's data buffer
            offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
            first, last = offsets[rows.offset], offsets[rows.offset + len(rows)]
            f.write(rows.buffers()[2].slice(first, last - first))


def _csv_special_chars(eol: str) -> str:
    """The characters that make Python's csv module quote a cell, as pandas calls it.

    Asked of the csv module itself, as the set differs between Python versions and line terminators
    (a carriage return, for one). Only ASCII characters are structural.
    """
    found = []
    for code in range(128):
        buf = io.StringIO()
        csv.writer(buf, lineterminator=eol).writerow([f"a{chr(code)}b", "c"])
        if buf.getvalue() != f"a{chr(code)}b,c{eol}":
            found.append(chr(code))
    return "".join(found)


def _csv_cells(values: np.ndarray, special: str):
    """One column as an Arrow array of CSV cells, as pandas and the csv module write them."""
    text = pa.large_string()
    kind = values.dtype.kind
    if kind in "iu":
        return pa.array(np.ascontiguousarray(values)).cast(text)
    if kind == "b":
        return pc.if_else(pa.array(np.ascontiguousarray(values)), pa.scalar("True", text), pa.scalar("False", text))
    if kind == "f":
        # pandas formats floats with numpy's str (shortest repr: 0.1, 1e-07), NaN as empty. Each distinct
        # value (by its bits: -0.0 is not 0.0) once: rounded probabilities and weights repeat a lot
        bits, back = np.unique(np.ascontiguousarray(values).view(f"i{values.dtype.itemsize}"), return_inverse=True)
        distinct = bits.view(values.dtype)
        cells = distinct.astype(str)
        cells[np.isnan(distinct)] = ""
        return pa.array(cells, text).take(pa.array(back.reshape(-1)))
    # object: empty for None/NaN/NA, else str() of the value, as the csv module does
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        cells = pa.array(values, text)
    else:
        missing = pd.isna(values).tolist()
        cells = pa.array(["" if m else x if isinstance(x, str) else str(x)
                          for x, m in zip(values.tolist(), missing)], text)
    quote = pc.match_substring_regex(cells, "[" + "".join(f"\\x{ord(c):02x}" for c in special) + "]")
    if pc.all(quote).as_py():
        return _csv_quoted(cells)
    if pc.any(quote).as_py():
        cells = pc.replace_with_mask(cells, quote, _csv_quoted(cells.filter(quote)))
    return cells


def _csv_quoted(cells):
    """Cells in quotes, quotes inside doubled, as the csv module quotes."""
    text = pa.large_string()
    inner = pc.replace_substring(cells, '"', '""')
    return pc.binary_join_element_wise(pa.scalar('"', text), inner, pa.scalar('"', text), pa.scalar("", text))


class _Timer:
    def __init__(self):
        self.t: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - start
        log.info("stage %s took %.2f s", name, self.t[name])


def group_id(entity_type: str, primary_id, member_ids) -> str:
    """Stable for the same records from run to run: the primary's id and a digest of the members."""
    digest = zlib.crc32(",".join(sorted(map(str, member_ids))).encode()) & 0xFFFFFF
    return f"{entity_type}-{primary_id}-{digest:06x}"


def tier_of(prob: np.ndarray, settings: MatchSettings) -> np.ndarray:
    th = settings.thresholds
    return np.select([prob >= th.certain, prob >= th.probable, prob >= th.possible],
                     ["certain", "probable", "possible"], default="")


def find_duplicates(table: RoleTable, settings: MatchSettings | None = None, *,
                    skips: set[tuple] | None = None, together: list[tuple] | None = None,
                    record_info: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
                    labels: pd.Series | None = None, model=None, prepared: Prepared | None = None,
                    compare_pairs=None, changed_ids=None,
                    known: dict[str, pd.DataFrame] | None = None, free_table: bool = False,
                    ranked: Callable[[pd.DataFrame], None] | None = None) -> FindResult:
    """Find the duplicate groups of one table.

    ``skips``: pairs of ids marked "not duplicates" (never grouped together).
    ``together``: pairs of ids a person marked "the same", newest first: each pair's groups are joined
    whatever the scores say, unless a skipped pair would end up in one group (cluster.force_links).
    ``record_info``: per id, optional columns editable, citations, custom_score for primary ranking;
    or a function returning them, called when the primaries are ranked (so that they may be read
    elsewhere meanwhile).
    ``labels``: per id, a known entity label; with settings.model == "supervised" they train the model.
    ``model``: a trained model to use as is.
    ``prepared``: the table already normalised (an incremental run reuses unchanged records).
    ``compare_pairs``: ``f(prepared, a, b, comparisons) -> ComparisonVectors``, to compare elsewhere (Dask).
    ``changed_ids``: only candidate pairs touching these records are compared and scored (a check
    of new records against the others).
    ``known``: phones and e-mails of the table normalised already (as prepare takes them).
    ``free_table``: the caller is done with ``table``; its frames are emptied once the records are
    normalised, so that their memory goes before the pairs are compared (~0.8 GB at a million).
    ``ranked``: called with the group table once the primaries are ranked, before the pairs are
    explained (the flow hands the groups to its planners there: their primaries and members are final).
    """
    settings = settings or MatchSettings()
    timer = _Timer()
    with timer.stage("normalise"):
        p = prepared if prepared is not None else prepare(table, region=settings.region,
                                                          provider_rules=settings.provider_rules,
                                                          workers=settings.processes, known=known)
        del known  # (the caller keeps no reference: its memory goes now)
        entity_type, facts = table.entity_type, _record_facts(table)
        if free_table:  # nothing below reads the records themselves
            table.records, table.values = table.records.iloc[:0].copy(), table.values.iloc[:0].copy()
        del table
    with timer.stage("block"):
        cand = find_candidates(p, cap=settings.block_cap, neighbourhood_window=settings.neighbourhood_window)
        n_candidates = len(cand)
        if changed_ids is not None:
            touched = np.isin(p.ids, np.asarray(list(changed_ids), dtype=p.ids.dtype))
            cand = cand.subset(touched[cand.a] | touched[cand.b])
    with timer.stage("compare"):
        comps = comparisons_for(p)
        cv = (compare_pairs or compare)(p, cand.a, cand.b, comps)
    with timer.stage("train"):
        if model is None and settings.model_path:
            model = FSModel.load(Path(settings.model_path))
        if model is None and settings.model == "supervised":
            if labels is None:
                raise ValueError("settings.model is 'supervised' but no labels were given: pass labelled data "
                                 "(the demo truth, or past merges and skips), or use model: fellegi-sunter.")
            lab = labels.reindex(p.ids).to_numpy()
            model = train_logistic(cv, lab[cand.a] == lab[cand.b], seed=settings.seed)
        held = _held_reasons(cv, p, cand.a, cand.b) if settings.hold_rules else Held.none(len(cv.levels))
        if model is None:
            # Pairs the hold rules keep at "possible" (namesakes whose only likeness is their names,
            # and an e-mail made of those names) would count as likely matches in the prior: the
            # name and the e-mail agree together, not independently, as the model assumes. Left
            # out, the expected number of matches comes out close to the true number.
            model = train_fellegi_sunter(p, cv, cand.rules, cand.rule_names, seed=settings.seed,
                                         random_pairs=settings.random_pairs,
                                         prior_pairs=held.code == 0 if settings.hold_rules else None)
    with timer.stage("score"):
        prob = probability(model.weights(cv))
        rule_hit = _deterministic(cv) if settings.deterministic_rules else np.zeros(len(prob), bool)
        prob = np.where(rule_hit, np.maximum(prob, settings.thresholds.certain), prob)
        # an equal valid tax id is a duplicate criterion by itself (as in Bitrix24), whatever the titles say
        tax_hit = _same_tax_id(cv, p, cand.a, cand.b) if settings.deterministic_rules else np.zeros(len(prob), bool)
        tax_hit &= prob < settings.thresholds.probable  # (those it lifts: explained so)
        prob = np.where(tax_hit, np.maximum(prob, settings.thresholds.probable), prob)
        if settings.hold_rules:  # (after training: these pairs count in the prior as the model scores them)
            held = _channel_holds(cv, p, cand.a, cand.b, held)
            tax_hit &= held.code == 0  # a hold rule has the last word
        cap = settings.thresholds.possible + (settings.thresholds.probable - settings.thresholds.possible) / 2
        # records without names that share one phone or e-mail are shown, at "possible", never more
        prob = np.where(np.isin(held.code, SHOWN_AT_POSSIBLE), np.maximum(prob, settings.thresholds.possible), prob)
        prob = np.where(held.code > 0, np.minimum(prob, cap), prob)
        # only the pairs to explain need their comparison vectors from here on
        keep = np.flatnonzero(prob >= settings.thresholds.possible)
        comparisons = cv.comparisons
        kept = ComparisonVectors(comparisons, cv.levels[keep], cv.tf[keep], {k: v[keep] for k, v in cv.shown.items()})
        del cv
    with timer.stage("group"):
        labels_pos, strength = _cluster(p, cand.a, cand.b, prob, comparisons, model, settings, skips or set(),
                                        apart=np.isin(held.code, APART), together=together or [])
        p.drop_caches()  # nothing compares from here on: free the codes before the large frames are made
    with timer.stage("primary"):
        if callable(record_info):
            record_info = record_info()
        group_table, groups = _groups(p, entity_type, facts, labels_pos, strength, record_info, settings)
        group_table["cut_off"] = _cut_off_column(p, entity_type, group_table, groups, labels_pos, cand.a, cand.b,
                                                 prob, settings)
    if ranked is not None:
        ranked(group_table)
    with timer.stage("explain"):
        pairs = _pairs_frame(p, cand, keep, kept, prob, rule_hit, tax_hit, held, model, settings)
        group_table["criteria"] = _criteria(group_table, pairs)
    return FindResult(entity_type, pairs, groups, group_table, model, cand.per_rule, cand.skipped,
                      timer.t, n_candidates, prepared=p)


def _deterministic(cv: ComparisonVectors) -> np.ndarray:
    """Same valid phone and same full name, with nothing that disagrees (patronymic, birthdate)."""
    names = cv.names
    need = ("phone", "last_name", "first_name")
    if not all(n in names for n in need):
        return np.zeros(len(cv.levels), bool)
    col = {n: cv.levels[:, names.index(n)] for n in names}
    top = {n: len(cv.comparisons[names.index(n)].levels) - 1 for n in names}
    nickname = cv.comparisons[names.index("first_name")].levels.index("same after nicknames")
    hit = (col["phone"] == top["phone"]) & (col["last_name"] == top["last_name"]) & (col["first_name"] >= nickname)
    for n in ("middle_name", "birthdate"):
        if n in col:
            hit &= col[n] != 0
    return hit


# comparisons that identify a person or company, as opposed to names that many share
IDENTIFYING = {"phone": 1, "email": 0, "birthdate": 0, "tax_id": 0, "website": 0}  # levels below the top allowed
STABLE = ("birthdate", "tax_id")


@dataclass
class Held:
    """Pairs held at "possible": a code per pair (0: not held) into ``words``."""

    code: np.ndarray  # int8
    words: list[str]

    @classmethod
    def none(cls, n: int) -> "Held":
        return cls(np.zeros(n, dtype=np.int8), [""])

    def text(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.words, dtype=object)[self.code[idx]]


# a held pair's explanation ends with HELD_AT and its reason (what evaluate.held_mask and the report read)
HELD_AT = "Held at possible: "
HELD_REASONS = ["", "only names agree, no phone, email, birthdate or tax id", "different first names",
              "different patronymics", "different birthdates", "different tax ids",
              "only a phone agrees; no names to compare", "only an e-mail agrees; no names to compare",
              "one record names a person, the other no one, and the e-mail they share is an office's mailbox",
              "same INN, different KPP: branches of one firm"]
# held because the two records are different people, legal entities or branches: never in one group
APART = (2, 3, 4, 5, 9)
# held and shown: a shared phone or e-mail is Bitrix24's duplicate criterion even without names
SHOWN_AT_POSSIBLE = (6, 7)
# a phone or e-mail held by more records than this is a switchboard or role mailbox, not a person's
SHARED_BY_FEW = 3
# local parts of mailboxes that an office shares (info@, hello@...), digits after them ignored (info2@)
OFFICE_MAILBOXES = frozenset("""
    info hello office contact contacts mail email post admin administrator support help sales sale team
    reception enquiries enquiry inquiries inquiry general secretary secretar priem priemnaya zakaz zakazy
    order orders buh buhgalter buhgalteria accounting accounts billing hr kadry jobs career careers marketing
    pr press media service feedback welcome tender snab opt shop store booking client clients manager
    office-manager noreply no-reply webmaster
""".split())


def _held_reasons(cv: ComparisonVectors, p: Prepared, a: np.ndarray, b: np.ndarray) -> Held:
    """Pairs that stay "possible" whatever their score, with the reason in words (``a``, ``b``: the
    pairs' record positions):
    - only names agree, in a table that has phones or emails (namesakes share names, not phones);
    - first names that cannot be the same person's (not equal, no nickname, typo or sound-alike),
      or two different patronymics (a father and his son), unless a birthdate or tax id agrees;
    - two different birthdates, or two different tax ids (another person, another legal entity);
    - the same INN with two different KPPs (two branches of one firm, or the head office and a
      branch: each is a record of its own, however much else they share: one phone line, one site,
      one title). Later reasons override earlier ones."""
    n = len(cv.levels)
    code = np.zeros(n, dtype=np.int8)
    level = {c.name: cv.levels[:, j] for j, c in enumerate(cv.comparisons)}
    top = {c.name: len(c.levels) - 1 for c in cv.comparisons}
    identified = np.zeros(n, bool)
    for name, slack in IDENTIFYING.items():
        if name in level:
            identified |= level[name] >= top[name] - slack
    stable = np.zeros(n, bool)
    for name in STABLE:
        if name in level:
            stable |= level[name] == top[name]
    # Households and colleagues share phones and emails, so where a table has them, names and
    # birthdates that disagree mean another person however much the channels agree. Without
    # channels (a registry), the model alone decides.
    if len(p.phones) or len(p.emails):
        code[~identified] = 1
        if "first_name" in level:
            code[(level["first_name"] == 0) & ~stable] = 2
        if "middle_name" in level:
            code[(level["middle_name"] == 0) & ~stable] = 3
        if "birthdate" in level:  # typos and swapped day/month have levels of their own
            code[(level["birthdate"] >= 0) & (level["birthdate"] <= 1)] = 4
    if "tax_id" in level:
        code[level["tax_id"] == 0] = 5
    code[_other_branch(p, a, b)] = 9
    return Held(code, HELD_REASONS)


def _channel_holds(cv: ComparisonVectors, p: Prepared, a: np.ndarray, b: np.ndarray, held: Held) -> Held:
    """``held`` with the pairs that have no names to compare (one record or both lack them) and agree
    on channels alone, where nothing held them yet (``a``, ``b``: the pairs' record positions):
    - only one phone or only one e-mail agrees, a value few records hold (a switchboard or a role
      mailbox is no evidence): shown at "possible" (codes 6, 7);
    - one record names a person, the other no one, and the e-mail they share is an office's mailbox
      (hello@, info@): an office's channels are not the person's, held at "possible" (code 8)."""
    n = len(cv.levels)
    level = {c.name: cv.levels[:, j] for j, c in enumerate(cv.comparisons)}
    top = {c.name: len(c.levels) - 1 for c in cv.comparisons}
    tf = {c.name: cv.tf[:, j] for j, c in enumerate(cv.comparisons)}
    name_comparisons = [c for c in ("last_name", "first_name", "middle_name", "company") if c in level]
    free = held.code == 0
    for c in name_comparisons:
        free &= level[c] == NULL
    if not free.any():
        return held
    code = held.code.copy()
    channels = ("phone", "email", "website")
    # anything but a channel that speaks for the pair (a birthdate, tax id, address...)
    other = np.zeros(n, bool)
    for c in level:
        if c not in channels and c not in name_comparisons:
            other |= level[c] > 0
    same = {c: level[c] == top[c] if c in level else np.zeros(n, bool) for c in channels}
    silent = {c: level[c] <= 0 if c in level else np.ones(n, bool) for c in channels}  # missing or different
    office = np.zeros(n, bool)
    shown = cv.shown.get("email")
    at = np.flatnonzero(free & same["email"])
    if shown is not None and len(at):
        office[at] = [_office_mailbox(v) for v in shown[at]]
    few = {c: same[c] & (tf[c] <= SHARED_BY_FEW) if c in level else same[c] for c in ("phone", "email")}
    alone = free & ~other & silent["website"]
    code[alone & few["phone"] & silent["email"]] = 6
    code[alone & few["email"] & ~office & silent["phone"]] = 7
    person = _has_person_name(p)
    if person is not None:
        code[free & ~other & office & (person[a] != person[b])] = 8
    return Held(code, held.words)


def _office_mailbox(address: object) -> bool:
    """Whether an e-mail address is a mailbox an office shares (info@, hello@, office2@...)."""
    if not isinstance(address, str) or "@" not in address:
        return False
    return address.split("@", 1)[0].rstrip("0123456789") in OFFICE_MAILBOXES


def _has_person_name(p: Prepared) -> np.ndarray | None:
    """Per record, whether it names a person (a surname or a first name); None where the table has no names."""
    cols = [c for c in ("last", "first_raw") if c in p.records.columns]
    if not cols:
        return None
    out = np.zeros(len(p), bool)
    for c in cols:
        out |= p.codes(c)[0] >= 0
    return out


def _same_tax_id(cv: ComparisonVectors, p: Prepared, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The same valid tax id (INN) on both records, unless two different KPPs make them two branches."""
    if "tax_id" not in cv.names:
        return np.zeros(len(cv.levels), bool)
    j = cv.names.index("tax_id")
    return (cv.levels[:, j] == len(cv.comparisons[j].levels) - 1) & ~_other_branch(p, a, b)


def _kpp_codes(p: Prepared) -> tuple[np.ndarray, np.ndarray] | None:
    """Per record, a code of its valid INN and one of the KPP written with it (-1: none); None
    where the records have no KPPs (no tax ids, or normalised before KPPs were kept)."""
    if "tax_id" not in p.records.columns or "kpp" not in p.records.columns:
        return None
    return p.codes("tax_id")[0], p.codes("kpp")[0]


def _other_branch(p: Prepared, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs (positions ``a``, ``b``) with the same valid INN and two different KPPs: a firm's
    branches share its INN, each has a KPP of its own."""
    codes = _kpp_codes(p)
    if codes is None:
        return np.zeros(len(a), bool)
    inn, kpp = codes
    return (inn[a] >= 0) & (inn[a] == inn[b]) & (kpp[a] >= 0) & (kpp[b] >= 0) & (kpp[a] != kpp[b])


def _cluster(p: Prepared, pa: np.ndarray, pb: np.ndarray, prob: np.ndarray, comparisons, model,
             settings: MatchSettings, skips: set[tuple], apart: np.ndarray | None = None,
             together: list[tuple] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Groups of the pairs at or above "probable". Never in one group: pairs a person skipped, pairs
    ``apart`` (held by a rule saying they are different people or firms: different first names,
    patronymics, birthdates or tax ids, or two branches' KPPs; a chain through a third record is cut
    at its weakest link) and, with the chaining guard, pairs inside a group whose own evidence says
    they differ (scored if not yet, and held apart by the same rules). A group's strength is the
    weakest pair of a maximum spanning tree of its pairs (cluster.constrained_clusters), whether or
    not anything is held apart. Then the groups of each pair a person marked ``together`` are joined
    (a person's word over the score and the guard; never over a skip), their strength the weakest of
    theirs, "probable" where only a mark joins them (cluster.force_links)."""
    n = len(p)
    keep = prob >= settings.thresholds.probable
    a, b, s = pa[keep], pb[keep], prob[keep]
    comp = components(n, a, b)
    cannot = [np.empty((0, 2), np.int64)]
    pairs: list[tuple[int, int]] = []
    if skips or together:
        pos = pd.Series(np.arange(n), index=p.ids)
    if skips:
        pairs = [(int(pos[x]), int(pos[y])) for x, y in skips if x in pos.index and y in pos.index]
        if pairs:
            cannot.append(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    if apart is not None and apart.any():
        # only those a group would otherwise hold (a cannot-link across groups changes nothing)
        at = np.flatnonzero(apart)
        at = at[comp[pa[at]] == comp[pb[at]]]
        cannot.append(np.stack([pa[at], pb[at]], axis=1).astype(np.int64))
    if settings.chain_guard:
        ga, gb = group_pairs_to_check(comp, settings.chain_guard_max_group)
        if len(ga):
            gp = _known_probability(pa, pb, prob, ga, gb, n)
            todo = np.flatnonzero(np.isnan(gp))
            held_apart = np.zeros(len(ga), bool)  # (the scored pairs' holds are in ``apart``)
            if len(todo):
                extra = compare(p, ga[todo], gb[todo], comparisons)
                gp[todo], _ = model.score(extra)
                if settings.hold_rules:
                    held_apart[todo] = np.isin(_held_reasons(extra, p, ga[todo], gb[todo]).code, APART)
            # cut only on evidence of a difference, never for missing evidence (rule: scoring/cluster.py)
            bad = guard_keeps_apart(gp, held_apart, settings.chain_guard_probability, model.prior_weight())
            cannot.append(np.stack([ga[bad], gb[bad]], axis=1))
    cannot = np.concatenate(cannot)
    # constrained clustering only over the records that have an edge (with no cannot-link too: the
    # group's score is then its spanning tree's weakest pair, not its weakest pair of all)
    involved = unique_sorted(np.concatenate([a, b]))
    local = np.full(n, -1, dtype=np.int64)
    local[involved] = np.arange(len(involved))
    la, lb = local[a], local[b]
    ok = (local[cannot[:, 0]] >= 0) & (local[cannot[:, 1]] >= 0)
    cl = zip(local[cannot[ok, 0]].tolist(), local[cannot[ok, 1]].tolist())
    lab, weak = constrained_clusters(len(involved), la, lb, s, cl)
    labels = np.arange(n)
    labels[involved] = involved[lab]
    strength = np.full(n, np.nan)
    strength[involved] = weak
    if together:  # (records deleted or merged since they were marked are not in the table: nothing to join)
        must = [(int(pos[x]), int(pos[y])) for x, y in together if x in pos.index and y in pos.index]
        labels, strength = force_links(labels, strength, must, pairs, settings.thresholds.probable)
    return labels, strength


def _cut_off_column(p: Prepared, entity_type: str, group_table: pd.DataFrame, groups: pd.DataFrame,
                    labels: np.ndarray, pa: np.ndarray, pb: np.ndarray, prob: np.ndarray,
                    settings: MatchSettings) -> list[list[int]]:
    """Per group, the ids left alone although "probable" or better with a member (a skip or the
    chaining guard kept them out, see cluster.cut_off): listed on the group and logged, so that merging
    the group does not leave a duplicate behind unseen."""
    lone, partner, score = cut_off(labels, pa, pb, prob, settings.thresholds.probable)
    out: dict[str, list[int]] = {g: [] for g in group_table["group_id"]}
    if not len(lone):
        return [out[g] for g in group_table["group_id"]]
    gid = groups["group_id"].to_numpy()
    for x, y, s in zip(lone.tolist(), partner.tolist(), score.tolist()):
        record = p.ids[x]
        out[gid[y]].append(record.item() if isinstance(record, np.generic) else record)  # (ids of a file: text)
    log.info("%d %s record(s) are in no group although probable or better with a record in one (a skip "
             "or a pair held apart kept them out; listed in the group's cut_off); e.g. %s #%s with #%s (%.4f), "
             "group %s", len(lone), entity_type, entity_type, p.ids[lone[0]], p.ids[partner[0]], score[0],
             gid[partner[0]])
    return [out[g] for g in group_table["group_id"]]


def _known_probability(pa, pb, prob, ga, gb, n: int) -> np.ndarray:
    """The probability of each pair (ga, gb) among the scored pairs (pa, pb), NaN where not scored."""
    known = pa.astype(np.int64) * n + pb
    keys = ga.astype(np.int64) * n + gb
    out = np.full(len(keys), np.nan)
    if not len(known):
        return out
    if len(known) > 1 and np.any(known[1:] < known[:-1]):
        order = np.argsort(known)
        known, prob = known[order], prob[order]
    at = np.clip(np.searchsorted(known, keys), 0, len(known) - 1)
    found = known[at] == keys
    out[found] = prob[at[found]]
    return out


def _record_facts(table: RoleTable) -> pd.DataFrame:
    """What the primary rule reads from the records themselves, per id: completeness, created_at and
    modified_at as the records hold them (taken before the table's memory goes, see find_duplicates'
    ``free_table``; _groups reads the dates of the records in groups only)."""
    present = set(table.values["role"].unique())  # one pass over the values, not one per role
    roles = [r for r in SINGLE_ROLES if r in table.records.columns] + [r for r in MULTI_ROLES if r in present]
    facts = pd.DataFrame({"completeness": completeness(table.records, table.values, roles).to_numpy()},
                         index=pd.Index(table.records.index, name="id"))
    for col in ("created_at", "modified_at"):
        if col in table.records.columns:
            facts[col] = table.records[col].to_numpy()
    return facts


def _groups(p: Prepared, entity_type: str, facts: pd.DataFrame, labels: np.ndarray, strength: np.ndarray,
            record_info: pd.DataFrame | None, settings: MatchSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = p.ids
    sizes = np.bincount(labels, minlength=len(labels))[labels] if len(labels) else np.zeros(0, np.int64)
    in_group = sizes > 1
    member_ids = ids[in_group]
    members = pd.DataFrame({"id": member_ids, "group": labels[in_group]})
    # what the primary rule looks at, for the records in groups only
    info = facts.reindex(member_ids)
    for col in ("created_at", "modified_at"):
        if col in info.columns:
            info[col] = pd.to_datetime(info[col]).to_numpy()
    if record_info is not None:
        for col in record_info.columns:
            info[col] = record_info[col].reindex(member_ids).to_numpy()
    members = members.join(info, on="id")
    ranked = rank_groups(members, settings.primary_rule, settings.tie_policy) if len(members) else pd.DataFrame(
        columns=["group", "primary_id", "reason", "tie", "ordered_ids"])
    group_strength = pd.Series(strength, index=labels).groupby(level=0).min()
    score = group_strength.reindex(ranked["group"]).to_numpy()
    gid = np.array([group_id(entity_type, pid, ms) for pid, ms in zip(ranked["primary_id"], ranked["ordered_ids"])],
                   dtype=object)
    group_table = pd.DataFrame({
        "group_id": gid,
        "primary_id": ranked["primary_id"].to_numpy(),
        "member_ids": ranked["ordered_ids"].to_numpy(),
        "size": np.fromiter((len(x) for x in ranked["ordered_ids"]), dtype=np.int64, count=len(ranked)),
        "score": score,
        "tier": tier_of(np.nan_to_num(score), settings),
        "reason": ranked["reason"].to_numpy(),
        "tie": ranked["tie"].to_numpy(),
    })
    # every record, a group of one when it has no duplicates
    gids = (entity_type + "-" + pd.Series(ids).astype(str)).to_numpy(dtype=object)
    tiers = np.full(len(ids), "", dtype=object)
    if len(ranked):
        by_label = pd.Series(np.arange(len(ranked)), index=ranked["group"].to_numpy())
        k = by_label.reindex(labels[in_group]).to_numpy()
        gids[in_group] = gid[k]
        tiers[in_group] = group_table["tier"].to_numpy()[k]
    is_primary = ~in_group
    is_primary[in_group] = np.asarray(pd.Index(member_ids).isin(group_table["primary_id"])) if len(ranked) else False
    group_table = group_table.sort_values(["score", "group_id"], ascending=[False, True], ignore_index=True)
    groups = pd.DataFrame({"id": ids, "group_id": gids, "is_primary": is_primary, "tier": tiers})
    return group_table, groups


def _pairs_frame(p: Prepared, cand: Candidates, keep: np.ndarray, cv: ComparisonVectors, prob, rule_hit, tax_hit,
                 held: Held, model, settings: MatchSettings) -> pd.DataFrame:
    """The pairs ``keep`` (those at or above the possible threshold; ``cv`` holds their comparison
    vectors, in that order) with their explanation. Each comparison's words and weight are formatted
    once per distinct value; the texts are then joined row by row, per pattern of which comparisons
    speak for and against (a handful of patterns)."""
    ids = p.ids
    prior = model.prior_weight()
    names = cv.names
    contrib = model.contributions(cv)
    levels = cv.levels
    k = len(keep)
    a, b = cand.a[keep], cand.b[keep]
    first, second = np.where(ids[a] > ids[b], b, a), np.where(ids[a] > ids[b], a, b)  # id_a's record first
    segments, json_values = [], []
    side = np.zeros(k, dtype=np.int64)  # 2 bits per comparison: 1 for, 2 against, 0 missing
    crit_bits = np.zeros(k, dtype=np.int64)
    crit_words: list[str] = []
    for j, c in enumerate(cv.comparisons):
        lv, w = levels[:, j], contrib[:, j]
        weights, w_code = np.unique(w, return_inverse=True)
        w_code = w_code.reshape(-1)
        json_values.append(np.array([_json_float(round(float(x), 3)) for x in weights], dtype=object)[w_code])
        segment = np.full(k, "", dtype=object)
        present = np.flatnonzero(lv != NULL)
        if len(present):
            lvp, wp, wcp = lv[present], w[present], w_code[present]
            # "<words> (<bits>)", made once per distinct level and weight
            level_words = [c.describe(i) for i in range(len(c.levels))]
            w_text = [f"{float(x):+.1f}" for x in weights]
            combos, combo_code = np.unique(lvp.astype(np.int64) * len(weights) + wcp, return_inverse=True)
            segment[present] = np.array([f"{level_words[q // len(weights)]} ({w_text[q % len(weights)]})"
                                         for q in combos.tolist()], dtype=object)[combo_code.reshape(-1)]
            value = cv.shown.get(c.name)
            if value is not None and c.tf_level is not None:
                shown_at = np.flatnonzero(lvp == c.tf_level)
                vals = value[present[shown_at]]
                has = np.array([v is not None for v in vals], dtype=bool)
                at = shown_at[has]
                vals = vals[has].astype(str).astype(object)
                if c.name == "email":  # the key is not an address to look up: as the records hold it
                    vals = _as_written(p, first[present[at]], second[present[at]], vals)
                segment[present[at]] = (c.label + " " + vals + " "
                                        + c.levels[c.tf_level] + " ("
                                        + np.asarray(w_text, dtype=object)[wcp[at]] + ")")
            side[present] |= np.where(wp > 0, 1, 2) << (2 * j)
        segments.append(segment)
        if c.name in CRITERIA_WORDS:
            crit_bits[present[lv[present] == len(c.levels) - 1]] |= 1 << len(crit_words)
            crit_words.append(criterion_word(c.name, p.entity_type))
    text = np.empty(k, dtype=object)
    patterns, inverse = np.unique(side, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(patterns)))]
    for pi, pattern in enumerate(patterns.tolist()):
        rows = order[bounds[pi]:bounds[pi + 1]]
        pro = [segments[j][rows] for j in range(len(segments)) if pattern >> (2 * j) & 3 == 1]
        con = [segments[j][rows] for j in range(len(segments)) if pattern >> (2 * j) & 3 == 2]
        parts = _interleave(pro, "; ") if pro else [repeat("no agreeing evidence")]
        if con:
            parts += [repeat(". Against: ")] + _interleave(con, "; ")
        text[rows] = ["".join(t) for t in islice(zip(*parts), len(rows))]
    # the sum the probability comes from: the bits above read alone look like a sure match, but every
    # pair starts at the prior (how rare a duplicate is among any two records)
    weight = total_weight(prior, contrib)
    sums, sum_code = np.unique(np.round(weight, 1), return_inverse=True)
    text = text + np.array([f". In all {w:+.1f} bits, the prior's {prior:+.1f} included" for w in sums.tolist()],
                           dtype=object)[sum_code.reshape(-1)]
    hit = np.flatnonzero(rule_hit[keep])
    text[hit] = text[hit] + ". Rule: same valid phone and same full name"
    tax = np.flatnonzero(tax_hit[keep])
    if len(tax):
        inn = cv.shown["tax_id"][tax].astype(str)
        # a legal entity's branches share its INN (the KPP tells them apart; two different KPPs are
        # held, never lifted), a sole trader's is his own
        company = np.char.str_len(inn.astype("U")) == 10
        codes = _kpp_codes(p)
        same_kpp = np.zeros(len(tax), bool)
        if codes is not None:
            ka, kb = codes[1][a[tax]], codes[1][b[tax]]
            same_kpp = (ka >= 0) & (ka == kb)
        text[tax] = text[tax] + np.select(
            [same_kpp, company],
            [". Rule: same tax id and KPP",
             ". Rule: same tax id (a company's branches share it: a KPP on both records would tell them apart)"],
            ". Rule: same tax id").astype(object)
    held_at = np.flatnonzero(held.code[keep] > 0)
    text[held_at] = text[held_at] + ". " + HELD_AT + held.text(keep[held_at])
    # contributions as JSON: {"prior": .., "<comparison>": .., ...}
    if names:
        heads = [repeat('{"prior": ' + _json_float(round(prior, 3)) + ", " + json.dumps(names[0]) + ": ")] + [
            repeat(", " + json.dumps(name) + ": ") for name in names[1:]]
        json_parts = [x for pair in zip(heads, json_values) for x in pair] + [repeat("}")]
    else:  # (nothing to compare: a table without records, or without values)
        json_parts = [repeat('{"prior": ' + _json_float(round(prior, 3)) + "}")]
    contributions = ["".join(t) for t in islice(zip(*json_parts), k)]
    masks, crit_inverse = small_codes(crit_bits)
    crit_text = np.array([",".join(w for i, w in enumerate(crit_words) if int(m) >> i & 1) for m in masks],
                         dtype=object)[crit_inverse]
    id_a, id_b = ids[a], ids[b]
    swap = id_a > id_b
    id_a, id_b = np.where(swap, id_b, id_a), np.where(swap, id_a, id_b)
    out = pd.DataFrame({
        "id_a": id_a, "id_b": id_b, "probability": prob[keep].round(6),
        "weight": weight.round(3), "tier": tier_of(prob[keep], settings),
        "rules": cand.rule_text(keep), "criteria": crit_text,
        "explanation": text, "contributions": np.asarray(contributions, dtype=object),
    })
    return out.sort_values(["probability", "id_a", "id_b"], ascending=[False, True, True], ignore_index=True)


def _as_written(p: Prepared, first: np.ndarray, second: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """The e-mail address of canonical form ``canonical`` as record ``first`` holds it, and as
    ``second`` does after " / " where that differs (vera.kuz+crm@gmail.com / verakuz@googlemail.com)."""
    e = p.emails[p.emails["pos"].isin(np.union1d(first, second))].drop_duplicates(["pos", "canonical"])
    spelled = pd.Series(e["email"].to_numpy(dtype=object),
                        index=pd.MultiIndex.from_arrays([e["pos"].to_numpy(), e["canonical"].to_numpy(dtype=object)]))
    out = np.asarray(canonical, dtype=object).copy()
    wa = spelled.reindex(pd.MultiIndex.from_arrays([first, canonical])).to_numpy(dtype=object)
    wb = spelled.reindex(pd.MultiIndex.from_arrays([second, canonical])).to_numpy(dtype=object)
    has_a, has_b = pd.notna(wa), pd.notna(wb)
    out[has_b] = wb[has_b]
    out[has_a] = wa[has_a]
    both = np.flatnonzero(has_a & has_b)
    differ = both[wa[both] != wb[both]]
    out[differ] = wa[differ] + " / " + wb[differ]
    return out


def _interleave(columns: list[np.ndarray], sep: str) -> list:
    """Iterables to zip and join: the columns with ``sep`` between them."""
    out = [columns[0]]
    for col in columns[1:]:
        out += [repeat(sep), col]
    return out


def _json_float(x: float) -> str:
    return json.dumps(float(x))


def _criteria(group_table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """Bitrix24-style words per group: "2 matches by phone, 1 by email": records matched, not pairs
    (four records sharing one phone are 3 matches, not 6): per criterion, the records its pairs join
    less the sets they form (a record joined to a set is one match). Counted over all groups at once,
    so that a million records cost a few array passes."""
    if not len(group_table):
        return []
    sizes = group_table["member_ids"].map(len).to_numpy()
    flat = pd.Index(list(chain.from_iterable(group_table["member_ids"])))
    member_group = np.repeat(np.arange(len(group_table)), sizes)
    position = pd.Series(np.arange(len(flat)), index=flat)
    position = position[~position.index.duplicated()]
    pa = position.reindex(pairs["id_a"].to_numpy()).to_numpy()
    pb = position.reindex(pairs["id_b"].to_numpy()).to_numpy()
    known = ~np.isnan(pa) & ~np.isnan(pb)
    inside = np.flatnonzero(known)
    inside = inside[member_group[pa[inside].astype(np.int64)] == member_group[pb[inside].astype(np.int64)]]
    pa, pb = pa[inside].astype(np.int64), pb[inside].astype(np.int64)
    codes, patterns = pd.factorize(pairs["criteria"].to_numpy(dtype=object)[inside])
    words_of = [[w for w in p.split(",") if w] if isinstance(p, str) else [] for p in patterns]
    vocab = sorted(set(chain.from_iterable(words_of)))
    counts = np.zeros((len(group_table), len(vocab)), dtype=np.int64)
    for j, w in enumerate(vocab):
        with_w = np.isin(codes, [k for k, words in enumerate(words_of) if w in words])
        a, b = pa[with_w], pb[with_w]
        joined = np.unique(np.r_[a, b])
        sets = np.unique(components(len(flat), a, b)[joined])  # (a set's label is one of its records)
        counts[:, j] = (np.bincount(member_group[joined], minlength=len(group_table))
                        - np.bincount(member_group[sets], minlength=len(group_table)))
    # the words once per distinct row of counts (groups of two mostly share a few)
    rows, row_of = np.unique(counts, axis=0, return_inverse=True)
    texts = []
    for row in rows.tolist():
        found = sorted((-n, w) for n, w in zip(row, vocab) if n)
        texts.append(", ".join(f"{-n} match by {w}" if n == -1 else f"{-n} matches by {w}" for n, w in found)
                     if found else "similar records")
    return [texts[i] for i in row_of.reshape(-1).tolist()]
