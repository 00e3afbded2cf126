"""People's decisions about groups, on SQLite and PostgreSQL (a user probe's findings):
a record whose "the same" mark was withdrawn (`include --undo`) can be included again, and the next
run keeps it; a "Merge now" or "Approve" from a page shown before another approval with other
choices is refused, not silently dropping that approval; the group page lists the records a person
added ("Added by a person") and withdraws their marks; a skip that replaces a "the same" mark says so."""

from __future__ import annotations

import datetime as dt
from html import unescape

import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from merge_rules.grouping import include_record
from merge_rules.together import load_together, mark_together
from pipelines.cli import app as cli_app
from review import actions, queries, views
from review.testing import ADMIN, JOHN, MARIA, PETR, USER_IDS
from test_review import choose, group_row, page_form, row, sample, sign_in  # noqa: F401 - per backend
from test_review_gaps import flashes, section
from test_together import _group_of, _left_out_trio, _run, crm  # noqa: F401 - the demo CRM fixture


def cli(store, *args) -> object:
    return CliRunner().invoke(cli_app, [*map(str, args), "--db", store.url])


def together(store) -> list[tuple[int, int, int | None]]:
    t = schema.dedup_together
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.c.id_a, t.c.id_b, t.c.user_id).order_by(t.c.id)).all()]


def left_out_15(store, gid: str, partner: int = 12) -> None:
    """#15 (Мария's Анна Петрова) listed as left out of the group, best matched with ``partner``."""
    g = schema.dedup_groups
    with store.engine.begin() as conn:
        conn.execute(g.update().where(g.c.id == gid).values(left_out=[
            {"id": 15, "partner": partner, "probability": 0.97, "tier": "certain", "explanation": "surname same",
             "reason": "kept apart by the chaining guard: the evidence says it differs from another member"}]))


def merges(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.dedup_merges)).scalar()


# -- 1. including again after `include --undo` ----------------------------------------------------

def test_a_record_whose_mark_was_withdrawn_is_marked_again_by_include(sample):
    store, _app, groups = sample
    gid = groups["contact-10"]
    left_out_15(store, gid)
    assert cli(store, "include", gid, 15).exit_code == 0
    assert together(store) == [(12, 15, USER_IDS[ADMIN])]
    out = cli(store, "include", "--undo", gid, 15)
    assert out.exit_code == 0 and "no longer marked the same" in out.output, out.output
    assert together(store) == [] and 15 in group_row(store, gid)["member_ids"]  # (held until the next run)
    before = group_row(store, gid)

    out = cli(store, "include", gid, 15)
    assert out.exit_code == 0, out.output
    assert "marked the same again; later runs keep it" in out.output
    assert f"`crm-dedup include --undo GROUP_ID 15`" in out.output
    # the run's pairs hold no pair with #15 (it was added after): marked the same as the primary
    assert together(store) == [(10, 15, USER_IDS[ADMIN])]
    after = group_row(store, gid)  # the group itself is as it was: its plan holds #15 already
    assert {k: after[k] for k in ("status", "member_ids", "primary_id", "plan", "approved_by")} == \
        {k: before[k] for k in ("status", "member_ids", "primary_id", "plan", "approved_by")}

    # once more: there is a mark, nothing to do
    out = cli(store, "include", gid, 15)
    assert out.exit_code == 1 and f"contact #15 is in group {gid} already, marked the same as #10" in out.output
    assert len(together(store)) == 1
    # a manager whose record it is not may not mark it
    cli(store, "include", "--undo", gid, 15)
    out = cli(store, "include", gid, 15, "--user", PETR)
    assert out.exit_code == 1 and "may add only records they are responsible for" in out.output
    assert together(store) == []
    # a member marked "not duplicates" with another member is not marked the same
    cli(store, "skip", 11, 15)
    out = cli(store, "include", gid, 15)
    assert out.exit_code == 1 and "contact #11 and #15 are marked not duplicates" in out.output
    assert together(store) == []


def test_the_next_run_keeps_a_record_included_again(store, tmp_path, crm):  # noqa: F811 - the fixture
    gid, lone, partner = _left_out_trio(store, tmp_path, crm)
    assert cli(store, "include", gid, lone).exit_code == 0
    assert cli(store, "include", "--undo", gid, lone).exit_code == 0
    again = cli(store, "include", gid, lone)
    assert again.exit_code == 0 and "marked the same again" in again.output, again.output
    (mark,) = load_together(store, "contact")
    assert lone in mark
    _run(store, tmp_path)
    group = _group_of(store, lone)
    assert group is not None and set(crm[:3]) <= set(group["member_ids"]), "the record was dropped again"


# -- 2. a page shown before another person's approval ---------------------------------------------

def _approved_text(store, gid: str, verb: str, who: str, html_of_approver: str) -> str:
    g = group_row(store, gid)
    fields = [k[2:] for k in choose(html_of_approver, 14)]
    assert "first_name" in fields
    when = g["approved_at"].strftime("%Y-%m-%d %H:%M")
    ordered = [f for f in g["plan"]["fields"] if f in fields]
    return (f"Not {verb}: this group was approved by {who} at {when} UTC with other choices ("
            + ", ".join(f"{views.FIELD_LABELS[f]} from #14" for f in ordered) + "); look at the plan now.")


def test_a_stale_merge_or_approve_does_not_override_another_persons_approval(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 Jonathan and #14 Jon
    admin, john = sign_in(app, ADMIN), sign_in(app, JOHN)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    j_html, j_form = page_form(john, f"/group/{gid}")
    r = john.post(f"/group/{gid}/act", data={**j_form, "action": "approve", **choose(j_html, 14)})
    assert r.status_code == 303 and group_row(store, gid)["approved_by"] == USER_IDS[JOHN]
    approved = group_row(store, gid)

    for action, verb in (("merge", "merged"), ("approve", "approved")):
        r = admin.post(f"/group/{gid}/act", data={**a_form, "action": action, **choose(a_html, 13)})
        assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"  # the page afresh
        page = admin.get(r.headers["location"]).text
        [msg] = flashes(page)
        assert msg["level"] == "error"
        assert msg["text"] == _approved_text(store, gid, verb, "John Smith", j_html)
        # nothing merged, John's approval and plan as they were, and the page opens on them
        assert merges(store) == 0 and row(store, schema.contacts, 14)["deleted_at"] is None
        now = group_row(store, gid)
        assert (now["status"], now["approved_by"], now["approved_at"], now["plan"]) == (
            "approved", USER_IDS[JOHN], approved["approved_at"], approved["plan"])
        assert now["plan"]["fields"]["first_name"]["source_id"] == 14
        assert "John Smith approved this plan" in unescape(page) and "First name from #14" in page

    # having seen John's approval, the admin may change it knowingly
    html, form = page_form(admin, f"/group/{gid}")
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "approve", **choose(html, 13)})
    assert flashes(admin.get(r.headers["location"]).text)[0]["text"].startswith("Approved again: ")
    now = group_row(store, gid)
    assert now["approved_by"] == USER_IDS[ADMIN] and now["plan"]["fields"]["first_name"]["source_id"] == 13


def test_an_approval_with_the_same_choices_goes_through_and_ones_own_other_choices_do_not(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    admin, john = sign_in(app, ADMIN), sign_in(app, JOHN)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    old_html, old_form = page_form(john, f"/group/{gid}")  # John's first tab
    new_html, new_form = page_form(john, f"/group/{gid}")  # and his second
    r = john.post(f"/group/{gid}/act", data={**new_form, "action": "approve", **choose(new_html, 14)})
    assert r.status_code == 303 and group_row(store, gid)["approved_by"] == USER_IDS[JOHN]
    assert flashes(john.get(r.headers["location"]).text)[0]["text"].startswith("Approved: ")
    # his first tab, with other choices: refused, naming him as "you"
    r = john.post(f"/group/{gid}/act", data={**old_form, "action": "approve", **choose(old_html, 13)})
    assert flashes(john.get(r.headers["location"]).text)[0]["text"] == _approved_text(
        store, gid, "approved", "you", new_html)
    assert group_row(store, gid)["plan"]["fields"]["first_name"]["source_id"] == 14
    # the admin's old page with the very choices John approved: nobody's decision is dropped
    r = admin.post(f"/group/{gid}/act", data={**a_form, "action": "approve", **choose(a_html, 14)})
    assert flashes(admin.get(r.headers["location"]).text)[0]["text"].startswith("Approved again: ")
    assert group_row(store, gid)["approved_by"] == USER_IDS[ADMIN]
    # John's first tab merging with the approved choices goes through
    r = john.post(f"/group/{gid}/act", data={**old_form, "action": "merge", **choose(old_html, 14)})
    assert flashes(john.get(r.headers["location"]).text)[0]["text"].startswith("Merged contact #14 into #13")
    assert group_row(store, gid)["status"] == "applied" and row(store, schema.contacts, 13)["first_name"] == "Jon"


def test_an_approval_made_between_the_check_and_the_write_is_not_overwritten(sample):
    """The approve's compare-and-set: the group as the request read it (pending) was approved by John a
    moment later; the admin's approval is refused, not written over his."""
    store, app, groups = sample
    gid = groups["contact-13"]
    with store.engine.connect() as conn:
        group = queries.get_group(conn, gid)  # pending, as read by the admin's request
        admin = queries.load_user(conn, USER_IDS[ADMIN])
        records = queries.read_records(conn, "contact", [13, 14])
    settings = app.state.settings
    seen, _p, _b = views.plan_for(store, group, admin, settings, 13, {"first_name": 13}, records)
    john = sign_in(app, JOHN)
    j_html, j_form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/act", data={**j_form, "action": "approve", **choose(j_html, 14)}).status_code == 303
    out = actions.approve(store, group, admin, settings, seen, {"first_name": 13}, views.decision_state(group))
    assert not out.ok and out.fresh
    assert out.message.startswith("Not approved: this group was approved by John Smith at ")
    assert "First name from #14" in out.message
    assert group_row(store, gid)["approved_by"] == USER_IDS[JOHN]


# -- 3. "the same" marks on the group page ---------------------------------------------------------

def test_the_group_page_lists_added_records_and_withdraws_their_marks(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Мария's, 11 is Пётр's; #15 is Мария's too
    left_out_15(store, gid)
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    assert 'id="same-marks"' not in html
    r = maria.post(f"/group/{gid}/include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    page = maria.get(r.headers["location"]).text
    [msg] = flashes(page)
    # the page tells a page user how to take it back on the page
    assert msg["level"] == "ok" and '"Withdraw" under Added by a person on the group page' in msg["text"]
    assert "crm-dedup include --undo" not in msg["text"]
    with store.engine.connect() as conn:
        made = conn.execute(sa.select(schema.dedup_together.c.created_at)).scalar_one()
    block = unescape(section(page, "same-marks"))
    assert f"#15 Петрова Анна: added by Мария Иванова on {made:%Y-%m-%d %H:%M}, marked the same as #12 " in block
    assert 'data-withdraw-include="15"' in block
    assert f'<span class="badge added" data-added="15">added by Мария Иванова on {made:%Y-%m-%d}</span>' in page
    assert 'data-added="12"' not in page

    # without the CSRF token nothing is withdrawn; a record outside the group is a 400
    r = maria.post(f"/group/{gid}/withdraw-include", data={"record_id": "15"})
    assert r.status_code == 403 and together(store) == [(12, 15, USER_IDS[MARIA])]
    r = maria.post(f"/group/{gid}/withdraw-include", data={"csrf_token": form["csrf_token"], "record_id": "13"})
    assert r.status_code == 400 and len(together(store)) == 1

    r = maria.post(f"/group/{gid}/withdraw-include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    page = maria.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert msg["level"] == "ok" and msg["text"].startswith(
        "Withdrew the mark: contact #12 and #15 (marked by Мария Иванова (#2) on ")
    assert together(store) == [] and 15 in group_row(store, gid)["member_ids"]
    assert 'id="same-marks"' not in page and 'data-added="15"' not in page
    # twice (another tab): said, nothing else happens
    r = maria.post(f"/group/{gid}/withdraw-include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    [msg] = flashes(maria.get(r.headers["location"]).text)
    assert msg["level"] == "error" and "there is no mark to withdraw" in msg["text"]


def test_a_mark_with_another_managers_record_is_withdrawn_by_an_admin_only(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    left_out_15(store, gid, partner=11)  # best matched with Пётр's #11
    include_record(store, gid, 15, USER_IDS[MARIA])
    assert together(store) == [(11, 15, USER_IDS[MARIA])]
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    block = unescape(section(html, "same-marks"))
    assert "#15 Петрова Анна: added by Мария Иванова on" in block
    assert "marked the same as #11 (another manager's record)" in block
    assert "data-withdraw-include" not in block
    assert "Only an admin may withdraw this mark: #11 is Пётр Сидоров's." in block
    # a forged POST is refused by withdraw_include's own check, and the mark stays
    r = maria.post(f"/group/{gid}/withdraw-include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    assert r.status_code == 403
    assert "withdraw a \"the same\" mark only between two records of their own" in unescape(r.text)
    assert len(together(store)) == 1
    # Пётр sees the mark of his record, and may not withdraw it either (#15 is Мария's)
    petr = sign_in(app, PETR)
    block = unescape(section(petr.get(f"/group/{gid}").text, "same-marks"))
    assert "#15 (another manager's record): added by Мария Иванова" in block and "data-withdraw-include" not in block
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    assert 'data-withdraw-include="15"' in section(html, "same-marks")
    r = admin.post(f"/group/{gid}/withdraw-include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    assert flashes(admin.get(r.headers["location"]).text)[0]["level"] == "ok" and together(store) == []


# -- 3b. a skip that replaces a "the same" mark says so ---------------------------------------------

def test_a_skip_on_the_page_says_which_same_mark_it_withdrew(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    left_out_15(store, gid)
    include_record(store, gid, 15, USER_IDS[MARIA])
    with store.engine.connect() as conn:
        made = conn.execute(sa.select(schema.dedup_together.c.created_at)).scalar_one()
    maria = sign_in(app, MARIA)
    _html, form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    [msg] = flashes(maria.get(r.headers["location"]).text)
    assert msg["level"] == "ok" and msg["text"].startswith("Skipped contact #15: marked as not a duplicate of ")
    assert (f"the 'same' mark by Мария Иванова (#12 and #15, made on {made:%Y-%m-%d %H:%M} UTC) is withdrawn"
            in msg["text"])
    assert together(store) == [] and 15 not in group_row(store, gid)["member_ids"]
    # a skip that replaces no mark says nothing of one
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"], "record_id": "12"})
    assert "'same' mark" not in flashes(maria.get(r.headers["location"]).text)[0]["text"]


def test_the_skip_command_says_which_same_mark_it_withdrew(store):
    from merge_rules.testing import load_sample

    load_sample(store)
    when = dt.datetime(2026, 12, 7, 9, 30)
    with store.engine.begin() as conn:
        mark_together(conn, "contact", 14, 13, USER_IDS[JOHN])
        conn.execute(schema.dedup_together.update().values(created_at=when))
    out = cli(store, "skip", 13, 14)
    assert out.exit_code == 0, out.output
    assert ("the 'same' mark by John Smith (#13 and #14, made on 2026-12-07 09:30 UTC) is withdrawn; later runs "
            "no longer keep the two in one group") in out.output
    assert together(store) == []
    again = cli(store, "skip", 13, 14)
    assert again.exit_code == 0 and "'same' mark" not in again.output


def test_a_skipped_groups_page_still_lists_its_added_records(sample):
    """The marks outlive the group's status: a skipped group's page lists them, for an admin to withdraw."""
    store, app, groups = sample
    gid = groups["contact-13"]
    with store.engine.begin() as conn:
        mark_together(conn, "contact", 13, 14, USER_IDS[JOHN])
        conn.execute(schema.dedup_groups.update().where(schema.dedup_groups.c.id == gid).values(status="skipped"))
    html = sign_in(app, ADMIN).get(f"/group/{gid}").text
    block = unescape(section(html, "same-marks"))
    assert "#14 Smith Jon Paul: added by John Smith on" in block and "marked the same as #13 " in block
