"""Review-page gaps a user probe found, on SQLite and PostgreSQL (TestClient over review.testing's sample):
withdrawing a "not duplicates" mark on the page (group and record pages, by whom it may, with the CSRF
token); no Approve button for a manager on a group holding another manager's records (the server still
refuses); who lost access after a merge; the loser of two merges of one group told who merged it and
when; "contact" for one merged record; pair explanations that quote another manager's record not shown."""

from __future__ import annotations

import re
from html import unescape

import sqlalchemy as sa

from crm import schema
from merge_rules.skips import skip_pair
from review import actions
from review.testing import ADMIN, JOHN, MARIA, PETR, USER_IDS
from test_review import CSRF, choose, group_row, page_form, row, sample, sign_in  # noqa: F401 - per backend

FLASH = re.compile(r'<div class="flash ([a-z]+)" role="status">(.*?)</div>', re.S)
PHONE = "+7 916 123-45-67"  # quoted by the sample's pair explanations
LOST_PETR = ("Пётр Сидоров (#3) is responsible for contact #11 but not for the merged #10 (responsible: "
             "Мария Иванова); they lost access to it")


def flashes(html: str) -> list[dict]:
    """The page's messages: level, text, link (href, words) and detail lines, unescaped."""
    out = []
    for level, body in FLASH.findall(html):
        link = re.search(r'<a href="([^"]*)" class="flash-link">([^<]*)</a>', body)
        out.append({"level": level, "text": unescape(body.split("<", 1)[0]).strip(),
                    "link": (unescape(link.group(1)), unescape(link.group(2))) if link else None,
                    "details": [unescape(d) for d in re.findall(r"<li>([^<]*)</li>", body)]})
    return out


def marks(store) -> set[tuple[int, int]]:
    with store.engine.connect() as conn:
        return set(map(tuple, conn.execute(sa.select(schema.dedup_skips.c.id_a, schema.dedup_skips.c.id_b)).all()))


def section(html: str, id_: str) -> str:
    m = re.search(rf'<section id="{id_}">(.*?)</section>', html, re.S)
    return m.group(1) if m else ""


def pair_article(html: str, a: int, b: int) -> str:
    return re.search(rf'<article class="pair">\s*<h3>#{a} and #{b}:.*?</article>', html, re.S).group(0)


def give(store, table, ids, user_id) -> None:
    with store.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id.in_(ids)).values(responsible_id=user_id))


# -- 1. withdrawing a "not duplicates" mark on the page -------------------------------------------

def test_an_admin_withdraws_a_mark_on_the_group_page_and_the_group_can_be_merged_again(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    skip_pair(store, "contact", 10, 12, USER_IDS[MARIA])
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    assert 'id="merge-now"' not in html and 'id="blockers"' in html
    block = section(html, "skip-marks")
    assert 'data-unskip="10-12"' in block and "marked by Мария Иванова on" in block
    # without the page's CSRF token nothing is withdrawn
    r = admin.post(f"/group/{gid}/unskip", data={"id_a": "10", "id_b": "12"})
    assert r.status_code == 403 and marks(store) == {(10, 12)}
    r = admin.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "12", "id_b": "10"})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    assert marks(store) == set()
    page = admin.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert msg["level"] == "ok" and msg["text"].startswith(
        'Withdrew the mark: contact #10 and #12 are no longer marked "not duplicates" (marked by Мария Иванова on ')
    assert 'id="skip-marks"' not in page and 'id="merge-now"' in page and 'id="blockers"' not in page
    # withdrawn twice (a second tab): said, nothing else happens
    r = admin.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "10", "id_b": "12"})
    assert flashes(admin.get(r.headers["location"]).text)[0]["text"] == (
        'contact #10 and #12 are not marked "not duplicates" (any more); nothing changed.')
    # only a pair the group page shows: not one of records outside the group
    skip_pair(store, "contact", 10, 15, USER_IDS[ADMIN])
    r = admin.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "10", "id_b": "15"})
    assert r.status_code == 400 and marks(store) == {(10, 15)}


def test_a_skipped_groups_marks_are_listed_and_withdrawn_and_it_stays_skipped(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14
    john = sign_in(app, JOHN)
    _html, form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"]}).status_code == 303
    assert group_row(store, gid)["status"] == "skipped" and marks(store) == {(13, 14)}
    html = john.get(f"/group/{gid}").text
    assert 'data-unskip="13-14"' in section(html, "skip-marks") and "marked by John Smith on" in html
    r = john.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "13", "id_b": "14"})
    assert r.status_code == 303 and marks(store) == set()
    assert "The next run may propose them as duplicates again." in flashes(john.get(f"/group/{gid}").text)[0]["text"]
    assert group_row(store, gid)["status"] == "skipped"


def test_a_manager_withdraws_only_marks_between_two_records_of_her_own(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    skip_pair(store, "contact", 10, 12, USER_IDS[ADMIN])
    skip_pair(store, "contact", 10, 11, USER_IDS[ADMIN])
    skip_pair(store, "contact", 11, 12, USER_IDS[PETR])
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    block = section(html, "skip-marks")
    assert 'data-unskip="10-12"' in block
    # a pair with Пётр's record: listed, no button, and why
    assert 'data-unskip="10-11"' not in block and 'data-unskip="11-12"' not in block
    assert "Only an admin may withdraw this mark: #11 is Пётр Сидоров&#39;s." in block
    assert "#10 Иванов Иван Иванович and #11 (another manager&#39;s record): marked by Админ Главный" in block
    # a forged POST of such a pair is refused, and the mark stays
    for a, b in ((10, 11), (11, 12)):
        r = maria.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": str(a), "id_b": str(b)})
        assert r.status_code == 403 and "#11 is Пётр Сидоров's" in unescape(r.text)
    assert marks(store) == {(10, 11), (10, 12), (11, 12)}
    r = maria.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "10", "id_b": "12"})
    assert r.status_code == 303 and marks(store) == {(10, 11), (11, 12)}
    # Пётр sees the marks with his record, none of them his to withdraw (#10 and #12 are Maria's)
    petr = sign_in(app, PETR)
    html, form = page_form(petr, f"/group/{gid}")
    block = section(html, "skip-marks")
    assert "data-unskip" not in block and "#10 is Мария Иванова&#39;s" in block
    r = petr.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "10", "id_b": "11"})
    assert r.status_code == 403 and marks(store) == {(10, 11), (11, 12)}
    # another manager's group is not found at all
    john = sign_in(app, JOHN)
    token = CSRF.search(john.get("/groups/contact").text).group(1)
    r = john.post(f"/group/{gid}/unskip", data={"csrf_token": token, "id_a": "10", "id_b": "11"})
    assert r.status_code == 404 and marks(store) == {(10, 11), (11, 12)}


def test_the_record_page_lists_its_marks_and_withdraws_them(sample):
    store, app, _groups = sample
    skip_pair(store, "contact", 10, 12, USER_IDS[ADMIN])
    skip_pair(store, "contact", 10, 11, USER_IDS[ADMIN])
    maria = sign_in(app, MARIA)
    html = maria.get("/record/contact/10").text
    block = section(html, "skip-marks")
    assert "#12 Иванов Иван Иванович: marked by Админ Главный on" in block and 'data-unskip="10-12"' in block
    # Пётр's record by its id only (its name is his to see), and no button
    assert "#11 (another manager&#39;s record)" in block and 'data-unskip="10-11"' not in block
    assert "Генеральный директор" not in html
    token = CSRF.search(html).group(1)
    r = maria.post("/record/contact/10/unskip", data={"csrf_token": token, "other_id": "11"})
    assert r.status_code == 403 and marks(store) == {(10, 11), (10, 12)}
    assert maria.post("/record/contact/10/unskip", data={"other_id": "12"}).status_code == 403  # no CSRF token
    r = maria.post("/record/contact/10/unskip", data={"csrf_token": token, "other_id": "12"})
    assert r.status_code == 303 and r.headers["location"] == "/record/contact/10"
    assert marks(store) == {(10, 11)}
    assert flashes(maria.get("/record/contact/10").text)[0]["level"] == "ok"
    # a record that is not hers: 404, as its page
    assert maria.post("/record/contact/11/unskip", data={"csrf_token": token, "other_id": "10"}).status_code == 404
    # an admin withdraws any
    admin = sign_in(app, ADMIN)
    html = admin.get("/record/contact/11").text
    assert 'data-unskip="10-11"' in section(html, "skip-marks")
    r = admin.post("/record/contact/11/unskip", data={"csrf_token": CSRF.search(html).group(1), "other_id": "10"})
    assert r.status_code == 303 and marks(store) == set()
    assert 'id="skip-marks"' not in admin.get("/record/contact/11").text


def test_a_left_out_record_can_be_added_once_its_mark_is_withdrawn(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    g = schema.dedup_groups
    with store.engine.begin() as conn:  # #15 (Maria's) was kept out: marked not duplicates with #12
        conn.execute(g.update().where(g.c.id == gid).values(left_out=[
            {"id": 15, "partner": 12, "probability": 0.97, "tier": "certain", "explanation": "surname same",
             "reason": "marked not duplicates with #12"}]))
    skip_pair(store, "contact", 12, 15, USER_IDS[MARIA])
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    assert 'data-include-record="15"' not in html and 'data-unskip="12-15"' in section(html, "skip-marks")
    r = maria.post(f"/group/{gid}/unskip", data={"csrf_token": form["csrf_token"], "id_a": "12", "id_b": "15"})
    assert r.status_code == 303 and marks(store) == set()
    html = maria.get(f"/group/{gid}").text
    assert 'data-include-record="15"' in html and "the mark was withdrawn since the run" in html


# -- 2. no Approve button where approving is refused ----------------------------------------------

def test_a_manager_is_not_offered_approve_on_a_group_with_another_managers_records(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    assert 'id="approve"' not in html and 'id="merge-now"' in html  # she may still merge her own records
    why = unescape(re.search(r'<p class="small muted" id="approve-blocked">([^<]*)</p>', html).group(1))
    assert "this group also holds contact #11 of Пётр Сидоров" in why and "ask an admin" in why
    # the server still refuses it
    r = maria.post(f"/group/{gid}/act", data={**form, "action": "approve", **choose(html, 10)})
    assert r.status_code == 403 and group_row(store, gid)["status"] == "pending"
    # an admin, and a manager whose group is all hers, are offered it
    assert 'id="approve"' in sign_in(app, ADMIN).get(f"/group/{gid}").text
    lead_page = maria.get(f"/group/{groups['lead-601']}").text
    assert 'id="approve"' in lead_page and 'id="approve-blocked"' not in lead_page
    # once Пётр's record is gone (merged elsewhere) the button is back, and approving succeeds
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 11).values(
            deleted_at=row(store, schema.contacts, 10)["modified_at"]))
    html, form = page_form(maria, f"/group/{gid}")
    assert 'id="approve"' in html and 'id="approve-blocked"' not in html
    r = maria.post(f"/group/{gid}/act", data={**form, "action": "approve", **choose(html, 10)})
    assert r.status_code == 303 and group_row(store, gid)["status"] == "approved"


# -- 3 and 5. the merge's result: who lost access, "contact" for one record ------------------------

def test_a_merge_on_the_page_lists_who_lost_access(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    assert "they will lose access to it" in section(html, "access-warnings") or "will lose access" in html
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 10)})
    assert r.status_code == 303 and group_row(store, gid)["status"] == "applied"
    page = admin.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert msg["level"] == "ok"
    assert re.fullmatch(r"Merged contacts #1[12], #1[12] into #10 \(merge #\d+\), which can be undone from the "
                        r"history page\. 1 manager lost access to merged records, listed below: pass it on\.",
                        msg["text"]), msg["text"]
    assert msg["details"] == [LOST_PETR]
    # and the group's page says so for as long as the merge stands
    note = re.search(r'<ul id="lost-access">(.*?)</ul>', admin.get(f"/group/{gid}").text, re.S).group(1)
    assert [unescape(x) for x in re.findall(r"<li>([^<]*)</li>", note)] == [LOST_PETR]


def test_one_merged_record_is_named_in_the_singular_and_nobody_lost_access(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14
    john = sign_in(app, JOHN)
    html, form = page_form(john, f"/group/{gid}")
    r = john.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)})
    page = john.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert re.fullmatch(r"Merged contact #14 into #13 \(merge #\d+\), which can be undone from the history page\.",
                        msg["text"]), msg["text"]
    assert msg["details"] == [] and 'id="lost-access"' not in page and "contacts" not in msg["text"]


# -- 4. two people merge the same group -----------------------------------------------------------

def test_the_second_of_two_merges_is_told_who_merged_the_group_and_when(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    admin, john = sign_in(app, ADMIN), sign_in(app, JOHN)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    j_html, j_form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/act", data={**j_form, "action": "merge", **choose(j_html, 13)}).status_code == 303
    with store.engine.connect() as conn:
        merge = conn.execute(sa.select(schema.dedup_merges)).mappings().one()
    when = merge["merged_at"].strftime("%Y-%m-%d %H:%M")
    for action, verb in (("merge", "merged"), ("approve", "approved")):
        r = admin.post(f"/group/{gid}/act", data={**a_form, "action": action, **choose(a_html, 13)})
        assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"  # the page afresh
        page = admin.get(r.headers["location"]).text
        [msg] = flashes(page)
        assert msg["level"] == "error" and msg["text"] == (
            f"Not {verb}: this group was just merged by John Smith at {when} UTC: contact #14 into #13 "
            f"(merge #{merge['id']}).")
        assert msg["link"] == ("/record/contact/13", "Open the merged contact #13")
        assert 'id="merged-note"' in page and "<li>" not in msg["text"]
    # John pressing Merge a second time (a double click) is told it was him
    r = john.post(f"/group/{gid}/act", data={**j_form, "action": "merge", **choose(j_html, 13)})
    assert [m["text"][:50] for m in flashes(john.get(r.headers["location"]).text)] == [
        "Merged contact #14 into #13 (merge #1), which can ",  # (his merge's, not shown yet)
        "Not merged: this group was just merged by you at 2"]
    # skipping the merged group says the same
    r = admin.post(f"/group/{gid}/skip", data={"csrf_token": a_form["csrf_token"]})
    assert flashes(admin.get(r.headers["location"]).text)[0]["text"].startswith(
        "Not skipped: this group was just merged by John Smith at ")
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.dedup_merges)).scalar() == 1


def test_a_merge_of_part_of_the_group_since_the_page_was_opened_is_named(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    admin, maria = sign_in(app, ADMIN), sign_in(app, MARIA)
    a_html, a_form = page_form(admin, f"/group/{gid}")
    m_html, m_form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/act", data={**m_form, "action": "merge", **choose(m_html, 10)})
    assert r.status_code == 303 and row(store, schema.contacts, 12)["deleted_at"] is not None
    r = admin.post(f"/group/{gid}/act", data={**a_form, "action": "merge", **choose(a_html, 10)})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert re.fullmatch(r"Not merged: this group changed since you opened it: Мария Иванова merged contact #12 into "
                        r"#10 \(merge #\d+\) at [0-9-]+ [0-9:]+ UTC\. Here is the plan for the records left in it; "
                        r"check it and try again\.", msg["text"]), msg["text"]
    assert msg["link"] == ("/record/contact/10", "Open the merged contact #10")
    assert row(store, schema.contacts, 11)["deleted_at"] is None and group_row(store, gid)["status"] == "pending"


def test_two_merges_racing_past_the_page_checks_name_the_winner(sample, monkeypatch):
    """Both merges passed the page's checks; John's committed first, so the engine finds the rows changed
    (StalePlanError): the admin is told John merged the group, not given the engine's list of rows."""
    store, app, groups = sample
    gid = groups["contact-13"]
    real = actions.apply_plan

    def john_first(store_, plan, user_id, **kw):
        monkeypatch.setattr(actions, "apply_plan", real)
        assert real(store_, plan, USER_IDS[JOHN], **kw).status == "applied"
        return real(store_, plan, user_id, **kw)

    monkeypatch.setattr(actions, "apply_plan", john_first)
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert msg["text"].startswith("Not merged: this group was just merged by John Smith at ") and not msg["details"]
    assert msg["link"] == ("/record/contact/13", "Open the merged contact #13")
    with store.engine.connect() as conn:
        merges = conn.execute(sa.select(schema.dedup_merges.c.user_id)).scalars().all()
    assert merges == [USER_IDS[JOHN]] and group_row(store, gid)["status"] == "applied"


def test_a_manager_who_cannot_open_the_merged_record_is_linked_to_the_merge(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    maria = sign_in(app, MARIA)
    m_html, m_form = page_form(maria, f"/group/{gid}")
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}?primary=11")  # into Пётр's record: not Maria's to open
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "11", **choose(html, 11)})
    assert group_row(store, gid)["status"] == "applied", admin.get(r.headers["location"]).text
    r = maria.post(f"/group/{gid}/act", data={**m_form, "action": "merge", **choose(m_html, 10)})
    page = maria.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert msg["text"].startswith("Not merged: this group was just merged by Админ Главный at ")
    assert msg["link"] == (f"/group/{gid}#merged-note", "See the merge") and 'id="merged-note"' in page


# -- 6. explanations quoting another manager's record ---------------------------------------------

def test_a_managers_page_does_not_quote_another_managers_record_in_pair_explanations(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    admin_html = sign_in(app, ADMIN).get(f"/group/{gid}").text
    assert all(PHONE in pair_article(admin_html, a, b) for a, b in ((10, 11), (10, 12), (11, 12)))
    html = sign_in(app, MARIA).get(f"/group/{gid}").text
    assert PHONE in pair_article(html, 10, 12)  # both hers
    for a, b in ((10, 11), (11, 12)):
        article = pair_article(html, a, b)
        assert PHONE not in article and "it quotes the values of #11, another manager&#39;s record" in article
        assert 'class="bar ' in article  # how much each comparison counted names no value
    assert html.count(PHONE) == 1


def test_leads_matching_clients_do_not_quote_another_managers_record(sample):
    store, app, _groups = sample
    quoted = "same full name Иванов Иван"  # lead #600 (Пётр's) and contact #11 (Пётр's)
    assert quoted in sign_in(app, PETR).get("/groups/lead_clients").text
    give(store, schema.leads, [600], USER_IDS[MARIA])  # the lead is Maria's now, the contact still Пётр's
    for email in (MARIA, PETR):
        html = sign_in(app, email).get("/groups/lead_clients").text
        assert "#600" in html and quoted not in html and "Not shown: it quotes the values" in html, email
    assert quoted in sign_in(app, ADMIN).get("/groups/lead_clients").text
