"""The sidebar in real Chromium: guide g1 in a chat with customer c1 (wmc1) searches the
library, presses send; the forward is recorded with g1, c1 and the item; opening the tracked
link records an open; the page's screenshot is kept in tests/artifacts/sidebar.png.

guidebot and the simulated WeCom run on loopback (aiohttp test servers); the page loads the
JS-SDK stand-in, whose ww.register has the simulator check the server's signatures.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from guidebot.clock import FakeClock
from guidebot.content.models import ContentForward, ContentItem, ContentOpen
from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.content.harness import START, start_harness
from tests.ports import free_port

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
async def h(aiohttp_client, migrated_sqlite_url, tmp_path):
    port = free_port()
    return await start_harness(
        aiohttp_client,
        migrated_sqlite_url,
        FakeClock(START),
        tmp_path,
        public_url=f"http://127.0.0.1:{port}",  # tracked links point at this very server
        server_kwargs={"port": port},
    )


async def test_send_from_the_sidebar_and_open_the_link(h, browser):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc2")
    task = await h.task("g1", "wmc1", content="spring")
    spring = await h.item(
        key="spring",
        kind="link",
        title="春季新品上市",
        summary="十款新色，本周末到店",
        url="http://articles.test/spring",
        tags=["新品", "春季"],
    )
    await h.item(key="care", kind="link", title="羊毛衫洗护指南", url="https://example.com/care")
    await h.item(key="greeting", kind="text", title="新客问候话术", body="您好～")

    base = str(h.client.make_url("/")).rstrip("/")
    context = await browser.new_context(
        viewport={"width": 390, "height": 760}, device_scale_factor=2, locale="zh-CN"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Signed in as g1, in the chat with wmc1 (the shim's getCurExternalContact reads ?customer=).
    await page.goto(
        f"{base}/sidebar/login?userid=g1&next=/sidebar%3Fcustomer%3Dwmc1%26task%3D{task}",
        wait_until="domcontentloaded",
    )
    await page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    assert await page.text_content("[data-testid=customer-name]") == "陈女士"
    verified = await page.evaluate("window.ww.verified")
    assert verified["valid"] is True, verified  # both JS-SDK signatures checked by WeCom (sim)
    assert await page.is_checked(f"input[name=task][value='{task}']")

    await page.fill("#q", "春季")
    await page.press("#q", "Enter")
    await expect(page.locator("#items li")).to_have_count(1)
    await expect(page.locator("[data-testid=send-spring]")).to_be_visible()
    await page.click("[data-testid=send-spring]")
    await page.wait_for_selector("body[data-last-forward='spring']", timeout=10_000)

    sent = await page.evaluate("window.ww.sent")
    assert [m["msgtype"] for m in sent] == ["news"]
    news = sent[0]["news"]
    assert news["title"] == "春季新品上市" and news["desc"] == "十款新色，本周末到店"
    assert news["link"].startswith(f"{base}/r/")

    async with h.sessions() as session:
        [forward] = list(await session.scalars(select(ContentForward)))
        item = await session.get(ContentItem, spring["id"])
    assert (forward.guide_userid, forward.external_userid, forward.item_id) == (
        "g1",
        "wmc1",
        item.id,
    )
    assert (forward.task_id, forward.via) == (task, "sidebar")
    assert (await h.get_task(task)).status == "done"

    # The customer opens the link (here, in another tab of the same browser).
    reader = await context.new_page()
    await reader.goto(news["link"], wait_until="domcontentloaded")
    assert reader.url == "http://articles.test/spring"
    assert await reader.text_content("h1") == "/spring"
    async with h.sessions() as session:
        [opened] = list(await session.scalars(select(ContentOpen)))
    assert (opened.guide_userid, opened.external_userid, opened.item_id) == ("g1", "wmc1", item.id)
    assert opened.first is True

    # Back in the sidebar the open shows up; keep the picture.
    await page.reload(wait_until="domcontentloaded")
    await page.wait_for_selector("[data-testid=opens] li")
    assert "春季新品上市" in await page.text_content("[data-testid=opens]")
    await page.fill("#q", "")
    await page.press("#q", "Enter")
    await expect(page.locator("#items li")).to_have_count(3)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "sidebar.png"), full_page=True)
    assert errors == []
    await context.close()


async def test_without_a_chat_the_guide_picks_the_customer(h, browser):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc3")
    await h.item(key="greeting", kind="text", title="新客问候话术", body="您好～")
    base = str(h.client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await page.goto(f"{base}/sidebar/login?userid=g1", wait_until="domcontentloaded")
    await page.wait_for_selector("#picker:not([hidden]) option[value=wmc3]", state="attached")
    await page.select_option("#customer-select", "wmc3")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.text_content("[data-testid=customer-name]") == "赵女士"
    await page.click("[data-testid=send-greeting]")
    await page.wait_for_selector("body[data-last-forward='greeting']")
    assert await page.evaluate("window.ww.sent") == [
        {"msgtype": "text", "text": {"content": "您好～"}}
    ]
    async with h.sessions() as session:
        [forward] = list(await session.scalars(select(ContentForward)))
    assert (forward.guide_userid, forward.external_userid) == ("g1", "wmc3")
    await page.close()


async def test_the_guide_marks_a_reply_and_the_journey_ends(h, browser):
    from tests.content.test_customer_events import enroll, state

    await h.add("g1", "wmc1")
    journey = await enroll(
        h, "g1", "wmc1", "first_contact", stop_when=("customer.replied",), goal="customer.replied"
    )
    base = str(h.client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(
        f"{base}/sidebar/login?userid=g1&next=/sidebar%3Fcustomer%3Dwmc1",
        wait_until="domcontentloaded",
    )
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.text_content("[data-testid=stage]") == "新客"  # the lifecycle stage
    await page.click("[data-testid=mark-replied]")
    await expect(page.locator("#toast")).to_contain_text("旅程已结束")
    await expect(page.locator("[data-testid=stage]")).to_have_text("互动中")  # replied: engaged
    # The profile reloads without the journey, so there is nothing left to mark.
    await expect(page.locator("[data-testid=mark-replied]")).to_have_count(0)
    status, reason, goal_met_at, tasks = await state(h, journey)
    assert (status, reason, tasks) == ("stopped", "customer.replied", ["skipped"])
    assert goal_met_at == h.clock.now()
    assert errors == []
    await page.close()


async def _signed_in(h, browser, customer: str | None = None):
    base = str(h.client.make_url("/")).rstrip("/")
    page = await browser.new_page(viewport={"width": 390, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    target = f"&next=/sidebar%3Fcustomer%3D{customer}" if customer else ""
    await page.goto(f"{base}/sidebar/login?userid=g1{target}", wait_until="domcontentloaded")
    return page, errors


async def test_the_guide_closes_skips_and_puts_off_tasks_with_one_tap(h, browser):
    await h.add("g1", "wmc1")
    done = await h.task("g1", "wmc1", step="day3")
    later = await h.task("g1", "wmc1", step="day5", due_in=timedelta(hours=-2))
    skipped = await h.task("g1", "wmc1", step="day7", status="pending")
    page, errors = await _signed_in(h, browser, "wmc1")
    await page.wait_for_selector("body[data-ready='1']")

    async def slowly(route):  # a busy server: the list comes back after the next tap
        await asyncio.sleep(0.3)
        await route.continue_()

    await page.route("**/sidebar/api/customer?*", slowly)
    # Named by the playbook and the step, never by their ids.
    listing = await page.text_content("[data-testid=tasks]")
    assert "7 天回访 · 群发任务" in listing and "follow_up_7d" not in listing

    await page.click(f"[data-testid=done-{done}]")
    await page.wait_for_selector(f"body[data-last-task='done-{done}']")
    await expect(page.locator(f"[data-testid=done-{done}]")).to_have_count(0)
    task = await h.get_task(done)
    assert (task.status, task.completed_by, task.completed_by_user) == ("done", "sidebar", "g1")

    await page.click(f"[data-testid=snooze-{later}]")
    await page.wait_for_selector(f"body[data-last-task='snooze-{later}']")
    assert (await h.get_task(later)).status == "snoozed"
    # Marked once the list shows it put off, so a tap now lands on the list as it will stay.
    label = await page.text_content(f"li[data-task='{later}'] label span")
    assert label.split(" · ")[2].startswith("稍后 "), label

    await page.click(f"[data-testid=skip-{skipped}]")  # asks why first
    await page.fill(f"[data-testid=skip-reason-{skipped}]", "客户已到店")
    await page.click(f"li[data-task='{skipped}'] button[data-testid=skip-{skipped}]:visible")
    await page.wait_for_selector(f"body[data-last-task='skip-{skipped}']")
    task = await h.get_task(skipped)
    assert (task.status, task.reason) == ("skipped", "客户已到店")
    assert errors == []
    await page.close()


async def test_the_picked_customer_can_be_changed(h, browser):
    await h.add("g1", "wmc1")
    await h.add("g1", "wmc3")
    page, errors = await _signed_in(h, browser)
    await page.wait_for_selector("#picker:not([hidden]) option[value=wmc3]", state="attached")
    await page.select_option("#customer-select", "wmc3")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.text_content("[data-testid=customer-name]") == "赵女士"
    await page.select_option("#customer-select", "wmc1")  # the picker stays, for another
    await expect(page.locator("[data-testid=customer-name]")).to_have_text("陈女士")
    assert errors == []
    await page.close()


async def test_a_reply_is_recorded_once_and_says_so(h, browser):
    from tests.content.test_customer_events import enroll

    await h.add("g1", "wmc1")
    await enroll(h, "g1", "wmc1", "first_contact", stop_when=(), goal="customer.replied")
    page, errors = await _signed_in(h, browser, "wmc1")
    await page.wait_for_selector("body[data-ready='1']")
    button = page.locator("[data-testid=mark-replied]")
    await button.dblclick()  # a double tap by accident
    await expect(page.locator("[data-testid=replied-note]")).to_contain_text("已记录客户回复")
    await expect(button).to_be_disabled()
    await expect(button).to_contain_text("已记录客户回复")
    assert errors == []
    await page.close()


async def test_a_customer_who_left_shows_as_left_when_the_page_acts(h, browser):
    await h.add("g1", "wmc1")
    await h.item(key="greeting", kind="text", title="新客问候话术", body="您好～")
    page, errors = await _signed_in(h, browser, "wmc1")
    await page.wait_for_selector("body[data-ready='1']")
    # The customer deletes the guide while the page is open.
    await h.act("contact/delete_by_customer", {"userid": "g1", "external_userid": "wmc1"})
    await page.click("[data-testid=send-greeting]")
    await expect(page.locator("[data-testid=left]")).to_contain_text("客户已不在你的客户列表")
    await expect(page.locator("#toast")).to_contain_text("This customer has left")
    assert await page.evaluate("window.ww.sent") == []
    assert errors == []
    await page.close()
