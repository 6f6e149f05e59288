"""`guidebot demo` starts with a week of activity on the dashboard and prints how to sign in."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from guidebot.demo import run_demo
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
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)
