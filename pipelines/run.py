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
    try:
        summary = dedup_flow(db=db, entity_types=entity_types,
                             settings_path=str(settings_path) if settings_path else None, incremental=incremental)
    except KeyboardInterrupt:  # (Prefect's own lines above it speak of a crash: say what happened)
        typer.secho("\nCancelled (Ctrl-C): the run is recorded as cancelled and stored no proposals; the pending "
                    "groups of the last completed run stay as they were (`crm-dedup runs` lists the runs).",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    print_summary(summary, _first_admin(db), db, truth=_has_demo_truth(db))
    return summary


def _first_admin(db: str | None) -> str:
    """The e-mail of the database's first admin (the review page's sign-in), or what `users add` needs."""
    import sqlalchemy as sa

    from crm import schema
    from crm.store import Store

    u = schema.users
    with Store(steps.env_db(db), must_exist=True) as store, store.engine.connect() as conn:
        email = conn.execute(sa.select(u.c.email).where(u.c.role == "admin").order_by(u.c.id).limit(1)).scalar()
    return email or ""


def _has_demo_truth(db: str | None) -> bool:
    """Whether the database holds the demo generator's known duplicates (a demo CRM's)."""
    import sqlalchemy as sa

    from crm import schema
    from crm.store import Store

    with Store(steps.env_db(db), must_exist=True) as store, store.engine.connect() as conn:
        return conn.execute(sa.select(sa.literal(1)).select_from(schema.demo_truth).limit(1)).first() is not None


def print_summary(summary: dict, admin: str = "", db: str | None = None, truth: bool = False) -> None:
    """The run's summary in the terminal, and how to go on: the report, the review page and the
    notebook, their commands naming ``db`` (the database the command was given) where one was given;
    with ``truth`` (a demo CRM, which knows its duplicates), how to measure the run against them."""
    import shlex

    on_db = f" --db {shlex.quote(db)}" if db else ""
    typer.echo("")
    typer.echo(steps.summary_markdown(summary, summary.get("run_id", "")).split("## Data quality")[0].rstrip())
    p = summary.get("proposals", {})
    typer.echo("")
    waiting = p.get("waiting", 0)  # (groups sharing records with an approved group not merged yet)
    # a group found again (same id: same primary and members) is pending as before, not new; older pending
    # groups not found again are gone
    inserted, same = p.get("inserted", 0), p.get("same_as_before", 0)
    typer.echo(f"Proposals stored: {inserted:,} pending groups ({same:,} as before, {inserted - same:,} new; "
               f"{p.get('removed', 0) - same:,} older pending gone, {p.get('kept', 0):,} already decided"
               + (f", {waiting:,} held back: their records are in approved groups not merged yet; the first run "
                  "after the merge proposes what is left" if waiting else "") + ")"
               + (f"; {summary['auto_approved']:,} approved by the auto-merge policy" if summary.get("auto_approved") else "")
               + (f"; {p['plans_reused']:,} merge plans taken from the last run, their rows unchanged"
                  if p.get("plans_reused") else ""))
    typer.echo(f"Run folder:   {summary['folder']}")
    if summary.get("report"):
        typer.echo(f"HTML report:  {summary['report']}")
    typer.echo(f"Review page:  crm-dedup review{on_db}   (then open http://127.0.0.1:8000; "
               + (f"set a password first with `crm-dedup users set-password {admin}{on_db}`)" if admin else
                  f"add an admin first with `crm-dedup users add EMAIL --name NAME --role admin{on_db}`)"))
    typer.echo(f"Notebook:     {summary['notebook']}")
    if truth:
        typer.echo(f"Evaluate:     crm-dedup evaluate --groups {shlex.quote(str(summary['folder']))}{on_db}   "
                   "(precision and recall against the demo CRM's known duplicates)")
