"""CLI glue for the flows: run them, print the summary in the terminal."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines import steps
from pipelines.flows import dedup_flow  # (imported with this module: while Prefect's server starts)


def check_dask(settings_path: Path | None) -> None:
    """With pipeline.dask.address set, a scheduler that does not answer ends the command with one
    line (exit 2) before the flow starts (run and find call it before the server is waited for); the
    settings file was checked by the command already."""
    from pipelines.cli import fail
    from pipelines.dask_runs import SchedulerUnreachable, check_scheduler
    from pipelines.settings import Settings

    dask = Settings.load(settings_path).pipeline.dask
    if dask.enabled:
        try:
            check_scheduler(dask.address)
        except SchedulerUnreachable as exc:
            fail(str(exc))


def run_dedup_cli(db: str | None, entity: str | None, settings_path: Path | None, incremental: bool = False) -> dict:
    entity_types = None if entity in (None, "all") else [entity]
    summary = dedup_flow(db=db, entity_types=entity_types, settings_path=str(settings_path) if settings_path else None,
                         incremental=incremental)
    print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    typer.echo("")
    typer.echo(steps.summary_markdown(summary, summary.get("run_id", "")).split("## Data quality")[0].rstrip())
    p = summary.get("proposals", {})
    typer.echo("")
    typer.echo(f"Proposals stored: {p.get('inserted', 0):,} new pending groups "
               f"({p.get('removed', 0):,} older pending replaced, {p.get('kept', 0):,} already decided)"
               + (f"; {summary['auto_approved']:,} approved by the auto-merge policy" if summary.get("auto_approved") else ""))
    typer.echo(f"Run folder:   {summary['folder']}")
    if summary.get("report"):
        typer.echo(f"HTML report:  {summary['report']}")
    typer.echo("Review page:  crm-dedup review   (then open http://127.0.0.1:8000; set a password first with "
               "`crm-dedup users set-password admin@example.com`)")
    typer.echo(f"Notebook:     {summary['notebook']}")
