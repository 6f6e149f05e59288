"""Tables and ranges in real Chromium, on the pages that gained them last: the audit trail's date
presets fill the range and send the form; a customer's orders download as an Excel file named
in Chinese that openpyxl reads back; the customer's timeline sorts by a click on its header."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from openpyxl import load_workbook

from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.web.conftest import PASSWORD, clock, h, sessions, sop_dir  # noqa: F401
from tests.web.workbench import seed_week

pytestmark = NEEDS_CHROMIUM


async def test_presets_export_and_sort_on_the_newer_tables(
    h,  # noqa: F811
    sessions,  # noqa: F811
    browser,
):
    await seed_week(h)
    await sessions.account("boss", "hq", [])
    context = await browser.new_context(
        viewport={"width": 1200, "height": 900}, locale="zh-CN", accept_downloads=True
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = str(h.client.make_url("/")).rstrip("/")
    await page.goto(f"{base}/admin/audit")
    await page.fill("input[name=username]", "boss")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#audit")

    # 本周 on the audit trail: Monday to today (Wednesday 11 March in the seeded week).
    await page.click("button[data-preset=week]")
    await page.wait_for_load_state()
    query = parse_qs(urlsplit(page.url).query)
    assert (query["from"], query["to"]) == (["2026-03-09"], ["2026-03-11"])
    assert await page.locator("#audit tbody tr").count() >= 1

    # A customer's orders as an Excel file, named in Chinese, numbers as numbers.
    await page.goto(f"{base}/admin/customers/wmc01")
    async with page.expect_download() as download_info:
        await page.click('.exports[data-for="orders"] a:has-text("Excel")')
    download = await download_info.value
    assert download.suggested_filename == "顾客01 · 订单.xlsx"
    saved = ARTIFACTS / "orders.xlsx"
    ARTIFACTS.mkdir(exist_ok=True)
    await download.save_as(saved)
    sheet = load_workbook(saved, read_only=False).active
    assert [c.value for c in sheet[2]][1:3] == ["A-1", 199.0]

    # The timeline sorts by its time column: oldest first, then newest first.
    header = page.locator("#timeline th").first
    read = "rows => rows.map(r => r.cells[0].dataset.value)"
    await header.click()
    ascending = await page.eval_on_selector_all("#timeline tbody tr", read)
    await header.click()
    descending = await page.eval_on_selector_all("#timeline tbody tr", read)
    assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
    assert len(ascending) >= 2
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "customer-tables.png"), full_page=True)
    assert errors == []
    await context.close()
