"""`guidebot demo` end to end: the org is synced over WeCom's API and live traffic lands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp

from guidebot.demo import GUIDES, STORES, run_demo
from tests.ports import free_port


async def test_demo_serves_the_seeded_org_and_live_customers(tmp_path):
    stop = asyncio.Event()
    seen: dict = {}

    ready_at = ""

    async def ready(urls: dict) -> None:
        nonlocal ready_at
        ready_at = datetime.now(UTC).isoformat()
        seen.update(urls)

    demo = asyncio.create_task(
        run_demo(
            port=free_port(2),
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
            pace=0.05,
            history_days=2,  # guides' tasks due now, for the bot; the month is test_demo_week's
            ready=ready,
            stop=stop,
        )
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(1800):  # the org and the VIP groups first (seconds; more if busy)
                if seen or demo.done():
                    break
                await asyncio.sleep(0.05)
            assert seen, "the demo never became ready"
            headers = {"Authorization": f"Bearer {seen['admin_token']}"}
            api = f"{seen['server']}/api/v1"
            async with http.get(f"{api}/stores", headers=headers) as response:
                stores = (await response.json())["stores"]
            assert {s["name"] for s in stores} >= {name for name, _ in STORES.values()}
            async with http.get(f"{api}/guides", headers=headers) as response:
                guides = (await response.json())["guides"]
            assert {g["userid"] for g in guides} == {userid for userid, _, _ in GUIDES}
            total = 0
            for _ in range(100):  # customers keep arriving through store codes
                async with http.get(f"{api}/customers", headers=headers) as response:
                    total = (await response.json())["total"]
                if total >= 5:
                    break
                await asyncio.sleep(0.1)
            assert total >= 5
            groups: list = []
            for _ in range(150):  # each store's VIP group, joined through its store join code
                async with http.get(f"{api}/groups", headers=headers) as response:
                    groups = (await response.json())["groups"]
                if len(groups) == len(STORES) and all(g["customers"] for g in groups):
                    break
                await asyncio.sleep(0.1)
            assert sorted(g["name"] for g in groups) == sorted(
                f"{n}VIP群" for n, _ in STORES.values()
            )
            assert all(g["customers"] > 0 for g in groups), groups
            async with http.get(
                f"{api}/groups/{groups[0]['chat_id']}", headers=headers
            ) as response:
                history = (await response.json())["history"]
            assert {e["kind"] for e in history} >= {"joined"}
            assert history and all(
                e["channel"] == "vip_qr"
                for e in history
                if e["kind"] == "joined" and e["member_type"] == "customer"
            ), [e for e in history if e["kind"] == "joined"]
            opened = 0
            for _ in range(150):  # guides forward content, and customers open the links
                async with http.get(f"{api}/content", headers=headers) as response:
                    items = (await response.json())["items"]
                opened = sum(item["numbers"]["opens"] for item in items)
                if items and opened:
                    break
                await asyncio.sleep(0.1)
            assert len(items) >= 5 and opened > 0
            closed = []
            for _ in range(150):  # guides tell the bot they finished, skipped or put off a task
                async with http.get(
                    f"{api}/tasks",
                    params={"status": "done,skipped,snoozed", "per_page": "200"},
                    headers=headers,
                ) as response:
                    rows = (await response.json())["tasks"]
                closed = [t for t in rows if "snoozed" in (t["result"] or {})]
                closed += [
                    t
                    for t in rows
                    if t["completed_at"] and t["completed_at"] >= ready_at
                    if t["completed_by"] != "engine"  # a tag step, done as the customer added
                ]
                if closed:
                    break
                await asyncio.sleep(0.1)
            assert closed and all(t["completed_by"] in ("bot", None) for t in closed), closed
            assert all(
                t["completed_by_user"] == t["guide_userid"] for t in closed if t["completed_by"]
            )
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)
