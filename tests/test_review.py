"""The review web app through FastAPI's TestClient, on SQLite and PostgreSQL: sign-in, CSRF, escaping,
who sees what (404 for another manager's group, refused POSTs), merge, stale plans, skip, approve,
undo, the groups list's pages and filters."""

from __future__ import annotations

import datetime as dt
import re
import warnings

import pytest
import sqlalchemy as sa
from markupsafe import escape

from crm import schema
from merge_rules.testing import dump_crm
from review import auth
from review.testing import ADMIN, JOHN, MARIA, PASSWORD, PETR, USER_IDS, XSS_NAME, load_review_sample

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from review.app import create_app  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PLAN = re.compile(r'name="plan" value="([^"]*)"')


@pytest.fixture
def sample(store, tmp_path):
    info = load_review_sample(store, tmp_path / "run")
    app = create_app(store.url, "test-secret-key")
    yield store, app, info["groups"]
    app.state.store.dispose()


def client(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def csrf(c: TestClient, path: str = "/signin") -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return CSRF.search(r.text).group(1)


def sign_in(app, email: str, password: str = PASSWORD) -> TestClient:
    c = client(app)
    r = c.post("/signin", data={"email": email, "password": password, "csrf_token": csrf(c), "next": "/"})
    assert r.status_code == 303, r.text
    return c


def page_form(c: TestClient, path: str) -> tuple[str, dict[str, str]]:
    """The group page's HTML and its plan form's hidden fields."""
    r = c.get(path)
    assert r.status_code == 200, r.text
    token = PLAN.search(r.text)
    return r.text, {"csrf_token": CSRF.search(r.text).group(1), "plan": token.group(1) if token else ""}


def choose(html: str, record_id: int) -> dict[str, str]:
    """A choice of ``record_id``'s value for every conflict the page offers."""
    return {f"c.{f}": str(record_id) for f in re.findall(rf'name="c\.(\w+)" value="{record_id}"', html)}


def row(store, table, id_):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(table).where(table.c.id == id_)).mappings().first()


def group_row(store, gid):
    """The stored group, with its plan (from dedup_plans) as ``plan``."""
    g, p = dict(row(store, schema.dedup_groups, gid)), schema.dedup_plans
    with store.engine.connect() as conn:
        g["plan"] = conn.execute(sa.select(p.c.plan).where(p.c.group_id == gid, p.c.run_id == g["run_id"])).scalar()
    return g


# -- passwords and signing in -------------------------------------------------------------------

def test_passwords_are_argon2_and_set_password_names_unknown_users(store):
    h = auth.hash_password("a long enough pass")
    assert h.startswith("$argon2id$")
    assert auth.verify_password(h, "a long enough pass")
    assert not auth.verify_password(h, "wrong password!")
    assert not auth.verify_password(None, "anything")
    with pytest.raises(auth.AuthError, match="at least 8"):
        auth.hash_password("short")
    with pytest.raises(LookupError, match="nobody@example.org"):
        auth.set_password(store, "nobody@example.org", "long enough pass")


def test_sign_in_required_and_wrong_password(sample):
    store, app, _groups = sample
    c = client(app)
    r = c.get("/groups/contact?tier=certain")
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    r = c.post("/signin", data={"email": ADMIN, "password": "wrong password", "csrf_token": csrf(c)})
    assert r.status_code == 401 and "Wrong email or password" in r.text
    r = c.post("/signin", data={"email": "nobody@x.org", "password": PASSWORD, "csrf_token": csrf(c)})
    assert r.status_code == 401
    # without the form's CSRF token a correct password does not sign in
    r = c.post("/signin", data={"email": ADMIN, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    assert c.get("/groups/contact").status_code == 303
    # an outside "next" is not followed
    r = c.post("/signin", data={"email": ADMIN, "password": PASSWORD, "csrf_token": csrf(c),
                                "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c.get("/groups/contact").status_code == 200


def test_security_headers_and_cookie_flags(sample):
    _store, app, _groups = sample
    c = client(app)
    r = c.get("/signin")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_a_new_password_ends_old_sessions(sample):
    store, app, _groups = sample
    c = sign_in(app, MARIA)
    assert c.get("/groups/contact").status_code == 200
    auth.set_password(store, MARIA, "a brand new password")
    assert c.get("/groups/contact").status_code == 303
    sign_in(app, MARIA, "a brand new password")


def test_sign_out_needs_csrf_and_ends_the_session(sample):
    _store, app, _groups = sample
    c = sign_in(app, ADMIN)
    assert c.post("/signout", data={}).status_code == 403
    token = csrf(c, "/groups/contact")
    assert c.post("/signout", data={"csrf_token": token}).status_code == 303
    assert c.get("/groups/contact").status_code == 303


def test_a_copy_of_a_session_cookie_is_refused_once_its_user_signs_out(sample):
    """Sessions are signed cookies: signing out records the moment, and every session of the user that
    began before it (a copied cookie, another browser) is refused; signing in again works at once."""
    _store, app, _groups = sample
    c = sign_in(app, MARIA)
    other = sign_in(app, MARIA)  # another browser
    admin = sign_in(app, ADMIN)
    copy = client(app)
    copy.cookies.update(dict(c.cookies))
    assert copy.get("/groups/contact").status_code == 200
    assert c.post("/signout", data={"csrf_token": csrf(c, "/groups/contact")}).status_code == 303
    assert copy.get("/groups/contact").status_code == 303 and other.get("/groups/contact").status_code == 303
    assert admin.get("/groups/contact").status_code == 200  # (another user's sessions go on)
    assert sign_in(app, MARIA).get("/groups/contact").status_code == 200


# -- CSRF on every POST -------------------------------------------------------------------------

def test_every_post_checks_the_csrf_token(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    c = sign_in(app, ADMIN)
    _html, form = page_form(c, f"/group/{gid}")
    other = sign_in(app, ADMIN)
    foreign = csrf(other, "/groups/contact")  # a valid token, but of another session
    before = dump_crm(store)
    for path, data in [(f"/group/{gid}/act", {"action": "merge", "plan": form["plan"], "c.post": "10", "c.source": "10"}),
                       (f"/group/{gid}/skip", {}), (f"/group/{gid}/later", {}), ("/history/1/undo", {})]:
        for token in (None, "", "forged", foreign):
            payload = dict(data) if token is None else {**data, "csrf_token": token}
            r = c.post(path, data=payload)
            assert r.status_code == 403, (path, token, r.status_code)
    assert dump_crm(store) == before
    assert group_row(store, gid)["status"] == "pending"


# -- escaping -----------------------------------------------------------------------------------

def test_names_full_of_html_render_as_text(sample):
    _store, app, groups = sample
    c = sign_in(app, ADMIN)
    for path in ("/groups/contact", f"/group/{groups['contact-16']}", "/record/contact/17"):
        html = c.get(path).text
        assert str(escape(XSS_NAME)) == "&lt;script&gt;alert(1)&lt;/script&gt;"
        assert str(escape(XSS_NAME)) in html, path
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert 'onerror="alert' not in html, path
    html = c.get(f"/group/{groups['contact-16']}").text
    assert "&lt;/td&gt;&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "&#34;&gt;&lt;script&gt;alert(4)" in html or "&quot;&gt;&lt;script&gt;alert(4)" in html
    # the only script is the static file
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/review.js" defer>']


# -- who sees what ------------------------------------------------------------------------------

def test_a_manager_sees_only_their_groups(sample):
    _store, app, groups = sample
    c = sign_in(app, MARIA)
    html = c.get("/groups/contact").text
    assert groups["contact-10"] in html
    assert groups["contact-13"] not in html and groups["contact-16"] not in html
    assert 'id="count-certain">1<' in html  # counts are per what she may see
    admin = sign_in(app, ADMIN)
    html = admin.get("/groups/contact").text
    assert all(groups[k] in html for k in ("contact-10", "contact-13", "contact-16"))
    assert 'id="count-certain">3<' in html
    # an admin filtering by manager sees that manager's groups
    html = admin.get(f"/groups/contact?manager={USER_IDS[JOHN]}").text
    assert groups["contact-13"] in html and groups["contact-10"] not in html


def test_another_managers_group_is_404_and_posts_are_refused(sample):
    store, app, groups = sample
    john_group = groups["contact-13"]
    maria = sign_in(app, MARIA)
    assert maria.get(f"/group/{john_group}").status_code == 404
    assert maria.get("/group/contact-does-not-exist").status_code == 404
    assert maria.get("/record/contact/13").status_code == 404  # John's record
    # a plan token lifted from John's own page is no use to Maria either
    john = sign_in(app, JOHN)
    _html, form = page_form(john, f"/group/{john_group}")
    token = csrf(maria, "/groups/contact")
    before = dump_crm(store)
    for path, data in [(f"/group/{john_group}/act", {"action": "merge", "plan": form["plan"]}),
                       (f"/group/{john_group}/act", {"action": "approve", "plan": form["plan"]}),
                       (f"/group/{john_group}/skip", {}), (f"/group/{john_group}/skip", {"record_id": "14"}),
                       (f"/group/{john_group}/later", {})]:
        r = maria.post(path, data={**data, "csrf_token": token})
        assert r.status_code in (403, 404), (path, r.status_code)
    assert dump_crm(store) == before
    assert group_row(store, john_group)["status"] == "pending"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.dedup_skips)).scalar() == 0


def test_a_manager_merges_only_their_own_records_of_a_mixed_group(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Pётр's
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    # Пётр's record is shown read-only and last
    order = [int(x) for x in re.findall(r'<th class="rec-col[^"]*" data-record="(\d+)"', html)]
    assert order == [10, 12, 11]
    assert "read-only" in html and "is the responsibility of Пётр Сидоров" in html
    # and its details are his: neither its post nor its own phone shows on Maria's page, nor its name
    # in her list
    assert "#11: another manager&#39;s record" in html or "#11: another manager's record" in html
    assert "Генеральный директор" not in html and "765-43-21" not in html
    with store.engine.begin() as conn:
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 11).values(last_name="Секретов"))
    assert "Секретов" not in maria.get("/groups/contact").text and "Секретов" in sign_in(app, ADMIN).get(
        "/groups/contact").text
    r = maria.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "10"})
    assert r.status_code == 303
    assert row(store, schema.contacts, 12)["deleted_at"] is not None
    assert row(store, schema.contacts, 11)["deleted_at"] is None
    with store.engine.connect() as conn:
        merge = conn.execute(sa.select(schema.dedup_merges)).mappings().one()
    assert merge["user_id"] == USER_IDS[MARIA] and merge["merged_ids"] == [12]
    # the group stays open for Пётр's record: the merged #10 and #11, planned again, for him or an admin
    g = group_row(store, gid)
    assert g["status"] == "pending" and g["member_ids"] == [10, 11] and g["plan"]["duplicate_ids"] == [11]
    assert g["merge_id"] is None  # (undoing Maria's merge later must not reopen what the group became)
    assert "stays open for the records of other managers (#11)" in maria.get(f"/group/{gid}").text
    history = maria.get("/history").text  # her merge, which she may undo
    assert f'data-undo="{merge["id"]}"' in history and history.count("data-undo=") == 1


def test_a_manager_does_not_approve_or_skip_other_managers_records(sample):
    """Approving for the scheduled merge would leave Пётр's record out while closing the group:
    refused. Skipping the whole group, where a pair is not hers, takes only Maria's records out;
    Пётр's pair stays proposed."""
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/act", data={**form, "action": "approve", "primary": "10", **choose(html, 10)})
    assert r.status_code == 403 and "Not approved: this group also holds records of other managers (#11)" in r.text
    assert group_row(store, gid)["status"] == "pending"
    with store.engine.begin() as conn:  # #12 is Пётр's too now: the pair 11-12 is not Maria's to skip
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 12).values(responsible_id=USER_IDS[PETR]))
    page = maria.get(f"/group/{gid}").text  # nor hers to read: its explanation names their values
    assert "#10 and #11:" in page and "#10 and #12:" in page and "#11 and #12:" not in page
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"]})
    assert r.status_code == 303
    g = group_row(store, gid)
    assert g["status"] == "pending" and g["member_ids"] == [11, 12] and g["plan"]["duplicate_ids"] in ([11], [12])
    with store.engine.connect() as conn:
        pairs = set(conn.execute(sa.select(schema.dedup_skips.c.id_a, schema.dedup_skips.c.id_b)).all())
    assert pairs == {(10, 11), (10, 12)}
    assert sign_in(app, PETR).get(f"/group/{gid}").status_code == 200  # still his to merge


def test_a_manager_with_one_record_in_the_group_is_refused(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    petr = sign_in(app, PETR)
    html, form = page_form(petr, f"/group/{gid}")
    assert 'id="merge-now"' not in html and "merging needs at least two" in html
    # a forged plan for the whole group: the page refuses (403) and nothing changes
    admin = sign_in(app, ADMIN)
    _h, admin_form = page_form(admin, f"/group/{gid}")
    before = dump_crm(store)
    r = petr.post(f"/group/{gid}/act", data={"csrf_token": form["csrf_token"], "plan": admin_form["plan"],
                                             "action": "merge", "c.post": "10", "c.source": "10"})
    assert r.status_code == 303 and "too old" in petr.get(f"/group/{gid}").text  # the token is Admin's
    assert dump_crm(store) == before


# -- merging, stale plans, undo -----------------------------------------------------------------

def test_admin_resolves_conflicts_changes_primary_merges_and_undoes(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    before = dump_crm(store)
    c = sign_in(app, ADMIN)
    # make #12 the primary, then choose the conflicting values
    html, form = page_form(c, f"/group/{gid}?primary=12")
    assert 'data-record="12"' in html.split('class="rec-col is-primary"')[1][:40]
    r = c.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "12"})
    assert r.status_code == 303
    assert "Choose a value for every conflict" in c.get(r.headers["location"]).text
    assert dump_crm(store) == before
    r = c.post(f"/group/{gid}/act", data={**form, "action": "preview", "c.post": "11", "c.source": "11"})
    html, form = page_form(c, r.headers["location"])
    assert 'value="11" checked' in html
    r = c.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "12", "c.post": "11",
                                          "c.source": "11"})
    assert r.status_code == 303
    merged = row(store, schema.contacts, 12)
    assert merged["post"] == "Генеральный директор" and merged["source"] == "phone"
    assert merged["deleted_at"] is None
    assert row(store, schema.contacts, 10)["deleted_at"] is not None
    assert row(store, schema.contacts, 11)["deleted_at"] is not None
    assert group_row(store, gid)["status"] == "applied"
    html = c.get("/history").text
    merge_id = int(re.search(r'data-undo="(\d+)"', html).group(1))
    assert "Админ Главный" in html
    r = c.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)})
    assert r.status_code == 303
    assert dump_crm(store) == before
    assert group_row(store, gid)["status"] == "pending"
    assert "undone" in c.get("/history").text
    # another merge beside the undone one: the history lists both (a merge not undone has no undone_at)
    other = groups["contact-13"]
    html, form = page_form(c, f"/group/{other}")
    assert c.post(f"/group/{other}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
    assert group_row(store, other)["status"] == "applied"
    history = c.get("/history")
    assert history.status_code == 200 and history.text.count("undone 20") == 1 and "data-undo=" in history.text


def test_undo_on_the_page_plans_the_reopened_group_again_as_the_cli_does(sample):
    """The group a page undo reopens has the plan it was merged by (primary, the person's choices),
    made again from the records as they are now, as `crm-dedup undo` leaves it: approved again, it
    merges. (It kept the run's plan, without the choices: the merge stopped at the conflicts the
    person had settled on the page.)"""
    from crm import proposals
    from pipelines.apply import apply_approved

    store, app, groups = sample
    gid = groups["contact-13"]
    with store.engine.begin() as conn:  # edited after the run planned the group, before the merge
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 14).values(
            post="VP Engineering", modified_at=dt.datetime(2025, 1, 1)))
    c = sign_in(app, ADMIN)
    html, form = page_form(c, f"/group/{gid}")
    assert c.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
    assert group_row(store, gid)["status"] == "applied"
    html = c.get("/history").text
    merge_id = int(re.search(r'data-undo="(\d+)"', html).group(1))
    assert c.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)}).status_code == 303
    reopened = group_row(store, gid)
    assert reopened["status"] == "pending"
    assert "VP Engineering" in str(reopened["plan"])  # planned from the records as they are
    proposals.set_status(store, [gid], "approved", USER_IDS[ADMIN])
    results = apply_approved(store.url, "again", USER_IDS[ADMIN])
    assert [(r["group_id"], r["status"]) for r in results] == [(gid, "applied")], results


def test_a_stale_plan_is_refused_with_a_message(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    c = sign_in(app, ADMIN)
    _html, form = page_form(c, f"/group/{gid}")
    with store.engine.begin() as conn:  # someone edits a record after the page was shown
        conn.execute(schema.contacts.update().where(schema.contacts.c.id == 14).values(
            post="VP Engineering", modified_at=dt.datetime(2025, 1, 1)))
    before = dump_crm(store)
    r = c.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "13", "c.first_name": "13"})
    assert r.status_code == 303
    page = c.get(r.headers["location"]).text
    assert "records changed since this page was shown" in page
    assert "VP Engineering" in page  # the change is named, and the fresh plan shows it
    assert dump_crm(store) == before
    assert group_row(store, gid)["status"] == "pending"


def test_undo_reports_conflicts_and_can_be_forced(sample):
    store, app, groups = sample
    gid = groups["lead-601"]
    c = sign_in(app, ADMIN)
    html, form = page_form(c, f"/group/{gid}")
    r = c.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "601", **choose(html, 601)})
    assert r.status_code == 303 and row(store, schema.leads, 602)["deleted_at"] is not None
    with store.engine.begin() as conn:  # the merged lead is edited after the merge
        conn.execute(schema.leads.update().where(schema.leads.c.id == 601).values(title="Edited later"))
    html = c.get("/history").text
    merge_id = int(re.search(r'data-undo="(\d+)"', html).group(1))
    r = c.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)})
    page = c.get(r.headers["location"]).text
    assert "Cannot undo" in page and "Edited later" in page and f'data-force-undo="{merge_id}"' in page
    assert row(store, schema.leads, 602)["deleted_at"] is not None
    r = c.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(page).group(1), "force": "1"})
    assert "overwrote" in c.get(r.headers["location"]).text
    assert row(store, schema.leads, 602)["deleted_at"] is None


def test_undo_past_a_later_merge_is_refused_without_an_undo_anyway(sample):
    """A later merge still holds the records: forcing would mix the two merges' rows, so the page
    says to undo that one first and offers no "undo anyway"."""
    from merge_rules import apply_plan, plan_groups
    from merge_rules.settings import MergeSettings

    store, app, groups = sample
    gid = groups["lead-601"]
    c = sign_in(app, ADMIN)
    html, form = page_form(c, f"/group/{gid}")
    c.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "601", **choose(html, 601)})
    (later_plan,) = plan_groups(store, "lead", [(600, [600, 601])],  # #601, merged into, is merged on
                                MergeSettings.load().model_copy(update={"conflict_policy": "keep_primary"}))
    later = apply_plan(store, later_plan, USER_IDS[ADMIN])
    assert later.status == "applied", later.message
    html = c.get("/history").text
    first = min(int(m) for m in re.findall(r'data-undo="(\d+)"', html))
    before = dump_crm(store)
    r = c.post(f"/history/{first}/undo", data={"csrf_token": CSRF.search(html).group(1)})
    page = c.get(r.headers["location"]).text
    assert f"Merge(s) #{later.merge_id} touched these records later" in page
    assert "data-force-undo=" not in page and dump_crm(store) == before


def test_a_manager_cannot_undo_someone_elses_merge(sample):
    store, app, groups = sample
    gid = groups["lead-601"]  # Maria's records, merged by the admin
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    admin.post(f"/group/{gid}/act", data={**form, "action": "merge", "primary": "601", **choose(html, 601)})
    maria = sign_in(app, MARIA)
    page = maria.get(f"/group/{gid}").text  # the group page does not send her to undo what she may not
    assert "Only Админ Главный or an admin can undo it." in page and "to undo it" not in page
    html = maria.get("/history").text
    assert "data-undo=" not in html
    with store.engine.connect() as conn:
        merge_id = conn.execute(sa.select(schema.dedup_merges.c.id)).scalar_one()
    r = maria.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)})
    assert r.status_code == 403
    assert row(store, schema.leads, 602)["deleted_at"] is not None


# -- approve, skip, leave for later -------------------------------------------------------------

def test_approve_stores_the_plan_with_the_choices(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    c = sign_in(app, ADMIN)
    html, form = page_form(c, f"/group/{gid}?primary=14")
    choices = choose(html, 13)
    conflicts = [k[2:] for k in choices]
    assert conflicts, "the Smith group has conflicting first names"
    r = c.post(f"/group/{gid}/act", data={**form, "action": "approve", "primary": "14", **choices})
    assert r.status_code == 303
    g = group_row(store, gid)
    assert g["status"] == "approved" and g["approved_by"] == USER_IDS[ADMIN] and g["primary_id"] == 14
    assert g["plan"]["primary_id"] == 14
    assert all(g["plan"]["fields"][f]["resolved_by"] == "choice" and g["plan"]["fields"][f]["source_id"] == 13
               for f in conflicts)


def test_skip_a_record_then_the_group(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    c = sign_in(app, ADMIN)
    html, _form = page_form(c, f"/group/{gid}")
    token = CSRF.search(html).group(1)
    r = c.post(f"/group/{gid}/skip", data={"csrf_token": token, "record_id": "11"})
    assert r.status_code == 303
    g = group_row(store, gid)
    assert g["member_ids"] == [10, 12] and g["status"] == "pending" and g["responsible_ids"] == [USER_IDS[MARIA]]
    assert g["plan"]["duplicate_ids"] == [12]
    with store.engine.connect() as conn:
        pairs = set(conn.execute(sa.select(schema.dedup_skips.c.id_a, schema.dedup_skips.c.id_b)).all())
    assert pairs == {(10, 11), (11, 12)}
    # Пётр no longer sees the group: his record left it
    assert sign_in(app, PETR).get(f"/group/{gid}").status_code == 404
    r = c.post(f"/group/{gid}/skip", data={"csrf_token": token})
    assert group_row(store, gid)["status"] == "skipped"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.dedup_skips)).scalar() == 3


def test_a_manager_cannot_skip_another_managers_record(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    maria = sign_in(app, MARIA)
    html, _form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": CSRF.search(html).group(1), "record_id": "11"})
    assert r.status_code == 403
    assert group_row(store, gid)["member_ids"] == [10, 11, 12]


def test_leave_for_later_goes_to_the_next_group(sample):
    store, app, groups = sample
    c = sign_in(app, ADMIN)
    html, form = page_form(c, f"/group/{groups['contact-10']}")
    r = c.post(f"/group/{groups['contact-10']}/later", data={"csrf_token": form["csrf_token"]})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{groups['contact-13']}"
    assert group_row(store, groups["contact-10"])["status"] == "pending"


# -- the lists ----------------------------------------------------------------------------------

def test_the_group_page_shows_criteria_pairs_and_managers(sample):
    _store, app, groups = sample
    c = sign_in(app, ADMIN)
    html = c.get("/groups/contact").text
    assert "1 match by phone, 1 match by name" in html
    assert 'href="mailto:maria@example.ru"' in html and 'href="tel:+74950000002"' in html
    html = c.get(f"/group/{groups['contact-10']}").text
    assert "same phone +7 916 123-45-67" in html
    assert 'class="bar pos w-100"' in html and 'class="bar neg w-10"' in html  # phone is the largest
    assert "will lose access" in html  # Пётр's record merges into Maria's


def test_leads_matching_clients_come_from_the_latest_run(sample):
    _store, app, _groups = sample
    html = sign_in(app, ADMIN).get("/groups/lead_clients").text
    assert "same full name Иванов Иван" in html and "#600" in html and "#11" in html
    # Пётр is responsible for lead 600 and contact 11; John for neither
    assert "#600" in sign_in(app, PETR).get("/groups/lead_clients").text
    assert "#600" not in sign_in(app, JOHN).get("/groups/lead_clients").text


def test_bad_filters_are_a_400_not_a_crash(sample):
    _store, app, _groups = sample
    c = sign_in(app, ADMIN)
    assert c.get("/groups/contact?tier=bogus").status_code == 400
    assert c.get("/groups/contact?manager=abc").status_code == 400
    assert c.get("/groups/contact?after=!!!").status_code == 400
    assert c.get("/groups/nothing").status_code == 404
    r = c.get("/group/contact-10-x?primary=ten")
    assert r.status_code == 400 and "primary" in r.text
    assert c.get("/history?page=x").status_code == 400


def test_pages_walk_every_group_in_order_once(sample):
    store, app, _groups = sample
    g = schema.dedup_groups
    now = dt.datetime(2026, 1, 1)
    extra = [{"id": f"contact-x-{i:03d}", "entity_type": "contact", "run_id": "20261126T160000-review",
              "status": "pending", "tier": ("certain", "probable", "possible")[i % 3],
              "score": round(0.5 + (i % 17) / 40, 3),  # many equal scores: the id breaks ties
              "primary_id": 15, "member_ids": [15, 10], "responsible_ids": [USER_IDS[JOHN] if i % 2 else USER_IDS[MARIA]],
              "primary_reason": "", "criteria": "1 match by email", "updated_at": now} for i in range(130)]
    with store.engine.begin() as conn:
        conn.execute(g.insert(), extra)
        expected = [r.id for r in conn.execute(sa.select(g.c.id).where(g.c.entity_type == "contact",
                    g.c.status == "pending").order_by(g.c.score.desc(), g.c.id))]
    c = sign_in(app, ADMIN)
    seen, url = [], "/groups/contact"
    while url:
        html = c.get(url).text
        seen += re.findall(r'<tr class="group-row" data-group="([^"]+)"', html)
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == expected and len(expected) == 133
    # backwards from the last page gives the same order
    html = c.get("/groups/contact?last=1").text
    back = re.findall(r'data-group="([^"]+)"', html)
    while (prev := re.search(r'rel="prev" href="([^"]+)"', html)):
        html = c.get(prev.group(1).replace("&amp;", "&")).text
        back = re.findall(r'data-group="([^"]+)"', html) + back
    assert back == expected
    # a tier filter and the counts
    html = c.get("/groups/contact?tier=possible").text
    assert set(re.findall(r'data-group="([^"]+)"', html)) <= {e["id"] for e in extra if e["tier"] == "possible"}
    assert 'id="count-possible">43<' in html
    # a manager's pages hold only their groups
    ids = re.findall(r'data-group="([^"]+)"', sign_in(app, JOHN).get("/groups/contact").text)
    assert ids and all(int(i.rsplit("-", 1)[1]) % 2 == 1 for i in ids if i.startswith("contact-x-"))


def test_rights_are_checked_again_when_merging(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    contacts = schema.contacts
    with store.engine.begin() as conn:  # Пётр is given #12 for a while: he may merge #11 and #12
        conn.execute(contacts.update().where(contacts.c.id == 12).values(responsible_id=USER_IDS[PETR]))
    petr = sign_in(app, PETR)
    html, form = page_form(petr, f"/group/{gid}")
    assert 'id="merge-now"' in html and form["plan"]
    with store.engine.begin() as conn:  # ... and loses it again before he clicks
        conn.execute(contacts.update().where(contacts.c.id == 12).values(responsible_id=USER_IDS[MARIA]))
    before = dump_crm(store)
    r = petr.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 11)})
    assert r.status_code == 403 and "merging needs at least two" in r.text
    assert dump_crm(store) == before
