"""Prefect flows: dedup (find and propose), apply (merge what was approved), check (new records).

Tasks are thin wrappers over pipelines.steps; they pass paths and ids, never DataFrames. Only
steps that talk to the database over a network retry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipelines import steps
from pipelines.settings import Settings

DB_RETRIES = {"retries": 2, "retry_delay_seconds": 3}


@task(name="open-run", **DB_RETRIES)
def open_run(db: str | None, entity_types: list[str], runs_dir: str) -> tuple[str, str]:
    return steps.new_run(db, entity_types, runs_dir)


@task(name="data-quality")
def quality_task(db: str | None, entity: str, folder: str, settings_path: str) -> str:
    return steps.quality_step(db, entity, folder, settings_path)


@task(name="find-duplicates")
def find_task(db: str | None, entity: str, folder: str, settings_path: str) -> str:
    return steps.find_step(db, entity, folder, settings_path)


@task(name="plan-merges")
def plan_task(db: str | None, entity: str, folder: str, settings_path: str) -> str:
    return steps.plan_step(db, entity, folder, settings_path)


@task(name="leads-vs-clients")
def leads_task(db: str | None, folder: str, settings_path: str) -> str:
    return steps.leads_to_clients_step(db, folder, settings_path)


@task(name="store-proposals", **DB_RETRIES)
def store_task(db: str | None, run_id: str, folder: str, entity_types: list[str]) -> dict:
    return steps.store_step(db, run_id, folder, entity_types)


@task(name="auto-approve")
def auto_approve_task(db: str | None, run_id: str, settings_path: str) -> int:
    return steps.auto_approve_step(db, run_id, settings_path)


@task(name="html-report")
def report_task(folder: str) -> str | None:
    try:
        from scoring.report import write_html_report
    except ImportError:  # the report module is optional until it exists
        return None
    return str(write_html_report(Path(folder)))


@flow(name="dedup", log_prints=True)
def dedup_flow(db: str | None = None, entity_types: list[str] | None = None,
               settings_path: str | None = None) -> dict:
    """Read the CRM, check data quality, find and score duplicates, group them, rank primaries, plan
    merges and store the proposals waiting for approval. Returns the run summary."""
    logger = get_run_logger()
    started = time.perf_counter()
    settings = Settings.load(settings_path)
    entity_types = entity_types or list(settings.pipeline.entity_types)
    run_id, folder = open_run(steps.env_db(db), entity_types, settings.pipeline.runs_dir)
    db = steps.env_db(db)
    saved = steps.save_settings(settings, folder)
    try:
        for entity in entity_types:
            quality_task(db, entity, folder, saved)
            find_task(db, entity, folder, saved)
            plan_task(db, entity, folder, saved)
        if settings.pipeline.match_leads_to_clients and "lead" in entity_types:
            leads_task(db, folder, saved)
        counts = store_task(db, run_id, folder, entity_types)
        approved = auto_approve_task(db, run_id, saved)
        summary = steps.run_summary(folder, entity_types)
        summary.update(run_id=run_id, proposals=counts, auto_approved=approved,
                       seconds=round(time.perf_counter() - started, 2))
        summary["report"] = report_task(folder)
        (Path(folder) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        _publish(summary, run_id)
        _finish(db, run_id, "completed", summary)
        logger.info("dedup run %s done in %.1f s: %s", run_id, summary["seconds"], folder)
        return summary
    except Exception as exc:
        _finish(db, run_id, "failed", {"error": str(exc)})
        raise


def _finish(db, run_id, status, summary) -> None:
    from crm import proposals
    from crm.store import Store

    try:
        proposals.finish_run(Store(db), run_id, status, summary)
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
    import uuid

    batch_id = batch_id or "batch-" + uuid.uuid4().hex[:10]
    results = apply_task(steps.env_db(db), batch_id, user_id, settings_path)
    create_table_artifact(key="apply-results", table=results or [{"status": "nothing approved"}],
                          description=f"Apply batch {batch_id}")
    return results
