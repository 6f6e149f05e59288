"""`guidebot demo` starts with a month of history and prints how to sign in: a busy last week on
the dashboard, weekly cohorts with figures, the demo coupon's holdout with a lift shown (not
refused), repurchase reminders the behaviour scan enrolled as the days passed, and customers'
stages counted day by day."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp

from guidebot.demo import MONTH, run_demo
from tests.ports import free_port


async def test_the_demo_dashboard_shows_a_week_and_hq_can_sign_in(tmp_path, capsys):
    stop = asyncio.Event()
    seen: dict = {}

    async def ready(urls: dict) -> None:
        seen.update(urls)

    demo = asyncio.create_task(
        run_demo(
            port=free_port(2),
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
            traffic=False,
            ready=ready,
            stop=stop,
        )
    )
    try:
        for _ in range(1800):  # the week (customers, forwards, tasks) takes seconds; more if busy
            if seen or demo.done():
                break
            await asyncio.sleep(0.05)
        assert seen, "the demo never became ready"
        printed = capsys.readouterr().out
        # Said before the month is seeded, so a first run does not look stuck; then the banner.
        preparing = printed.index("正在准备演示企业和 35 天的历史数据")
        assert "Preparing the demo's corp and 35 days of history" in printed
        assert preparing < printed.index("guidebot demo is running")
        assert f"admin pages:     {seen['admin']}" in printed
        password = seen["accounts"]["hq"]
        assert f"sign in as hq / {password}" in printed

        headers = {"Authorization": f"Bearer {seen['admin_token']}"}
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(
                f"{seen['server']}/api/v1/metrics", params={"by": "day"}, headers=headers
            ) as response:
                body = await response.json()
            busy_days = [d for d in body["days"] if d["metrics"]["new_customers"] > 0]
            assert len(busy_days) >= 6, body["days"]  # today may be young
            assert body["metrics"]["forwards"] > 0 and body["metrics"]["unique_opens"] > 0
            # The week's guides finished most of their tasks, and left some to do.
            due, done = body["metrics"]["tasks_due"], body["metrics"]["tasks_done"]
            assert 0 < done < due, body["metrics"]

            await _month_shows(http, seen["server"] + "/api/v1", headers)
            community = await _community_shows(http, seen["server"] + "/api/v1", headers)

            async with http.get(seen["admin"]) as response:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)
            async with http.post(
                seen["admin"],
                data={"username": "hq", "password": password, "csrf": csrf, "next": "/admin"},
            ) as response:
                assert response.status == 200 and str(response.url).endswith("/admin")
                html = await response.text()
            total = body["metrics"]["new_customers"]
            assert f'data-kpi="new_customers">{total}<' in html
            for name in ("group_sends", "moments_assigned", "moments_published"):
                assert f'data-kpi="{name}">{community[name]}<' in html, name
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)


async def _month_shows(http: aiohttp.ClientSession, api: str, headers: dict) -> None:
    async with http.get(
        f"{api}/cohorts", params={"metric": "retention", "period": "week"}, headers=headers
    ) as response:
        cohorts = (await response.json())["cohorts"]
    week_olds = [c for c in cohorts if c["cells"]["d7"]["value"] is not None]
    assert len(week_olds) >= 4, cohorts  # a month of weekly cohorts with day-7 retention
    assert any(c["cells"]["d30"]["value"] is not None for c in cohorts)

    async with http.get(f"{api}/playbooks", headers=headers) as response:
        books = {p["id"]: p for p in (await response.json())["playbooks"]}
    lift = books["demo_coupon"]["holdout"]
    assert lift["refused"] is None, lift
    assert lift["treated"]["rate"] > lift["held_out"]["rate"] and lift["ci95"][0] > 0, lift
    goal = books["repurchase_30d"]["goal"]  # the behaviour scan enrolled first-time buyers
    assert goal["open"] + goal["met"] + goal["missed"] >= 1, books["repurchase_30d"]

    async with http.get(
        f"{api}/stages",
        params={"by": "store", "from": _day(-MONTH), "to": _day(0)},
        headers=headers,
    ) as response:
        days = (await response.json())["days"]
    assert len(days) >= MONTH - 5, days  # a snapshot for each past day
    totals = [sum(sum(r["counts"].values()) for r in d["rows"]) for d in days]
    assert totals[0] < totals[-1]  # customers arrive, stages move
    engaged = [sum(r["counts"]["engaged"] for r in d["rows"]) for d in days]
    assert len(set(engaged)) > 1


async def _community_shows(http: aiohttp.ClientSession, api: str, headers: dict) -> dict:
    """This week's VIP group message (to the groups HQ labelled VIP) and Moments task: most
    owners confirmed, most guides published, links opened in customers' phones, an order
    through each kind of link."""
    async with http.get(f"{api}/groups", params={"label": "VIP"}, headers=headers) as response:
        labelled = (await response.json())["groups"]
    assert len(labelled) == 4 and all(g["labels"] == ["VIP"] for g in labelled), labelled
    async with http.get(f"{api}/metrics", headers=headers) as response:
        metrics = (await response.json())["metrics"]
    assert metrics["group_sends"] == 4, metrics
    assert 0 < metrics["group_send_rate"] < 1, metrics  # some owners, not all
    assert metrics["moments_assigned"] == 8, metrics
    assert 0 < metrics["moments_published"] < metrics["moments_assigned"], metrics
    assert metrics["group_link_opens"] > 0 and metrics["moment_link_opens"] > 0, metrics
    assert metrics["group_orders"] >= 1 and metrics["moment_orders"] >= 1, metrics
    return metrics


def _day(offset: int) -> str:
    return (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=offset)).date().isoformat()
