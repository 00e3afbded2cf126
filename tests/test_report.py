"""The report API (scoring.report) on real runs: a demo CRM run of the database mode, a file-mode run,
a run with no duplicates; the chart functions on small hand-made frames; the HTML report in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring import report
from scoring.report import ReportError, Run

ARTIFACTS = Path(__file__).parent / "artifacts"
PNG = b"\x89PNG\r\n\x1a\n"
ENTITIES = ["contact", "company", "lead"]


# -- building real runs (also used by test_notebooks.py) -----------------------------------------

def build_demo_run(base: Path, db_url: str | None = None, sizes=(400, 150, 150), seed: int = 1) -> tuple[str, str]:
    """A demo CRM and one completed dedup run over it, through the pipeline's own steps (no Prefect).
    Returns (database URL, run folder)."""
    from crm.demo import DemoSizes, generate_demo
    from crm.store import Store

    db_url = db_url or f"sqlite:///{base}/crm.db"
    store = Store(db_url)
    store.migrate()
    generate_demo(store, DemoSizes(contacts=sizes[0], companies=sizes[1], leads=sizes[2]), seed=seed)
    store.dispose()
    return db_url, run_steps(db_url, base)


def run_steps(db_url: str, base: Path, match: dict | None = None) -> str:
    """One completed dedup run of the database through the pipeline's own steps (no Prefect), its
    folder under ``base``/runs; ``match``: settings of the match section. Returns the run folder."""
    from crm import proposals
    from crm.store import Store
    from pipelines import steps
    from pipelines.settings import Settings

    settings = Settings.model_validate({"match": {"random_pairs": 100_000, **(match or {})},
                                        "pipeline": {"runs_dir": str(base / "runs")}})
    run_id, folder = steps.new_run(db_url, ENTITIES, settings.pipeline.runs_dir)
    saved = steps.save_settings(settings, folder)
    for entity in ENTITIES:
        steps.quality_step(db_url, entity, folder, saved)
        steps.find_step(db_url, entity, folder, saved)
    steps.leads_to_clients_step(db_url, folder, saved)
    steps.propose_step(db_url, run_id, folder, ENTITIES, saved)
    summary = steps.run_summary(folder, ENTITIES)
    (Path(folder) / "summary.json").write_text(json.dumps(summary, default=str))
    store = Store(db_url)
    proposals.finish_run(store, run_id, "completed", summary)
    store.dispose()
    return folder


def demo_contacts_file(db_url: str, path: Path) -> pd.Series:
    """The demo contacts as a flat CSV (one phone and one email column each, as an export would have);
    returns the truth (contact id -> cluster)."""
    from crm.demo import read_truth
    from crm.store import Store

    store = Store(db_url)
    rec = store.read_entities("contact")
    comm = store.read_communications("contact")
    first = comm.drop_duplicates(["entity_id", "type"]).pivot(index="entity_id", columns="type", values="value")
    flat = rec.set_index("id")[["last_name", "first_name", "middle_name", "birthdate"]].join(
        first.reindex(columns=["phone", "email"]))
    flat.rename_axis("contact_id").reset_index().to_csv(path, index=False)
    truth = read_truth(store, "contact")
    store.dispose()
    return truth


CONTACT_MAP = {"last_name": ["last_name"], "first_name": ["first_name"], "middle_name": ["middle_name"],
               "birthdate": ["birthdate"], "phone": ["phone"], "email": ["email"]}


def build_file_run(csv: Path, out: Path, mapping=CONTACT_MAP, id_column: str = "contact_id",
                   model_path: Path | None = None) -> Path:
    from scoring.files import find_in_file
    from scoring.settings import MatchSettings

    settings = MatchSettings(random_pairs=100_000, model_path=str(model_path) if model_path else None)
    result = find_in_file(csv, "contact", mapping, id_column, settings)
    result.write(out, settings)
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[str, str]:
    return build_demo_run(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def file_run(demo_run, tmp_path_factory) -> tuple[Path, pd.Series]:
    base = tmp_path_factory.mktemp("file")
    truth = demo_contacts_file(demo_run[0], base / "contacts.csv")
    return build_file_run(base / "contacts.csv", base / "out"), truth


@pytest.fixture(scope="module")
def distinct_run(file_run, tmp_path_factory) -> Path:
    """Five different people: no duplicates at all. Scored with the model trained on the demo contacts
    (five records are too few to train one: see the report of this change)."""
    base = tmp_path_factory.mktemp("distinct")
    pd.DataFrame({
        "contact_id": [1, 2, 3, 4, 5],
        "last_name": ["Иванов", "Smith", "Петрова", "García", "Кузнецов"],
        "first_name": ["Пётр", "John", "Анна", "Lucía", "Михаил"],
        "middle_name": ["Сергеевич", None, "Игоревна", None, "Юрьевич"],
        "birthdate": ["1980-02-11", "1975-07-30", None, "1991-12-01", "1966-03-15"],
        "phone": ["+7 495 111-22-33", "+1 212 555 0100", "8 (812) 222-33-44", "+34 91 123 45 67", "+7 903 765-43-21"],
        "email": ["ivanov@mail.ru", "john.smith@example.com", "anna.p@yandex.ru", "lucia@correo.es", "mk@rambler.ru"],
    }).to_csv(base / "people.csv", index=False)
    return build_file_run(base / "people.csv", base / "out", model_path=file_run[0] / "model.json")


# -- small pure helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize("reason, tie, expected", [
    ("most linked records (3 vs 1 for #12)", False, "most linked records"),
    ("modified most recently (2024-01-02 10:00 vs 2023-05-01 09:00 for #7)", False, "modified most recently"),
    ("editable by you (yes vs no for #3)", False, "editable by you"),
    ("all criteria equal; tie broken by the lowest id (4)", True, "tie: lowest id"),
    ("all criteria equal", True, "tie: left for a person"),
    ("", False, "not recorded"),
    (None, False, "not recorded"),
])
def test_reason_category(reason, tie, expected):
    assert report.reason_category(reason, tie) == expected


def test_bits_and_probability_are_inverse():
    p = np.array([0.5, 0.9, 0.995, 0.01])
    assert np.allclose(report.probability_of(report.bits(p)), p)
    assert report.bits([0.5])[0] == 0
    assert np.isfinite(report.bits([0.0, 1.0])).all()


def test_score_bits_follow_the_probability_a_rule_may_have_set():
    scores = pd.DataFrame({"probability": [1.0, 0.995, 0.7, 0.9], "weight": [25.0, 2.0, 20.0, 3.17]})
    # p rounded to 1.0 says little: the weight; a rule raised pair 2 to certain and held pair 3 back
    assert report.score_bits(scores) == pytest.approx(
        [25.0, float(report.bits(0.995)), float(report.bits(0.7)), float(report.bits(0.9))])


def test_waterfall_steps_run_from_prior_to_total():
    steps = report.waterfall_steps({"prior": -5.0, "last_name": 6.5, "first_name": 0.0, "phone": 8.0,
                                    "birthdate": -3.0})
    assert steps["step"].tolist() == ["prior", "last_name", "phone", "birthdate"]  # no evidence, no bar
    assert steps["start"].tolist() == [0.0, -5.0, 1.5, 9.5]
    assert steps["end"].tolist() == [-5.0, 1.5, 9.5, 6.5]
    assert steps["probability"].iloc[-1] == pytest.approx(1 / (1 + 2 ** -6.5))


# -- charts on hand-made frames --------------------------------------------------------------------

def _axes_with_data(fig):
    return [ax for ax in fig.axes if ax.has_data()]


def test_waterfall_chart_colours_bars_by_direction():
    steps = report.waterfall_steps({"prior": -4.0, "email": 7.0, "birthdate": -2.0})
    fig = report.waterfall_chart(steps, "a / b", final_probability=0.7)
    ax = fig.axes[0]
    colours = [tuple(round(c, 3) for c in p.get_facecolor()[:3]) for p in ax.patches]
    as_rgb = {name: tuple(round(int(h[i:i + 2], 16) / 255, 3) for i in (1, 3, 5))
              for name, h in (("up", report.UP), ("down", report.DOWN), ("neutral", report.NEUTRAL))}
    assert colours[:3] == [as_rgb["neutral"], as_rgb["up"], as_rgb["down"]]
    assert len(ax.patches) == 4  # prior, two comparisons, the final bar
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "+7.0" in texts and "-2.0" in texts and "p = 0.7000" in texts
    assert report.figure_png(fig).startswith(PNG)


def test_score_chart_draws_each_threshold():
    scores = pd.DataFrame({"entity_type": ["contact"] * 4 + ["company"] * 2,
                           "probability": [0.55, 0.93, 0.999, 0.9999, 0.6, 0.97],
                           "tier": ["possible", "probable", "certain", "certain", "possible", "probable"]})
    th = {"certain": 0.995, "probable": 0.9, "possible": 0.5}
    fig = report.score_chart(scores, th)
    assert len(_axes_with_data(fig)) == 2
    for ax in fig.axes:
        xs = sorted(round(line.get_xdata()[0], 3) for line in ax.lines)
        assert xs == sorted(round(float(report.bits(p)), 3) for p in th.values())
    assert report.figure_png(fig).startswith(PNG)


@pytest.mark.parametrize("chart, frame", [
    (report.criteria_chart, pd.DataFrame({"entity_type": ["contact", "contact"], "criterion": ["phone", "email"],
                                          "certain": [3, 1], "probable": [1, 0], "possible": [0, 2],
                                          "pairs": [4, 3]})),
    (report.group_size_chart, pd.DataFrame({"entity_type": ["lead", "lead"], "size": [2, 3], "certain": [5, 1],
                                            "probable": [2, 0], "possible": [0, 0], "groups": [7, 1]})),
    (report.primary_reason_chart, pd.DataFrame({"entity_type": ["contact"] * 3, "category": [
        "most linked records", "most linked records", "tie: lowest id"]})),
    (report.quality_chart, pd.DataFrame({"entity_type": ["contact", "contact"], "role": ["phone", "email"],
                                         "share_empty": [0.1, 0.3], "share_invalid": [0.05, 0.01],
                                         "share_placeholder": [0.02, 0.0]})),
    (report.quality_source_chart, pd.DataFrame({"entity_type": ["lead"] * 2, "source": ["web", "import"],
                                                "share_empty": [0.2, 0.4], "share_invalid": [0.0, 0.1]})),
    (report.completeness_chart, pd.DataFrame({"entity_type": ["company"] * 3, "completeness": [0.2, 0.5, 1.0]})),
    (report.precision_recall_chart, pd.DataFrame({"entity_type": ["contact"] * 3, "threshold": [0.5, 0.9, 0.99],
                                                  "precision": [0.9, 0.98, 1.0], "recall": [1.0, 0.97, 0.9],
                                                  "f1": [0.947, 0.975, 0.947]})),
])
def test_charts_draw_hand_made_frames(chart, frame):
    fig = chart(frame)
    assert _axes_with_data(fig), "the chart drew nothing"
    assert report.figure_png(fig).startswith(PNG)


@pytest.mark.parametrize("chart", [report.score_chart, report.criteria_chart, report.group_size_chart,
                                   report.primary_reason_chart, report.quality_chart, report.quality_source_chart,
                                   report.completeness_chart, report.precision_recall_chart])
def test_charts_say_so_when_there_is_nothing(chart):
    fig = chart(pd.DataFrame(columns=["entity_type", "probability", "tier", "criterion", "size", "role",
                                      "source", "completeness", "category", "threshold", "precision", "recall",
                                      "f1", *report.TIERS]))
    assert not _axes_with_data(fig)
    assert any(t.get_text() for ax in fig.axes for t in ax.texts)
    assert report.figure_png(fig).startswith(PNG)


def test_primary_reason_chart_counts_categories():
    fig = report.primary_reason_chart(pd.DataFrame({"entity_type": ["contact"] * 3, "category": [
        "most linked records", "most linked records", "tie: lowest id"]}))
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths == [1, 2]


# -- opening runs -----------------------------------------------------------------------------------

def test_open_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ReportError, match="no run folder"):
        Run.open(tmp_path / "missing")
    with pytest.raises(ReportError, match="is not a run folder"):
        Run.open(tmp_path)


def test_latest_without_a_completed_run(tmp_path):
    from crm.store import Store

    url = f"sqlite:///{tmp_path}/empty.db"
    Store(url).migrate()
    with pytest.raises(ReportError, match="no completed dedup run"):
        Run.latest(url)


# -- a database-mode run of the demo CRM --------------------------------------------------------------

def test_latest_and_resolve_open_the_run(demo_run):
    db_url, folder = demo_run
    run = Run.latest(db_url)
    assert run.folder == Path(folder) and run.mode == "database" and run.entity_types == ENTITIES
    assert Run.resolve(run.run_id, db_url).folder == run.folder
    assert Run.resolve(folder).run_id == run.run_id
    with pytest.raises(ReportError, match="neither a run folder nor a run id"):
        Run.resolve("20990101T000000-nothing", db_url)


def test_overview_and_counts_agree_with_the_files(demo_run):
    _, folder = demo_run
    run = Run.open(folder)
    overview = run.overview().set_index("entity_type")
    counts = run.counts()
    for e in ENTITIES:
        summary = json.loads((Path(folder) / e / "summary.json").read_text())
        gt = pd.read_parquet(Path(folder) / e / "group_table.parquet")
        assert overview.loc[e, "records"] == summary["records"]
        assert overview.loc[e, "scored_pairs"] == summary["scored_pairs"]
        assert overview.loc[e, "groups"] == summary["groups"] == len(gt)
        assert overview.loc[e, "records_in_groups"] == summary["records_in_groups"]
        c = counts[counts["entity_type"] == e].set_index("tier")
        assert c["groups"].sum() == len(gt)
        for t in report.TIERS:
            assert c.loc[t, "groups"] == summary["groups_per_tier"][t]
        assert c["pairs"].sum() == summary["scored_pairs"]
    assert overview["groups"].sum() > 0, "the demo has duplicates"


def test_score_distribution_counts_every_pair(demo_run):
    run = Run.open(demo_run[1])
    dist = run.score_distribution(bins=20)
    assert dist.groupby("entity_type")["pairs"].sum().to_dict() == run.pairs().groupby("entity_type").size().to_dict()
    assert (dist["low"] < dist["high"]).all()


def test_criteria_count_the_pairs_that_matched_on_them(demo_run):
    run = Run.open(demo_run[1])
    crit = run.criteria()
    pairs = run.pairs()
    for row in crit.itertuples(index=False):
        p = pairs[pairs["entity_type"] == row.entity_type]
        if row.criterion == report.NICKNAME_CRITERION:
            expected = p["explanation"].str.contains("same after nicknames", regex=False)
        elif row.criterion == report.NO_CRITERION:
            expected = (p["criteria"] == "") & ~p["explanation"].str.contains("same after nicknames", regex=False)
        else:
            expected = p["criteria"].str.split(",").map(lambda ws, c=row.criterion: c in ws)
        assert row.pairs == expected.sum(), row
        assert row.certain + row.probable + row.possible == row.pairs
    contact = set(crit.loc[crit["entity_type"] == "contact", "criterion"])
    assert {"phone", "email", "name", report.NICKNAME_CRITERION} <= contact


def test_blocking_rules_join_candidates_and_scored_pairs(demo_run):
    run = Run.open(demo_run[1])
    rules = run.blocking_rules()
    assert {"entity_type", "rule", "candidates", "scored_pairs"} <= set(rules.columns)
    phone = rules[(rules["entity_type"] == "contact") & (rules["rule"] == "phone")].iloc[0]
    assert 0 < phone["scored_pairs"] <= phone["candidates"]


def test_group_sizes_and_primary_reasons(demo_run):
    run = Run.open(demo_run[1])
    sizes = run.group_sizes()
    groups = run.groups()
    assert sizes["groups"].sum() == len(groups)
    assert (sizes["size"] * sizes["groups"]).sum() == groups["size"].sum()
    reasons = run.primary_reasons()
    assert len(reasons) == len(groups)
    assert reasons["category"].str.len().gt(0).all() and not reasons["category"].str.contains(r"\(").any()
    assert "not recorded" not in set(reasons["category"])
    counts = run.primary_reason_counts()
    assert counts["groups"].sum() == len(groups)
    # the primary is the first member, as the find orders them
    assert (groups["member_ids"].str[0] == groups["primary_id"]).all()


def test_waterfall_of_a_pair_ends_at_its_weight(demo_run):
    run = Run.open(demo_run[1])
    pairs = run.pairs("contact")
    for row in pairs.sample(5, random_state=0).itertuples(index=False):
        steps = run.waterfall(row.id_b, row.id_a, "contact")  # either order
        assert steps["step"].iloc[0] == "prior"
        assert steps["end"].iloc[-1] == pytest.approx(row.weight, abs=0.01 * len(steps))
    wide = run.contributions("contact")
    assert "prior" in wide.columns and len(wide) == len(pairs)
    with pytest.raises(ReportError, match="no scored contact pair"):
        run.waterfall(-1, -2, "contact")
    with pytest.raises(ReportError, match="name the entity_type"):
        run.waterfall(1, 2)


def test_uncertain_pairs_are_the_closest_to_the_probable_threshold(demo_run):
    run = Run.open(demo_run[1])
    top = run.uncertain_pairs(10)
    assert len(top) == 10 and top["distance_bits"].is_monotonic_increasing
    from scoring.evaluate import held_mask

    pairs = run.pairs()
    model_calls = pairs[~held_mask(pairs)]  # held pairs are listed apart (held_pairs)
    all_distances = np.abs(report.bits(model_calls["probability"]) - report.bits(run.thresholds["probable"]))
    assert top["distance_bits"].iloc[-1] <= np.sort(all_distances)[10] + 0.01
    assert not top["explanation"].str.contains("Held at possible").any()
    distinct = run.uncertain_pairs(5, distinct=True)
    assert distinct[["entity_type", "explanation"]].drop_duplicates().shape[0] == len(distinct) == 5


def test_quality_frames_per_field_and_source(demo_run):
    run = Run.open(demo_run[1])
    quality = run.quality()
    assert quality, "the dedup run writes quality_*.parquet"
    for name, frame in quality.items():
        assert set(frame["entity_type"]) <= set(ENTITIES), name
    assert {"fields", "shared", "records", "sources"} <= set(quality)
    fields = report.quality_fields(quality)
    assert set(fields["entity_type"]) == set(ENTITIES)
    phone = fields[(fields["entity_type"] == "contact") & (fields["role"] == "phone")].iloc[0]
    assert phone["share_placeholder"] == pytest.approx(phone["placeholder"] / phone["values"])
    assert fields[["share_empty", "share_invalid", "share_placeholder"]].stack().between(0, 1).all()
    sources = report.quality_sources(quality)
    raw = quality["sources"]
    for row in sources.sample(5, random_state=0).itertuples(index=False):
        part = raw[(raw["entity_type"] == row.entity_type) & (raw["source"] == row.source)]
        assert row.invalid == part["invalid"].sum() and row.values == part["values"].sum()
    records = quality["records"]
    assert len(records[records["entity_type"] == "contact"]) == run.overview().set_index("entity_type").loc[
        "contact", "records"]
    assert set(run.quality_text()) == set(ENTITIES)


def test_truth_from_the_demo_database(demo_run):
    db_url, folder = demo_run
    run = Run.open(folder, db_url=db_url)
    assert run.has_truth
    ev = run.evaluation().set_index("entity_type")
    assert set(ev.index) == set(ENTITIES)
    assert ev["precision"].between(0, 1).all() and ev["recall"].between(0, 1).all()
    pr = run.precision_recall()
    assert set(run.thresholds.values()) <= set(pr["threshold"])
    for e, f in pr.groupby("entity_type"):
        # a higher threshold keeps fewer pairs: recall can only fall
        assert f.sort_values("threshold")["recall"].is_monotonic_decreasing, e
    # the same figures scoring.evaluate gives for the run's own groups
    from crm.demo import read_truth
    from crm.store import Store
    from scoring.evaluate import evaluate_groups

    g = pd.read_parquet(Path(folder) / "contact" / "groups.parquet")
    truth = read_truth(Store(db_url), "contact").reindex(g["id"])
    direct = evaluate_groups(pd.Series(g["group_id"].to_numpy(), index=g["id"]), truth)
    assert ev.loc["contact", "f1"] == pytest.approx(direct["f1"])


def test_truth_given_explicitly_wins_and_must_name_the_entity(demo_run):
    run = Run.open(demo_run[1], truth={"contact": pd.Series({1: "x", 2: "x"})})
    with pytest.raises(ReportError, match="dict entity_type"):
        Run.open(demo_run[1], truth=pd.Series({1: "x"})).truth("contact")
    truth = run.truth("contact")
    assert truth.loc[1] == truth.loc[2] == "x"
    assert truth.nunique() == len(truth) - 1  # the others: one entity each
    assert run.truth("company") is None


def test_lead_clients(demo_run):
    leads = Run.open(demo_run[1]).lead_clients()
    assert len(leads) and set(leads["client_type"]) <= {"contact", "company"}


def test_leads_vs_clients_reuse_what_the_finds_normalised(demo_run, tmp_path, monkeypatch):
    """Leads vs clients takes the records the run's finds normalised (prepared_*.parquet) instead of
    reading and normalising every contact and company again; in a folder without them it reads and
    normalises them itself. Both give the same pairs."""
    from pipelines import steps

    db_url, folder = demo_run
    settings = str(Path(folder) / "settings.yaml")
    in_run = pd.read_parquet(Path(folder) / "lead_clients.parquet")

    def no_reading(*args, **kwargs):
        raise AssertionError("the records were read from the database again")

    with monkeypatch.context() as m:
        m.setattr(steps, "load_role_table", no_reading)
        again = pd.read_parquet(steps.leads_to_clients_step(db_url, folder, settings))
    pd.testing.assert_frame_equal(again, in_run)
    alone = pd.read_parquet(steps.leads_to_clients_step(db_url, str(tmp_path), settings))
    pd.testing.assert_frame_equal(alone, in_run)
    assert len(in_run) and set(in_run["client_type"]) == {"contact", "company"}
    pd.testing.assert_frame_equal(_leads_vs_clients_as_before(db_url, settings), in_run)


def _leads_vs_clients_as_before(db_url: str, settings_path: str) -> pd.DataFrame:
    """The reference: leads vs clients as it was done before the finds' normalised records were
    reused (one table of the leads' and the clients' raw records, normalised together)."""
    from crm.readers import load_role_table
    from crm.store import Store
    from matchers.table import RoleTable
    from pipelines.settings import Settings
    from scoring.find import find_duplicates

    settings = Settings.load(settings_path)
    store = Store(db_url)
    leads, rows = load_role_table(store, "lead"), []
    for client, columns in (("contact", ["last_name", "first_name", "middle_name"]), ("company", ["company"])):
        other = load_role_table(store, client)
        lead_rec = leads.records[[c for c in columns if c in leads.records.columns]]
        combined = RoleTable("lead", pd.concat([
            lead_rec.set_axis("L" + lead_rec.index.astype(str)),
            other.records.set_axis(client[0].upper() + other.records.index.astype(str))[list(lead_rec.columns)]]),
            pd.concat([leads.values.assign(id="L" + leads.values["id"].astype(str)),
                       other.values.assign(id=client[0].upper() + other.values["id"].astype(str))], ignore_index=True))
        p = find_duplicates(combined, settings.match).pairs
        nameless = p["explanation"].str.contains("no names to compare")  # shared channels, no names: shown
        for r in p[(p["id_a"].str[0] != p["id_b"].str[0]) & (p["tier"].isin(["certain", "probable"]) | nameless)
                   ].itertuples():
            lead, other_id = (r.id_a, r.id_b) if r.id_a.startswith("L") else (r.id_b, r.id_a)
            rows.append({"lead_id": int(lead[1:]), "client_type": client, "client_id": int(other_id[1:]),
                         "probability": r.probability, "tier": r.tier, "explanation": r.explanation})
    store.dispose()
    frame = pd.DataFrame(rows, columns=["lead_id", "client_type", "client_id", "probability", "tier", "explanation"])
    return frame.sort_values(["probability", "lead_id"], ascending=[False, True]).reset_index(drop=True)


def test_html_report_of_the_demo_run(demo_run):
    db_url, folder = demo_run
    path = report.write_html_report(Path(folder), db_url=db_url)
    assert path == Path(folder) / "report.html"
    text = path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # scores, criteria, sizes, reasons, three waterfalls, quality, precision/recall
    assert len(images) >= 9
    import base64

    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text), "external resources"
    for heading in ("Score distribution", "What the pairs matched on", "Why the primary won",
                    "Pairs to look at first", "Data quality", "Against the known truth"):
        assert heading in text


def test_html_report_escapes_every_text(demo_run, tmp_path):
    """Record ids and explanations come from user data: they must show as text."""
    import shutil

    folder = tmp_path / Path(demo_run[1]).name
    shutil.copytree(demo_run[1], folder)
    gt_path = folder / "contact" / "group_table.parquet"
    gt = pd.read_parquet(gt_path)
    gt.loc[0, "criteria"] = "<script>alert(1)</script>"
    gt.loc[0, "reason"] = "most linked records (<b>3</b> vs 1)"
    gt.to_parquet(gt_path, index=False)
    text = report.write_html_report(folder, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>3</b>" not in text


def test_latest_run_and_its_truth_on_each_backend(db_url, tmp_path):
    """Run.latest, Run.resolve by id and the demo truth read the same on SQLite and PostgreSQL."""
    url, folder = build_demo_run(tmp_path, db_url, sizes=(200, 80, 80), seed=3)
    run = Run.latest(url)
    assert run.folder == Path(folder) and run.db_url == url
    assert Run.resolve(run.run_id, url).folder == run.folder
    assert run.has_truth
    truth = run.truth("contact")
    assert len(truth) == run.overview().set_index("entity_type").loc["contact", "records"]
    assert truth.str.startswith("contact:").all()  # the demo's cluster format
    assert set(run.evaluation()["entity_type"]) == set(ENTITIES)
    # `crm-dedup report RUN_ID`: resolve the id, write the report where asked
    path = report.write_html_report(Run.resolve(run.run_id, url), tmp_path / "out" / "r.html")
    assert path.exists() and "Against the known truth" in path.read_text(encoding="utf-8")


def test_a_broken_contributions_row_is_named_and_the_rest_goes_on(demo_run, tmp_path, caplog):
    import shutil

    folder = tmp_path / Path(demo_run[1]).name
    shutil.copytree(demo_run[1], folder)
    path = folder / "company" / "pairs.parquet"
    pairs = pd.read_parquet(path)
    pairs.loc[0, "contributions"] = "{not json"
    pairs.to_parquet(path, index=False)
    run = Run.open(folder)
    a, b = pairs.loc[0, "id_a"], pairs.loc[0, "id_b"]
    with pytest.raises(ReportError, match=f"company pair {a} / {b}"):
        run.waterfall(a, b, "company")
    wide = run.contributions("company")
    assert len(wide) == len(pairs) and wide["prior"].notna().sum() == len(pairs) - 1
    assert f"company pair {a} / {b}" in caplog.text


# -- a file-mode run ---------------------------------------------------------------------------------

def test_file_mode_run(file_run):
    folder, truth = file_run
    run = Run.open(folder, truth=truth)
    assert run.mode == "file" and run.entity_types == ["contact"]
    groups_csv = pd.read_csv(folder / "groups.csv", dtype={"id": str, "group_id": str})
    groups = run.groups()
    sizes = groups_csv["group_id"].value_counts()
    assert len(groups) == (sizes > 1).sum() > 0
    for g in groups.sample(min(10, len(groups)), random_state=0).itertuples(index=False):
        members = groups_csv[groups_csv["group_id"] == g.group_id]
        assert sorted(g.member_ids) == sorted(members["id"])
        assert g.primary_id == members.loc[members["is_primary"], "id"].item() == g.member_ids[0]
    assert groups["score"].ge(run.thresholds["probable"]).all()
    assert run.primary_reason_counts()["category"].tolist() == ["not recorded"]
    assert run.quality() == {} and run.lead_clients().empty
    assert run.criteria()["pairs"].sum() > 0
    row = run.pairs().iloc[0]
    assert run.waterfall(row["id_a"], row["id_b"])["end"].iloc[-1] == pytest.approx(row["weight"], abs=0.2)
    ev = run.evaluation()
    assert len(ev) == 1 and ev.loc[0, "records"] == len(groups_csv)
    assert not run.precision_recall().empty
    text = report.write_html_report(folder, truth=truth).read_text(encoding="utf-8")
    assert "Against the known truth" in text and "file mode writes none" in text


def test_file_mode_truth_with_integer_ids(file_run):
    """The file's ids are read as text; a truth indexed by integers still lines up."""
    folder, truth = file_run
    assert truth.index.dtype.kind == "i"
    run = Run.open(folder, truth=truth)
    assert run.truth().notna().all() and not run.truth().str.startswith("(no truth)").any()


# -- a run with no duplicates ------------------------------------------------------------------------

def test_run_with_no_duplicates(distinct_run):
    run = Run.open(distinct_run)
    overview = run.overview().iloc[0]
    assert overview["records"] == 5 and overview["groups"] == 0 and overview["records_in_groups"] == 0
    assert run.groups().empty and run.group_sizes().empty and run.primary_reasons().empty
    assert run.counts()["groups"].sum() == 0
    assert len(run.uncertain_pairs()) == len(run.pairs())
    for fig in (report.score_chart(run.pair_scores(), run.thresholds), report.criteria_chart(run.criteria()),
                report.group_size_chart(run.group_sizes()), report.primary_reason_chart(run.primary_reasons()),
                report.quality_chart(report.quality_fields(run.quality()))):
        assert report.figure_png(fig).startswith(PNG)
    truth = pd.Series({str(i): f"p{i}" for i in range(1, 6)})
    with_truth = Run.open(distinct_run, truth=truth)
    ev = with_truth.evaluation().iloc[0]
    assert ev["precision"] == 1.0 and ev["recall"] == 1.0 and ev["true_pairs"] == 0
    assert (with_truth.precision_recall()["predicted_pairs"] == 0).all()
    text = report.write_html_report(distinct_run).read_text(encoding="utf-8")
    # every chart is drawn (saying there is nothing), every table section says so
    assert text.count("data:image/png") >= 4 and "Nothing to show." in text


# -- the HTML report in a browser --------------------------------------------------------------------

@pytest.mark.browser
def test_html_report_opens_in_chromium_without_errors(demo_run):
    from playwright.sync_api import sync_playwright

    db_url, folder = demo_run
    path = report.write_html_report(Path(folder), db_url=db_url)
    problems: list[str] = []
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        assert page.title().startswith("crm-dedup report")
        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length")
        count = page.eval_on_selector_all("img", "imgs => imgs.length")
        assert count >= 9 and broken == 0
        assert page.locator("h2", has_text="Pairs to look at first").is_visible()
        page.screenshot(path=str(shots / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert (shots / "report.png").stat().st_size > 10_000



# -- what the analysts' tester found -----------------------------------------------------------------

HELD = "only names agree. Held at possible: only names agree, no phone, email, birthdate or tax id"


def _held_file_run(folder: Path) -> Path:
    """A hand-made file-mode run: contacts 1-2 one person (a pair at 0.95), 3-4 and 5-6 namesakes a hold
    rule kept at possible (the cap 0.7 stored, the model's own weight high), 7-8 a real pair at 0.85."""
    folder.mkdir(parents=True)
    pd.DataFrame({"id": [str(i) for i in range(1, 9)],
                  "group_id": ["contact-1", "contact-1", "contact-3", "contact-4", "contact-5", "contact-6",
                               "contact-7", "contact-8"],
                  "is_primary": [True, False, True, True, True, True, True, True],
                  "tier": ["probable", "probable", "", "", "", "", "", ""]}).to_csv(folder / "groups.csv", index=False)
    pd.DataFrame({"id_a": ["1", "3", "5", "7"], "id_b": ["2", "4", "6", "8"],
                  "probability": [0.95, 0.7, 0.7, 0.85], "weight": [4.2, 12.0, 9.0, 2.5],
                  "tier": ["probable", "possible", "possible", "possible"], "rules": ["phone"] * 4,
                  "criteria": ["phone", "name", "name", "phone"],
                  "explanation": ["same phone", HELD, HELD, "same phone"],
                  "contributions": ['{"prior": -8.0, "phone": 12.2}'] * 4}).to_csv(folder / "pairs.csv", index=False)
    (folder / "model.json").write_text("{}", encoding="utf-8")  # (a model the report shows no levels of)
    return folder


HELD_TRUTH = pd.Series({"1": "a", "2": "a", "3": "b", "4": "c", "5": "d", "6": "e", "7": "f", "8": "f"})


def test_threshold_table_leaves_held_pairs_out_above_possible(tmp_path):
    from scoring.evaluate import held_mask, threshold_table

    pairs = pd.read_csv(_held_file_run(tmp_path / "r") / "pairs.csv", dtype={"id_a": str, "id_b": str})
    assert held_mask(pairs).tolist() == [False, True, True, False]
    table = threshold_table(pairs, HELD_TRUTH.index, HELD_TRUTH, (0.5, 0.7, 0.8), possible=0.5).set_index("threshold")
    # at possible every kept pair counts; above it the held namesakes never join a group
    assert table.loc[0.5, "predicted_pairs"] == 4 and table.loc[0.5, "held_pairs"] == 0
    assert table.loc[0.7, "precision"] == 1.0 and table.loc[0.7, "predicted_pairs"] == 2
    assert table.loc[0.7, "held_pairs"] == 2
    # a "held" column, where the pairs have one, says it instead of the explanation
    flagged = pairs.assign(held=[False, False, True, False], explanation="")
    assert threshold_table(flagged, HELD_TRUTH.index, HELD_TRUTH, (0.7,), possible=0.5)["predicted_pairs"].item() == 3


def test_held_pairs_are_not_the_pairs_to_look_at_first(tmp_path):
    run = Run.open(_held_file_run(tmp_path / "held"), truth=HELD_TRUTH)
    # (0.7 asked for: the grid's deciles leave the held pairs out, so their capped score is no row of it)
    pr = run.precision_recall(thresholds=[0.5, 0.7, 0.9]).set_index("threshold")
    assert pr.loc[0.7, "precision"] == 1.0 and pr.loc[0.7, "held_pairs"] == 2
    uncertain = run.uncertain_pairs(10)
    assert sorted(zip(uncertain["id_a"], uncertain["id_b"])) == [("1", "2"), ("7", "8")]
    held = run.held_pairs()
    assert held[["id_a", "weight"]].values.tolist() == [["3", 12.0], ["5", 9.0]]  # the model's own weight first
    assert held["held"].str.startswith("only names agree, no phone").all()
    text = report.write_html_report(run).read_text(encoding="utf-8")
    assert "Held at possible by a rule" in text and "left out of the predicted pairs at every threshold" in text


def test_leads_are_counted_once_and_their_pairs_apart(demo_run, tmp_path):
    import shutil

    from pipelines import steps

    folder = tmp_path / Path(demo_run[1]).name
    shutil.copytree(demo_run[1], folder)
    lc = pd.read_parquet(folder / "lead_clients.parquet")
    twice = lc.iloc[[0]].assign(client_id=-1)  # one lead that looks like a second client too
    lc = pd.concat([lc, twice], ignore_index=True)
    lc.to_parquet(folder / "lead_clients.parquet", index=False)
    leads, pairs = lc["lead_id"].nunique(), len(lc)
    assert leads < pairs
    summary = steps.run_summary(str(folder), ENTITIES)
    assert summary["leads_matching_clients"] == leads and summary["lead_client_pairs"] == pairs
    assert (f"Leads matching an existing contact or company: {leads:,} ({pairs:,} lead-client pairs)"
            in steps.summary_markdown(summary, "r"))
    text = report.write_html_report(folder, tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"{leads:,} leads look like an existing contact or company ({pairs:,} lead-client pairs)." in text


def test_the_run_summary_counts_possible_pairs_and_records_left_out_not_possible_groups(demo_run):
    """Groups form at probable or better: a "possible" column of groups was always 0. The summary
    counts the possible pairs (for a person to look at) and the records left out of a group."""
    from pipelines import steps

    folder = demo_run[1]
    summary = steps.run_summary(folder, ENTITIES)
    text = steps.summary_markdown(summary, "r")
    assert "| left out | possible pairs |" in text and "| possible |" not in text
    for entity in ENTITIES:
        s = summary["entities"][entity]
        pairs = pd.read_parquet(Path(folder) / entity / "pairs.parquet")
        assert s["pairs_per_tier"] == {t: int((pairs["tier"] == t).sum()) for t in ("certain", "probable", "possible")}
        gt = pd.read_parquet(Path(folder) / entity / "group_table.parquet")
        assert s["left_out"] == int(gt["cut_off"].map(len).sum())
        assert f"| {s['left_out']:,} | {s['pairs_per_tier']['possible']:,} |" in text


def test_a_database_that_did_not_run_it_is_refused(demo_run, store):
    with pytest.raises(ReportError, match=f"holds no run {Path(demo_run[1]).name}"):
        Run.open(demo_run[1], db_url=store.url)


def test_the_report_says_why_it_has_no_truth(demo_run, store, tmp_path, monkeypatch):
    from crm import proposals

    folder = Path(demo_run[1])
    monkeypatch.setenv("CRM_DEDUP_DB", f"sqlite:///{tmp_path}/none.db")  # no default database knows the run
    text = report.write_html_report(folder, tmp_path / "a.html").read_text(encoding="utf-8")
    assert "Against the known truth" in text and "No database holding this run was given" in text
    # a database that ran it but knows no truth (not a demo CRM)
    proposals.start_run(store, folder.name, ENTITIES, str(folder))
    run = Run.open(folder, db_url=store.url)
    assert not run.has_truth
    text = report.write_html_report(run, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "has no known truth for this run" in text and "demo_truth" in text


def test_a_parent_folder_names_the_runs_inside(demo_run):
    parent = Path(demo_run[1]).parent
    with pytest.raises(ReportError, match=f"holds run folders: pass one of them, e.g. {re.escape(str(demo_run[1]))}"):
        Run.open(parent)


def test_the_summary_prints_how_to_open_the_notebook_on_this_run(demo_run, monkeypatch):
    """The command run_summary gives sets what open_run (the notebooks' first call) reads."""
    import shlex

    from pipelines import steps

    db_url, folder = demo_run
    summary = steps.run_summary(folder, ENTITIES, db_url)
    command = summary["notebook"]
    assert command.endswith(".venv/bin/jupyter lab " + str(Path(__file__).resolve().parents[1] / "notebooks/match_report.ipynb"))
    assert f"Match report notebook on this run: `{command}`" in steps.summary_markdown(summary, "r")
    env = dict(word.split("=", 1) for word in shlex.split(command) if "=" in word)
    assert env == {"CRM_DEDUP_RUN": str(Path(folder).resolve()), "CRM_DEDUP_DB": db_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = report.open_run()
    assert run.folder == Path(folder).resolve() and run.has_truth
    monkeypatch.setenv("CRM_DEDUP_RUN", run.run_id)  # a run id does too
    assert report.open_run().run_id == run.run_id


def test_a_lead_with_only_a_clients_phone_is_reported_against_that_client(tmp_path):
    """An incoming call's lead (no name, no company, a phone) whose phone is a contact's: listed
    against that contact at "possible" (shared channels with no names to compare), not left out for
    being below "probable"."""
    import sqlalchemy as sa

    from crm import schema
    from crm.store import Store
    from pipelines import steps

    db_url, folder = build_demo_run(tmp_path, sizes=(200, 60, 60), seed=3)
    store = Store(db_url)
    comm = schema.communications
    with store.engine.begin() as conn:
        phones = pd.DataFrame(conn.execute(sa.select(comm.c.entity_id, comm.c.value).where(
            comm.c.entity_type == "contact", comm.c.type == "phone")).all(), columns=["contact", "phone"])
        alone = phones.groupby("phone")["contact"].transform("size") == 1
        contact, phone = phones[alone].iloc[0]
        lead = conn.execute(sa.select(sa.func.max(schema.leads.c.id))).scalar_one() + 1
        now = pd.Timestamp("2024-01-01").to_pydatetime()
        conn.execute(schema.leads.insert().values(id=lead, title="Входящий звонок", created_at=now, modified_at=now))
        conn.execute(comm.insert().values(entity_type="lead", entity_id=lead, type="phone", kind="work", value=phone))
    store.dispose()
    (tmp_path / "again").mkdir()
    out = pd.read_parquet(steps.leads_to_clients_step(db_url, str(tmp_path / "again"),
                                                      str(Path(folder) / "settings.yaml")))
    found = out[(out["lead_id"] == lead)]
    assert found[["client_type", "client_id", "tier"]].values.tolist() == [["contact", int(contact), "possible"]]
    assert "only a phone agrees; no names to compare" in found["explanation"].iloc[0]
