"""Check new records against the CRM before they multiply: a CSV about to be imported, or the
records the last run has not seen. Only pairs that touch a new record are compared."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from crm import proposals
from crm.readers import load_role_table
from crm.store import Store
from matchers.prepare import Prepared, prepare
from matchers.table import RoleTable
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def _relabel(table: RoleTable, prefix: str) -> RoleTable:
    records = table.records.set_axis(prefix + table.records.index.astype(str))
    values = table.values.assign(id=prefix + table.values["id"].astype(str))
    return RoleTable(table.entity_type, records, values)


def _relabelled(p: Prepared, prefix: str) -> Prepared:
    return Prepared(p.entity_type, p.records.assign(id=prefix + p.records["id"].astype(str)), p.phones, p.emails,
                    p.sites, set(p.roles), dict(p.made_with))


class FileProblems(list):
    """What reading a CSV found, as lines to show in the order of the file's lines: the rows that could not be
    read (not checked) and the cells left out of rows checked (a date 05/06/1985). ``rejected``, ``cells``: how
    many of each (beyond crm.csv_io.MAX_PROBLEMS_KEPT only counted); ``times``: how the created_at/modified_at
    written without a UTC offset were read (the line import says it in), or None."""

    rejected: int = 0
    cells: int = 0
    times: str | None = None
    ignored: tuple[str, ...] | list[str] = ()  # the header's columns not read (import's ignored_columns)
    header: str | None = None  # those columns as a line to show, or None

    @classmethod
    def of(cls, report) -> "FileProblems":
        """The problems of a crm.csv_io.ImportReport, a cell's told as check does with it (it stores nothing).
        The columns not read are told apart (``header``, and logged): a phone under a name import does not
        know is not compared, and a check finding nothing must not read as "no duplicates" without saying so."""
        out = cls(str(p) if p.cell_reason is None else
                  str(replace(p, reason=f"{p.cell_reason}; the row was checked with this cell left out"))
                  for p in report.all_problems())
        out.ignored = list(report.ignored_columns)
        if out.ignored:
            them = "them" if len(out.ignored) > 1 else "it"
            out.header = (f"{Path(report.file).name} header: column{'s' if len(out.ignored) > 1 else ''} not read, so "
                          f"not checked: {'; '.join(out.ignored)} (import ignores {them} too; to read one, name its "
                          "field with --map FIELD=COLUMN or give the file's --preset)")
            log.warning("%s", out.header)
        out.rejected, out.cells, out.times = report.rejected, sum(report.cell_fields.values()), report.times_note()
        return out


def check_new_records(db: str | None, entity: str, *, csv: Path | None = None, preset: str | None = None,
                      mapping: dict[str, list[str]] | None = None, encoding: str | None = None,
                      settings_path: str | None = None, reuse: bool = True,
                      portal_timezone: str | None = None) -> tuple[pd.DataFrame, FileProblems]:
    """Likely duplicates of new records. Returns (rows: new_record, line, new_name, duplicate_type,
    duplicate_of, duplicate_line, duplicate_name, existing, probability, tier, explanation; problems
    found while reading the CSV, a FileProblems: the rows not read and the cells left out, the columns not
    read (``ignored``, ``header``), and how times without an offset were read: in ``portal_timezone``, else
    the settings' pipeline.portal_timezone). A new record of a CSV is numbered as its import would number it
    (by its id column, else in the order of its rows); ``line`` and ``duplicate_line`` are the records' lines
    in the file (whole numbers; none for records of the CRM); a row whose id (the file's) is a record's of the
    CRM is listed once, tier "already in the database", and not compared (its explanation warns where that
    record has another name). ``duplicate_type`` is ``entity``, or for a new lead also an existing contact or
    company it duplicates (as the run's leads-vs-clients step finds
    them; with the settings' pipeline.match_leads_to_clients).

    ``reuse``: the existing records as the last run normalised them (only those new or changed since
    are normalised here), when it normalised them as this check would: at a million contacts
    that is most of the check's time. The result is the same either way (where the records hold other
    roles than then, all are normalised here)."""
    from pipelines.steps import _last_entity_run, reuse_normalised
    from scoring.find import find_duplicates
    from scoring.model import FSModel

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    store.check_schema()
    existing = load_role_table(store, entity)
    last = _last_run_of(store, entity)
    prior = _last_entity_run(store, entity, None, settings) if reuse else None
    reused = reuse_normalised(existing, prior, settings) if prior is not None else None
    normalised = reused[0] if reused is not None else None
    del reused  # (normalised is replaced by copies below: the reused records must not stay beside them)
    problems = FileProblems()
    lines: dict[str, int] = {}  # a CSV's new record -> its line in the file
    already: list[dict] = []  # a CSV's rows of records the CRM holds (by the file's id)
    if csv is not None:
        from crm.csv_io import import_csv

        with tempfile.TemporaryDirectory() as tmp:
            scratch = Store(f"sqlite:///{tmp}/check.db")
            scratch.migrate()
            report = import_csv(scratch, Path(csv), entity, preset=preset, mapping=mapping, encoding=encoding,
                                region=settings.match.region, keep_lines=True,
                                portal_timezone=portal_timezone or settings.pipeline.portal_timezone)
            problems = FileProblems.of(report)
            lines = {f"new:{i}": line for i, line in report.record_lines.items()}
            new = _typed_as(load_role_table(scratch, entity), existing)
            scratch.dispose()
        # a row whose own id is a record's of the CRM is that record (imported before), not its duplicate:
        # listed as such and not compared (import rejects it, or with --update updates the record)
        there = new.records.index[new.records.index.isin(_file_ids(Path(csv), entity, preset, mapping, encoding))
                                  & new.records.index.isin(existing.records.index)]
        already = [{"new_record": str(i), "line": lines.get(f"new:{i}"), "new_name": a, "duplicate_type": entity,
                    "duplicate_of": str(i), "duplicate_line": None, "duplicate_name": b, "existing": True,
                    "probability": None, "tier": ALREADY,
                    "explanation": f"already in the database (#{i}): import rejects this row, import --update "
                                   "updates the record from it" + (
                                       f"; but #{i} is {b} in the database, not {a}: the file's ids may be another "
                                       f"system's, and import --update would overwrite #{i} with this row"
                                       if _unlike(a, b) else "")}
                   for i, a, b in zip(there, new.names(there), existing.names(there))]
        if len(there):
            keep = new.records.index[~new.records.index.isin(there)]  # (in the file's order)
            new = RoleTable(entity, new.records.loc[keep], new.values[new.values["id"].isin(keep)])
        new = _relabel(new, "new:")
        existing = _relabel(existing, "")
        if normalised is not None:
            normalised = [_relabelled(normalised, ""), _relabelled(
                prepare(RoleTable(entity, new.records, new.values), region=settings.match.region,
                        provider_rules=settings.match.provider_rules), "")]
    else:
        if last is None:
            raise ValueError(f"There is no completed dedup run of the {entity} records yet (with its run folder) to "
                             "compare new records with; run `crm-dedup run` first, or check a CSV with --input.")
        unseen = ~existing.records.index.isin(pd.read_parquet(Path(last["folder"]) / entity / "table_records.parquet",
                                                              columns=[]).index)
        fresh_ids = existing.records.index[unseen]
        new = _relabel(RoleTable(entity, existing.records.loc[fresh_ids],
                                 existing.values[existing.values["id"].isin(fresh_ids)]), "new:")
        old_ids = existing.records.index[~unseen]
        existing = _relabel(RoleTable(entity, existing.records.loc[old_ids],
                                      existing.values[existing.values["id"].isin(old_ids)]), "")
        if normalised is not None:
            normalised = [_relabelled(normalised.take(old_ids), ""), _relabelled(normalised.take(fresh_ids), "new:")]
    columns = ["new_record", "line", "new_name", "duplicate_type", "duplicate_of", "duplicate_line", "duplicate_name",
               "existing", "probability", "tier", "explanation"]
    if len(new) == 0:
        none = _lines_whole(pd.DataFrame(already, columns=columns))
        none.attrs["checked"] = len(already)
        return none, problems
    combined = RoleTable(entity, _stacked([existing.records, new.records]),
                         _stacked([existing.values, new.values], ignore_index=True))
    prepared = None
    if normalised is not None and list(normalised[0].records.columns) == list(normalised[1].records.columns):
        prepared = Prepared.concat(normalised)  # (other columns: the file's records have other roles)
    model = None  # (a model the settings name is used as it is: find_duplicates loads it)
    if not settings.match.model_path and last and (Path(last["folder"]) / entity / "model.json").exists():
        model = FSModel.load(Path(last["folder"]) / entity / "model.json")
    try:
        result = find_duplicates(combined, settings.match, changed_ids=list(new.records.index), model=model,
                                 prepared=prepared)
    except ValueError as exc:  # the records hold other roles than the last run's model knows: train anew
        if model is None:
            raise
        log.warning("the model of run %s does not fit these records (%s): a new one is trained on the pairs "
                    "checked", last["id"], exc)
        result = find_duplicates(combined, settings.match, changed_ids=list(new.records.index), prepared=prepared)
    pairs = result.pairs
    found = []
    for r in pairs.itertuples(index=False):
        a, b = str(r.id_a), str(r.id_b)
        if a.startswith("new:") or b.startswith("new:"):
            found.append((*((a, b) if a.startswith("new:") else (b, a)), r))
    # the names a person finds the records by, in the file and in the CRM
    wanted = {x for new_id, other, _ in found for x in (new_id, other)}
    named: dict[str, str] = {}
    for table in (new, existing):
        ids = [i for i in wanted if i in table.records.index]
        named.update(zip(ids, table.names(ids)))
    rows = [{"new_record": new_id[4:], "line": lines.get(new_id), "new_name": named.get(new_id, ""),
             "duplicate_type": entity, "duplicate_of": other.removeprefix("new:"), "duplicate_line": lines.get(other),
             "duplicate_name": named.get(other, ""), "existing": not other.startswith("new:"),
             "probability": r.probability, "tier": r.tier, "explanation": r.explanation}
            for new_id, other, r in found]
    if entity == "lead" and settings.pipeline.match_leads_to_clients:  # (as the run matches them)
        # the leads as the check above normalised them (the CRM's and the new): only the clients are normalised
        # (or reused) here
        leads = result.prepared
        new_names = dict(zip(new.records.index, new.names(new.records.index)))
        del result, combined, prepared, existing
        rows += [{"new_record": lead_id[4:], "line": lines.get(lead_id), "new_name": new_names.get(lead_id, ""),
                  "duplicate_line": None, "existing": True, **match}
                 for lead_id, match in _leads_against_clients(store, leads, settings, reuse)]
    rows += already  # (last: their probability is none)
    out = pd.DataFrame(rows, columns=columns).sort_values(["probability", "new_record", "duplicate_type", "duplicate_of"],
                                                         ascending=[False, True, True, True], ignore_index=True)
    out = _lines_whole(out)
    out.attrs["checked"] = len(new) + len(already)  # (none found is not none checked)
    return out, problems


ALREADY = "already in the database"  # the tier of a file's row whose id is a record's of the CRM


def _lines_whole(rows: pd.DataFrame) -> pd.DataFrame:
    """The lines as whole numbers, none where a record has none (the CRM's): a column holding both was float,
    and the report said a row's line was "3.0"."""
    return rows.astype({"line": "Int64", "duplicate_line": "Int64"})


def _unlike(a: str, b: str) -> bool:
    """Whether two names of one id share no word (of four letters or more: not a legal form's "ООО", "LLC"):
    the file's row is another record than the CRM's of its id. Where either has no such word, nothing is said."""
    def words(name: str) -> set[str]:
        return {w for w in re.findall(r"\w+", name.casefold().replace("ё", "е")) if len(w) > 3}

    return bool(words(a)) and bool(words(b)) and not words(a) & words(b)


def _file_ids(csv: Path, entity: str, preset: str | None, mapping, encoding: str | None) -> set[int]:
    """The ids the file's id column gives (not those an import numbers rows without one with)."""
    from crm.csv_io import _opened

    ids: set[int] = set()
    with _opened(csv, entity, preset, mapping, encoding, None) as (_, _, _, records, _, columns, _):
        at = columns.get("id", [])
        for _, _, row in records:
            if not isinstance(row, list):
                continue
            cell = next((row[i].strip() for i in at if i < len(row) and row[i].strip()), "")
            if cell.isascii() and cell.isdigit():
                ids.add(int(cell))
    return ids


def _typed_as(table: RoleTable, like: RoleTable) -> RoleTable:
    """``table`` with each column it leaves all empty typed as ``like`` types it (the file's rows say nothing
    of a field, e.g. responsible ids that are no users): concatenated, such a column would otherwise make
    pandas warn (its type from the other frame alone is deprecated) and may change type."""
    cast = {c: like.records[c].dtype for c in table.records.columns
            if c in like.records.columns and table.records[c].dtype != like.records[c].dtype
            and like.records[c].dtype.kind in "fmMO" and len(table.records) and table.records[c].isna().all()}
    return RoleTable(table.entity_type, table.records.astype(cast), table.values) if cast else table


def _stacked(frames: list[pd.DataFrame], **kwargs) -> pd.DataFrame:
    """pd.concat of ``frames`` but the empty ones (an empty CRM): pandas deprecates typing columns without them."""
    return pd.concat([f for f in frames if len(f)] or frames[:1], **kwargs)


def _leads_against_clients(store: Store, leads: Prepared, settings: Settings, reuse: bool):
    """(lead id, match) for each existing contact or company a new lead (id ``new:...``) duplicates: the
    run's leads-vs-clients comparison (pipelines.steps.leads_to_clients_step) of every lead, the new ones
    among them. ``leads``: every lead normalised. The clients are those the last run of their type
    normalised, where it normalised them as this check would (only those changed since normalised here).

    Every pair is compared, not only those of the new leads (as the check of one type compares): the
    model is trained here (the run keeps none of this comparison), and trained on a new lead's few pairs
    it finds almost no matches among all the pairs of records, so that not even a copy would be reported."""
    from pipelines.steps import (_LEAD_CLIENT_FIELDS, _compared_by, _last_entity_run, reported_against_client,
                                 reuse_normalised)
    from scoring.find import find_duplicates

    for client in ("contact", "company"):
        table = load_role_table(store, client)
        if not len(table):
            continue
        last = _last_entity_run(store, client, None, settings) if reuse else None
        reused = reuse_normalised(table, last, settings) if last is not None else None
        clients = reused[0] if reused is not None else prepare(
            table, region=settings.match.region, provider_rules=settings.match.provider_rules,
            workers=settings.match.processes)
        del reused
        # only their names are read from here on (those of the clients found)
        table = RoleTable(client, table.records[[c for c in ("last_name", "first_name", "middle_name", "full_name",
                                                              "company") if c in table.records.columns]],
                          table.values.iloc[:0])
        roles, columns = _LEAD_CLIENT_FIELDS[client]
        prefix = client[0].upper()
        combined = Prepared.concat([_compared_by(leads, "L", roles, columns),
                                    _compared_by(clients, prefix, roles, columns)])
        del clients
        ids = pd.Index(combined.ids, name="id")
        empty = RoleTable("lead", pd.DataFrame(index=ids), pd.DataFrame(columns=["id", "role", "raw"]))
        pairs = find_duplicates(empty, settings.match, prepared=combined).pairs
        del combined
        pairs = pairs[reported_against_client(pairs) & (pairs["id_a"].str.startswith("Lnew:")
                                                          | pairs["id_b"].str.startswith("Lnew:"))]
        found = [(a, b, r) if a.startswith("L") else (b, a, r)
                 for a, b, r in zip(pairs["id_a"].astype(str), pairs["id_b"].astype(str), pairs.itertuples())]
        index = table.records.index
        hit = index[index.astype(str).isin({other[1:] for _, other, _ in found})]
        named = dict(zip(hit.astype(str), table.names(hit)))
        for lead, other, r in found:
            yield lead[1:], {"duplicate_type": client, "duplicate_of": other[1:],
                             "duplicate_name": named.get(other[1:], ""), "probability": r.probability, "tier": r.tier,
                             "explanation": r.explanation}


def _last_run_of(store: Store, entity: str) -> dict | None:
    """The newest completed run that read this entity's records (its folder keeps the copy of the
    table it read, and the model it trained): the records not in that copy are new to it, whatever
    their created_at says (an import keeps the dates of its file; a portal's clock may be behind)."""
    return next((run for run in proposals.completed_runs(store)
                 if (Path(run["folder"] or "") / entity / "table_records.parquet").exists()), None)


def summary_line(row: dict, entity: str, from_file: bool) -> str:
    """One pair of the check as `crm-dedup check` prints it: the new record (a file's by its line, the
    CRM's by its id) and the record it looks like, named by its type (a new lead's may be a contact or
    a company)."""
    new = f"line {row['line']:.0f}" if from_file else f"new {entity} #{row['new_record']}"
    if row.get("tier") == ALREADY:  # (the CRM's record named where the row names another)
        unlike = _unlike(*(row[k] if isinstance(row[k], str) else "" for k in ("new_name", "duplicate_name")))
        return (f"{new} {row['new_name'] or '(no name)'}: {ALREADY} ({entity} #{row['duplicate_of']})"
                + (f"; but #{row['duplicate_of']} is {row['duplicate_name']} in the database: check the file's ids "
                   "before import --update" if unlike else ""))
    other = (f"{row.get('duplicate_type') or entity} #{row['duplicate_of']}" if row["existing"] else
             f"line {row['duplicate_line']:.0f}" if from_file else f"new {entity} #{row['duplicate_of']}")
    return (f"{new} {row['new_name'] or '(no name)'}  ~  {other} {row['duplicate_name'] or '(no name)'}: "
            f"{row['tier']} ({row['probability']:.2f})")
