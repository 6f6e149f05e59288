"""The admin's customer groups: /admin/groups (per store, the period's joins and departures,
sortable, exported as CSV and Excel) and /admin/groups/{chat_id} (members and history), in
Chinese by default and in English; a manager sees their stores' groups only; a customer's page
lists their groups."""

from __future__ import annotations

import csv
import io
import re

from openpyxl import load_workbook

from tests.web.conftest import Sessions, admin_cookie

PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}


def _section(html: str, table_id: str) -> str:
    return re.search(rf'<table id="{table_id}".*?</table>', html, re.S).group(0)


def _row(html: str, chat_id: str) -> str:
    return re.search(rf'<tr data-chat="{re.escape(chat_id)}">.*?</tr>', html, re.S).group(0)


def _cells(row: str) -> list[str]:
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in cells]


async def _two_stores(h) -> tuple[str, str]:
    """张江VIP群 (g1 王芳, 张江店): 陈女士 and 刘先生 join, 刘先生 leaves; 徐汇体验官群 (g2)."""
    await h.add("g1", "wmc1")
    zhangjiang = await h.create_group("g1", "张江VIP群")
    h.advance(60)
    await h.join(zhangjiang, "wmc1", "wmc2", invitor="g1")
    h.advance(60)
    await h.leave(zhangjiang, "wmc2")
    xuhui = await h.create_group("g2", "徐汇体验官群", ["wmc3"])
    return zhangjiang, xuhui


async def test_hq_reads_each_groups_size_and_the_periods_growth_in_chinese_and_english(h):
    zhangjiang, xuhui = await _two_stores(h)
    cookie = admin_cookie(await Sessions(h).account("boss", "hq", []))
    response = await h.client.get("/admin/groups", params=PERIOD, headers=cookie)
    assert response.status == 200
    html = await response.text()
    assert 'href="/admin/groups"' in html and "客户群" in html  # in the menu
    assert 'class="sortable"' in _section(html, "groups")
    cells = _cells(_row(html, zhangjiang))
    # group, owner by name, store, members (g1, 陈女士), customers, joined, left, net, last
    assert cells[:8] == ["张江VIP群", "王芳", "张江店", "2", "1", "2", "1", "1"]
    assert cells[8] != "–"
    xuhui_cells = _cells(_row(html, xuhui))
    assert xuhui_cells[:8] == ["徐汇体验官群", "李娜", "徐汇店", "2", "1", "1", "0", "1"]
    earlier = await (
        await h.client.get(
            "/admin/groups", params={"from": "2026-03-01", "to": "2026-03-07"}, headers=cookie
        )
    ).text()
    assert _cells(_row(earlier, zhangjiang))[5:8] == ["0", "0", "0"]  # nothing in that week
    one_store = await (
        await h.client.get("/admin/groups", params={**PERIOD, "store": "12"}, headers=cookie)
    ).text()
    assert xuhui in one_store and zhangjiang not in one_store
    english = await (
        await h.client.get("/admin/groups", params={**PERIOD, "lang": "en"}, headers=cookie)
    ).text()
    assert "Customer groups" in english and "Owner" in english and "群主" not in english


async def test_a_groups_page_lists_its_members_and_history_linking_the_customers(h):
    zhangjiang, _ = await _two_stores(h)
    cookie = admin_cookie(await Sessions(h).account("boss", "hq", []))
    html = await (await h.client.get(f"/admin/groups/{zhangjiang}", headers=cookie)).text()
    members = _section(html, "members")
    assert 'href="/admin/customers/wmc1"' in members and "陈女士" in members
    assert "wmc2" not in members  # 刘先生 left
    assert "王芳" in members and "员工" in members and "成员邀请" in members
    history = _section(html, "history")
    assert history.count('data-kind="joined"') == 3 and history.count('data-kind="left"') == 1
    assert "刘先生" in history and "退群" in history and 'href="/admin/customers/wmc2"' in history
    customer = await (await h.client.get("/admin/customers/wmc1", headers=cookie)).text()
    groups = _section(customer, "groups")
    assert f'href="/admin/groups/{zhangjiang}"' in groups and "张江VIP群" in groups
    assert "王芳" in groups and "张江店" in groups
    missing = await h.client.get("/admin/groups/nosuchchat", headers=cookie)
    assert missing.status == 404 and "没有这个客户群" in await missing.text()
    english = await (
        await h.client.get(f"/admin/groups/{zhangjiang}", params={"lang": "en"}, headers=cookie)
    ).text()
    assert "Membership history" in english and "Left" in english
    assert "Invited by a member" in english


async def test_a_manager_sees_their_stores_groups_only(h):
    zhangjiang, xuhui = await _two_stores(h)
    await h.add("g2", "wmc1")
    cookie = admin_cookie(await Sessions(h).account("m12", "manager", ["12"]))
    html = await (await h.client.get("/admin/groups", params=PERIOD, headers=cookie)).text()
    assert xuhui in html and zhangjiang not in html
    assert (await h.client.get(f"/admin/groups/{xuhui}", headers=cookie)).status == 200
    other = await h.client.get(f"/admin/groups/{zhangjiang}", headers=cookie)
    assert other.status == 404 and "没有这个客户群" in await other.text()
    picked = await h.client.get("/admin/groups", params={"store": "11"}, headers=cookie)
    assert picked.status == 404  # another store's list
    csv_rows = await _csv(h, cookie)
    assert [r[0] for r in csv_rows[1:]] == ["徐汇体验官群"]
    customer = await (await h.client.get("/admin/customers/wmc1", headers=cookie)).text()
    assert "张江VIP群" not in customer  # their customer too, but the group is another store's


async def _csv(h, cookie) -> list[list[str]]:
    response = await h.client.get(
        "/admin/groups", params={**PERIOD, "format": "csv"}, headers=cookie
    )
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))


async def test_the_groups_list_exports_as_csv_and_excel_with_the_pages_words(h):
    await _two_stores(h)
    cookie = admin_cookie(await Sessions(h).account("boss", "hq", []))
    page = await (await h.client.get("/admin/groups", params=PERIOD, headers=cookie)).text()
    assert "format=csv" in page and "format=xlsx" in page
    rows = await _csv(h, cookie)
    assert rows[0][:5] == ["群名称", "群主", "门店", "成员", "客户"]
    assert len(rows) == 3
    [mine] = [r for r in rows if r[0] == "张江VIP群"]
    assert mine[1:8] == ["王芳", "张江店", "2", "1", "2", "1", "1"]
    response = await h.client.get(
        "/admin/groups", params={**PERIOD, "format": "xlsx", "lang": "en"}, headers=cookie
    )
    assert "filename*=UTF-8''Customer%20groups.xlsx" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await response.read())).active
    assert [c.value for c in sheet[1]][:3] == ["Group", "Owner", "Store"]
    assert sheet.max_row == 3
    bad = await h.client.get("/admin/groups", params={"format": "pdf"}, headers=cookie)
    assert bad.status == 400
