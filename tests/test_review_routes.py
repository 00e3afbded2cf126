"""Review-page fixes found by a user probe, on SQLite and PostgreSQL (TestClient over review.testing's
sample): a skip that takes the group out of the user's sight goes on to the next group; history links
survive a run that replaces the merge's group; "Leads matching clients" after a partial run; huge
integers in URLs and forms are a 400, not a 500; the record page names the responsible manager."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm import proposals, schema
from merge_rules.plan import plan_groups
from review import queries
from review.testing import ADMIN, JOHN, MARIA, PETR, RUN_ID, USER_IDS, group_id
from test_review import CSRF, choose, csrf, group_row, page_form, sample, sign_in  # noqa: F401 - per backend

FLASH = re.compile(r'<div class="flash ([a-z]+)" role="status">([^<]*)')
HUGE = "99999999999999999999999"


def flashes(html: str) -> list[tuple[str, str]]:
    return [(level, text.strip()) for level, text in FLASH.findall(html)]


def give(store, table, ids, user_id) -> None:
    with store.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id.in_(ids)).values(responsible_id=user_id))


# -- 1. a skip that hides the group goes on ------------------------------------------------------

def test_a_skip_that_takes_the_group_out_of_sight_goes_to_the_next_group_with_the_message(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    # the Smith group (#13, #14) is Maria's too: her next group after this one
    give(store, schema.contacts, [13, 14], USER_IDS[MARIA])
    g = schema.dedup_groups
    with store.engine.begin() as conn:
        conn.execute(g.update().where(g.c.id == groups["contact-13"]).values(responsible_ids=[USER_IDS[MARIA]]))
    give(store, schema.contacts, [12], USER_IDS[PETR])  # the pair 11-12 is not hers: she skips only her #10
    maria = sign_in(app, MARIA)
    _html, form = page_form(maria, f"/group/{gid}")
    r = maria.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"]})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{groups['contact-13']}"
    assert USER_IDS[MARIA] not in group_row(store, gid)["responsible_ids"]
    page = maria.get(r.headers["location"])
    assert page.status_code == 200 and "Not found" not in page.text
    assert flashes(page.text)[0][0] == "ok" and flashes(page.text)[0][1].startswith("Skipped your record(s) #10")
    assert maria.get(f"/group/{gid}").status_code == 404  # (where the skip used to send her)


def test_a_record_skip_that_hides_the_group_goes_to_the_list_when_nothing_is_next(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    petr = sign_in(app, PETR)  # his only record in a contact group is #11
    _html, form = page_form(petr, f"/group/{gid}")
    r = petr.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"], "record_id": "11"})
    assert r.status_code == 303 and r.headers["location"] == "/groups/contact"
    page = petr.get("/groups/contact").text
    assert flashes(page) == [("ok", "Skipped contact #11: marked as not a duplicate of #10, #12 (2 new pair(s)).")]
    # an admin still sees the group after skipping a record: the page stays on it
    admin = sign_in(app, ADMIN)
    _html, form = page_form(admin, f"/group/{gid}")
    r = admin.post(f"/group/{gid}/skip", data={"csrf_token": form["csrf_token"], "record_id": "12"})
    assert r.status_code == 303 and r.headers["location"] == f"/group/{gid}"
    # a manager skipping a whole group of her own records still sees it (skipped): she stays on it too
    lead_group = groups["lead-601"]
    maria = sign_in(app, MARIA)
    _html, form = page_form(maria, f"/group/{lead_group}")
    r = maria.post(f"/group/{lead_group}/skip", data={"csrf_token": form["csrf_token"]})
    assert r.headers["location"] == f"/group/{lead_group}"
    page = maria.get(r.headers["location"])
    assert page.status_code == 200 and flashes(page.text)[0][1].startswith("Skipped the group")


# -- 2. history links --------------------------------------------------------------------------

def history_links(c, html: str) -> list[str]:
    """Every link in the history table's rows; each must open (no dead link)."""
    table = html.split('<table class="history">', 1)[1].split("</table>", 1)[0]
    hrefs = [unescape(h) for h in re.findall(r'<a href="([^"]+)"', table)]
    for h in hrefs:
        assert c.get(h).status_code == 200, h
    return hrefs


def new_run(store, run_id: str, groups: list[tuple[int, list[int]]]) -> dict[int, str]:
    """A completed contact run that replaces the pending contact groups with ``groups``."""
    proposals.start_run(store, run_id, ["contact"], "")
    rows, ids = [], {}
    for (primary, members), plan in zip(groups, plan_groups(store, "contact", groups)):
        gid = group_id("contact", primary, members)
        plan.group_id = gid
        rows.append({"id": gid, "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": primary,
                     "member_ids": members, "responsible_ids": [USER_IDS[JOHN]], "primary_reason": "",
                     "criteria": "1 match by name", "plan": plan.to_dict(), "pairs": []})
        ids[primary] = gid
    proposals.replace_pending(store, run_id, ["contact"], rows)
    proposals.finish_run(store, run_id, "completed", {})
    return ids


def test_history_links_follow_the_merge_after_a_run_replaced_its_group(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's #13 and #14
    john = sign_in(app, JOHN)
    html, form = page_form(john, f"/group/{gid}")
    assert john.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 13)}).status_code == 303
    html = john.get("/history").text
    assert history_links(john, html) == [f"/group/{gid}"]  # the group of the merge, while it exists
    merge_id = int(re.search(r'data-undo="(\d+)"', html).group(1))
    assert john.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)}).status_code == 303
    assert group_row(store, gid)["status"] == "pending"

    # the next run finds #13's duplicates again, with #16 too: a new group id, the same primary
    new = new_run(store, "20261201T100000-contact", [(13, [13, 14, 16])])
    with store.engine.connect() as conn:
        assert new[13] != gid and queries.get_group(conn, gid) is None
    html = john.get("/history").text
    assert history_links(john, html) == [f"/group/{new[13]}"]
    assert f"{gid} <span class=\"why\">(no longer exists: a later run replaced it)</span>" in html

    # a run that groups #13 no more: the link goes to the primary's own page
    new_run(store, "20261202T100000-contact", [(14, [14, 16])])
    html = john.get("/history").text
    assert history_links(john, html) == ["/record/contact/13"]

    # #13 is Maria's now: no link at all, and the row says why
    give(store, schema.contacts, [13], USER_IDS[MARIA])
    html = john.get("/history").text
    assert history_links(john, html) == [] and "(no longer exists: a later run replaced it)" in html
    # an admin may open any record
    assert history_links(sign_in(app, ADMIN), sign_in(app, ADMIN).get("/history").text) == ["/record/contact/13"]


def test_history_does_not_link_a_group_the_manager_may_no_longer_see(sample):
    store, app, groups = sample
    gid = groups["lead-601"]  # Maria's leads
    maria = sign_in(app, MARIA)
    html, form = page_form(maria, f"/group/{gid}")
    assert maria.post(f"/group/{gid}/act", data={**form, "action": "merge", **choose(html, 601)}).status_code == 303
    give(store, schema.leads, [601, 602], USER_IDS[JOHN])
    g = schema.dedup_groups
    with store.engine.begin() as conn:  # (the group is John's now too)
        conn.execute(g.update().where(g.c.id == gid).values(responsible_ids=[USER_IDS[JOHN]]))
    html = maria.get("/history").text
    assert history_links(maria, html) == [] and "(not one of yours now)" in html
    assert maria.get(f"/group/{gid}").status_code == 404  # what the old link led to


# -- 3. leads matching clients -----------------------------------------------------------------

def test_lead_clients_skip_a_later_partial_run_and_count_leads_and_pairs(sample, tmp_path):
    store, app, _groups = sample
    runs = schema.dedup_runs
    with store.engine.connect() as conn:
        folder = Path(conn.execute(sa.select(runs.c.folder).where(runs.c.id == RUN_ID)).scalar_one())
    # lead 600 looks like two clients, lead 601 like one: 2 leads in 3 pairs
    pd.DataFrame([{"lead_id": 600, "client_type": "contact", "client_id": 11, "probability": 0.97, "tier": "certain",
                   "explanation": "same full name Иванов Иван (+7.1)"},
                  {"lead_id": 600, "client_type": "company", "client_id": 20, "probability": 0.8, "tier": "probable",
                   "explanation": "same phone"},
                  {"lead_id": 601, "client_type": "contact", "client_id": 10, "probability": 0.7, "tier": "probable",
                   "explanation": "same email"}]).to_parquet(folder / "lead_clients.parquet", index=False)
    partial = tmp_path / "partial-run"
    partial.mkdir()
    proposals.start_run(store, "20261201T100000-contact", ["contact"], str(partial))  # `run --entity contact`
    proposals.finish_run(store, "20261201T100000-contact", "completed", {})
    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == "20261201T100000-contact")
                     .values(started_at=dt.datetime(2030, 1, 1)))

    admin = sign_in(app, ADMIN)
    html = admin.get("/groups/lead_clients").text
    summary = re.search(r'id="lead-summary">([^<]*)<', html).group(1)
    assert summary == (f"From run {RUN_ID}: 2 leads matching an existing contact or company, in 3 lead-client pairs, "
                       "most certain first. They are linked, not merged.")
    assert "same full name Иванов Иван" in html and f"Run folder: {folder}" in html  # (an admin may see it)
    html = admin.get("/groups/lead_clients?tier=certain").text
    assert "1 lead matching" in html and "in 1 lead-client pair," in html

    # the partial run, chosen: it says so, with no server path for a manager
    petr = sign_in(app, PETR)  # responsible for lead 600 and contact 11
    html = petr.get("/groups/lead_clients?run=20261201T100000-contact").text
    note = re.search(r'id="lead-note">([^<]*)<', html).group(1)
    assert note == ("Run 20261201T100000-contact did not match leads to existing clients (it ran for: contact). "
                    "Choose another run.")
    assert str(partial) not in html and str(tmp_path) not in html and "Run folder" not in html
    assert "#600" in petr.get("/groups/lead_clients").text
    # a broken file: said in words, its path only in the server log
    (folder / "lead_clients.parquet").write_bytes(b"not parquet")
    html = petr.get("/groups/lead_clients").text
    assert "leads matching clients cannot be read" in html and str(folder) not in html


def test_lead_clients_without_any_run_that_matched_leads(store, tmp_path):
    from review.testing import load_review_sample

    load_review_sample(store, tmp_path / "run")
    runs = schema.dedup_runs
    with store.engine.begin() as conn:  # the sample run, as if it had looked at contacts only
        conn.execute(runs.update().values(entity_types="contact,company"))
        f = queries.Filters("lead_clients")
        data = queries.lead_clients_page(conn, f, {"id": USER_IDS[ADMIN], "role": "admin"}, 1)
    assert data["run"] is None and data["rows"] == [] and data["note"].startswith(
        "No completed run has matched leads to existing clients yet")


# -- 4. huge integers --------------------------------------------------------------------------

def test_integers_out_of_the_databases_range_are_a_400(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    c = sign_in(app, ADMIN)
    for url in (f"/record/contact/{HUGE}", f"/groups/contact?manager={HUGE}", f"/history?page={HUGE}",
                f"/history?conflict={HUGE}", f"/group/{gid}?primary={HUGE}", f"/groups/contact?page={HUGE}",
                f"/groups/contact?last={HUGE}", f"/groups/lead_clients?manager={HUGE}",
                f"/record/contact/{2**31}", f"/groups/contact?manager=-{2**31 + 1}"):
        r = c.get(url)
        assert r.status_code == 400, (url, r.status_code)
        assert "out of range" in r.text and "from -2147483648 to 2147483647" in r.text, url
    # the largest that fits is an ordinary "not found" / empty list on both backends
    assert c.get(f"/record/contact/{2**31 - 1}").status_code == 404
    assert c.get(f"/groups/contact?manager={2**31 - 1}").status_code == 200
    assert c.get(f"/history?page={2**31 - 1}").status_code == 200
    # posts: the undo's merge id (path) and the skip's record id (form)
    token = csrf(c, "/history")
    r = c.post(f"/history/{HUGE}/undo", data={"csrf_token": token})
    assert r.status_code == 400 and "merge_id" in r.text and "out of range" in r.text
    r = c.post(f"/group/{gid}/skip", data={"csrf_token": token, "record_id": HUGE})
    assert r.status_code == 400 and "record_id" in r.text and "out of range" in r.text
    r = c.post(f"/group/{gid}/skip", data={"csrf_token": token, "record_id": "eleven"})
    assert r.status_code == 400 and "record_id must be a record id" in r.text
    assert group_row(store, gid)["member_ids"] == [10, 11, 12]
    # a manager gets the same 400, not a 500
    assert sign_in(app, MARIA).get(f"/record/contact/{HUGE}").status_code == 400


# -- 5. the record page's responsible manager ----------------------------------------------------

def test_the_record_page_names_the_responsible_manager(sample):
    store, app, _groups = sample
    c = sign_in(app, ADMIN)
    for entity, rid in (("contact", 10), ("company", 20), ("lead", 601)):
        html = c.get(f"/record/{entity}/{rid}").text
        cell = re.search(r"<th>Responsible</th><td>(.*?)</td>", html, re.S).group(1)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
        assert text.startswith("Мария Иванова") and text.endswith("#2"), (entity, text)
        assert "<th>Responsible</th><td>2</td>" not in html
    give(store, schema.contacts, [10], None)
    html = c.get("/record/contact/10").text
    assert re.search(r"<th>Responsible</th><td><span class=\"muted\">nobody</span></td>", html)
