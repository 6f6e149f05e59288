"""HQ's customer list at a brand's size: a count that stops at 10,000 says "more than", pages go
on past it, and the export is not cut by the count."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlalchemy import delete, insert, text

from guidebot.contacts.models import Customer, Relation
from tests.web.conftest import admin_cookie

MANY = 10_001


async def _customers(h, n: int) -> None:
    now = h.clock.now()
    async with h.sessions() as session, session.begin():
        await session.execute(
            insert(Customer),
            [
                dict(
                    external_userid=f"wmx{i:05d}",
                    name=f"客户{i}",
                    created_at=now - timedelta(minutes=i // 2),  # pairs tie: the id decides
                    updated_at=now,
                )
                for i in range(n)
            ],
        )
        await session.execute(
            insert(Relation),
            [
                dict(
                    guide_userid="g1",
                    external_userid=f"wmx{i:05d}",
                    status="active",
                    store_id=11,
                    created_at=now,
                    last_event_at=now,
                    updated_at=now,
                )
                for i in range(n)
            ],
        )
    if h.sessions.kw["bind"].dialect.name == "postgresql":
        # As autovacuum would after such a load: without statistics the planner looks each
        # customer up by external_userid in its trigram index, which matches them all (a minute).
        async with h.sessions() as session, session.begin():
            await session.execute(text("ANALYZE customers, relations"))


def _rows(html: str) -> list[str]:
    return re.findall(r'<td class="muted">(wmx\d+)</td>', html)


async def test_more_than_ten_thousand_customers_are_counted_as_such(h, sessions):
    await _customers(h, MANY)
    hq = admin_cookie(await sessions.account("boss", "hq", []))

    page = await (await h.client.get("/admin/customers", headers=hq)).text()
    assert "<h1>客户 <span" in page and "(超过 10,000)</span></h1>" in page
    assert "第 1 页，共超过 200 页" in page and "page=2" in page
    assert _rows(page) == [f"wmx{i:05d}" for i in range(50)]  # newest first, then by id
    english = await (await h.client.get("/admin/customers?lang=en", headers=hq)).text()
    assert "(more than 10,000)</span></h1>" in english
    assert "Page 1 of more than 200" in english
    await h.client.get("/admin/customers?lang=zh", headers=hq)
    # Past the count's end the pages go on, newest first, to the last customer.
    last = await (await h.client.get("/admin/customers?page=201", headers=hq)).text()
    assert _rows(last) == ["wmx10000"] and "page=202" not in last and "page=200" in last
    deep = await (await h.client.get("/admin/customers?page=150", headers=hq)).text()
    assert _rows(deep) == [f"wmx{i:05d}" for i in range(7450, 7500)]

    # The export holds every customer, whatever the page counted.
    response = await h.client.get("/admin/customers?format=csv&table=customers", headers=hq)
    assert response.status == 200, await response.text()
    exported = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert len(exported) == MANY + 1
    assert [row[1] for row in exported[1:3]] == ["wmx00000", "wmx00001"]

    # Exactly ten thousand is a count, not "more than".
    async with h.sessions() as session, session.begin():
        await session.execute(delete(Relation).where(Relation.external_userid == "wmx10000"))
    page = await (await h.client.get("/admin/customers", headers=hq)).text()
    assert "(10,000)</span></h1>" in page and "第 1 页，共 200 页" in page
    last = await (await h.client.get("/admin/customers?page=200", headers=hq)).text()
    assert _rows(last)[-1] == "wmx09999" and "page=201" not in last
    english = await (await h.client.get("/admin/customers?lang=en", headers=hq)).text()
    assert "(10,000)</span></h1>" in english and "Page 1 of 200" in english
    # A manager of a store without these customers counts none.
    manager = admin_cookie(await sessions.account("m12", "manager", ["12"]))
    page = await (await h.client.get("/admin/customers", headers=manager)).text()
    assert "(0)</span></h1>" in page


async def test_the_api_counts_up_to_ten_thousand_and_says_so(h):
    await _customers(h, MANY)

    async def listing(**params) -> dict:
        status, body = await h.api("GET", "/customers", params=params)
        assert status == 200, body
        return body

    for params in ({}, {"guide": "g1"}, {"store": "11", "status": "active"}):
        body = await listing(**params)
        assert (body["total"], body["total_capped"]) == (10_000, True), params
        ids = [c["external_userid"] for c in body["customers"]]
        assert ids == [f"wmx{i:05d}" for i in range(50)]
    # Past the count's end the pages go on to the last customer.
    last = await listing(page=201)
    assert [c["external_userid"] for c in last["customers"]] == ["wmx10000"]
    assert (last["total"], last["total_capped"]) == (10_000, True)

    # Exactly ten thousand is an exact count; fewer likewise.
    async with h.sessions() as session, session.begin():
        await session.execute(delete(Relation).where(Relation.external_userid == "wmx10000"))
        await session.execute(delete(Customer).where(Customer.external_userid == "wmx10000"))
    body = await listing()
    assert (body["total"], body["total_capped"]) == (10_000, False)
    body = await listing(guide="g1", per_page=1, page=10_000)
    assert (body["total"], body["total_capped"]) == (10_000, False)
    assert [c["external_userid"] for c in body["customers"]] == ["wmx09999"]
    body = await listing(guide="g2")
    assert (body["total"], body["total_capped"], body["customers"]) == (0, False, [])
