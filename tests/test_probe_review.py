"""Review-page problems a browser probe found (helper-88), on SQLite and PostgreSQL (TestClient over
review.testing's sample): "Matched by" counted pairs (and pairs of records a manager's merge took) where
the run counts records; a merge or approval refused on a group skipped or changed meanwhile without
saying by whom; no undo on a merged group's page; a manager's "skip the whole group" that skips only
her records; a form sent after signing out with no way back; a manager's empty history; one click per
conflict (no "use all its values"); no way to add a record the run did not list as left out."""

from __future__ import annotations

import re
from html import unescape

import pandas as pd
import sqlalchemy as sa

from crm import schema
from review.views import criteria_words
from review.testing import ADMIN, JOHN, MARIA, PASSWORD, PETR, USER_IDS
from scoring.find import _criteria
from test_review import CSRF, choose, client, csrf, group_row, page_form, row, sample, sign_in  # noqa: F401
from test_review_gaps import flashes, give

MARK_AT = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


def _merges(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(schema.dedup_merges)).mappings()]


# -- "Matched by" counts records matched, as the run does -----------------------------------------

def test_criteria_words_count_records_as_the_run_does():
    """Three records sharing a phone are 2 matches by phone (the run's scoring.find._criteria), not 3."""
    pairs = [{"id_a": 1, "id_b": 2, "criteria": "phone,email"}, {"id_a": 1, "id_b": 3, "criteria": "phone"},
             {"id_a": 2, "id_b": 3, "criteria": "phone"}, {"id_a": 3, "id_b": 4, "criteria": ""}]
    run = _criteria(pd.DataFrame({"member_ids": [[1, 2, 3, 4]]}), pd.DataFrame(pairs))
    assert criteria_words(pairs) == run[0] == "2 matches by phone, 1 match by email"
    # only the pairs between the members given count
    assert criteria_words(pairs, [1, 3]) == "1 match by phone"
    assert criteria_words(pairs, [3, 4]) == "similar records"


def test_matched_by_after_a_managers_merge_counts_only_the_records_left(sample):
    """Maria merges her #12 into #10; the group stays open for Пётр's #11. It keeps the pairs of #12 for
    an undo, but "Matched by" is about #10 and #11: one match, not the three pairs it kept."""
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's; every pair "phone,name"
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 10)})
    assert r.status_code == 303 and row(store, schema.contacts, 12)["deleted_at"] is not None
    g = group_row(store, gid)
    assert g["member_ids"] == [10, 11] and len(g["pairs"]) == 3  # (the merged #12's pairs stay, for an undo)
    assert g["criteria"] == "1 match by name, 1 match by phone"
    admin = sign_in(app, ADMIN)
    assert "<dd>1 match by name, 1 match by phone</dd>" in admin.get(f"/group/{gid}").text
    assert "3 matches" not in admin.get("/groups/contact").text


# -- refusals that say what happened meanwhile -----------------------------------------------------

def test_acting_on_a_group_skipped_meanwhile_says_who_skipped_it_in_the_words_of_the_action(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14
    admin, john = sign_in(app, ADMIN), sign_in(app, JOHN)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    _j_html, j_form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/skip", data={"csrf_token": j_form["csrf_token"]}).status_code == 303
    assert group_row(store, gid)["status"] == "skipped"
    for action, verb in (("approve", "approved"), ("merge", "merged")):
        r = admin.post(f"/group/{gid}/act", data={**a_form, "action": action, **choose(a_html, 13)})
        assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
        [msg] = flashes(admin.get(r.headers["location"]).text)
        assert msg["level"] == "error"
        assert re.fullmatch(rf'Not {verb}: this group is skipped \(John Smith marked contact #13 and #14 "not '
                            rf'duplicates" at {MARK_AT}\); there is nothing left to do on it\.', msg["text"]), msg
    r = admin.post(f"/group/{gid}/skip", data={"csrf_token": a_form["csrf_token"]})
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert msg["text"].startswith("Not skipped: this group is skipped (John Smith marked contact #13 and #14 ")
    # John, who skipped it, is told it was him (after his skip's own message, not shown yet)
    r = john.post(f"/group/{gid}/skip", data={"csrf_token": j_form["csrf_token"]})
    assert flashes(john.get(r.headers["location"]).text)[-1]["text"].startswith(
        "Not skipped: this group is skipped (you marked contact #13 and #14 ")
    assert group_row(store, gid)["status"] == "skipped" and _merges(store) == []


def test_a_merge_after_a_record_was_taken_out_of_the_group_names_it_and_who(sample):
    """The admin's page still shows #12, which Maria marked "not a duplicate" since: the refusal names
    the record that left and her mark, not only the records left."""
    store, app, groups = sample
    gid = groups["contact-10"]
    admin, maria = sign_in(app, ADMIN), sign_in(app, MARIA)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    m_html, m_form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": m_form["csrf_token"], "record_id": "12"})
    assert r.status_code == 303 and group_row(store, gid)["member_ids"] == [10, 11]
    r = admin.post(f"/group/{gid}/act", data={**a_form, "action": "merge", **choose(a_html, 10)})
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert msg["text"].startswith("Not merged: the records changed since this page was shown")
    [detail] = [d for d in msg["details"] if d.startswith("the records you may merge")]
    assert re.fullmatch(r'the records you may merge in this group changed: #12 left it \(Мария Иванова marked '
                        rf'contact #1[01] and #12 "not duplicates" at {MARK_AT}\); now #10, #11', detail), detail
    assert _merges(store) == []


# -- undo on the merged group's page ---------------------------------------------------------------

def test_a_merged_groups_page_undoes_the_merge_for_who_may(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    assert 'id="undo-merge"' not in html  # (nothing merged yet)
    admin.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 10)})
    [merge] = _merges(store)
    page = admin.get(f"/group/{gid}").text
    note = re.search(r'<div class="flash info" id="merged-note">(.*?)</div>', page, re.S).group(1)
    assert f'action="/history/{merge["id"]}/undo"' in note and f'data-undo="{merge["id"]}"' in note
    # Maria sees the group (her records were in it) but did not merge it: no button, and who may
    maria_page = sign_in(app, MARIA).get(f"/group/{gid}").text
    assert 'id="undo-merge"' not in maria_page and "Only Админ Главный or an admin can undo it." in maria_page
    token = CSRF.search(page).group(1)
    r = admin.post(f"/history/{merge['id']}/undo", data={"csrf_token": token})
    assert r.status_code == 303
    assert _merges(store)[0]["status"] == "undone" and group_row(store, gid)["status"] == "pending"
    assert row(store, schema.contacts, 12)["deleted_at"] is None


# -- a manager's "Not duplicates" on a group holding two records of others ------------------------

def test_a_managers_skip_button_says_it_takes_only_her_records_out(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    give(store, schema.contacts, [12], USER_IDS[PETR])  # #11 and #12 Пётр's: that pair is not Maria's
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    button = re.search(r'<button type="submit" id="skip-group"[^>]*>([^<]*)</button>', html).group(1)
    assert button == "Not duplicates: take my records out of this group"
    assert re.search(r'id="skip-mine-help">Your records #10 are marked', html)
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"]})
    assert r.status_code == 303 and group_row(store, gid)["member_ids"] == [11, 12]  # what the button said
    # where the skip is of the whole group, it says so: an admin, or a manager with one other record
    for who, g in ((ADMIN, groups["contact-10"]), (JOHN, groups["contact-13"])):
        page = sign_in(app, who).get(f"/group/{g}").text
        assert ">Not duplicates: skip the whole group</button>" in page and "skip-mine-help" not in page


# -- a form sent after the session ended -----------------------------------------------------------

def test_a_form_sent_after_signing_out_elsewhere_leads_back_to_its_page(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    tab = sign_in(app, JOHN)
    _html, form = page_form(tab, f"/group/{gid}")
    other = sign_in(app, JOHN)
    assert other.post("/signout", data={"csrf_token": csrf(other, "/groups/contact")}).status_code == 303
    r = tab.post(f"/group/{gid}/later", data={"csrf_token": form["csrf_token"]})
    assert r.status_code == 403 and "Sign in first." in r.text
    link = unescape(re.search(r'<a href="([^"]+)" id="sign-in-again">', r.text).group(1))
    assert link == f"/signin?next=%2Fgroup%2F{gid}"
    back = client(app)
    token = CSRF.search(back.get(link).text).group(1)
    r = back.post("/signin", data={"email": JOHN, "password": PASSWORD, "csrf_token": token,
                                   "next": f"/group/{gid}"})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    # a record page's form goes back to the record, the history's to the history
    r = tab.post("/record/contact/13/unskip", data={"csrf_token": form["csrf_token"], "other_id": "14"})
    assert 'href="/signin?next=%2Frecord%2Fcontact%2F13" id="sign-in-again"' in r.text
    r = tab.post("/history/1/undo", data={"csrf_token": form["csrf_token"]})
    assert 'href="/signin?next=%2Fhistory" id="sign-in-again"' in r.text
    # signed in, a refusal keeps its Back link and offers no sign-in
    r = sign_in(app, MARIA).post(f"/group/{groups['contact-10']}/skip", data={"csrf_token": "stale"})
    assert r.status_code == 403 and "sign-in-again" not in r.text and ">Back</a>" in r.text


# -- a manager's history ---------------------------------------------------------------------------

def test_a_managers_empty_history_does_not_say_nothing_was_merged(sample):
    """The admin merges Maria's group: her history lists the merges she made, none; it says so rather
    than "No merges yet"."""
    store, app, groups = sample
    admin = sign_in(app, ADMIN)
    assert "No merges yet." in admin.get("/history").text
    html, form = page_form(admin, f"/group/{groups['contact-10']}")
    admin.post(f"/group/{groups['contact-10']}/act", data={**form, "action": "merge", **choose(html, 10)})
    assert len(_merges(store)) == 1
    text = unescape(re.search(r'<p class="empty" id="no-merges">(.*?)</p>', sign_in(app, MARIA).get(
        "/history").text, re.S).group(1))
    assert text == ("You have made no merges yet. Merges of your records by an admin or by the scheduled merge "
                    "are not listed here: an admin sees them all.")
    assert "No company merges yet." in admin.get("/history?entity=company").text


# -- one click for every conflict ------------------------------------------------------------------

def test_use_all_values_of_one_record_chooses_it_in_every_conflict(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    # a manager is not offered another manager's values (#11 is Пётр's; her #10 and #12 do not conflict)
    maria = sign_in(app, MARIA).get(f"/group/{gid}").text
    assert 'data-skip-record="12"' in maria and "data-take-all" not in maria
    admin = sign_in(app, ADMIN)
    html = admin.get(f"/group/{gid}").text
    offered = set(re.findall(r'name="c\.(\w+)" value="11"', html))
    assert "post" in offered and len(offered) >= 2  # (#11's post, "Генеральный директор", and more)
    link = unescape(re.search(r'<a class="button small" href="([^"]+)" data-take-all="11"', html).group(1))
    html, form = page_form(admin, link)
    checked = set(re.findall(r'name="c\.(\w+)" value="11" checked', html))
    assert checked == offered and 'data-take-all="11"' not in html  # (done: not offered again)
    assert 'data-take-all="10"' in html  # (another record's values still may be)
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "merge", **{f"c.{f}": "11" for f in checked}})
    assert r.status_code == 303 and group_row(store, gid)["status"] == "applied"
    assert row(store, schema.contacts, 10)["post"] == "Генеральный директор"


# -- adding any record a person knows is a duplicate -----------------------------------------------

def _together(store) -> set[tuple[int, int]]:
    t = schema.dedup_together
    with store.engine.connect() as conn:
        return set(map(tuple, conn.execute(sa.select(t.c.id_a, t.c.id_b)).all()))


def test_any_record_can_be_added_to_a_group_by_its_id_not_a_member_again(sample):
    """Not only a record the run left out: the page takes a record's id, as `crm-dedup include` does."""
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    assert re.search(r'<form method="post" action="/group/[^"]+/include" class="inline add-record" id="add-record">',
                     html) and 'id="left-out"' not in html  # (nothing left out: the form is the only way)
    # a member is in it already: said, and no "the same" mark made
    r = admin.post(f"/group/{gid}/include", data={"csrf_token": form["csrf_token"], "record_id": "14"})
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert (msg["level"], msg["text"]) == ("error", "contact #14 is in this group already: nothing to add.")
    assert _together(store) == set()
    # a manager adds only a record of hers (#15 is Maria's)
    john = sign_in(app, JOHN)
    _html, j_form = page_form(john, f"/group/{gid}")
    r = john.post(f"/group/{gid}/include", data={"csrf_token": j_form["csrf_token"], "record_id": "15"})
    assert r.status_code == 403 and "may add only records they are responsible for" in r.text
    r = admin.post(f"/group/{gid}/include", data={"csrf_token": form["csrf_token"], "record_id": "15"})
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert msg["level"] == "ok" and msg["text"].startswith(f"Added contact #15 to group {gid}")
    assert 15 in group_row(store, gid)["member_ids"] and _together(store) == {(13, 15)}
