"""A customer's own page (/admin/customers/{id}) and the admin lists as CSV and Excel files:
what HQ sees, what a store manager may see, and that each file holds every matching row with
the page's words."""

from __future__ import annotations

import csv
import io
import re

from openpyxl import load_workbook

from tests.metrics.conftest import at
from tests.web.conftest import admin_cookie

PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}


def _section(html: str, table_id: str) -> str:
    return re.search(rf'<table id="{table_id}".*?</table>', html, re.S).group(0)


async def _history(h):
    """wmc01 adds g1 (张江店), is forwarded an item, opens it and pays; wmc01 adds g2 too."""
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    item = await h.item("春季新品")
    h.set_time(at(9, 11))
    token = await h.forward("g1", "wmc01", item)
    await h.open(token)
    h.set_time(at(9, 12))
    await h.order(
        {
            "order_id": "A-1",
            "external_userid": "wmc01",
            "amount": "199.90",
            "paid_at": at(9, 12).isoformat(),
        },
        status=201,
    )
    h.set_time(at(9, 13))
    await h.add("g2", "wmc01")
    await h.settle()


async def test_hq_opens_a_customer_from_the_list_and_reads_their_whole_story(h, sessions):
    await _history(h)
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    listing = await (await h.client.get("/admin/customers", headers=cookie)).text()
    assert 'href="/admin/customers/wmc01"' in listing
    response = await h.client.get("/admin/customers/wmc01", headers=cookie)
    assert response.status == 200
    html = await response.text()
    relations = _section(html, "relations")
    assert "王芳" in relations and "李娜" in relations  # both guides, by name
    assert "张江店" in relations and "徐汇店" in relations
    assert "跟进中" in relations and 'data-status="active"' in relations
    timeline = _section(html, "timeline")
    assert timeline.count("添加了导购") == 2
    assert "春季新品" in _section(html, "forwards") and "春季新品" in _section(html, "opens")
    # The learned hour: one open at 11:00, not yet enough of their own, so their store's.
    best = re.search(r'<dd id="best-hour">(.*?)</dd>', html, re.S).group(1)
    assert "11:00 前后（按本店顾客）" in best and "Asia/Shanghai" in best
    orders = _section(html, "orders")
    assert "A-1" in orders and "199.90" in orders and "已支付" in orders
    assert "王芳" in orders  # attributed to the guide whose forward was opened
    tasks = _section(html, "tasks")
    assert 'data-status="' in tasks  # the shipped playbooks planned steps for both adds
    english = await (
        await h.client.get("/admin/customers/wmc01", params={"lang": "en"}, headers=cookie)
    ).text()
    assert "Added the guide" in english and "Paid" in english and "添加了导购" not in english


async def test_a_manager_sees_only_their_stores_part_and_nobody_elses_customer(h, sessions):
    await _history(h)
    h.set_time(at(9, 14))
    await h.add("g2", "wmc02")
    await h.settle()
    cookie = admin_cookie(await sessions.account("m12", "manager", ["12"]))
    html = await (await h.client.get("/admin/customers/wmc01", headers=cookie)).text()
    relations = _section(html, "relations")
    assert "李娜" in relations and "王芳" not in relations
    assert "春季新品" not in html  # g1's forward and open are another store's
    assert "A-1" not in _section(html, "orders")  # attributed to g1, paid in no store of theirs
    other = await admin_cookie_for(sessions, "m11", "11")
    response = await h.client.get("/admin/customers/wmc02", headers=other)
    assert response.status == 404
    assert "没有这位客户" in await response.text()  # the same answer as a customer nobody has
    response = await h.client.get("/admin/customers/nobody", headers=other)
    assert response.status == 404 and "没有这位客户" in await response.text()


async def admin_cookie_for(sessions, name: str, store: str) -> dict:
    return admin_cookie(await sessions.account(name, "manager", [store]))


async def test_the_customer_list_exports_every_match_as_csv_and_excel(h, sessions):
    await _history(h)
    for n in range(2, 56):  # more than one screen (50) of customers
        await h.add("g1", f"wmc{n:02d}")
    await h.settle()
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    page = await (await h.client.get("/admin/customers", headers=cookie)).text()
    assert 'href="?format=csv&amp;table=customers"' in page
    assert 'href="?format=xlsx&amp;table=customers"' in page
    response = await h.client.get("/admin/customers", params={"format": "csv"}, headers=cookie)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "filename*=UTF-8''%E5%AE%A2%E6%88%B7.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[0] == ["客户", "客户 ID", "导购（状态）", "标签", "首次添加"]
    assert len(rows) == 1 + 55  # every customer, not one page of them
    [mine] = [r for r in rows if r[1] == "wmc01"]
    assert (
        mine[2] == "王芳（跟进中）、李娜（跟进中）" or mine[2] == "李娜（跟进中）、王芳（跟进中）"
    )

    response = await h.client.get(
        "/admin/customers", params={"format": "xlsx", "q": "wmc01", "lang": "en"}, headers=cookie
    )
    sheet = load_workbook(io.BytesIO(await response.read())).active
    assert [c.value for c in sheet[1]][:2] == ["Customer", "Customer ID"]
    assert sheet.max_row == 2 and sheet["B2"].value == "wmc01"


async def test_the_guides_stores_and_content_lists_export_too(h, sessions):
    await _history(h)
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    guides = await h.client.get(
        "/admin/guides", params={**PERIOD, "format": "xlsx"}, headers=cookie
    )
    sheet = load_workbook(io.BytesIO(await guides.read())).active
    header = [c.value for c in sheet[1]]
    assert header[:5] == ["导购", "门店", "客户", "待办任务", "逾期"] and "新客" in header
    by_name = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    assert by_name["王芳"][2].value == 1  # a number in Excel, not text
    stores = await h.client.get("/admin/stores", params={**PERIOD, "format": "csv"}, headers=cookie)
    rows = list(csv.reader(io.StringIO((await stores.read()).decode("utf-8-sig"))))
    assert rows[0][:2] == ["排名", "门店"] and {r[1] for r in rows[1:]} == {"张江店", "徐汇店"}
    assert [r[0] for r in rows[1:]] == ["1", "2"]
    content = await h.client.get("/admin/content", params={"format": "csv"}, headers=cookie)
    rows = list(csv.reader(io.StringIO((await content.read()).decode("utf-8-sig"))))
    assert rows[1][:4] == ["春季新品", "链接", "所有门店", "1"]


async def test_an_unknown_export_format_is_a_styled_400(h, sessions):
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    response = await h.client.get("/admin/customers", params={"format": "pdf"}, headers=cookie)
    assert response.status == 400
    html = await response.text()
    assert "导出格式须为 csv 或 xlsx" in html and 'href="/admin"' in html
