"""The HQ dashboard in real Chromium: HQ signs in through the form, the charts render from the
vendored Chart.js with the same figures GET /api/v1/metrics gives for that range, no request
leaves the machine, the session cookie is HttpOnly and SameSite=Lax, and the screenshot is kept
in tests/artifacts/dashboard.png.

A scripted few days through the metrics harness (tests/metrics/conftest.py): adds, a loss, SOP
tasks, forwards and opens, an order; then the rollup job runs as the scheduler would.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.metrics.conftest import at
from tests.web.conftest import PASSWORD, clock, h, sessions, sop_dir  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


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
    await page.wait_for_selector("#growth-chart")
    assert page.url.endswith(f"/admin?from={PERIOD['from']}&to={PERIOD['to']}")

    [cookie] = [c for c in await context.cookies() if c["name"] == "gb_admin"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it

    charts = await page.evaluate(
        """() => Object.fromEntries(["growth-chart", "funnel-chart", "sop-chart"].map(id => {
            const chart = Chart.getChart(id);
            return [id, chart && {
                labels: chart.data.labels,
                datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data})),
                drawn: chart.width > 0 && chart.height > 0,
            }];
        }))"""
    )
    days = api["days"]
    growth = charts["growth-chart"]
    assert growth["drawn"] and growth["labels"] == [d["day"] for d in days]
    for dataset in growth["datasets"]:
        assert dataset["data"] == [d["metrics"][dataset["label"]] for d in days], dataset
    assert {d["label"] for d in growth["datasets"]} == {
        "new_customers",
        "lost_customers",
        "removed_customers",
        "net_growth",
    }
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

    # The store leaderboard and a guide page render too, without leaving the machine.
    await page.goto(f"{base}/admin/stores?from={PERIOD['from']}&to={PERIOD['to']}")
    assert await page.locator("#store-leaderboard tbody tr").count() == 2
    await page.goto(f"{base}/admin/guides/g1?from={PERIOD['from']}&to={PERIOD['to']}")
    await page.wait_for_selector("#growth-chart")
    assert await page.evaluate("Chart.getChart('growth-chart').data.datasets.length") == 4
    assert errors == [] and outside == []
    await context.close()
