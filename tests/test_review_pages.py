"""The review pages as a person reads them, on SQLite and PostgreSQL: the groups list's page labels name
the rows shown (Next, Previous, Last agree), texts in words with singular and plural, accessible names
for the record buttons and conflict choices. One browser test (Debian's Chromium): the list at a
390 px phone width and at 1280 px, and keyboard choices that do not reload the page at every arrow key."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from crm import schema
from review import queries
from review.testing import ADMIN, JOHN, MARIA, USER_IDS
from test_review import sample, sign_in  # noqa: F401 - the review app over the sample CRM, per backend
from test_review_browser import browser_type_launch_args, site  # noqa: F401 - Debian's Chromium, a served app
from test_review_browser import sign_in as browser_sign_in

ROWS = re.compile(r'<tr class="group-row" data-group="([^"]+)"')
LABEL = re.compile(r'<span id="page-label">([^<]*)</span>')


def add_groups(store, n: int) -> list[str]:
    """``n`` more pending contact groups (many equal scores, so the id breaks ties); returns every
    pending contact group's id in the list's order."""
    g = schema.dedup_groups
    extra = [{"id": f"contact-p-{i:04d}", "entity_type": "contact", "run_id": "20261126T160000-review",
              "status": "pending", "tier": "possible", "score": round(0.5 + (i % 7) / 40, 3), "primary_id": 15,
              "member_ids": [15, 10], "responsible_ids": [USER_IDS[JOHN] if i % 2 else USER_IDS[MARIA]],
              "primary_reason": "", "criteria": "1 match by email", "updated_at": dt.datetime(2026, 1, 1)}
             for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(g.insert(), extra)
        return [r.id for r in conn.execute(sa.select(g.c.id).where(g.c.entity_type == "contact",
                                                                   g.c.status == "pending")
                                           .order_by(g.c.score.desc(), g.c.id))]


def link(html: str, text: str) -> str | None:
    m = re.search(rf'href="([^"]+)">{re.escape(text)}</a>', html)
    return unescape(m.group(1)) if m else None


def shown(c, url: str, expected: list[str]) -> tuple[str, tuple[int, int], str]:
    """The page at ``url``: its html, the 1-based positions of its first and last rows, its label."""
    html = c.get(url).text
    ids = ROWS.findall(html)
    first = expected.index(ids[0]) + 1
    assert ids == expected[first - 1:first - 1 + len(ids)], "a page shows a run of the list"
    return html, (first, first + len(ids) - 1), LABEL.search(html).group(1)


def label(first: int, last: int, total: int) -> str:
    page = f"page {(first - 1) // 50 + 1} of {-(-total // 50)} · " if (first - 1) % 50 == 0 else ""
    return f"{page}rows {first:,}–{last:,} of {total:,}"


# -- 1. paging --------------------------------------------------------------------------------

def test_page_labels_name_the_rows_shown_and_last_previous_agree_with_next(sample):
    store, app, _groups = sample
    expected = add_groups(store, 127)  # 3 sample groups + 127: pages of 50, 50 and 30
    total = len(expected)
    assert total == 130
    c = sign_in(app, ADMIN)

    forward, url = [], "/groups/contact"
    while url:
        html, rows, text = shown(c, url, expected)
        assert text == label(*rows, total)
        assert "page=" not in "".join(re.findall(r'<nav class="pager".*?</nav>', html, re.S))  # cursors only
        forward.append(rows)
        url = link(html, "Next ›")
    assert forward == [(1, 50), (51, 100), (101, 130)]

    # Last holds what is left after the full pages, and Previous steps back over the pages Next walked
    html, rows, text = shown(c, "/groups/contact?last=1", expected)
    assert (rows, text) == ((101, 130), "page 3 of 3 · rows 101–130 of 130")
    assert link(html, "Next ›") is None and link(html, "Last »") is None
    backward = [rows]
    while (url := link(html, "‹ Previous")):
        html, rows, text = shown(c, url, expected)
        assert text == label(*rows, total)
        backward.insert(0, rows)
    assert backward == forward

    # a page number typed in the URL shows that page, labelled with its rows (one past the end: the last)
    html, rows, text = shown(c, "/groups/contact?page=3", expected)
    assert rows[0] == 2 * 50 + 1 and text == label(*rows, total)
    html, rows, text = shown(c, "/groups/contact?page=999", expected)
    assert rows[1] == total and text == label(*rows, total)

    # a manager's list is paged the same way over just their groups
    johns = [i for i in expected if i.startswith("contact-p-") and int(i[-4:]) % 2 or i == _groups["contact-13"]
             or i == _groups["contact-16"]]
    john = sign_in(app, JOHN)
    html, rows, text = shown(john, "/groups/contact?last=1", johns)
    assert rows == (51, len(johns)) and text == label(*rows, len(johns))
    html, rows, text = shown(john, link(html, "‹ Previous"), johns)
    assert rows == (1, 50) and text.startswith("page 1 of 2")


def test_list_groups_last_page_jump_and_positions(sample):
    store, _app, _groups = sample
    expected = add_groups(store, 130)  # 133 in all
    admin = {"id": USER_IDS[ADMIN], "role": "admin"}
    f = queries.Filters("contact")
    with store.engine.connect() as conn:
        # 133 = 7 x 19: the last page is a full one
        last = queries.list_groups(conn, f, admin, last=True, limit=19)
        assert [r["id"] for r in last["rows"]] == expected[114:] and last["first"] == 115
        assert last["has_prev"] and not last["has_next"]
        # page N typed in: an OFFSET walk, labelled with its position
        page3 = queries.list_groups(conn, f, admin, page=3)
        assert [r["id"] for r in page3["rows"]] == expected[100:] and page3["first"] == 101
        assert page3["has_prev"] and not page3["has_next"]
        # a cursor page knows where it is
        nxt = queries.list_groups(conn, f, admin, after=page3["prev"], limit=10)
        assert nxt["first"] == 102 and [r["id"] for r in nxt["rows"]] == expected[101:111]
        # the next group for "leave for later" does not count
        assert queries.list_groups(conn, f, admin, after=nxt["prev"], limit=1, position=False)["first"] == 0


# -- 3. texts ---------------------------------------------------------------------------------

def test_plan_texts_use_words_and_plurals(sample):
    _store, app, groups = sample
    c = sign_in(app, ADMIN)
    html = c.get(f"/group/{groups['contact-13']}").text
    summary = re.search(r'id="plan-summary">([^<]*)<', html).group(1)
    assert summary == ("Merge contact #14 into #13; 4 fields change (middle name, post, address, comments); "
                       "1 conflict, to choose: first name; 1 contact detail moves, 1 repeated contact detail "
                       "dropped; linked records move: 1 activity, 1 company link, 1 deal, 1 history event, 1 quote")
    html = c.get(f"/group/{groups['contact-10']}").text
    moving = re.search(r"<h2>Linked records that move to the primary</h2>\s*<ul>(.*?)</ul>", html, re.S).group(1)
    assert re.findall(r"<li>([^<]*)</li>", moving) == [
        "2 deals", "2 invoices", "1 quote", "1 activity", "2 history events", "1 lead", "3 company links"]
    for wrong in ("contact_companies", "(s)", "1 activities", "1 invoices", "1 company links", "1 history events"):
        assert wrong not in html, wrong
    # an open conflict asks for a choice and names no rule; a settled one says where its value is from
    post = re.search(r'data-field="post">.*?</tr>', html, re.S).group(0)
    result = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", post.split('class="result">')[1])).strip()
    assert result == "Директор choose the value to keep"
    settled = c.get(f"/group/{groups['contact-10']}?c.post=11&c.source=10").text
    post = re.search(r'data-field="post">.*?</tr>', settled, re.S).group(0)
    assert "from #11 · your choice" in re.sub(r"\s+", " ", post) and "choose the value" not in post
    assert "2 conflicts, resolved" in settled
    # a company's contact_companies rows are links to contacts, on its record page too
    assert "Linked: 1 deal, 2 contact links" in c.get("/record/company/20").text
    assert re.search(r'id="summary">3 groups pending,', c.get("/groups/contact").text)
    assert re.search(r'id="summary">1 group pending,', sign_in(app, MARIA).get("/groups/contact").text)


# -- 4. accessible names ----------------------------------------------------------------------

def test_record_buttons_and_choices_have_names_of_their_own(sample):
    _store, app, groups = sample
    html = sign_in(app, ADMIN).get(f"/group/{groups['contact-10']}").text
    skips = re.findall(r'<button[^>]*data-skip-record="(\d+)"[^>]*aria-label="([^"]+)"', html)
    assert skips == [("10", "Not a duplicate: contact #10"), ("11", "Not a duplicate: contact #11"),
                     ("12", "Not a duplicate: contact #12")]
    assert 'aria-label="Make contact #12 the primary"' in html
    # each radio's label names the field and the record as well as the value
    choices = re.findall(r'<label class="choice"><input type="radio" name="c\.(\w+)" value="(\d+)"[^>]*> '
                         r'<span class="vh">([^<]*)</span><span class="val">([^<]*)</span>', html)
    assert ("post", "11", "Post from #11: ", "Генеральный директор") in choices
    assert all(text == f"{text.split(' from')[0]} from #{rid}: " for _f, rid, text, _v in choices) and len(choices) >= 4
    assert 'id="choice-help"' in html and 'aria-describedby="choice-help"' in html
    with open(queries.__file__.replace("queries.py", "static/review.css"), encoding="utf-8") as fh:
        css = fh.read()
    assert re.search(r"button:focus-visible[^{]*\{[^}]*outline: 2px solid", css)


# -- 2 and 4 in Chromium: a phone's width, the keyboard ---------------------------------------

@pytest.mark.browser
def test_phone_width_layout_and_keyboard_choices(site, page):
    base, store, groups = site
    page.set_viewport_size({"width": 390, "height": 844})
    browser_sign_in(page, base, ADMIN)
    # nothing scrolls the page sideways; every Review button is on screen; the header's name on one line
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for box in (b.bounding_box() for b in page.get_by_role("link", name="Review").all()):
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    brand = page.locator(".brand").bounding_box()
    assert brand["height"] < 30 and brand["x"] + brand["width"] <= 390
    expect(page.locator("th.col-score")).to_be_hidden()
    expect(page.locator("tr.group-row .narrow-only .tier").first).to_be_visible()  # the tier, moved
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.locator("th.col-score")).to_be_visible()
    expect(page.locator("th.col-managers")).to_be_visible()
    expect(page.locator("tr.group-row .narrow-only").first).to_be_hidden()

    # arrow keys step through the choices without reloading; Enter shows the plan with the choice
    gid = groups["contact-10"]
    page.goto(f"{base}/group/{gid}")
    url = page.url
    post = page.locator('tr[data-field="post"]')
    expect(post.get_by_label("Post from #10")).to_be_visible()
    post.locator('input[value="10"]').focus()
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    assert page.url == url
    expect(post.locator('input[value="11"]')).to_be_checked()
    expect(post.locator(":focus")).to_have_attribute("value", "11")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(post.locator('input[value="11"]')).to_be_checked()
    expect(post.locator("td.result .val")).to_have_text("Генеральный директор")
    # a mouse click still re-plans at once
    with page.expect_navigation():
        page.locator('tr[data-field="source"] label.choice').first.click()
    expect(page.locator("#plan-summary")).to_contain_text("2 conflicts, resolved")
    # a focused button shows where the keyboard is
    page.locator("#preview").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
