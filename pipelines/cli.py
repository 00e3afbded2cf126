"""The `crm-dedup` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

# Flows started from the CLI run on a temporary local Prefect server; on a busy machine it can take
# longer than Prefect's default 20 s to come up.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the flows' own progress lines ("contact: finding duplicates") show in the terminal; task chatter does not
os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")

app = typer.Typer(
    help="Find, explain, review, merge and undo duplicate contacts, companies and leads in a CRM.\n\n"
    "The database is --db, else $CRM_DEDUP_DB, else sqlite:///data/crm.db.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage the CRM's users (review page sign-in).", no_args_is_help=True)
app.add_typer(users_app, name="users")

DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (sqlite:///... or postgresql+psycopg://...).")]
IncrementalOption = Annotated[bool, typer.Option(
    "--incremental", help="Re-normalise only records new or changed since the last completed run and score the "
    "pairs with its model (a full run where there is none, or where it normalised otherwise).")]


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_store(db: str | None, *, must_exist: bool = True, check: bool = True):
    from crm.store import Store, StoreError

    try:
        store = Store(db, must_exist=must_exist)
        if check:
            store.check_schema()
        return store
    except StoreError as exc:
        fail(str(exc))


@app.command()
def init(db: DbOption = None) -> None:
    """Create an empty CRM database with the crm-dedup schema (or upgrade an existing one)."""
    store = open_store(db, must_exist=False, check=False)
    rev = store.migrate()
    typer.echo(f"{store.display_url}: schema at revision {rev}")


@app.command()
def migrate(db: DbOption = None) -> None:
    """Upgrade the database schema to this version of crm-dedup."""
    store = open_store(db, check=False)
    before = store.revision()
    rev = store.migrate()
    typer.echo(f"{store.display_url}: schema {before or '(none)'} -> {rev}")


@app.command()
def stats(db: DbOption = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Summarise a database: rows per table, live records per entity type and manager."""
    store = open_store(db)
    print_stats(store.stats(), as_json)


def print_stats(s: dict, as_json: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    typer.echo(f"Database {s['url']} (schema {s['revision']})")
    width = max(len(t) for t in s["tables"])
    for table, count in s["tables"].items():
        typer.echo(f"  {table:<{width}}  {count:>10,}")
    typer.echo("Live records per manager:")
    for row in s["per_manager"]:
        typer.echo(f"  {row['entity']:<8} {row['manager']:<30} {row['records']:>8,}")


@app.command()
def demo(
    db: DbOption = None,
    contacts: Annotated[int, typer.Option(help="Number of contacts.")] = 10_000,
    companies: Annotated[int, typer.Option(help="Number of companies.")] = 3_000,
    leads: Annotated[int, typer.Option(help="Number of leads.")] = 3_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same CRM.")] = 42,
    replace: Annotated[bool, typer.Option("--replace", help="Empty a database that already has records.")] = False,
) -> None:
    """Create a demo CRM with known duplicates (the truth goes to the demo_truth table)."""
    from crm.demo import DemoSizes, generate_demo

    store = open_store(db, must_exist=False, check=False)
    store.migrate()
    counts = store.stats()["tables"]
    if any(counts[t] for t in ("contacts", "companies", "leads")):
        if not replace:
            fail(f"{store.display_url} already holds records; pass --replace to empty it first.")
        store.truncate_crm()
    generate_demo(store, DemoSizes(contacts=contacts, companies=companies, leads=leads), seed=seed)
    print_stats(store.stats())


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV file to import.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")],
    db: DbOption = None,
    preset: Annotated[Optional[str], typer.Option(help="Column preset: 'bitrix24' for Bitrix24's own CSV export.")] = None,
    map_: Annotated[list[str], typer.Option("--map", help="FIELD=COLUMN, repeatable (overrides the preset).")] = [],
    encoding: Annotated[Optional[str], typer.Option(help="utf-8 or cp1251; detected when not given.")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="',' or ';'; detected when not given.")] = None,
    errors: Annotated[Optional[Path], typer.Option(help="Write rejected rows with their reasons to this CSV.")] = None,
) -> None:
    """Import contacts, companies or leads from CSV; bad rows are reported and the rest goes in."""
    from crm.csv_io import CsvError, import_csv

    store = open_store(db)
    try:
        report = import_csv(store, file, entity, preset=preset, mapping=_parse_map(map_),
                            encoding=encoding, delimiter=delimiter)
    except CsvError as exc:
        fail(str(exc))
    for problem in report.problems[:50]:
        typer.secho(f"  {problem}", fg=typer.colors.YELLOW, err=True)
    if len(report.problems) > 50:
        typer.secho(f"  ... and {len(report.problems) - 50} more", fg=typer.colors.YELLOW, err=True)
    if errors and report.problems:
        report.write_problems(errors)
    typer.echo(report.summary())


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")],
    db: DbOption = None,
    preset: Annotated[Optional[str], typer.Option(help="'bitrix24' writes Bitrix24's column headers.")] = None,
    encoding: Annotated[str, typer.Option(help="utf-8, utf-8-sig or cp1251.")] = "utf-8",
    delimiter: Annotated[str, typer.Option(help="',' or ';'.")] = ",",
) -> None:
    """Export contacts, companies or leads to CSV in the form `crm-dedup import` reads."""
    from crm.csv_io import CsvError, export_csv

    store = open_store(db)
    try:
        n = export_csv(store, file, entity, preset=preset, encoding=encoding, delimiter=delimiter)
    except CsvError as exc:
        fail(str(exc))
    typer.echo(f"Wrote {n:,} {entity} records to {file}")


@app.command()
def find(
    input_: Annotated[Optional[Path], typer.Option("--input", help="CSV or parquet file to deduplicate (file mode).")] = None,
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    map_: Annotated[list[str], typer.Option("--map", help="ROLE=COLUMN, repeatable; roles: first_name, last_name, "
                                             "middle_name, full_name, company, phone, email, birthdate, address, city, "
                                             "postcode, tax_id, website, text.")] = [],
    id_column: Annotated[Optional[str], typer.Option(help="Column holding the record id (default: row number).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for groups.csv, pairs.csv, model.json, settings.yaml.")] = None,
    settings: Annotated[Optional[Path], typer.Option(help="Settings YAML (see docs/settings.md).")] = None,
    incremental: IncrementalOption = False,
    db: DbOption = None,
) -> None:
    """Find duplicate groups: in a CSV/parquet file (--input, no database), or in the CRM database
    (without --input: runs the dedup flow over --entity, or all types with --entity all)."""
    from matchers.table import MappingError
    from scoring.settings import MatchSettings, SettingsError

    try:
        match_settings = MatchSettings.load(settings)
    except SettingsError as exc:
        fail(str(exc))
    if input_ is None:
        from pipelines.prefect_api import early_server

        with early_server() as ready:
            from pipelines.run import run_dedup_cli

            ready()
            run_dedup_cli(db, entity, settings, incremental)
        return
    if incremental:
        fail("--incremental works on the CRM database (without --input): a file has no last run to build on")
    from scoring.files import FileError, find_in_file

    out = out or Path("out")
    try:
        result = find_in_file(input_, entity, _parse_map(map_), id_column, match_settings)
    except (FileError, MappingError) as exc:
        fail(str(exc))
    paths = result.write(out, match_settings)
    s = result.summary()
    typer.echo(f"{s['records']:,} records, {s['candidate_pairs']:,} candidate pairs, {s['groups']:,} groups "
               f"({s['groups_per_tier']['certain']:,} certain, {s['groups_per_tier']['probable']:,} probable), "
               f"{s['records_in_groups']:,} records in groups")
    for name, path in paths.items():
        typer.echo(f"  {name:<9} {path}")


@app.command()
def evaluate(
    groups: Annotated[Path, typer.Option(help="groups.csv written by `crm-dedup find`.")],
    truth: Annotated[Path, typer.Option(help="CSV or parquet with the record id and the true entity.")],
    truth_column: Annotated[str, typer.Option(help="Column of --truth naming the real entity.")],
    id_column: Annotated[str, typer.Option(help="Column of --truth with the record id.")] = "id",
    pairs: Annotated[Optional[Path], typer.Option(help="pairs.csv, for figures per threshold (default: beside groups).")] = None,
) -> None:
    """Pairwise precision, recall, F1 and B-cubed figures of groups.csv against known truth."""
    import pandas as pd

    from scoring.evaluate import evaluate_groups, threshold_table
    from scoring.files import FileError, read_table

    try:
        g = pd.read_csv(groups, dtype={"id": str, "group_id": str})
        t = read_table(truth)
    except (FileError, OSError) as exc:
        fail(str(exc))
    for col in (id_column, truth_column):
        if col not in t.columns:
            fail(f"{truth} has no column {col!r} (columns: {', '.join(map(str, t.columns))})")
    truth_s = pd.Series(t[truth_column].astype(str).to_numpy(), index=t[id_column].astype(str))
    group_s = pd.Series(g["group_id"].to_numpy(), index=g["id"].astype(str))
    try:
        r = evaluate_groups(group_s, truth_s)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"records {r['records']:,}  true pairs {r['true_pairs']:,}  predicted pairs {r['predicted_pairs']:,}")
    typer.echo(f"pairwise  precision {r['precision']:.4f}  recall {r['recall']:.4f}  F1 {r['f1']:.4f}")
    typer.echo(f"B-cubed   precision {r['bcubed_precision']:.4f}  recall {r['bcubed_recall']:.4f}  "
               f"F1 {r['bcubed_f1']:.4f}")
    pairs = pairs or groups.with_name("pairs.csv")
    if pairs.exists():
        p = pd.read_csv(pairs, dtype={"id_a": str, "id_b": str})
        table = threshold_table(p, group_s.index, truth_s)
        typer.echo("per threshold (groups = connected pairs at or above it):")
        typer.echo(table[["threshold", "precision", "recall", "f1", "bcubed_f1"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))


SettingsOption = Annotated[Optional[Path], typer.Option("--settings", help="Settings YAML (match, merge, pipeline).")]


@app.command()
def run(
    db: DbOption = None,
    entity: Annotated[str, typer.Option(help="contact, company, lead or all.")] = "all",
    settings: SettingsOption = None,
    incremental: IncrementalOption = False,
) -> None:
    """Run the dedup flow over the CRM database and print the summary (the main job)."""
    from pipelines.prefect_api import early_server

    with early_server() as ready:
        from pipelines.run import run_dedup_cli

        open_store(db)
        ready()
        run_dedup_cli(db, entity, settings, incremental)


@app.command()
def approve(
    group_ids: Annotated[Optional[list[str]], typer.Argument(help="Group ids to approve.")] = None,
    tier: Annotated[Optional[str], typer.Option(help="Approve every pending group of this tier (certain, probable).")] = None,
    entity: Annotated[Optional[str], typer.Option(help="Limit --tier to one entity type.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Email of the approving user (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Approve pending groups for the next merge (`crm-dedup merge` or the hourly apply flow)."""
    from crm import proposals

    store = open_store(db)
    if not group_ids and not tier:
        fail("name group ids, or --tier certain to approve every certain group")
    user_row = _user(store, user)
    ids = list(group_ids or [])
    if tier:
        ids += proposals.read_groups(store, status="pending", entity_type=entity, tiers=[tier])["id"].tolist()
    n = proposals.set_status(store, ids, "approved", user_row["id"])
    typer.echo(f"Approved {n:,} group(s) as {user_row['name']}" + (f"; {len(ids) - n} were not pending" if len(ids) > n else ""))


@app.command()
def merge(
    db: DbOption = None,
    batch_id: Annotated[Optional[str], typer.Option(help="Re-run a batch id to finish it after a crash.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Email of the user merging (default: the first admin).")] = None,
    settings: SettingsOption = None,
) -> None:
    """Merge every approved group (the apply flow), each in its own transaction."""
    from pipelines.prefect_api import early_server

    with early_server() as ready:
        from pipelines.flows import apply_flow

        store = open_store(db)
        user_row = _user(store, user)
        ready()
        results = apply_flow(db=db, batch_id=batch_id, user_id=user_row["id"],
                             settings_path=str(settings) if settings else None)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] not in ("applied", "already_applied"):
            typer.secho(f"  {r['group_id']}: {r['status']}: {r['message']}", fg=typer.colors.YELLOW)
    typer.echo("Merge results: " + (", ".join(f"{n:,} {s}" for s, n in sorted(counts.items())) or "nothing approved"))


@app.command()
def history(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="How many merges to list, newest first.")] = 50,
    entity: Annotated[Optional[str], typer.Option(help="contact, company or lead.")] = None,
) -> None:
    """List merges: who, when, what; undo one with `crm-dedup undo MERGE_ID`."""
    from merge_rules.history import merge_history

    store = open_store(db)
    frame = merge_history(store, limit=limit, entity_type=entity)
    if frame.empty:
        typer.echo("No merges yet.")
        return
    typer.echo(frame.to_string(index=False, max_colwidth=60))


@app.command()
def undo(
    merge_id: Annotated[Optional[int], typer.Argument(help="The merge to undo (see `crm-dedup history`).")] = None,
    all_: Annotated[Optional[str], typer.Option("--all", help="Undo every merge of this batch id.")] = None,
    force: Annotated[bool, typer.Option(help="Undo even where records changed since; reports what it overwrote.")] = False,
    user: Annotated[Optional[str], typer.Option(help="Email of the user undoing (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Undo a merge (or a whole batch): every touched row back exactly as it was."""
    from merge_rules.errors import MergeError
    from merge_rules.undo import undo_batch, undo_merge

    store = open_store(db)
    user_row = _user(store, user)
    if (merge_id is None) == (all_ is None):
        fail("give either a MERGE_ID or --all BATCH_ID")
    try:
        results = [undo_merge(store, merge_id, user_row["id"], force=force)] if merge_id is not None else \
            undo_batch(store, all_, user_row["id"], force=force)
    except MergeError as exc:
        fail(str(exc), code=1)
    for r in results:
        typer.echo(str(r))


@app.command()
def skip(
    id_a: Annotated[int, typer.Argument(help="One record id.")],
    id_b: Annotated[int, typer.Argument(help="The other record id.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    user: Annotated[Optional[str], typer.Option(help="Email of the user (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Mark two records as "not duplicates"; later runs never group them together."""
    from merge_rules.skips import skip_pair

    store = open_store(db)
    skip_pair(store, entity, id_a, id_b, _user(store, user)["id"])
    typer.echo(f"{entity} #{id_a} and #{id_b} are marked as not duplicates.")


@app.command()
def check(
    input_: Annotated[Optional[Path], typer.Option("--input", help="CSV about to be imported (as `crm-dedup import` reads it).")] = None,
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    preset: Annotated[Optional[str], typer.Option(help="Column preset of the CSV, e.g. bitrix24.")] = None,
    map_: Annotated[list[str], typer.Option("--map", help="FIELD=COLUMN for the CSV, as in import.")] = [],
    out: Annotated[Path, typer.Option(help="Where to write the likely duplicates (CSV).")] = Path("data/check.csv"),
    settings: SettingsOption = None,
    db: DbOption = None,
) -> None:
    """Report new records that duplicate existing ones: the rows of --input, or (without it) the
    records the last dedup run of --entity has not seen (added since, whatever their created_at)."""
    from pipelines.prefect_api import early_server

    with early_server() as ready:
        from pipelines.flows import check_flow

        open_store(db)
        ready()
        try:
            result = check_flow(db=db, entity=entity, csv_path=str(input_) if input_ else None, preset=preset,
                                mapping=_parse_map(map_) or None, settings_path=str(settings) if settings else None,
                                out=str(out))
        except ValueError as exc:
            fail(str(exc))
    for problem in result["problems"][:20]:
        typer.secho(f"  {problem}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{result['new_records_with_duplicates']:,} new record(s) look like existing ones "
               f"({result['likely_duplicates']:,} likely duplicate pairs); details in {result['report']}")


@app.command()
def serve(db: DbOption = None, settings: SettingsOption = None,
          incremental: Annotated[bool, typer.Option("--incremental", help="Nightly runs are incremental (see run --incremental).")] = False) -> None:
    """Run the schedules on this machine: nightly dedup of every entity type, hourly apply of approved groups.
    To use a Prefect server and workers instead, see prefect.yaml and the README."""
    from pipelines.deployments import serve_forever

    open_store(db)
    typer.echo(f"Serving nightly-dedup (02:00{', incremental' if incremental else ''}) and hourly-apply (:05), "
               "Europe/Moscow; Ctrl-C stops.")
    serve_forever(db, str(settings) if settings else None, incremental)


@app.command()
def review(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    settings: SettingsOption = None,
) -> None:
    """Start the review page, where admins and managers approve, adjust, skip and undo merges."""
    from review.server import serve as serve_review

    store = open_store(db)
    from pipelines.settings import Settings

    merge_settings = Settings.load(settings).merge if settings else None
    typer.echo(f"Review page on http://{host}:{port} for {store.display_url} (Ctrl-C stops)")
    serve_review(store.url, host=host, port=port, merge_settings=merge_settings)


@users_app.command("set-password")
def set_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password: Annotated[Optional[str], typer.Option(help="The new password (asked for when not given).")] = None,
    db: DbOption = None,
) -> None:
    """Set a user's password for the review page (stored as an Argon2 hash)."""
    from review.auth import set_password as set_pw

    store = open_store(db)
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("a password needs at least 8 characters")
    try:
        set_pw(store, email, password)
    except LookupError as exc:
        fail(str(exc))
    typer.echo(f"Password set for {email}")


@users_app.command("list")
def list_users(db: DbOption = None) -> None:
    """List the CRM's users with their roles."""
    import sqlalchemy as sa

    from crm import schema

    store = open_store(db)
    u = schema.users
    with store.engine.connect() as conn:
        for row in conn.execute(sa.select(u.c.id, u.c.name, u.c.email, u.c.role).order_by(u.c.id)):
            typer.echo(f"{row.id:>4}  {row.role:<8} {row.email:<35} {row.name}")


@app.command()
def report(
    run_: Annotated[Optional[str], typer.Argument(metavar="RUN", help="A run folder, or a run id of the database "
                                                   "(default: the latest completed run).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file to write (default: RUN/report.html).")] = None,
    db: DbOption = None,
) -> None:
    """Write a self-contained HTML match report of a run, for people without Jupyter."""
    from crm import proposals
    from scoring.report import write_html_report

    folder = Path(run_) if run_ and Path(run_).is_dir() else None
    if folder is None:
        store = open_store(db)
        if run_:
            import sqlalchemy as sa

            from crm import schema

            with store.engine.connect() as conn:
                row = conn.execute(sa.select(schema.dedup_runs.c.folder).where(schema.dedup_runs.c.id == run_)).first()
            if row is None:
                fail(f"{run_!r} is neither a folder nor a run id of {store.display_url}")
            folder = Path(row[0])
        else:
            last = proposals.latest_run(store)
            if last is None:
                fail(f"{store.display_url} has no completed run yet; run `crm-dedup run` first")
            folder = Path(last["folder"])
    path = write_html_report(folder, out, db_url=db)
    typer.echo(f"Report written to {path}")


def _user(store, email: str | None) -> dict:
    import sqlalchemy as sa

    from crm import schema

    u = schema.users
    with store.engine.connect() as conn:
        if email:
            row = conn.execute(sa.select(u).where(u.c.email == email)).first()
            if row is None:
                fail(f"no user with email {email!r} in {store.display_url}")
        else:
            row = conn.execute(sa.select(u).where(u.c.role == "admin").order_by(u.c.id).limit(1)).first()
            if row is None:
                fail("the database has no admin user; pass --user EMAIL")
    return dict(row._mapping)


def _parse_map(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        if "=" not in item:
            fail(f"--map {item!r} must look like ROLE=COLUMN, for example phone=Mobile")
        key, _, value = item.partition("=")
        out.setdefault(key.strip(), [])
        out[key.strip()].append(value.strip())
    return out


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="crm-dedup")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
