"""Review-page polish, on SQLite and PostgreSQL (TestClient over review.testing's sample): every action on
a group page keeps the filters of the list the person came from; the page of a record a merge took says
where it went; a person whose session ended is told so on the sign-in page; the message after an undo
links the group it names."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qsl, urlencode, urlsplit

import sqlalchemy as sa

from crm import schema
from merge_rules.settings import MergeSettings
from merge_rules.skips import skip_pair
from review.app import create_app
from review.security import SESSION_COOKIE
from review.testing import ADMIN, JOHN, MARIA, PETR, USER_IDS
from test_review import CSRF, choose, client, csrf, group_row, page_form, row, sample, sign_in  # noqa: F401
from test_review_gaps import flashes

FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
# the list Мария's contact group is opened from: certain ones, her records, a search
LIST = {"tier": "certain", "manager": str(USER_IDS[MARIA]), "status": "pending", "q": "916 123"}


def form_fields(html: str, action: str, without: tuple[str, ...] = (), **has: str) -> dict[str, str]:
    """The hidden fields of the page's form posting to ``action`` (the first holding the fields ``has``
    and none named in ``without``)."""
    for target, body in FORM.findall(html):
        fields = {k: unescape(v) for k, v in HIDDEN.findall(body)}
        if unescape(target) == action and all(fields.get(k) == v for k, v in has.items()) \
                and not set(without) & set(fields):
            return fields
    raise AssertionError(f"no form posting to {action} with {has}")


def split(location: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(location)
    return parts.path, dict(parse_qsl(parts.query))


def merge_of(store, entity: str) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(schema.dedup_merges).where(
            schema.dedup_merges.c.entity_type == entity)).mappings().one())


# -- 1. every action keeps the list's filters --------------------------------------------------------

def test_every_action_on_a_group_page_goes_back_with_the_lists_filters(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Мария's, 11 is Пётр's
    here = f"/group/{gid}"
    skip_pair(store, "contact", 10, 12, USER_IDS[MARIA])
    admin = sign_in(app, ADMIN)
    listed = admin.get("/groups/contact", params=LIST).text
    link = unescape(re.search(r'<a class="button" href="([^"]+)"', listed).group(1))
    assert split(link) == (here, {k: v for k, v in LIST.items() if k != "status"})

    def act(action: str, extra: dict[str, str] | None = None, **has: str) -> str:
        """Posts the page's form to ``action`` as a browser would; the redirect's path (its query checked,
        and the action's message, when it has one, a success)."""
        html = admin.get(page).text
        data = {**form_fields(html, action, **has), **(extra or {})}
        r = admin.post(action, data=data)
        assert r.status_code == 303, (action, r.status_code, r.text)
        path, query = split(r.headers["location"])
        assert {k: query.get(k) for k in LIST} == LIST, (action, r.headers["location"])
        said = flashes(admin.get(r.headers["location"]).text)
        assert [m["level"] for m in said] == ([] if data.get("action") == "preview" else ["ok"]), (action, said)
        return path

    page = link
    assert act(f"{here}/unskip", id_a="10", id_b="12") == here
    html = admin.get(page).text
    assert act(f"{here}/act", {"action": "preview", **choose(html, 12)}) == here
    assert act(f"{here}/act", {"action": "approve", **choose(html, 10)}) == here
    assert group_row(store, gid)["status"] == "approved"
    assert act(f"{here}/unapprove") == here
    assert act(f"{here}/skip", record_id="12") == here
    assert act(f"{here}/include", {"record_id": "15"}) == here
    assert act(f"{here}/withdraw-include", record_id="15") == here
    page = f"{here}?{urlencode(LIST)}"  # (as every redirect above went)
    html = admin.get(page).text
    # the page reached after them still carries the list: its link back to it and its links to replan
    assert 'href="/groups/contact?tier=certain&amp;manager=2&amp;status=pending&amp;q=916+123">Contacts</a>' in html
    make_primary = unescape(re.search(r'href="([^"]+)" data-make-primary="11"', html).group(1))
    assert split(make_primary)[1] == {"primary": "11", **LIST}
    assert act(f"{here}/act", {"action": "merge", **choose(html, 10)}) == here
    assert group_row(store, gid)["status"] == "applied"


def test_a_skip_that_takes_the_group_out_of_sight_goes_on_within_the_list(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    with store.engine.begin() as conn:  # #11 and #12 Пётр's: the pair is not Мария's to skip
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 12).values(responsible_id=USER_IDS[PETR]))
    maria = sign_in(app, MARIA)  # her skip takes her #10 out: the group is Пётр's alone then
    html = maria.get(f"/group/{gid}", params={"tier": "certain"}).text
    r = maria.post(f"/group/{gid}/skip", data=form_fields(html, f"/group/{gid}/skip", without=("record_id",)))
    assert r.status_code == 303 and group_row(store, gid)["member_ids"] == [11, 12]
    # no other certain contact group of hers: the list she came from, with its filters
    assert r.headers["location"] == "/groups/contact?tier=certain&status=pending"


# -- 2. the page of a merged record says where it went ----------------------------------------------

def test_a_merged_records_page_names_the_record_it_went_into_and_when(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14; #14 is merged into #13
    john = sign_in(app, JOHN)
    html, form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
    merge = merge_of(store, "contact")
    when = merge["merged_at"].strftime("%Y-%m-%d %H:%M")
    page = john.get("/record/contact/14").text
    note = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", re.search(
        r'<div class="flash info" id="merged-into">(.*?)</div>', page, re.S).group(1)))).strip()
    assert note == (f"This contact was merged into Smith Jonathan Paul #13 on {when} UTC by John Smith "
                    f"(merge #{merge['id']}), in group {gid}.")
    assert '<a href="/record/contact/13" id="merged-primary">' in page
    assert f'<a href="/group/{gid}" id="merged-group">' in page
    assert "Jon" in page  # (the record itself is still shown: soft-deleted)
    # undone: the record is back, and its page no longer says it was merged
    hist = john.get("/history").text
    assert john.post(f"/history/{merge['id']}/undo", data={"csrf_token": CSRF.search(hist).group(1)}).status_code == 303
    assert 'id="merged-into"' not in john.get("/record/contact/14").text


def test_a_record_deleted_outright_by_a_merge_shows_as_it_was_and_where_it_went(sample):
    store, _app, groups = sample
    app = create_app(store.url, "test-secret-key", merge_settings=MergeSettings(delete_mode="hard"))
    try:
        gid = groups["contact-13"]
        admin = sign_in(app, ADMIN)
        html, form = page_form(admin, f"/group/{gid}")
        assert admin.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
        assert row(store, schema.contacts, 14) is None
        merge = merge_of(store, "contact")
        for c in (admin, sign_in(app, JOHN)):  # (John was responsible for it)
            r = c.get("/record/contact/14")
            assert r.status_code == 200
            assert 'id="merged-into"' in r.text and f"(merge #{merge['id']})" in r.text
            assert "It was deleted: here is the record as the merge found it." in r.text
            assert '<a href="/record/contact/13" id="merged-primary">' in r.text
            assert "+1 (212) 555-0100" in r.text  # its phone, as it was
        # not hers: no hint it existed
        assert sign_in(app, MARIA).get("/record/contact/14").status_code == 404
        assert admin.get("/record/contact/999").status_code == 404
    finally:
        app.state.store.dispose()


# -- 3. a session that ended is said on the sign-in page ---------------------------------------------

SIGNED_OUT = re.compile(r'<div class="flash info" role="status">(You (?:were|are) signed out[^<]*?)\s*</div>')
ENDED = "You were signed out: your session ended. Sign in again to go on."


def sent_to_sign_in(c, path: str = "/groups/contact") -> str:
    """The sign-in page a GET of ``path`` is sent to."""
    r = c.get(path)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next="), r.headers.get("location")
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and 'action="/signin"' in page.text
    return page.text


def test_someone_whose_session_ended_is_told_to_sign_in_again(sample):
    _store, app, _groups = sample
    # never signed in: the bare form
    assert not SIGNED_OUT.search(sent_to_sign_in(client(app)))
    # signed out with the button
    c = sign_in(app, MARIA)
    other = sign_in(app, MARIA)  # another browser of hers
    r = c.post("/signout", data={"csrf_token": csrf(c, "/groups/contact")})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert SIGNED_OUT.findall(c.get("/signin").text) == ["You are signed out. Sign in again to go on."]
    # ... which ended her session in the other browser too
    assert SIGNED_OUT.findall(sent_to_sign_in(other)) == [ENDED]
    assert not SIGNED_OUT.search(sent_to_sign_in(other))  # (said once)
    # timed out: the browser drops the session cookie once its max-age has passed
    timed = sign_in(app, JOHN)
    timed.cookies.delete(SESSION_COOKIE)
    assert SIGNED_OUT.findall(sent_to_sign_in(timed)) == [ENDED]
    sign_in(app, JOHN)  # and signing in again works


# -- 4. the message after an undo links the group it names --------------------------------------------

def test_the_undo_message_links_the_group_it_names(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    john = sign_in(app, JOHN)
    html, form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
    merge = merge_of(store, "contact")
    hist = john.get("/history").text
    r = john.post(f"/history/{merge['id']}/undo", data={"csrf_token": CSRF.search(hist).group(1)})
    assert r.status_code == 303
    page = john.get(r.headers["location"]).text
    assert re.search(rf'Undid merge #{merge["id"]} \(.*?\) by John Smith \(#4\); group '
                     rf'<a href="/group/{gid}" class="flash-link">{gid}</a> is pending again', page), page
    assert john.get(f"/group/{gid}").status_code == 200
