"""The HQ dashboard in real Chromium: HQ signs in through the form, the charts render from the
vendored Chart.js with the same figures GET /api/v1/metrics gives for that range, no request
leaves the machine, the session cookie is HttpOnly and SameSite=Lax, and the screenshot is kept
in tests/artifacts/dashboard.png. The page is in Chinese by default: a KPI tile's definition opens
with a tap (and is the tile's hover title), the language switch turns every page to English and
the account keeps the choice (dashboard-definition.png, dashboard-en.png); the guides list
sorts by a column in the browser (guides.png).

A scripted few days through the metrics harness (tests/metrics/conftest.py): adds, a loss, SOP
tasks, forwards and opens, an order; then the rollup job runs as the scheduler would.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from guidebot.metrics import kpis
from tests.browser.conftest import ARTIFACTS, NEEDS_CHROMIUM
from tests.metrics.conftest import at
from tests.web.conftest import PASSWORD, clock, h, sessions, sop_dir  # noqa: F401

ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}

pytestmark = NEEDS_CHROMIUM


async def _a_few_days(h) -> None:  # noqa: F811
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g1", "wmc02")
    await h.add("g2", "wmc03")
    h.set_time(at(10, 11))
    await h.add("g3", "wmc04")
    await h.lose("g1", "wmc02")
    item = await h.item("春季新品")
    token = await h.forward("g1", "wmc01", item)
    await h.open(token)
    await h.forward("g2", "wmc03", item)
    h.set_time(at(11, 12))
    await h.add("g2", "wmc05")
    await h.tick()
    await h.order(
        {
            "order_id": "o-1",
            "external_userid": "wmc01",
            "amount": "199.00",
            "paid_at": at(11, 12).isoformat(),
        },
        status=201,
    )
    h.set_time(at(12, 10))
    await h.settle()


async def charts_drawn(page) -> None:
    """The canvases come before Chart.js (a script after them in the page): wait until its
    charts exist, as a reader's eye does, rather than for the empty canvases."""
    await page.wait_for_function(
        "() => window.Chart && ['growth-chart', 'funnel-chart', 'sop-chart']"
        ".every(id => Chart.getChart(id))"
    )


async def test_hq_signs_in_and_the_charts_show_the_api_figures(h, sessions, browser):  # noqa: F811
    await _a_few_days(h)
    await sessions.account("boss", "hq", [])
    response = await h.client.get("/api/v1/metrics", params={**PERIOD, "by": "day"}, headers=ADMIN)
    api = await response.json()
    assert api["metrics"]["new_customers"] == 5  # the script happened

    base = str(h.client.make_url("/")).rstrip("/")
    context = await browser.new_context(viewport={"width": 1200, "height": 1400}, locale="zh-CN")
    outside: list[str] = []

    async def only_loopback(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            if route.request.url.endswith("/chart.umd.js"):
                # As on a slow link: the canvases are there well before the charts.
                await asyncio.sleep(0.3)
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    await page.goto(f"{base}/admin?from={PERIOD['from']}&to={PERIOD['to']}")
    assert "/admin/login" in page.url  # not signed in yet
    await page.fill("input[name=username]", "boss")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await charts_drawn(page)
    assert page.url.endswith(f"/admin?from={PERIOD['from']}&to={PERIOD['to']}")

    [cookie] = [c for c in await context.cookies() if c["name"] == "gb_admin"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it

    charts = await page.evaluate(
        """() => Object.fromEntries(["growth-chart", "funnel-chart", "sop-chart"].map(id => {
            const chart = Chart.getChart(id);
            return [id, chart && {
                labels: chart.data.labels,
                datasets: chart.data.datasets.map(
                    d => ({label: d.label, key: d.key, data: d.data})),
                drawn: chart.width > 0 && chart.height > 0,
            }];
        }))"""
    )
    days = api["days"]
    growth = charts["growth-chart"]
    # Days as zh-CN writes them, series named in Chinese, each the API's figures.
    assert growth["drawn"] and growth["labels"][0] == "2026/3/9" and len(growth["labels"]) == 7
    for dataset in growth["datasets"]:
        assert dataset["data"] == [d["metrics"][dataset["key"]] for d in days], dataset
    assert {d["label"] for d in growth["datasets"]} == {"新客", "流失", "删除", "净增"}
    assert charts["funnel-chart"]["labels"] == ["转发", "打开", "订单"]
    totals = api["metrics"]
    assert charts["funnel-chart"]["drawn"]
    assert charts["funnel-chart"]["datasets"][0]["data"] == [
        totals["forwards"],
        totals["unique_opens"],
        totals["orders"],
    ]
    assert charts["sop-chart"]["datasets"][0]["data"] == [
        totals["tasks_due"],
        totals["tasks_done"],
        totals["tasks_on_time"],
    ]
    assert totals["forwards"] == 2 and totals["unique_opens"] == 1 and totals["orders"] == 1

    # The numbers shown on the page are the API's.
    for name in ("new_customers", "lost_customers", "net_growth", "forwards", "orders", "gmv"):
        shown = await page.text_content(f"[data-kpi={name}]")
        assert shown == str(totals[name]), (name, shown, totals[name])
    shown = await page.text_content("[data-kpi=open_rate]")
    assert shown == f"{totals['open_rate'] * 100:.1f}%"

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert errors == [] and outside == []

    # A KPI's definition: the tile's hover title, and a tap opens it under the name.
    tile = page.locator("[data-kpi-name=day7_retention]")
    summary = tile.locator("summary")
    assert await summary.get_attribute("title") == kpis.KPI_BY_NAME["day7_retention"].explain(
        "zh_CN"
    )
    definition = tile.locator("p.definition")
    assert not await definition.is_visible()
    await summary.click()
    assert await definition.is_visible()
    assert (await definition.text_content()).startswith("D 日的新客中，已满 7 天的那部分里")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-definition.png"), full_page=False)

    # English by choice: every word on the page, and the next pages, until switched back.
    assert await page.text_content("h1") == "概览 · 全部门店 · 2026年3月9日 – 2026年3月15日"
    await page.click("#lang-switch")
    await charts_drawn(page)
    assert await page.text_content("h1") == "Dashboard · All stores · Mar 9, 2026 – Mar 15, 2026"
    assert await page.get_attribute("html", "lang") == "en"
    assert (await tile.locator("summary").text_content()).strip().startswith("Day-7 retention")
    await tile.locator("summary").click()
    assert (await tile.locator("p.definition").text_content()).startswith(
        "Of the new customers of day D whose first 7 days have passed"
    )
    await page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"), full_page=True)
    await page.goto(f"{base}/admin/stores?from={PERIOD['from']}&to={PERIOD['to']}")
    assert (await page.text_content("h1")).startswith("Stores · ")
    await page.click("#lang-switch")
    assert (await page.text_content("h1")).startswith("门店 · ")
    assert errors == [] and outside == []

    # The guides list sorts in the browser: by new customers, most first, then fewest first.
    await page.goto(f"{base}/admin/guides?from={PERIOD['from']}&to={PERIOD['to']}")
    header = page.locator("#guides th", has_text="新客")
    column = await header.evaluate("th => th.cellIndex")
    read = f"rows => rows.map(r => Number(r.cells[{column}].dataset.value))"
    await header.click()
    ascending = await page.eval_on_selector_all("#guides tbody tr", read)
    await header.click()
    descending = await page.eval_on_selector_all("#guides tbody tr", read)
    assert ascending == sorted(ascending) == sorted(descending) and len(ascending) == 3
    assert descending == sorted(descending, reverse=True) and ascending != descending
    assert await header.get_attribute("aria-sort") == "descending"
    await page.screenshot(path=str(ARTIFACTS / "guides.png"), full_page=True)
    # A date preset fills the range and shows it: 近 30 天 ends today (the harness's clock).
    await page.click("button[data-preset=last30]")
    await page.wait_for_load_state()
    assert "from=2026-02-11&to=2026-03-12" in page.url
    assert errors == [] and outside == []

    # The store leaderboard and a guide page render too, without leaving the machine.
    await page.goto(f"{base}/admin/stores?from={PERIOD['from']}&to={PERIOD['to']}")
    assert await page.locator("#store-leaderboard tbody tr").count() == 2
    await page.goto(f"{base}/admin/guides/g1?from={PERIOD['from']}&to={PERIOD['to']}")
    await charts_drawn(page)
    assert await page.evaluate("Chart.getChart('growth-chart').data.datasets.length") == 4
    assert errors == [] and outside == []
    await context.close()
