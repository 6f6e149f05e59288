"""Periods at the ends of the calendar are refused with a reason, never a 500.

The day before 0001-01-01 and the day after 9999-12-31 do not exist, and a local midnight in
year 1 has no UTC instant: computing any of them used to raise OverflowError.
"""

from __future__ import annotations

from tests.harness import ADMIN
from tests.web.conftest import admin_cookie

EDGES = ["0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31", "1969-12-31"]
FAR_PARTNERS = [{}, {"from": "0001-01-01"}, {"to": "9999-12-31"}]
PAGES = ["/admin", "/admin/stores", "/admin/guides", "/admin/guides/g1", "/admin/groups"]


async def test_every_period_parameter_refuses_the_ends_of_the_calendar(h):
    await h.add("g1", "wmc01")
    document = await (await h.client.get("/api/v1/openapi.json")).json()
    checked = 0
    for path, operations in document["paths"].items():
        query = [p["name"] for p in operations.get("get", {}).get("parameters", [])]
        if "from" not in query:
            continue
        url = path.replace("{userid}", "g1").replace("{store}", "11")
        for name in ("from", "to"):
            for day in EDGES:
                for partner in FAR_PARTNERS:
                    params = {**partner, name: day}
                    response = await h.client.get(url, params=params, headers=ADMIN)
                    assert response.status == 400, (response.status, url, params)
                    error = (await response.json())["error"]
                    assert "years 1970 to 9998" in error["reason"], (url, params, error)
                    checked += 1
    assert checked >= 4 * 2 * len(EDGES) * len(FAR_PARTNERS), checked


async def test_admin_pages_refuse_the_ends_of_the_calendar(h, sessions):
    await h.add("g1", "wmc01")
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    for page in PAGES:
        for day in EDGES:
            for name in ("from", "to"):
                response = await h.client.get(page, params={name: day}, headers=cookie)
                assert response.status == 400, (response.status, page, name, day)
                # The reason in Chinese, on the admin's error page with a way back.
                html = await response.text()
                words = {"from": "开始日期", "to": "结束日期"}[name]
                assert f"“{words}”须在 1970 年到 9998 年之间" in html, html
                assert 'class="card problem"' in html and 'href="/admin"' in html
