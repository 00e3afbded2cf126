"""A person's "these are the same" lasts as their "not duplicates" does: a record added to a group
(`crm-dedup include`, the review page's "Add to this group") is marked the same as a member
(dedup_together), and every later run, full or incremental, keeps it in the group, whatever the
chaining guard or the score said; `crm-dedup include --undo` withdraws the mark. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from merge_rules.grouping import CannotInclude, include_record, withdraw_include
from merge_rules.skips import load_skips, skip_pair, skip_record
from merge_rules.together import load_together
from pipelines import steps
from pipelines.apply import apply_approved
from pipelines.cli import app as cli_app
from review.testing import MARIA, PASSWORD, USER_IDS, load_review_sample
from scoring.cluster import force_links

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from review.app import create_app  # noqa: E402

WHEN = dt.datetime(2023, 3, 1, 9, 0)


def _settings(tmp_path: Path, **match) -> str:
    path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*')))}.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 1, **match},
                                    "merge": {"conflict_policy": "keep_primary"}}))
    return str(path)


def _run(store, tmp_path: Path, incremental: bool = False, **match) -> Path:
    """A dedup run of the contacts as the flow makes it: find, propose (replacing the pending groups)."""
    settings = _settings(tmp_path, **match)
    run_id, folder = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    out = Path(steps.find_step(store.url, "contact", folder, settings, incremental=incremental))
    steps.propose_step(store.url, run_id, folder, ["contact"], settings)
    proposals.finish_run(store, run_id, "completed", {})
    return out


def _group_of(store, record: int) -> pd.Series | None:
    groups = proposals.read_groups(store, entity_type="contact")
    groups = groups[groups["status"].isin(["pending", "approved"])]
    held = groups[groups["member_ids"].map(lambda ms: record in ms)]
    assert len(held) <= 1
    return None if held.empty else held.iloc[0]


@pytest.fixture
def crm(store):
    """A demo CRM plus one person three times: #A and #B the same (name, phone, e-mail), #C the same as
    #B but born on another day than #A, which the chaining guard takes for a different person: the run
    puts two of them in a group and leaves the third out. #D: a stranger, in no group."""
    generate_demo(store, DemoSizes(contacts=600, companies=20, leads=20, managers=3), seed=7)
    c, comm = schema.contacts, schema.communications
    with store.engine.begin() as conn:
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        ids = [top + 1, top + 2, top + 3, top + 4]
        base = dict(last_name="Орлов", first_name="Глеб", middle_name="Игоревич", birthdate=None, created_at=WHEN,
                    modified_at=WHEN)
        rows = [dict(base, id=ids[0], birthdate=dt.date(1980, 1, 1)), dict(base, id=ids[1]),
                dict(base, id=ids[2], birthdate=dt.date(1975, 5, 5)),
                dict(base, id=ids[3], last_name="Незнакомцева", first_name="Вера", middle_name=None)]
        conn.execute(c.insert(), rows)
        conn.execute(comm.insert(), [
            dict(entity_type="contact", entity_id=i, type=t, kind="work", value=v)
            for i in ids[:3] for t, v in (("phone", "+7 916 404-40-40"), ("email", "gleb.orlov.1980@mail.ru"))]
            + [dict(entity_type="contact", entity_id=ids[3], type="phone", kind="work", value="+7 916 777-01-02")])
    store.fix_sequences()
    return ids


def _left_out_trio(store, tmp_path, crm) -> tuple[str, int, int]:
    """The first run: the group of two of the trio, the one left out of it and its best partner."""
    _run(store, tmp_path)
    group = next(g for g in (_group_of(store, i) for i in crm[:3]) if g is not None)
    assert len(set(group["member_ids"]) & set(crm[:3])) == 2, group["member_ids"]
    (lone,) = set(crm[:3]) - set(group["member_ids"])
    assert [i["id"] for i in group["left_out"]] == [lone]
    assert "chaining guard" in group["left_out"][0]["reason"]
    assert group["left_out"][0]["partner"] in group["member_ids"]
    return group["id"], lone, group["left_out"][0]["partner"]


def _include(store, *args) -> object:
    return CliRunner().invoke(cli_app, ["include", *map(str, args), "--db", store.url])


def _members(folder: Path, record: int) -> tuple:
    """The members of the group a run put ``record`` in, from the run's own group table."""
    gt = pd.read_parquet(folder / "group_table.parquet")
    held = [tuple(sorted(int(m) for m in ms)) for ms in gt["member_ids"] if record in set(int(m) for m in ms)]
    return held[0] if held else ()


def test_an_included_record_stays_in_its_group_in_full_and_incremental_runs(store, tmp_path, crm):
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    added = _include(store, gid, lone)
    assert added.exit_code == 0, added.output
    assert "later runs keep them in one group" in added.output and "approve it before" not in added.output
    # marked the same as the member it was best matched with (the partner the run listed)
    assert load_together(store, "contact") == [(min(lone, partner), max(lone, partner))]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.dedup_together)).mappings().one()
    assert row["user_id"] is not None and row["created_at"] is not None  # who and when (the first admin)

    full = _run(store, tmp_path)  # replaces every pending group with what it finds
    group = _group_of(store, lone)
    assert group is not None and set(crm[:3]) <= set(group["member_ids"]), "the included record was left out again"
    assert group["status"] == "pending" and not group["left_out"]
    assert group["tier"] in ("certain", "probable")  # a mark lowers nothing: the group's own pairs score it
    assert set(crm[:3]) <= set(_members(full, lone))

    incremental = _run(store, tmp_path, incremental=True)
    assert json.loads((incremental / "summary.json").read_text())["incremental"] is True
    assert set(crm[:3]) <= set(_members(incremental, lone))
    # the same groups as a full run scoring with the same model
    again = _run(store, tmp_path, model_path=str(full / "model.json"))
    columns = ["group_id", "primary_id", "member_ids", "tier", "score"]
    a, b = (pd.read_parquet(f / "group_table.parquet")[columns].assign(
        member_ids=lambda g: g["member_ids"].map(lambda x: tuple(sorted(x)))).sort_values("group_id", ignore_index=True)
        for f in (incremental, again))
    pd.testing.assert_frame_equal(a, b)
    assert set(crm[:3]) <= set(_group_of(store, lone)["member_ids"])


def test_a_record_in_no_group_is_kept_in_the_group_it_was_added_to(store, tmp_path, crm):
    """A stranger, scored with no member (a low score): a person knows better, and runs follow."""
    _run(store, tmp_path)
    stranger = crm[3]
    assert _group_of(store, stranger) is None
    group = next(g for g in (_group_of(store, i) for i in crm[:3]) if g is not None)
    done = include_record(store, group["id"], stranger, None)
    assert f"Added contact #{stranger} to group {group['id']}" in done
    assert f"#{stranger} is marked the same as #{group['primary_id']}" in done  # (not listed left out: the primary)
    full = _run(store, tmp_path)
    now = _group_of(store, stranger)
    assert now is not None and int(group["primary_id"]) in now["member_ids"]
    assert now["tier"] in ("certain", "probable")
    assert stranger in _members(full, int(group["primary_id"]))


def test_withdrawing_the_mark_lets_the_find_decide_again(store, tmp_path, crm):
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    assert _include(store, gid, lone).exit_code == 0
    _run(store, tmp_path)
    group = _group_of(store, lone)
    withdrawn = _include(store, "--undo", group["id"], lone)
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "are no longer marked the same" in withdrawn.output and f"#{lone}" in withdrawn.output
    assert f"group {group['id']} (pending) holds it until then" in withdrawn.output
    assert load_together(store, "contact") == []
    again = _include(store, "--undo", group["id"], lone)
    assert again.exit_code == 1 and f"contact #{lone} is not marked the same as any record of group" in again.output

    _run(store, tmp_path)
    assert _group_of(store, lone) is None  # left out, as before the include
    listed = [(g.id, i) for g in proposals.read_groups(store, status="pending").itertuples()
              for i in (g.left_out or []) if i["id"] == lone]
    assert len(listed) == 1 and "chaining guard" in listed[0][1]["reason"]


def test_an_included_record_is_merged_with_its_group(store, tmp_path, crm):
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    assert _include(store, gid, lone).exit_code == 0
    _run(store, tmp_path)
    group = _group_of(store, lone)
    proposals.set_status(store, [group["id"]], "approved", None)
    (result,) = [r for r in apply_approved(store.url, "b1", None, _settings(tmp_path)) if r["group_id"] == group["id"]]
    assert result["status"] == "applied", result
    c = schema.contacts
    with store.engine.connect() as conn:
        live = set(conn.execute(sa.select(c.c.id).where(c.c.id.in_(crm[:3]), c.c.deleted_at.is_(None))).scalars())
    assert live == {int(group["primary_id"])}
    # the merged records are no longer in the table: a next run has nothing to join
    _run(store, tmp_path)
    assert _group_of(store, int(group["primary_id"])) is None


def test_bad_input_is_refused_naming_the_record(store, tmp_path, crm):
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    members = [int(m) for m in proposals.read_groups(store).set_index("id").loc[gid, "member_ids"]]
    unknown = crm[-1] + 1000
    out = _include(store, gid, unknown)
    assert out.exit_code == 1 and f"there is no contact #{unknown}" in out.output, out.output
    # a company's id given for a contact of the group
    with store.engine.begin() as conn:
        conn.execute(schema.companies.insert().values(id=unknown + 1, title="ООО «Орлов и партнёры»",
                                                      created_at=WHEN, modified_at=WHEN))
    out = _include(store, gid, unknown + 1)
    assert out.exit_code == 1 and f"there is no contact #{unknown + 1} (#{unknown + 1} is a company" in out.output
    # a pair marked not duplicates: refused, nothing marked, the group as it was
    skip_pair(store, "contact", lone, members[0], None)
    out = _include(store, gid, lone)
    assert out.exit_code == 1 and "marked not duplicates" in out.output and f"#{lone}" in out.output
    assert load_together(store, "contact") == []
    assert lone not in proposals.read_groups(store).set_index("id").loc[gid, "member_ids"]
    # the undo of a group that is not there
    with pytest.raises(CannotInclude, match="There is no group 'contact-0-000000': a run gives a group a new id"):
        withdraw_include(store, "contact-0-000000", lone, None)


def test_a_later_skip_of_the_pair_replaces_the_mark(store, tmp_path, crm):
    """The newer decision wins: skipping the added record out of its group takes the mark back too,
    and the next run leaves it out (withdrawing the skip does not bring the old mark back)."""
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    assert _include(store, gid, lone).exit_code == 0
    members = [int(m) for m in proposals.read_groups(store).set_index("id").loc[gid, "member_ids"]]
    skip_record(store, "contact", lone, members, None)
    assert load_together(store, "contact") == []
    assert {(min(lone, m), max(lone, m)) for m in members if m != lone} <= load_skips(store, "contact")
    _run(store, tmp_path)
    assert _group_of(store, lone) is None


def test_the_review_pages_add_to_this_group_marks_the_pair(store, tmp_path):
    gid = load_review_sample(store, tmp_path / "run")["groups"]["contact-10"]
    g = schema.dedup_groups
    with store.engine.begin() as conn:  # #15 (Мария's) kept out by the chaining guard, best with #12
        conn.execute(g.update().where(g.c.id == gid).values(left_out=[
            {"id": 15, "partner": 12, "probability": 0.97, "tier": "certain", "explanation": "surname same",
             "reason": "kept apart by the chaining guard: the evidence says it differs from another member"}]))
    app = create_app(store.url, "test-secret-key")
    try:
        c = TestClient(app, follow_redirects=False)
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/signin").text).group(1)
        assert c.post("/signin", data={"email": MARIA, "password": PASSWORD, "csrf_token": token,
                                       "next": "/"}).status_code == 303
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get(f"/group/{gid}").text).group(1)
        r = c.post(f"/group/{gid}/include", data={"csrf_token": token, "record_id": "15"})
        assert r.status_code == 303
        assert "later runs keep them in one group" in c.get(r.headers["location"]).text
    finally:
        app.state.store.dispose()
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.dedup_together)).mappings().one()
    assert (row["entity_type"], row["id_a"], row["id_b"], row["user_id"]) == ("contact", 12, 15, USER_IDS[MARIA])
    # a manager withdraws a mark of their own record; another manager, whose records neither is, may not
    from merge_rules.errors import PermissionDenied

    with pytest.raises(PermissionDenied, match="withdraw a \"the same\" mark only between two records of their own"):
        withdraw_include(store, gid, 15, USER_IDS["john@example.com"])
    assert "no longer marked the same" in withdraw_include(store, gid, 15, USER_IDS[MARIA])


# -- the clustering alone ------------------------------------------------------------------------

def test_force_links_joins_groups_but_never_over_a_skip():
    labels = np.array([0, 0, 2, 3, 3, 5])
    strength = np.array([0.95, 0.95, np.nan, 0.999, 0.999, np.nan])
    # #2 (alone) with #1's group: the group keeps its score
    lab, st = force_links(labels, strength, [(2, 1)], [], 0.9)
    assert lab.tolist() == [0, 0, 0, 3, 3, 5] and st[:3].tolist() == [0.95] * 3
    # two groups joined: the weaker score; a mark alone: the floor
    lab, st = force_links(labels, strength, [(1, 4), (5, 2)], [], 0.9)
    assert lab.tolist() == [0, 0, 2, 0, 0, 2] and st.tolist() == [0.95] * 2 + [0.9] + [0.95] * 2 + [0.9]
    # a skip between #0 and #5 keeps #5 out of a group #2 joins #0's, whichever mark is first (newest)
    lab, _ = force_links(labels, strength, [(2, 1), (5, 2)], [(0, 5)], 0.9)
    assert lab.tolist() == [0, 0, 0, 3, 3, 5]
    lab, _ = force_links(labels, strength, [(5, 2), (2, 1)], [(0, 5)], 0.9)
    assert lab.tolist() == [0, 0, 2, 3, 3, 2]
