"""The store manager's view: the same pages as HQ's, narrowed to their stores, with their
guides' open and overdue tasks; HQ's own pages (playbooks, the studio, content, the audit
trail) are not there for them, and every export says what its page says. Store 11's manager
(张江店: 王芳 g1, 张伟 g3) against the seeded week, where 徐汇店 (12) has 李娜 g2, 顾客04 and
徐汇体验官群."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import pytest_asyncio

from tests.web.conftest import Sessions, admin_cookie
from tests.web.workbench import Page, seed_week, walk

OTHER_STORE = ("徐汇店", "李娜", "顾客04", "徐汇体验官群", "wmc04")

# Every test here only reads (pages and their exports, GET by GET): they share one seeded week,
# on the module's event loop, instead of seeding it again for each.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(module_h):
    """The seeded week with two accounts: a manager of store 11, and HQ."""
    await seed_week(module_h)
    accounts = Sessions(module_h)
    manager = admin_cookie(await accounts.account("m11", "manager", ["11"]))
    hq = admin_cookie(await accounts.account("boss", "hq", []))
    return manager, hq


@pytest.fixture
def h(shared_h, seeded):
    return shared_h


@pytest.fixture
def m11(seeded):
    return seeded[0]


@pytest.fixture
def hq(seeded):
    return seeded[1]


async def _page(h, cookie, path, **params) -> tuple[int, str]:
    response = await h.client.get(path, params=params, headers=cookie)
    return response.status, await response.text()


async def _csv(h, cookie, path, **params) -> tuple[int, list[list[str]]]:
    response = await h.client.get(path, params={**params, "format": "csv"}, headers=cookie)
    if response.status != 200:
        return response.status, []
    body = (await response.read()).decode("utf-8-sig")
    return 200, list(csv.reader(io.StringIO(body)))


def _flat(rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in rows)


async def test_nothing_a_manager_reaches_or_exports_shows_another_store(h, m11):
    pages = await walk(h, m11)  # every link they can follow answers 200 (walk checks)
    routes = {route for route, _ in pages.values()}
    assert routes == {
        "/admin",
        "/admin/stores",
        "/admin/guides",
        "/admin/guides/{userid}",
        "/admin/customers",
        "/admin/customers/{external_userid}",
        "/admin/groups",
        "/admin/groups/{chat_id}",
        "/admin/cohorts",
    }, routes
    for url, (_route, html) in pages.items():
        text = Page(html).text
        assert not [w for w in OTHER_STORE if w in text], (url, text)
        for table, links in Page(html).exports.items():
            query = dict(parse_qsl(urlsplit(links[0]).query))
            status, rows = await _csv(h, m11, urlsplit(url).path, **query)
            assert status == 200, (url, table)
            assert not [w for w in OTHER_STORE if w in _flat(rows)], (url, table, rows)


async def test_dashboard(h, m11):
    status, html = await _page(h, m11, "/admin")
    assert status == 200 and "<h1>概览 · 张江店 ·" in html
    assert '<option value="12"' not in html  # no other store to pick
    assert (await _page(h, m11, "/admin", store="12"))[0] == 404
    status, rows = await _csv(h, m11, "/admin", table="leaderboard")
    assert {r[1] for r in rows[1:]} <= {"王芳", "张伟"} and "王芳" in {r[1] for r in rows[1:]}


async def test_stores(h, m11):
    status, html = await _page(h, m11, "/admin/stores")
    assert status == 200 and "张江店" in html and "徐汇店" not in html
    assert 'id="escalated-tasks"' in html  # their stores' overdue tasks, watched by default
    assert (await _page(h, m11, "/admin/stores", store="12"))[0] == 404
    assert (await _csv(h, m11, "/admin/stores", store="12", table="guide-leaderboard"))[0] == 404
    _, rows = await _csv(h, m11, "/admin/stores", table="store-leaderboard")
    assert [r[1] for r in rows[1:]] == ["张江店"]


async def test_guides_with_their_open_and_overdue_tasks(h, m11):
    status, html = await _page(h, m11, "/admin/guides")
    assert status == 200
    rows = {
        guide: [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for guide, r in re.findall(r'<tr data-guide="([^"]+)">(.*?)</tr>', html, re.S)
    }
    assert set(rows) == {"g1", "g3"}
    # 王芳: wmc01's reminder open and a day past due (overdue); wmc02's skipped.
    assert rows["g1"][2:5] == ["2", "1", "1"], rows["g1"]
    _, exported = await _csv(h, m11, "/admin/guides")
    assert {r[0] for r in exported[1:]} == {"王芳", "张伟"}
    assert exported[0][3:5] == ["待办任务", "逾期"]


async def test_a_guide_s_page(h, m11):
    assert (await _page(h, m11, "/admin/guides/g1"))[0] == 200
    assert (await _page(h, m11, "/admin/guides/g2"))[0] == 404
    assert (await _csv(h, m11, "/admin/guides/g2"))[0] == 404
    status, rows = await _csv(h, m11, "/admin/guides/g1")
    assert status == 200 and rows[0][0] == "日期"


async def test_customers(h, m11):
    status, html = await _page(h, m11, "/admin/customers")
    assert status == 200 and "顾客01" in html and "顾客04" not in html
    _, rows = await _csv(h, m11, "/admin/customers")
    assert {r[1] for r in rows[1:]} == {"wmc01", "wmc02", "wmc03"}


async def test_a_customer_s_page(h, m11):
    status, html = await _page(h, m11, "/admin/customers/wmc01")
    assert status == 200 and "张江VIP群" in html and "A-1" in html
    assert (await _page(h, m11, "/admin/customers/wmc04"))[0] == 404
    for table in ("relations", "orders", "tasks", "timeline"):
        assert (await _csv(h, m11, "/admin/customers/wmc04", table=table))[0] == 404
    _, rows = await _csv(h, m11, "/admin/customers/wmc01", table="tasks")
    assert {r[3] for r in rows[1:]} == {"王芳"}


async def test_groups(h, m11, hq):
    status, html = await _page(h, m11, "/admin/groups")
    assert status == 200 and "张江VIP群" in html and "徐汇体验官群" not in html
    chats = re.findall(r'<tr data-chat="([^"]+)">', html)
    assert len(chats) == 1
    assert (await _page(h, m11, f"/admin/groups/{chats[0]}"))[0] == 200
    other = set(re.findall(r'<tr data-chat="([^"]+)">', (await _page(h, hq, "/admin/groups"))[1]))
    [theirs] = other - set(chats)
    assert (await _page(h, m11, f"/admin/groups/{theirs}"))[0] == 404
    assert (await _csv(h, m11, f"/admin/groups/{theirs}", table="members"))[0] == 404
    _, rows = await _csv(h, m11, "/admin/groups")
    assert [r[0] for r in rows[1:]] == ["张江VIP群"]


async def test_cohorts_are_their_stores_rows(h, m11):
    status, html = await _page(h, m11, "/admin/cohorts", **{"from": "2026-03-02"})
    assert status == 200
    assert '<select name="by"><option value="store" selected>门店</option></select>' in html
    assert "张江店" in html and "徐汇店" not in html and "全部客户" not in html
    # Asking for the corp's totals gives their stores' rows all the same.
    _, rows = await _csv(h, m11, "/admin/cohorts", by="all", **{"from": "2026-03-02"})
    assert rows[0][:3] == ["期间", "门店", "客户"] and {r[1] for r in rows[1:]} == {"张江店"}


@pytest.mark.parametrize(
    "path",
    ["/admin/audit", "/admin/playbooks", "/admin/playbooks/week_sop", "/admin/content"],
)
async def test_hq_s_own_pages_and_their_exports_are_not_there(h, m11, path):
    status, html = await _page(h, m11, path)
    assert status == 404 and 'class="card problem"' in html
    assert (await _csv(h, m11, path))[0] == 404
    assert f'href="{path}"' not in html  # not in their navigation either
