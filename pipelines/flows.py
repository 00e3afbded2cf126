"""Prefect flows: dedup (find and propose), apply (merge what was approved), check (new records).

Tasks are thin wrappers over pipelines.steps; they pass paths and ids, never DataFrames. Only
steps that talk to the database over a network retry.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipelines import steps
from pipelines.libc import glibc
from pipelines.settings import Settings

# Dask's scheduler, nannies and workers log ~30 INFO lines a run; read by Dask when it is imported,
# here and in the worker processes (which inherit the environment). Set it to info to see them.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def _database_trouble(task, task_run, state) -> bool:
    """Retry a task only when the database could not be reached or failed (not on a bug, nor on bad
    data: those fail the same way every time)."""
    import sqlalchemy as sa

    from crm.store import StoreError

    error = state.result(raise_on_failure=False)
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, StoreError))


DB_RETRIES = {"retries": 2, "retry_delay_seconds": 3, "retry_condition_fn": _database_trouble}


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own memory arena (up to 8 per core), and memory freed
    in one is not reused by another: with Prefect's, the compare's and the blocking's threads, the
    flow's peak at a million records varied by ~200 MB from run to run. Two arenas keep it ~150 MB
    lower and steady. Elsewhere (musl, macOS) there is nothing to do."""
    libc = glibc()
    if libc is not None:
        libc.mallopt(-8, arenas)  # M_ARENA_MAX


_fewer_malloc_arenas()


def _forked_helpers_end_at_ctrl_c() -> None:
    """A Ctrl-C in the terminal reaches every process of the command, the steps' forked helpers too.
    Python's handler raised KeyboardInterrupt in them; a helper then logged its traceback through
    Prefect's log service, forked without its thread, and waited for it forever at exit (and the
    flow for the helper). With the default action they end at once; the flow, interrupted too,
    stops what they were doing (steps.forget_kept) and records the run as cancelled."""

    def in_child() -> None:
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        except ValueError:  # (not this interpreter's main thread: nothing to change)
            pass

    os.register_at_fork(after_in_child=in_child)


_forked_helpers_end_at_ctrl_c()


# A Ctrl-C (SIGINT) during a dedup run. Python raises KeyboardInterrupt wherever the main thread is:
# inside Prefect's engine, between a task run's creation and its first state, Prefect's own crash
# handling then failed ("Task run is not set") and printed its tracebacks. So the handler raises only
# inside a step's own body (run in _step()); elsewhere it sets the flag and the flow stops before
# its next step (or at a second Ctrl-C, wherever it is). The flag also catches a KeyboardInterrupt
# Python printed and dropped (one raised in a finaliser or a garbage-collection callback).
_INTERRUPTED = threading.Event()
_IN_STEP = threading.Event()


def _interrupt(signum, frame) -> None:
    again = _INTERRUPTED.is_set()
    _INTERRUPTED.set()
    if _IN_STEP.is_set() or again:  # a second Ctrl-C stops the run wherever it is
        raise KeyboardInterrupt


@contextmanager
def _ctrl_c_stops_steps():
    """Ctrl-C handled as _interrupt tells for the time of a dedup run, then as before (in a test
    session or a notebook, Ctrl-C must go on raising where it lands)."""
    _INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():  # (only the main thread may set it)
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _step():
    """A step's own body, which a Ctrl-C stops where it is (see _interrupt). (A context manager, not a
    decorator: the compare-on-dask flow is pickled to the workers with what its body refers to, and a
    wrapper made here would be pickled by value, Events and their locks with it.)"""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
    _IN_STEP.set()
    try:
        yield
    finally:
        _IN_STEP.clear()


@task(name="open-run", **DB_RETRIES)
def open_run(db: str | None, entity_types: list[str], runs_dir: str) -> tuple[str, str]:
    with _step():
        return steps.new_run(db, entity_types, runs_dir)


@task(name="data-quality")
def quality_task(db: str | None, entity: str, folder: str, settings_path: str) -> str:
    with _step():
        return steps.quality_step(db, entity, folder, settings_path)


@task(name="find-duplicates")
def find_task(db: str | None, entity: str, folder: str, settings_path: str, incremental: bool = False,
              compared_chunks: list[str] | None = None) -> str:
    with _step():
        return steps.find_step(db, entity, folder, settings_path, incremental, compared_chunks)


@task(name="split-candidate-pairs")
def split_task(db: str | None, entity: str, folder: str, settings_path: str, incremental: bool) -> list[str]:
    from pipelines.dask_runs import split_step

    with _step():
        return split_step(db, entity, folder, settings_path, incremental)


@task(name="compare-chunk")
def compare_chunk_task(chunk_path: str) -> str:
    from pipelines.dask_runs import compare_chunk_step

    return compare_chunk_step(chunk_path)


@flow(name="compare-on-dask")
def compare_on_dask_flow(chunk_paths: list[str]) -> list[str]:
    """Each chunk of candidate pairs compared by a Dask worker (the task runner is set by the caller)."""
    with _step():
        return [f.result() for f in compare_chunk_task.map(chunk_paths)]


def _dask_runner(dask_settings):
    from prefect_dask import DaskTaskRunner

    if dask_settings.address:
        return DaskTaskRunner(address=dask_settings.address)
    # no dashboard (bokeh); the scheduler's HTTP server (health, metrics) still starts, on a free port of
    # this machine only instead of its default 8787 (taken by a second run, or another program)
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_settings.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None,
                                          "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}})


@task(name="leads-vs-clients")
def leads_task(db: str | None, folder: str, settings_path: str) -> str:
    with _step():
        return steps.leads_to_clients_step(db, folder, settings_path)


@task(name="plan-and-store-proposals", **DB_RETRIES)
def propose_task(db: str | None, run_id: str, folder: str, entity_types: list[str], settings_path: str) -> dict:
    with _step():
        return steps.propose_step(db, run_id, folder, entity_types, settings_path, report_beside=True)


@task(name="auto-approve")
def auto_approve_task(db: str | None, run_id: str, settings_path: str) -> int:
    with _step():
        return steps.auto_approve_step(db, run_id, settings_path)


@task(name="html-report")
def report_task(folder: str, db: str | None) -> str:
    with _step():
        return steps.report_step(folder, db)


@flow(name="dedup", log_prints=True)
def dedup_flow(db: str | None = None, entity_types: list[str] | None = None,
               settings_path: str | None = None, incremental: bool = False) -> dict:
    """Read the CRM, check data quality, find and score duplicates, group them, rank primaries, plan
    merges and store the proposals waiting for approval. Returns the run summary.

    ``incremental``: re-normalise only what changed since the last completed run, and score with its model.
    With ``pipeline.dask.enabled`` in the settings, comparisons run on Dask workers."""
    logger = get_run_logger()
    started = time.perf_counter()
    settings = Settings.load(settings_path)
    entity_types = entity_types or list(settings.pipeline.entity_types)
    step_seconds: dict[str, float] = {}
    if settings.pipeline.dask.enabled:  # before the run is opened: a scheduler that is down fails it at once
        from pipelines.dask_runs import check_scheduler

        check_scheduler(settings.pipeline.dask.address)

    def timed(name: str, call, *args):
        """Run one task and add its wall time to the summary (the flow's own time per step)."""
        if _INTERRUPTED.is_set():  # a Ctrl-C between two steps stops here
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        value = call(*args)
        step_seconds[name] = round(step_seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
        return value

    with _ctrl_c_stops_steps():
        run_id, folder = timed("open", open_run, steps.env_db(db), entity_types, settings.pipeline.runs_dir)
        db = steps.env_db(db)
        saved = steps.save_settings(settings, folder)
        try:
            steps.start_planners(saved)  # forked now, while this process is small
            dask = settings.pipeline.dask
            for entity in entity_types:
                logger.info("%s: checking data quality", entity)
                timed(f"{entity}:quality", quality_task, db, entity, folder, saved)
                logger.info("%s: finding duplicates%s", entity, " (incremental)" if incremental else "")
                if dask.enabled:
                    chunks = timed(f"{entity}:split", split_task, db, entity, folder, saved, incremental)
                    logger.info("%s: comparing %d chunks on Dask", entity, len(chunks))
                    on_dask = compare_on_dask_flow.with_options(task_runner=_dask_runner(dask))
                    compared = timed(f"{entity}:dask", on_dask, chunks)
                    timed(f"{entity}:find", find_task, db, entity, folder, saved, incremental, compared)
                else:
                    timed(f"{entity}:find", find_task, db, entity, folder, saved, incremental)
            if settings.pipeline.match_leads_to_clients and "lead" in entity_types:
                logger.info("leads: matching against existing contacts and companies")
                timed("leads_vs_clients", leads_task, db, folder, saved)
            logger.info("planning the merges and storing the proposals")
            counts = timed("propose", propose_task, db, run_id, folder, entity_types, saved)
            approved = timed("auto_approve", auto_approve_task, db, run_id, saved)
            summary = steps.run_summary(folder, entity_types, db)
            summary["report"] = timed("report", report_task, folder, db)  # what is left of it, once started beside
            summary.update(run_id=run_id, proposals=counts, auto_approved=approved, flow_seconds=step_seconds,
                           seconds=round(time.perf_counter() - started, 2))
            (Path(folder) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
            _publish(summary, run_id)
            _finish(db, run_id, "completed", summary)
            logger.info("dedup run %s done in %.1f s: %s", run_id, summary["seconds"], folder)
            return summary
        except BaseException as exc:  # a cancelled run (not an Exception) also stops what it started
            steps.forget_kept()
            if isinstance(exc, Exception):
                _finish(db, run_id, "failed", {"error": str(exc)})
            else:  # Ctrl-C, a stop signal, Prefect's cancellation: recorded too (else it stays "running")
                _finish(db, run_id, "cancelled", {"error": f"cancelled ({_stopped_by(exc)}) before the run completed"})
            raise


def _stopped_by(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted: Ctrl-C or SIGINT"
    return f"stopped: {type(exc).__name__}" + (f" {exc}" if str(exc) else "")


def _finish(db, run_id, status, summary) -> None:
    from crm import proposals
    from crm.store import Store

    try:
        proposals.finish_run(Store(db, must_exist=True), run_id, status, summary)
    except Exception:  # noqa: BLE001 - the database may be the thing that failed; the flow's own error matters
        get_run_logger().warning("could not record run %s as %s", run_id, status)


def _publish(summary: dict, run_id: str) -> None:
    create_markdown_artifact(key="dedup-summary", markdown=steps.summary_markdown(summary, run_id),
                             description=f"crm-dedup run {run_id}")
    rows = []
    for entity, s in summary["entities"].items():
        for tier, n in s["groups_per_tier"].items():
            rows.append({"entity": entity, "tier": tier, "groups": n})
    create_table_artifact(key="dedup-groups-per-tier", table=rows, description=f"Groups per tier, run {run_id}")


# -- apply ------------------------------------------------------------------------------------

@task(name="apply-approved", **DB_RETRIES)
def apply_task(db: str | None, batch_id: str, user_id: int | None, settings_path: str | None) -> list[dict]:
    from pipelines.apply import apply_approved

    return apply_approved(db, batch_id, user_id, settings_path)


@flow(name="apply", log_prints=True)
def apply_flow(db: str | None = None, batch_id: str | None = None, user_id: int | None = None,
               settings_path: str | None = None) -> list[dict]:
    """Merge every approved group, each in its own transaction; stale plans are re-planned and go
    back to pending for a person. Re-running a batch id finishes it and applies nothing twice."""
    from pipelines.apply import new_batch_id

    batch_id = batch_id or new_batch_id()
    results = apply_task(steps.env_db(db), batch_id, user_id, settings_path)
    create_table_artifact(key="apply-results", table=results or [{"status": "nothing approved"}],
                          description=f"Apply batch {batch_id}")
    return results


# -- check ------------------------------------------------------------------------------------

CHECK_SHOWN = 10  # the most likely pairs the result carries for the terminal; the rest are in the CSV


@task(name="check-new-records")
def check_task(db: str | None, entity: str, csv_path: str | None, preset: str | None,
               mapping: dict[str, list[str]] | None, settings_path: str | None, out: str,
               encoding: str | None = None, portal_timezone: str | None = None) -> dict:
    """check_new_records, its likely duplicates written to ``out``. Returns counts, the first rows and
    what reading the file found: ``problems`` (lines, in the file's order), how many ``rejected`` rows
    and left-out ``cells`` they tell of, the ``header``'s columns not read (a line, or None; ``ignored``
    counts them), and ``times``: how times without a UTC offset were read."""
    from pipelines.check import check_new_records

    rows, problems = check_new_records(db, entity, csv=Path(csv_path) if csv_path else None, preset=preset,
                                       mapping=mapping, encoding=encoding, settings_path=settings_path,
                                       portal_timezone=portal_timezone)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    return {"report": out, "likely_duplicates": int(len(rows)), "checked": int(rows.attrs.get("checked", 0)),
            "new_records_with_duplicates": int(rows["new_record"].nunique()) if len(rows) else 0,
            "problems": list(problems), "rejected": problems.rejected, "cells": problems.cells,
            "header": problems.header, "ignored": len(problems.ignored),
            "times": problems.times, "first": rows.head(CHECK_SHOWN).to_dict("records")}


@flow(name="check", log_prints=True)
def check_flow(db: str | None = None, entity: str = "contact", csv_path: str | None = None,
               preset: str | None = None, mapping: dict[str, list[str]] | None = None,
               settings_path: str | None = None, out: str = "data/check.csv", encoding: str | None = None,
               portal_timezone: str | None = None) -> dict:
    """Match new records (a CSV about to be imported, or records the last run has not seen) against
    the CRM and report the likely duplicates before they multiply. ``portal_timezone``: the zone of
    the CSV's times written without a UTC offset (else the settings' pipeline.portal_timezone)."""
    result = check_task(steps.env_db(db), entity, csv_path, preset, mapping, settings_path, out, encoding,
                        portal_timezone)
    rows = pd_read(out)
    create_table_artifact(key="check-likely-duplicates", table=rows[:200] or [{"result": "no likely duplicates"}],
                          description=f"New {entity} records that look like existing ones")
    return result


def pd_read(path: str) -> list[dict]:
    import pandas as pd

    return pd.read_csv(path, dtype=str).fillna("").to_dict("records")
