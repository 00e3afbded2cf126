"""The groups list's position, on SQLite and PostgreSQL (TestClient over review.testing's sample, with
more groups in front so that its contact groups are on a later page): an action on a group goes back
to the page of the list it was opened from, or to the last page that exists when that one has gone;
"leave for later" keeps the page of the group it goes on to; and the page of a record a merge took still
names that merge, found without unpacking every merge's merged ids."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa

from crm import schema
from review import queries
from review.testing import ADMIN, JOHN, RUN_ID, USER_IDS
from test_review import CSRF, choose, client, group_row, page_form, sample, sign_in  # noqa: F401 - per backend

ROW = re.compile(r'<tr class="group-row" data-group="([^"]+)"')
LABEL = re.compile(r'<span id="page-label">(.*?)</span>', re.S)


def crowd(store, n: int) -> list[str]:
    """``n`` pending certain contact groups listed before the sample's (a higher score), so that those
    are pushed to later pages: with 50 a page, the sample's contact groups (scores 0.999, 0.97, 0.95:
    contact-10, contact-13, contact-16) start at row n + 1."""
    rows = [{"id": f"contact-a-{i:03d}", "entity_type": "contact", "run_id": RUN_ID, "status": "pending",
             "tier": "certain", "score": 1.0, "primary_id": 15, "member_ids": [15, 10],
             "responsible_ids": [USER_IDS[JOHN]], "primary_reason": "", "criteria": "1 match by email",
             "updated_at": dt.datetime(2026, 1, 1)} for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_groups.insert(), rows)
    return [r["id"] for r in rows]


def split(location: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(location)
    return parts.path, dict(parse_qsl(parts.query))


def review_link(html: str, gid: str) -> str:
    """The list's Review link of the group ``gid``."""
    row = re.search(rf'data-group="{re.escape(gid)}".*?<a class="button" href="([^"]+)"', html, re.S)
    assert row, f"{gid} is not on this page"
    return unescape(row.group(1))


def back_link(html: str) -> str:
    """The group page's link back to the list (its crumb)."""
    return unescape(re.search(r'<p class="crumbs"><a href="([^"]+)"', html).group(1))


def listed(c, url: str) -> tuple[list[str], str]:
    """The groups a list page shows and its page label (as text)."""
    r = c.get(url)
    assert r.status_code == 200, r.text
    label = re.sub(r"\s+", " ", unescape(LABEL.search(r.text).group(1))) if LABEL.search(r.text) else ""
    return ROW.findall(r.text), label


def hidden(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the group page's form posting to ``action`` (the first one about the whole
    group: without a record_id)."""
    for target, body in re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', html, re.S):
        fields = {k: unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body)}
        if unescape(target) == action and "record_id" not in fields:
            return fields
    raise AssertionError(f"no form posting to {action}")


# -- 1. an action goes back to the page of the list ----------------------------------------------------

def test_an_action_on_a_group_goes_back_to_the_page_of_the_list_it_came_from(sample):
    store, app, groups = sample
    crowd(store, 50)  # page 2: contact-10, contact-13, contact-16
    admin = sign_in(app, ADMIN)
    first, label = listed(admin, "/groups/contact?tier=certain")
    assert len(first) == 50 and label.startswith("page 1 of 2")
    assert "page" not in split(review_link(admin.get("/groups/contact?tier=certain").text, first[0]))[1]
    # page 2, reached by the pager's "Next" (a cursor): its Review links name page 2, with the filters
    html = admin.get("/groups/contact?tier=certain").text
    page2 = unescape(re.search(r'rel="next" href="([^"]+)"', html).group(1))
    gid = groups["contact-13"]
    link = review_link(admin.get(page2).text, gid)
    assert split(link) == (f"/group/{gid}", {"tier": "certain", "page": "2"})

    # approve it: the page after the action, and its link back to the list, keep page 2
    html, form = page_form(admin, link)
    assert hidden(html, f"/group/{gid}/act")["page"] == "2"
    r = admin.post(f"/group/{gid}/act", data={**hidden(html, f"/group/{gid}/act"), **form, "action": "approve",
                                               **choose(html, 13)})
    assert r.status_code == 303 and group_row(store, gid)["status"] == "approved"
    assert split(r.headers["location"]) == (f"/group/{gid}", {"tier": "certain", "status": "pending", "page": "2"})
    back = back_link(admin.get(r.headers["location"]).text)
    assert split(back) == ("/groups/contact", {"tier": "certain", "status": "pending", "page": "2"})
    rows, label = listed(admin, back)
    assert rows == [groups["contact-10"], groups["contact-16"]]  # (the approved one is no longer pending)
    assert label == "page 2 of 2 · rows 51–52 of 52"

    # a manager's list: the same (John's groups: the crowd and contact-13 / contact-16)
    john = sign_in(app, JOHN)
    link = review_link(john.get("/groups/contact?status=all&last=1").text, groups["contact-16"])
    assert split(link)[1] == {"status": "all", "page": "2"}
    html = john.get(link).text
    assert split(back_link(html))[1] == {"status": "all", "page": "2"}
    # a page number that is not one is a 400 naming it
    r = admin.get(f"/group/{gid}", params={"page": "seven"})
    assert r.status_code == 400 and "page must be a page number" in unescape(r.text)


def test_when_the_page_is_gone_after_an_action_the_list_shows_its_last_page(sample):
    store, app, groups = sample
    crowd(store, 98)  # page 2: 48 of them, contact-10, contact-13; page 3: contact-16 alone
    admin = sign_in(app, ADMIN)
    rows, label = listed(admin, "/groups/contact?page=3")
    assert rows == [groups["contact-16"]] and label.startswith("page 3 of 3")
    page2 = admin.get("/groups/contact?page=2").text
    stale_next = unescape(re.search(r'rel="next" href="([^"]+)"', page2).group(1))  # (a cursor: page 3)
    gid = groups["contact-16"]
    link = review_link(admin.get("/groups/contact?page=3").text, gid)
    assert split(link)[1] == {"page": "3"}
    html, _form = page_form(admin, link)
    r = admin.post(f"/group/{gid}/skip", data=hidden(html, f"/group/{gid}/skip"))  # the whole group
    assert r.status_code == 303 and group_row(store, gid)["status"] == "skipped"
    assert split(r.headers["location"])[1] == {"status": "pending", "page": "3"}
    back = back_link(admin.get(r.headers["location"]).text)
    assert split(back)[1] == {"status": "pending", "page": "3"}
    # page 3 is gone: the last page there is now, not an empty one (nor the first)
    rows, label = listed(admin, back)
    assert rows[-2:] == [groups["contact-10"], groups["contact-13"]] and len(rows) == 50
    assert label == "page 2 of 2 · rows 51–100 of 100"
    # the same through the pager's cursor link made before the skip
    rows, label = listed(admin, stale_next)
    assert rows[-2:] == [groups["contact-10"], groups["contact-13"]] and label == "page 2 of 2 · rows 51–100 of 100"


# -- 2. "leave for later" keeps the page of the group it goes on to ---------------------------------

def test_leave_for_later_keeps_the_page_of_the_group_it_goes_to(sample):
    store, app, groups = sample
    crowd(store, 49)  # page 1 ends with contact-10; page 2: contact-13, contact-16
    admin = sign_in(app, ADMIN)

    def later(url: str) -> str:
        html = admin.get(url).text
        gid = split(url)[0].rsplit("/", 1)[1]
        r = admin.post(f"/group/{gid}/later", data=hidden(html, f"/group/{gid}/later"))
        assert r.status_code == 303
        return r.headers["location"]

    start = review_link(admin.get("/groups/contact?tier=certain").text, groups["contact-10"])
    assert split(start)[1] == {"tier": "certain"}  # (page 1: not named)
    # from the last group of page 1 on to the first of page 2: the page goes along
    nxt = later(start)
    assert split(nxt) == (f"/group/{groups['contact-13']}", {"tier": "certain", "status": "pending", "page": "2"})
    nxt = later(nxt)
    assert split(nxt) == (f"/group/{groups['contact-16']}", {"tier": "certain", "status": "pending", "page": "2"})
    # past the end of the list: the list, at the page the person got to
    end = later(nxt)
    assert split(end) == ("/groups/contact", {"tier": "certain", "status": "pending", "page": "2"})
    rows, label = listed(admin, end)
    assert rows == [groups["contact-13"], groups["contact-16"]] and label.startswith("page 2 of 2")
    # a group page opened without a list: the next group's page names its list too, once past page 1
    r = admin.post(f"/group/{groups['contact-10']}/later",
                   data={"csrf_token": CSRF.search(admin.get(f"/group/{groups['contact-10']}").text).group(1)})
    assert split(r.headers["location"]) == (f"/group/{groups['contact-13']}", {"status": "pending", "page": "2"})


# -- 3. the page of a merged record still names its merge -----------------------------------------

def merge_group(c, gid: str, primary: int) -> None:
    html, form = page_form(c, f"/group/{gid}")
    r = c.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, primary)})
    assert r.status_code == 303 and group_row(c.app.state.store, gid)["status"] == "applied"


def test_a_merged_records_merge_is_found_without_unpacking_every_merge(sample):
    store, app, groups = sample
    admin = sign_in(app, ADMIN)
    merge_group(admin, groups["contact-10"], 10)  # 11 and 12 into 10
    merge_group(admin, groups["contact-13"], 13)  # 14 into 13
    merge_group(admin, groups["company-20"], 20)  # another entity's merge
    m, contacts = schema.dedup_merges, schema.contacts
    with store.engine.connect() as conn:
        merges = {r.primary_id: r.id for r in conn.execute(sa.select(m.c.id, m.c.primary_id))}
        deleted = dict(conn.execute(sa.select(contacts.c.id, contacts.c.deleted_at).where(contacts.c.id.in_([11, 12, 14]))).all())
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for record, primary in ((11, 10), (12, 10), (14, 13)):
            statements.clear()
            with store.engine.connect() as conn:
                fast = queries.merged_into(conn, "contact", record, deleted[record])
                assert not any(re.search(r"json_each|jsonb_array_elements", s) for s in statements), statements
                slow = queries.merged_into(conn, "contact", record)  # (the scan of every merge's ids)
            assert fast == slow and fast["id"] == merges[primary] and fast["primary_id"] == primary
            assert fast["before"]["id"] == record and fast["who"] == "Админ Главный"
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    page = admin.get("/record/contact/14").text
    assert 'id="merged-into"' in page and f"(merge #{merges[13]})" in page

    # a deleted_at that is not the merge's (rewritten by an import since): the merge is still found
    with store.engine.begin() as conn:
        conn.execute(contacts.update().where(contacts.c.id == 14).values(deleted_at=dt.datetime(2030, 1, 1)))
    with store.engine.connect() as conn:
        assert queries.merged_into(conn, "contact", 14, dt.datetime(2030, 1, 1))["id"] == merges[13]
    assert f"(merge #{merges[13]})" in admin.get("/record/contact/14").text
    # a record the CRM deleted, no merge: none; an undone merge: none
    with store.engine.begin() as conn:
        conn.execute(contacts.update().where(contacts.c.id == 15).values(deleted_at=dt.datetime(2030, 1, 1)))
    with store.engine.connect() as conn:
        assert queries.merged_into(conn, "contact", 15, dt.datetime(2030, 1, 1)) is None
    assert 'id="merged-into"' not in admin.get("/record/contact/15").text
    for merge_id in (merges[20], merges[10]):  # (the company merge moved a link of #10's group: newest first)
        hist = admin.get("/history").text
        r = admin.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(hist).group(1)})
        assert r.status_code == 303 and 'class="flash ok"' in admin.get(r.headers["location"]).text
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(contacts.c.deleted_at).where(contacts.c.id == 11)).scalar() is None
        assert queries.merged_into(conn, "contact", 11, deleted[11]) is None  # (its old deleted_at: undone)
    assert 'id="merged-into"' not in admin.get("/record/contact/11").text
