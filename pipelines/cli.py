"""The `crm-dedup` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

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


def _parse_map(items: list[str]) -> dict[str, str]:
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
