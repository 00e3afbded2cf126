"""Match reports for analysts: a run's results as DataFrames and charts, and one self-contained HTML page.

A run folder has two shapes (docs/run_folder.md): the database mode writes one subfolder per entity
type with parquet files; the file mode writes groups.csv, pairs.csv and model.json directly. ``Run``
reads both the same way and returns tidy DataFrames with an ``entity_type`` column. The chart
functions take those DataFrames (not the run), so notebooks, the HTML report and tests draw the
same pictures from the same data.

    run = Run.latest("sqlite:///data/crm.db")          # or Run.open(folder), Run.resolve(folder_or_id, db)
    run.overview(), run.counts(), run.criteria(), run.group_sizes(), run.primary_reasons()
    score_chart(run.pair_scores(), run.thresholds)
    waterfall_chart(run.waterfall(id_a, id_b, "contact"))
    run.uncertain_pairs(20), run.quality_fields(), run.precision_recall()
    run.pair(id_a, id_b, "contact"), run.group_pairs(group_id), run.left_out()
    compare_runs(run.previous(), run), changed_groups(a, b), changed_pairs(a, b)
    run.to_csv(folder)                                  # CSV for a spreadsheet (and `crm-dedup evaluate`)
    write_html_report(run.folder)                       # folder/report.html, self-contained

docs/analysts.md shows them at work.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scoring.evaluate import evaluate_groups, held_mask, threshold_settings, threshold_table, threshold_text
from scoring.find import HELD_AT
from scoring.settings import MatchSettings, Thresholds

log = logging.getLogger(__name__)

TIERS = ("certain", "probable", "possible")
ENTITY_TYPES = ("contact", "company", "lead")
TIER_COLOURS = {"certain": "#2e7d32", "probable": "#f9a825", "possible": "#90a4ae"}
UP, DOWN, NEUTRAL = "#2e7d32", "#c62828", "#78909c"
# the first-name level "same after nicknames" is where transliteration and diminutives meet
NICKNAME_WORDS = "same after nicknames"
NICKNAME_CRITERION = "nickname or transliteration"
NO_CRITERION = "similar only (no exact criterion)"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the run the notebooks open when their RUN_FOLDER parameter is None (a folder or a run id)
RUN_ENV = "CRM_DEDUP_RUN"


class ReportError(ValueError):
    """A run that cannot be reported on; the message names the folder, file or run and what to do."""


# -- small helpers ----------------------------------------------------------------------------

def bits(probability) -> np.ndarray:
    """Match weight in bits (log2 odds) of a probability, clipped so that 0 and 1 stay finite."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log2(p / (1 - p))


def probability_of(weight) -> np.ndarray:
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=np.float64)))


def score_bits(scores: pd.DataFrame) -> np.ndarray:
    """Where each pair stands in bits: its probability's log2 odds, which a rule may have set apart from
    the summed weights (raised to certain, or held below probable); the ``weight`` column where the
    probability, rounded to six decimals, is too close to 1 to tell."""
    p = scores["probability"].to_numpy(dtype=np.float64)
    from_p = bits(p)
    if "weight" not in scores.columns:
        return from_p
    w = pd.to_numeric(scores["weight"], errors="coerce").to_numpy(dtype=np.float64)
    return np.where((p < 0.9999) | np.isnan(w), from_p, np.maximum(w, from_p.clip(max=bits(0.9999))))


def threshold_dict(thresholds: Thresholds | Mapping[str, float] | None) -> dict[str, float]:
    if thresholds is None:
        thresholds = Thresholds()
    if isinstance(thresholds, Thresholds):
        return thresholds.model_dump()
    return {t: float(thresholds[t]) for t in TIERS if t in thresholds}


def reason_category(reason: str, tie: bool | None = None) -> str:
    """The criterion that settled a primary: the words before the parenthesis ("most linked records")."""
    text = str(reason or "").strip()
    if not text:
        return "not recorded"
    if text.startswith("all criteria equal"):
        return "tie: lowest id" if "tie broken" in text else "tie: left for a person"
    return text.split(" (", 1)[0].split(";", 1)[0].strip()


def default_db_url() -> str:
    """$CRM_DEDUP_DB or the demo database; a relative SQLite path is tried from here, then from the
    project root (a notebook's working directory is notebooks/)."""
    from crm.store import resolve_url

    return _sqlite_from_root(resolve_url(None))


def _sqlite_from_root(url: str) -> str:
    """A relative SQLite path that is not here but is under the project root (a notebook runs in
    notebooks/, the README's paths are the project root's): that one."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        rel = Path(url[len(prefix):])
        if not rel.exists() and (PROJECT_ROOT / rel).exists():
            return prefix + str(PROJECT_ROOT / rel)
    return url


def _from_root(folder: str | Path) -> Path:
    """A relative run folder that is not here but is under the project root (data/runs/<run id> given
    in a notebook, which runs in notebooks/): that one."""
    path = Path(folder)
    if not path.is_absolute() and not path.exists() and (PROJECT_ROOT / path).is_dir():
        return PROJECT_ROOT / path
    return path


def _open_store(db_url: str | None):
    from crm.store import Store

    return Store(_sqlite_from_root(db_url) if db_url else default_db_url(), must_exist=True)


def _explode_words(series: pd.Series, sep: str) -> pd.Series:
    words = series.fillna("").astype(str).str.split(sep).explode().str.strip()
    return words[words != ""]


def _in_entity_order(frame: pd.DataFrame, *by: str, ascending: bool | list[bool] = True) -> pd.DataFrame:
    """Rows of contact, company, lead in that order (the CRM's), then sorted by ``by``."""
    order = {e: i for i, e in enumerate(ENTITY_TYPES)}
    asc = [True] + ([ascending] * len(by) if isinstance(ascending, bool) else list(ascending))
    out = frame.assign(_order=frame["entity_type"].map(order).fillna(len(order)))
    return out.sort_values(["_order", *by], ascending=asc, kind="stable").drop(columns="_order").reset_index(drop=True)


def _tier_pivot(frame: pd.DataFrame, keys: list[str], count_name: str = "pairs") -> pd.DataFrame:
    """Counts of rows per keys, one column per tier and a total, tiers in order."""
    if frame.empty:
        return pd.DataFrame(columns=[*keys, *TIERS, count_name])
    table = frame.assign(_n=1).pivot_table(index=keys, columns="tier", values="_n", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=list(TIERS), fill_value=0)
    table.columns.name = None
    table[count_name] = table.sum(axis=1)
    return table.reset_index().astype({t: int for t in (*TIERS, count_name)})


# -- the run ----------------------------------------------------------------------------------

class Run:
    """One run folder, read lazily. Open with ``Run.open(folder)``, ``Run.latest(db_url)`` or
    ``Run.resolve(folder_or_run_id, db_url)``.

    ``truth`` (optional) is the known real entity of each record: a Series record id -> cluster label
    (a run of one entity type), a Series indexed by (entity_type, id), or a dict entity_type -> Series.
    Without it a database run reads the ``demo_truth`` table of its database, when there is one.
    """

    def __init__(self, folder: Path, mode: str, entity_types: list[str], settings: MatchSettings,
                 run_id: str, db_url: str | None = None, truth=None):
        self.folder = Path(folder)
        self.mode = mode
        self.entity_types = entity_types
        self.settings = settings
        self.run_id = run_id
        self.db_url = db_url
        self._given_truth = truth
        self._cache: dict = {}
        self._default_db_lacking: str | None = None  # why the default database is not the run's, when it is not

    def __repr__(self) -> str:
        return (f"<Run {self.run_id} ({self.mode} mode, {', '.join(self.entity_types) or 'no entity types'}) "
                f"at {self.folder}>")

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | Path, *, db_url: str | None = None, truth=None) -> "Run":
        folder = _from_root(folder)
        if not folder.is_dir():
            raise ReportError(f"There is no run folder {folder}. Pass a folder written by `crm-dedup run` "
                              "(data/runs/<run id>) or by `crm-dedup find --out DIR`.")
        if (folder / "groups.csv").exists():
            settings = _load_settings(folder)
            groups = pd.read_csv(folder / "groups.csv", dtype={"id": str, "group_id": str}, usecols=["group_id"])
            prefix = groups["group_id"].str.split("-", n=1).str[0]
            entity = prefix.iloc[0] if len(prefix) and prefix.iloc[0] in ENTITY_TYPES else "records"
            return cls(folder, "file", [entity], settings, folder.name, db_url, truth)
        entities = [e for e in ENTITY_TYPES if (folder / e / "groups.parquet").exists()]
        incomplete = [e for e in ENTITY_TYPES if (folder / e).is_dir() and e not in entities]
        for e in incomplete:
            log.warning("run %s: %s has no groups.parquet (the run did not finish it); left out of the report",
                        folder, folder / e)
        if not entities:
            inside = _runs_inside(folder)
            raise ReportError(
                f"{folder} is not a run folder: it has neither groups.csv (file mode) nor <entity>/groups.parquet "
                "(database mode). " + (
                    f"It holds run folders: pass one of them, e.g. {inside[0]} (newest of {len(inside)}; "
                    "`crm-dedup runs` lists them)." if inside else
                    "Run `crm-dedup run` or `crm-dedup find` first, or pass the folder they wrote."))
        settings = _load_settings(folder)
        if db_url is None:
            db_url, no_db = _database_knowing(folder.name)
        else:
            db_url = _sqlite_from_root(db_url)
            _check_database_holds(db_url, folder)
            no_db = None
        run = cls(folder, "database", entities, settings, folder.name, db_url, truth)
        run._default_db_lacking = no_db
        return run

    @classmethod
    def latest(cls, db_url: str | None = None, *, truth=None) -> "Run":
        """The latest completed run of a database (``dedup_runs.folder``)."""
        from crm.proposals import latest_run

        store = _open_store(db_url)
        try:
            row = latest_run(store)
        finally:
            store.dispose()
        if row is None:
            raise ReportError(f"The database {store.display_url} has no completed dedup run. "
                              "Run `crm-dedup run` first.")
        folder = Path(row["folder"] or "")
        if not folder.is_dir():
            raise ReportError(f"Run {row['id']} of {store.display_url} was written to {row['folder']}, "
                              "which no longer exists. Re-run `crm-dedup run`, or open a folder that exists.")
        return cls.open(folder, db_url=store.url, truth=truth)

    @classmethod
    def resolve(cls, run: str | Path, db_url: str | None = None, *, truth=None) -> "Run":
        """A run folder, or a run id looked up in the database (``crm-dedup report RUN``)."""
        if _from_root(run).is_dir():
            return cls.open(run, db_url=db_url, truth=truth)
        import sqlalchemy as sa

        from crm import schema

        store = _open_store(db_url)
        try:
            with store.engine.connect() as conn:
                row = conn.execute(sa.select(schema.dedup_runs.c.folder).where(
                    schema.dedup_runs.c.id == str(run))).first()
        finally:
            store.dispose()
        if row is None:
            raise ReportError(f"{run} is neither a run folder nor a run id of {store.display_url}. "
                              "Pass a folder (data/runs/<run id>) or a run id `crm-dedup runs` lists.")
        if not row[0] or not Path(row[0]).is_dir():
            raise ReportError(f"Run {run} of {store.display_url} was written to {row[0] or '(no folder)'}, "
                              "which no longer exists. Re-run `crm-dedup run`, or pass a run whose folder exists "
                              "(`crm-dedup runs` lists them).")
        return cls.open(row[0], db_url=store.url, truth=truth)

    def previous(self) -> "Run | None":
        """The completed run of the same database that started last before this one, holds one of its
        entity types and whose folder still exists (to compare with: compare_runs(run.previous(), run));
        None for a file-mode run, a run without its database, or the first run."""
        if self.mode != "database" or not self.db_url:
            return None
        import sqlalchemy as sa

        from crm import schema

        r = schema.dedup_runs
        store = _open_store(self.db_url)
        try:
            with store.engine.connect() as conn:
                started = conn.execute(sa.select(r.c.started_at).where(r.c.id == self.run_id)).scalar()
                if started is None:
                    return None
                rows = conn.execute(sa.select(r.c.folder, r.c.entity_types)
                                    .where(r.c.status == "completed", r.c.id != self.run_id, r.c.started_at <= started)
                                    .order_by(r.c.started_at.desc(), r.c.id.desc())).all()
        finally:
            store.dispose()
        for folder, entity_types in rows:
            shared = set(str(entity_types or "").replace(" ", "").split(",")) & set(self.entity_types)
            if folder and shared and Path(folder).is_dir():
                return Run.open(folder, db_url=self.db_url)
        return None

    # -- raw files --------------------------------------------------------------------------------

    @property
    def thresholds(self) -> dict[str, float]:
        return threshold_dict(self.settings.thresholds)

    def _entity(self, entity_type: str | None) -> str:
        if entity_type is None:
            if len(self.entity_types) > 1:
                raise ReportError(f"Run {self.run_id} holds {', '.join(self.entity_types)}: "
                                  "name the entity_type.")
            return self.entity_types[0]
        if entity_type not in self.entity_types:
            raise ReportError(f"Run {self.run_id} has no {entity_type!r} results; it has "
                              f"{', '.join(self.entity_types)}.")
        return entity_type

    def _entities(self, entity_type: str | None) -> list[str]:
        return self.entity_types if entity_type is None else [self._entity(entity_type)]

    def _path(self, entity: str, name: str) -> Path:
        if self.mode == "file":
            return self.folder / f"{name}.csv"
        return self.folder / entity / f"{name}.parquet"

    def pairs(self, entity_type: str | None = None) -> pd.DataFrame:
        """The scored pairs (at or above the possible threshold), with entity_type."""
        return pd.concat([self._pairs(e) for e in self._entities(entity_type)], ignore_index=True)

    def _pairs(self, entity: str) -> pd.DataFrame:
        key = ("pairs", entity)
        if key not in self._cache:
            path = self._path(entity, "pairs")
            if not path.exists():
                raise ReportError(f"{path} is missing: the run folder is incomplete.")
            if self.mode == "file":
                frame = pd.read_csv(path, dtype={"id_a": str, "id_b": str}, keep_default_na=False,
                                    na_values={"probability": [""], "weight": [""]})
            else:
                frame = pd.read_parquet(path)
            for col in ("tier", "rules", "criteria", "explanation", "contributions"):
                if col not in frame.columns:
                    frame[col] = ""
                frame[col] = frame[col].fillna("").astype(str)
            frame.insert(0, "entity_type", entity)
            self._cache[key] = frame
        return self._cache[key]

    def records(self, entity_type: str | None = None) -> pd.DataFrame:
        """Every record with its group: entity_type, id, group_id, is_primary, tier."""
        return pd.concat([self._groups(e) for e in self._entities(entity_type)], ignore_index=True)

    def _groups(self, entity: str) -> pd.DataFrame:
        key = ("groups", entity)
        if key not in self._cache:
            path = self._path(entity, "groups")
            if self.mode == "file":
                frame = pd.read_csv(path, dtype={"id": str, "group_id": str, "tier": str}, keep_default_na=False)
                frame["is_primary"] = frame["is_primary"].astype(str).str.lower().isin(("true", "1"))
            else:
                frame = pd.read_parquet(path)
            frame["tier"] = frame["tier"].fillna("").astype(str)
            frame.insert(0, "entity_type", entity)
            self._cache[key] = frame
        return self._cache[key]

    def groups(self, entity_type: str | None = None) -> pd.DataFrame:
        """One row per group of two or more: entity_type, group_id, primary_id, member_ids, size, score,
        tier, reason, tie, criteria. In file mode, rebuilt from groups.csv and pairs.csv (no reason)."""
        return pd.concat([self._group_table(e) for e in self._entities(entity_type)], ignore_index=True)

    def _group_table(self, entity: str) -> pd.DataFrame:
        key = ("group_table", entity)
        if key not in self._cache:
            if self.mode == "file":
                frame = self._rebuild_group_table(entity)
            else:
                frame = pd.read_parquet(self._path(entity, "group_table"))
                frame["member_ids"] = frame["member_ids"].map(list)
            frame = frame.reindex(columns=["group_id", "primary_id", "member_ids", "size", "score", "tier",
                                           "reason", "tie", "criteria", "cut_off"])
            frame["reason"] = frame["reason"].fillna("").astype(str)
            # (a run from before cut_off was written has none: no record is known to be left out)
            frame["cut_off"] = [list(c) if isinstance(c, (list, tuple, np.ndarray)) else [] for c in frame["cut_off"]]
            frame.insert(0, "entity_type", entity)
            self._cache[key] = frame
        return self._cache[key]

    def _rebuild_group_table(self, entity: str) -> pd.DataFrame:
        from scoring.find import _criteria

        g = self._groups(entity)
        multi = g[g["group_id"].duplicated(keep=False)]
        rows = []
        for gid, f in multi.groupby("group_id", sort=False):
            order = f.sort_values("is_primary", ascending=False, kind="stable")
            rows.append({"group_id": gid, "primary_id": order["id"].iloc[0], "member_ids": order["id"].tolist(),
                         "size": len(order), "tier": order["tier"].iloc[0], "reason": "", "tie": False})
        table = pd.DataFrame(rows, columns=["group_id", "primary_id", "member_ids", "size", "tier", "reason", "tie"])
        pairs = self._pairs(entity)
        member_group = dict(zip(multi["id"], multi["group_id"]))
        ga, gb = pairs["id_a"].map(member_group), pairs["id_b"].map(member_group)
        inside = pairs[(ga == gb) & ga.notna() & (pairs["probability"] >= self.thresholds["probable"])]
        # the weakest link that holds the group together, as the find computes it without the chain guard
        weakest = inside["probability"].groupby(ga[inside.index]).min()
        table["score"] = table["group_id"].map(weakest)
        table["criteria"] = _criteria(table, pairs) if len(table) else []
        table["cut_off"] = _left_alone(g["id"], member_group, pairs, table["group_id"])
        return table.sort_values(["score", "group_id"], ascending=[False, True], ignore_index=True)

    def model(self, entity_type: str | None = None) -> dict:
        """The trained model as stored (model.json)."""
        e = self._entity(entity_type)
        path = self.folder / "model.json" if self.mode == "file" else self.folder / e / "model.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def model_weights(self, entity_type: str | None = None) -> pd.DataFrame:
        """Per comparison level: m, u and the evidence in bits (Fellegi-Sunter models)."""
        rows = []
        for e in self._entities(entity_type):
            m = self.model(e)
            if "m" not in m:
                continue
            for name, levels, ms, us in zip(m["comparisons"], m["levels"], m["m"], m["u"]):
                for level, mv, uv in zip(levels, ms, us):
                    rows.append({"entity_type": e, "comparison": name, "level": level, "m": mv, "u": uv,
                                 "bits": math.log2(mv / uv) if mv > 0 and uv > 0 else float("nan")})
        return pd.DataFrame(rows, columns=["entity_type", "comparison", "level", "m", "u", "bits"])

    def summary(self) -> dict:
        path = self.folder / "summary.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    # -- what analysts look at ------------------------------------------------------------------

    def overview(self) -> pd.DataFrame:
        """Per entity type: records, scored pairs, groups, records in groups, largest group, records left
        out of a group (left_out), groups per tier."""
        rows = []
        for e in self.entity_types:
            g, gt, p = self._groups(e), self._group_table(e), self._pairs(e)
            tiers = gt["tier"].value_counts()
            rows.append({"entity_type": e, "records": len(g), "scored_pairs": len(p), "groups": len(gt),
                         "records_in_groups": int(gt["size"].sum()) if len(gt) else 0,
                         "largest_group": int(gt["size"].max()) if len(gt) else 0,
                         "left_out": int(gt["cut_off"].map(len).sum()) if len(gt) else 0,
                         **{f"{t}_groups": int(tiers.get(t, 0)) for t in TIERS}})
        return pd.DataFrame(rows)

    def counts(self) -> pd.DataFrame:
        """Per entity type and tier: scored pairs, groups and the records in them."""
        rows = []
        for e in self.entity_types:
            p, gt = self._pairs(e), self._group_table(e)
            for t in TIERS:
                in_tier = gt[gt["tier"] == t]
                rows.append({"entity_type": e, "tier": t, "pairs": int((p["tier"] == t).sum()),
                             "groups": len(in_tier), "records_in_groups": int(in_tier["size"].sum())})
        return pd.DataFrame(rows, columns=["entity_type", "tier", "pairs", "groups", "records_in_groups"])

    def pair_scores(self, entity_type: str | None = None) -> pd.DataFrame:
        """entity_type, id_a, id_b, probability, weight (bits), tier of every scored pair."""
        return self.pairs(entity_type)[["entity_type", "id_a", "id_b", "probability", "weight", "tier"]]

    def score_distribution(self, bins: int = 30, entity_type: str | None = None) -> pd.DataFrame:
        """Scored pairs per band of match weight (bits) and tier: entity_type, low, high, tier, pairs."""
        scores = self.pair_scores(entity_type)
        if scores.empty:
            return pd.DataFrame(columns=["entity_type", "low", "high", "tier", "pairs"])
        w = score_bits(scores)
        edges = np.histogram_bin_edges(w, bins=bins)
        band = np.clip(np.searchsorted(edges, w, side="right") - 1, 0, len(edges) - 2)
        out = (scores.assign(low=edges[band], high=edges[band + 1])
               .groupby(["entity_type", "low", "high", "tier"]).size().rename("pairs").reset_index())
        return _in_entity_order(out, "low")

    def criteria(self, entity_type: str | None = None) -> pd.DataFrame:
        """Which criteria the pairs matched on (comparisons at their top level: phone, email, name...,
        and the first name "same after nicknames": a nickname or a transliteration), per tier."""
        p = self.pairs(entity_type)
        words = _explode_words(p["criteria"], ",")
        frame = pd.DataFrame({"entity_type": p.loc[words.index, "entity_type"], "criterion": words,
                              "tier": p.loc[words.index, "tier"]})
        nick = p[p["explanation"].str.contains(NICKNAME_WORDS, regex=False)]
        none = p[(p["criteria"].str.strip() == "") & ~p.index.isin(nick.index)]
        frame = pd.concat([frame,
                           nick[["entity_type", "tier"]].assign(criterion=NICKNAME_CRITERION),
                           none[["entity_type", "tier"]].assign(criterion=NO_CRITERION)], ignore_index=True)
        out = _tier_pivot(frame, ["entity_type", "criterion"])
        return _in_entity_order(out, "pairs", "criterion", ascending=[False, True])

    def blocking_rules(self, entity_type: str | None = None) -> pd.DataFrame:
        """Which blocking rules proposed the scored pairs, per tier, with the candidates each rule made."""
        p = self.pairs(entity_type)
        words = _explode_words(p["rules"], ";")
        frame = pd.DataFrame({"entity_type": p.loc[words.index, "entity_type"], "rule": words,
                              "tier": p.loc[words.index, "tier"]})
        out = _tier_pivot(frame, ["entity_type", "rule"], "scored_pairs")
        per_rule = []
        for e in self._entities(entity_type):
            path = self._path(e, "blocking")
            if path.exists():
                b = pd.read_csv(path) if self.mode == "file" else pd.read_parquet(path)
                per_rule.append(b.assign(entity_type=e))
        if per_rule:
            b = pd.concat(per_rule, ignore_index=True)
            keep = [c for c in ("entity_type", "rule", "description", "pairs", "skipped_keys") if c in b.columns]
            b = b[keep].rename(columns={"pairs": "candidates"})
            out = b.merge(out, on=["entity_type", "rule"], how="outer")
            for col in (*TIERS, "scored_pairs"):
                out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0).astype(int)
        return _in_entity_order(out, "scored_pairs", "rule", ascending=[False, True])

    def group_sizes(self, entity_type: str | None = None) -> pd.DataFrame:
        """How many groups have each size, per tier: entity_type, size, certain, probable, possible, groups."""
        gt = self.groups(entity_type)
        return _in_entity_order(_tier_pivot(gt[["entity_type", "size", "tier"]], ["entity_type", "size"], "groups"),
                                "size")

    def primary_reasons(self, entity_type: str | None = None) -> pd.DataFrame:
        """Why each primary won: entity_type, group_id, primary_id, size, reason, category, tie."""
        gt = self.groups(entity_type)
        out = gt[["entity_type", "group_id", "primary_id", "size", "reason", "tie"]].copy()
        out.insert(5, "category", [reason_category(r, t) for r, t in zip(out["reason"], out["tie"])])
        return out

    def primary_reason_counts(self, entity_type: str | None = None) -> pd.DataFrame:
        r = self.primary_reasons(entity_type)
        counts = r.groupby(["entity_type", "category"]).size().rename("groups").reset_index()
        return _in_entity_order(counts, "groups", "category", ascending=[False, True])

    def contributions(self, entity_type: str | None = None) -> pd.DataFrame:
        """Per pair, the prior and the bits each comparison added (the waterfall data), one column each."""
        p = self.pairs(entity_type)
        parsed = []
        for row in p[["entity_type", "id_a", "id_b", "contributions"]].itertuples(index=False):
            try:
                parsed.append(_contributions(row.contributions, row))
            except ReportError as exc:  # one broken row is reported; the others still count
                log.warning("%s", exc)
                parsed.append({})
        parsed = pd.DataFrame(parsed, index=p.index)
        return pd.concat([p[["entity_type", "id_a", "id_b", "probability", "tier"]], parsed], axis=1)

    def record_id(self, value, entity_type: str | None = None):
        """A record id as this run's files hold it: text in file mode; in database mode a whole number,
        also when given as text or as `crm-dedup groups` prints it ("1245", "#1245")."""
        e = self._entity(entity_type)
        if self.mode == "file":
            return str(value).strip()
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        text = str(value).strip().lstrip("#").strip()
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number != int(number):
            raise ReportError(f"{value!r} is not a {e} id: the ids of a database run are whole numbers "
                              "(as `crm-dedup groups` shows them, #1245).")
        return int(number)

    def pair(self, id_a, id_b, entity_type: str | None = None) -> pd.Series:
        """One scored pair (either order of the ids; ids as numbers or text): its probability, tier,
        criteria, explanation and contributions."""
        e = self._entity(entity_type)
        p = self._pairs(e)
        a, b = self.record_id(id_a, e), self.record_id(id_b, e)
        hit = p[((p["id_a"] == a) & (p["id_b"] == b)) | ((p["id_a"] == b) & (p["id_b"] == a))]
        if hit.empty:
            raise ReportError(self._no_pair_reason(e, a, b))
        return hit.iloc[0]

    def _no_pair_reason(self, e: str, a, b) -> str:
        """Why two records have no scored pair, and where to look instead."""
        head = f"Run {self.run_id} has no scored {e} pair {a} / {b}"
        g = self._groups(e)
        group_of = dict(zip(g["id"], g["group_id"]))
        unknown = [str(x) for x in (a, b) if x not in group_of]
        if unknown:
            return (f"{head}: {' and '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a {e} record of "
                    f"this run ({len(g):,} records).")
        if a != b and group_of[a] == group_of[b]:  # (a record alone has a group id of its own)
            return (f"{head}, but both are in group {group_of[a]}, linked through other members: "
                    f"run.group_pairs({group_of[a]!r}) lists the pairs that hold it together.")
        return (f"{head}: it was never a candidate (no blocking rule put them side by side) or scored below the "
                f"possible threshold ({self.thresholds['possible']:g}).")

    def group_pairs(self, group_id: str, entity_type: str | None = None) -> pd.DataFrame:
        """The scored pairs between members of one group (why its records are together), strongest first."""
        entities = self._entities(entity_type)
        if entity_type is None:  # the group id names its entity type (contact-12-ab34cd)
            entities = [e for e in entities if str(group_id).startswith(f"{e}-")] or entities
        for e in entities:
            g = self._groups(e)
            members = g.loc[g["group_id"] == str(group_id), "id"]
            if len(members) > 1:
                p = self._pairs(e)
                inside = p[p["id_a"].isin(members) & p["id_b"].isin(members)]
                return inside.sort_values(["probability", "id_a", "id_b"], ascending=[False, True, True],
                                          kind="stable").reset_index(drop=True)
        raise ReportError(f"Run {self.run_id} has no group {group_id!r} of two or more records "
                          f"(`run.groups()` lists them).")

    def waterfall(self, id_a, id_b, entity_type: str | None = None) -> pd.DataFrame:
        """The steps from the prior to the pair's final weight: step, bits, start, end, probability."""
        row = self.pair(id_a, id_b, entity_type)
        return waterfall_steps(_contributions(row["contributions"], row),
                               final_probability=float(row["probability"]))

    def uncertain_pairs(self, n: int = 20, entity_type: str | None = None, distinct: bool = False,
                        side: str = "both", threshold: str | float = "probable") -> pd.DataFrame:
        """The pairs closest to the probable threshold (the line between grouped and not): look here first.
        ``side="below"``: only the pairs just below it (the duplicates a lower threshold would add),
        ``"above"``: only those just above; ``threshold``: another line, a tier ("certain") or a probability.
        Pairs a hold rule kept at possible are left out (held_pairs lists them): their probability is a
        cap the rule set, not the model's call, and they stay possible whatever the threshold.
        ``distinct``: one pair per explanation (one record against three copies gives three alike pairs)."""
        if side not in ("both", "below", "above"):
            raise ReportError(f"side must be 'both', 'below' or 'above', not {side!r}.")
        if isinstance(threshold, str):
            if threshold not in self.thresholds:
                raise ReportError(f"threshold must be a tier ({', '.join(self.thresholds)}) or a probability, "
                                  f"not {threshold!r}.")
            line = self.thresholds[threshold]
        else:
            line = float(threshold)
        p = self.pairs(entity_type)
        cols = ["entity_type", "id_a", "id_b", "probability", "tier", "distance_bits", "criteria", "explanation"]
        p = p[~held_mask(p)]
        if side != "both":
            p = p[(p["probability"] < line) if side == "below" else (p["probability"] >= line)]
        if p.empty:
            return pd.DataFrame(columns=cols)
        distance = np.abs(bits(p["probability"]) - bits(line))
        out = p.assign(distance_bits=distance.round(2)).sort_values(
            ["distance_bits", "entity_type", "id_a", "id_b"], kind="stable")
        if distinct:
            out = out.drop_duplicates(["entity_type", "explanation"])
        out = out.head(n)
        return out[cols].reset_index(drop=True)

    def held_pairs(self, entity_type: str | None = None) -> pd.DataFrame:
        """Pairs a hold rule kept at "possible" whatever their weight (only names agree, different first
        names...): entity_type, id_a, id_b, weight (the model's own, bits), probability (the cap), tier,
        held (why), explanation; the strongest first."""
        p = self.pairs(entity_type)
        cols = ["entity_type", "id_a", "id_b", "weight", "probability", "tier", "held", "criteria", "explanation"]
        p = p[held_mask(p)]
        why = p["explanation"].str.split(HELD_AT, n=1).str[-1]
        out = p.assign(held=why)
        if "weight" not in out.columns:
            out["weight"] = bits(out["probability"])
        return out.sort_values(["weight", "entity_type", "id_a", "id_b"], ascending=[False, True, True, True],
                               kind="stable")[cols].reset_index(drop=True)

    def left_out(self, entity_type: str | None = None) -> pd.DataFrame:
        """Records in no group although probable or better with a member of one (the group table's
        cut_off: a "not duplicates" mark or the chaining guard kept them out; merging the group leaves
        them behind): entity_type, group_id, id, partner (its strongest member), probability, tier,
        held_apart (the members a hold rule keeps it apart from, and why), explanation."""
        cols = ["entity_type", "group_id", "id", "partner", "probability", "tier", "held_apart", "explanation"]
        rows = []
        for e in self._entities(entity_type):
            gt = self._group_table(e)
            listed = gt[gt["cut_off"].map(len) > 0]
            if listed.empty:
                continue
            p = self._pairs(e)
            cut_ids = [x for cut in listed["cut_off"] for x in cut]
            p = p[p["id_a"].isin(cut_ids) | p["id_b"].isin(cut_ids)].reset_index(drop=True)  # (once: a scan per
            # record took seconds at 1M; held_mask is by position)
            held = held_mask(p)
            for gid, members, cut in zip(listed["group_id"], listed["member_ids"], listed["cut_off"]):
                inside = set(members)
                for x in cut:
                    mine = p[((p["id_a"] == x) & p["id_b"].isin(inside)) | ((p["id_b"] == x) & p["id_a"].isin(inside))]
                    partner = np.where(mine["id_a"] == x, mine["id_b"], mine["id_a"])
                    apart = [f"#{m}: {str(t).split(HELD_AT, 1)[-1].strip()}" for m, t, h in
                             zip(partner, mine["explanation"], held[mine.index]) if h]
                    best = mine.assign(partner=partner)[~held[mine.index]].sort_values(
                        ["probability", "partner"], ascending=[False, True], kind="stable").head(1)
                    row = {"entity_type": e, "group_id": gid, "id": x, "held_apart": "; ".join(apart)}
                    if len(best):
                        b = best.iloc[0]
                        row.update(partner=b["partner"], probability=float(b["probability"]), tier=b["tier"],
                                   explanation=b["explanation"])
                    rows.append(row)
        return pd.DataFrame(rows, columns=cols)

    def lead_clients(self) -> pd.DataFrame:
        """Leads that duplicate an existing contact or company (database runs with leads)."""
        path = self.folder / "lead_clients.parquet"
        if self.mode != "database" or not path.exists():
            return pd.DataFrame(columns=["lead_id", "client_type", "client_id", "probability", "tier", "explanation"])
        return pd.read_parquet(path)

    def names(self, entity_type: str | None = None) -> pd.Series:
        """Record id -> a readable name (a person's "surname first patronymic", else the company title) as
        the run read the records (its table_records.parquet); empty in file mode, which keeps no copy."""
        e = self._entity(entity_type)
        path = self.folder / e / "table_records.parquet"
        if self.mode != "database" or not path.exists():
            return pd.Series(dtype=object, name="name")
        t = pd.read_parquet(path, columns=[c for c in ("last_name", "first_name", "middle_name", "company")
                                           if c in _parquet_columns(path)])
        parts = [t[c].fillna("").astype(str).str.strip() for c in ("last_name", "first_name", "middle_name")
                 if c in t.columns]
        person = (pd.concat(parts, axis=1).agg(" ".join, axis=1).str.split().str.join(" ") if parts
                  else pd.Series("", index=t.index))
        company = t["company"].fillna("").astype(str).str.strip() if "company" in t.columns else ""
        return person.where(person != "", company).rename("name")

    def to_csv(self, out: str | Path, entity_type: str | None = None, *, sep: str = ",",
               encoding: str = "utf-8-sig") -> dict[str, Path]:
        """Write the run's results as CSV files a spreadsheet opens (UTF-8 with a BOM, so that Excel reads
        Cyrillic; ``sep=";"`` for a spreadsheet that splits on semicolons), per entity type in
        ``out/<entity>/``: ``groups.csv`` (every record: id, group_id, is_primary, tier, as `crm-dedup find`
        writes it, so `crm-dedup evaluate --groups` reads it), ``pairs.csv`` (the scored pairs with both
        records' names where the run kept them), ``group_table.csv`` (one row per group, ids joined by ", ")
        and ``left_out.csv``; the run's settings.yaml in ``out`` (its thresholds, for `evaluate`).
        Returns the paths written by name (``contact/pairs.csv``...)."""
        out = Path(out)
        written: dict[str, Path] = {}

        def put(frame: pd.DataFrame, name: str) -> None:
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False, sep=sep, encoding=encoding)
            written[name] = path

        def joined(values) -> str:
            return ", ".join(map(str, values))

        for e in self._entities(entity_type):
            put(self._groups(e).drop(columns="entity_type"), f"{e}/groups.csv")
            pairs = self._pairs(e).drop(columns="entity_type")
            names = self.names(e)
            if len(names):
                pairs.insert(2, "name_a", pairs["id_a"].map(names).fillna(""))
                pairs.insert(3, "name_b", pairs["id_b"].map(names).fillna(""))
            put(pairs, f"{e}/pairs.csv")
            table = self._group_table(e).drop(columns="entity_type")
            put(table.assign(member_ids=table["member_ids"].map(joined), cut_off=table["cut_off"].map(joined)),
                f"{e}/group_table.csv")
            put(self.left_out(e).drop(columns="entity_type"), f"{e}/left_out.csv")
        settings = self.folder / "settings.yaml"
        if settings.exists():
            out.mkdir(parents=True, exist_ok=True)
            (out / "settings.yaml").write_bytes(settings.read_bytes())
            written["settings.yaml"] = out / "settings.yaml"
        return written

    # -- data quality ------------------------------------------------------------------------------

    def quality(self, entity_type: str | None = None) -> dict[str, pd.DataFrame]:
        """Every quality_<name>.parquet of the run (matchers.quality: fields, shared, records, sources), as
        {name: frame with entity_type}; empty in file mode, which writes no quality files."""
        key = ("quality", entity_type)
        if key not in self._cache:
            self._cache[key] = self._read_quality(entity_type)
        return self._cache[key]

    def _read_quality(self, entity_type: str | None) -> dict[str, pd.DataFrame]:
        frames: dict[str, list[pd.DataFrame]] = {}
        if self.mode != "database":
            return {}
        for e in self._entities(entity_type):
            for path in sorted((self.folder / e).glob("quality_*.parquet")):
                name = path.stem[len("quality_"):]
                frame = pd.read_parquet(path)
                if name == "records":  # indexed by record id
                    frame = frame.rename_axis("id").reset_index()
                frames.setdefault(name, []).append(frame.assign(entity_type=e))
        out = {}
        for name, parts in frames.items():
            # (an entity type without rows adds nothing; left in, pandas warns of the dtypes it would give)
            f = pd.concat([x for x in parts if len(x)] or parts[:1], ignore_index=True)
            out[name] = f[["entity_type"] + [c for c in f.columns if c != "entity_type"]]
        return out

    def quality_fields(self) -> pd.DataFrame:
        """Per entity type and field: empty, invalid and placeholder shares (see quality_fields)."""
        return quality_fields(self.quality())

    def quality_sources(self) -> pd.DataFrame:
        """Per entity type and source: invalid and placeholder shares (see quality_sources)."""
        return quality_sources(self.quality())

    def quality_records(self) -> pd.DataFrame:
        """Per record: completeness, invalid and placeholder counts."""
        return self.quality().get("records", pd.DataFrame(columns=["entity_type", "id", "completeness",
                                                                   "invalid", "placeholder"]))

    def quality_shared(self) -> pd.DataFrame:
        """Values (phones, e-mails, websites, tax ids) held by suspiciously many records."""
        return self.quality().get("shared", pd.DataFrame(columns=["entity_type", "role", "value", "records"]))

    def quality_text(self) -> dict[str, str]:
        """The short human summary of data quality per entity type (quality.txt)."""
        out = {}
        for e in self.entity_types:
            path = self.folder / e / "quality.txt"
            if self.mode == "database" and path.exists():
                out[e] = path.read_text(encoding="utf-8")
        return out

    # -- against known truth ---------------------------------------------------------------------------

    def truth(self, entity_type: str | None = None) -> pd.Series | None:
        """Record id -> real-entity label for the records of this run, or None when unknown."""
        e = self._entity(entity_type)
        key = ("truth", e)
        if key not in self._cache:
            self._cache[key] = self._load_truth(e)
        return self._cache[key]

    @property
    def has_truth(self) -> bool:
        return any(self.truth(e) is not None for e in self.entity_types)

    def no_truth_reason(self) -> str:
        """Why there are no figures against the known truth (for the report, which would otherwise just
        leave them out)."""
        if self._given_truth is not None:
            return ("The truth given names none of this run's records, so there are no figures against it.")
        if self.mode == "file":
            return ("A file-mode run has no known truth of its own: `crm-dedup evaluate --groups groups.csv "
                    "--truth FILE --truth-column COLUMN` measures it against one.")
        if self.db_url is None:
            lacking = self._default_db_lacking
            return ("No database holding this run was given, so there is no known truth to measure it against"
                    + (f" ({lacking})" if lacking else "")
                    + ": pass --db (or set $CRM_DEDUP_DB) to the database the run read.")
        from crm.store import hide_password

        return (f"The database {hide_password(self.db_url)} has no known truth for this run's records (its demo_truth "
                "table is empty: only a demo CRM made by `crm-dedup demo` has one).")

    def _load_truth(self, entity: str) -> pd.Series | None:
        given = self._given_truth
        raw = None
        if isinstance(given, Mapping):
            raw = given.get(entity)
        elif isinstance(given, pd.Series):
            if isinstance(given.index, pd.MultiIndex):
                raw = given.xs(entity, level=0) if entity in given.index.get_level_values(0) else None
            elif len(self.entity_types) == 1:
                raw = given
            else:
                raise ReportError(f"Run {self.run_id} holds {', '.join(self.entity_types)}: pass the truth as a "
                                  "dict entity_type -> Series, or a Series indexed by (entity_type, id).")
        elif given is None and self.mode == "database" and self.db_url:
            raw = _demo_truth(self.db_url, entity)
        if raw is None or len(raw) == 0:
            return None
        ids = self._groups(entity)["id"]
        by_text = pd.Series(raw.to_numpy(), index=raw.index.astype(str))
        by_text = by_text[~by_text.index.duplicated()]
        labels = by_text.reindex(ids.astype(str)).to_numpy(dtype=object)
        missing = pd.isna(labels)
        if missing.all():
            log.warning("the truth given for %s names none of the run's %d records; ignored", entity, len(ids))
            return None
        if missing.any():
            log.warning("the truth lacks %d of %d %s records; each counts as an entity of its own",
                        int(missing.sum()), len(ids), entity)
            labels[missing] = [f"(no truth) {i}" for i in ids[missing]]
        return pd.Series(labels.astype(str), index=pd.Index(ids.to_numpy(), name="id"), name="cluster")

    def evaluation(self) -> pd.DataFrame:
        """Precision, recall, F1 (pairwise and B-cubed) of the run's own groups, per entity type with truth."""
        rows = []
        for e in self.entity_types:
            truth = self.truth(e)
            if truth is None:
                continue
            g = self._groups(e)
            rows.append({"entity_type": e, **evaluate_groups(pd.Series(g["group_id"].to_numpy(), index=truth.index),
                                                             truth)})
        return pd.DataFrame(rows)

    def precision_recall(self, thresholds: Iterable[float] | None = None) -> pd.DataFrame:
        """Precision and recall if groups were the connected pairs at or above each threshold
        (scoring.evaluate.threshold_table), per entity type with truth. Empty without truth.

        ``thresholds``: the ones asked for; by default each entity type's threshold_grid, as `crm-dedup
        evaluate` prints it: the settings' possible, probable and certain and the deciles of its pairs'
        scores (a fixed grid had no row between 0.999 and 1, where the demo's scores sit)."""
        possible, settings = self.thresholds["possible"], tuple(self.thresholds.values())
        given = None if thresholds is None else sorted({float(t) for t in thresholds})  # (an iterator: read once)
        parts = []
        for e in self.entity_types:
            truth = self.truth(e)
            if truth is None:
                continue
            pairs = self._pairs(e)
            table = threshold_table(pairs, truth.index, truth, given, possible=possible, fixed=settings)
            parts.append(table.assign(entity_type=e))
        if not parts:
            return pd.DataFrame(columns=["entity_type", "threshold", "precision", "recall", "f1"])
        out = pd.concat(parts, ignore_index=True)
        return out[["entity_type"] + [c for c in out.columns if c != "entity_type"]]


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _left_alone(ids: pd.Series, member_group: Mapping, pairs: pd.DataFrame, group_ids: pd.Series) -> list[list]:
    """Per group, the records in no group although probable or better with one of its members (the
    find's cut_off, which groups.csv of the file mode does not keep): each with the group of its
    strongest such partner."""
    out: dict = {gid: [] for gid in group_ids}
    strong = pairs[pairs["tier"].isin(("certain", "probable"))]
    x = pd.concat([strong["id_a"], strong["id_b"]], ignore_index=True)
    y = pd.concat([strong["id_b"], strong["id_a"]], ignore_index=True)
    prob = pd.concat([strong["probability"], strong["probability"]], ignore_index=True)
    grouped = set(member_group)
    near = pd.DataFrame({"x": x, "y": y, "p": prob})
    near = near[~near["x"].isin(grouped) & near["x"].isin(set(ids)) & near["y"].isin(grouped)]
    best = near.sort_values(["x", "p", "y"], ascending=[True, False, True], kind="stable").drop_duplicates("x")
    for lone, partner in zip(best["x"], best["y"]):
        out[member_group[partner]].append(lone)
    return [out[gid] for gid in group_ids]


# -- two runs side by side (after a threshold or settings change) -------------------------------------

def _common_entities(before: Run, after: Run, entity_type: str | None) -> list[str]:
    if entity_type is not None:
        before._entity(entity_type), after._entity(entity_type)  # (a clear error when one lacks it)
        return [entity_type]
    common = [e for e in after.entity_types if e in before.entity_types]
    if not common:
        raise ReportError(f"Runs {before.run_id} ({', '.join(before.entity_types)}) and {after.run_id} "
                          f"({', '.join(after.entity_types)}) share no entity type to compare.")
    return common


def _as_key(values, as_text: bool):
    return str(values) if as_text else values


def _group_keys(table: pd.DataFrame, as_text: bool) -> set:
    """A group as its records and primary (the same group in two runs whatever its id)."""
    return {(frozenset(_as_key(x, as_text) for x in members), _as_key(primary, as_text))
            for members, primary in zip(table["member_ids"], table["primary_id"])}


def changed_pairs(before: Run, after: Run, entity_type: str | None = None) -> pd.DataFrame:
    """The pairs whose tier differs between two runs (tier "" where a run did not keep the pair: never a
    candidate, or below its possible threshold): entity_type, id_a, id_b, probability_before,
    probability_after, tier_before, tier_after, explanation (the later run's, else the earlier's)."""
    cols = ["entity_type", "id_a", "id_b", "probability_before", "probability_after", "tier_before", "tier_after",
            "explanation"]
    as_text = before.mode != after.mode  # (a file run's ids are text)
    parts = []
    for e in _common_entities(before, after, entity_type):
        keep = ["id_a", "id_b", "probability", "tier", "explanation"]
        b, a = before._pairs(e)[keep], after._pairs(e)[keep]
        if as_text:
            b, a = (f.assign(id_a=f["id_a"].astype(str), id_b=f["id_b"].astype(str)) for f in (b, a))
        m = b.merge(a, on=["id_a", "id_b"], how="outer", suffixes=("_before", "_after"))
        for side in ("before", "after"):
            m[f"tier_{side}"] = m[f"tier_{side}"].fillna("")
        m = m[m["tier_before"] != m["tier_after"]]
        m["explanation"] = m["explanation_after"].where(m["tier_after"] != "", m["explanation_before"]).fillna("")
        parts.append(m.assign(entity_type=e)[cols])
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return _in_entity_order(out, "id_a", "id_b")


def changed_groups(before: Run, after: Run, entity_type: str | None = None) -> pd.DataFrame:
    """The groups that are not the same in two runs: entity_type, change ("new": its records were in no
    group before; "gone": they are in none now; "changed": records joined or left, one row per earlier
    and later group sharing a record; "primary": the same records, another primary), group_id_before,
    group_id_after, members_before, members_after, added, removed, tier_before, tier_after."""
    cols = ["entity_type", "change", "group_id_before", "group_id_after", "members_before", "members_after",
            "added", "removed", "tier_before", "tier_after"]
    as_text = before.mode != after.mode
    rows = []
    for e in _common_entities(before, after, entity_type):
        tables = []
        for run in (before, after):
            gt = run._group_table(e)
            tables.append({gid: ([_as_key(x, as_text) for x in members], primary, tier) for gid, members, primary, tier
                           in zip(gt["group_id"], gt["member_ids"], gt["primary_id"], gt["tier"])})
        old, new = tables
        where_new = {x: gid for gid, (members, _p, _t) in new.items() for x in members}
        where_old = {x: gid for gid, (members, _p, _t) in old.items() for x in members}

        def row(change, gb, ga):
            mb, _pb, tb = old.get(gb, ([], None, ""))
            ma, _pa, ta = new.get(ga, ([], None, ""))
            return {"entity_type": e, "change": change, "group_id_before": gb or "", "group_id_after": ga or "",
                    "members_before": mb, "members_after": ma, "added": [x for x in ma if x not in set(mb)],
                    "removed": [x for x in mb if x not in set(ma)], "tier_before": tb, "tier_after": ta}

        for gb, (members, primary, _tier) in old.items():
            later = list(dict.fromkeys(where_new[x] for x in members if x in where_new))
            if not later:
                rows.append(row("gone", gb, None))
            for ga in later:
                same = set(new[ga][0]) == set(members)
                if same and _as_key(new[ga][1], as_text) != _as_key(primary, as_text):
                    rows.append(row("primary", gb, ga))
                elif not same:
                    rows.append(row("changed", gb, ga))
        for ga, (members, _primary, _tier) in new.items():
            if not any(x in where_old for x in members):
                rows.append(row("new", None, ga))
    return pd.DataFrame(rows, columns=cols)


def compare_runs(before: Run, after: Run) -> pd.DataFrame:
    """Two runs side by side, per entity type both hold: their probable thresholds, groups, records in
    groups, groups kept as they were and changed (see changed_groups), pairs whose tier changed, and, where
    the truth is known, pairwise precision and recall of each run's groups."""
    changes = changed_groups(before, after)
    tiers = changed_pairs(before, after)
    as_text = before.mode != after.mode
    figures = {side: run.evaluation() for side, run in (("before", before), ("after", after))}
    rows = []
    for e in _common_entities(before, after, None):
        gb, ga = before._group_table(e), after._group_table(e)
        c = changes[changes["entity_type"] == e]["change"]
        row = {"entity_type": e, "probable_before": before.thresholds["probable"],
               "probable_after": after.thresholds["probable"], "groups_before": len(gb), "groups_after": len(ga),
               "records_in_groups_before": int(gb["size"].sum()), "records_in_groups_after": int(ga["size"].sum()),
               "groups_same": len(_group_keys(gb, as_text) & _group_keys(ga, as_text)),
               **{f"groups_{k}": int((c == k).sum()) for k in ("new", "gone", "changed", "primary")},
               "pairs_changed_tier": int((tiers["entity_type"] == e).sum())}
        for side, ev in figures.items():
            ev = ev[ev["entity_type"] == e] if len(ev) else ev
            if len(ev):
                row[f"precision_{side}"] = float(ev["precision"].iloc[0])
                row[f"recall_{side}"] = float(ev["recall"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _contributions(text: str, pair) -> dict[str, float]:
    """A pair's contributions JSON ({"prior": bits, comparison: bits}); a clear error when broken."""
    try:
        data = json.loads(text) if text else {}
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return {str(k): float(v) for k, v in data.items()}
    except (ValueError, TypeError) as exc:
        where = f"{pair.entity_type} pair {pair.id_a} / {pair.id_b}"
        raise ReportError(f"The contributions of {where} are not a JSON object of numbers ({exc}): "
                          f"{str(text)[:80]!r}. Re-run the find to rewrite pairs.parquet.") from exc


def open_run(run_folder: str | Path | None = None, db_url: str | None = None, *, truth=None) -> Run:
    """The notebooks' entry: a run folder if given, else $CRM_DEDUP_RUN (a run folder or a run id: the
    command the run summary prints sets it), else the latest run of ``db_url`` (default: $CRM_DEDUP_DB,
    else the demo CRM)."""
    if run_folder:
        return Run.open(run_folder, db_url=db_url, truth=truth)
    from_env = os.environ.get(RUN_ENV, "").strip()
    if from_env:
        return Run.resolve(from_env, db_url, truth=truth)
    return Run.latest(db_url, truth=truth)


def notebook_command(folder: str | Path, db_url: str | None = None,
                     notebook: str = "notebooks/match_report.ipynb") -> str:
    """The shell command that opens a notebook on this very run, from any directory (every path in it
    absolute: the run folder, a SQLite file, JupyterLab of this install, the notebook)."""
    import sys

    from crm.store import hide_password

    env = [f"{RUN_ENV}={shlex.quote(str(Path(folder).resolve()))}"]
    if db_url:
        if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///"):]).is_absolute():
            db_url = "sqlite:///" + str(Path(db_url[len("sqlite:///"):]).resolve())
        shown = hide_password(db_url)
        # a URL with a password is not printed: the command takes it from the environment
        env.append('CRM_DEDUP_DB="$CRM_DEDUP_DB"' if shown != db_url and "***" in shown
                   else f"CRM_DEDUP_DB={shlex.quote(shown)}")
    jupyter = Path(sys.executable).parent / "jupyter"  # (not resolved: .venv/bin/python is a link)
    path = Path(notebook) if Path(notebook).is_absolute() else Path(__file__).resolve().parents[1] / notebook
    return " ".join([*env, shlex.quote(str(jupyter)), "lab", shlex.quote(str(path))])


def _runs_inside(folder: Path) -> list[str]:
    """Run folders directly inside ``folder`` (a runs_dir passed by mistake), the newest first."""
    try:
        subs = [d for d in folder.iterdir() if d.is_dir()]
    except OSError:
        return []
    found = [d for d in subs if (d / "groups.csv").exists()
             or any((d / e / "groups.parquet").exists() for e in ENTITY_TYPES)]
    return [str(d) for d in sorted(found, key=lambda d: d.name, reverse=True)]


def _check_database_holds(db_url: str, folder: Path) -> None:
    """A database given with a run folder must be the one that ran it (dedup_runs), or its truth and
    records would be measured against another CRM's."""
    import sqlalchemy as sa

    from crm import schema
    from crm.store import StoreError

    try:
        store = _open_store(db_url)
    except StoreError as exc:
        raise ReportError(str(exc)) from exc
    try:
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(schema.dedup_runs.c.id, schema.dedup_runs.c.folder)
                                 .where(schema.dedup_runs.c.id == folder.name)).first()
    except sa.exc.SQLAlchemyError as exc:
        raise ReportError(f"The database {store.display_url} has no crm-dedup runs table (dedup_runs): "
                          f"it cannot hold run {folder.name}. Pass the database the run read.") from exc
    finally:
        store.dispose()
    if found is None:
        raise ReportError(f"The database {store.display_url} holds no run {folder.name} (its dedup_runs table): "
                          f"{folder} was written by a run of another database. Pass that database with --db, "
                          "or leave --db out to report without figures against the truth.")


def _load_settings(folder: Path) -> MatchSettings:
    from scoring.settings import SettingsError

    path = folder / "settings.yaml"
    if not path.exists():
        log.warning("%s has no settings.yaml; the report assumes the default thresholds", folder)
        return MatchSettings()
    try:
        return MatchSettings.load(path)
    except SettingsError as exc:
        raise ReportError(f"{path}: {exc}") from exc


def _database_knowing(run_id: str) -> tuple[str | None, str | None]:
    """The default database if it recorded this run (so its demo truth belongs to it), else None and
    why not (no such database, or it has no such run)."""
    from crm.store import StoreError, hide_password

    shown = hide_password(default_db_url())
    try:
        store = _open_store(None)
    except StoreError:
        return None, f"there is no default database {shown}"
    import sqlalchemy as sa

    from crm import schema

    try:
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(schema.dedup_runs.c.id).where(schema.dedup_runs.c.id == run_id)).first()
    except sa.exc.SQLAlchemyError:  # a database without our schema
        found = None
    finally:
        store.dispose()
    return (store.url, None) if found else (None, f"the default database {shown} has no run {run_id}")


def _demo_truth(db_url: str, entity: str) -> pd.Series | None:
    from crm.demo import read_truth
    from crm.store import StoreError

    try:
        store = _open_store(db_url)
    except StoreError as exc:
        log.warning("no truth for %s: %s", entity, exc)
        return None
    try:
        truth = read_truth(store, entity)
    finally:
        store.dispose()
    return truth if len(truth) else None


# -- charts -------------------------------------------------------------------------------------

def _figure(width: float = 8.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever backend pyplot uses
    return fig


def _empty(fig: Figure, ax, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#555")
    ax.set_axis_off()
    return fig


def _panels(frame: pd.DataFrame, title: str, width: float = 8.0, height_each: float = 3.0):
    entities = list(dict.fromkeys(frame["entity_type"])) if len(frame) else []
    fig = _figure(width, height_each * max(len(entities), 1) + 0.4)
    axes = fig.subplots(max(len(entities), 1), 1, squeeze=False)[:, 0]
    fig.suptitle(title)
    return fig, axes, entities


def score_chart(scores: pd.DataFrame, thresholds: Thresholds | Mapping[str, float] | None = None,
                bins: int = 40) -> Figure:
    """Histogram of match weights (bits) per entity type, stacked by tier, with the thresholds drawn."""
    th = threshold_dict(thresholds)
    fig, axes, entities = _panels(scores, "Scored pairs by match weight")
    if not entities:
        return _empty(fig, axes[0], "No pair scored at or above the possible threshold.")
    scores = scores.assign(_bits=score_bits(scores))
    edges = np.histogram_bin_edges(np.concatenate([scores["_bits"], bits(list(th.values()))]), bins=bins)
    for ax, e in zip(axes, entities):
        s = scores[scores["entity_type"] == e]
        data = [s.loc[s["tier"] == t, "_bits"].to_numpy() for t in TIERS]
        ax.hist(data, bins=edges, stacked=True, color=[TIER_COLOURS[t] for t in TIERS], label=list(TIERS))
        for name, p in th.items():
            ax.axvline(float(bits(p)), color="#333", linestyle="--", linewidth=1)
            ax.annotate(f"{name} {p:g}", (float(bits(p)), 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=8,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_title(f"{e}: {len(s):,} pairs", fontsize=10, loc="left")
        ax.set_ylabel("pairs")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("match weight, bits (log2 odds); probability p = 1 / (1 + 2^-w)")
    return fig


def _bar_panels(frame: pd.DataFrame, label_col: str, title: str, xlabel: str, message: str,
                top: int = 15) -> Figure:
    """Horizontal bars per label, stacked by tier, one panel per entity type."""
    if frame.empty:
        fig = _figure(8, 2.5)
        return _empty(fig, fig.subplots(), message)
    heights = [min((frame["entity_type"] == e).sum(), top) for e in dict.fromkeys(frame["entity_type"])]
    fig = _figure(8, sum(0.32 * h + 0.9 for h in heights) + 0.4)
    entities = list(dict.fromkeys(frame["entity_type"]))
    axes = fig.subplots(len(entities), 1, squeeze=False, height_ratios=[h + 2 for h in heights])[:, 0]
    fig.suptitle(title)
    tiers = [t for t in TIERS if t in frame.columns]
    for ax, e in zip(axes, entities):
        f = frame[frame["entity_type"] == e].head(top).iloc[::-1]
        labels = f[label_col].astype(str).tolist()
        left = np.zeros(len(f))
        if tiers:
            for t in tiers:
                ax.barh(labels, f[t].to_numpy(), left=left, color=TIER_COLOURS[t], label=t)
                left += f[t].to_numpy()
            ax.legend(fontsize=8, loc="lower right")
        else:
            count = [c for c in ("groups", "pairs") if c in f.columns][0]
            ax.barh(labels, f[count].to_numpy(), color=NEUTRAL)
        ax.set_title(e, fontsize=10, loc="left")
        ax.tick_params(axis="y", labelsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel(xlabel)
    return fig


def criteria_chart(criteria: pd.DataFrame) -> Figure:
    """Pairs per matched criterion (Run.criteria), stacked by tier."""
    return _bar_panels(criteria, "criterion", "What the pairs matched on", "pairs",
                       "No pair scored at or above the possible threshold.")


def group_size_chart(sizes: pd.DataFrame) -> Figure:
    """Groups per size (Run.group_sizes), stacked by tier, one panel per entity type."""
    fig, axes, entities = _panels(sizes, "Duplicate groups by size", height_each=2.6)
    if not entities:
        return _empty(fig, axes[0], "No duplicate groups: every record stands alone.")
    for ax, e in zip(axes, entities):
        f = sizes[sizes["entity_type"] == e].sort_values("size")
        x = f["size"].astype(str).tolist()
        bottom = np.zeros(len(f))
        for t in TIERS:
            ax.bar(x, f[t].to_numpy(), bottom=bottom, color=TIER_COLOURS[t], label=t)
            bottom += f[t].to_numpy()
        ax.set_title(f"{e}: {int(f['groups'].sum()):,} groups", fontsize=10, loc="left")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("groups")
        ax.legend(fontsize=8)
    axes[-1].set_xlabel("records in the group")
    return fig


def primary_reason_chart(reasons: pd.DataFrame) -> Figure:
    """Groups per reason their primary won (Run.primary_reasons or Run.primary_reason_counts)."""
    if "groups" not in reasons.columns:
        reasons = _in_entity_order(reasons.groupby(["entity_type", "category"]).size().rename("groups").reset_index(),
                                   "groups", "category", ascending=[False, True])
    return _bar_panels(reasons, "category", "Why the primary record won", "groups",
                       "No duplicate groups, so no primary records were chosen.")


def waterfall_steps(contributions: Mapping[str, float], final_probability: float | None = None) -> pd.DataFrame:
    """From a pair's contributions ({"prior": bits, comparison: bits, ...}): one row per step with the
    running weight. Comparisons that added nothing (a side had no value) are left out."""
    prior = float(contributions.get("prior", 0.0))
    rows = [{"step": "prior", "bits": prior, "start": 0.0, "end": prior}]
    total = prior
    for name, w in contributions.items():
        if name == "prior" or not w:
            continue
        rows.append({"step": name, "bits": float(w), "start": total, "end": total + float(w)})
        total += float(w)
    out = pd.DataFrame(rows)
    out["probability"] = probability_of(out["end"])
    if final_probability is not None and abs(final_probability - float(out["probability"].iloc[-1])) > 1e-3:
        # a rule set this pair's probability apart from what the weights say (raised to certain, or held)
        out.attrs["final_probability"] = final_probability
    return out


def waterfall_chart(steps: pd.DataFrame, title: str = "", final_probability: float | None = None) -> Figure:
    """Start at the prior, one bar per comparison (green adds evidence, red takes it away), the final
    weight and probability annotated."""
    fig = _figure(8, 4.2)
    ax = fig.subplots()
    if steps.empty:
        return _empty(fig, ax, "No contributions recorded for this pair.")
    final_p = final_probability or steps.attrs.get("final_probability") or float(steps["probability"].iloc[-1])
    x = np.arange(len(steps))
    colours = [NEUTRAL if s == "prior" else (UP if b > 0 else DOWN) for s, b in zip(steps["step"], steps["bits"])]
    ax.bar(x, steps["end"] - steps["start"], bottom=steps["start"], color=colours, width=0.6)
    total = float(steps["end"].iloc[-1])
    ax.bar([len(steps)], [total], color="#37474f", width=0.6)
    for i, (b, end) in enumerate(zip(steps["bits"], steps["end"])):
        ax.annotate(f"{b:+.1f}", (i, end), ha="center", va="bottom" if b >= 0 else "top", fontsize=8,
                    xytext=(0, 2 if b >= 0 else -2), textcoords="offset points")
    for i in range(len(steps) - 1):
        ax.plot([i + 0.3, i + 0.7], [steps["end"].iloc[i]] * 2, color="#999", linewidth=0.8)
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_xticks(list(x) + [len(steps)], [*steps["step"].astype(str), "final"], rotation=30, ha="right")
    ax.set_ylabel("match weight, bits")
    by_rule = abs(final_p - float(probability_of(total))) > 1e-3
    ax.annotate(f"{total:+.1f} bits\np = {final_p:.4f}" + ("\n(set by a rule)" if by_rule else ""),
                (len(steps), total), ha="center",
                va="bottom" if total >= 0 else "top", fontsize=9, fontweight="bold",
                xytext=(0, 4 if total >= 0 else -4), textcoords="offset points")
    low = min(0.0, float(steps[["start", "end"]].min().min()))
    high = max(0.0, float(steps[["start", "end"]].max().max()))
    pad = 0.15 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set_title(title or "Evidence per comparison", fontsize=10, loc="left")
    return fig


def quality_fields(quality: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per entity type and field (role): records, values, filled, share_empty, invalid, placeholder,
    share_invalid, share_placeholder, examples. Empty when the run has no quality files."""
    f = quality.get("fields")
    if f is None or f.empty:
        return pd.DataFrame(columns=["entity_type", "role", "records", "values", "share_empty", "share_invalid",
                                     "share_placeholder"])
    values = f["values"].astype(float)
    return f.assign(share_placeholder=np.where(values > 0, f["placeholder"] / values.where(values > 0, 1), 0.0))


def quality_sources(quality: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per entity type and source (web, call, import...): records, values, invalid, placeholder and their
    shares over every field, and the mean share of fields left empty."""
    s = quality.get("sources")
    cols = ["entity_type", "source", "records", "values", "invalid", "placeholder", "share_invalid",
            "share_placeholder", "share_empty"]
    if s is None or s.empty:
        return pd.DataFrame(columns=cols)
    out = s.groupby(["entity_type", "source"], sort=True).agg(
        records=("records", "max"), values=("values", "sum"), invalid=("invalid", "sum"),
        placeholder=("placeholder", "sum"), share_empty=("share_empty", "mean")).reset_index()
    out["share_invalid"] = out["invalid"] / out["values"].where(out["values"] > 0, 1)
    out["share_placeholder"] = out["placeholder"] / out["values"].where(out["values"] > 0, 1)
    return _in_entity_order(out, "records", "source", ascending=[False, True])[cols]


def quality_source_chart(sources: pd.DataFrame) -> Figure:
    """quality_chart per source: where the bad data comes from."""
    return quality_chart(sources, label_col="source", title="Data quality per source",
                         labels={**QUALITY_SHARES, "share_empty": "empty (mean over fields)"})


QUALITY_SHARES = {"share_empty": "empty (of records)", "share_invalid": "invalid (of values)",
                  "share_placeholder": "placeholder (of values)"}


def quality_chart(frame: pd.DataFrame, label_col: str = "role", title: str = "Data quality per field",
                  labels: Mapping[str, str] | None = None) -> Figure:
    """Per field (or per source, with ``label_col="source"``): the share of records with no usable value
    and the shares of values that are invalid or placeholders, one panel per entity type."""
    if frame.empty:
        fig = _figure(8, 2.5)
        return _empty(fig, fig.subplots(), "No data-quality figures in this run (the file mode writes none).")
    value_columns = [c for c in QUALITY_SHARES if c in frame.columns]
    entities = list(dict.fromkeys(frame["entity_type"]))
    sizes = [int((frame["entity_type"] == e).sum()) for e in entities]
    fig = _figure(8, sum(0.3 * s * len(value_columns) ** 0.5 + 1.1 for s in sizes) + 0.4)
    axes = fig.subplots(len(entities), 1, squeeze=False, height_ratios=[s + 2 for s in sizes])[:, 0]
    fig.suptitle(title)
    palette = ["#90a4ae", "#c62828", "#f9a825"]
    for ax, e in zip(axes, entities):
        f = frame[frame["entity_type"] == e].iloc[::-1]
        y = np.arange(len(f))
        height = 0.8 / max(len(value_columns), 1)
        for k, col in enumerate(value_columns):
            ax.barh(y + 0.4 - (k + 0.5) * height, f[col].to_numpy(dtype=float) * 100, height=height,
                    color=palette[k % len(palette)], label=(labels or QUALITY_SHARES)[col])
        ax.set_yticks(y, f[label_col].astype(str).tolist(), fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_title(e, fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("%")
    return fig


def completeness_chart(records: pd.DataFrame) -> Figure:
    """How complete the records are (quality "records": share of the table's fields each one fills)."""
    fig, axes, entities = _panels(records, "Completeness per record", height_each=2.2)
    if not entities:
        return _empty(fig, axes[0], "No data-quality figures in this run (the file mode writes none).")
    edges = np.linspace(0, 1, 11)
    for ax, e in zip(axes, entities):
        c = records.loc[records["entity_type"] == e, "completeness"].astype(float)
        ax.hist(c, bins=edges, color="#1565c0", edgecolor="white")
        ax.set_title(f"{e}: mean {c.mean():.2f}", fontsize=10, loc="left")
        ax.set_ylabel("records")
        ax.set_xlim(0, 1)
    axes[-1].set_xlabel("share of the fields filled with a usable value")
    return fig


FIGURES = ("precision", "recall", "f1", "bcubed_precision", "bcubed_recall", "bcubed_f1")


def threshold_rows(table: pd.DataFrame, thresholds: Thresholds | Mapping[str, float] | None = None) -> pd.DataFrame:
    """Run.precision_recall to show (the HTML report, the notebook) as `crm-dedup evaluate` prints it: each
    threshold with every digit it has (threshold_text: 0.999979 and 0.999997 are two rows, not "1" twice),
    the figures with four decimals, and ``setting``, which of the settings' thresholds the row is
    (threshold_settings: "probable", "" for a decile). Text columns: for display, not for sums."""
    shown = table.assign(setting=threshold_settings(table["threshold"], threshold_dict(thresholds)),
                         threshold=table["threshold"].map(threshold_text))
    for col in FIGURES:
        if col in shown.columns:
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    return shown


def precision_recall_chart(table: pd.DataFrame, thresholds: Thresholds | Mapping[str, float] | None = None) -> Figure:
    """Pairwise precision, recall and F1 against the grouping threshold (Run.precision_recall).

    One step of the x axis per row of the table, not to scale: the rows are the settings' thresholds and
    the deciles of the scores, most of them between 0.999 and 1, where a probability or match-weight axis
    piles them up (and puts 1 wherever the clipping of the weight sends it). Each tick names its threshold;
    a setting's threshold is drawn at its row, or between the two rows around it."""
    th = threshold_dict(thresholds)
    fig, axes, entities = _panels(table, "Against the known truth: precision and recall by threshold", height_each=2.8)
    if not entities:
        return _empty(fig, axes[0], "No known truth for this run.")
    for ax, e in zip(axes, entities):
        f = table[table["entity_type"] == e].sort_values("threshold")
        values = f["threshold"].to_numpy(dtype=float)
        x = np.arange(len(f))
        for col, colour in (("precision", "#1565c0"), ("recall", "#c62828"), ("f1", "#2e7d32")):
            ax.plot(x, f[col], marker="o", color=colour, label=col, markersize=4)
        for name, p in th.items():
            if not values[0] <= p <= values[-1]:
                continue  # (a threshold the table has no row around: no place on this axis)
            at = float(np.interp(p, values, x))
            ax.axvline(at, color="#333", linestyle="--", linewidth=1)
            ax.annotate(name, (at, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                        ha="right", va="bottom", fontsize=8)
        ax.set_xticks(x, [threshold_text(t) for t in values], fontsize=8, rotation=35, ha="right",
                      rotation_mode="anchor")
        low = min(float(f[["precision", "recall", "f1"]].min().min()), 0.9)
        ax.set_ylim(max(low - 0.02, 0), 1.005)
        ax.set_title(e, fontsize=10, loc="left")
        # (beside the panel: inside, it hid the threshold names drawn at the bottom left)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    axes[-1].set_xlabel("threshold (one step per row of the table, not to scale)")
    return fig


# -- the HTML report --------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1100px;
padding:1rem 1.5rem;color:#212121;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.2rem .45rem;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}.note{color:#616161;font-size:.85rem}
pre{background:#f7f7f7;padding:.6rem;white-space:pre-wrap;font-size:.8rem}nav a{margin-right:.8rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dt{font-weight:600}
"""


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _img(fig: Figure, alt: str) -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, limit: int = 50) -> str:
    if frame.empty:
        return '<p class="note">Nothing to show.</p>'
    shown = frame.head(limit).copy()
    for col in shown.columns:
        if shown[col].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            shown[col] = shown[col].map(lambda v: ", ".join(map(str, v)))
    out = shown.to_html(index=False, escape=True, border=0, na_rep="", float_format=lambda v: f"{v:.4g}")
    if len(frame) > limit:
        out += f'<p class="note">First {limit:,} of {len(frame):,} rows.</p>'
    return out


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(str(text))}</p>"


def render_html(run: Run, waterfalls: int = 3) -> str:
    """The whole report as one HTML string: images inline, every text escaped, no scripts."""
    th = run.thresholds
    sections: list[tuple[str, str, list[str]]] = []

    overview = run.overview()
    meta = {"Run": run.run_id, "Folder": str(run.folder), "Mode": run.mode,
            "Entity types": ", ".join(run.entity_types),
            "Thresholds": ", ".join(f"{t} {v:g}" for t, v in th.items()),
            "Model": run.settings.model, "Generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in meta.items())
    sections.append(("overview", "Overview", [f"<dl>{dl}</dl>", _table(overview), _table(run.counts())]))

    if run.has_truth:
        pr = run.precision_recall()
        sections.append(("truth", "Against the known truth", [
            _p("Pairwise and B-cubed figures of this run's groups against the known real entities:"),
            _table(run.evaluation()),
            _img(precision_recall_chart(pr, th), "precision and recall by threshold"),
            _p("If the groups were the connected pairs at or above each threshold (no chain guard); the thresholds "
               "are the settings' possible, probable and certain (named under setting) and the deciles of each "
               "entity type's pair scores:", "note"),
            # (every digit of a threshold: "{:.4g}" showed 0.999979 and 0.999997 both as 1)
            _table(threshold_rows(pr, th)[
                ["entity_type", "threshold", "precision", "recall", "f1", "predicted_pairs", "true_pairs",
                 "held_pairs", "setting"]]),
            _p(HELD_NOTE.format(possible=th["possible"]), "note")]))
    else:
        sections.append(("truth", "Against the known truth", [_p(run.no_truth_reason(), "note")]))

    scores = run.pair_scores()
    sections.append(("scores", "Score distribution", [
        _img(score_chart(scores, th), "histogram of pair scores with thresholds"),
        _p(f"Pairs at or above the possible threshold ({th['possible']:g}) are kept; pairs at or above probable "
           f"({th['probable']:g}) form groups; certain ({th['certain']:g}) may merge without a person.", "note")]))

    crit = run.criteria()
    sections.append(("criteria", "What the pairs matched on", [
        _img(criteria_chart(crit), "pairs per matched criterion"), _table(crit),
        "<h3>Blocking rules that proposed the pairs</h3>", _table(run.blocking_rules())]))

    sizes = run.group_sizes()
    groups = run.groups().sort_values(["size", "score"], ascending=[False, False])
    sections.append(("groups", "Groups", [
        _img(group_size_chart(sizes), "groups by size"), _table(sizes),
        "<h3>Largest groups</h3>",
        _table(groups[["entity_type", "group_id", "size", "tier", "score", "member_ids", "criteria", "reason"]], 20),
        "<h3>Left out of their group</h3>", *_left_out_parts(run.left_out(), run.mode == "database")]))

    reasons = run.primary_reasons()
    sections.append(("primary", "Why the primary won", [
        _img(primary_reason_chart(reasons), "why the primary record won"), _table(run.primary_reason_counts())]))

    uncertain = run.uncertain_pairs(20)
    parts = [_p(f"The pairs closest to the probable threshold ({th['probable']:g}): a person's look there "
                "settles most of what the model is unsure about."), _table(uncertain, 20)]
    for row in run.uncertain_pairs(waterfalls, distinct=True).itertuples(index=False):
        steps = run.waterfall(row.id_a, row.id_b, row.entity_type)
        parts += [f"<h3>{html.escape(f'{row.entity_type} {row.id_a} / {row.id_b}')}</h3>",
                  _img(waterfall_chart(steps, f"{row.entity_type} {row.id_a} / {row.id_b}", row.probability),
                       f"evidence for {row.entity_type} pair {row.id_a} / {row.id_b}"),
                  _p(row.explanation, "note")]
    held = run.held_pairs()
    if len(held):
        parts += ["<h3>Held at possible by a rule</h3>",
                  _p(f"{len(held):,} pairs a hold rule keeps at possible whatever their weight (their probability "
                     "is the rule's cap, not the model's call), so they are not among the pairs above; the "
                     "strongest by the model's own weight first:", "note"),
                  _table(held.drop(columns=["probability"]), 20)]
    sections.append(("uncertain", "Pairs to look at first", parts))

    leads = run.lead_clients()
    if len(leads):
        sections.append(("leads", "Leads matching existing clients", [_p(leads_sentence(leads)), _table(leads, 30)]))

    quality = run.quality()
    q_parts = []
    for e, text in run.quality_text().items():
        q_parts += [f"<h3>{html.escape(e)}</h3>", f"<pre>{html.escape(text)}</pre>"]
    if quality:
        fields, sources = quality_fields(quality), quality_sources(quality)
        q_parts += ["<h3>Per field</h3>", _img(quality_chart(fields), "data quality per field"),
                    _table(fields.drop(columns=["records"], errors="ignore"), 100)]
        if len(sources):
            q_parts += ["<h3>Per source</h3>", _img(quality_source_chart(sources), "data quality per source"),
                        _table(sources, 100)]
        if "records" in quality:
            q_parts += ["<h3>Completeness per record</h3>",
                        _img(completeness_chart(quality["records"]), "completeness per record")]
        if "shared" in quality:
            q_parts += ["<h3>Values shared by suspiciously many records</h3>", _table(quality["shared"], 30)]
    sections.append(("quality", "Data quality",
                     q_parts or [_p("This run has no data-quality files (the file mode writes none).", "note")]))

    weights = run.model_weights()
    sections.append(("model", "Model: evidence per comparison level", [
        _p("m: how often true duplicates show the level; u: how often unrelated records do; bits = log2(m/u).",
           "note"), _table(weights, 200)]))

    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'
                   for sid, title, parts in sections)
    title = html.escape(f"crm-dedup report: run {run.run_id}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{title}</title><style>{CSS}</style></head>'
            f"<body><h1>{title}</h1><nav>{nav}</nav>{body}</body></html>\n")


def _left_out_parts(left: pd.DataFrame, database: bool) -> list[str]:
    if left.empty:
        return [_p("No record is left out: every record probable or better with a group's member is in that group.",
                   "note")]
    return [_p(f"{len(left):,} record{'s are' if len(left) != 1 else ' is'} in no group although probable or better "
               "with a member of one: a hold rule (held_apart) or a \"not duplicates\" mark kept "
               f"{'them' if len(left) != 1 else 'it'} out, and merging the group leaves "
               f"{'them' if len(left) != 1 else 'it'} behind."
               + (" `crm-dedup include GROUP_ID ID` adds one to its group." if database else ""), "note"),
            _table(left, 50)]


HELD_NOTE = ("Pairs a hold rule keeps at possible (held_pairs: only names agree, different first names...) stay "
             "possible whatever the threshold, so they are left out of the predicted pairs at every threshold "
             "above possible ({possible:g}); the probability stored for them is the rule's cap, not a score.")


def leads_sentence(leads: pd.DataFrame) -> str:
    """How many leads look like a client, and in how many pairs (a lead may match several clients)."""
    n_leads = leads["lead_id"].nunique() if "lead_id" in leads.columns else len(leads)
    return (f"{n_leads:,} lead{'s' if n_leads != 1 else ''} look{'s' if n_leads == 1 else ''} like an existing "
            f"contact or company ({len(leads):,} lead-client pair{'s' if len(leads) != 1 else ''}).")


def write_html_report(folder: Path | Run, out: Path | None = None, *, db_url: str | None = None,
                      truth=None) -> Path:
    """Write the run's self-contained HTML report (folder/report.html unless ``out``) and return its path.
    ``folder`` may also be an opened Run (``Run.resolve(run_or_id, db)`` for ``crm-dedup report RUN``)."""
    run = folder if isinstance(folder, Run) else Run.open(folder, db_url=db_url, truth=truth)
    out = Path(out) if out else run.folder / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(run), encoding="utf-8")
    log.info("report for run %s written to %s", run.run_id, out)
    return out
