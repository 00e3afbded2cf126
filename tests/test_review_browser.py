"""The review page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), against a
real uvicorn server on a free port and a SQLite CRM: an admin reviews, resolves a conflict, changes the
primary, merges and undoes; a manager sees only their groups and is refused another manager's; names
full of script render as text. Screenshots of the main pages go to tests/artifacts/screenshots/."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from playwright.sync_api import expect

from crm import schema
from crm.store import Store
from merge_rules.testing import dump_crm
from review.app import create_app
from review.testing import ADMIN, MARIA, PASSWORD, XSS_NAME, XSS_OTHER, load_review_sample

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's browser is Debian's Chromium: Playwright cannot download its own here."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `make chromium` (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    """A sample CRM on SQLite served by uvicorn in a thread: (base url, store, group ids)."""
    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    info = load_review_sample(store, tmp_path / "run")
    app = create_app(store.url, "browser-test-secret")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the review server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", store, info["groups"]
    server.should_exit = True
    thread.join(timeout=10)
    app.state.store.dispose()
    store.dispose()


@pytest.fixture
def dialogs(page):
    """Every alert/confirm/prompt the page opens (none should)."""
    seen: list[str] = []

    def on_dialog(d):
        seen.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    return seen


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, email: str, screenshot: str | None = None) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if screenshot:
        shot(page, screenshot)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(email_name(email))
    # the page's stylesheet applied too: the header is in the DOM before it (on a busy machine the
    # page measured at once was laid out unstyled, a table 639 px wide on a phone's 390)
    page.wait_for_load_state("load")


def email_name(email: str) -> str:
    return {"admin@example.ru": "Админ Главный", "maria@example.ru": "Мария Иванова"}[email]


def contact(store, id_: int) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(schema.contacts).where(schema.contacts.c.id == id_)).mappings().one())


def test_admin_reviews_merges_and_undoes(site, page, dialogs):
    base, store, groups = site
    gid = groups["contact-10"]
    before = dump_crm(store)
    sign_in(page, base, ADMIN, screenshot="signin")

    # the groups list: most certain first, counts per tier, the managers reachable
    expect(page.locator("h1")).to_have_text("Contacts: duplicate groups")
    expect(page.locator("tr.group-row")).to_have_count(3)
    expect(page.locator("#count-certain")).to_have_text("3")
    expect(page.locator(f'tr[data-group="{gid}"] a[href="mailto:maria@example.ru"]').first).to_be_visible()
    shot(page, "groups")

    # open the group
    page.locator(f'tr[data-group="{gid}"]').get_by_role("link", name="Review").click()
    expect(page).to_have_url(re.compile(f"/group/{gid}$"))
    expect(page.locator("th.rec-col.is-primary")).to_have_attribute("data-record", "10")
    expect(page.locator("#access-warnings")).to_contain_text("will lose access")
    expect(page.locator("#pairs .bar.pos").first).to_be_visible()
    shot(page, "group")

    # make #12 the primary
    page.locator('[data-make-primary="12"]').click()
    expect(page.locator("th.rec-col.is-primary")).to_have_attribute("data-record", "12")

    # resolve the conflicts: choosing a value re-plans at once (review.js submits the preview)
    post = page.locator('tr[data-field="post"]')
    expect(post.locator("strong.todo")).to_be_visible()
    with page.expect_navigation():
        post.locator('input[value="11"]').check()
    expect(post.locator('input[value="11"]')).to_be_checked()
    expect(post.locator("td.result .val")).to_have_text("Генеральный директор")
    expect(page.locator("th.rec-col.is-primary")).to_have_attribute("data-record", "12")
    with page.expect_navigation():
        page.locator('tr[data-field="source"] input[value="10"]').check()
    expect(page.locator("#plan-summary")).to_contain_text("2 conflicts, resolved")
    shot(page, "group-resolved")

    # merge
    page.locator("#merge-now").click()
    expect(page.locator(".flash.ok")).to_contain_text("Merged contacts")
    expect(page.locator("#group-status")).to_have_text("applied")
    merged = contact(store, 12)
    assert merged["deleted_at"] is None and merged["post"] == "Генеральный директор" and merged["source"] == "web"
    assert contact(store, 10)["deleted_at"] is not None and contact(store, 11)["deleted_at"] is not None
    with store.engine.connect() as conn:
        m = conn.execute(sa.select(schema.dedup_merges)).mappings().one()
        comms = conn.execute(sa.select(schema.communications.c.value).where(
            schema.communications.c.entity_type == "contact", schema.communications.c.entity_id == 12)).scalars().all()
    assert m["user_id"] == 1 and sorted(m["merged_ids"]) == [10, 11]
    assert "ivanov@mail.ru" in comms  # the duplicates' phones and emails moved to the primary

    # undo from the history page
    page.get_by_role("link", name="History", exact=True).click()
    row = page.locator(f'tr[data-merge="{m["id"]}"]')
    expect(row).to_contain_text("Админ Главный")
    expect(row).to_contain_text("applied")
    shot(page, "history")
    row.get_by_role("button", name="Undo").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Undid merge #{m['id']}")
    expect(page.locator(f'tr[data-merge="{m["id"]}"]')).to_contain_text("undone")
    shot(page, "history-undone")
    assert dump_crm(store) == before
    with store.engine.connect() as conn:
        status = conn.execute(sa.select(schema.dedup_groups.c.status).where(schema.dedup_groups.c.id == gid)).scalar()
    assert status == "pending"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert dialogs == []


def test_manager_sees_only_their_groups_and_is_refused_others(site, page, dialogs):
    base, store, groups = site
    sign_in(page, base, MARIA)
    rows = page.locator("tr.group-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-group", groups["contact-10"])
    shot(page, "manager-groups")

    # her mixed group: Пётр's record is read-only and last
    page.goto(f"{base}/group/{groups['contact-10']}")
    expect(page.locator("th.rec-col").last).to_have_attribute("data-record", "11")
    expect(page.locator("th.rec-col").last).to_contain_text("read-only")
    shot(page, "manager-group")

    # John's group: typed address is a 404, a POST for it is refused
    response = page.goto(f"{base}/group/{groups['contact-13']}")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    shot(page, "manager-refused")
    page.goto(f"{base}/groups/contact")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    before = dump_crm(store)
    refused = page.request.post(f"{base}/group/{groups['contact-13']}/skip", form={"csrf_token": token})
    assert refused.status in (403, 404)
    assert dump_crm(store) == before
    assert dialogs == []


def test_names_full_of_script_render_as_text(site, page, dialogs):
    base, _store, groups = site
    sign_in(page, base, ADMIN)
    expect(page.get_by_text(XSS_NAME).first).to_be_visible()
    page.goto(f"{base}/group/{groups['contact-16']}")
    expect(page.locator('th.rec-col[data-record="16"] .rec-name')).to_contain_text(XSS_NAME)
    expect(page.locator('tr[data-field="first_name"]')).to_contain_text(XSS_OTHER)
    expect(page.get_by_text('"><script>alert(4)</script>@x.test').first).to_be_visible()
    shot(page, "escaped-names")
    assert page.locator("script").count() == 1  # only /static/review.js
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
