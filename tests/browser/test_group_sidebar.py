"""The sidebar in real Chromium, opened from a customer group's toolbar: the JS-SDK stand-in's
getContext says group_chat_tools and getCurExternalChat names the group (?chat=). Guide g1 sees
the group, its owner and size, and which members are their customers; sends a library item
into it; the forward is recorded against the group and the link carries it. The screenshot is
kept in tests/artifacts/sidebar-group.png.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from guidebot.content import links
from guidebot.content.models import ContentForward
from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.groups.conftest import GroupsHarness
from tests.harness import START, deploy_dir, start_harness
from tests.ports import free_port

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
async def h(aiohttp_client, migrated_sqlite_url, tmp_path):
    from guidebot.clock import FakeClock

    port = free_port()
    return await start_harness(
        aiohttp_client,
        migrated_sqlite_url,
        FakeClock(START),
        kind=GroupsHarness,
        sop_dir=deploy_dir(tmp_path / "deploy"),
        public_url=f"http://127.0.0.1:{port}",
        server_kwargs={"port": port},
    )


async def test_the_sidebar_in_a_group_shows_it_and_sends_into_it(h, browser):
    await h.add("g1", "wmc1")
    await h.add("g2", "wmc3")
    chat_id = await h.create_group("g1", "张江VIP群")
    await h.join(chat_id, "wmc1", "wmc3")
    status, _ = await h.api(
        "POST",
        "/content",
        json={"key": "spring", "kind": "link", "title": "春季新品", "url": "http://a.test/s"},
    )
    assert status == 201
    base = str(h.client.make_url("/")).rstrip("/")
    context = await browser.new_context(
        viewport={"width": 390, "height": 760}, device_scale_factor=2, locale="zh-CN"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(
        f"{base}/sidebar/login?userid=g1&next=/sidebar%3Fchat%3D{chat_id}",
        wait_until="domcontentloaded",
    )
    await page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    assert await page.text_content("[data-testid=group-name]") == "张江VIP群"
    assert await page.text_content("[data-testid=group-owner]") == "王芳"
    assert await page.text_content("[data-testid=group-size]") == "3"
    # Only g1's own customer, not g2's wmc3 who is in the group too.
    mine = page.locator("[data-testid=group-customers] li")
    await expect(mine).to_have_count(1)
    assert await mine.first.get_attribute("data-customer") == "wmc1"
    assert "陈女士" in await mine.first.text_content()

    await page.click("[data-testid=send-spring]")
    await page.wait_for_selector("body[data-last-forward='spring']", timeout=10_000)
    await expect(page.locator("#toast")).to_contain_text("已发送到群")
    sent = await page.evaluate("window.ww.sent")
    assert [m["msgtype"] for m in sent] == ["news"]
    token = sent[0]["news"]["link"].rsplit("/r/", 1)[1]
    claims = links.verify(h.settings.secret_key, token)
    assert claims is not None and claims.chat_id == chat_id
    async with h.sessions() as session:
        [forward] = list(await session.scalars(select(ContentForward)))
    assert (forward.guide_userid, forward.chat_id, forward.external_userid) == ("g1", chat_id, None)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "sidebar-group.png"), full_page=True)
    assert errors == []
    await context.close()


async def test_a_group_the_guide_is_not_in_is_not_shown(h, browser):
    chat_id = await h.create_group("g2", "徐汇VIP群")
    base = str(h.client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await page.goto(
        f"{base}/sidebar/login?userid=g1&next=/sidebar%3Fchat%3D{chat_id}",
        wait_until="domcontentloaded",
    )
    error = page.locator("[data-testid=group-error]")
    await expect(error).to_contain_text("这不是你的客户群")
    assert await page.locator("[data-testid=group-name]").count() == 0
    await page.close()
