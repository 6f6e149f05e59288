"""What a figure or a date on a page belongs to: the store at the event's time, in that store's
local time. A manager never sees a guide's days from another store; the store leaderboard puts
the best store first; dates are the relation's own, on the store's calendar."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import update

from guidebot.contacts.directory import update_store
from guidebot.contacts.models import Customer
from tests.metrics.conftest import at
from tests.web.conftest import admin_cookie, guide_cookie

WEEK = {"from": "2026-03-09", "to": "2026-03-15"}


def _cells(html: str, table: str) -> list[list[str]]:
    """The text of each body row's cells of the table with this id."""
    body = re.search(rf'<table id="{table}"[^>]*>.*?<tbody>(.*?)</tbody>', html, re.S)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [
            re.sub(r"<[^>]+>", " ", cell).split()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


async def _moved_guide(h) -> None:
    """g3 adds c01 in store 11 on Monday, moves to store 12 on Thursday, adds c02 there."""
    h.set_time(at(9, 10))
    await h.add("g3", "wmc01")
    h.set_time(at(12, 11))
    await h.move("g3", "张伟", 12)
    h.set_time(at(12, 12))
    await h.add("g3", "wmc02")
    await h.settle()


async def test_a_manager_sees_a_moved_guides_days_in_their_store_only(h, sessions):
    await _moved_guide(h)
    m12 = admin_cookie(await sessions.account("m12", "manager", ["12"]))
    hq = admin_cookie(await sessions.account("boss", "hq", []))

    async def api(path, cookie):
        response = await h.client.get(f"/api/v1{path}", params=WEEK, headers=cookie)
        assert response.status == 200, await response.text()
        return (await response.json())["metrics"]

    # Store 12's manager: c02 only; c01 was g3's Monday in store 11.
    assert (await api("/guides/g3/metrics", m12))["new_customers"] == 1
    assert (await api("/guides/g3/metrics?by=day", m12))["new_customers"] == 1
    # HQ and the guide themself see the whole week.
    assert (await api("/guides/g3/metrics", hq))["new_customers"] == 2
    assert (await api("/guides/g3/metrics", guide_cookie(sessions.guide("g3"))))[
        "new_customers"
    ] == 2

    # The admin page says the same, in its totals and in its table of days.
    page = await h.client.get("/admin/guides/g3", params=WEEK, headers=m12)
    html = await page.text()
    assert page.status == 200
    assert re.search(r'data-kpi="new_customers">(\d+)<', html)[1] == "1"
    monday = re.search(
        r'<tr><td data-value="2026-03-09">2026年3月9日</td><td[^>]*>(\d+)</td>', html
    )[1]
    assert monday == "0"
    page = await h.client.get("/admin/guides/g3", params=WEEK, headers=hq)
    assert re.search(r'data-kpi="new_customers">(\d+)<', await page.text())[1] == "2"


async def test_the_store_leaderboard_puts_the_best_store_first(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g2", "wmc04")  # store 12: one new customer
    h.set_time(at(9, 12))
    await h.add("g1", "wmc01")  # store 11: three
    await h.add("g1", "wmc02")
    await h.add("g3", "wmc03")
    await h.settle()
    hq = admin_cookie(await sessions.account("boss", "hq", []))

    page = await h.client.get(
        "/admin/stores", params={**WEEK, "metric": "new_customers"}, headers=hq
    )
    rows = _cells(await page.text(), "store-leaderboard")
    assert [(r[0], r[1][0], r[2]) for r in rows] == [
        (["1"], "张江店", ["3"]),
        (["2"], "徐汇店", ["1"]),
    ]
    # A rate without a denominator yet ranks last.
    h.set_time(at(10, 11))  # store 12's day-1 window has closed, store 11's not yet
    await h.settle()
    hq = admin_cookie(await sessions.account("boss2", "hq", []))
    page = await h.client.get(
        "/admin/stores", params={**WEEK, "metric": "day1_retention"}, headers=hq
    )
    rows = _cells(await page.text(), "store-leaderboard")
    assert [(r[1][0], r[2]) for r in rows] == [("徐汇店", ["100.0%"]), ("张江店", ["–"])]
    # The guide table beside it ranks the same way.
    page = await h.client.get(
        "/admin/stores", params={**WEEK, "metric": "new_customers", "store": "11"}, headers=hq
    )
    guides = _cells(await page.text(), "guide-leaderboard")
    assert [(r[0], r[2]) for r in guides] == [(["1"], ["2"]), (["2"], ["1"])]


async def test_first_seen_is_the_relations_local_date_in_its_store(h, sessions):
    # 00:52 on 12-05 in Shanghai is 16:52 UTC on 12-04.
    h.set_time(datetime(2026, 12, 5, 0, 52, tzinfo=ZoneInfo("Asia/Shanghai")))
    await h.add("g1", "wmc01")
    # Store 12 keeps Los Angeles time: 20:00 on 12-05 there is 12-06 in Shanghai and UTC.
    async with h.sessions() as session, session.begin():
        await update_store(session, "12", timezone="America/Los_Angeles", now=h.clock.now())
    h.set_time(datetime(2026, 12, 5, 20, 0, tzinfo=ZoneInfo("America/Los_Angeles")))
    await h.add("g2", "wmc02")
    # guidebot wrote both customers' rows later (a sync, the demo's seeding): not their date.
    h.set_time(datetime(2026, 12, 20, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    async with h.sessions() as session, session.begin():
        await session.execute(update(Customer).values(created_at=h.clock.now()))
    hq = admin_cookie(await sessions.account("boss", "hq", []))

    page = await h.client.get("/admin/customers", headers=hq)
    seen = {r[1][0]: r[3][0] for r in _cells(await page.text(), "customers")}
    assert seen == {"wmc01": "2026年12月5日", "wmc02": "2026年12月5日"}


async def test_a_manager_opens_a_former_guides_page_with_their_stores_days_only(h, sessions):
    await _moved_guide(h)  # g3 left store 11 for store 12 on Thursday
    m11 = admin_cookie(await sessions.account("m11", "manager", ["11"]))

    # g3 is on store 11's leaderboard for the week (Monday's add there)...
    page = await h.client.get(
        "/admin/stores", params={**WEEK, "metric": "new_customers", "store": "11"}, headers=m11
    )
    assert "/admin/guides/g3" in await page.text()
    # ...and their page opens, with store 11's days only: Monday's add, not Thursday's.
    page = await h.client.get("/admin/guides/g3", params=WEEK, headers=m11)
    html = await page.text()
    assert page.status == 200, html
    assert re.search(r'data-kpi="new_customers">(\d+)<', html)[1] == "1"
    thursday = re.search(
        r'<tr><td data-value="2026-03-12">2026年3月12日</td><td[^>]*>(\d+)</td>', html
    )[1]
    assert thursday == "0"
    response = await h.client.get("/api/v1/guides/g3/metrics", params=WEEK, headers=m11)
    assert response.status == 200
    assert (await response.json())["metrics"]["new_customers"] == 1
    # A guide who never worked in store 11 stays out of sight.
    assert (await h.client.get("/admin/guides/g2", params=WEEK, headers=m11)).status == 404
    response = await h.client.get("/api/v1/guides/g2/metrics", params=WEEK, headers=m11)
    assert response.status == 404


async def test_a_managers_guide_list_counts_their_stores_customers_only(h, sessions):
    await _moved_guide(h)  # g3: wmc01 from store 11, wmc02 in store 12
    m12 = admin_cookie(await sessions.account("m12", "manager", ["12"]))
    hq = admin_cookie(await sessions.account("boss", "hq", []))

    async def counts(cookie, **params):
        response = await h.client.get("/api/v1/guides", params=params, headers=cookie)
        assert response.status == 200, await response.text()
        return {g["userid"]: g["active_customers"] for g in (await response.json())["guides"]}

    assert (await counts(m12))["g3"] == 1  # wmc02; wmc01 is store 11's customer
    assert (await counts(hq, store="12"))["g3"] == 2  # HQ sees all the guide's customers
