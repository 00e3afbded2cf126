"""The `crm-dedup` command line. Prefect is imported only by the commands that run flows."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
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


GROUP_TIERS = ("certain", "probable")  # groups form at "probable" or above (README, How matching works)
SETTINGS_HELP = "Settings YAML with match, merge and pipeline sections (see Settings in README.md)."
SettingsOption = Annotated[Optional[Path], typer.Option("--settings", help=SETTINGS_HELP)]
PortalTzOption = Annotated[Optional[str], typer.Option(
    "--portal-tz", metavar="NAME", help="The portal's time zone, an IANA name such as Europe/Moscow: a created_at/"
    "modified_at written without a UTC offset (as Bitrix24 exports them) is its local time, stored in UTC. Overrides "
    "the setting pipeline.portal_timezone; without either such times are read as UTC.")]


def entity_type(value: str, *, allow_all: bool = False) -> str:
    """The one check of --entity for every command: the spellings `import` accepts (contact, contacts,
    company, ...), and "all" where the command takes it."""
    from crm.csv_io import ENTITY_ALIASES

    key = str(value).strip().lower()
    if allow_all and key == "all":
        return "all"
    if key not in ENTITY_ALIASES:
        fail(f"unknown entity type {value!r}: use contact, company{', lead or all' if allow_all else ' or lead'}")
    return ENTITY_ALIASES[key]


def load_settings(path: Path | None, *, runs: bool = False):
    """The whole settings file (match, merge, pipeline), checked before any flow starts; ``runs``: the
    command writes a run folder, so pipeline.runs_dir must be a folder it may write in (made if missing)."""
    import tempfile

    from pipelines.settings import Settings
    from scoring.settings import SettingsError

    try:
        settings = Settings.load(path)
    except SettingsError as exc:
        fail(str(exc))
    if runs:
        folder = Path(settings.pipeline.runs_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            fail(f"pipeline.runs_dir {str(folder)!r} cannot hold run folders ({exc.strerror or exc}): set "
                 f"pipeline.runs_dir{' in ' + str(path) if path else ' (--settings FILE)'} to a folder you may write in")
    return settings


def no_run_going(store) -> None:
    """One line, before a flow starts, when another dedup run still runs on the database."""
    from crm import proposals

    try:
        proposals.refuse_if_running(store)
    except proposals.RunStillRunning as exc:
        fail(str(exc), code=1)


def migrated(store) -> str:
    """Create or upgrade the schema, then check it as every command does: a problem is one line."""
    from crm.store import StoreError

    try:
        rev = store.migrate()
        store.check_schema()  # (a table an older init kept as it was lacks our columns)
    except StoreError as exc:
        fail(str(exc))
    return rev


@app.command()
def init(db: DbOption = None) -> None:
    """Create an empty CRM database with the crm-dedup schema (or upgrade an existing one)."""
    import sqlalchemy as sa

    from crm import schema

    store = open_store(db, must_exist=False, check=False)
    rev = migrated(store)
    typer.echo(f"{store.display_url}: schema at revision {rev}")
    with store.engine.connect() as conn:
        admins = conn.execute(sa.select(sa.func.count()).where(schema.users.c.role == "admin")).scalar_one()
    if not admins:  # approving and merging need one
        typer.echo("Next: `crm-dedup users add EMAIL --name NAME --role admin` (and the managers, with --id, "
                   "before importing their records), then `crm-dedup import FILE --entity contact`.")


@app.command()
def migrate(db: DbOption = None) -> None:
    """Upgrade the database schema to this version of crm-dedup."""
    store = open_store(db, check=False)
    before = store.revision()
    rev = migrated(store)
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
    migrated(store)
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
    errors: Annotated[Optional[Path], typer.Option(help="Write the problems to this CSV (line, id, column, the "
                                                   "value cut at 80 characters, reason: of each rejected row, and of "
                                                   "each cell left out of a row imported, such as a date that does "
                                                   "not exist), and the rejected rows whole (every column as in the "
                                                   "file, after their line and reason) to NAME.rows.csv beside it, "
                                                   "to fix and import again.")] = None,
    update: Annotated[bool, typer.Option("--update", help="Rows whose id is in the database update that record (the "
                                         "file's columns and phones/e-mails of its kinds replace the record's) "
                                         "instead of being rejected; new ids are added.")] = False,
    settings: SettingsOption = None,
    portal_tz: PortalTzOption = None,
) -> None:
    """Import contacts, companies or leads from CSV; bad rows are reported and the rest goes in (a cell that
    cannot be stored, such as a date that does not exist, is left empty and reported: the row goes in). Phones,
    e-mails and birthdates the matching cannot use are stored as written and counted in the summary
    (phones without a country code are read in the settings' match.region)."""
    from crm.csv_io import CsvError, import_csv

    entity = entity_type(entity)
    loaded = load_settings(settings)
    store = open_store(db)
    if errors is not None:  # refused before anything is imported: a traceback after it reads as "nothing went in"
        _can_write(errors, "--errors")
    try:
        report = import_csv(store, file, entity, preset=preset, mapping=_parse_map(map_),
                            encoding=encoding, delimiter=delimiter, region=loaded.match.region, update=update,
                            portal_timezone=loaded.pipeline.portal_timezone if portal_tz is None else portal_tz)
    except CsvError as exc:
        fail(str(exc))
    listed = report.all_problems()  # rows rejected, and cells left out of rows imported
    for problem in listed[:50]:
        typer.secho(f"  {problem}", fg=typer.colors.YELLOW, err=True)
    if len(listed) > 50:
        typer.secho(f"  ... and {len(listed) - 50} more" + (f" (all in {errors})" if errors else
                                                            " (--errors FILE writes them all)"),
                    fg=typer.colors.YELLOW, err=True)
    if errors and listed:
        report.write_problems(errors)
    rows_file = errors.with_name(f"{errors.stem}.rows{errors.suffix or '.csv'}") if errors and report.problems else None
    written = report.write_rejected_rows(rows_file) if rows_file else 0
    typer.echo(report.summary())
    if rows_file:
        typer.echo(f"Problems: {errors}; the {written:,} rejected rows whole, with their line and reason: {rows_file} "
                   "(fix them there and import that file).")
    if report.rejected and not report.imported:  # (a script must not take "nothing went in" for success)
        raise typer.Exit(1)


def _can_write(path: Path, option: str) -> None:
    """Refuse at once a file the command could not write at its end (its folder is made if missing); a file
    not there before is not left behind empty."""
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a", encoding="utf-8").close()
    except OSError as exc:
        fail(f"cannot write {option} {path}: {exc.strerror or exc}")
    if not existed:
        path.unlink()


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")],
    db: DbOption = None,
    preset: Annotated[Optional[str], typer.Option(help="'bitrix24' writes Bitrix24's column headers.")] = None,
    encoding: Annotated[str, typer.Option(help="utf-8, utf-8-sig or cp1251.")] = "utf-8",
    delimiter: Annotated[str, typer.Option(help="',' or ';'.")] = ",",
    settings: SettingsOption = None,
    portal_tz: Annotated[Optional[str], typer.Option(
        "--portal-tz", metavar="NAME", help="Write created_at/modified_at in this time zone (an IANA name such as "
        "Europe/Moscow; overrides the setting pipeline.portal_timezone): with --preset bitrix24 as the portal's "
        "local time, as Bitrix24 does, else with the UTC offset. Without either they are written in UTC.")] = None,
) -> None:
    """Export contacts, companies or leads to CSV in the form `crm-dedup import` reads (import with the same
    --portal-tz reads the times back as they are stored)."""
    from crm.csv_io import CsvError, export_csv

    entity = entity_type(entity)
    zone = load_settings(settings).pipeline.portal_timezone if portal_tz is None else portal_tz
    store = open_store(db)
    try:
        n = export_csv(store, file, entity, preset=preset, encoding=encoding, delimiter=delimiter,
                       portal_timezone=zone)
    except CsvError as exc:
        fail(str(exc))
    typer.echo(f"Wrote {n:,} {entity} records to {file}")


@app.command()
def find(
    input_: Annotated[Optional[Path], typer.Option("--input", help="CSV or parquet file to deduplicate (file mode).")] = None,
    entity: Annotated[str, typer.Option(help="contact, company or lead (or all, without --input).")] = "contact",
    map_: Annotated[list[str], typer.Option("--map", help="ROLE=COLUMN, repeatable; roles: first_name, last_name, "
                                             "middle_name, full_name, company, phone, email, birthdate, address, city, "
                                             "postcode, tax_id, website, text.")] = [],
    id_column: Annotated[list[str], typer.Option(metavar="<str>", help="Column holding the record id (default: "
                                                 "row number).")] = [],
    encoding: Annotated[Optional[str], typer.Option(help="Of the --input CSV: utf-8, cp1251 or utf-16; detected "
                                                    "when not given.")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="Of the --input CSV: ',', ';', tab or another character; "
                                                     "detected when not given.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for groups.csv, pairs.csv, model.json, blocking.csv and "
                                      "settings.yaml (with --input), relative to the current folder.")] = "./out",
    settings: Annotated[Optional[Path], typer.Option(help=SETTINGS_HELP + " With --input only the match section "
                                                     "is used, in this process (never on Dask).")] = None,
    incremental: IncrementalOption = False,
    db: DbOption = None,
    ctx: typer.Context = None,
) -> None:
    """Find duplicate groups: in a CSV/parquet file (--input, no database), or in the CRM database
    (without --input: runs the dedup flow over --entity, or all types with --entity all)."""
    from matchers.table import MappingError

    id_column = _once(id_column, "--id-column", "a record's id is one column of the file")
    if input_ is None:
        if encoding is not None or delimiter is not None:
            fail("--encoding and --delimiter say how to read the file of --input; without --input, find runs on the "
                 "CRM database")
        # the dedup flow reads the whole settings file: check it (and --entity) before the flow starts
        entity = entity_type(entity, allow_all=True)
        load_settings(settings, runs=True)
        # a database that is down or not migrated, or a run going on it: one line, before anything starts
        no_run_going(open_store(db))
        from pipelines.prefect_api import early_server

        with early_server() as ready:
            from pipelines.run import check_dask, run_dedup_cli
            from pipelines.steps import import_step_modules

            check_dask(settings)  # (so is a Dask scheduler that does not answer)
            import_step_modules()  # (while the server starts)
            ready()
            summary = run_dedup_cli(db, entity, settings, incremental)
        _say_fallback(summary)
        return
    if incremental:
        fail("--incremental works on the CRM database (without --input): a file has no last run to build on")
    entity = entity_type(entity)
    # the whole settings file, as `run` reads it (each problem named by its section); a file is matched
    # with its match section
    whole = load_settings(settings)
    match_settings = whole.match
    if whole.pipeline.dask.enabled:
        typer.echo(f"Note: {settings} enables pipeline.dask, but a file (--input) is matched in this process, "
                   "without Dask; Dask is used by `run` and `find` on the CRM database.")
    from scoring.files import FileError, find_in_file

    # (typer's own copy of click says where a value came from; compared by name)
    source = ctx.get_parameter_source("out") if ctx is not None else None
    out_given = source is not None and source.name != "DEFAULT"
    try:
        result = find_in_file(input_, entity, _parse_map(map_), id_column, match_settings, encoding=encoding,
                              delimiter=delimiter)
    except (FileError, MappingError) as exc:
        fail(str(exc))
    paths = result.write(out, match_settings)
    s = result.summary()
    typer.echo(f"{s['records']:,} records, {s['candidate_pairs']:,} candidate pairs, {s['groups']:,} groups "
               f"({s['groups_per_tier']['certain']:,} certain, {s['groups_per_tier']['probable']:,} probable), "
               f"{s['records_in_groups']:,} records in groups")
    if "left_out" in paths:
        typer.echo(f"{len(result.left_out()):,} record(s) are in no group although probable or better with a member "
                   "of one (a pair held apart kept them out): listed in left_out.csv, with why in "
                   f"`crm-dedup report {out}`")
    typer.echo(f"Files written to {out.resolve()}" + ("" if out_given else " (the default --out; pass --out DIR to choose)"))
    for name, path in paths.items():
        typer.echo(f"  {name:<9} {path.name}")


@app.command()
def evaluate(
    groups: Annotated[Path, typer.Option(help="groups.csv written by `crm-dedup find`, a run's "
                                          "<entity>/groups.parquet (CSV or parquet), or a run folder (each of its "
                                          "entity types; without --truth only).")],
    truth: Annotated[Optional[Path], typer.Option(help="CSV or parquet with the record id and the true entity "
                                                  "(default: the demo truth of the run's database, of the run's "
                                                  "entity type: the demo_truth table `crm-dedup demo` fills).")] = None,
    truth_column: Annotated[list[str], typer.Option(metavar="<str>", help="Column of --truth naming the real "
                                                    "entity (needed with --truth).")] = [],
    id_column: Annotated[list[str], typer.Option(metavar="<str>", help="Column of --truth with the record id "
                                                 "(default: id).")] = [],
    pairs: Annotated[Optional[Path], typer.Option(help="pairs.csv or pairs.parquet, for figures per threshold "
                                                  "(default: the one beside groups).")] = None,
    thresholds: Annotated[Optional[str], typer.Option(
        metavar="LIST", help="Thresholds of the per-threshold table, separated by commas (0.5,0.8,0.95). Default: "
        "the settings' possible, probable and certain thresholds and the deciles of the probabilities of the pairs "
        "no rule holds at possible; where deciles coincide, scores above the certain threshold.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="The database the run read, for its demo truth without "
                                              "--truth (default: $CRM_DEDUP_DB or sqlite:///data/crm.db, if it "
                                              "holds the run).")] = None,
) -> None:
    """Pairwise precision, recall, F1 and B-cubed figures of groups (CSV or parquet) against known truth:
    a truth file, or the demo truth of the database a run read."""
    import pandas as pd

    from scoring.evaluate import (evaluate_groups, held_mask, parse_thresholds, threshold_settings, threshold_table,
                                  threshold_text)
    from scoring.files import FileError
    from scoring.settings import MatchSettings, SettingsError

    # (a repeated option would otherwise be the last one given, silently: a record has one id and one entity)
    id_column = _once(id_column, "--id-column", "a record's id is one column of --truth, matched with the id "
                      "column of --groups")
    truth_column = _once(truth_column, "--truth-column", "the real entity is one column of --truth")
    try:
        grid = parse_thresholds(thresholds) if thresholds is not None else None
    except ValueError as exc:
        fail(str(exc))
    if truth is not None:
        parts = _truth_file_parts(groups, truth, truth_column, id_column, db)
    else:
        parts = _demo_truth_parts(groups, pairs, db, truth_column, id_column)
    for entity, groups_path, truth_s in parts:
        if entity is not None:
            typer.echo(f"{entity} (the demo truth of the run's database):")
            # (the run reads the truth for every record it grouped; a record the demo did not make is its own entity)
            unknown = int(truth_s.str.startswith("(no truth) ").sum())
            if unknown:
                typer.echo(f"{unknown:,} record(s) are not in the demo truth: each counts as an entity of its own")
        try:
            g = _read_run_table(groups_path, "groups", ("id", "group_id"))
        except (FileError, OSError, ValueError) as exc:
            fail(str(exc))
        group_s = pd.Series(g["group_id"].astype(str).to_numpy(), index=g["id"].astype(str))
        try:
            r = evaluate_groups(group_s, truth_s)
        except ValueError as exc:
            fail(str(exc))
        typer.echo(f"records {r['records']:,}  true pairs {r['true_pairs']:,}  "
                   f"predicted pairs {r['predicted_pairs']:,}")
        typer.echo(f"pairwise  precision {r['precision']:.4f}  recall {r['recall']:.4f}  F1 {r['f1']:.4f}")
        typer.echo(f"B-cubed   precision {r['bcubed_precision']:.4f}  recall {r['bcubed_recall']:.4f}  "
                   f"F1 {r['bcubed_f1']:.4f}")
        pairs_path = pairs
        if pairs_path is None:
            beside = [groups_path.with_name(n) for n in ("pairs.csv", "pairs.parquet")]
            pairs_path = next((b for b in beside if b.exists()), None)
        elif not pairs_path.exists():
            fail(f"there is no pairs file {pairs_path}")
        if pairs_path is None:
            if grid is not None:
                fail(f"--thresholds needs the pairs: there is no pairs.csv or pairs.parquet beside {groups_path}; "
                     "pass --pairs FILE")
            continue
        try:
            p = _read_run_table(pairs_path, "pairs", ("id_a", "id_b", "probability"))
        except (FileError, OSError, ValueError) as exc:
            fail(str(exc))
        p = p.assign(id_a=p["id_a"].astype(str), id_b=p["id_b"].astype(str))
        # the thresholds of the run: settings.yaml beside the files (file mode) or one folder up (a run's entity)
        found = [s for s in (groups_path.parent / "settings.yaml", groups_path.parent.parent / "settings.yaml")
                 if s.exists()]
        try:
            th = MatchSettings.load(found[0]).thresholds if found else MatchSettings().thresholds
        except SettingsError as exc:
            fail(str(exc))
        possible = th.possible
        table = threshold_table(p, group_s.index, truth_s, grid, possible=possible, fixed=(th.probable, th.certain))
        # the settings' own thresholds named, so the tiers can be found among the quantiles
        shown = table.assign(threshold=table["threshold"].map(threshold_text),
                             setting=threshold_settings(table["threshold"], th.model_dump()))
        typer.echo("per threshold (groups = connected pairs at or above it" +
                   ("):" if grid is not None else
                    "; the settings' thresholds, the deciles of the pairs not held at possible and, where those "
                    "coincide, scores above certain):"))
        typer.echo(shown[["threshold", "precision", "recall", "f1", "bcubed_f1", "pairs", "setting"]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))
        held = int(held_mask(p).sum())
        if held:
            typer.echo(f"{held:,} pairs held at possible by a rule stay possible whatever the threshold: left out "
                       f"above possible ({possible:g}).")


def _read_run_table(path: Path, what: str, columns: tuple[str, ...]):
    """A run's groups or pairs, CSV or parquet (as `find` and `run` write them); ids as text."""
    import pandas as pd

    if not path.exists():
        raise ValueError(f"there is no {what} file {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not parquet
            raise ValueError(f"{path} is not a readable parquet file ({exc})") from exc
    else:
        try:
            frame = pd.read_csv(path, dtype={c: str for c in ("id", "group_id", "id_a", "id_b")})
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not a UTF-8 CSV file ({exc.reason}); pass a CSV or a .parquet file") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(map(str, frame.columns))}): pass the {what} file `crm-dedup find` or `run` wrote")
    return frame


def _truth_file_parts(groups: Path, truth: Path, truth_column: str | None, id_column: str | None,
                      db: str | None) -> list[tuple[str | None, Path, pd.Series]]:
    """`evaluate --truth FILE`: the one groups file given, against the truth file's column."""
    import pandas as pd

    from scoring.files import FileError, read_table

    if groups.is_dir():
        # (a run folder holds one groups file per entity type; a truth file is one entity type's records)
        inside = [str(p) for p in (*sorted(groups.glob("*/groups.parquet")), groups / "groups.csv") if p.exists()]
        files = ", ".join(inside) or "a run's RUN/<entity>/groups.parquet, or OUT/groups.csv of `crm-dedup find`"
        fail(f"--groups {groups} is a folder, and --truth holds one entity type's records: pass that entity type's "
             f"groups file ({files}), or leave --truth out to measure each entity type of a run folder against "
             "the demo truth of its database")
    if truth_column is None:
        fail("Missing option '--truth-column': name the column of --truth holding each record's real entity")
    if db is not None:
        fail("--db is read for the demo truth of a run's database, and --truth was given: give one of them")
    id_column = id_column or "id"
    try:
        _read_run_table(groups, "groups", ("id", "group_id"))  # (a bad groups file is named before the truth)
        t = read_table(truth)
    except (FileError, OSError, ValueError) as exc:
        fail(str(exc))
    for col in (id_column, truth_column):
        if col not in t.columns:
            fail(f"{truth} has no column {col!r} (columns: {', '.join(map(str, t.columns))})")
    return [(None, groups, pd.Series(t[truth_column].astype(str).to_numpy(), index=t[id_column].astype(str)))]


def _demo_truth_parts(groups: Path, pairs: Path | None, db: str | None, truth_column: str | None,
                      id_column: str | None) -> list[tuple[str | None, Path, pd.Series]]:
    """`evaluate` without --truth: each entity type of the run (or the one of its groups file) with a demo
    truth in the run's database, cut to that entity type (their ids overlap). Says which are not measured."""
    import pandas as pd

    from crm.schema import ENTITY_TYPES
    from crm.store import hide_password
    from scoring.report import ReportError, Run

    if truth_column or id_column:
        fail("--truth-column and --id-column name columns of --truth: pass --truth FILE with them, or neither "
             "for the demo truth of the run's database")
    if not groups.exists():
        fail(f"there is no groups file {groups}")
    if groups.is_dir():
        folder, wanted = groups, None
    elif groups.name == "groups.parquet" and groups.parent.name in ENTITY_TYPES:
        folder, wanted = groups.parent.parent, groups.parent.name
    else:
        fail(f"{groups} is neither a run folder nor a run's <entity>/groups.parquet, so no database holds its "
             "truth: pass --truth FILE --truth-column COLUMN (the real entity of each record)")
    if wanted is None and pairs is not None:
        fail("--pairs are one entity type's pairs: pass --groups RUN/<entity>/groups.parquet with it")
    if db is not None:
        store = open_store(db)  # (a bad --db is one error line here)
        db = store.url
        store.dispose()
    parts: list[tuple[str | None, Path, pd.Series]] = []
    try:
        run = Run.open(folder, db_url=db)
        if run.mode != "database":
            fail(f"{folder} is a file-mode run (crm-dedup find --input): no database holds its truth. Pass "
                 "--truth FILE --truth-column COLUMN (the real entity of each record)")
        lacking = []
        for e in [wanted] if wanted else run.entity_types:
            known = run.truth(e)
            if known is None:
                lacking.append(e)
                continue
            parts.append((e, folder / e / "groups.parquet", pd.Series(known.to_numpy(), index=known.index.astype(str))))
    except ReportError as exc:
        fail(str(exc))
    if lacking:
        why = (run.no_truth_reason() if run.db_url is None else
               f"The database {hide_password(run.db_url)} holds no demo truth of the run's {', '.join(lacking)} "
               "records (its demo_truth table: only a demo CRM made by `crm-dedup demo` has one).")
        if not parts:
            fail(f"{why} Pass --truth FILE --truth-column COLUMN to measure against a truth of your own.")
        typer.echo(f"Not measured: {why}")
    return parts



@app.command()
def run(
    db: DbOption = None,
    entity: Annotated[str, typer.Option(help="contact, company, lead or all.")] = "all",
    settings: SettingsOption = None,
    incremental: IncrementalOption = False,
) -> None:
    """Run the dedup flow over the CRM database and print the summary (the main job)."""
    # bad input is refused before Prefect's server and the flow start
    entity = entity_type(entity, allow_all=True)
    load_settings(settings, runs=True)
    no_run_going(open_store(db))  # (before Prefect's server starts: a refusal starts nothing)
    from pipelines.prefect_api import early_server

    with early_server() as ready:
        from pipelines.run import check_dask, run_dedup_cli
        from pipelines.steps import import_step_modules

        check_dask(settings)  # a Dask scheduler that does not answer: one line, before the flow starts
        import_step_modules()  # (while the server starts)
        ready()
        summary = run_dedup_cli(db, entity, settings, incremental)
    _say_fallback(summary)


def _say_fallback(summary: dict) -> None:
    """After a run asked to be --incremental: each entity type it ran in full instead, and why (else only
    the log and summary.json say so, and the summary reads like any run)."""
    for entity, s in (summary.get("entities") or {}).items():
        if isinstance(s, dict) and s.get("incremental_fallback"):
            typer.secho(f"{entity}: run in full, not incrementally: {s['incremental_fallback']}",
                        fg=typer.colors.YELLOW)


@app.command()
def approve(
    group_ids: Annotated[Optional[list[str]], typer.Argument(help="Group ids to approve.")] = None,
    tier: Annotated[Optional[str], typer.Option(help="Approve every pending group of this tier (certain, probable).")] = None,
    entity: Annotated[Optional[str], typer.Option(help="Limit --tier to one entity type.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Email of the approving user (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Approve pending groups for the next merge (`crm-dedup merge` or the hourly apply flow). A manager
    (--user) may approve only groups whose live records are all theirs; an admin any group."""
    from crm import proposals
    from merge_rules.permissions import user_label

    if not group_ids and not tier:
        fail("name group ids, or --tier certain to approve every certain group")
    if tier is not None and tier not in GROUP_TIERS:
        fail(f"unknown tier {tier!r}: use {' or '.join(GROUP_TIERS)}")
    if entity is not None:
        if not tier:
            fail("--entity limits --tier to one entity type; group ids name their entity type already")
        entity = entity_type(entity)
    store = open_store(db)
    user_row = _user(store, user)
    ids = list(dict.fromkeys(group_ids or []))
    statuses = _group_statuses(store, ids)
    unknown = [i for i in ids if i not in statuses]
    if unknown:
        # a typo approves nothing, not the rest of the list
        fail(f"no group with id {_listed(unknown)} in {store.display_url}; nothing approved "
             "(`crm-dedup groups` and the review page list the group ids)")
    # a manager approves only groups whose live records are all theirs, as on the review page: the
    # merge of an approved group runs later as the admin, so approving is the decision to merge
    named = _group_members(store, [i for i in ids if statuses[i] == "pending"])
    refused = _others_records(store, user_row, named)
    ids = [i for i in ids if i not in refused]
    left = {}
    if tier:
        frame = proposals.read_groups(store, status="pending", entity_type=entity, tiers=[tier])
        tiered = {r.id: (r.entity_type, list(r.member_ids)) for r in frame.itertuples(index=False)}
        left = {gid: o for gid, o in _others_records(store, user_row, tiered).items() if gid not in refused}
        ids += [i for i in tiered if i not in left and i not in refused]
    else:
        tiered = {}
    # a group holding two records marked "not duplicates" (since it was proposed) can never merge
    skipped = _skipped_within(store, {i: ({**named, **tiered})[i] for i in ids if i in named or i in tiered})
    ids = [i for i in ids if i not in skipped]
    n = proposals.set_status(store, ids, "approved", user_row["id"])
    not_pending = [f"{i} ({s})" for i, s in statuses.items() if s != "pending"]
    typer.echo(f"Approved {n:,} group(s) as {user_row['name']}"
               + (f"; not pending, left as they are: {_listed(not_pending, quote=False)}" if not_pending else "")
               + (f"; {len(left):,} {tier} group(s) left: they hold records of other managers, which only an "
                  "admin may approve" if left else ""))
    if skipped:
        typer.echo(f"Not approved: {len(skipped):,} group(s) hold records marked \"not duplicates\" since they were "
                   "proposed; the next run regroups them (`crm-dedup unskip A B` withdraws a mark):")
        for gid, pairs in list(skipped.items())[:MERGE_SHOWN]:
            typer.echo(f"  {gid}: " + ", ".join(f"#{a} and #{b}" for a, b in pairs))
    if refused:
        typer.echo(f"Not approved: {user_label(user_row)} is a manager and may approve only groups whose live "
                   "records are all theirs. Merge your own records on the review page, skip them, or ask an "
                   "admin to approve the whole group.")
        for gid, others in refused.items():
            typer.echo(f"  {gid}: holds records of other managers: {_owned(store, named[gid][0], others)}")
    if refused or any(g in skipped for g in group_ids or []):  # (a group named and not approved)
        raise typer.Exit(1)


def _skipped_within(store, groups: dict[str, tuple[str, list[int]]]) -> dict[str, list[tuple[int, int]]]:
    """group id -> the pairs of its members marked "not duplicates", for the groups that hold any."""
    from merge_rules.skips import skipped_within

    out: dict[str, list[tuple[int, int]]] = {}
    for entity in sorted({et for et, _m in groups.values()}):
        out.update(skipped_within(store, entity, {g: ms for g, (et, ms) in groups.items() if et == entity}))
    return out


@app.command()
def groups(
    status: Annotated[str, typer.Option(help="pending, approved, applied, skipped, stale, or all.")] = "pending",
    tier: Annotated[Optional[str], typer.Option(help="certain or probable.")] = None,
    entity: Annotated[Optional[str], typer.Option(help="contact, company or lead.")] = None,
    limit: Annotated[int, typer.Option(help="How many to list, most certain first (1 or more).")] = 20,
    db: DbOption = None,
) -> None:
    """List proposed groups with their ids (to approve or skip here, or open on the review page). Under a
    group, each manager who would lose access to a record of theirs once it is merged into a record
    another manager is responsible for."""
    from crm import proposals

    if status != "all" and status not in proposals.STATUSES:
        fail(f"unknown status {status!r}: use {', '.join(proposals.STATUSES)} or all")
    if tier is not None and tier not in GROUP_TIERS:
        fail(f"unknown tier {tier!r}: use {' or '.join(GROUP_TIERS)}")
    if limit < 1:
        fail(f"--limit must be 1 or more (got {limit})")
    entity = entity_type(entity) if entity is not None else None
    store = open_store(db)
    page, total = proposals.group_page(store, status=None if status == "all" else status, entity_type=entity,
                                       tiers=[tier] if tier else None, limit=limit)
    what = " ".join(x for x in (None if status == "all" else status, tier, entity) if x)
    if not total:
        typer.echo(f"No {what + ' ' if what else ''}groups.")
        return
    live = page[page["status"].isin(("pending", "approved"))]
    skipped = _skipped_within(store, {g: (et, list(ms)) for g, et, ms in
                                      zip(live["id"], live["entity_type"], live["member_ids"])})
    names = _record_names(store, page)
    for row in page.itertuples(index=False):
        plan = row.plan or {}
        conflicts = [c["field"] for c in plan.get("conflicts", []) if not c.get("resolved_by")]
        others = ", ".join(f"#{m}" for m in row.member_ids if m != row.primary_id)
        typer.echo(f"{row.id}  {row.status:<8} {row.tier:<8} {_score_text(row.score)}  #{row.primary_id} <- {others}  "
                   f"{row.criteria}" + (f"  conflicts: {', '.join(conflicts)}" if conflicts else ""))
        shown = [f"#{m} {names.get((row.entity_type, int(m))) or '(no name)'}" for m in row.member_ids[:GROUP_NAMES]]
        more = len(row.member_ids) - GROUP_NAMES
        typer.echo("    " + "; ".join(shown) + (f"; and {more:,} more" if more > 0 else ""))
        for a, b in skipped.get(row.id, []):  # marked since the run: approve and merge refuse the group
            typer.echo(f"    not duplicates: #{a} and #{b} were marked so since the run; approve and merge refuse "
                       f"this group until the next run regroups it (`crm-dedup unskip {a} {b} --entity "
                       f"{row.entity_type}` withdraws the mark)")
        if row.status in ("pending", "approved"):  # (as the review page shows them: its merge would fail)
            for problem in plan.get("problems") or []:
                typer.echo(f"    cannot be merged as planned: {problem}; the next `crm-dedup run` regroups its records")
        for warning in plan.get("access_warnings", []):  # as the review page warns before the merge
            text = warning["message"]
            if row.status == "applied":  # (said after the merge as it happened)
                text = text.replace("; they will lose access to it", "; they lost access to it")
            typer.echo(f"    access {'lost' if row.status == 'applied' else 'warning'}: {text}")
        for item in getattr(row, "left_out", None) or []:  # a duplicate the merge would leave behind
            typer.echo(f"    left out: {left_out_text(item)}")
    typer.echo(f"{min(limit, total):,} of {total:,} {what + ' ' if what else ''}group(s); "
               "`crm-dedup approve ID ...` approves, `crm-dedup review` shows them.")
    if any(getattr(row, "left_out", None) for row in page.itertuples(index=False)):
        typer.echo("A record left out is probable with a member but stays apart: merging the group leaves it as it "
                   "is. `crm-dedup include GROUP_ID RECORD_ID` adds it (after `crm-dedup unskip` where it is marked "
                   "\"not duplicates\").")


GROUP_NAMES = 6  # members named under a group in `groups`


def _record_names(store, page) -> dict[tuple[str, int], str]:
    """(entity type, id) -> the name a person knows the record by, for the members `groups` names."""
    from review.queries import display_name, read_records

    wanted: dict[str, set[int]] = {}
    for et, members in zip(page["entity_type"], page["member_ids"]):
        wanted.setdefault(et, set()).update(int(m) for m in list(members)[:GROUP_NAMES])
    out = {}
    with store.engine.connect() as conn:
        for et, ids in wanted.items():
            out.update({(et, i): display_name(et, row) for i, row in read_records(conn, et, sorted(ids)).items()})
    return out


def left_out_text(item: dict) -> str:
    """One record a run left out of a group (dedup_groups.left_out), in words."""
    near = (f", {_score_text(item['probability']).strip()} with #{item['partner']}"
            if item.get("partner") is not None else "")
    return f"#{item['id']} ({item.get('tier') or 'probable'}{near}): {item['reason']}"


def _score_text(score) -> str:
    """A group's score to 4 decimals, cut rather than rounded: 0.99894 must not show as certain 0.999."""
    import math

    if score is None or score != score:
        return "   -  "
    return f"{math.floor(float(score) * 10_000 + 1e-9) / 10_000:.4f}"


@app.command()
def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="How many runs to list, newest first (1 or more).")] = 20,
    close: Annotated[Optional[str], typer.Option(
        "--close", help="Close a run left running that cannot be checked from here (another machine's, or from "
                        "before runs recorded where they run): marked failed, its staged plans dropped.")] = None,
) -> None:
    """List the dedup runs (the dedup_runs table): id, start, status, entity types, groups, folder. A run
    whose process is gone (killed, crashed) is marked failed as it is listed."""
    from crm import proposals

    if limit < 1:
        fail(f"--limit must be 1 or more (got {limit})")
    store = open_store(db)
    if close is not None:
        import getpass

        try:
            typer.echo(f"Run {close}: {proposals.close_run(store, close, f'{getpass.getuser()} (crm-dedup runs --close)')}.")
        except (ValueError, proposals.RunStillRunning) as exc:
            fail(str(exc), code=1)
    rows, total = proposals.list_runs(store, limit=limit)
    if not rows:
        typer.echo(f"No dedup runs in {store.display_url} yet; `crm-dedup run` starts one.")
        return
    for r in rows:
        summary = r["summary"] if isinstance(r["summary"], dict) else {}
        per_entity = summary.get("entities") or {}
        groups_text = ", ".join(f"{e} {s.get('groups', 0):,}" for e, s in per_entity.items()
                                if isinstance(s, dict)) or "-"
        folder = r["folder"] or "-"
        if r["folder"] and not Path(r["folder"]).is_dir():
            folder += " (gone)"
        started = r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "-"
        typer.echo(f"{r['id']}  {started}  {r['status']:<9} {r['entity_types'] or '-':<20} groups: {groups_text}  "
                   f"{folder}")
    typer.echo(f"{len(rows):,} of {total:,} run(s), newest first; `crm-dedup report RUN_ID` writes a run's report.")


# `crm-dedup merge` outcomes that send a group back to a person (exit status 3, no error)
_BACK_TO_A_PERSON = ("stale", "conflicts", "not_duplicates", "unreadable")
MERGE_NEEDS_A_PERSON = 3
MERGE_SHOWN = 20  # groups not merged listed in the terminal; --details writes every group's result
# why groups were not merged, after their count (conflicts are counted by field instead)
_NOT_MERGED = {
    "stale": "were stale: their records changed since the plan; planned again, pending for a person to approve",
    "denied": "hold records the merging user may not merge; left approved for an admin or the scheduled apply",
    "not_duplicates": "hold records marked \"not duplicates\" since they were proposed; pending again",
    "unreadable": "had a stored plan that could not be read; planned again, pending for a person to approve",
    "not_approved": "were taken by a person or another merge while this one ran; left as they are",
}


@app.command()
def merge(
    db: DbOption = None,
    batch_id: Annotated[Optional[str], typer.Option(help="Finish a batch a crash stopped: the id `merge` printed (if it merged nothing yet, merge again without it).")] = None,
    user: Annotated[Optional[str], typer.Option(help="Email of the user merging (default: the first admin).")] = None,
    settings: SettingsOption = None,
    details: Annotated[Optional[Path], typer.Option(help="Write every group's result (status, merge id, open "
                                                    "conflicts, who lost access, message) to this CSV.")] = None,
) -> None:
    """Merge every approved group (the apply flow), each in its own transaction.

    A group that cannot be merged as approved goes back to a person (pending, re-planned, with its
    reason): stale (records edited since), conflicts, not_duplicates, unreadable plan. That is
    normal work, not an error. A group another merge or a person took meanwhile (already_applied,
    not_approved), or one holding records the merging user may not merge (denied: left approved for
    an admin or the scheduled apply), is left as it is. The output counts them by reason
    (conflicts by field) and lists the first 20; --details FILE writes them all.

    After merging it lists the managers who lost access: a record of theirs was merged into one
    another manager is responsible for (`crm-dedup groups` warns of it before). That list is the
    only notification: pass it on to them.

    The way of deleting (merge.delete_mode) is fixed in each plan when a run makes it; the
    settings' merge section here settles open conflicts. Where the settings name another
    delete_mode than the merged plans, the output says so.

    Exit status: 0 every approved group merged (or nothing approved); 3 no error, but some groups
    went back to a person (see above); 1 some merge failed (an error: the group goes back to a
    person too, its message says why; look at it); 2 bad usage. Two merges at once on one
    database are safe: each group is merged once, by one of them."""
    merge_settings = load_settings(settings).merge
    store = open_store(db)
    user_row = _user(store, user)
    if batch_id is not None and not _batch_counts(store, batch_id):
        fail(f"there is no batch {batch_id!r} in {store.display_url} (no merge of it is stored; `crm-dedup history` "
             "lists batch ids); leave --batch-id out to merge the approved groups in a new batch")
    if details is not None:  # a file that cannot be written: refused before anything is merged
        try:
            details.parent.mkdir(parents=True, exist_ok=True)
            details.open("a", encoding="utf-8").close()
        except OSError as exc:
            fail(f"cannot write --details {details}: {exc.strerror or exc}")
    from pipelines.prefect_api import early_server

    from pipelines.apply import new_batch_id

    batch_id = batch_id or new_batch_id()
    with early_server() as ready:
        from pipelines.flows import apply_flow

        ready()
        results = apply_flow(db=db, batch_id=batch_id, user_id=user_row["id"],
                             settings_path=str(settings) if settings else None)
    counts = Counter(r["status"] for r in results)
    plans = _stored_plans(store, [r["group_id"] for r in results])
    not_merged = [r for r in results if r["status"] not in ("applied", "already_applied", "failed")]
    for r in results:  # a failed merge is an error: every one is listed
        if r["status"] == "failed":
            typer.secho(f"  {r['group_id']}: {r['status']}: {r['message']}", fg=typer.colors.YELLOW)
    for line in _not_merged_summary(not_merged, plans, merge_settings.conflict_policy):
        typer.echo(line)
    for r in not_merged[:MERGE_SHOWN]:
        typer.secho(f"  {r['group_id']}: {r['status']}: {r['message']}", fg=typer.colors.YELLOW)
    if len(not_merged) > MERGE_SHOWN:
        where = (f"every group's result is in {details}" if details else
                 "`crm-dedup merge --details FILE` writes every group's result to a CSV; `crm-dedup groups "
                 "--status pending` lists the groups pending again, with their open conflicts")
        typer.echo(f"  ... and {len(not_merged) - MERGE_SHOWN:,} more ({where})")
    if details is not None:
        _write_merge_details(details, results, plans)
    typer.echo("Merge results: " + (_counted(counts) or "nothing approved")
               + (f"; every group's result is in {details}" if details else ""))
    if counts.get("applied"):
        typer.echo(f"Batch {batch_id}: `crm-dedup undo --all {batch_id}` undoes it.")
    for line in _lost_access(results, plans):
        typer.echo(line)
    _note_delete_mode(settings, merge_settings.delete_mode, results, plans)
    if counts.get("failed"):
        typer.secho(f"error: {counts['failed']:,} merge(s) failed; see the lines above", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    if sum(n for status, n in counts.items() if status in _BACK_TO_A_PERSON):
        raise typer.Exit(MERGE_NEEDS_A_PERSON)


def _stored_plans(store, group_ids: list[str]) -> dict[str, dict]:
    """group id -> its stored plan (as a dict), for the groups that have one. After a merge, the plan
    of a group merged or sent back with its conflicts open is the one approved (apply re-plans only
    where the records, access and way of deleting stay as approved)."""
    import sqlalchemy as sa

    from crm import schema

    g, p = schema.dedup_groups, schema.dedup_plans
    out: dict[str, dict] = {}
    ids = list(dict.fromkeys(group_ids))
    with store.engine.connect() as conn:
        for at in range(0, len(ids), 2000):  # PostgreSQL takes at most 65,535 parameters a statement
            q = (sa.select(g.c.id, p.c.plan).join(p, (p.c.group_id == g.c.id) & (p.c.run_id == g.c.run_id))
                 .where(g.c.id.in_(ids[at:at + 2000])))
            out.update({gid: plan for gid, plan in conn.execute(q) if isinstance(plan, dict)})
    return out


def _open_conflicts(plan: dict | None) -> list[str]:
    return [c["field"] for c in (plan or {}).get("conflicts", []) if not c.get("resolved_by")]


def _not_merged_summary(results: list[dict], plans: dict[str, dict], policy: str) -> list[str]:
    """One line per reason groups were not merged, with their count (conflicts by field, most first)."""
    lines = []
    by_status = Counter(r["status"] for r in results)
    if by_status.get("conflicts"):
        fields = Counter(f for r in results if r["status"] == "conflicts"
                         for f in _open_conflicts(plans.get(r["group_id"])))
        per_field = ", ".join(f"{f} {n:,}" for f, n in fields.most_common())
        advice = ("choose values on the review page, or merge with a conflict policy (merge.conflict_policy: "
                  "keep_primary | most_common | most_recent | longest)" if policy == "ask" else
                  f"the conflict policy {policy} of these settings did not settle them (each group's message says "
                  "why); choose values on the review page")
        lines.append(f"{by_status['conflicts']:,} group(s) have open conflicts"
                     + (f": {per_field}" if per_field else "") + f"; pending again: {advice}.")
    for status, n in by_status.items():
        if status != "conflicts":
            lines.append(f"{n:,} group(s) {_NOT_MERGED.get(status, status)}.")
    return lines


def _write_merge_details(path: Path, results: list[dict], plans: dict[str, dict]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group_id", "status", "merge_id", "entity_type", "primary_id", "merged_ids", "open_conflicts",
                    "lost_access", "message"])
        for r in results:
            plan = plans.get(r["group_id"]) or {}
            lost = (" | ".join(f"{a['name']} (#{a['user_id']}): " + ", ".join(f"#{i}" for i in a["record_ids"])
                               for a in plan.get("access_warnings", [])) if r["status"] == "applied" else "")
            w.writerow([r["group_id"], r["status"], r.get("merge_id") or "", plan.get("entity_type", ""),
                        plan.get("primary_id", ""), " ".join(str(i) for i in plan.get("duplicate_ids", [])),
                        " ".join(_open_conflicts(plan)) if r["status"] == "conflicts" else "", lost, r["message"]])


def _lost_access(results: list[dict], plans: dict[str, dict]) -> list[str]:
    """The managers who lost access with this merge: per manager, their records merged into a record
    another manager is responsible for (the plans' access warnings, as approved)."""
    lost: dict[tuple[int, str], list[str]] = {}
    for r in results:
        plan = plans.get(r["group_id"])
        if r["status"] != "applied" or not plan:
            continue
        for w in plan.get("access_warnings", []):
            lost.setdefault((w["user_id"], w["name"]), []).extend(
                f"{plan['entity_type']} #{i} (merged into #{plan['primary_id']}, merge #{r['merge_id']})"
                for i in w["record_ids"])
    if not lost:
        return []
    lines = [f"{len(lost):,} manager(s) lost access to records merged into a record another manager is "
             "responsible for (no other notice is sent: pass this on):"]
    for (uid, name), records in sorted(lost.items(), key=lambda kv: kv[0][1]):
        lines.append(f"  {name} (#{uid}): {_listed(records, quote=False, most=10)}")
    return lines


def _note_delete_mode(settings: Path | None, mode: str, results: list[dict], plans: dict[str, dict]) -> None:
    """Say how the merged groups deleted where it is not what the settings (or the default) say, and
    always where records were deleted from their tables (delete_mode hard)."""
    merged = Counter(plans[r["group_id"]].get("delete_mode") for r in results
                     if r["status"] == "applied" and r["group_id"] in plans)
    named = f"{settings} sets" if settings is not None else "the settings (default) say"
    for planned, n in sorted(merged.items(), key=str):
        if planned == mode and planned != "hard":
            continue
        gone = " (their duplicates deleted from the tables; `crm-dedup undo` brings them back)" \
            if planned == "hard" else ""
        if planned == mode:
            typer.secho(f"Note: {n:,} group(s) were merged with delete_mode hard{gone}.", fg=typer.colors.YELLOW)
            continue
        how = f" (`crm-dedup run --settings {settings}`)" if settings is not None else ""
        typer.secho(f"Note: {named} merge.delete_mode {mode}, but {n:,} group(s) were planned with delete_mode "
                    f"{planned}: merged so{gone}. Each plan fixes its way of deleting when a run makes it; the "
                    f"groups a run plans with these settings{how} are merged with delete_mode {mode}.",
                    fg=typer.colors.YELLOW)


@app.command()
def history(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="How many merges to list, newest first (1 or more).")] = 50,
    entity: Annotated[Optional[str], typer.Option(help="contact, company or lead.")] = None,
) -> None:
    """List merges: who, when, what; undo one with `crm-dedup undo MERGE_ID`."""
    from merge_rules.history import merge_history

    if limit < 1:
        fail(f"--limit must be 1 or more (got {limit})")
    if entity is not None:
        entity = entity_type(entity)
    store = open_store(db)
    frame = merge_history(store, limit=limit + 1, entity_type=entity)  # (one more: whether there are more)
    more = f"; `--limit {limit * 2}` lists more" if len(frame) > limit else ""
    frame = frame.head(limit)
    if frame.empty:
        typer.echo("No merges yet.")
        return
    undone_by = _undone_by(store, [int(i) for i in frame["id"]])
    rows = [("merge", "when (UTC)", "entity", "primary", "merged", "who", "status", "batch", "undone (UTC)")]
    for r in frame.to_dict("records"):
        undone = "-"
        if r["status"] == "undone" or _present(r["undone_at"]):
            undone = f"{_minute(r['undone_at'])} by {undone_by.get(int(r['id'])) or 'system'}"
        rows.append((f"#{r['id']}", _minute(r["when"]), r["entity_type"], f"#{r['primary_id']}",
                     ", ".join(f"#{i}" for i in (r["merged_ids"] or [])), r["who"], r["status"], r["batch_id"] or "-",
                     undone))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)).rstrip())
    typer.echo(f"{len(frame):,} merge(s), newest first{more}. `crm-dedup undo MERGE_ID` undoes one, "
               "`crm-dedup undo --all BATCH` a batch.")


def _present(value) -> bool:
    """A value pandas read from the database: not None, NaT or NaN."""
    return value is not None and value == value


def _minute(value) -> str:
    """A stored (UTC) time to the minute; "-" where there is none."""
    import pandas as pd

    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M") if _present(value) else "-"


def _undone_by(store, merge_ids: list[int]) -> dict[int, str]:
    """merge id -> the name of who undid it, for the merges undone by a user."""
    import sqlalchemy as sa

    from crm import schema

    m, u = schema.dedup_merges, schema.users
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.c.id, u.c.name).join(u, u.c.id == m.c.undone_by)
                            .where(m.c.id.in_(merge_ids))).all()
    return {mid: name for mid, name in rows}


@app.command()
def undo(
    merge_id: Annotated[Optional[int], typer.Argument(help="The merge to undo (see `crm-dedup history`).")] = None,
    all_: Annotated[Optional[str], typer.Option("--all", help="Undo every merge of this batch id.")] = None,
    force: Annotated[bool, typer.Option(help="Undo even where records changed since; reports what it overwrote.")] = False,
    user: Annotated[Optional[str], typer.Option(help="Email of the user undoing (default: the first admin).")] = None,
    db: DbOption = None,
    settings: SettingsOption = None,
) -> None:
    """Undo a merge (or a whole batch): every touched row back exactly as it was. The group of each
    merge undone is pending again, planned again from the records as they are now (its merge
    settings from --settings), for a person to approve."""
    from merge_rules.errors import MergeError, UndoConflict
    from merge_rules.undo import replan_undone, undo_batch, undo_merge

    if (merge_id is None) == (all_ is None):
        fail("give either a MERGE_ID or --all BATCH_ID")
    merge_settings = load_settings(settings).merge
    store = open_store(db)
    user_row = _user(store, user)
    if merge_id is not None:
        try:
            r = undo_merge(store, merge_id, user_row["id"], force=force)
        except UndoConflict as exc:
            fail(_with_force_option(str(exc), f"crm-dedup undo {merge_id} --force"), code=1)
        except MergeError as exc:
            fail(str(exc), code=1)
        if r.status == "undone":
            replan_undone(store, [r.merge_id], merge_settings)
        typer.echo(_undo_line(r))
        return
    before = _batch_counts(store, all_)
    if not before:
        fail(f"there is no batch {all_!r} in {store.display_url} (`crm-dedup history` lists batch ids)")
    results = undo_batch(store, all_, user_row["id"], force=force)
    replan_undone(store, [r.merge_id for r in results if r.status == "undone"], merge_settings)
    for r in results:
        if r.status == "conflict":
            r.message = _with_force_option(r.message, f"crm-dedup undo {r.merge_id} --force")
    if not results:  # (said so: "(3 undone)" alone reads as three undone now)
        typer.echo(f"Batch {all_}: nothing to undo ({_counted(before)}); none of its merges is applied now")
        return
    counts = Counter(r.status for r in results)
    # one line per merge: those undone cleanly as group, records and merge id; the rest (and those
    # undone over later changes with --force: what it overwrote) with the undo's own words
    bad = [r for r in results if r.status not in ("undone", "already_undone")]
    merges = _merge_rows(store, [r.merge_id for r in results])
    for r in results:
        if r in bad or r.overwritten:
            typer.secho(f"  {_undo_line(r)}", fg=typer.colors.YELLOW)
        elif r.status == "undone":
            typer.echo(f"  {_undone_line(r.merge_id, merges.get(r.merge_id))}")
        else:
            typer.echo(f"  {_undo_line(r)}")
    typer.echo(f"Batch {all_}: {_counted(counts)}")
    if bad:
        raise typer.Exit(1)


@app.command()
def skip(
    id_a: Annotated[int, typer.Argument(help="One record id.")],
    id_b: Annotated[int, typer.Argument(help="The other record id.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    user: Annotated[Optional[str], typer.Option(help="Email of the user (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Mark two records as "not duplicates"; later runs never group them together. The mark holds for
    every user (`crm-dedup unskip` withdraws it). A manager (--user) may mark only pairs where one
    record is theirs; an admin any pair."""
    import sqlalchemy as sa

    from crm import schema
    from merge_rules.skips import dropped_words, skip_pair

    entity = entity_type(entity)
    if id_a == id_b:
        fail(f"cannot skip {entity} #{id_a} against itself: give two different record ids")
    store = open_store(db)
    found = _records(store, entity, (id_a, id_b))
    missing = [f"#{i}" for i in (id_a, id_b) if i not in found]
    if missing:
        fail(f"there is no {entity} {' or '.join(missing)} in {store.display_url}")
    user_row = _user(store, user)
    _check_pair_scope(store, user_row, entity, id_a, id_b, "mark records as not duplicates")
    dropped: list[dict] = []
    new = skip_pair(store, entity, id_a, id_b, user_row["id"], dropped)
    typer.echo(f"{entity} #{id_a} and #{id_b} are marked as not duplicates."
               if new else f"{entity} #{id_a} and #{id_b} were marked as not duplicates already; nothing changed.")
    if dropped:  # (the newer decision wins: merge_rules.together)
        typer.echo(f"This replaces a person's decision: {dropped_words(store, dropped)}; later runs no longer "
                   "keep the two in one group.")
    g = schema.dedup_groups
    with store.engine.connect() as conn:  # (the text of member_ids narrows the rows read; the ids decide)
        rows = conn.execute(sa.select(g.c.id, g.c.status, g.c.member_ids).where(
            g.c.entity_type == entity, g.c.status.in_(["pending", "approved"]),
            sa.cast(g.c.member_ids, sa.Text).like(f"%{min(id_a, id_b)}%"))).all()
    for gid, status, members in rows:
        if {id_a, id_b} <= set(members):
            typer.echo(f"Group {gid} ({status}) holds both: it will not be merged. Take one of them out of it on "
                       "the review page, or let the next run regroup them.")


@app.command()
def unskip(
    id_a: Annotated[int, typer.Argument(help="One record id.")],
    id_b: Annotated[int, typer.Argument(help="The other record id.")],
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    user: Annotated[Optional[str], typer.Option(help="Email of the user (default: the first admin).")] = None,
    db: DbOption = None,
) -> None:
    """Withdraw a "not duplicates" mark (`crm-dedup skip`); the next run may propose the two records as
    duplicates again. Skips are shared by every user: whoever made it, an admin may withdraw any, a
    manager (--user) only one between two records of their own (as on the review page)."""
    import sqlalchemy as sa

    from crm import schema
    from merge_rules.errors import PermissionDenied
    from merge_rules.skips import unskip_pair

    entity = entity_type(entity)
    if id_a == id_b:
        fail(f"{entity} #{id_a} cannot be skipped against itself, so there is nothing to unskip: give two "
             "different record ids")
    store = open_store(db)
    user_row = _user(store, user)
    a, b = min(id_a, id_b), max(id_a, id_b)
    try:
        removed = unskip_pair(store, entity, a, b, user_row["id"])
    except PermissionDenied as exc:
        fail(str(exc))
    if removed is None:
        fail(f"{entity} #{a} and #{b} are not marked as not duplicates in {store.display_url}; nothing removed")
    who = "no user"
    if removed["user_id"] is not None:
        u = schema.users
        with store.engine.connect() as conn:
            name = conn.execute(sa.select(u.c.name).where(u.c.id == removed["user_id"])).scalar()
        who = f"{name or 'user'} (#{removed['user_id']})"
    typer.echo(f"Removed the skip of {entity} #{a} and #{b} (marked by {who} on "
               f"{removed['created_at']:%Y-%m-%d %H:%M} UTC). They are no longer marked as not duplicates: "
               "the next run may propose them as duplicates again.")


@app.command()
def include(
    group_id: Annotated[str, typer.Argument(help="The group (`crm-dedup groups` lists them).")],
    record_id: Annotated[int, typer.Argument(help="The record to add to it.")],
    undo: Annotated[bool, typer.Option("--undo", help="Withdraw the \"same\" mark an earlier include made "
                                                      "between the record and the group's members.")] = False,
    user: Annotated[Optional[str], typer.Option(help="Email of the user (default: the first admin).")] = None,
    settings: SettingsOption = None,
    db: DbOption = None,
) -> None:
    """Add a record to a pending or approved group: one the run left out of it (`groups` lists them as
    "left out") or any you know is a duplicate. The group is planned again with it and is pending (an
    approval was for the group without it). The record is marked the same as a member, so later runs
    keep it in the group whatever the scores or the chaining guard say; `--undo` withdraws that mark
    (the next run then decides from the records alone). A manager (--user) may add only their own
    records, and withdraw a mark only between two records of their own (as a "not duplicates" mark)."""
    from merge_rules.errors import PermissionDenied
    from merge_rules.grouping import CannotInclude, include_record, withdraw_include

    merge_settings = None if undo else load_settings(settings).merge
    store = open_store(db)
    user_row = _user(store, user)
    try:
        if undo:
            typer.echo(withdraw_include(store, group_id, record_id, user_row["id"]))
        else:
            typer.echo(include_record(store, group_id, record_id, user_row["id"], merge_settings))
    except (CannotInclude, PermissionDenied) as exc:
        fail(str(exc), code=1)


@app.command()
def check(
    input_: Annotated[Optional[Path], typer.Option("--input", help="CSV about to be imported (as `crm-dedup import` reads it).")] = None,
    entity: Annotated[str, typer.Option(help="contact, company or lead.")] = "contact",
    preset: Annotated[Optional[str], typer.Option(help="Column preset of the CSV, e.g. bitrix24.")] = None,
    map_: Annotated[list[str], typer.Option("--map", help="FIELD=COLUMN for the CSV, as in import.")] = [],
    encoding: Annotated[Optional[str], typer.Option(help="Of the CSV: utf-8 or cp1251; detected when not given.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the likely duplicates (CSV).")] = Path("data/check.csv"),
    settings: SettingsOption = None,
    db: DbOption = None,
    portal_tz: PortalTzOption = None,
) -> None:
    """Report new records that duplicate existing ones: the rows of --input, or (without it) the
    records the last dedup run of --entity has not seen (added since, whatever their created_at).
    The rows and cells of --input that cannot be read are listed, as import lists them."""
    from crm.csv_io import CsvError
    from pipelines.check import summary_line

    # bad input is refused before Prefect's server and the flow start
    entity = entity_type(entity)
    load_settings(settings)
    mapping = _parse_map(map_) or None
    if portal_tz is not None and input_ is None:
        fail("--portal-tz says how to read the times of an --input file; without --input no file is read")
    if input_ is not None:
        _check_csv(input_, entity, preset, mapping, encoding, portal_tz)
    from pipelines.prefect_api import early_server

    with early_server() as ready:
        from pipelines.flows import check_flow

        open_store(db)
        ready()
        try:
            result = check_flow(db=db, entity=entity, csv_path=str(input_) if input_ else None, preset=preset,
                                mapping=mapping, encoding=encoding, settings_path=str(settings) if settings else None,
                                out=str(out.resolve()),  # (said in full: data/ of the current folder by default)
                                portal_timezone=portal_tz)
        except (CsvError, ValueError) as exc:  # the file's own problems (encoding, header) show when it is read
            fail(str(exc))
    # the rows that could not be read (not checked) and the cells left out of rows checked, by line (FileProblems)
    problems = result["problems"]
    if result["header"]:  # (columns of the file not read: their values were not compared)
        typer.secho(f"  {result['header']}", fg=typer.colors.YELLOW, err=True)
    for problem in problems[:20]:
        typer.secho(f"  {problem}", fg=typer.colors.YELLOW, err=True)
    if len(problems) > 20:
        typer.secho(f"  ... and {len(problems) - 20:,} more", fg=typer.colors.YELLOW, err=True)
    unread = (f"; {result['rejected']:,} row(s) of the file could not be read and were not checked (listed above)"
              if result["rejected"] else "")
    unread += (f"; {result['cells']:,} cell(s) could not be read and were left out of the rows checked (listed "
               "above)" if result["cells"] else "")
    unread += (f"; {result['ignored']:,} column(s) of the file were not read (listed above)"
               if result["ignored"] else "")
    if not result["checked"] and result["rejected"]:
        fail(f"none of the rows of {input_} could be read as {entity} records, so nothing was checked (the "
             "problems are listed above)", code=1)
    if not result["checked"] and input_ is None:
        typer.echo(f"No {entity} record was added since the last run: nothing to check.")
        return
    # a file's rows whose id the CRM holds are those records, not new ones and no duplicate pairs: counted apart
    pairs, already = _check_found(result["report"])
    there = (f"; {already:,} row(s) of the file are already in the database by their id: import rejects them, "
             "import --update updates the records from them") if already else ""
    new = result["checked"] - already
    if pairs.empty and not already:
        typer.echo(f"No new record looks like an existing one ({new:,} checked{unread}; an empty report: "
                   f"{result['report']})")
    elif pairs.empty:
        typer.echo(f"No new record looks like an existing one ({new:,} checked{unread}{there}; details in "
                   f"{result['report']})")
    else:
        like = ("existing ones" if pairs["existing"].all() else "other rows of the file"
                if not pairs["existing"].any() else "existing ones or other rows of the file")
        typer.echo(f"{_new_records_alike(pairs):,} of {new:,} new record(s) look like {like} ({len(pairs):,} "
                   f"likely duplicate pairs{unread}{there}); details in {result['report']}")
    for row in result["first"]:  # a file's rows by their lines, the CRM's records by their ids
        typer.echo("  " + summary_line(row, entity, from_file=input_ is not None))
    if result["likely_duplicates"] > len(result["first"]):
        typer.echo(f"  ... and {result['likely_duplicates'] - len(result['first']):,} more in {result['report']}")
    if result["times"]:  # how times without an offset were read, as import says it
        typer.echo(result["times"])


def _check_found(report: str):
    """(the pairs of the check's report, the number of its rows already in the database): its rows as
    pipelines.check writes them, the file's rows whose id is a record's apart (tier ALREADY)."""
    import pandas as pd

    from pipelines.check import ALREADY

    rows = pd.read_csv(report, usecols=["new_record", "duplicate_of", "existing", "tier"],
                       dtype={"new_record": str, "duplicate_of": str})
    already = rows["tier"] == ALREADY
    return rows[~already], int(already.sum())


def _new_records_alike(pairs) -> int:
    """How many new records of a check's pairs look like another record: both rows of a pair within the file
    (the report lists such a pair once, under its first row)."""
    within = pairs.loc[pairs["existing"].astype(str) != "True", "duplicate_of"]
    return len(set(pairs["new_record"]) | set(within))


@app.command()
def serve(db: DbOption = None, settings: SettingsOption = None,
          incremental: Annotated[bool, typer.Option("--incremental", help="Nightly runs are incremental (see run --incremental).")] = False) -> None:
    """Run the schedules on this machine: nightly dedup of every entity type, hourly apply of approved groups.
    To use a Prefect server and workers instead, see prefect.yaml and the README."""
    load_settings(settings, runs=True)
    open_store(db)
    from pipelines.prefect_api import early_server

    # one Prefect server for the runner and every run it starts (they inherit its URL), in a session of
    # its own: a Ctrl-C stops the runner and the runs first, and the server after them, at exit
    with early_server() as ready:
        from prefect.settings import get_current_settings

        from pipelines.deployments import serve_forever

        ready()
        api = get_current_settings().api.url
        prefect = Path(sys.executable).with_name("prefect")
        typer.echo(f"Serving nightly-dedup (02:00{', incremental' if incremental else ''}) and hourly-apply (:05), "
                   "Europe/Moscow; Ctrl-C stops.")
        typer.echo(f"Prefect API: {api}")
        typer.echo(f"Run the nightly dedup now: PREFECT_API_URL={api} {prefect} deployment run 'dedup/nightly-dedup'")
        typer.echo(f"Apply what was approved now: PREFECT_API_URL={api} {prefect} deployment run 'apply/hourly-apply'")
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
    merge_settings = load_settings(settings).merge if settings else None
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


@users_app.command("add")
def add_user(
    email: Annotated[str, typer.Argument(help="The user's email (their sign-in on the review page).")],
    name: Annotated[str, typer.Option(help="The user's name, as merges and warnings show it.")],
    role: Annotated[str, typer.Option(help="admin (sees and merges everything) or manager (only their own "
                                           "records).")] = "manager",
    id_: Annotated[Optional[int], typer.Option("--id", help="The user's id in the CRM, so that the records' "
                                                            "responsible ids name them (add users before importing "
                                                            "records).")] = None,
    db: DbOption = None,
) -> None:
    """Add a user of the CRM: an admin to approve and merge (a database made with `init` has none), or a
    manager responsible for records. `crm-dedup users set-password EMAIL` then lets them sign in."""
    import sqlalchemy as sa

    from crm import schema

    if role not in ("admin", "manager"):
        fail(f"--role must be admin or manager (got {role!r})")
    if not name.strip() or "@" not in email:
        fail("give the user's email (with @) and a --name")
    store = open_store(db)
    u = schema.users
    with store.engine.begin() as conn:
        taken = conn.execute(sa.select(u.c.id, u.c.email).where(
            (u.c.email == email) | (u.c.id == id_) if id_ is not None else u.c.email == email)).first()
        if taken is not None:
            fail(f"user #{taken.id} ({taken.email}) is already in {store.display_url}; "
                 "`crm-dedup users list` lists them")
        values = {"name": name.strip(), "email": email.strip(), "role": role}
        if id_ is not None:
            values["id"] = id_
        new_id = conn.execute(u.insert().values(**values)).inserted_primary_key[0]
        if id_ is not None:  # (PostgreSQL's sequence goes past an id given by hand)
            store.fix_sequences(conn)
    typer.echo(f"Added {role} #{new_id} {name} <{email}>; `crm-dedup users set-password {email}` lets them sign in "
               "to the review page.")


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
    csv_dir: Annotated[Optional[Path], typer.Option(
        "--csv", metavar="DIR", help="Also write the run's pairs (with names), groups (as find writes them, for "
        "evaluate), group table and left-out records as CSV files in DIR/<entity>/ for a spreadsheet.")] = None,
    sep: Annotated[str, typer.Option(help="The CSV files' delimiter (--csv): ';' for a spreadsheet that "
                                          "splits on semicolons.")] = ",",
) -> None:
    """Write a self-contained HTML match report of a run, for people without Jupyter. With --db, the
    database must be the one that ran it (its truth, where known, is measured against)."""
    from scoring.report import ReportError, Run, write_html_report

    is_folder = bool(run_) and Path(run_).is_dir()
    if db is not None or not is_folder:
        store = open_store(db)  # (a bad --db is one error line here)
        db = store.url
        store.dispose()
    try:
        if is_folder:
            run = Run.open(run_, db_url=db)
        elif run_:
            run = Run.resolve(run_, db)
        else:
            run = Run.latest(db)
        path = write_html_report(run, out)
        written = run.to_csv(csv_dir, sep=sep) if csv_dir is not None else {}
    except ReportError as exc:
        fail(str(exc))
    typer.echo(f"Report written to {path}")
    if written:
        typer.echo(f"{len(written)} CSV files written to {csv_dir} (UTF-8 with a BOM, delimiter {sep!r}): "
                   + ", ".join(sorted(written)))
    if not run.has_truth:
        typer.echo(f"No figures against the truth: {run.no_truth_reason()}")


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
                fail("the database has no admin user: add one with `crm-dedup users add EMAIL --name NAME "
                     "--role admin`, or pass --user EMAIL")
    return dict(row._mapping)


def _group_members(store, ids: list[str]) -> dict[str, tuple[str, list[int]]]:
    """group id -> (entity type, member ids), for the ids that exist."""
    import sqlalchemy as sa

    from crm import schema

    g = schema.dedup_groups
    out: dict[str, tuple[str, list[int]]] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(ids), 2000):
            q = sa.select(g.c.id, g.c.entity_type, g.c.member_ids).where(g.c.id.in_(ids[at:at + 2000]))
            out.update({gid: (et, [int(m) for m in members]) for gid, et, members in conn.execute(q)})
    return out


def _records(store, entity: str, ids, live_only: bool = False) -> dict[int, dict]:
    """id -> {id, responsible_id} of these records (deleted ones too unless ``live_only``)."""
    import sqlalchemy as sa

    from crm import schema

    t = schema.ENTITY_TABLES[entity]
    ids = sorted({int(i) for i in ids})
    out: dict[int, dict] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(ids), 2000):
            q = sa.select(t.c.id, t.c.responsible_id).where(t.c.id.in_(ids[at:at + 2000]))
            if live_only:
                q = q.where(t.c.deleted_at.is_(None))
            out.update({r["id"]: dict(r) for r in conn.execute(q).mappings()})
    return out


def _others_records(store, user_row: dict, groups: dict[str, tuple[str, list[int]]]) -> dict[str, list[dict]]:
    """group id -> the group's live records ``user_row`` may not merge, for the groups that have any
    (none for an admin): the review page's rule for approving, with merge_rules.permissions' check."""
    from merge_rules.permissions import denied_records

    if user_row["role"] == "admin" or not groups:
        return {}
    out = {}
    for entity in sorted({et for et, _m in groups.values()}):
        these = {gid: members for gid, (et, members) in groups.items() if et == entity}
        live = _records(store, entity, [m for members in these.values() for m in members], live_only=True)
        for gid, members in these.items():
            if others := denied_records(user_row, [live[m] for m in members if m in live]):
                out[gid] = others
    return out


def _owned(store, entity: str, records: list[dict]) -> str:
    """"contact #11 (Пётр Сидоров), #12 (nobody)": records with the names of their managers."""
    import sqlalchemy as sa

    from crm import schema

    u = schema.users
    with store.engine.connect() as conn:
        names = dict(conn.execute(sa.select(u.c.id, u.c.name)).all())

    def owner(r):
        if r.get("missing"):
            return "no such record"
        rid = r.get("responsible_id")
        return "nobody" if rid is None else names.get(rid, f"user #{rid}")

    return f"{entity} " + ", ".join(f"#{r['id']} ({owner(r)})" for r in records)


def _check_pair_scope(store, user_row: dict, entity: str, id_a: int, id_b: int, doing: str) -> None:
    """Refuse unless ``user_row`` may mark (or unmark) the pair as not duplicates: an admin any pair,
    a manager only one where a record is theirs (the review page's rule for skips)."""
    from merge_rules.permissions import may_mark_pair, user_label

    found = _records(store, entity, (id_a, id_b))
    records = [found.get(i, {"id": i, "responsible_id": None, "missing": True}) for i in (id_a, id_b)]
    if not may_mark_pair(user_row, records):
        fail(f"{user_label(user_row)} is a manager and may {doing} only where one of the two records is "
             f"theirs; neither is: {_owned(store, entity, records)}. Ask an admin, or the records' manager.")


def _check_csv(path: Path, entity: str, preset: str | None, mapping: dict[str, list[str]] | None,
               encoding: str | None, portal_tz: str | None = None) -> None:
    """A problem of the whole file (missing, encoding, header, preset, --portal-tz) as one error line here, before
    the check flow reads it (there it would be a failed flow run with Prefect's traceback)."""
    from crm.csv_io import CsvError, check_csv_file

    try:
        check_csv_file(path, entity, preset=preset, mapping=mapping, encoding=encoding, portal_timezone=portal_tz)
    except CsvError as exc:
        fail(str(exc))


def _group_statuses(store, ids: list[str]) -> dict[str, str]:
    """group id -> status, for the ids that exist."""
    import sqlalchemy as sa

    from crm import schema

    g = schema.dedup_groups
    out: dict[str, str] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(ids), 2000):  # PostgreSQL takes at most 65,535 parameters a statement
            out.update(conn.execute(sa.select(g.c.id, g.c.status).where(g.c.id.in_(ids[at:at + 2000]))).all())
    return out


def _batch_counts(store, batch_id: str) -> dict[str, int]:
    """status -> merges of the batch (dedup_merges.batch_id); empty when there is no such batch."""
    import sqlalchemy as sa

    from crm import schema

    m = schema.dedup_merges
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.c.status, sa.func.count()).where(m.c.batch_id == batch_id)
                            .group_by(m.c.status)).all()
    return {status: n for status, n in rows}


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))


def _listed(items: list[str], quote: bool = True, most: int = 20) -> str:
    shown = [repr(i) if quote else i for i in items[:most]]
    return ", ".join(shown) + (f" and {len(items) - most:,} more" if len(items) > most else "")


def _with_force_option(message: str, command: str) -> str:
    """An undo refusal naming the command line's option (the merge engine's words serve the review
    page too, where forcing is a button)."""
    return message.replace("Undo with force to overwrite them.", f"Run `{command}` to overwrite them.")


def _undo_line(r) -> str:
    """One readable line of an UndoResult: merge id, status, message."""
    return f"merge #{r.merge_id}: {r.status}: {r.message}"


def _merge_rows(store, merge_ids: list[int]) -> dict[int, dict]:
    """merge id -> its group, entity type and records (dedup_merges), read in chunks (a batch may
    hold thousands)."""
    import sqlalchemy as sa

    from crm import schema

    m = schema.dedup_merges
    out: dict[int, dict] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(merge_ids), 500):
            q = sa.select(m.c.id, m.c.group_id, m.c.entity_type, m.c.primary_id, m.c.merged_ids).where(
                m.c.id.in_(merge_ids[at:at + 500]))
            out.update({row.id: dict(row._mapping) for row in conn.execute(q)})
    return out


def _undone_line(merge_id: int, merge: dict | None) -> str:
    """A merge undone cleanly: "merge #7: undone: group g-1, contacts #10 <- #20, #21"."""
    if merge is None:
        return f"merge #{merge_id}: undone"
    from merge_rules.plan import PLURAL

    group = f"group {merge['group_id']}" if merge["group_id"] else "no group"
    merged = ", ".join(f"#{i}" for i in merge["merged_ids"] or [])
    return (f"merge #{merge_id}: undone: {group}, {PLURAL[merge['entity_type']]} #{merge['primary_id']} <- "
            f"{merged}")


def _once(values: list[str], option: str, why: str) -> str | None:
    """The one value of an option a command takes once (None when not given). Typer would keep the last of a
    repeated one without a word; a repeated one is refused, naming the values given."""
    if len(values) > 1:
        fail(f"{option} was given {len(values)} times ({', '.join(map(repr, values))}): {why}, so give it once")
    return values[0] if values else None


def _parse_map(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        if "=" not in item:
            fail(f"--map {item!r} must look like ROLE=COLUMN, for example phone=Mobile")
        key, _, value = item.partition("=")
        out.setdefault(key.strip(), [])
        out[key.strip()].append(value.strip())
    return out


def no_collection_at_exit() -> None:
    """As the process ends, Python's finalisation runs the garbage collector over everything still
    alive, which after a run over a million records took ~0.8 s and frees nothing the operating system
    would not take back at once. Registered first, so run last of the exit handlers (after Prefect's
    workers have sent what they hold and the temporary server has stopped): the objects left are
    frozen, which the final collections skip."""
    import atexit
    import gc

    atexit.register(gc.freeze)


def main() -> None:  # pragma: no cover - console entry point
    no_collection_at_exit()
    app(prog_name="crm-dedup")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
