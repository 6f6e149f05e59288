"""Every table on every admin page sorts and exports: a walk from /admin through every link (so
a page or a table added later is checked without being listed here) finds each table, checks it
sorts in the browser (class "sortable", a header row) and has its CSV and Excel links, and
downloads both: the file's titles include every column the page shows, with at least its rows.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import parse_qsl, urlsplit

import pytest
import pytest_asyncio
from openpyxl import load_workbook

from tests.web.conftest import Sessions, admin_cookie
from tests.web.workbench import Page, missing_routes, seed_week, walk

# The tests that walk the seeded week's pages share it (one week per engine, on the module's
# event loop): they only read, each as an HQ account of its own (whose language is its own).
SEEDED = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def _seeded(module_h):
    await seed_week(module_h)


@pytest.fixture
def week(shared_h, _seeded):
    return shared_h


async def _hq(h, name: str) -> dict[str, str]:
    return admin_cookie(await Sessions(h).account(name, "hq", []))


def _data_rows(rows: list[list[str]]) -> list[list[str]]:
    """Body rows that are data, not the one-cell "nothing yet" line."""
    return [r for r in rows if len(r) > 1]


async def _download(h, cookie, url: str, href: str) -> list[list]:
    page, link = urlsplit(url), urlsplit(href)
    assert not link.path or link.path == page.path, href  # the same page, with its filters
    params = dict(parse_qsl(link.query))
    response = await h.client.get(page.path, params=params, headers=cookie)
    body = await response.read()
    assert response.status == 200, (url, href, body[:500])
    assert response.headers["Cache-Control"] == "no-store"
    if params["format"] == "csv":
        assert body.startswith("\ufeff".encode())
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    sheet = load_workbook(io.BytesIO(body)).active
    return [[c.value for c in row] for row in sheet.iter_rows()]


def problems(page: Page) -> list[str]:
    """What a page's tables lack: an id, sorting, a CSV and an Excel link."""
    found = []
    for table in page.tables:
        if not table.id:
            found.append("a table without an id")
            continue
        if "sortable" not in table.classes or not table.headers:
            found.append(f"#{table.id} does not sort")
        links = page.exports.get(table.id, [])
        formats = {dict(parse_qsl(urlsplit(link).query)).get("format") for link in links}
        if formats != {"csv", "xlsx"}:
            found.append(f"#{table.id} exports {sorted(f for f in formats if f)}")
    return found


def test_a_table_without_sorting_or_exports_is_caught():
    good = (
        '<span class="exports" data-for="t"><a href="?format=csv&amp;table=t">CSV</a>'
        '<a href="?format=xlsx&amp;table=t">Excel</a></span>'
        '<table id="t" class="sortable"><thead><tr><th>A</th></tr></thead></table>'
    )
    assert problems(Page(good)) == []
    assert problems(Page(good.replace(' class="sortable"', ""))) == ["#t does not sort"]
    assert problems(Page(good.replace('data-for="t"', 'data-for="u"'))) == ["#t exports []"]
    assert problems(Page(good.replace('<a href="?format=xlsx&amp;table=t">Excel</a>', ""))) == [
        "#t exports ['csv']"
    ]
    assert problems(Page("<table><tr><td>1</td></tr></table>")) == ["a table without an id"]


@SEEDED
async def test_every_table_on_every_admin_page_sorts_and_exports(week):
    h = week
    cookie = await _hq(h, "boss")
    pages = await walk(h, cookie)
    assert not missing_routes(h, pages), missing_routes(h, pages)
    checked = 0
    for url, (_route, html) in pages.items():
        page = Page(html)
        assert not problems(page), (url, problems(page))
        for table in page.tables:
            where = f"{url} #{table.id}"
            links = page.exports[table.id]
            shown = {t for t in table.headers if t and t != "#"}
            for link in links:
                rows = await _download(h, cookie, url, link)
                titles = {str(t) for t in rows[0]}
                assert shown <= titles, (where, link, shown - titles)
                assert len(rows) - 1 >= len(_data_rows(table.rows)), (where, link)
            checked += 1
    # The walk reached the pages with several tables (a customer's has seven).
    assert checked >= 20, checked


@SEEDED
async def test_an_unknown_table_is_a_styled_400_in_either_language(week):
    h = week
    cookie = await _hq(h, "boss-400")
    response = await h.client.get(
        "/admin/customers/wmc01", params={"format": "csv", "table": "secrets"}, headers=cookie
    )
    html = await response.text()
    assert response.status == 400 and 'class="card problem"' in html
    assert "导出的表格须为 relations, groups, timeline" in html
    response = await h.client.get(
        "/admin/stores", params={"format": "xlsx", "table": "x", "lang": "en"}, headers=cookie
    )
    assert response.status == 400
    assert "&#39;table&#39; must be one of store-leaderboard" in await response.text()


@SEEDED
async def test_a_customer_page_s_orders_export_with_money_as_a_number(week):
    h = week
    cookie = await _hq(h, "boss-xlsx")
    response = await h.client.get(
        "/admin/customers/wmc01", params={"format": "xlsx", "table": "orders"}, headers=cookie
    )
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await response.read())).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == ["支付时间", "订单号", "金额（元）", "状态", "业绩归属", "门店"]
    assert rows[1][1:3] == ["A-1", 199.0] and rows[1][4] == "王芳"
