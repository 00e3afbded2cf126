"""More review-page gaps a user probe found, on SQLite and PostgreSQL (TestClient over review.testing's
sample): withdrawing an approval (who may, the approval as the page showed it, CSRF, the plan left
afterwards); "Leave for later" following the list the person came from; searching the group lists
(a record id, or text in the records' names, phones and e-mails; a manager finds only her groups, by
her own records' values)."""

from __future__ import annotations

import re
from html import unescape

from markupsafe import escape

from merge_rules.undo import person_choices
from merge_rules.plan import MergePlan
from review import actions, queries, views
from review.testing import ADMIN, JOHN, MARIA, PETR, USER_IDS
from test_review import choose, group_row, page_form, sample, sign_in  # noqa: F401 - per backend
from test_review_gaps import flashes

APPROVED_BY = re.compile(r'name="approved_by" value="([^"]*)"')
APPROVED_AT = re.compile(r'name="approved_at" value="([^"]*)"')


def withdraw_form(html: str, form: dict[str, str]) -> dict[str, str]:
    """The "Withdraw approval" form's fields, as the page carries them."""
    return {"csrf_token": form["csrf_token"], "approved_by": APPROVED_BY.search(html).group(1),
            "approved_at": APPROVED_AT.search(html).group(1)}


def approve(c, gid: str, record_id: int, primary: int | None = None) -> None:
    """Approve the group on its page with ``record_id``'s value in every conflict (and that primary)."""
    html, form = page_form(c, f"/group/{gid}")
    data = {**form, "action": "approve", **choose(html, record_id)}
    if primary is not None:
        data["primary"] = str(primary)
    r = c.post(f"/group/{gid}/act", data=data)
    assert r.status_code == 303
    assert flashes(c.get(r.headers["location"]).text)[0]["text"].startswith("Approved")


def listed(html: str) -> list[str]:
    return re.findall(r'<tr class="group-row" data-group="([^"]+)">', html)


# -- 1. withdrawing an approval ----------------------------------------------------------------------

def test_the_approver_withdraws_the_approval_and_the_group_gets_the_runs_plan_back(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14; the run's primary is #13
    run_plan = group_row(store, gid)["plan"]
    john = sign_in(app, JOHN)
    approve(john, gid, 14)
    approved = group_row(store, gid)
    assert approved["status"] == "approved" and person_choices(MergePlan.from_dict(approved["plan"]))
    html, form = page_form(john, f"/group/{gid}")
    assert 'id="unapprove"' in html and ">Withdraw approval</button>" in html
    data = withdraw_form(html, form)
    assert data["approved_by"] == str(USER_IDS[JOHN])
    # without the page's CSRF token nothing is withdrawn
    r = john.post(f"/group/{gid}/unapprove", data={k: v for k, v in data.items() if k != "csrf_token"})
    assert r.status_code == 403 and group_row(store, gid)["status"] == "approved"
    r = john.post(f"/group/{gid}/unapprove", data=data)
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    now = group_row(store, gid)
    assert (now["status"], now["approved_by"], now["approved_at"], now["primary_id"]) == ("pending", None, None, 13)
    # the run's plan for the records again: its primary, none of John's choices
    plan = MergePlan.from_dict(now["plan"])
    assert plan.primary_id == 13 and person_choices(plan) == {} and plan.member_ids == [13, 14]
    assert {f: d["source_id"] for f, d in now["plan"]["fields"].items()} == {
        f: d["source_id"] for f, d in run_plan["fields"].items()}
    page = john.get(r.headers["location"]).text
    [msg] = flashes(page)
    assert msg["level"] == "ok" and msg["text"].startswith(
        "Withdrew the approval by you: the group is pending again, with the run's plan for its records (primary #13")
    assert 'id="unapprove"' not in page and 'id="approved-plan"' not in page
    assert 'id="group-status">pending<' in page
    # withdrawn twice (a second tab): said, nothing else happens
    r = john.post(f"/group/{gid}/unapprove", data=data)
    assert flashes(john.get(r.headers["location"]).text)[0]["text"].startswith(
        "Not withdrawn: this group is pending, not approved")


def test_only_an_admin_or_the_approving_manager_may_withdraw_an_approval(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # Мария's #10 and #12, Пётр's #11
    admin, maria = sign_in(app, ADMIN), sign_in(app, MARIA)
    approve(admin, gid, 10)
    html, form = page_form(maria, f"/group/{gid}")
    assert 'id="unapprove"' not in html  # (she sees the group, but did not approve it)
    forged = {"csrf_token": form["csrf_token"], "approved_by": str(USER_IDS[ADMIN]),
              "approved_at": views.decision_state(group_row(store, gid))["approved_at"]}
    r = maria.post(f"/group/{gid}/unapprove", data=forged)
    assert r.status_code == 403 and "only they or an admin may withdraw that approval" in unescape(r.text)
    assert group_row(store, gid)["approved_by"] == USER_IDS[ADMIN]
    # a manager who cannot see the group: no hint that it exists
    john = sign_in(app, JOHN)
    _h, jform = page_form(john, f"/group/{groups['contact-13']}")
    r = john.post(f"/group/{gid}/unapprove", data={**forged, "csrf_token": jform["csrf_token"]})
    assert r.status_code == 404 and group_row(store, gid)["status"] == "approved"
    # an admin withdraws a manager's approval
    gid13 = groups["contact-13"]
    approve(john, gid13, 14)
    html, form = page_form(admin, f"/group/{gid13}")
    r = admin.post(f"/group/{gid13}/unapprove", data=withdraw_form(html, form))
    assert flashes(admin.get(r.headers["location"]).text)[0]["text"].startswith("Withdrew the approval by John Smith")
    assert group_row(store, gid13)["status"] == "pending"


def test_a_stale_page_does_not_withdraw_a_newer_approval(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    admin, john = sign_in(app, ADMIN), sign_in(app, JOHN)
    approve(john, gid, 14)
    html, form = page_form(admin, f"/group/{gid}")  # the admin's page shows John's first approval
    stale = withdraw_form(html, form)
    approve(john, gid, 13)  # approved again, with other choices
    newer = group_row(store, gid)
    r = admin.post(f"/group/{gid}/unapprove", data=stale)
    [msg] = flashes(admin.get(r.headers["location"]).text)
    assert msg["level"] == "error" and msg["text"].startswith("Not withdrawn: this group was approved again by "
                                                              "John Smith at ")
    assert group_row(store, gid) == newer
    # an approval made between the check and the write (the compare-and-set): not withdrawn either
    group = dict(newer)
    group.pop("plan")
    approve(john, gid, 14)
    with store.engine.connect() as conn:
        user = queries.load_user(conn, USER_IDS[ADMIN])
    state = views.decision_state(group)
    out = actions.unapprove(store, group, user, app.state.settings, state["approved_by"], state["approved_at"])
    assert not out.ok and out.message.startswith("Not withdrawn: this group changed while withdrawing")
    now = group_row(store, gid)
    assert now["status"] == "approved" and now["approved_at"] != newer["approved_at"]


# -- 2. "Leave for later" follows the list's filters ------------------------------------------------

def test_leave_for_later_follows_the_filters_of_the_list(sample):
    store, app, groups = sample
    admin = sign_in(app, ADMIN)
    # Мария's contact groups: only contact-10 (13 and 16 are John's)
    html = admin.get("/groups/contact?manager=2").text
    link = unescape(re.search(r'<a class="button" href="([^"]+)"', html).group(1))
    assert link == f"/group/{groups['contact-10']}?manager=2"  # (the list's default status left out)
    page, form = page_form(admin, link)
    assert '<input type="hidden" name="manager" value="2">' in page
    assert f'href="/groups/contact?manager=2&amp;status=pending">Contacts</a>' in page  # (back to the list)
    r = admin.post(f"/group/{groups['contact-10']}/later",
                   data={"csrf_token": form["csrf_token"], "manager": "2", "status": "pending"})
    assert r.status_code == 303 and r.headers["location"] == "/groups/contact?manager=2&status=pending"
    # a search: the next group holding a record that matches, its page keeping the list
    r = admin.post(f"/group/{groups['contact-10']}/later",
                   data={"csrf_token": form["csrf_token"], "status": "pending", "q": "Mallory"})
    assert r.headers["location"] == f"/group/{groups['contact-16']}?status=pending&q=Mallory"
    # the tier: company-20 (probable) then company-23 (probable), whatever the status filter
    r = admin.post(f"/group/{groups['company-20']}/later",
                   data={"csrf_token": form["csrf_token"], "status": "all", "tier": "probable"})
    assert r.headers["location"] == f"/group/{groups['company-23']}?tier=probable&status=all"
    # opened without a list (a link from elsewhere): the next of its entity and status, as before
    r = admin.post(f"/group/{groups['contact-10']}/later", data={"csrf_token": form["csrf_token"]})
    assert r.headers["location"] == f"/group/{groups['contact-13']}"


# -- 3. searching the group lists --------------------------------------------------------------------

SEARCHES = [  # (what is typed, the contact groups listed)
    ("14", ["contact-13"]), ("#14", ["contact-13"]), ("smith", ["contact-13"]), ("иванов иван", ["contact-10"]),
    ("IVANOV@", ["contact-10"]), ("89161234567", ["contact-10"]), ("916 123", ["contact-10"]),
    ("Mallory", ["contact-16"]), ("#999", []), ("nobody-at-all", []), ("50%", []),
]


def test_an_admin_searches_the_contacts_by_id_name_phone_and_email(sample):
    _store, app, groups = sample
    admin = sign_in(app, ADMIN)
    for q, expected in SEARCHES:
        html = admin.get("/groups/contact", params={"q": q}).text
        assert listed(html) == [groups[n] for n in expected], q
        assert f'name="q" value="{escape(q)}"' in html
        assert f'id="count-certain">{len(expected)}<' in html  # (the tier counts follow the search)


def test_a_search_of_companies_and_the_pager_links_keep_it(sample):
    _store, app, groups = sample
    admin = sign_in(app, ADMIN)
    html = admin.get("/groups/company", params={"q": "ромашка"}).text  # "ООО «Ромашка»", "Ромашка ООО"
    assert listed(html) == [groups["company-20"]]
    assert 'href="/groups/company?tier=certain&amp;status=pending&amp;q=%D1%80%D0%BE%D0%BC%D0%B0%D1%88%D0%BA%D0%B0"' \
        in html
    r = admin.get("/groups/company", params={"q": "#99999999999"})
    assert r.status_code == 400 and "q: 99999999999 is out of range" in unescape(r.text)


def test_a_manager_finds_only_her_groups_and_only_by_her_own_records(sample):
    _store, app, groups = sample
    maria, petr, john = sign_in(app, MARIA), sign_in(app, PETR), sign_in(app, JOHN)
    assert listed(john.get("/groups/contact", params={"q": "Иванов"}).text) == []  # not his group
    assert listed(john.get("/groups/contact", params={"q": "#10"}).text) == []
    assert listed(maria.get("/groups/contact", params={"q": "Smith"}).text) == []
    assert listed(maria.get("/groups/contact", params={"q": "yandex"}).text) == [groups["contact-10"]]
    # i.ivanov@yandex.ru is Мария's #12: Пётр sees the group (his #11), not her record's e-mail
    assert listed(petr.get("/groups/contact", params={"q": "yandex"}).text) == []
    assert listed(petr.get("/groups/contact", params={"q": "#12"}).text) == [groups["contact-10"]]
    assert listed(petr.get("/groups/contact", params={"q": "495 765"}).text) == [groups["contact-10"]]


def test_a_search_matching_too_many_records_says_so(sample, monkeypatch):
    _store, app, groups = sample
    monkeypatch.setattr(queries, "SEARCH_LIMIT", 1)
    html = sign_in(app, ADMIN).get("/groups/contact", params={"q": "Smith"}).text  # #13 and #14
    assert 'id="search-too-many"' in html
    assert listed(html) == [groups["contact-13"]]  # (the group of #13, the first by id)
