"""The review page and the state a group is in, on SQLite and PostgreSQL: undoing a manager's merge of
her part of a group, an approval that a manager's merge leaves standing (or withdraws, saying why), an
approved group's page showing the plan approved, a group holding records marked "not duplicates", and
an applied group's page without warnings about its merged records."""

from __future__ import annotations

import re

import sqlalchemy as sa

from crm import schema
from merge_rules.skips import skip_pair
from review.testing import ADMIN, MARIA, PETR, USER_IDS
from test_review import CSRF, choose, group_row, page_form, row, sample, sign_in  # noqa: F401 - per backend

CHECKED = re.compile(r'name="(c\.\w+)" value="(\d+)" checked')


def checked(html: str) -> dict[str, str]:
    """The conflict choices the page shows chosen (what a browser submits with the form)."""
    return dict(CHECKED.findall(html))


def primary_column(html: str) -> int:
    return int(re.search(r'class="rec-col is-primary[^"]*" data-record="(\d+)"', html).group(1))


def undo_last(c) -> int:
    html = c.get("/history").text
    merge_id = max(int(m) for m in re.findall(r'data-undo="(\d+)"', html))
    r = c.post(f"/history/{merge_id}/undo", data={"csrf_token": CSRF.search(html).group(1)})
    assert r.status_code == 303
    return merge_id


def merge(c, gid: str, path: str | None = None, **extra) -> str:
    """Merge now with the page as shown (its chosen values, as a browser sends them); the page after."""
    html, form = page_form(c, path or f"/group/{gid}")
    r = c.post(f"/group/{gid}/act", data={**form, **checked(html), "action": "merge", **extra})
    assert r.status_code == 303, r.text
    return c.get(r.headers["location"]).text


# -- 1. undoing a manager's merge of her part of a group ----------------------------------------

def test_undoing_a_managers_partial_merge_puts_the_records_back_in_the_group(sample):
    store, app, groups = sample
    gid = groups["contact-10"]  # 10 and 12 are Maria's, 11 is Пётр's
    maria = sign_in(app, MARIA)
    merge(maria, gid)
    assert row(store, schema.contacts, 12)["deleted_at"] is not None
    g = group_row(store, gid)
    assert g["member_ids"] == [10, 11] and g["status"] == "pending"
    page = maria.get(f"/group/{gid}").text
    assert "#10 and #12:" not in page  # (the merged record's pair is not shown while it is out)
    undo_last(maria)
    assert row(store, schema.contacts, 12)["deleted_at"] is None
    # the record the merge took is a member again, the group pending and planned for all three
    g = group_row(store, gid)
    assert g["status"] == "pending" and g["merge_id"] is None and sorted(g["member_ids"]) == [10, 11, 12]
    assert g["responsible_ids"] == [USER_IDS[MARIA], USER_IDS[PETR]]
    assert g["plan"]["primary_id"] == 10 and sorted(g["plan"]["duplicate_ids"]) == [11, 12]
    page = maria.get(f"/group/{gid}").text
    assert "merging needs at least two" not in page and 'id="merge-now"' in page and "#10 and #12:" in page
    # she merges again at once, without waiting for a run
    merge(maria, gid)
    assert row(store, schema.contacts, 12)["deleted_at"] is not None
    assert row(store, schema.contacts, 11)["deleted_at"] is None


# -- 2. a manager's merge and an admin's approval -----------------------------------------------

def approve_as_admin(app, gid: str, primary: int, chosen: int):
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}?primary={primary}")
    choices = choose(html, chosen)
    assert choices, "the group has conflicts to choose"
    r = admin.post(f"/group/{gid}/act", data={**form, "action": "approve", "primary": str(primary), **choices})
    assert r.status_code == 303
    return admin, choices


def test_a_managers_merge_leaves_the_rest_of_an_approved_group_approved(sample):
    from pipelines.apply import apply_approved

    store, app, groups = sample
    gid = groups["contact-10"]
    _admin, choices = approve_as_admin(app, gid, 11, 11)  # Пётр's #11 the primary, its values chosen
    maria = sign_in(app, MARIA)
    page = maria.get(f"/group/{gid}").text
    assert 'id="approved-by">Админ Главный<' in page  # she sees it is approved, and by whom
    page = merge(maria, gid)  # her #12 into her #10
    assert "stays approved by Админ Главный for #11, #10" in page
    g = group_row(store, gid)
    assert g["status"] == "approved" and g["approved_by"] == USER_IDS[ADMIN] and g["approved_at"] is not None
    assert g["member_ids"] == [10, 11] and g["merge_id"] is None and g["primary_id"] == 11
    plan = g["plan"]
    assert plan["primary_id"] == 11 and plan["duplicate_ids"] == [10]
    for key in choices:  # the admin's choices, made again for the records left
        assert plan["fields"][key[2:]]["source_id"] == 11 and plan["fields"][key[2:]]["rule"] == "choice"
    # the scheduled apply merges the rest as approved
    results = apply_approved(store.url, "rest", USER_IDS[ADMIN])
    assert [(r["group_id"], r["status"]) for r in results] == [(gid, "applied")], results
    assert row(store, schema.contacts, 10)["deleted_at"] is not None


def test_an_approval_that_cannot_be_kept_goes_back_to_a_person_saying_why(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    approve_as_admin(app, gid, 12, 11)  # Maria's #12 the primary
    maria = sign_in(app, MARIA)
    assert primary_column(maria.get(f"/group/{gid}").text) == 12  # her page opens on the approved primary
    page = merge(maria, gid, f"/group/{gid}?primary=10", primary="10")  # ... but she merges #12 into #10
    assert row(store, schema.contacts, 12)["deleted_at"] is not None
    assert "approval by Админ Главный is withdrawn (its approved primary #12 left the group)" in page
    g = group_row(store, gid)
    assert g["status"] == "pending" and g["approved_by"] is None and g["member_ids"] == [10, 11]
    assert "approval by Админ Главный withdrawn: its approved primary #12 left the group" in g["primary_reason"]
    assert "approval by Админ Главный withdrawn" in sign_in(app, ADMIN).get(f"/group/{gid}").text


def test_undoing_a_managers_merge_of_an_approved_group_sends_it_back_whole(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    approve_as_admin(app, gid, 11, 11)
    maria = sign_in(app, MARIA)
    merge(maria, gid)
    assert group_row(store, gid)["status"] == "approved"
    merge_id = undo_last(maria)
    g = group_row(store, gid)  # the approval was for the group without #12: a person approves again
    assert g["status"] == "pending" and g["approved_by"] is None and sorted(g["member_ids"]) == [10, 11, 12]
    assert f"merge #{merge_id} was undone and #12 came back" in g["primary_reason"]
    assert g["plan"]["primary_id"] == 11 and sorted(g["plan"]["duplicate_ids"]) == [10, 12]


# -- 3. an approved group's page shows the plan approved ----------------------------------------

def test_an_approved_groups_page_shows_and_merges_the_approved_plan(sample):
    store, app, groups = sample
    gid = groups["contact-13"]  # John's Smiths: conflicting first names
    before = dict(row(store, schema.contacts, 13))
    admin, choices = approve_as_admin(app, gid, 14, 14)
    html = admin.get(f"/group/{gid}").text
    assert primary_column(html) == 14
    assert checked(html) == {k: "14" for k in choices}  # the values approved, chosen already
    assert 'id="approved-plan"' in html and "primary #14" in html
    assert "Approve again with these choices" in html
    # other values chosen, approved again: the stored plan is replaced
    other = choose(html, 13)
    _h, form = page_form(admin, f"/group/{gid}")
    r = admin.post(f"/group/{gid}/act", data={**form, **other, "action": "approve", "primary": "14"})
    assert "Approved again" in admin.get(r.headers["location"]).text
    g = group_row(store, gid)
    assert g["status"] == "approved" and all(g["plan"]["fields"][k[2:]]["source_id"] == 13 for k in other)
    html = admin.get(f"/group/{gid}").text
    assert primary_column(html) == 14 and checked(html) == {k: "13" for k in other}
    # merge now takes the page as shown: no conflict is asked again
    page = merge(admin, gid)
    assert "Choose a value" not in page and group_row(store, gid)["status"] == "applied"
    merged = row(store, schema.contacts, 14)
    assert merged["deleted_at"] is None and row(store, schema.contacts, 13)["deleted_at"] is not None
    assert all(merged[k[2:]] == before[k[2:]] for k in other)  # #13's values, as approved
    # after an undo the page opens on the plan it was merged by
    undo_last(admin)
    html = admin.get(f"/group/{gid}").text
    assert group_row(store, gid)["status"] == "pending"
    assert primary_column(html) == 14 and checked(html) == {k: "13" for k in other}


# -- 4. a group holding records marked "not duplicates" -----------------------------------------

def test_a_group_holding_a_pair_marked_not_duplicates_says_so_and_is_not_approved(sample):
    store, app, groups = sample
    gid = groups["contact-10"]
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    skip_pair(store, "contact", 12, 10, USER_IDS[ADMIN])  # (`crm-dedup skip 10 12` after the page was opened)
    for action in ("approve", "merge"):
        r = admin.post(f"/group/{gid}/act", data={**form, **choose(html, 10), "action": action})
        assert r.status_code == 303
        page = admin.get(r.headers["location"]).text
        assert 'contact #10 and #12 are marked "not duplicates"' in page.replace("&#34;", '"').replace("&quot;", '"')
        assert group_row(store, gid)["status"] == "pending"
    assert row(store, schema.contacts, 12)["deleted_at"] is None
    page = admin.get(f"/group/{gid}").text
    assert "crm-dedup unskip --entity contact 10 12" in page
    assert 'id="merge-now"' not in page and 'id="approve"' not in page
    assert 'data-skip-record="12"' in page  # taking one of them out is still offered


# -- 5. an applied group's page -----------------------------------------------------------------

def test_an_applied_groups_page_has_no_warnings_about_its_merged_records(sample):
    store, app, groups = sample
    gid = groups["contact-13"]
    admin = sign_in(app, ADMIN)
    html, form = page_form(admin, f"/group/{gid}")
    admin.post(f"/group/{gid}/act", data={**form, **choose(html, 13), "action": "merge"})
    assert group_row(store, gid)["status"] == "applied"
    page = admin.get(f"/group/{gid}").text
    assert 'id="merged-note"' in page
    assert "was deleted on" not in page and 'id="access-warnings"' not in page
    with store.engine.connect() as conn:  # (the merged record is deleted indeed)
        assert conn.execute(sa.select(schema.contacts.c.deleted_at).where(schema.contacts.c.id == 14)).scalar()
