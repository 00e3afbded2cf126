"""The steps of the dedup and apply flows, as plain functions over paths and ids.

Prefect tasks (pipelines/flows.py) wrap these one to one; tests and the CLI can call them directly.
Every step reads its inputs from the database or the run folder and writes its outputs to the run
folder, so a task passes only paths and ids to the next.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import functools
import gc
import importlib
import itertools
import json
import logging
import os
import re
import resource
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm import proposals
from crm.readers import load_role_table, record_info, share_repeated_strings
from crm.store import Store
from matchers.names import PERSON_COLUMNS
from matchers.parquet import release_arrow_memory, write_parquet
from matchers.table import RoleTable, crm_values
from scoring.model import FSModel
from pipelines.libc import end_with_parent, glibc
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def import_step_modules() -> None:
    """Import what the dedup flow's steps import where they use it (the quality check, the find, the
    planner, the report: ~0.5 s), for a command to do while Prefect's temporary server starts
    (prefect_api.early_server) rather than in the steps. Forked helpers inherit them."""
    for name in ("matchers.quality", "scoring.find", "merge_rules.plan", "merge_rules.skips", "merge_rules.together",
                 "scoring.report"):
        importlib.import_module(name)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def new_run(db: str | None, entity_types: list[str], runs_dir: str) -> tuple[str, str]:
    """Register a run in the database and create its folder; returns (run id, folder). The planner
    statistics of tables changed much since they were gathered are refreshed first (PostgreSQL).

    One dedup run at a time on a database: the run's row records where it runs (host, pid, the
    process's start), runs left "running" by a process that is gone are closed as failed, and one
    still running makes this one refuse (proposals.RunStillRunning, naming it; no folder is left)."""
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    folder = Path(runs_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    try:
        store = Store(db, must_exist=True)
        try:
            store.check_schema()
            analyzed = store.refresh_statistics()
            if analyzed:
                log.info("refreshed the planner statistics of %s", ", ".join(analyzed))
            proposals.start_run(store, run_id, entity_types, str(folder.resolve()), exclusive=True)
        finally:
            store.dispose()
    except BaseException:
        with contextlib.suppress(OSError):  # a run refused or not opened leaves no (empty) folder
            folder.rmdir()
        raise
    return run_id, str(folder.resolve())


def save_settings(settings: Settings, folder: str) -> str:
    path = Path(folder) / "settings.yaml"
    settings.save(path)
    return str(path)


# A table read by one step and kept for the next step of the same run in this process (the quality
# check keeps it for the find): reading the run folder's copy back costs seconds at a million records.
# Beside it, under "<folder>:normalised", the phones and e-mails the quality check normalised.
_KEPT: dict[str, RoleTable | dict[str, pd.DataFrame]] = {}


def _normalised_key(out: Path) -> str:
    return f"{out}:normalised"


def take_normalised(folder: str, entity: str) -> dict[str, pd.DataFrame] | None:
    """The phones and e-mails the quality check of this run normalised, when it ran in this process
    (taken once: for prepare's ``known``)."""
    return _KEPT.pop(_normalised_key(Path(folder) / entity), None)


def forget_kept() -> None:
    """Drop a table kept for a find that will not come, and stop the work started beside the steps
    (the run failed before them)."""
    _KEPT.clear()
    while _BESIDE:
        _BESIDE.popitem()[1].cancel()


def run_table(store: Store, entity: str, folder: str, keep: bool = False, workers: int = 1) -> RoleTable:
    """The entity's records as this run reads them: from the database once, then from the run folder,
    so that the quality check and the find see the same rows and the second does not read again.
    ``keep``: hold the table in memory for the next call in this process, which takes it (once).
    ``workers`` > 1: the database read is shared with a helper process."""
    out = Path(folder) / entity
    records_path, values_path = out / "table_records.parquet", out / "table_values.parquet"
    kept = _KEPT.pop(str(out), None)  # kept only once the copy below was written
    if kept is not None:
        table = kept
    elif records_path.exists() and values_path.exists():
        table = RoleTable(entity, pd.read_parquet(records_path), pd.read_parquet(values_path))
    else:
        out.mkdir(parents=True, exist_ok=True)
        table = _read_table(store, entity, records_path, values_path, workers > 1)
    if keep:
        _KEPT.clear()  # one at most: a run that failed before its find must not leave tables behind
        _KEPT[str(out)] = table
    return table


def _read_table(store: Store, entity: str, records_path: Path, values_path: Path, helper: bool) -> RoleTable:
    """The entity's records from the database, and their copy in the run folder. A forked helper
    reads the communications and writes their copy while this process reads the records: each read is
    single-threaded and they take about as long (~5 s each at a million contacts)."""
    store.dispose()  # no open connection goes into a forked helper
    pool = _helper_pool(1, "reading the records") if helper else None
    if pool is None:
        table = load_role_table(store, entity)
        values_written = None
    else:
        try:
            written = _one_result(pool, _write_crm_values, store.url, entity, str(values_path))
            records = store.read_entities(entity)
            values_written = written.result()
        finally:
            pool.shutdown()
        table = RoleTable.from_crm_values(entity, records, pd.read_parquet(values_path))
        del records
        share_repeated_strings(table.records)  # (the values read from parquet share them already)
    table.records.to_parquet(records_path)
    # from_crm_values adds a company's websites (a column of its records) to what the helper wrote
    if values_written is None or len(table.values) != values_written:
        table.values.to_parquet(values_path, index=False)
    return table


# the values' columns as a RoleTable has them (id, role, raw), in the parquet copy
_VALUES_SCHEMA = pa.schema([("id", pa.int64()), ("role", pa.string()), ("raw", pa.string())])


def _write_crm_values(db: str, entity: str, path: str) -> int:
    """In a helper process: the entity's communications as RoleTable values, written to ``path`` a
    chunk of rows at a time (held all at once, the 2.2 million of a million contacts took ~1.2 GB
    beside this process's read of the records)."""
    store = Store(db, must_exist=True)
    count = 0
    try:
        with pq.ParquetWriter(path, _VALUES_SCHEMA) as writer:
            for chunk in store.communication_chunks(entity, chunksize=200_000):
                values = crm_values(chunk)
                writer.write_table(pa.Table.from_pandas(values, schema=_VALUES_SCHEMA, preserve_index=False))
                count += len(values)
    finally:
        store.dispose()
    release_arrow_memory()
    return count


def quality_step(db: str | None, entity: str, folder: str, settings_path: str) -> str:
    from matchers.quality import quality_report, quality_summary, write_quality

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    start = time.perf_counter()
    table = run_table(store, entity, folder, keep=True, workers=settings.match.processes)  # the find takes it next
    normalised: dict[str, pd.DataFrame] = {}
    report = quality_report(table, region=settings.match.region, workers=settings.match.processes,
                            normalised=normalised)
    out = Path(folder) / entity
    out.mkdir(parents=True, exist_ok=True)
    _KEPT[_normalised_key(out)] = normalised  # the find takes them with the table (not normalised twice)
    del normalised
    write_quality(report, out)
    summary = quality_summary(report, entity)
    (out / "quality.txt").write_text(summary, encoding="utf-8")
    _stage(out, "quality", start)
    del report
    give_back_memory()
    return summary


def start_report(folder: str, db: str | None, settings_path: str) -> None:
    """Start writing the run's HTML report beside the next steps (it reads the run folder, all of which
    the find has written, and the demo truth from the database): in a forked helper process where
    ``match.workers`` allows more than one process (else report_step writes it); report_step
    collects it. A report already started for this folder (by a try of the step that failed after
    it) is kept: its inputs have not changed."""
    from scoring.report import write_html_report

    key = f"report:{Path(folder)}"
    if key not in _BESIDE and Settings.load(settings_path).match.processes > 1:
        _BESIDE[key] = ForkedCall("writing the report", write_html_report, Path(folder), db_url=db)


def report_step(folder: str, db: str | None) -> str:
    """The run's HTML report (folder/report.html): the one start_report started, collected, or written
    here (also when its helper process died without it). Returns its path."""
    from scoring.report import write_html_report

    started = _BESIDE.pop(f"report:{Path(folder)}", None)
    if started is not None:
        try:
            return str(started.result())
        except HelperDied as exc:
            log.warning("%s; writing the report here", exc)
    return str(write_html_report(Path(folder), db_url=db))


def find_step(db: str | None, entity: str, folder: str, settings_path: str, incremental: bool = False,
              compared_chunks: list[str] | None = None) -> str:
    """Score, group and rank one entity type; writes pairs, groups, group_table, model, blocking and
    the normalised records (reused by the next incremental run).

    ``incremental``: re-normalise only records new or changed since the last completed run (the
    others are taken as it normalised them) and score every candidate pair with that run's model.
    Falls back to a full run when there is no usable last run. ``compared_chunks``: the pairs were
    compared on Dask workers (split_step normalised the records, incrementally or not)."""
    from merge_rules.skips import load_skips
    from merge_rules.together import load_together
    from scoring.find import find_duplicates

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    out = Path(folder) / entity
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    table = run_table(store, entity, folder, workers=settings.match.processes)
    # the citation index is needed only to rank the primaries: a helper process reads it meanwhile,
    # one of the planners where they run (forked while this process was small), else one forked now
    store.dispose()  # no open connection goes into the forked helper
    planners = _planners()
    if any(key.startswith("plans:") for key in _BESIDE):
        planners = None  # busy planning the last entity's groups: the index would wait behind them
    pool = None
    if planners is None and settings.match.processes > 1:
        pool = _helper_pool(1, "reading the citation index")
    try:
        if planners is not None:
            info = functools.partial(_helper_result, planners.pool.submit(
                _record_info, db, entity, settings.match.citation_weights), _record_info, db, entity,
                settings.match.citation_weights)
        elif pool is not None:
            info = _one_result(pool, _record_info, db, entity, settings.match.citation_weights).result
        else:
            info = record_info(store, entity, settings.match.citation_weights)
        skips = load_skips(store, entity)
        together = load_together(store, entity)  # (a person's "the same": joined whatever the scores say)
        read_s = time.perf_counter() - start
        kwargs, incremental_run, compare_pairs = {}, None, None
        fell_back: list[str] = []  # why an incremental run runs in full (_incremental_inputs says)
        # the phones and e-mails the quality check normalised, when it ran in this process
        known = take_normalised(folder, entity)
        if compared_chunks is not None:  # compared on Dask workers (pipelines.dask_runs)
            from pipelines.dask_runs import prepared_from_work, vectors_from_chunks

            kwargs["prepared"] = prepared_from_work(folder, entity)
            incremental_run = _incremental_made(folder, entity)
            compare_pairs = vectors_from_chunks(compared_chunks)
        elif incremental:
            incremental_run = _incremental_inputs(store, table, folder, settings, kwargs, known, why=fell_back)
        if incremental_run is not None and incremental_run["model"]:
            kwargs["model"] = FSModel.load(incremental_run["model"])
        reuse_s = time.perf_counter() - start - read_s
        # the groups go to the planners as soon as they are ranked: planning them takes both CPUs for
        # longer than the find, whose explaining and writing leave one idle
        result = find_duplicates(table, settings.match, skips=skips, together=together, record_info=info,
                                 compare_pairs=compare_pairs, known=known, free_table=True,
                                 ranked=functools.partial(plan_beside, db, entity, folder, settings_path), **kwargs)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.timings = {"read": read_s, **result.timings}
    if cut := int(result.group_table["cut_off"].map(len).sum()):  # (the run's own groups: said aloud)
        log.warning("%s: %d record(s) are in no group although probable or better with a member of one (a skip "
                    "or a pair held apart kept them out): listed in the cut_off column of %s", entity, cut,
                    out / "group_table.parquet")
    result.timings["normalise"] += reuse_s  # (taking the last run's normalised records is normalising)
    del table, info, kwargs, known  # the result holds what is written below; at a million records ~0.5 GB
    write_start = time.perf_counter()
    # the normalised records first: once written their memory goes
    result.prepared.save(out)
    result.prepared = None
    give_back_memory()
    for frame, name in ((result.pairs, "pairs"), (result.groups, "groups")):
        write_parquet(frame, out / f"{name}.parquet")
    result.group_table.to_parquet(out / "group_table.parquet", index=False)
    result.model.save(out / "model.json")
    result.blocking.to_parquet(out / "blocking.parquet", index=False)
    result.skipped_keys.astype({"key": str}).to_parquet(out / "skipped_keys.parquet", index=False)
    release_arrow_memory()
    result.timings["write"] = time.perf_counter() - write_start
    summary = result.summary()
    summary["incremental"] = incremental_run is not None
    if incremental and incremental_run is None:  # (asked for, but no last run could be reused: said why)
        summary["incremental_fallback"] = fell_back[0] if fell_back else "no usable last run (see the log)"
    if incremental_run is not None:
        summary["changed_records"] = incremental_run["changed_records"]
        summary["based_on_run"] = incremental_run["based_on_run"]
    summary["peak_rss_mb"] = round(peak_rss_mb(), 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    del result
    give_back_memory()
    return str(out)


def _record_info(db: str | None, entity: str, weights: dict[str, float]) -> pd.DataFrame:
    """record_info, in a helper process with its own connection."""
    store = Store(db, must_exist=True)
    try:
        return record_info(store, entity, weights)
    finally:
        store.dispose()
        give_back_memory()  # a planner lives on to the end of the run


def _last_entity_run(store: Store, entity: str, exclude: str | None, settings: Settings,
                     why: list[str] | None = None) -> dict | None:
    """The newest completed run whose folder still holds this entity's normalised records, model and table,
    if it normalised them as this run would (the same version of the normalisers, region and e-mail
    provider rules); else None: a full run (``why``, given by an incremental run, gets the reason, logged as a
    warning)."""
    from matchers.prepare import Prepared, normalisation

    for run in proposals.completed_runs(store):
        d = Path(run["folder"] or "") / entity
        if (exclude is None or str(Path(run["folder"] or "").resolve()) != str(Path(exclude).resolve())) and \
                all((d / name).exists() for name in ("prepared.json", "model.json", "table_records.parquet",
                                                     "table_values.parquet")):
            saved, wanted = Prepared.saved_normalisation(d), normalisation(settings.match.region,
                                                                            settings.match.provider_rules)
            if saved != wanted:
                reason = (f"the last {entity} run ({run['id']}) normalised its records otherwise "
                          f"({_normalised_otherwise(saved, wanted)}): they are not reused")
                # (a warning where an incremental run asks why it runs in full; a check just normalises them all)
                log.log(logging.WARNING if why is not None else logging.INFO, "%s", reason)
                if why is not None:
                    why.append(reason)
                return None
            return run
    if why is not None:  # (an incremental run asks: it runs in full, and says why)
        why.append(f"no completed run keeps the {entity} records it normalised (a run folder with "
                   f"{entity}/prepared.json, model.json and the copy of the table): they are all normalised")
        log.warning("%s", why[-1])
    return None


def _normalised_otherwise(saved: dict, wanted: dict) -> str:
    """What differs between two normalisation records (matchers.prepare.normalisation): 'region RU, now KZ'."""
    if not saved:
        return "before the normalisers had a version"

    def flat(d: dict) -> dict:  # {"libraries": {"phonenumbers": "8.0"}} -> {"libraries phonenumbers": "8.0"}
        return {f"{k} {n}" if isinstance(v, dict) else k: x for k, v in d.items()
                for n, x in (v.items() if isinstance(v, dict) else [(None, v)])}

    then, now = flat(saved), flat(wanted)
    return "; ".join(f"{k} {then.get(k)}, now {now.get(k)}" for k in sorted(set(then) | set(now))
                     if then.get(k) != now.get(k))


def reuse_normalised(table, last: dict, settings: Settings, known: dict[str, pd.DataFrame] | None = None,
                     copy_at: Path | None = None):
    """``table`` normalised (a Prepared, in the table's order), reusing ``last`` run's normalisation of
    the records that run read as they are now (the copy of the table in its folder says what it read);
    records new or changed since are normalised here. Returns it and the ids of those; None when the
    table holds other roles than then (the normalised columns, and so the comparisons, would differ).
    ``last``: a run _last_entity_run gave (normalised alike). ``known``: phones and e-mails normalised
    already (prepare's ``known``), used for the records normalised here, then emptied: the reused
    records carry theirs (at a million records they took the run over 3 GB). ``copy_at``: the
    records file of this run's copy of ``table``: its content hashes are kept beside it, so that the
    next run compares with them instead of reading the copy again."""
    from matchers.prepare import Prepared, prepare, table_roles

    d = Path(last["folder"]) / table.entity_type
    if table_roles(table) != Prepared.saved_roles(d):
        log.info("the %s records hold other roles than when run %s normalised them (%s, now %s): all are "
                 "normalised again", table.entity_type, last["id"], sorted(Prepared.saved_roles(d)),
                 sorted(table_roles(table)))
        return None
    # by content, not by modified_at: an edit that left modified_at alone, a merge and its undo (which
    # puts the old modified_at back with the old values) are all seen
    hashes = table.content_hashes()
    differs = table.changed_since_saved(d / "table_records.parquet", d / "table_values.parquet", hashes)
    if copy_at is not None:
        RoleTable.save_hashes(hashes, copy_at)
    del hashes
    # which records were normalised then, and how their birthdates came out (two columns: the rest of
    # them is loaded once the phones and e-mails known here have gone)
    then = pd.read_parquet(d / "prepared_records.parquet", columns=["id", "birthdate"] if "birthdate" in
                           pq.read_schema(d / "prepared_records.parquet").names else ["id"])
    ids = table.records.index.to_numpy()
    then_at = pd.Index(then["id"].to_numpy()).get_indexer(ids)  # -1: not normalised then
    fresh = (then_at < 0) | np.isin(ids, np.asarray(differs + sorted(_dated_today(table, then)), dtype=ids.dtype))
    del then
    changed = ids[fresh].tolist()
    normalised = prepare(RoleTable(table.entity_type, table.records.loc[changed],
                                   table.values[table.values["id"].isin(changed)]),
                         region=settings.match.region, provider_rules=settings.match.provider_rules, known=known)
    if known is not None:
        known.clear()
    give_back_memory()
    previous = Prepared.load(d)
    # each record from where it is now: normalised here, else as then (its place in the two joined)
    at = np.where(fresh, len(previous) + np.cumsum(fresh) - 1, then_at)
    both = Prepared.concat([previous, normalised])
    del previous, normalised  # (each copy goes as soon as the next is made: at a million records ~0.5 GB each)
    give_back_memory()
    return both.take_positions(at), changed


def _dated_today(table, then: pd.DataFrame) -> set:
    """Records whose normalised form depends on the day it was made: a birthdate later than that day
    was dropped (a typo, until the day comes). Normalised again on each run (they are few). ``then``:
    the last run's normalised records (id and birthdate at least)."""
    if "birthdate" not in table.records.columns or "birthdate" not in then.columns:
        return set()
    dropped = set(then["id"].to_numpy()[then["birthdate"].isna().to_numpy()].tolist())
    raw = table.records["birthdate"]
    return dropped & set(raw.index[raw.notna().to_numpy()].tolist())


def _incremental_inputs(store: Store, table, folder: str, settings: Settings, kwargs: dict,
                        known: dict[str, pd.DataFrame] | None = None, why: list[str] | None = None) -> dict | None:
    """An incremental run of ``table``'s entity built on the last completed run: puts the records
    normalised (those not changed since as that run left them) in ``kwargs["prepared"]`` and returns
    what the run is built on (based_on_run, changed_records, and the model to score with: that run's,
    unless the settings name one; None when it does not fit the comparisons of these records, which
    then trains a new one). None: no usable last run, or the records hold other roles: a full run
    (``why`` gets the reason, also logged as a warning).
    Every candidate pair is compared and scored again: the weight of a pair whose two records did not
    change still moves with the term frequencies of its values, which change with any record."""
    from matchers.compare import comparisons_for

    why = [] if why is None else why
    last = _last_entity_run(store, table.entity_type, exclude=folder, settings=settings, why=why)
    copy = Path(folder) / table.entity_type / "table_records.parquet"  # (run_table's copy of the table)
    reused = reuse_normalised(table, last, settings, known, copy) if last is not None else None
    if reused is None:
        if last is not None:  # (else _last_entity_run said why)
            why.append(f"the {table.entity_type} records hold other roles than when run {last['id']} normalised "
                       "them: they are all normalised again")
            log.warning("%s", why[-1])
        return None
    kwargs["prepared"], changed = reused
    del reused
    give_back_memory()  # (the copies reuse_normalised made and let go: the find's peak comes after)
    model = None
    if not settings.match.model_path:  # (a model the settings name is used as it is)
        model = Path(last["folder"]) / table.entity_type / "model.json"
        comparisons = comparisons_for(kwargs["prepared"])
        names = [c.name for c in comparisons]
        saved = FSModel.load(model)
        if saved.comparisons != names or saved.levels != [list(c.levels) for c in comparisons]:
            log.info("run %s's model compares other things than these %s records (%s): a new one is trained",
                     last["id"], table.entity_type, ", ".join(names))
            model = None
    log.info("incremental %s run: %d new or changed records since %s", table.entity_type, len(changed),
             last["started_at"])
    return {"based_on_run": last["id"], "changed_records": len(changed), "model": str(model) if model else None}


def _incremental_made(folder: str, entity: str) -> dict | None:
    """What split_step built this run's records on (it normalised them; None: in full)."""
    path = Path(folder) / entity / "work" / "incremental.json"
    return json.loads(path.read_text()) if path.exists() else None


PLAN_CHUNK = 5000  # groups planned at once: bounds the plans held in memory on a large table


def start_planners(settings_path: str) -> None:
    """Fork the planning helpers now, while this process holds no table yet: each entity's groups are
    then planned as soon as its find has ranked them (plan_beside), while the find explains its pairs
    and writes its files and the next entity is read, checked and found (one CPU is mostly idle there). Forked later,
    from a process holding a million records, a helper left waiting would keep a copy of every page
    that process changes. Nothing starts with ``match.workers`` of 1 or where helpers cannot."""
    importlib.import_module("merge_rules.plan")  # imported once here, not by each helper after the fork
    workers = Settings.load(settings_path).match.processes
    if workers > 1 and "planners" not in _BESIDE:
        pool = _helper_pool(workers, "planning")
        if pool is not None:
            _BESIDE["planners"] = _Planning(pool=pool)


def _planners() -> "_Planning | None":
    """The planners start_planners started, while their pool works (a helper killed breaks it: then
    they are dropped and the work is done as without them)."""
    from concurrent.futures.process import BrokenProcessPool

    planners = _BESIDE.get("planners")
    if planners is not None:
        try:
            planners.pool.submit(int)
        except (BrokenProcessPool, RuntimeError):
            log.warning("the planning helpers stopped; planning without them")
            _BESIDE.pop("planners").cancel()
            return None
    return planners


def plan_beside(db: str | None, entity: str, folder: str, settings_path: str, gt: pd.DataFrame) -> None:
    """Hand the chunks of these groups (group_table order) to the planners start_planners started,
    if any; propose_step collects the plans (a find run again replaces them)."""
    planners = _planners()
    if planners is not None:
        key = f"plans:{Path(folder) / entity}"
        if (earlier := _BESIDE.pop(key, None)) is not None:
            earlier.cancel()
        chunks = _plan_chunks(db, entity, folder, gt, settings_path)
        _BESIDE[key] = _Planning(futures=[planners.pool.submit(_plan_chunk, c) for c in chunks],
                                 parts=[c[-1] for c in chunks])


class _Planning:
    """Work handed to the planners, for _BESIDE: their pool, or the chunks of one entity being planned
    (futures and their part files)."""

    def __init__(self, pool=None, futures: list | None = None, parts: list[str] | None = None):
        self.pool, self.futures, self.parts = pool, futures or [], parts or []

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()
        concurrent.futures.wait(self.futures)  # a chunk being planned still writes its part file
        for part in self.parts:
            Path(part).unlink(missing_ok=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _plan_chunks(db: str | None, entity: str, folder: str, gt: pd.DataFrame, settings_path: str) -> list[tuple]:
    """The groups of one entity in chunks of PLAN_CHUNK, as _plan_chunk takes them: each stores its
    plans under the run of ``folder`` and writes them to a part file of plans.jsonl in the entity's
    folder, taking those of the last run's plans.jsonl that are still what it would make (_plans_base)."""
    out = Path(folder) / entity
    groups = list(zip(gt["primary_id"].tolist(), gt["member_ids"].tolist()))  # (plan_groups takes any ints)
    group_ids = gt["group_id"].tolist()
    base = _plans_base(db, entity, folder, settings_path)
    return [(db, entity, groups[at:at + PLAN_CHUNK], group_ids[at:at + PLAN_CHUNK], settings_path, run_of(folder),
             base, str(out / f"plans.{at // PLAN_CHUNK:05d}.part"))
            for at in range(0, len(gt), PLAN_CHUNK)]


def _plans_base(db: str | None, entity: str, folder: str, settings_path: str) -> str | None:
    """The plans.jsonl of the newest completed run that planned this entity's groups, when it planned
    them under this run's planner_identity (the same settings, code and libraries): the planning
    takes a group's plan from it when its rows have not changed since (plan_json), instead of making
    it again. Decided once per run folder (reuse_plans_from.json), so that the find's planners and the
    propose step hand out the same chunks."""
    from merge_rules.plan import planner_identity

    out = Path(folder) / entity
    out.mkdir(parents=True, exist_ok=True)
    decided = out / "reuse_plans_from.json"
    if decided.exists():
        return json.loads(decided.read_text())["plans"]
    identity = planner_identity(Settings.load(settings_path).merge)
    (out / "planned_by.txt").write_text(identity)
    base = None
    store = Store(db, must_exist=True)
    try:
        for run in proposals.completed_runs(store):
            d = Path(run["folder"] or "") / entity
            if run["folder"] and d.resolve() != out.resolve() and (d / "plans.jsonl").exists():
                made_by = d / "planned_by.txt"
                if made_by.exists() and made_by.read_text() == identity:
                    base = str(d / "plans.jsonl")
                else:
                    log.info("%s: the plans of run %s were made by other settings or code: all are made again",
                             entity, run["id"])
                break
    finally:
        store.dispose()  # (no open connection goes into a helper forked after this)
    decided.write_text(json.dumps({"plans": base}))
    return base


def run_of(folder: str) -> str:
    """The id of the run whose folder this is (new_run names the folder after it)."""
    return Path(folder).name


def propose_step(db: str | None, run_id: str, folder: str, entity_types: list[str], settings_path: str,
                 report_beside: bool = False) -> dict:
    """Plan the merge of every group found (a dry run), then replace the pending proposals of these
    entity types with the groups and their plans, in one transaction. Each entity's plans go to its
    plans.jsonl (one JSON object per line, in group_table order) and, a chunk at a time as they are
    made, to the database under the run (each chunk's planning stores it in a short transaction of
    its own); the groups are then swapped in with one transaction over small rows.

    Chunks of groups are planned by ``match.workers`` forked helper processes (those of
    start_planners, which may have begun them beside the find) while this process prepares the rest
    of each row. ``report_beside``: start the HTML report (start_report) once the plans are made, to
    be written while the proposals are stored, which keeps one CPU busy. Returns counts (removed,
    inserted, kept) and the seconds spent planning and storing."""
    settings = Settings.load(settings_path)
    start = time.perf_counter()
    entity_types = list(dict.fromkeys(entity_types))
    tables = {entity: _group_table(folder, entity) for entity in entity_types}
    begun, chunks, pool, store = {}, {}, None, None
    try:
        # (from here on, what was begun beside the find is this step's to finish or to stop)
        begun = {entity: _BESIDE.pop(f"plans:{Path(folder) / entity}", None) for entity in entity_types}
        chunks = {entity: _plan_chunks(db, entity, folder, gt, settings_path) for entity, gt in tables.items()}
        planners = _planners()
        _BESIDE.pop("planners", None)  # this step shuts them down
        workers = min(settings.match.processes, sum(len(c) for e, c in chunks.items() if begun[e] is None))
        # forked before this step opens a connection
        pool = planners.pool if planners is not None else _helper_pool(workers, "planning") if workers > 1 else None
        if run_of(folder) != run_id:
            raise ValueError(f"{folder} is not the folder of run {run_id} (new_run names it after its run)")
        store = Store(db, must_exist=True)
        planned = {}  # per entity, a call per chunk giving its managers once it is planned
        for entity in entity_types:
            if begun[entity] is not None and begun[entity].parts != [c[-1] for c in chunks[entity]]:
                begun[entity].cancel()  # not the chunks of this group_table (cannot happen in a flow)
                begun[entity] = None
            if begun[entity] is not None:  # handed to the planners by the find
                planned[entity] = [functools.partial(_helper_result, future, _plan_chunk, chunk)
                                   for future, chunk in zip(begun[entity].futures, chunks[entity], strict=True)]
            elif pool is not None:
                planned[entity] = [functools.partial(_helper_result, pool.submit(_plan_chunk, chunk), _plan_chunk, chunk)
                                   for chunk in chunks[entity]]
            else:
                planned[entity] = [functools.partial(_plan_chunk, chunk) for chunk in chunks[entity]]
        from merge_rules.skips import load_skips  # (where used, as in find_step: not at the flow's start-up)

        skips = {entity: load_skips(store, entity) for entity, gt in tables.items()
                 if "cut_off" in gt and gt["cut_off"].map(len).any()}  # (to say why a record was left out)
        reused = [0]  # plans taken from the last run (its rows unchanged), not made again
        rows = {entity: _planned_rows(folder, entity, gt, chunks[entity], planned[entity], skips.get(entity, set()),
                                      reused)
                for entity, gt in tables.items()}
        planned_s = time.perf_counter() - start
        if report_beside:
            start_report(folder, db, settings_path)
        counts = proposals.replace_pending(store, run_id, entity_types, itertools.chain.from_iterable(rows.values()))
    except BaseException:
        for entity_begun in begun.values():
            if entity_begun is not None:
                entity_begun.cancel()
        if pool is not None:
            pool.shutdown(cancel_futures=True)  # the chunks being planned finish: then their parts go
        for part in (c[-1] for entity_chunks in chunks.values() for c in entity_chunks):
            Path(part).unlink(missing_ok=True)
        if store is not None:
            with contextlib.suppress(Exception):  # (the database may be what failed: finish_run drops them)
                proposals.drop_staged_plans(store, run_id)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if store is not None:
            store.dispose()
        _PLANS_INDEX.clear()  # (where this process planned: the index of the last run's plans goes)
    counts.update(plans_reused=reused[0], plan_seconds=round(planned_s, 2),
                  store_seconds=round(time.perf_counter() - start - planned_s, 2))
    log.info("planned %d groups in %.1f s (%d plans taken from the last run, their rows unchanged), stored them "
             "in %.1f s", sum(map(len, rows.values())), counts["plan_seconds"], reused[0], counts["store_seconds"])
    return counts


def _group_table(folder: str, entity: str) -> pd.DataFrame:
    path = Path(folder) / entity / "group_table.parquet"
    gt = pd.read_parquet(path)
    gt["member_ids"] = [np.asarray(ms, dtype=np.int64).tolist() for ms in gt["member_ids"]]  # (lists of ints)
    members = [m for ms in gt["member_ids"] for m in ms]
    if len(set(members)) != len(members):  # a find puts each record in one group; planned in chunks
        raise ValueError(f"{path} puts a record in more than one group")
    return gt


def _helper_pool(workers: int, purpose: str):
    """Forked helper processes (they start with everything imported and open their own connections),
    or None where a process may have none (a daemonic Dask worker) or they fail to start: then this
    process does the work alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if multiprocessing.current_process().daemon or threading.current_thread() is not threading.main_thread():
        return None  # (a fork from another thread can leave the child waiting on a lock held at the fork)
    pool = None
    try:
        with _forking():
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=functools.partial(end_with_parent, os.getpid()))
            pool.submit(int).result(timeout=120)  # starts the helpers now, so that a refusal shows here
        return pool
    except Exception:  # noqa: BLE001 - no helper processes here
        log.info("%s in one process (no helper processes available)", purpose, exc_info=True)
        if pool is not None:  # helpers started before the failure would wait for work forever
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
        return None


@contextlib.contextmanager
def _forking():
    """Around a fork: freed memory given back first, and the objects alive now left out of the
    children's cycle collections (frozen while they fork; a collection going over them would write to
    every page holding one, copying it into the child). This process collects them as before after."""
    give_back_memory()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class HelperDied(RuntimeError):
    """A helper process ended without sending its result back (killed, out of memory)."""


class ForkedCall:
    """``func(*args, **kwargs)`` started in a forked child process, which begins with this process's
    memory (a table read here goes to it without a copy) and ends with the call; result() waits for
    its result (small: it comes back pickled) or raises its error. Used to run one step beside
    another: two threads of this process would take turns at the GIL.

    The call is made here and now instead where a process may have no children (a daemonic Dask
    worker), where the fork is refused, and when called from any thread but the main one: a process
    forked while another thread of this one imports a module waits for that module's lock forever
    (seen when this ran in one of Prefect's threads)."""

    def __init__(self, purpose: str, func, *args, **kwargs):
        import multiprocessing
        import threading

        self.purpose = purpose
        self._child = None
        if not multiprocessing.current_process().daemon and threading.current_thread() is threading.main_thread():
            try:
                self._start(multiprocessing.get_context("fork"), func, args, kwargs)
                return
            except OSError:
                log.warning("%s in this process: no helper process could be started", purpose, exc_info=True)
        try:
            self._outcome = (True, func(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised by result(), where a child's error would be
            self._outcome = (False, exc)

    def _start(self, ctx, func, args, kwargs) -> None:
        receive, send = ctx.Pipe(duplex=False)
        try:
            # daemonic: a child whose result is never collected does not keep this process from ending
            child = ctx.Process(target=_forked_call, args=(send, func, args, kwargs, os.getpid()),
                                name=self.purpose, daemon=True)
            with _forking():
                child.start()
        except BaseException:
            receive.close()
            raise
        finally:
            send.close()  # the child holds the sending end; this one would keep recv() from seeing it go
        self._child, self._receive = child, receive

    def result(self):
        if self._child is not None:
            try:
                self._outcome = self._receive.recv()
            except EOFError:
                self._child.join()
                raise HelperDied(f"the helper process {self.purpose} ended without a result "
                                 f"(exit code {self._child.exitcode})") from None
            finally:
                self._receive.close()
                self._child.join()
                self._child = None
        ok, value = self._outcome
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child (the run failed: its result will not be collected)."""
        if self._child is not None:
            self._child.terminate()
            self._child.join()
            self._receive.close()
            self._child = None


# Work started beside the next steps of a run and collected by a later step, by kind and folder
_BESIDE: dict[str, ForkedCall | _Planning] = {}


def _forked_call(send, func, args, kwargs, parent: int) -> None:
    """In the child of a ForkedCall: the call, and its result or error sent back (an error with the
    child's traceback as a note; one that would not arrive whole, as text). It ends with ``parent``
    (the process that forked it), killed or not: nobody would collect its result."""
    import pickle
    import signal
    import traceback

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # cancel() ends it; the flow's handler is not for it
    end_with_parent(parent)
    try:
        outcome = (True, func(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - every error goes back to the caller
        exc.add_note(f"in the helper process:\n{traceback.format_exc()}")
        outcome = (False, exc)
    try:
        pickle.loads(pickle.dumps(outcome))  # what cannot make the trip is sent as text instead
    except Exception as exc:  # noqa: BLE001
        what = "result" if outcome[0] else f"error {type(outcome[1]).__name__}: {outcome[1]}"
        outcome = (False, RuntimeError(f"the helper process could not send its {what} back ({exc})"))
    send.send(outcome)
    send.close()


def _one_result(pool, func, *args):
    """``pool.submit(func, *args)`` on a pool kept for this one call, which stops as soon as the result
    is in: a forked helper left waiting keeps the pages this process has changed since the fork (its
    copy of them), ~1 GB at a million records by the end of the find."""
    future = pool.submit(func, *args)
    future.add_done_callback(lambda _: pool.shutdown(wait=False))
    return future


def give_back_memory() -> None:
    """Return the memory freed by the step to the system: glibc keeps freed memory for reuse (~0.5 GB
    after the find of a million records), which a helper forked next would share and, as this process
    reuses it, keep a copy of; Arrow's pool keeps freed pages likewise."""
    gc.collect()
    release_arrow_memory()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _plan_chunk(chunk: tuple) -> list[list[int]]:
    """One chunk of groups planned (in a helper process, or in this one): each group's plan written to
    the chunk's part file as its line of plans.jsonl, the earlier run's taken where it is still the
    plan (plan_json); returns the managers responsible for each group's live records as the plans read
    them, and how many plans were taken."""
    from merge_rules.plan import plan_json

    db, entity, groups, group_ids, settings_path, run_id, base, part = chunk
    store = Store(db, must_exist=True)
    try:
        earlier = _earlier_plans(base, group_ids) if base is not None else None
        texts, managers, reused = plan_json(store, entity, groups, Settings.load(settings_path).merge, earlier)
        del earlier
        # (each text was written by to_json, or read back from an earlier run's and parsed: JSON)
        texts = [proposals.EncodedJson(text) for text in texts]
        # stored here, as they were encoded (no check by the database needed), while the other
        # chunks are planned: the final swap of the groups then writes small rows only
        proposals.stage_plans(store, run_id, zip(group_ids, texts, strict=True))
    finally:
        store.dispose()
    with open(part, "w", encoding="utf-8") as fh:
        fh.writelines(_plan_prefix(g) + text + "}\n" for g, text in zip(group_ids, texts))
    del texts
    give_back_memory()  # a planner lives on to the end of the run
    return managers, reused


def _earlier_plans(path: str, group_ids: list[str]) -> list[str | None]:
    """The plan texts that the plans.jsonl at ``path`` holds for these groups (None where it has none)."""
    index = _plans_index(path)
    out: list[str | None] = []
    try:
        with open(path, "rb") as fh:
            for gid in group_ids:
                at = index.get(gid)
                if at is None:
                    out.append(None)
                    continue
                fh.seek(at[0])
                line = fh.read(at[1]).decode("utf-8", errors="replace")  # (a broken text is not taken)
                prefix = _plan_prefix(gid)
                out.append(line[len(prefix):-2] if line.startswith(prefix) and line.endswith("}\n") else None)
    except OSError as exc:  # (a run folder cleaned away meanwhile: the plans are made again)
        log.warning("the plans of an earlier run could not be read (%s); they are made again", exc)
        return [None] * len(group_ids)
    return out


_PLANS_INDEX: dict[tuple, dict[str, tuple[int, int]]] = {}


def _plans_index(path: str) -> dict[str, tuple[int, int]]:
    """Where each group's line is in a plans.jsonl: group id -> (offset, length); read once per process
    (a planner plans every chunk of a run)."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _PLANS_INDEX:
        _PLANS_INDEX.clear()
        index, at = {}, 0
        start = len('{"group_id": ')
        with open(path, "rb") as fh:
            for line in fh:
                end = line.find(b', "plan": ')
                if line.startswith(b'{"group_id": ') and end > 0:
                    with contextlib.suppress(ValueError):  # (a line broken there is not taken)
                        index[json.loads(line[start:end])] = (at, len(line))
                at += len(line)
        _PLANS_INDEX[key] = index
    return _PLANS_INDEX[key]


def _helper_result(future, func, *args):
    """The result of ``future`` (``func(*args)`` handed to helper processes); when their pool broke (a
    helper was killed, e.g. out of memory), ``func(*args)`` done here instead."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        log.warning("a helper process died; %s done in this process", func.__name__, exc_info=True)
        return func(*args)


def _plan_prefix(group_id: str) -> str:
    """How a line of plans.jsonl starts: the line is this, the plan's JSON, and "}"."""
    return '{"group_id": ' + json.dumps(group_id, ensure_ascii=False) + ', "plan": '


def _planned_rows(folder: str, entity: str, gt: pd.DataFrame, chunks: list[tuple], planned: list,
                  skips: set[tuple[int, int]], reused: list[int]) -> list[dict]:
    """The entity's proposal rows, as replace_pending takes them (their plans staged by the planning of
    each chunk): each chunk's part file, once ``planned`` (a call per chunk, giving its managers and
    how many plans it took from an earlier run, added to ``reused[0]``) says it is done, is added to
    plans.jsonl (a million records make 120,000 groups: their plans are not all held at once).
    ``skips``: the entity's "not duplicates" pairs (why a record was left out)."""
    out = Path(folder) / entity
    explained = pd.read_parquet(out / "pairs.parquet")
    pairs = _pairs_per_group(gt, explained)
    left_out = _left_out_per_group(gt, explained, skips)
    del explained
    rows = []
    # written under another name until every chunk is in: a planning that fails leaves no plans.jsonl
    # that looks whole (nor that of an earlier try)
    partial = out / "plans.jsonl.partial"
    try:
        with open(partial, "wb") as fh:
            for at, chunk, done in zip(range(0, len(gt), PLAN_CHUNK), chunks, planned, strict=True):
                managers, taken = done()
                reused[0] += taken
                part = Path(chunk[-1])
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
                part.unlink()
                rows += [{"id": row.group_id, "entity_type": entity, "tier": row.tier or "possible",
                          "score": float(row.score), "primary_id": int(row.primary_id),
                          "member_ids": row.member_ids, "responsible_ids": resp,
                          "primary_reason": row.reason, "criteria": row.criteria,
                          "pairs": pairs.get(row.group_id, "[]"), "left_out": left_out.get(row.group_id)}
                         for row, resp in zip(gt.iloc[at:at + PLAN_CHUNK].itertuples(index=False), managers)]
        os.replace(partial, out / "plans.jsonl")
    except BaseException:
        partial.unlink(missing_ok=True)
        (out / "plans.jsonl").unlink(missing_ok=True)
        raise
    return rows


def _pairs_per_group(gt: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, str]:
    """The explained pairs inside each group, as the JSON text of a list (one conversion for all pairs,
    then split by group: per-group DataFrame work costs ~1 ms a group)."""
    member_group = {int(m): g for g, ms in zip(gt["group_id"], gt["member_ids"]) for m in ms}
    ga, gb = pairs["id_a"].map(member_group), pairs["id_b"].map(member_group)
    inside = pairs[(ga == gb) & ga.notna()].assign(group=ga)
    records = inside[["id_a", "id_b", "probability", "tier", "criteria", "explanation", "contributions"]].to_dict("records")
    lists: dict[str, list[dict]] = {}
    for g, rec in zip(inside["group"].to_numpy(), records):
        lists.setdefault(g, []).append(rec)
    return {g: json.dumps(recs, default=_json_value) for g, recs in lists.items()}


def _left_out_per_group(gt: pd.DataFrame, pairs: pd.DataFrame, skips: set[tuple[int, int]]) -> dict[str, str]:
    """The records the find left out of each group (its cut_off) as the JSON text of a list: each
    with its strongest explained pair with a member and why it is not in the group, for a person to
    see before merging the group (the duplicate would otherwise stay behind unseen)."""
    if "cut_off" not in gt:
        return {}
    listed = [(g, ms, [int(x) for x in cut]) for g, ms, cut in zip(gt["group_id"], gt["member_ids"], gt["cut_off"])
              if len(cut)]
    if not listed:
        return {}
    lone = {x for _g, _ms, cut in listed for x in cut}
    near = pairs[pairs["id_a"].isin(lone) | pairs["id_b"].isin(lone)]
    by_record: dict[int, list[dict]] = {}
    for rec in near[["id_a", "id_b", "probability", "tier", "explanation"]].to_dict("records"):
        for x, other in ((rec["id_a"], rec["id_b"]), (rec["id_b"], rec["id_a"])):
            if x in lone:
                by_record.setdefault(int(x), []).append({**rec, "partner": int(other)})
    out = {}
    for g, members, cut in listed:
        inside, items = set(members), []
        for x in cut:
            best = max((r for r in by_record.get(x, []) if r["partner"] in inside),
                       key=lambda r: r["probability"], default=None)
            marked = [m for m in members if (min(x, m), max(x, m)) in skips]
            reason = (f"marked not duplicates with {', '.join(f'#{m}' for m in marked)}" if marked else
                      "kept apart by the chaining guard: the evidence says it differs from another member")
            items.append({"id": x, "partner": None if best is None else best["partner"],
                          "probability": None if best is None else float(best["probability"]),
                          "tier": None if best is None else best["tier"],
                          "explanation": "" if best is None else best["explanation"], "reason": reason})
        out[g] = json.dumps(items, default=_json_value, ensure_ascii=False)
    return out


def auto_approve_step(db: str | None, run_id: str, settings_path: str) -> int:
    """Approve, in the flow's name, the groups the auto-merge policy allows (off by default)."""
    policy = Settings.load(settings_path).pipeline.auto_merge
    if not policy.enabled:
        return 0
    store = Store(db, must_exist=True)
    groups = proposals.read_groups(store, status="pending", run_id=run_id, tiers=policy.tiers)
    ok = []
    for g in groups.itertuples(index=False):
        plan = g.plan
        if not plan:  # (its records changed since it was found: a person looks at it)
            continue
        if policy.require_no_conflicts and plan.get("conflicts"):
            continue
        if policy.require_no_lost_access and plan.get("access_warnings"):
            continue
        if policy.require_same_manager and len(g.responsible_ids or []) != 1:
            continue
        ok.append(g.id)
    return proposals.set_status(store, ok, "approved") if ok else 0


# What a lead is compared with a client by, besides its phones, e-mails and websites: a person's
# names (the columns prepare makes of them) or a company's title.
_LEAD_CLIENT_FIELDS = {
    "contact": (("last_name", "first_name", "middle_name"), (*PERSON_COLUMNS, "first_sound", "last_sound")),
    "company": (("company",), ("company", "company_tokens")),
}


def reported_against_client(pairs: pd.DataFrame) -> pd.Series:
    """Which pairs of leads and clients (ids "L..." and "C..."/"C..." from leads_to_clients_step) are
    reported: a lead and a client (not two of one kind), at least probable ("possible" pairs are
    name-only or held by the hold rules, too weak to show as "this lead is already a client"), or
    sharing the client's phone or e-mail with no names to compare (an incoming call's lead)."""
    from scoring.find import HELD_AT, HELD_REASONS, SHOWN_AT_POSSIBLE

    nameless_held = [HELD_AT + HELD_REASONS[code] for code in SHOWN_AT_POSSIBLE]
    nameless = pairs["explanation"].str.contains("|".join(map(re.escape, nameless_held)), regex=True)
    return (pairs["id_a"].str[0] != pairs["id_b"].str[0]) & (pairs["tier"].isin(["certain", "probable"]) | nameless)


def leads_to_clients_step(db: str | None, folder: str, settings_path: str) -> str:
    """Leads that duplicate an existing contact or company, reported with that client (not merged).
    The records normalised by this run's finds are reused (read and normalised here otherwise)."""
    from matchers.prepare import Prepared
    from matchers.table import RoleTable
    from scoring.find import find_duplicates

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    try:
        leads = _prepared_records(store, folder, "lead", settings)
        rows = []
        for client in ("contact", "company"):
            roles, columns = _LEAD_CLIENT_FIELDS[client]
            parts = [_compared_by(leads, "L", roles, columns),
                     _compared_by(_prepared_records(store, folder, client, settings), client[0].upper(), roles, columns)]
            combined = Prepared.concat(parts)
            if not len(combined):
                continue
            # the records themselves are not needed: the pairs are kept, not the groups or their primaries
            ids = pd.Index(combined.ids, name="id")
            table = RoleTable("lead", pd.DataFrame(index=ids), pd.DataFrame(columns=["id", "role", "raw"]))
            res = find_duplicates(table, settings.match, prepared=combined)
            p = res.pairs
            cross = p[reported_against_client(p)]
            for r in cross.itertuples(index=False):
                lead_id, client_id = (r.id_a, r.id_b) if r.id_a.startswith("L") else (r.id_b, r.id_a)
                rows.append({"lead_id": int(lead_id[1:]), "client_type": client, "client_id": int(client_id[1:]),
                             "probability": r.probability, "tier": r.tier, "explanation": r.explanation})
    finally:
        store.dispose()
    out = Path(folder) / "lead_clients.parquet"
    frame = pd.DataFrame(rows, columns=["lead_id", "client_type", "client_id", "probability", "tier", "explanation"])
    frame.sort_values(["probability", "lead_id"], ascending=[False, True]).to_parquet(out, index=False)
    return str(out)


def _prepared_records(store: Store, folder: str, entity: str, settings: Settings):
    """The entity's records as this run's find normalised them (its prepared_*.parquet), or, where this
    run did not find that type's duplicates (``--entity-types lead``), read and normalised here the
    same way."""
    from matchers.prepare import Prepared, prepare

    saved = Path(folder) / entity
    if (saved / "prepared.json").exists():
        return Prepared.load(saved)
    return prepare(load_role_table(store, entity), region=settings.match.region,
                   provider_rules=settings.match.provider_rules, workers=settings.match.processes)


def _compared_by(p, prefix: str, roles: tuple[str, ...], columns: tuple[str, ...]):
    """Of normalised records, what a lead and a client are compared by: ``columns`` of the records
    (those ``roles`` make) and every phone, e-mail and website; ids prefixed with the type's letter
    (L, C...) so that a lead and a client of the same number stay two records."""
    from matchers.prepare import Prepared
    from matchers.table import MULTI_ROLES

    records = p.records[["id", *[c for c in columns if c in p.records.columns]]]
    records = records.assign(id=prefix + records["id"].astype(str))
    kept = (p.roles & set(roles)) | (p.roles & set(MULTI_ROLES))
    return Prepared("lead", records, p.phones, p.emails, p.sites, kept, dict(p.made_with))


def run_summary(folder: str, entity_types: list[str], db: str | None = None) -> dict:
    """Counts per entity and tier, quality, the largest groups, time and memory per stage, and the
    command that opens the match report notebook on this run (``db``: the database it read)."""
    out: dict = {"folder": folder, "entities": {}}
    for entity in entity_types:
        d = Path(folder) / entity
        s = json.loads((d / "summary.json").read_text())
        stages = json.loads((d / "stages.json").read_text()) if (d / "stages.json").exists() else {}
        s["timings"].update(stages)
        gt = pd.read_parquet(d / "group_table.parquet")
        # groups form at "probable" or better: the "possible" ones are pairs, for a person to look at
        tiers = pd.read_parquet(d / "pairs.parquet", columns=["tier"])["tier"].value_counts()
        s["pairs_per_tier"] = {t: int(tiers.get(t, 0)) for t in ("certain", "probable", "possible")}
        s["left_out"] = int(gt["cut_off"].map(len).sum()) if "cut_off" in gt else 0
        s["largest_groups"] = [{"group_id": g, "size": int(n), "tier": t, "criteria": c}
                               for g, n, t, c in gt.sort_values(["size", "score"], ascending=False)
                               .head(5)[["group_id", "size", "tier", "criteria"]].itertuples(index=False)]
        q = d / "quality.txt"
        s["quality"] = q.read_text(encoding="utf-8") if q.exists() else ""
        out["entities"][entity] = s
    lc = Path(folder) / "lead_clients.parquet"
    if lc.exists():
        # a lead may look like several clients: leads counted once each, and the pairs apart
        lead_ids = pd.read_parquet(lc, columns=["lead_id"])["lead_id"]
        out["leads_matching_clients"] = int(lead_ids.nunique())
        out["lead_client_pairs"] = int(len(lead_ids))
    from scoring.report import notebook_command

    out["notebook"] = notebook_command(folder, env_db(db))
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def summary_markdown(summary: dict, run_id: str) -> str:
    lines = [f"# crm-dedup run {run_id}", "", f"Run folder: `{summary['folder']}`", "",
             "| entity | records | candidate pairs | groups | certain | probable | records in groups | largest "
             "| left out | possible pairs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e, s in summary["entities"].items():
        t = s["groups_per_tier"]
        lines.append(f"| {e} | {s['records']:,} | {s['candidate_pairs']:,} | {s['groups']:,} | {t['certain']:,} | "
                     f"{t['probable']:,} | {s['records_in_groups']:,} | {s['largest_group']} | {s.get('left_out', 0):,} "
                     f"| {s.get('pairs_per_tier', {}).get('possible', 0):,} |")
    lines += ["", "Groups form at probable or better. Left out: records probable with a member but kept apart "
              "(`crm-dedup groups` lists them under their group). Possible pairs: for a person to look at, in the "
              "HTML report and pairs.parquet."]
    for e, s in summary["entities"].items():
        if s.get("incremental"):
            lines += ["", f"{e}: incremental, {s['changed_records']:,} new or changed records re-normalised "
                          f"(built on run {s['based_on_run']})"]
    if "leads_matching_clients" in summary:
        n, pairs = summary["leads_matching_clients"], summary.get("lead_client_pairs")
        lines += ["", f"Leads matching an existing contact or company: {n:,}"
                  + (f" ({pairs:,} lead-client pairs)" if pairs is not None else "")]
    lines += ["", "## Time per stage (seconds)", "", "| entity | " + " | ".join(_stage_names(summary)) + " |",
              "|---|" + "---:|" * len(_stage_names(summary))]
    for e, s in summary["entities"].items():
        lines.append(f"| {e} | " + " | ".join(f"{s['timings'].get(k, 0):.2f}" for k in _stage_names(summary)) + " |")
    if summary.get("flow_seconds"):
        lines += ["", "## Time per flow step (seconds, tasks included)", "", "| step | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in summary["flow_seconds"].items()]
    lines += ["", f"Peak memory of the flow process: {summary['peak_rss_mb']:.0f} MB"]
    lines += ["", "## Data quality", ""]
    for e, s in summary["entities"].items():
        lines += [f"### {e}", "", "```", s.get("quality", "").strip(), "```", ""]
    lines += ["## Largest groups", "", "| entity | group | size | tier | matched by |", "|---|---|---:|---|---|"]
    for e, s in summary["entities"].items():
        for g in s["largest_groups"]:
            lines.append(f"| {e} | {g['group_id']} | {g['size']} | {g['tier']} | {g['criteria']} |")
    if summary.get("report"):
        lines += ["", f"HTML report: {summary['report']}"]
    if summary.get("notebook"):
        lines += ["", f"Match report notebook on this run: `{summary['notebook']}`"]
    return "\n".join(lines)


def _stage_names(summary: dict) -> list[str]:
    names: list[str] = []
    for s in summary["entities"].values():
        for k in s["timings"]:
            if k not in names:
                names.append(k)
    return names


def _stage(out: Path, name: str, start: float) -> None:
    path = out / "stages.json"
    stages = json.loads(path.read_text()) if path.exists() else {}
    stages[name] = round(time.perf_counter() - start, 3)
    path.write_text(json.dumps(stages))


def _json_value(v):
    """What json.dumps writes for a value it does not know: numpy's scalars as numbers, the rest as text."""
    return v.item() if isinstance(v, np.generic) else str(v)


def env_db(db: str | None) -> str | None:
    return db or os.environ.get("CRM_DEDUP_DB")
