"""Records a run leaves out of a group although they are probable with a member (a "not duplicates"
mark or the chaining guard kept them apart) are stored with the group (dedup_groups.left_out) and
shown by `crm-dedup groups` and the review page, so that merging the group does not leave a
duplicate behind unseen. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import warnings

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from merge_rules.skips import skip_record
from pipelines import steps
from pipelines.cli import app as cli_app
from review.testing import ADMIN, MARIA, PASSWORD, load_review_sample
from scoring.settings import MatchSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from review.app import create_app  # noqa: E402


def _run(store, tmp_path, name: str) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 1}}))
    run_id, folder = steps.new_run(store.url, ["contact"], str(tmp_path / name))
    steps.quality_step(store.url, "contact", folder, str(settings))
    steps.find_step(store.url, "contact", folder, str(settings))
    steps.propose_step(store.url, run_id, folder, ["contact"], str(settings))
    proposals.finish_run(store, run_id, "completed", {})


def test_a_record_marked_not_duplicates_is_listed_on_the_group_it_was_left_out_of(store, tmp_path):
    generate_demo(store, DemoSizes(contacts=600, companies=20, leads=20, managers=3), seed=7)
    _run(store, tmp_path, "first")
    first = proposals.read_groups(store, status="pending", entity_type="contact")
    three = first[first["member_ids"].map(len) >= 3].iloc[0]
    members = [int(m) for m in three["member_ids"]]
    lone = next(m for m in members if m != int(three["primary_id"]))
    # a person says: this record is not a duplicate of any other member
    skip_record(store, "contact", lone, members, user_id=None)

    _run(store, tmp_path, "second")
    groups = proposals.read_groups(store, status="pending", entity_type="contact")
    assert not any(lone in ms for ms in groups["member_ids"])
    listed = [(row, item) for row in groups.itertuples(index=False) for item in (row.left_out or [])
              if item["id"] == lone]
    assert len(listed) == 1, listed
    row, item = listed[0]
    others = sorted(set(members) - {lone})
    assert item["reason"] == "marked not duplicates with " + ", ".join(
        f"#{m}" for m in row.member_ids if m in others)
    assert item["partner"] in row.member_ids
    assert item["probability"] >= MatchSettings().thresholds.probable and item["tier"] in ("certain", "probable")
    assert item["explanation"]  # the pair's own words
    # groups with nothing left out store none (not an empty list on every row)
    assert groups["left_out"].map(lambda x: x is None or len(x) > 0).all()

    out = CliRunner().invoke(cli_app, ["groups", "--db", store.url, "--limit", "100000"])
    assert out.exit_code == 0, out.output
    line = next(text for text in out.output.splitlines() if text.strip().startswith(f"left out: #{lone} "))
    assert "marked not duplicates with" in line and f"with #{item['partner']}" in line
    assert "crm-dedup unskip" in out.output and "crm-dedup include GROUP_ID RECORD_ID" in out.output

    # a person adds it back: refused while it is marked not duplicates, then taken once the mark is withdrawn
    def include(*more):
        return CliRunner().invoke(cli_app, ["include", row.id, str(lone), "--db", store.url, *more])

    refused = include()
    assert refused.exit_code == 1 and "marked not duplicates" in refused.output, refused.output
    assert f"crm-dedup unskip {min(lone, others[0])} {max(lone, others[0])} --entity contact" in refused.output
    for m in others:
        assert CliRunner().invoke(cli_app, ["unskip", str(lone), str(m), "--db", store.url]).exit_code == 0
    added = include()
    assert added.exit_code == 0 and f"Added contact #{lone} to group {row.id}" in added.output, added.output
    now = proposals.read_groups(store, entity_type="contact").set_index("id").loc[row.id]
    assert now["status"] == "pending" and lone in now["member_ids"]
    assert lone in now["plan"]["duplicate_ids"] or now["plan"]["primary_id"] == lone
    assert not any(i["id"] == lone for i in now["left_out"] or [])
    again = include()
    assert again.exit_code == 1 and "is in group" in again.output and "already" in again.output


# -- the review page -----------------------------------------------------------------------------

SECRET = "phone +7 999 000-11-22 same"


@pytest.fixture
def left_out_page(store, tmp_path):
    gid = load_review_sample(store, tmp_path / "run")["groups"]["contact-10"]
    left = [{"id": 15, "partner": 12, "probability": 0.97, "tier": "certain", "explanation": "surname same",
             "reason": "marked not duplicates with #12"},
            {"id": 13, "partner": 10, "probability": 0.91, "tier": "probable", "explanation": SECRET,
             "reason": "kept apart by the chaining guard: the evidence says it differs from another member"}]
    g = schema.dedup_groups
    with store.engine.begin() as conn:
        conn.execute(g.update().where(g.c.id == gid).values(left_out=left))
    app = create_app(store.url, "test-secret-key")
    yield app, gid
    app.state.store.dispose()


def _signed_in(app, email: str) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/signin").text).group(1)
    r = c.post("/signin", data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return c


def _left_out_section(html: str) -> str:
    match = re.search(r'<section class="warnings" id="left-out">(.*?)</section>', html, re.S)
    assert match, "no left-out section"
    return match.group(1)


def test_the_group_page_lists_the_records_left_out(left_out_page):
    app, gid = left_out_page
    html = _signed_in(app, ADMIN).get(f"/group/{gid}").text
    section = _left_out_section(html)
    assert 'href="/record/contact/15"' in section and "Петрова Анна" in section
    assert "97.0% with #12" in section and "marked not duplicates with #12" in section
    assert 'href="/record/contact/13"' in section and "Smith Jonathan" in section and SECRET in section


def test_a_manager_sees_another_managers_left_out_record_only_by_its_id(left_out_page):
    app, gid = left_out_page
    html = _signed_in(app, MARIA).get(f"/group/{gid}").text
    section = _left_out_section(html)
    assert 'href="/record/contact/15"' in section and "Петрова Анна" in section  # hers
    assert "#13" in section and "another manager&#39;s record" in section
    assert "Smith" not in section and SECRET not in html and 'href="/record/contact/13"' not in section


def test_a_left_out_record_is_added_to_the_group_from_the_page_by_whom_it_may(left_out_page, store):
    app, gid = left_out_page
    g = schema.dedup_groups
    with store.engine.begin() as conn:  # #15 (Мария's) kept out by the chaining guard
        conn.execute(g.update().where(g.c.id == gid).values(left_out=[
            {"id": 15, "partner": 12, "probability": 0.97, "tier": "certain", "explanation": "surname same",
             "reason": "kept apart by the chaining guard: the evidence says it differs from another member"}]))
    petr = _signed_in(app, "petr@example.ru")  # Пётр's #11 is in the group: he sees it, not #15's button
    assert 'data-include-record="15"' not in petr.get(f"/group/{gid}").text
    maria = _signed_in(app, MARIA)
    html = maria.get(f"/group/{gid}").text
    assert 'data-include-record="15"' in html
    token = re.search(r'action="/group/[^"]+/include" class="inline">\s*<input type="hidden" name="csrf_token" '
                      r'value="([^"]+)"', html).group(1)
    r = petr.post(f"/group/{gid}/include", data={"csrf_token": re.search(
        r'name="csrf_token" value="([^"]+)"', petr.get(f"/group/{gid}").text).group(1), "record_id": "15"})
    assert r.status_code == 403 and "may add only records they are responsible for" in r.text
    r = maria.post(f"/group/{gid}/include", data={"csrf_token": token, "record_id": "15"})
    assert r.status_code == 303
    now = proposals.read_groups(store).set_index("id").loc[gid]
    assert 15 in now["member_ids"] and now["status"] == "pending" and now["left_out"] is None
    page = maria.get(r.headers["location"]).text
    assert "Added contact #15 to group" in page and 'id="left-out"' not in page


def test_a_left_out_record_merged_since_the_run_is_not_listed(left_out_page, store):
    app, gid = left_out_page
    c = schema.contacts
    with store.engine.begin() as conn:
        conn.execute(c.update().where(c.c.id == 13).values(deleted_at=sa.func.now()))
    section = _left_out_section(_signed_in(app, ADMIN).get(f"/group/{gid}").text)
    assert "#15" in section and "#13" not in section


def test_migration_0010_adds_left_out_to_a_database_at_0009_and_keeps_its_groups(store, tmp_path):
    from alembic import command

    from crm.store import _alembic_config, head_revision

    load_review_sample(store, tmp_path / "run")

    def columns() -> list[str]:
        with store.engine.connect() as conn:
            return [c["name"] for c in sa.inspect(conn).get_columns("dedup_groups")]

    def groups() -> list[tuple]:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT id, status, member_ids, pairs FROM dedup_groups ORDER BY id").all()]

    before = groups()
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    assert "left_out" not in columns() and groups() == before
    assert store.migrate() == head_revision()
    store.check_schema()
    assert columns()[-1] == "left_out" and groups() == before
    assert proposals.read_groups(store)["left_out"].isna().all()


def test_skipped_within_finds_the_marked_pairs_of_each_group_only(store):
    from merge_rules.skips import skip_pair, skipped_within

    skip_pair(store, "contact", 3, 1, None)
    skip_pair(store, "contact", 5, 9, None)
    skip_pair(store, "company", 1, 2, None)
    assert skipped_within(store, "contact", {"g": [1, 2, 3], "h": [5, 6], "k": [9, 5, 7]}) == {"g": [(1, 3)],
                                                                                              "k": [(5, 9)]}
    assert skipped_within(store, "company", {"x": [1, 2]}) == {"x": [(1, 2)]}
    assert skipped_within(store, "lead", {"x": [1, 2]}) == {}
