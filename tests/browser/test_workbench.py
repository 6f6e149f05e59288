"""HQ's workbench in real Chromium: sign in, open a customer from the customer list and read
their page, find the list's export links, edit a content item and see it saved in the library,
then the same pages in English. Screenshots in tests/artifacts/ (customers.png, customers-en.png,
customer.png, content-edit.png, content-edit-en.png; the README shows copies from
docs/screenshots/)."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.metrics.conftest import at
from tests.web.conftest import PASSWORD, clock, h, sessions, sop_dir  # noqa: F401

pytestmark = NEEDS_CHROMIUM


async def _signed_in_page(h, context):  # noqa: F811
    page = await context.new_page()
    base = str(h.client.make_url("/")).rstrip("/")
    await page.goto(f"{base}/admin/customers")
    assert "/admin/login" in page.url
    await page.fill("input[name=username]", "boss")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#customers")
    return page, base


async def test_hq_opens_a_customer_and_edits_content_in_both_languages(
    h,  # noqa: F811
    sessions,  # noqa: F811
    browser,
):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    item = await h.item("春季新品")
    await h.forward("g1", "wmc01", item)
    await sessions.account("boss", "hq", [])
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
    outside: list[str] = []

    async def only_loopback(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    page, base = await _signed_in_page(h, context)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The search box says what it finds (an id from three characters on: migration 0032).
    hint = await page.get_attribute("input[name=q]", "placeholder")
    assert hint == "姓名、备注或客户 ID（ID 至少 3 个字符）"
    await page.screenshot(path=str(ARTIFACTS / "customers.png"), full_page=False)
    # The list exports, and a customer opens from it.
    assert "format=csv" in await page.get_attribute(".exports a >> nth=0", "href")
    assert "format=xlsx" in await page.get_attribute(".exports a >> nth=1", "href")
    await page.click("#customers tbody tr a")
    await page.wait_for_selector("#relations")
    assert "/admin/customers/wmc01" in page.url
    assert await page.text_content("h2 >> nth=0") == "导购"
    assert await page.text_content("#relations tbody tr td a") == "王芳"  # g1, by name
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "customer.png"), full_page=False)

    # A content item edited and saved, and the library lists it under its new title.
    await page.goto(f"{base}/admin/content")
    await page.click(f'a[href="/admin/content/{item}"]')
    await page.wait_for_selector("form.editor")
    assert await page.text_content("h1") == "春季新品"
    await page.fill("input[name=title]", "春季新品 · 第二版")
    await page.fill("textarea[name=summary]", "三月上新，到店有礼")
    await page.click("#save")
    await page.wait_for_selector("#saved")
    assert await page.text_content("#saved") == "已保存。"
    await page.screenshot(path=str(ARTIFACTS / "content-edit.png"), full_page=False)
    await page.click("text=← 全部内容")
    await page.wait_for_selector("#content")
    assert await page.text_content(f'a[href="/admin/content/{item}"]') == "春季新品 · 第二版"
    assert await page.locator(".exports a").count() == 2

    # A bad link is refused beside the form, in Chinese, and nothing changes.
    await page.click(f'a[href="/admin/content/{item}"]')
    await page.fill("input[name=url]", "ftp://brand.example/x")
    await page.click("#save")
    assert await page.text_content("#form-error") == "「链接」须为 http(s) 网址"

    # The same pages in English, remembered for the account.
    await page.click("#lang-switch")
    await page.wait_for_selector("form.editor")
    assert await page.get_attribute("html", "lang") == "en"
    await page.goto(f"{base}/admin/content/{item}")
    assert await page.text_content("#save") == "Save"
    assert await page.text_content("label:has(input[name=title])") == "Title "
    await page.fill("input[name=url]", "ftp://brand.example/x")
    await page.click("#save")
    assert await page.text_content("#form-error") == "'Link' must be an http(s) URL"
    await page.goto(f"{base}/admin/content/{item}")
    await page.screenshot(path=str(ARTIFACTS / "content-edit-en.png"), full_page=False)
    await page.goto(f"{base}/admin/customers")
    hint = await page.get_attribute("input[name=q]", "placeholder")
    assert hint == "name, remark, or ID (3+ characters)"
    await page.screenshot(path=str(ARTIFACTS / "customers-en.png"), full_page=False)
    assert "format=csv" in await page.get_attribute(".exports a >> nth=0", "href")
    await page.click("#customers tbody tr a")
    await page.wait_for_selector("#relations")
    assert await page.text_content("h2 >> nth=0") == "Guides"
    assert await page.text_content("#relations [data-status=active]") == "Active"
    assert errors == [] and outside == []
    await context.close()
